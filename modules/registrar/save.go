package registrar

import (
	"bytes"
	"net/netip"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// scratch is per-call working memory, pooled so a REGISTER that refreshes
// existing bindings reuses it.
type scratch struct {
	ob outboundMode // RFC 5626 outbound for this REGISTER (outbound.go)
	// repeat: the request is a retransmission of one applied already
	// whose bindings have gone since (a tombstone said so): it changes
	// nothing.
	repeat bool
	cs     []contactIn
	hdr    []byte
	path   []byte
	ops    []store.BindingOp // the change for the store
	key    [maxAOR]byte
}

// contactIn is one Contact of a REGISTER, validated.
type contactIn struct {
	uri      []byte
	params   []byte // without expires and q, for the 200's Contact list
	instance []byte
	regID    uint32
	q        int16
	expires  int64 // seconds; 0 removes
	nat      bool
	loops    bool // requests to it would come back here (loopsBack)
	idx      int  // index of the existing binding with the same key, -1 if none
}

// OptionTags are the extensions the registrar supports in a REGISTER's
// Require (RFC 3327 Path); others get 420.
var OptionTags = []string{"path", "outbound"}

// SaveOptions say what the route knows about a REGISTER.
type SaveOptions struct {
	// Authenticated: the route checked the REGISTER's credentials for the
	// To AOR (auth.Authorized). Only then is a contact that points
	// elsewhere than the REGISTER's source stored to be reached as given
	// (third-party registration, an edge proxy's Path); from a REGISTER
	// that was not authenticated such a contact is reached through the
	// address the REGISTER came from, whatever the NAT tests say.
	Authenticated bool
	// NAT: the route found the REGISTER behind NAT (nathelper's
	// nat_uac_test, then fix_nated_register): every contact is reached at
	// the address the REGISTER came from and gets NAT keepalives,
	// whatever registrar.nat_tests says of it. A REGISTER with Path is
	// stored as registered all the same: the edge proxy that added the
	// Path faces the phone's NAT, and requests follow the Path.
	NAT bool
}

// Save handles a REGISTER for a served domain (OpenSIPS:
// save("location")): it adds, refreshes or removes the bindings of the
// address-of-record in the To header and answers: 200 with every current
// binding and its remaining expiry, 423 with Min-Expires, 400 for a
// malformed Contact or To, 404 when the To domain is not served, 420 with
// Unsupported for a Require option tag not in OptionTags (§10.3 step 2),
// 503 when the AOR would have more than MaxContacts bindings, 400 for a
// CSeq not above the binding's (RFC 3261 §10.3 step 7), 403 for a contact
// that leads back to this server (loopsBack). It returns the status sent.
//
// Save treats the REGISTER as not authenticated: use SaveWith after the
// route checked its credentials.
func (r *Registrar) Save(c *routing.Ctx) int { return r.SaveWith(c, SaveOptions{}) }

// SaveWith is Save with what the route knows about the request.
func (r *Registrar) SaveWith(c *routing.Ctx, o SaveOptions) int {
	sc := r.scratch.Get().(*scratch)
	code := r.save(c, sc, o)
	r.scratch.Put(sc)
	if code != 200 {
		r.refused.Add(1)
	}
	return code
}

func (r *Registrar) save(c *routing.Ctx, sc *scratch, o SaveOptions) int {
	if !c.CheckRequire(OptionTags...) {
		return 420
	}
	m := c.Msg()
	user, host := c.TUser(), c.TDomain()
	if len(user) == 0 || len(host) == 0 {
		return reply(c, 400, "Bad To Header", nil)
	}
	if !c.IsMyself(host) {
		return reply(c, 404, "Not Found", nil)
	}
	key, ok := aorKey(sc.key[:0], user, host)
	if !ok {
		return reply(c, 400, "Address-of-Record Too Long", nil)
	}
	hdrExp, hasHdrExp := m.Expires()
	callID := m.CallID()
	cseq := m.CSeq().Num
	branch := shards.Sum(m.TopVia().Branch)
	sc.path = pathOf(m, sc.path[:0])
	var lacks bool
	if sc.ob, lacks = outboundOf(c, sc.path); lacks && m.HasToken(parser.HdrRequire, "outbound") {
		return reply(c, 439, "First Hop Lacks Outbound Support", nil)
	}

	// Parse and check every Contact before changing anything: a request
	// is applied whole or not at all.
	sc.cs = sc.cs[:0]
	star := false
	it := m.NameAddrs(parser.HdrContact)
	for it.Next() {
		na := &it.NameAddr
		if na.Star {
			star = true
			continue
		}
		if len(sc.cs) >= r.cfg.MaxContacts+8 {
			return reply(c, 503, "Too Many Registered Contacts", nil)
		}
		var ci contactIn
		u, err := parser.ParseURI(na.URI)
		if err != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) || len(u.Host) == 0 {
			return reply(c, 400, "Bad Contact", nil)
		}
		exp, ok := na.Expires()
		if !ok {
			exp, ok = hdrExp, hasHdrExp
		}
		secs := int64(exp)
		if !ok {
			secs = int64(r.cfg.DefaultExpires.Seconds())
		}
		if secs != 0 && secs < int64(r.cfg.MinExpires.Seconds()) {
			sc.hdr = append(append(sc.hdr[:0], "Min-Expires: "...), strconv.Itoa(int(r.cfg.MinExpires.Seconds()))...)
			sc.hdr = append(sc.hdr, "\r\n"...)
			return reply(c, 423, "Interval Too Brief", sc.hdr)
		}
		secs = min(secs, int64(r.cfg.MaxExpires.Seconds()))
		ci.uri, ci.expires = na.URI, secs
		ci.q = 1000
		if q := na.Q(); q >= 0 {
			ci.q = int16(min(q, 1000))
		}
		ci.instance = na.Instance()
		if !utf8.Valid(ci.instance) {
			// An instance is a URN (RFC 5626 §4.1). Bytes that are not
			// UTF-8 would come back as U+FFFD from Redis on another node
			// (JSON) and from PostgreSQL after a restart (pgText): a
			// binding of another key there.
			return reply(c, 400, "Bad Contact", nil)
		}
		if id := na.RegID(); id > 0 && ci.instance != nil {
			ci.regID = uint32(id)
		}
		ci.params = na.Params
		_, ob := u.Param("ob")
		ci.nat = o.NAT && len(sc.path) == 0 || r.natted(c, &u, ob, ci.regID > 0, len(sc.path) > 0, o.Authenticated)
		ci.loops = loopsBack(c, &u)
		sc.cs = append(sc.cs, ci)
	}
	if it.Err() != nil {
		return reply(c, 400, "Bad Contact", nil)
	}
	if star && (len(sc.cs) > 0 || !hasHdrExp || hdrExp != 0) {
		return reply(c, 400, "Invalid Wildcard Contact", nil)
	}
	for i := range sc.cs {
		// Removing one is allowed: a binding stored before this check
		// existed goes the usual way.
		if sc.cs[i].loops && sc.cs[i].expires > 0 {
			r.loopContacts.Add(1)
			return reply(c, 403, "Contact Loops Back", nil)
		}
	}

	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	s.Lock()
	now := s.Now()
	e := s.Get(h, key)
	if e == nil && (len(sc.cs) > 0 || star) {
		var err error
		if e, err = s.Insert(h, key); err != nil {
			if sc.adds() {
				s.Unlock()
				return reply(c, 503, "Registrar Full", nil)
			}
			// Only removals, of bindings there are not: done, without
			// the tombstone there is no room for.
			e = nil
		}
	}
	wait := false
	sc.hdr = sc.hdr[:0]
	if e != nil {
		v := &e.Value
		var res store.Reservation
		if code, reason, hdr := r.admit(s, e, sc, star, callID, cseq, branch, len(m.UserAgent()), &res); code != 0 {
			if len(v.b) == 0 && len(v.gone) == 0 {
				s.Remove(e)
			}
			s.Unlock()
			return reply(c, code, reason, hdr)
		}
		sc.ops = sc.ops[:0]
		switch {
		case sc.repeat:
			// Applied once, and its bindings went since: the same
			// answer as any retransmission, the bindings as they are.
		case star:
			r.removeAll(v, sc, key, callID, cseq, branch, now)
			s.Charge(e, v.bytes()) // the tombstones
		case len(sc.cs) > 0:
			r.apply(c, v, sc, key, callID, cseq, branch, now)
			// What admit reserved, less what refreshes reused, plus
			// tombstones: bytes the record holds now.
			s.Charge(e, v.bytes())
		}
		wait = r.persist(c, sc, &res, key)
		if !wait {
			sc.hdr = appendContacts(sc.hdr, v.b, now)
		}
		r.schedule(s, e)
	}
	s.Unlock()
	if wait {
		return 200 // sent once the store has committed the change
	}
	sc.hdr = appendPath(sc.hdr, sc.path)
	sc.hdr = r.appendOutbound(sc.hdr, sc.ob)
	return reply(c, 200, "OK", sc.hdr)
}

// admit checks, with the AOR's shard locked and before anything changes,
// that the request may be applied: CSeq order, the contact count, room in
// the store's queue for the change (reserved into res) and the memory cap.
// It returns the refusal (code 0: go on).
func (r *Registrar) admit(s *shards.Shard[record], e *shards.Entry[record], sc *scratch, star bool, callID []byte, cseq uint32, branch uint64, ua int, res *store.Reservation) (int, string, []byte) {
	v := &e.Value
	sc.repeat = false
	if !v.inOrder(sc, star, callID, cseq, branch) {
		return 400, "Out of Order CSeq", nil
	}
	if len(v.gone) > 0 {
		// The Call-ID's bindings that went, and with them their CSeq:
		// a tombstone keeps it (tombstone.go).
		if t := v.tomb(shards.Sum(callID), s.Now()); t != nil {
			switch t.order(cseq, branch) {
			case older:
				return 400, "Out of Order CSeq", nil
			case repeated:
				sc.repeat = true
			}
		}
	}
	if sc.repeat || !star && len(sc.cs) == 0 {
		return 0, "", nil // a query, or a retransmission: nothing changes
	}
	// Match contacts to bindings and check the count.
	count := len(v.b)
	ops := len(v.b) + 1 // "*": a delete per binding, or one for the AOR
	if len(v.b) == 0 {
		ops = 0 // none to delete (a record kept for its tombstones)
	}
	if !star {
		for i := range sc.cs {
			ci := &sc.cs[i]
			ci.idx = v.find(ci.instance, ci.regID, ci.uri)
			switch {
			case ci.idx < 0 && ci.expires > 0:
				count++
			case ci.idx >= 0 && ci.expires == 0:
				count--
			}
		}
		if count > r.cfg.MaxContacts {
			return 503, "Too Many Registered Contacts", nil
		}
		ops = len(sc.cs)
	}
	// Room for every operation of the change, or the change is refused
	// whole: a change half stored (a delete dropped) would come back at
	// the next start.
	if r.w != nil {
		var err error
		if *res, err = r.w.Reserve(ops); err != nil {
			r.storeBusy.Add(1)
			return 503, "Location Store Busy", retryAfter
		}
	}
	// Reserve what new bindings may take before storing them, so the
	// memory cap holds (a refresh reuses its buffers).
	if grow := sc.growth(len(v.b), count, ua, len(callID)); grow > 0 {
		if s.Account(e, v.bytes()+grow) != nil {
			res.Release()
			return 503, "Registrar Full", nil
		}
	}
	return 0, "", nil
}

// loopsBack reports whether a request sent to contact u would come back
// to this server: its host or its maddr is a served domain (a name the
// route's IsMyself knows), or, as an address, one of our listeners with
// the contact's port (another port of our address is another program on
// this host: a phone, a PBX). Such a binding is no device of the
// subscriber's; it makes every call to the AOR spiral back to the
// location lookup and fork again (RFC 5393 §3: eight contacts
// "sip:alice@example.com;x=N" turned one INVITE with Max-Forwards 4 into
// 3,208 relayed to ourselves). Host names are not resolved: a name that
// is no served domain and resolves to us is left to Lookup's spiral rule.
func loopsBack(c *routing.Ctx, u *parser.URI) bool {
	proto := transport.UDP // for the default port: 5061 for TLS, else 5060
	if u.Scheme == parser.SchemeSIPS || parser.EqualFold(u.Transport(), []byte("tls")) {
		proto = transport.TLS
	}
	for _, host := range [2][]byte{u.Host, u.MAddr()} {
		if len(host) == 0 {
			continue
		}
		if _, isIP := parser.ParseIP(host); !isIP && c.IsMyself(host) {
			return true
		}
		if c.R.SendsToUs(host, u.Port, proto) {
			return true
		}
	}
	return false
}

// adds reports whether the request adds or refreshes a contact.
func (sc *scratch) adds() bool {
	for i := range sc.cs {
		if sc.cs[i].expires > 0 {
			return true
		}
	}
	return false
}

// pathOf appends the values of the Path headers, comma separated.
func pathOf(m *parser.Message, dst []byte) []byte {
	for i, n := 0, m.NumHeaders(); i < n; i++ {
		if h := m.HeaderAt(i); h.Name == parser.HdrPath {
			if len(dst) > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, h.Value...)
		}
	}
	return dst
}

// retryAfter goes with a 503 that a retry a little later will get past.
var retryAfter = []byte("Retry-After: 5\r\n")

// appendPath echoes the REGISTER's Path in the 200 (RFC 3327 §5.3).
func appendPath(dst, path []byte) []byte {
	if len(path) == 0 {
		return dst
	}
	return append(append(append(dst, "Path: "...), path...), "\r\n"...)
}

// growth estimates the bytes new bindings need: 0 when the count does not
// grow (refreshes and replacements reuse buffers).
func (sc *scratch) growth(have, count, ua, callID int) int {
	if count <= have {
		return 0
	}
	n := 0
	for i := range sc.cs {
		ci := &sc.cs[i]
		if ci.expires > 0 {
			n += len(ci.uri) + len(ci.params) + len(ci.instance) + len(sc.path) + ua + callID
		}
	}
	return n + (count-have)*int(unsafe.Sizeof(binding{}))
}

// apply changes the bindings of v as sc.cs says. The shard is locked.
func (r *Registrar) apply(c *routing.Ctx, v *record, sc *scratch, key, callID []byte, cseq uint32, branch uint64, now int64) {
	m := c.Msg()
	removes := false
	for i := range sc.cs {
		ci := &sc.cs[i]
		// A request that removes a contact leaves a tombstone, even when
		// it found nothing to remove: its retransmission after a newer
		// REGISTER bound the contact again must not remove that.
		removes = removes || ci.expires == 0
		// Indexes may have moved when an earlier contact removed a
		// binding: look again.
		idx := v.find(ci.instance, ci.regID, ci.uri)
		if idx >= 0 {
			b := &v.b[idx]
			if b.order(callID, cseq, branch) == repeated {
				continue // a retransmission, or the same contact twice
			}
			if ci.expires == 0 {
				r.buryBinding(v, b, now)
				r.persistDelete(sc, key, b)
				r.raiseContact(modules.EventContactDelete, key, b, now, goneUnregistered)
				v.remove(idx)
				r.removed.Add(1)
				continue
			}
			if !bytes.Equal(b.callID, callID) {
				// Taken over by another Call-ID (a phone restarted, an
				// instance on a new contact): the old one's requests
				// must not take it back.
				r.buryBinding(v, b, now)
			}
		}
		event := modules.EventContactUpdate
		if idx < 0 {
			if ci.expires == 0 {
				continue
			}
			event = modules.EventContactInsert
			if len(v.b) < cap(v.b) {
				v.b = v.b[:len(v.b)+1]
			} else {
				v.b = append(v.b, binding{})
			}
			idx = len(v.b) - 1
		}
		b := &v.b[idx]
		b.contact = append(b.contact[:0], ci.uri...)
		b.params = appendParams(b.params[:0], ci.params)
		b.callID = append(b.callID[:0], callID...)
		b.instance = append(b.instance[:0], ci.instance...)
		b.path = append(b.path[:0], sc.path...)
		b.ua = append(b.ua[:0], m.UserAgent()...)
		b.src = c.R.Src
		b.proto = c.R.Proto
		b.flow = c.R.Conn
		b.outbound = sc.ob == outboundHere && ci.regID > 0
		// This node holds the flow now, whoever held it before.
		b.node, b.remote, b.flowName = "", false, ""
		b.socket = netip.AddrPort{}
		if l := c.R.Listener; l != nil {
			b.socket = l.Local
		}
		b.nat = ci.nat
		b.pingFails = 0
		b.q = ci.q
		b.regID = ci.regID
		b.cseq = cseq
		b.branch = branch
		b.hopProto, b.hop, _ = pathHop(b.path)
		b.expires = now + ci.expires*1000
		b.modified = now
		r.persistUpsert(sc, key, b)
		r.saved.Add(1)
		r.raiseContact(event, key, b, now, "")
	}
	if removes {
		v.bury(callID, cseq, branch, now+goneFor, r.maxGone())
	}
}

// removeAll handles "Contact: *" with Expires 0: every binding goes but
// one the request is a retransmission for (inOrder refused the request if
// a binding of its Call-ID has a higher CSeq). Each binding that goes,
// and the request itself, leave a tombstone.
func (r *Registrar) removeAll(v *record, sc *scratch, key, callID []byte, cseq uint32, branch uint64, now int64) {
	keep := func(b *binding) bool { return b.order(callID, cseq, branch) == repeated }
	kept := 0
	for i := range v.b {
		if keep(&v.b[i]) {
			kept++
		}
	}
	if kept == 0 && len(v.b) > 0 {
		r.persistDeleteAOR(sc, key)
	}
	for i := 0; i < len(v.b); {
		if keep(&v.b[i]) {
			i++
			continue
		}
		if kept > 0 {
			r.persistDelete(sc, key, &v.b[i])
		}
		r.buryBinding(v, &v.b[i], now)
		r.raiseContact(modules.EventContactDelete, key, &v.b[i], now, goneUnregistered)
		v.remove(i)
		r.removed.Add(1)
	}
	v.bury(callID, cseq, branch, now+goneFor, r.maxGone())
}

// Where a request stands against a binding of the same key (RFC 3261
// §10.3 steps 6 and 7).
const (
	newer    = iota // another Call-ID, or a higher CSeq: apply it
	repeated        // the same Call-ID, CSeq and branch: a retransmission
	older           // the same Call-ID and a lower CSeq, or the same CSeq in another request
)

// order compares a request (Call-ID, CSeq, hash of its Via branch) with b.
// A binding loaded from the store has no branch (0): a request with its
// CSeq is taken for a retransmission that straddled the restart.
func (b *binding) order(callID []byte, cseq uint32, branch uint64) int {
	switch {
	case !bytes.Equal(b.callID, callID) || cseq > b.cseq:
		return newer
	case cseq == b.cseq && (b.branch == branch || b.branch == 0):
		return repeated
	}
	return older
}

// inOrder reports whether the request may change the bindings: none of
// those it touches (every one for "*") has its Call-ID with a higher CSeq,
// or with the same CSeq from another request. RFC 3261 §10.3 step 7: "If
// not, the update MUST be aborted and the request fails"; the request is
// checked whole before anything changes. A retransmission (same CSeq and
// branch) is in order and changes nothing.
func (v *record) inOrder(sc *scratch, star bool, callID []byte, cseq uint32, branch uint64) bool {
	if star {
		for i := range v.b {
			if v.b[i].order(callID, cseq, branch) == older {
				return false
			}
		}
		return true
	}
	for i := range sc.cs {
		ci := &sc.cs[i]
		if j := v.find(ci.instance, ci.regID, ci.uri); j >= 0 && v.b[j].order(callID, cseq, branch) == older {
			return false
		}
	}
	return true
}

// find returns the index of the binding with the key of (instance,
// regID) when instance is set, else of uri; -1 when there is none.
func (v *record) find(instance []byte, regID uint32, uri []byte) int {
	for i := range v.b {
		b := &v.b[i]
		if len(instance) > 0 {
			if b.regID == regID && bytes.Equal(b.instance, instance) {
				return i
			}
		} else if len(b.instance) == 0 && bytes.Equal(b.contact, uri) {
			return i
		}
	}
	return -1
}

// remove drops binding i, keeping every binding's buffers for reuse.
func (v *record) remove(i int) {
	last := len(v.b) - 1
	v.b[i], v.b[last] = v.b[last], v.b[i]
	v.b = v.b[:last]
}

// appendContacts writes the 200's Contact lines: every binding with its
// remaining expiry (RFC 3261 §10.3 step 8).
func appendContacts(dst []byte, bs []binding, now int64) []byte {
	for i := range bs {
		b := &bs[i]
		dst = append(dst, "Contact: <"...)
		dst = append(dst, b.contact...)
		dst = append(dst, '>')
		if len(b.params) > 0 {
			dst = append(dst, ';')
			dst = append(dst, b.params...)
		}
		dst = append(dst, ";expires="...)
		dst = strconv.AppendInt(dst, max(0, (b.expires-now+999)/1000), 10)
		if b.q != 1000 {
			dst = append(dst, ";q="...)
			dst = appendQ(dst, b.q)
		}
		dst = append(dst, "\r\n"...)
	}
	return dst
}

func appendQ(dst []byte, q int16) []byte {
	if q >= 1000 {
		return append(dst, '1')
	}
	dst = append(dst, '0', '.')
	d := []byte{byte('0' + q/100), byte('0' + q/10%10), byte('0' + q%10)}
	n := 3
	for n > 1 && d[n-1] == '0' {
		n--
	}
	return append(dst, d[:n]...)
}

// appendParams copies contact parameters except expires and q, which the
// registrar writes itself.
func appendParams(dst, params []byte) []byte {
	for len(params) > 0 {
		end := paramEnd(params)
		p := bytes.TrimSpace(params[:end])
		name := p
		if i := bytes.IndexByte(p, '='); i >= 0 {
			name = bytes.TrimSpace(p[:i])
		}
		if len(p) > 0 && !parser.EqualFold(name, []byte("expires")) && !parser.EqualFold(name, []byte("q")) {
			if len(dst) > 0 {
				dst = append(dst, ';')
			}
			dst = append(dst, p...)
		}
		if end == len(params) {
			break
		}
		params = params[end+1:]
	}
	return dst
}

// paramEnd returns the index of the next ';' outside a quoted string.
func paramEnd(p []byte) int {
	quoted := false
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ';':
			if !quoted {
				return i
			}
		}
	}
	return len(p)
}

// aorKey writes "user@host" with the host lower-cased into dst.
func aorKey(dst, user, host []byte) ([]byte, bool) {
	if len(user)+1+len(host) > maxAOR {
		return dst, false
	}
	dst = append(dst, user...)
	dst = append(dst, '@')
	for _, ch := range host {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		dst = append(dst, ch)
	}
	return dst, true
}

// reply answers a REGISTER statelessly (as OpenSIPS save() does through
// sl): saving again on a retransmission gives the same bindings, while a
// transaction kept per REGISTER for 64·T1 cost about 8 KB each, 2 GB at
// 8,000 registrations a second.
func reply(c *routing.Ctx, code int, reason string, hdrs []byte) int {
	c.ReplyStateless(code, reason, hdrs)
	return code
}

// destination returns where requests to b go when it is not the contact
// itself: the address its REGISTER came from for a phone behind NAT (or a
// REGISTER that was not authenticated, see natted) and over a connection
// (RFC 5626: the flow); the first Path hop when an edge proxy added Path
// (its source when that hop is not an IP address).
func (b *binding) destination() (transport.Proto, netip.AddrPort, bool) {
	switch {
	case !b.src.IsValid():
		if b.hop.IsValid() {
			return b.hopProto, b.hop, true
		}
		return 0, netip.AddrPort{}, false
	case b.nat:
		return b.proto, b.src, true
	case len(b.path) > 0:
		if b.hop.IsValid() {
			return b.hopProto, b.hop, true
		}
		return b.proto, b.src, true
	case b.proto.Stream():
		return b.proto, b.src, true
	}
	return 0, netip.AddrPort{}, false
}
