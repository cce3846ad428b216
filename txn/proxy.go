package txn

import (
	"bytes"
	"crypto/subtle"
	"net"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/sipdns"
	"switchboard/transport"
)

func msDur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// Branch parameters. Every branch starts with "z9hG4bK" and six random
// characters chosen per process, then the loop-detection hash (§16.6 step
// 8: the fields that decide routing), then either the transaction part
// (hash of the server key, transaction id, branch index, attempt) or, for
// stateless forwarding, "s" and a hash of the incoming branch (§16.11).
// The attempt counts the targets a branch failed over to (RFC 3263 §4.3):
// each is a new client transaction, so it gets a new branch, and a late
// response from a target given up is told apart.
const (
	prefixLen    = 13
	loopEnd      = prefixLen + 8
	statefulLen  = loopEnd + 16 + 8 + 2
	statelessLen = loopEnd + 1 + 16
)

func (c *Core) appendBranch(dst []byte, loop uint32, h uint64, id uint32, idx, att int) []byte {
	dst = append(dst, c.prefix[:]...)
	dst = appendHex(dst, uint64(loop), 8)
	dst = appendHex(dst, h, 16)
	dst = appendHex(dst, uint64(id), 8)
	return append(dst, hexDigits[idx&15], hexDigits[att&15])
}

// mayForward reports whether a response that matched no transaction, its
// top Via ours with branch, is ours to forward per its next Via v
// (§16.7): the response to a request we forwarded statelessly (the
// branch's MAC verifies), or a 2xx to an INVITE whose transaction ended
// (the late 2xx §16.7 forwards; RFC 6026 keeps the transaction 32 s after
// the first). Anything else, a branch we never made, is made up to have
// us send its bytes where its second Via says.
func (c *Core) mayForward(branch []byte, v *parser.Via, m *parser.Message) bool {
	if c.statelessBranchOf(branch, v, m) {
		return true
	}
	_, _, _, _, ok := c.parseBranch(branch)
	code := m.StatusCode()
	return ok && m.CSeq().Method == parser.MethodInvite && code >= 200 && code < 300
}

// statelessBranchOf reports whether branch is the one a stateless forward
// of ours gives a request that came with Via v (appendViaMAC).
func (c *Core) statelessBranchOf(branch []byte, v *parser.Via, m *parser.Message) bool {
	if len(branch) != statelessLen || string(branch[:prefixLen]) != string(c.prefix[:]) || branch[loopEnd] != 's' {
		return false
	}
	var mac [16]byte
	return subtle.ConstantTimeCompare(c.sigs.appendViaMAC(mac[:0], v, m), branch[loopEnd+1:]) == 1
}

// parseBranch decodes a branch this process generated statefully.
func (c *Core) parseBranch(b []byte) (h uint64, id uint32, idx, att int, ok bool) {
	if len(b) != statefulLen || string(b[:prefixLen]) != string(c.prefix[:]) {
		return 0, 0, 0, 0, false
	}
	h, ok1 := parseHex(b[loopEnd : loopEnd+16])
	v, ok2 := parseHex(b[loopEnd+16 : loopEnd+24])
	i, ok3 := parseHex(b[loopEnd+24 : loopEnd+25])
	a, ok4 := parseHex(b[loopEnd+25:])
	return h, uint32(v), int(i), int(a), ok1 && ok2 && ok3 && ok4
}

// loopHash hashes the fields whose change makes a returning request a
// spiral rather than a loop (§16.6 step 8, §16.3 step 4): Request-URI,
// From and To tags, Call-ID, CSeq number, Route, Proxy-Require and
// Proxy-Authorization.
func loopHash(m *parser.Message) uint32 {
	var d xxhash.Digest
	d.Reset()
	d.Write(m.RequestURI())
	d.Write([]byte{0})
	d.Write(m.FromTag())
	d.Write([]byte{0})
	d.Write(m.ToTag())
	d.Write([]byte{0})
	d.Write(m.CallID())
	n := m.CSeq().Num
	d.Write([]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	for i := 0; i < m.NumHeaders(); i++ {
		hd := m.HeaderAt(i)
		switch hd.Name {
		case parser.HdrRoute, parser.HdrProxyRequire, parser.HdrProxyAuthorization:
			d.Write(hd.Value)
			d.Write([]byte{0})
		}
	}
	return uint32(d.Sum64())
}

// isLoop computes the request's loop hash into x.loop and reports whether
// a Via of ours carries the same hash: the request came back unchanged
// (482), as opposed to a spiral.
func (c *Core) isLoop(x *ctx, m *parser.Message) bool {
	x.loop = loopHash(m)
	it := m.Vias()
	for it.Next() {
		v := &it.Via
		b := v.Branch
		if len(b) < loopEnd || string(b[:prefixLen]) != string(c.prefix[:]) {
			continue
		}
		if !c.isUsHostPort(v.Host, v.Port, v.Transport) {
			continue
		}
		if l, ok := parseHex(b[prefixLen:loopEnd]); ok && uint32(l) == x.loop {
			return true
		}
	}
	return false
}

func protoFromBytes(b []byte, def transport.Proto) transport.Proto {
	switch {
	case len(b) == 0:
		return def
	case parser.EqualFold(b, []byte("udp")):
		return transport.UDP
	case parser.EqualFold(b, []byte("tcp")):
		return transport.TCP
	case parser.EqualFold(b, []byte("tls")):
		return transport.TLS
	case parser.EqualFold(b, []byte("ws")):
		return transport.WS
	case parser.EqualFold(b, []byte("wss")):
		return transport.WSS
	}
	return def
}

func defaultPort(p transport.Proto) int {
	if p == transport.TLS {
		return 5061
	}
	return 5060
}

// isUsHostPort reports whether host:port names one of our listeners: its
// advertised host and port, or its bound address.
func (c *Core) isUsHostPort(host []byte, port int, tp []byte) bool {
	if port == 0 {
		port = defaultPort(protoFromBytes(tp, transport.UDP))
	}
	ip, isIP := parser.ParseIP(host)
	for _, l := range c.ls.Listeners() {
		if int(l.AdvertisedPort) == port && parser.EqualFold(host, unsafe.Slice(unsafe.StringData(l.AdvertisedHost), len(l.AdvertisedHost))) {
			return true
		}
		if isIP && int(l.Local.Port()) == port && l.Local.Addr().Unmap() == ip.Unmap() {
			return true
		}
	}
	return false
}

// isOwnAddr reports whether a message sent to dst would reach one of our
// own listeners: its bound address and port, or its advertised address and
// port. A listener bound to the unspecified address also receives what is
// sent on its port to a loopback address or to an address of the host's
// interfaces, and sending to the unspecified address reaches the local
// host.
func (c *Core) isOwnAddr(dst netip.AddrPort) bool {
	a, port := dst.Addr().Unmap(), dst.Port()
	for _, l := range c.ls.Listeners() {
		if l.Local.Port() == port {
			la := l.Local.Addr().Unmap()
			if la == a || a.IsUnspecified() || la.IsUnspecified() && (a.IsLoopback() || slices.Contains(c.hostAddrs, a)) {
				return true
			}
		}
		if l.AdvertisedPort == port {
			if ip, ok := parser.ParseIP(unsafe.Slice(unsafe.StringData(l.AdvertisedHost), len(l.AdvertisedHost))); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// wildcardHostAddrs returns the addresses of the host's interfaces when a
// listener is bound to the unspecified address (nil otherwise, or when
// they cannot be read). Read once: an address added later is not known.
func wildcardHostAddrs(ls []*transport.Listener) []netip.Addr {
	wild := false
	for _, l := range ls {
		wild = wild || l.Local.Addr().IsUnspecified()
	}
	if !wild {
		return nil
	}
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// isUsURI reports whether a SIP URI points at us.
func (c *Core) isUsURI(uri []byte) bool {
	ours, _, _ := c.ourRoute(uri)
	return ours
}

// hop is where a request for a URI goes (§16.6 step 7, RFC 3263 §4): the
// host (maddr first), the port (0 when the URI has none), the transport
// (its parameter, or UDP, or TLS for sips) and whether the URI named it.
type hop struct {
	proto    transport.Proto
	host     []byte
	port     int
	protoSet bool
	secure   bool
}

// portOrDefault is the port to use for an IP literal.
func (h *hop) portOrDefault() int {
	if h.port == 0 {
		return defaultPort(h.proto)
	}
	return h.port
}

func nextHop(uri []byte) (h hop, ok bool) {
	var u parser.URI
	if u.Parse(uri) != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) {
		return hop{}, false
	}
	h.secure = u.Scheme == parser.SchemeSIPS
	h.proto = transport.UDP
	if h.secure {
		h.proto = transport.TLS
	}
	if tp := u.Transport(); len(tp) > 0 {
		h.proto = protoFromBytes(tp, h.proto)
		h.protoSet = true
	}
	h.host = u.Host
	if ma := u.MAddr(); len(ma) > 0 {
		h.host = ma
	}
	h.port = u.Port
	return h, len(h.host) > 0
}

// preprocessRoutes does §16.4 once per request: count the Route values,
// find our own at the top, detect a strict router before us, and classify
// the Route set (RouteKind), checking the signature of our values.
func (c *Core) preprocessRoutes(r *Request) {
	st := r.st
	if st.routed {
		return
	}
	st.routed = true
	st.down, st.dlgx = false, st.dlgx[:0]
	m := r.Msg
	it := m.NameAddrs(parser.HdrRoute)
	n, skip, top := 0, 0, true
	valid, bad := false, false
	var last, lastOurs []byte
	lastSigned := false
	for it.Next() {
		n++
		last = it.NameAddr.URI
		if !top {
			continue
		}
		ours, sig, extra := c.ourRoute(it.NameAddr.URI)
		if !ours {
			top = false
			continue
		}
		skip++
		lastOurs, lastSigned = it.NameAddr.URI, sig != nil
		if sig != nil {
			if ok, down := c.sigs.verifyExtra(sig, m, extra); !ok {
				bad = true
			} else if !valid {
				valid = true
				st.down = down
				st.dlgx = append(st.dlgx[:0], extra...)
			}
		}
	}
	st.nroutes, st.skip, st.strict = n, skip, false
	switch {
	case n == 0:
		st.kind = RouteNone
	case skip == 0:
		st.kind = RouteForeign
		if ours, sig, extra := c.ourRoute(m.RequestURI()); ours && sig != nil {
			// The previous hop was a strict router: the Request-URI is the
			// Record-Route value we left (it carries our signature); the
			// real target is the last Route.
			st.strict = true
			if !st.rsetSet {
				// Not when the route chose the target and its route set
				// (SetRouteSet): read again after its edits, the
				// request keeps the Request-URI the route gave it.
				st.ruri = append(st.ruri[:0], last...)
				st.ruriSet = true
			}
			st.kind = RouteForged
			if ok, down := c.sigs.verifyExtra(sig, m, extra); ok {
				st.kind = RouteDialog
				st.down = down
				st.dlgx = append(st.dlgx[:0], extra...)
			}
		}
	case bad:
		st.kind = RouteForged
	case valid:
		st.kind = RouteDialog
	case skip == n:
		st.kind = RouteLocal
	default:
		st.kind = RouteForged // unsigned values of ours leading elsewhere
	}
	if skip > 0 {
		c.routeFlow(r, lastOurs, lastSigned)
	}
}

// routeEdits removes our Route entries (and the last one after a strict
// router) from the copy being edited.
func (c *Core) routeEdits(x *ctx, ed *parser.Editor, st *routeState, m *parser.Message) {
	if st.rsetSet {
		// The route's route set in place of every value (SetRouteSet).
		ed.RemoveHeaders(parser.HdrRoute)
		if len(st.rset) > 0 {
			ed.AddHeader("Route", st.rset)
		}
		return
	}
	from, to := st.skip, st.nroutes
	if st.strict {
		to--
	}
	switch {
	case from == 0 && to == st.nroutes:
	case from == 1 && to == st.nroutes:
		ed.RemoveFirstRoute()
	default:
		// Several values, possibly sharing lines: rewrite the Route set as
		// one line holding what remains, in order.
		ed.RemoveHeaders(parser.HdrRoute)
		x.rt = x.rt[:0]
		it := m.NameAddrs(parser.HdrRoute)
		for i := 0; it.Next(); i++ {
			if i < from || i >= to {
				continue
			}
			if len(x.rt) > 0 {
				x.rt = append(x.rt, ", "...)
			}
			x.rt = append(x.rt, it.NameAddr.Raw...)
		}
		if len(x.rt) > 0 {
			ed.AddHeader("Route", x.rt)
		}
	}
}

func looseURI(uri []byte) bool {
	var u parser.URI
	return u.Parse(uri) == nil && u.LR()
}

// strictRouteEdits rewrites the Route set for a strict next hop: the
// values after it, then the target URI.
func strictRouteEdits(x *ctx, ed *parser.Editor, st *routeState, m *parser.Message, target []byte) {
	to := st.nroutes
	if st.strict {
		to--
	}
	ed.RemoveHeaders(parser.HdrRoute)
	x.rt = x.rt[:0]
	if st.rsetSet {
		if _, rest := splitRouteSet(st.rset); len(rest) > 0 {
			x.rt = append(x.rt, rest...)
			x.rt = append(x.rt, ", "...)
		}
		to = 0 // none of the message's
	}
	it := m.NameAddrs(parser.HdrRoute)
	for i := 0; it.Next(); i++ {
		if i <= st.skip || i >= to {
			continue
		}
		x.rt = append(x.rt, it.NameAddr.Raw...)
		x.rt = append(x.rt, ", "...)
	}
	x.rt = append(x.rt, '<')
	x.rt = append(x.rt, target...)
	x.rt = append(x.rt, '>')
	ed.AddHeader("Route", x.rt)
}

// firstRoute returns the URI of the first Route value left after
// preprocessing, nil if none.
func firstRoute(st *routeState, m *parser.Message) []byte {
	if st.rsetSet {
		uri, _ := splitRouteSet(st.rset)
		return uri
	}
	to := st.nroutes
	if st.strict {
		to--
	}
	if st.skip >= to {
		return nil
	}
	it := m.NameAddrs(parser.HdrRoute)
	for i := 0; it.Next(); i++ {
		if i == st.skip {
			return it.NameAddr.URI
		}
	}
	return nil
}

// splitRouteSet returns the URI of the first value of a route set as a
// Route line holds it (name-addrs joined by commas; SetRouteSet), nil
// when it has none or the value is not in angle brackets (a Route value
// always is), and the values after it.
func splitRouteSet(set []byte) (uri, rest []byte) {
	quoted := false
	for i := 0; i < len(set); i++ {
		switch c := set[i]; {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == ',':
			return nil, nil
		case c == '<':
			j := bytes.IndexByte(set[i+1:], '>')
			if j < 0 {
				return nil, nil
			}
			uri = set[i+1 : i+1+j]
			// The value's parameters, up to the comma that ends it.
			for k := i + 2 + j; k < len(set); k++ {
				switch set[k] {
				case '"':
					if q := bytes.IndexByte(set[k+1:], '"'); q >= 0 {
						k += 1 + q
					}
				case ',':
					return uri, bytes.TrimLeft(set[k+1:], " \t\r\n")
				}
			}
			return uri, nil
		}
	}
	return nil, nil
}

// viaReceived adds received and rport to the incoming top Via (§18.2.1,
// RFC 3581).
// force adds rport with its value to a Via that has none (ForceRPort).
func viaReceived(x *ctx, ed *parser.Editor, m *parser.Message, src netip.AddrPort, force bool) {
	v := m.TopVia()
	a := src.Addr().Unmap()
	ip, isIP := parser.ParseIP(v.Host)
	var recv []byte
	// A received parameter the sender wrote itself is replaced too: kept,
	// the responses of a stateless forward would go where it says.
	if !isIP || ip.Unmap() != a || v.HasRPort || force || v.Received != nil {
		x.recv = a.AppendTo(x.recv[:0])
		recv = x.recv
	}
	rport := 0
	if v.HasRPort {
		rport = int(src.Port())
	}
	if recv != nil || rport > 0 {
		ed.SetViaReceived(recv, rport)
	}
	if force && !v.HasRPort {
		ed.AddViaRPort(int(src.Port()))
	}
}

func appendHostPort(dst []byte, l *transport.Listener) []byte {
	dst = append(dst, l.AdvertisedHost...)
	dst = append(dst, ':')
	return appendUint(dst, uint64(l.AdvertisedPort))
}

func appendVia(dst []byte, l *transport.Listener, branch func([]byte) []byte) []byte {
	dst = append(dst, "SIP/2.0/"...)
	dst = append(dst, l.Proto.String()...)
	dst = append(dst, ' ')
	dst = appendHostPort(dst, l)
	dst = append(dst, ";branch="...)
	return branch(dst)
}

// appendRR appends our Record-Route value for listener l with the route's
// parameters extra, signed with sig (see routesig.go).
func appendRR(dst []byte, l *transport.Listener, extra, sig []byte) []byte {
	dst = append(dst, "<sip:"...)
	dst = appendHostPort(dst, l)
	if l.Proto != transport.UDP {
		dst = append(dst, ";transport="...)
		switch l.Proto {
		case transport.TCP:
			dst = append(dst, "tcp"...)
		case transport.TLS:
			dst = append(dst, "tls"...)
		case transport.WSS:
			dst = append(dst, "wss"...)
		default:
			dst = append(dst, "ws"...)
		}
	}
	dst = append(dst, ";lr"...)
	dst = append(dst, extra...)
	dst = append(dst, ";"+routeSigParam+"="...)
	dst = append(dst, sig...)
	return append(dst, '>')
}

// proxyEdits adds the §16.6 edits common to stateful and stateless
// forwarding to ed: Request-URI, Route, received/rport, our Via,
// Max-Forwards, Record-Route. x.via must hold the Via value.
//
// outFlow is the flow the request goes over (0: none): the Record-Route
// value facing it names it, as the one facing the sender names the
// sender's flow (flow.go).
func (c *Core) proxyEdits(x *ctx, ed *parser.Editor, r *Request, m *parser.Message, uri []byte, out *transport.Listener, outFlow transport.ConnID) {
	st := r.st
	ed.UseReserve() // a stateless forward's route may have taken every edit
	if hop := firstRoute(st, m); hop != nil && !looseURI(hop) {
		// §16.6 step 6: the next hop is a strict router. It gets its own
		// URI as the Request-URI; the target goes to the end of Route.
		ed.SetRequestURI(hop)
		strictRouteEdits(x, ed, st, m, uri)
	} else {
		if !bytes.Equal(uri, m.RequestURI()) {
			ed.SetRequestURI(uri)
		}
		c.routeEdits(x, ed, st, m)
	}
	viaReceived(x, ed, m, r.Src, st.rport)
	ed.InsertVia(x.via)
	ed.DecrementMaxForwards()
	if st.path && m.Method() == parser.MethodRegister {
		c.addPath(x, ed, r, m, out)
	}
	inFlow := transport.ConnID(0)
	if m.Method() != parser.MethodAck && m.Method() != parser.MethodCancel {
		if inFlow = uaFlow(r, m); inFlow != 0 && dialogForming(m.Method()) {
			st.rr = true // RFC 5626 §5.3: the edge proxy of a flow must stay on the path
		}
	}
	if st.rr && m.Method() != parser.MethodAck && m.Method() != parser.MethodCancel {
		in := r.Listener
		if in != nil && (inFlow != 0 || outFlow != 0) {
			// A flow token names one side's connection: each side gets
			// its own value, the one facing the next hop on top.
			c.flowRecordRoutes(x, ed, m, in, out, st.rrx, inFlow, outFlow)
			return
		}
		x.sig = c.sigs.appendSigExtra(x.sig[:0], m.CallID(), m.FromTag(), st.rrx)
		x.rr = appendRR(x.rr[:0], out, st.rrx, x.sig)
		n := len(x.rr)
		if in != nil && in != out && (in.Proto != out.Proto || in.AdvertisedHost != out.AdvertisedHost || in.AdvertisedPort != out.AdvertisedPort) {
			// Double Record-Route (RFC 5658): the side facing the next hop
			// on top, the side facing the previous hop below.
			x.rr = appendRR(x.rr, in, st.rrx, x.sig)
			ed.InsertRecordRoute(x.rr[:n])
			ed.InsertRecordRoute(x.rr[n:])
		} else {
			ed.InsertRecordRoute(x.rr[:n])
		}
	}
}

// applyRouteEdits writes the route's Editor changes into the transaction's
// request, so every branch (serial ones too) carries them.
func (c *Core) applyRouteEdits(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request) error {
	t := &e.Value
	if !r.st.edUsed {
		return nil
	}
	r.st.edUsed = false
	t.buf2 = r.editor().AppendTo(t.buf2[:0])
	t.buf, t.buf2 = t.buf2, t.buf
	old := &x.aux
	*old = t.msg // views into t.buf2 now, which stays as it is until the next edits
	if err := t.msg.Parse(t.buf); err != nil {
		// The route's edits made the request unparsable: keep the original.
		t.buf, t.buf2 = t.buf2, t.buf
		t.msg.Parse(t.buf)
		return err
	}
	t.msg.SetSource(t.src, r.st.rport) // Parse forgot it
	t.keepOriginal(old, &t.msg)
	r.st.routed = false
	s.Charge(e, t.owned())
	return nil
}

// relay sends the branches Relay asks for. The shard is locked.
func (c *Core) relay(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request) error {
	t := &e.Value
	switch {
	case t.finalSent:
		return ErrFinal
	case t.canceled:
		return ErrCanceled
	case t.got6xx || t.got2xx:
		return ErrFinal // §16.7 step 5: no new branches after a 6xx
	}
	if t.relayed && !t.inFailure && t.qi >= t.nq && t.pending > 0 {
		return ErrRelayed // a second Relay with nothing new to send
	}
	if err := c.applyRouteEdits(x, s, e, r); err != nil {
		return err
	}
	c.preprocessRoutes(r)
	if !t.finalSent {
		s.StopTimer(&t.tH) // the suspended-route deadline, if any
	}
	first := !t.relayed
	if first {
		c.trying(x, s, e)
	}
	if t.inFailure {
		t.step = t.nbr // the branches started now are the failure route's next step
	}
	t.relayed = true
	ok, tried := 0, 0
	try := func(uri []byte, main bool) {
		tried++
		if c.startBranch(x, s, e, r, uri, main) {
			ok++
		}
	}
	switch {
	case first:
		try(r.RequestURI(), true)
		for !r.st.serial && t.qi < t.nq {
			q := t.queue[t.qi]
			t.qi++
			try(t.uris[q.off:q.off+q.n], false)
		}
	case t.qi < t.nq:
		for t.qi < t.nq {
			q := t.queue[t.qi]
			t.qi++
			try(t.uris[q.off:q.off+q.n], false)
			if r.st.serial {
				break
			}
		}
	default:
		try(r.RequestURI(), true)
	}
	if ok == 0 {
		return ErrSend
	}
	return nil
}

// startBranch creates a branch to uri and sends it, or starts resolving
// its next hop. It returns false when the branch failed at once (it then
// holds 503, or is not created when there is no free slot).
func (c *Core) startBranch(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request, uri []byte, main bool) bool {
	t := &e.Value
	if t.nbr >= MaxBranches {
		return false
	}
	b := t.newBranch()
	b.state, b.code, b.gotProv, b.cancelWant, b.cancelSent, b.cancelAcked, b.destSet = bCalling, 0, false, false, false, false, false
	b.conn = 0
	b.fo = failover{}
	b.uri = append(b.uri[:0], uri...)
	b.host = b.host[:0]
	t.pending++
	if main && r.st.flowSet {
		b.conn, b.destSet = r.st.flow, true
	} else if main && r.st.destSet {
		b.proto, b.dst, b.destSet = r.st.proto, r.st.dst, true
	} else {
		uri := firstRoute(r.st, &t.msg)
		if main && r.st.hopSet {
			uri = r.st.hop
		} else if uri == nil {
			uri = b.uri
		}
		h, ok := nextHop(uri)
		if !ok {
			c.branchFailed(s, e, b, 503)
			return false
		}
		b.proto = h.proto
		if ip, isIP := parser.ParseIP(h.host); isIP {
			b.dst = netip.AddrPortFrom(ip, uint16(h.portOrDefault()))
		} else {
			// RFC 3263: from the cache when every answer is there, else
			// off this goroutine.
			b.host = append(b.host[:0], h.host...)
			b.dst = netip.AddrPort{}
			q := c.nextHopQuery(&h)
			if ts, ok := c.res.Cached(q); ok {
				return c.sendTargets(x, s, e, r, b, ts)
			}
			b.state = bResolving
			c.resolve(s.Ref(e), t.id, int(b.idx), q)
			return true
		}
	}
	return c.sendBranch(x, s, e, r, b)
}

// sendBranch sends the branch to its destination; when that fails at once
// and resolution gave other targets, to the next one (RFC 3263 §4.3). With
// none left the branch fails with 503 and the result is false.
func (c *Core) sendBranch(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request, b *Branch) bool {
	for {
		if c.sendAttempt(x, s, e, r, b) {
			return true
		}
		if b.conn != 0 {
			// RFC 5626 §5.3: the flow is gone; the phone has to come back
			// on a new one, no other address will do.
			c.branchFailed(s, e, b, 430)
			return false
		}
		if !c.nextTarget(e, b) {
			c.branchFailed(s, e, b, 503)
			return false
		}
	}
}

// sendAttempt calls Router.Branch, builds the branch's request and sends
// it, starting timers A/E, B/F and C. It reports whether the send went
// out; the branch is left as it was otherwise. The shard is locked.
func (c *Core) sendAttempt(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request, b *Branch) bool {
	t := &e.Value
	ed := &x.bed
	ed.Reset(&t.msg)
	b.ed = ed
	destSet := b.destSet
	c.callBranch(r, b)
	b.ed = nil
	if b.destSet && !destSet {
		b.fo.targets = nil // the route chose the destination: no fail-over
	}
	var l *transport.Listener
	if b.conn != 0 {
		var ok bool
		if l, b.dst, ok = c.flowInfo(b.conn); !ok {
			return false
		}
		b.proto = l.Proto
	}
	// A flow another node holds goes to that node's relay address, which
	// the outbound allow-list does not bound (sendRemoteFlow).
	if !b.dst.IsValid() || b.conn&RemoteFlowBit == 0 && !c.allowed(b.dst.Addr()) {
		c.stats.sendErrs.Add(1)
		return false
	}
	if l == nil {
		l = c.ls.Listener(b.proto, b.dst.Addr())
	}
	if l == nil {
		return false
	}
	b.l = l
	att := b.fo.attempt()
	x.via = appendVia(x.via[:0], l, func(dst []byte) []byte {
		return c.appendBranch(dst, t.rs.loop, e.Hash(), t.id, int(b.idx), att)
	})
	c.proxyEdits(x, ed, r, &t.msg, b.uri, l, b.conn)
	c.rewriteRequest(x, s, e, r, b, l, ed)
	b.out = ed.AppendTo(b.out[:0])
	if c.sendBranchRequest(s, e, b) != nil {
		return false
	}
	b.state = bCalling
	kind := b.idx << 4
	if !b.proto.Stream() {
		b.interval = c.t1
		s.StartTimer(e, &b.tRetr, kind|kA, msDur(c.t1))
	} else if b.conn&RemoteFlowBit != 0 {
		// Handed to the flow's holder in one datagram, which nothing else
		// sends again: once more after T1 when nothing came back
		// (remoteflow.go).
		s.StartTimer(e, &b.tRetr, kind|kA, msDur(c.t1))
	}
	s.StartTimer(e, &b.tTimeout, kind|kB, msDur(c.frOf(t)))
	if t.invite {
		s.StartTimer(e, &b.tC, kind|kC, msDur(c.timerCOf(t)))
	}
	s.Charge(e, t.owned())
	return true
}

// branchFailed ends a branch that could not be sent or timed out, with a
// locally generated status (503 or 408).
func (c *Core) branchFailed(s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, code int) {
	t := &e.Value
	if b.active() {
		t.pending--
	}
	s.StopTimer(&b.tRetr)
	s.StopTimer(&b.tTimeout)
	s.StopTimer(&b.tC)
	s.StopTimer(&b.tCancel)
	b.code = code
	b.state = bTerminated
	b.resp = b.resp[:0]
}

// forwardStateless forwards a request without a transaction (§16.11).
func (c *Core) forwardStateless(x *ctx, r *Request) error {
	m := r.Msg
	st := r.st
	c.preprocessRoutes(r)
	var ed *parser.Editor
	if st.edUsed {
		ed = r.editor() // the route's edits, plus ours
		st.edUsed = false
	} else {
		ed = &x.ed
		ed.Reset(m)
	}
	uri := r.RequestURI()
	var proto transport.Proto
	var dst netip.AddrPort
	var q sipdns.NextHop
	var l *transport.Listener
	var flow transport.ConnID
	resolving := false
	if st.flowSet {
		var ok bool
		if l, dst, ok = c.flowInfo(st.flow); !ok {
			return ErrFlowFailed
		}
		proto, flow = l.Proto, st.flow
	} else if st.destSet {
		proto, dst = st.proto, st.dst
	} else {
		to := firstRoute(st, m)
		if st.hopSet {
			to = st.hop
		} else if to == nil {
			to = uri
		}
		h, ok := nextHop(to)
		if !ok {
			return ErrNoDestination
		}
		proto = h.proto
		if ip, isIP := parser.ParseIP(h.host); isIP {
			dst = netip.AddrPortFrom(ip, uint16(h.portOrDefault()))
		} else {
			// The message is built for the transport's listener before the
			// name resolves, so the transport stays: SRV for it, then
			// A/AAAA (no NAPTR).
			h.protoSet = true
			q, resolving = c.nextHopQuery(&h), true
		}
	}
	switch {
	case flow != 0:
	case resolving:
		// A hostname: build the message for the IPv4 listener (IPv6 when
		// there is none) and send it once the name resolved.
		if l = c.ls.Listener(proto, netip.IPv4Unspecified()); l == nil {
			l = c.ls.Listener(proto, netip.IPv6Unspecified())
		}
	default:
		l = c.ls.Listener(proto, dst.Addr())
	}
	if l == nil {
		return ErrNoDestination
	}
	if st.loop == 0 {
		st.loop = loopHash(m)
	}
	var mac [16]byte
	tag := c.sigs.appendViaMAC(mac[:0], m.TopVia(), m)
	loop := st.loop
	x.via = appendVia(x.via[:0], l, func(dst []byte) []byte {
		dst = append(dst, c.prefix[:]...)
		dst = appendHex(dst, uint64(loop), 8)
		dst = append(dst, 's')
		return append(dst, tag...)
	})
	c.proxyEdits(x, ed, r, m, uri, l, flow)
	c.rewriteRequest(x, nil, nil, r, nil, l, ed)
	x.out = ed.AppendTo(x.out[:0])
	if resolving {
		c.forwardResolved(q, append([]byte(nil), x.out...))
		return nil
	}
	if flow != 0 {
		return c.sendFlow(flow, l, dst, x.out)
	}
	return c.sendTo(l, dst, x.out)
}

// forwardResolved sends a statelessly forwarded request to the first
// usable target of its next hop once resolved (slow path: the message was
// copied). There is no fail-over without a transaction.
func (c *Core) forwardResolved(q sipdns.NextHop, data []byte) {
	send := func(ts []sipdns.Target, err error) {
		if err != nil {
			c.warn("txn: stateless next hop did not resolve", "call_id", string(rawCallID(data)), "method", string(firstWord(data)), "src", "", "route", "request", "host", q.Host, "err", err)
			return
		}
		for _, tg := range ts {
			if l := c.ls.Listener(tg.Proto, tg.Addr.Addr()); l != nil && c.allowed(tg.Addr.Addr()) {
				c.sendTo(l, tg.Addr, data)
				return
			}
		}
		c.stats.sendErrs.Add(1)
	}
	if ts, ok := c.res.Cached(q); ok {
		send(ts, nil)
		return
	}
	c.res.Resolve(q, send)
}

// forwardResponse forwards a response that matches no transaction
// (§16.7 step 3 and §18.2.2 applied statelessly): it must carry our Via on
// top; the next Via says where it goes.
func (c *Core) forwardResponse(x *ctx, m *parser.Message) {
	v := m.TopVia()
	if !c.isUsHostPort(v.Host, v.Port, v.Transport) {
		return // §18.1.2: not ours
	}
	it := m.Vias()
	if !it.Next() || !it.Next() {
		return // it was for us
	}
	v2 := &it.Via
	host := v2.Host
	// maddr (§18.2.2, multicast) is not followed, as Kamailio does not:
	// any sender could name any address in it.
	if len(v2.Received) > 0 {
		host = v2.Received
	}
	ip, ok := parser.ParseIP(host)
	if !ok {
		return // a hostname sent-by without received: not resolved statelessly
	}
	proto := protoFromBytes(v2.Transport, transport.UDP)
	port := v2.Port
	if len(v2.RPort) > 0 {
		n := 0
		for _, ch := range v2.RPort {
			n = n*10 + int(ch-'0')
		}
		port = n
	}
	if port == 0 {
		port = defaultPort(proto)
	}
	dst := netip.AddrPortFrom(ip, uint16(port))
	if c.isOwnAddr(dst) {
		// The next Via is ours again: forwarding would hand the response
		// back to us, once per Via of ours it carries. A response for a
		// spiral is matched to its transaction and never gets here.
		c.stats.selfLoops.Add(1)
		return
	}
	if !c.mayForward(v.Branch, v2, m) {
		c.stats.staleForged.Add(1)
		return
	}
	l := c.ls.Listener(proto, ip)
	if l == nil {
		return
	}
	if hc, ok := c.send.(interface {
		HasConn(transport.Proto, netip.AddrPort) bool
	}); ok && proto.Stream() && !hc.HasConn(proto, dst) {
		// The request came on a connection that is gone: a response
		// without a transaction opens none (a connection to any port the
		// second Via names, written with the response's bytes).
		c.stats.staleForged.Add(1)
		return
	}
	c.stats.stateless.Add(1)
	x.ed.Reset(m)
	x.ed.RemoveTopVia()
	x.out = x.ed.AppendTo(x.out[:0])
	c.sendTo(l, dst, x.out)
}

// frOf is the branch's first-response timeout (timers B and F): the
// route's (SetTimeouts) or the configured one.
func (c *Core) frOf(t *txn) int64 {
	if t.rs.fr > 0 {
		return t.rs.fr
	}
	return c.fr
}

// timerCOf is the INVITE branch's timeout after a provisional (timer C).
func (c *Core) timerCOf(t *txn) int64 {
	if t.rs.frInv > 0 {
		return t.rs.frInv
	}
	return c.timerC
}

// spiral reports whether one of m's Vias is ours: our branch prefix and
// one of our listeners as its sent-by (isLoop's test without the hash).
func (c *Core) spiral(m *parser.Message) bool {
	it := m.Vias()
	for it.Next() {
		v := &it.Via
		b := v.Branch
		if len(b) >= loopEnd && string(b[:prefixLen]) == string(c.prefix[:]) && c.isUsHostPort(v.Host, v.Port, v.Transport) {
			return true
		}
	}
	return false
}
