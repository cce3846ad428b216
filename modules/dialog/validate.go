package dialog

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"sync"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
)

// The signature of our Record-Route binds an in-dialog request to its
// dialog, not to where it goes: the party sending it picks the
// Request-URI and the Route values after ours. A caller's BYE addressed
// to herself matched the dialog, ended it (the record closed, the
// profiles' places and the fraud count released) and went back to her,
// while the callee never had it and the call went on unbilled. So the
// dialog keeps each party's target as the other party was given it (the
// Contact as relayed, after a route's edits such as fix_nated_contact),
// and a request of a confirmed dialog counts for it only when it goes
// there: its Request-URI is that target (RFC 3261 §19.1.4), or the
// party's first hop when it has no route set, and its next hop is the
// first of the party's route set (OpenSIPS validate_dialog).

// ValidateDialog reports whether an in-dialog request loose-routed by our
// Record-Route goes to the other party of its dialog as the dialog knows
// it (OpenSIPS validate_dialog(), for the Request-URI and the route set):
// its Request-URI is the party's target (its Contact as the proxy relayed
// it to the sender, or the party's first hop when the party has no route
// set: where the proxy itself reaches it) and the next Route after ours
// is the first of the party's route set (none when it has none). URIs are
// compared as RFC 3261 §19.1.4 says (user case-sensitive, escapes
// decoded; host case-insensitive, IP addresses by value; transport,
// maddr, user, ttl and method as they must), a port or transport left
// out being the default's. False: the request is of a confirmed dialog
// the module holds and goes elsewhere (switchboard_dialog_misrouted_total);
// the route answers it (the provider route set: 403) and MatchDialog
// would match nothing. True for anything else: no dialog id, no such
// dialog here, not its tags (MatchDialog matches nothing), a dialog not
// answered yet (an early dialog's target is not kept; its BYE ends
// nothing). Call it after LooseRoute, before the route sets a
// destination. It allocates nothing.
func (d *Dialog) ValidateDialog(c *routing.Ctx) bool {
	s, g, side, ok := d.answeredFrom(c)
	if !ok {
		return true
	}
	valid := g.goesTo(peerOf(side), c.RU(), c.NextHopURI())
	s.Unlock()
	if !valid {
		d.misrouted.Inc()
	}
	return valid
}

// answeredFrom finds the confirmed dialog a loose-routed request names
// (the id in our verified Route) when the request's tags are the
// dialog's and it comes from the side our Route says: what ValidateDialog
// checks and FixRouteDialog mends. On ok the dialog's shard is locked;
// the caller unlocks it.
func (d *Dialog) answeredFrom(c *routing.Ctx) (s *shards.Shard[dlg], g *dlg, side Side, ok bool) {
	id, ok := parseID(c.R.DialogRouteParam(didParam))
	if !ok {
		return nil, nil, 0, false
	}
	from := Callee
	if c.R.Downstream() {
		from = Caller
	}
	m := c.Msg()
	callID := m.CallID()
	h := shards.Sum(callID)
	s = d.tbl.Shard(h)
	s.Lock()
	if e := find(s, h, callID, id); e != nil {
		g = &e.Value
		if side, ok = g.side(m.FromTag(), m.ToTag()); ok && side == from && g.state == stConfirmed {
			return s, g, side, true
		}
	}
	s.Unlock()
	return nil, nil, 0, false
}

// FixRouteDialog sends an in-dialog request of a confirmed dialog to the
// other party as the dialog knows it, whatever its sender wrote (OpenSIPS
// fix_route_dialog(), after validate_dialog() said no): its Request-URI
// becomes that party's target as relayed (the Contact the sender was
// given, ValidateDialog's), the Route values after ours that party's
// route set (txn Request.SetRouteSet: none for a party without one), and
// a party without a route set whose target does not name the address
// the proxy reaches it at (its Contact as it sent it, from a row without
// the relayed one) is sent to that first hop, as the proxy's own BYE is,
// unless our Route names its flow. A legitimate request the check
// refuses (a phone's quirk in the Request-URI, a target refresh the
// dialog did not see) then reaches the other party, and a BYE ends the
// call as any BYE does: answered 403, the callee's leg stayed up, billed,
// until the dialog's timeout. ValidateDialog is true for the request
// afterwards and MatchDialog matches it. The sender chooses nothing: the
// request can only go where the dialog's own requests go
// (switchboard_dialog_route_fixed_total, a debug log). False, nothing
// changed: no dialog of ours with the request's tags from that side, not
// answered yet, or the party's target is not known (its Contact not
// kept, or as relayed too large to keep: only its first hop validates a
// request to it); the route answers it (the provider route set: 403). Call it
// after LooseRoute, before the route sets a destination. It allocates
// nothing.
func (d *Dialog) FixRouteDialog(c *routing.Ctx) bool {
	s, g, side, ok := d.answeredFrom(c)
	if !ok {
		return false
	}
	i := peerOf(side)
	target, route := g.sentTarget(i), g.get(g.route[i])
	next := target
	if len(route) > 0 {
		next = firstRouteURI(route)
	}
	if g.sent&(sentLost<<i) != 0 || len(next) == 0 || !g.goesTo(i, target, next) {
		// Not known, or not a request the check would take even so.
		s.Unlock()
		return false
	}
	c.SetRU(target)
	c.R.SetRouteSet(route)
	if hop := g.hop[i].AddrPort(); len(route) == 0 && hop.IsValid() && c.Flow() == 0 && !namesHop(target, hop) {
		c.SetDestination(g.proto[i], hop)
	}
	s.Unlock()
	d.routeFixed.Inc()
	if d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("dialog: in-dialog request sent to the other party as the dialog knows it",
			"method", string(c.Msg().MethodBytes()), "call_id", string(c.CallID()), "from", side.String(),
			"ruri", string(c.Msg().RequestURI()), "target", string(c.RU()))
	}
	return true
}

// namesHop reports whether target names the address hop: where a
// request to it goes without a destination of its own.
func namesHop(target []byte, hop netip.AddrPort) bool {
	var t parser.URI
	if t.Parse(target) != nil {
		return false
	}
	a, ok := parser.ParseIP(t.Host)
	return ok && a.Unmap() == hop.Addr().Unmap() && portOf(&t) == int(hop.Port())
}

// peerOf is the index of the party a request from side goes to.
func peerOf(side Side) int {
	if side == Caller {
		return toCallee
	}
	return toCaller
}

// goesTo reports whether a request with Request-URI ruri and next hop
// next (the first Route after ours, else the Request-URI) goes to party
// i as the dialog knows it. A party whose target the dialog does not
// know (the 2xx had no Contact, or it did not fit) is reached by no
// request.
func (g *dlg) goesTo(i int, ruri, next []byte) bool {
	if i == toCallee && !g.hasCallee {
		return false
	}
	target := g.sentTarget(i)
	if len(target) == 0 {
		return false
	}
	route := g.get(g.route[i])
	lost := g.sent&(sentLost<<i) != 0
	if !lost && bytes.Equal(ruri, target) {
		// The request's own copy of the target, as phones send it: the
		// same URI when it is one, without parsing the two and comparing
		// them part by part (a call's every ACK and BYE takes this way).
		return validURI(target) && nextIsFirst(route, ruri, next)
	}
	var ru, t parser.URI
	if ru.Parse(ruri) != nil || t.Parse(target) != nil {
		return false
	}
	if (lost || !sameURI(&ru, &t, true)) && !(len(route) == 0 && atHop(&ru, &t, g.hop[i].AddrPort())) {
		return false
	}
	return nextIsFirst(route, ruri, next)
}

// nextIsFirst reports whether next, a request's next hop, is the first
// of a party's route set route, or the request's Request-URI ruri when
// the party has none (no Route may remain: the request would go where it
// names).
func nextIsFirst(route, ruri, next []byte) bool {
	if len(route) == 0 {
		if len(next) == len(ruri) && (len(next) == 0 || &next[0] == &ruri[0]) {
			return true
		}
		var nx, ru parser.URI
		return nx.Parse(next) == nil && ru.Parse(ruri) == nil && sameURI(&nx, &ru, true)
	}
	fr := firstRouteURI(route)
	if fr == nil {
		return false
	}
	if bytes.Equal(next, fr) {
		return validURI(fr) // the Route as the dialog's requests carry it
	}
	var nx, first parser.URI
	return first.Parse(fr) == nil && nx.Parse(next) == nil && sameURI(&nx, &first, true)
}

// validURI reports whether u parses as a URI: one that does is the same
// URI as a byte-for-byte copy of itself.
func validURI(u []byte) bool {
	var p parser.URI
	return p.Parse(u) == nil
}

// atHop reports whether ru is the target t at the party's first hop: the
// address the proxy itself reaches it at (where its INVITE came from,
// where the answered branch went). A Contact fix_nated_contact rewrote
// names that address; a dialog restored from a row without the relayed
// Contact (the OpenSIPS schema, another node's older copy) still knows it.
func atHop(ru, t *parser.URI, hop netip.AddrPort) bool {
	if !hop.IsValid() {
		return false
	}
	a, ok := parser.ParseIP(ru.Host)
	return ok && a.Unmap() == hop.Addr().Unmap() && portOf(ru) == int(hop.Port()) && sameURI(ru, t, false)
}

// firstRouteURI returns the URI of the first value of a stored route set
// ("<sip:p1;lr>, <sip:p2;lr>"), nil when there is none.
func firstRouteURI(route []byte) []byte {
	quoted := false
	for i := 0; i < len(route); i++ {
		switch c := route[i]; {
		case c == '"':
			quoted = !quoted
		case c == '\\' && quoted:
			i++
		case c == '<' && !quoted:
			for j := i + 1; j < len(route); j++ {
				if route[j] == '>' {
					return route[i+1 : j]
				}
			}
			return nil
		case c == ',' && !quoted:
			return nil // an addr-spec without brackets: a Record-Route has none
		}
	}
	return nil
}

// sameURI compares two URIs as RFC 3261 §19.1.4 does, host and port left
// out without hostPort: the scheme; user and password case-sensitive,
// escapes decoded; the host case-insensitive, IP addresses by value; the
// port, an absent one being the scheme's default; the transport, maddr,
// user, ttl and method parameters present in both or neither, an absent
// transport being the scheme's default; any other parameter in both with
// the same value; the headers. Other schemes: the whole URI ignoring case.
func sameURI(a, b *parser.URI, hostPort bool) bool {
	if a.Scheme != b.Scheme {
		return false
	}
	if a.Scheme != parser.SchemeSIP && a.Scheme != parser.SchemeSIPS {
		return parser.EqualFold(a.Raw, b.Raw)
	}
	if tooManyParams(a) || tooManyParams(b) {
		return bytes.Equal(a.Raw, b.Raw)
	}
	if !sameEscaped(a.User, b.User) || !sameEscaped(a.Password, b.Password) {
		return false
	}
	if hostPort && (!sameHost(a.Host, b.Host) || portOf(a) != portOf(b)) {
		return false
	}
	if !parser.EqualFold(transportOf(a), transportOf(b)) {
		return false
	}
	for _, name := range strictParams {
		va, oka := uriParam(a.Params, name)
		vb, okb := uriParam(b.Params, name)
		if oka != okb || !parser.EqualFold(va, vb) {
			return false
		}
	}
	// A parameter given twice (";x=1;x=2") counts once, with its first
	// value, as uriParam reads b's: comparing each of a's with the first
	// of b's made a URI differ from itself spelt otherwise, and a from b
	// but not b from a. At most maxComparedParams: looking back is cheap.
	for p, at := a.Params, 0; len(p) > 0; {
		var seg []byte
		seg, p = cut(p, ';')
		name, va := cut(seg, '=')
		before := a.Params[:at]
		at += len(seg) + 1
		if _, seen := uriParam(before, name); seen {
			continue
		}
		if vb, ok := uriParam(b.Params, name); ok && !parser.EqualFold(va, vb) {
			return false
		}
	}
	return parser.EqualFold(a.Headers, b.Headers)
}

// maxComparedParams bounds the parameters of a URI that sameURI compares
// one by one: each is looked for among the other URI's, so a Request-URI
// and a Route of 10,000 parameters each, both the sender's, took seconds
// of CPU in ValidateDialog. A phone's URIs have a handful; one with more
// is the same only as its byte-for-byte copy.
const maxComparedParams = 32

func tooManyParams(u *parser.URI) bool {
	return bytes.Count(u.Params, semicolon) >= maxComparedParams
}

var semicolon = []byte{';'}

// strictParams are the URI parameters that must be in both URIs or in
// neither (RFC 3261 §19.1.4), transport aside.
var strictParams = [...][]byte{[]byte("maddr"), []byte("user"), []byte("ttl"), []byte("method")}

var transportName, udp, tcp, tls = []byte("transport"), []byte("udp"), []byte("tcp"), []byte("tls")

// sameEscaped compares two URI parts byte for byte with their %HH
// escapes decoded.
func sameEscaped(a, b []byte) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		x, y := a[i], b[j]
		i++
		j++
		if v, ok := parser.DecodeEscape(a, i-1); ok {
			x = v
			i += 2
		}
		if v, ok := parser.DecodeEscape(b, j-1); ok {
			y = v
			j += 2
		}
		if x != y {
			return false
		}
	}
	return i == len(a) && j == len(b)
}

// sameHost compares two hosts: IP addresses by value ("[2001:DB8::1]" is
// "[2001:db8:0::1]"), names ignoring case.
func sameHost(a, b []byte) bool {
	x, okx := parser.ParseIP(a)
	y, oky := parser.ParseIP(b)
	if okx || oky {
		return okx && oky && x.Unmap() == y.Unmap()
	}
	return parser.EqualFold(a, b)
}

// portOf is u's port, or its scheme's default (5061 for sips or
// transport=tls, 5060 otherwise).
func portOf(u *parser.URI) int {
	if u.Port != 0 {
		return u.Port
	}
	if u.Scheme == parser.SchemeSIPS || parser.EqualFold(transportOf(u), tls) {
		return 5061
	}
	return 5060
}

// transportOf is u's transport parameter, or its scheme's default (tcp
// for sips, udp for sip).
func transportOf(u *parser.URI) []byte {
	if v, ok := uriParam(u.Params, transportName); ok {
		return v
	}
	if u.Scheme == parser.SchemeSIPS {
		return tcp
	}
	return udp
}

// uriParam finds the URI parameter name (ignoring case) in params; a
// parameter without "=" has an empty value.
func uriParam(params, name []byte) ([]byte, bool) {
	for len(params) > 0 {
		var seg []byte
		seg, params = cut(params, ';')
		if n, v := cut(seg, '='); parser.EqualFold(n, name) {
			return v, true
		}
	}
	return nil, false
}

// cut splits b at the first sep: before and after it (nil when there is
// no sep).
func cut(b []byte, sep byte) (before, after []byte) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// messages are parsed copies of what the proxy sent (contactSent).
var messages = sync.Pool{New: func() any { return new(parser.Message) }}

// contactSent returns the first Contact URI of data, a message the proxy
// sent (a view into data), nil when it has none or does not parse.
func contactSent(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	if uri, ok := scanContactURI(data); ok {
		return uri
	}
	m := messages.Get().(*parser.Message)
	var uri []byte
	var na parser.NameAddr
	if m.Parse(data) == nil && m.Contact(&na) {
		uri = na.URI
	}
	messages.Put(m)
	return uri
}

var contactName = []byte("Contact")

// scanContactURI finds the Contact URI of data, a message the proxy sent,
// by its header lines, without parsing the whole message: a full parse of
// the relayed INVITE and of the relayed 2xx, under the shard's lock, cost
// a call more than the rest of what the dialog does with those two
// messages (BenchmarkContactSent). It reads one Contact line holding one
// value; ok is false for anything else (a folded line, a second Contact
// line, a list, a value that does not parse, no end of the headers), and
// contactSent then parses the message. No Contact: nil, true.
func scanContactURI(data []byte) (uri []byte, ok bool) {
	i := indexCRLF(data, 0)
	if i < 0 {
		return nil, false
	}
	var value []byte
	found, inContact := false, false
	for i += 2; ; {
		j := indexCRLF(data, i)
		if j < 0 {
			return nil, false
		}
		line := data[i:j]
		i = j + 2
		if len(line) == 0 {
			break // the end of the headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inContact {
				return nil, false // folded: the parser joins it
			}
			continue
		}
		name, v := cut(line, ':')
		for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
			name = name[:len(name)-1]
		}
		inContact = v != nil && (parser.EqualFold(name, contactName) || len(name) == 1 && name[0]|0x20 == 'm')
		if inContact {
			if found {
				return nil, false
			}
			found, value = true, v
		}
	}
	if !found {
		return nil, true
	}
	na, ok := parser.ParseNameAddr(value)
	if !ok {
		return nil, false
	}
	return na.URI, true
}

// indexCRLF is the index of the CRLF ending the line that starts at i in
// b; -1 when there is none, or the line ends in a bare LF (which the
// parser takes for a line's end too: the scan leaves such a message to
// it).
func indexCRLF(b []byte, i int) int {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 1 || b[i+j-1] != '\r' {
		return -1
	}
	return i + j - 1
}
