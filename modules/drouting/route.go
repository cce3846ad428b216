package drouting

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/txn"
)

// SlotCall is the per-transaction value (routing.Ctx.Value) DoRouting
// keeps the call's record number in, for UseNextGW in the failure route.
// A route set that calls DoRouting must leave it alone; the registrar uses
// the last two slots, the dispatcher the two before them.
const SlotCall = txn.NumValues - 5

// Result is what Route found.
type Result uint8

const (
	// Routed: the request goes to the first gateway of the rule's list.
	Routed Result = iota
	// NoRule: no rule of the group matches the number now (or the
	// Request-URI user is no number).
	NoRule
	// NoGateway: a rule matched, but none of its gateways is usable
	// (disabled, down, or not defined).
	NoGateway
	numResults
)

var resultNames = [numResults]string{"routed", "no_rule", "no_gateway"}

func (r Result) String() string { return resultNames[r] }

// maxCallGWs bounds the gateways one call can be tried on: the first
// usable ones of its rule's list, in the order sorted for the call.
const maxCallGWs = 8

// maxNumber bounds the number routed, escapes decoded: longer is no
// number (E.164 numbers have 15 digits; operator prefixes add a few).
const maxNumber = 48

// callRec is the gateway list of one call, for its failure route. The
// records form a ring: DoRouting takes the next one and writes its number
// in the transaction (SlotCall); a record is reused by the len(ring)-th
// call routed after it, by when its call has long been answered or has
// failed. A failure route that finds its record reused has no next
// gateway (switchboard_drouting_lists_lost_total).
type callRec struct {
	mu    sync.Mutex
	stamp uint64 // the call's number: 0 free
	gws   [maxCallGWs]*gateway
	n     uint8
	pos   uint8 // the gateway tried last
	nlen  uint8
	num   [maxNumber]byte // the number as matched, before strip and prefix
	rule  int64
}

type callRing struct {
	recs []callRec
	mask uint64
	seq  atomic.Uint64
}

func (r *callRing) init(n int) {
	size := 1
	for size < n {
		size <<= 1
	}
	r.recs = make([]callRec, size)
	r.mask = uint64(size - 1)
}

// normalise writes the number of user into dst: escaped characters
// decoded (%30 is 0, as the gateway will read it) and the visual
// separators of telephone numbers ("-", ".", "(", ")", space) dropped, so
// that a rule cannot be gone around by writing its prefix another way.
// Any other character outside 0-9 + * # makes it no number: false.
func normalise(dst *[maxNumber]byte, user []byte) (int, bool) {
	n := 0
	for i := 0; i < len(user); {
		c := user[i]
		if d, ok := parser.DecodeEscape(user, i); ok {
			c, i = d, i+3
		} else {
			i++
		}
		switch {
		case c >= '0' && c <= '9' || c == '+' || c == '*' || c == '#':
			if n == maxNumber {
				return 0, false
			}
			dst[n] = c
			n++
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return 0, false
		}
	}
	return n, n > 0
}

// DoRouting routes a new request to a gateway by the rules of group
// (OpenSIPS: do_routing(group)): the Request-URI user is matched against
// the rules' prefixes, and the request is set to go to the first usable
// gateway of the matching rule's list: the number with the gateway's
// strip digits removed and its prefix added, at the gateway's address, in
// the Request-URI and the destination ($du). The list is kept for
// UseNextGW. It returns false when no rule matched or no gateway of the
// rule is usable; Route tells which. The route then relays. It allocates
// nothing.
func (d *Drouting) DoRouting(c *routing.Ctx, group int) bool {
	return d.Route(c, group) == Routed
}

// Route is DoRouting telling why it did not route.
func (d *Drouting) Route(c *routing.Ctx, group int) Result {
	res := d.route(c, group)
	d.results[res].Inc()
	return res
}

func (d *Drouting) route(c *routing.Ctx, group int) Result {
	var num [maxNumber]byte
	n, ok := normalise(&num, c.RUser())
	if !ok {
		return NoRule
	}
	minute, weekday := d.wall.Load().at(d.clock.Now())
	rs := d.rules.Load()
	r := rs.match(group, num[:n], minute, weekday)
	if r == nil {
		return NoRule
	}
	var gws [maxCallGWs]*gateway
	k := expand(&gws, rs.lists[r.list], r.sort)
	if k == 0 {
		return NoGateway
	}
	ring := d.calls.Load() // there since the first rule was loaded
	stamp := ring.seq.Add(1)
	rec := &ring.recs[stamp&ring.mask]
	rec.mu.Lock()
	rec.stamp, rec.gws, rec.n, rec.pos, rec.rule = stamp, gws, uint8(k), 0, r.id
	rec.nlen = uint8(copy(rec.num[:], num[:n]))
	rec.mu.Unlock()
	c.SetValue(SlotCall, int64(stamp))
	d.sendTo(c, gws[0], num[:n])
	return Routed
}

// sendTo points the request at gateway g: Request-URI
// sip:<prefix><number less strip>@<address>[;transport=], destination the
// gateway's address, and the first-response timeout fr_timeout.
func (d *Drouting) sendTo(c *routing.Ctx, g *gateway, num []byte) {
	var buf [maxNumber + 160]byte
	u := append(buf[:0], "sip:"...)
	u = append(u, g.prefix...)
	if g.strip < len(num) {
		u = append(u, num[g.strip:]...)
	}
	u = append(u, '@')
	u = append(u, g.hostport...)
	u = append(u, g.param...)
	c.SetRU(u)
	c.SetDestination(g.proto, g.addr)
	if fr := d.fr.Load(); fr > 0 {
		c.SetTimeouts(time.Duration(fr)*time.Millisecond, 0)
	}
	g.slot.calls.Inc()
}

// failover reports whether a failure route's status moves a call to the
// next gateway: 408 (no answer in time) and 5xx (the gateway or its
// network failed). 4xx and 6xx are the callee's answer, the same from
// any gateway.
func failover(status int) bool {
	return status == 408 || status >= 500 && status < 600
}

// UseNextGW, in a failure route, relays the call to the next usable
// gateway of the list DoRouting chose for it (OpenSIPS: use_next_gw()
// then t_relay()) when the gateway tried last failed with 408 or 5xx,
// and reports whether it did. The gateway tried last decides, not the
// best response of all the branches: a 486 from the second gateway ends
// the call even after a 503 from the first. The failure is counted
// against that gateway, and a gateway that sent nothing at all (the
// core's own 408 or 503) counts towards probe_failures, as a failed probe
// would, when it is probed. A canceled call, a 4xx or 6xx and an
// exhausted list give false: the best response goes upstream. It
// allocates nothing.
func (d *Drouting) UseNextGW(c *routing.FailureCtx) bool {
	stamp := uint64(c.Value(SlotCall))
	if d == nil || stamp == 0 {
		return false // not routed by DoRouting
	}
	code, answered := c.LastBranch()
	if !failover(code) {
		return false
	}
	ring := d.calls.Load()
	if ring == nil {
		return false
	}
	rec := &ring.recs[stamp&ring.mask]
	var num [maxNumber]byte
	rec.mu.Lock()
	if rec.stamp != stamp {
		rec.mu.Unlock()
		d.lost.Inc()
		return false
	}
	failed := rec.gws[rec.pos]
	n := copy(num[:], rec.num[:rec.nlen])
	rec.mu.Unlock()
	failed.slot.failures.Inc()
	if !answered {
		d.silent(failed)
	}
	if c.Canceled() {
		return false
	}
	for {
		g := d.next(rec, stamp)
		if g == nil {
			return false
		}
		d.sendTo(c.Ctx, g, num[:n])
		if err := c.Relay(); err == nil {
			d.failovers.Inc()
			return true
		}
		g.slot.failures.Inc() // could not even be sent
	}
}

// next moves the call's record to its next usable gateway.
func (d *Drouting) next(rec *callRec, stamp uint64) *gateway {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.stamp != stamp {
		return nil
	}
	for rec.pos+1 < rec.n {
		rec.pos++
		g := rec.gws[rec.pos]
		// The definition the call was given, if its gateway is still
		// usable: disabled, deleted or down since, it is skipped.
		if g.slot.usable() != nil {
			return g
		}
	}
	return nil
}

// expand writes the usable gateways of list, in the order sort gives them
// for this call, into gws (carriers expanded in their own order; a
// gateway listed twice is tried once) and returns how many.
func expand(gws *[maxCallGWs]*gateway, list []listItem, sort byte) int {
	var order [32]uint8
	n := orderList(&order, list, sort)
	k := 0
	for _, i := range order[:n] {
		it := &list[i]
		if it.gw != nil {
			k = addGW(gws, k, it.gw)
			continue
		}
		cr := it.cr.cfg.Load()
		if cr == nil || cr.disabled {
			continue
		}
		var corder [32]uint8
		cn := orderList(&corder, cr.list, cr.sort)
		for _, j := range corder[:cn] {
			before := k
			k = addGW(gws, k, cr.list[j].gw)
			if cr.useFirst && k > before {
				break
			}
		}
	}
	return k
}

// addGW appends slot's gateway when it is usable, not there already, and
// there is room.
func addGW(gws *[maxCallGWs]*gateway, k int, slot *gwSlot) int {
	if k == maxCallGWs {
		return k
	}
	g := slot.usable()
	if g == nil {
		return k
	}
	for _, h := range gws[:k] {
		if h.slot == slot {
			return k
		}
	}
	gws[k] = g
	return k + 1
}

// orderList writes the indexes of list in the order of sort: as written
// (N), a weighted random order (W: each next entry drawn with a
// probability proportional to its weight among those left) or a uniform
// random one (R).
func orderList(order *[32]uint8, list []listItem, sort byte) int {
	n := min(len(list), len(order))
	for i := range n {
		order[i] = uint8(i)
	}
	switch sort {
	case 'R':
		for i := n - 1; i > 0; i-- {
			j := rand.IntN(i + 1)
			order[i], order[j] = order[j], order[i]
		}
	case 'W':
		var total int64
		for _, it := range list[:n] {
			total += int64(it.weight)
		}
		for i := 0; i < n-1; i++ {
			pick := rand.Int64N(total)
			j := i
			for ; j < n-1; j++ {
				pick -= int64(list[order[j]].weight)
				if pick < 0 {
					break
				}
			}
			total -= int64(list[order[j]].weight)
			order[i], order[j] = order[j], order[i]
		}
	}
	return n
}

// IsFromGW reports whether the request comes from the address of a
// gateway in the table, whatever its state (OpenSIPS: is_from_gw()). The
// source address decides, never a header; the port is not compared
// (gateways send from other ports than they listen on, over TCP always).
func (d *Drouting) IsFromGW(c *routing.Ctx) bool {
	return d != nil && d.fromGW(c.SrcIP(), -1)
}

// IsFromGWType is IsFromGW for gateways of one type (OpenSIPS:
// is_from_gw(type)).
func (d *Drouting) IsFromGWType(c *routing.Ctx, gtype int) bool {
	return d != nil && d.fromGW(c.SrcIP(), gtype)
}

func (d *Drouting) fromGW(src netip.Addr, gtype int) bool {
	for _, s := range d.addrs.Load().byIP[src.Unmap()] {
		if g := s.cfg.Load(); g != nil && (gtype < 0 || g.gtype == gtype) {
			return true
		}
	}
	return false
}

// GoesToGW reports whether the request goes to a gateway (OpenSIPS:
// goes_to_gw()): its destination ($du) when set, else the host and port
// of its Request-URI, is a gateway's address.
func (d *Drouting) GoesToGW(c *routing.Ctx) bool {
	if d == nil {
		return false
	}
	dst, ok := requestDest(c)
	if !ok {
		return false
	}
	s := d.addrs.Load().byDest[dst]
	return s != nil && s.cfg.Load() != nil
}

// GoesToGWHost is GoesToGW by address alone, whatever the port, and by
// the next hop: the request's destination, or the host of the URI it
// goes to next (a Route after ours, else its Request-URI), is the
// address of a gateway in the table. A host name is not resolved here. A route that keeps requests off the gateways
// but for its calls to the PSTN checks this, not GoesToGW: a gateway
// that listens on another port too would take the request there.
func (d *Drouting) GoesToGWHost(c *routing.Ctx) bool {
	if d == nil {
		return false
	}
	if _, dst, ok := c.Destination(); ok {
		return d.fromGW(dst.Addr().Unmap(), -1)
	}
	var u parser.URI
	if u.Parse(c.NextHopURI()) != nil {
		return false
	}
	host := u.Host
	if len(host) > 2 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	if len(host) == 0 || bytes.IndexByte(host, '%') >= 0 {
		return false // a name, or an address with a zone
	}
	a, err := netip.ParseAddr(unsafe.String(&host[0], len(host)))
	return err == nil && d.fromGW(a.Unmap(), -1)
}

// IsGWAddr reports whether a is the address of a gateway in the table.
func (d *Drouting) IsGWAddr(a netip.Addr) bool {
	return d != nil && d.fromGW(a.Unmap(), -1)
}

func requestDest(c *routing.Ctx) (netip.AddrPort, bool) {
	if _, dst, ok := c.Destination(); ok {
		return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), true
	}
	host := c.RDomain()
	if len(host) > 2 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	if len(host) == 0 || bytes.IndexByte(host, '%') >= 0 {
		return netip.AddrPort{}, false // no zones: ParseAddr would keep the string
	}
	a, err := netip.ParseAddr(unsafe.String(&host[0], len(host)))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := c.RPort()
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// Chosen returns, for a request DoRouting routed, the gateway it goes to
// now and the ID of the rule that matched (OpenSIPS: the gw_id and rule_id
// AVPs); ok false otherwise.
func (d *Drouting) Chosen(c *routing.Ctx) (gwid string, rule int64, ok bool) {
	stamp := uint64(c.Value(SlotCall))
	if d == nil || stamp == 0 {
		return "", 0, false
	}
	ring := d.calls.Load()
	if ring == nil {
		return "", 0, false
	}
	rec := &ring.recs[stamp&ring.mask]
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.stamp != stamp {
		return "", 0, false
	}
	return rec.gws[rec.pos].slot.id, rec.rule, true
}
