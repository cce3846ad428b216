package txn

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"switchboard/parser"
	"switchboard/transport"
)

// RFC 5626 flows.
//
// A phone that registers or calls over TCP or TLS can only be reached over
// that connection: its Contact names an address behind NAT, or a port that
// accepts nothing. The connection is the flow. Two things lead a request
// to it:
//
//   - the registrar, which keeps the connection of each outbound binding
//     and has the request sent over it (Request.SetFlow, Branch.SetFlow);
//   - a flow token in our Record-Route: when a dialog-forming request
//     comes over a flow from a phone whose Contact carries ";ob", or goes
//     to a phone over its flow, the Record-Route value facing that phone
//     names the connection, and in-dialog requests whose last Route value
//     of ours carries it go over the connection:
//
//	Record-Route: <sip:192.0.2.1:5060;transport=tcp;lr;flow=k3x9q200000000000000071f0c93a2be4d7e61;sig=...>
//
// An edge proxy puts a token in the Path of the REGISTERs it relays
// (AddPath); the registrar's requests come back with it in their Route.
//
// The token is the six random characters of the branch prefix of the
// process that holds the connection (Core.BranchPrefix, drawn at each
// start), the connection's number, and a MAC of both keyed with the
// Record-Route secret: a made-up or edited token does not verify (and in a
// Record-Route it also breaks the dialog signature, which covers it).
// Every node of an anycast group shares the secret, so each verifies the
// others' tokens and hands a request for a connection another node holds
// to that node (remoteflow.go). A token of an earlier run of a process,
// whose numbers are reused, names a prefix no node has any more. A
// verified token whose connection is gone, or whose node is, is a failed
// flow: the request gets 430 Flow Failed (RFC 5626 §5.3), never a new
// connection to the phone's port.
//
// When a request comes over the very flow its token names it goes the
// other way (from the phone), and the token is ignored (§5.3). A flow
// token always goes in a double Record-Route, one value per side, so the
// direction never depends on which connection a phone uses later.

// flowParam is the URI parameter of our Record-Route that carries a flow
// token.
const flowParam = "flow"

// flowTokenLen is a token's length: the holder's six prefix characters,
// then the connection number and 64 bits of MAC in hexadecimal.
const flowTokenLen = 6 + 32

// ErrFlowFailed: the flow (connection) a request was to go over is closed.
var ErrFlowFailed = errors.New("txn: flow failed")

// FlowSender is a Sender that knows its stream connections: the listener
// and remote address of one, and whether it is still open.
// *transport.Transport implements it. Without it, flows are not used.
type FlowSender interface {
	ConnInfo(id transport.ConnID) (l *transport.Listener, remote netip.AddrPort, ok bool)
}

// Kinds of flow token: one for Record-Route, honoured only inside a
// dialog's signed route set, one for Path, honoured only in a Route of
// ours without signature (what a registrar sends along a Path). A token a
// party to a call saw in a Record-Route therefore cannot be preloaded in a
// Route to push requests of its own into the phone's connection.
const (
	flowRR   byte = 'r'
	flowPath byte = 'p'
)

// appendFlowToken appends the token of connection n of the node whose
// branch prefix ends in holder, for use kind.
func (rs *routeSigners) appendFlowToken(dst []byte, holder [6]byte, n uint64, kind byte) []byte {
	dst = append(dst, holder[:]...)
	dst = appendHex(dst, n, 16)
	return rs.appendFlowMAC(dst, holder, n, kind)
}

func (rs *routeSigners) appendFlowMAC(dst []byte, holder [6]byte, n uint64, kind byte) []byte {
	s := rs.pool.Get().(*routeSigner)
	s.mac.Reset()
	s.buf = append(s.buf[:0], "flow"...)
	s.buf = append(s.buf, kind, 0)
	s.buf = append(s.buf, holder[:]...)
	s.buf = binary.BigEndian.AppendUint64(s.buf, n)
	s.mac.Write(s.buf)
	sum := s.mac.Sum(s.sum[:0])
	dst = appendHexBytes(dst, sum[:8])
	rs.pool.Put(s)
	return dst
}

// parseFlowToken returns the node and connection number a token of use
// kind names, ok false when it does not verify.
func (rs *routeSigners) parseFlowToken(tok []byte, kind byte) (holder [6]byte, n uint64, ok bool) {
	if len(tok) != flowTokenLen {
		return holder, 0, false
	}
	for i, ch := range tok[:6] {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A' // a proxy on the way may have changed the case
		}
		holder[i] = ch
	}
	for _, ch := range tok[6:22] {
		d, ok := hexVal(ch)
		if !ok {
			return holder, 0, false
		}
		n = n<<4 | uint64(d)
	}
	if n == 0 {
		return holder, 0, false
	}
	var buf [16]byte
	mac := rs.appendFlowMAC(buf[:0], holder, n, kind)
	if !constantTimeEqualFold(mac, tok[22:]) {
		return holder, 0, false
	}
	return holder, n, true
}

// appendFlowToken appends the token of flow id (ours or another node's)
// for use kind.
func (c *Core) appendFlowToken(dst []byte, id transport.ConnID, kind byte) []byte {
	holder, n, ok := c.holderOf(id)
	if !ok {
		// A remote flow forgotten since it was chosen: a token that
		// verifies and names no connection (its requests get 430).
		holder, n = [6]byte{'-', '-', '-', '-', '-', '-'}, 1
	}
	return c.sigs.appendFlowToken(dst, holder, n, kind)
}

func hexVal(ch byte) (byte, bool) {
	switch {
	case ch >= '0' && ch <= '9':
		return ch - '0', true
	case ch >= 'a' && ch <= 'f':
		return ch - 'a' + 10, true
	case ch >= 'A' && ch <= 'F':
		return ch - 'A' + 10, true
	}
	return 0, false
}

// constantTimeEqualFold compares a MAC in lower-case hexadecimal with one
// as received (URI parameters are case-insensitive in spirit: a proxy on
// the way may have changed the case), in time independent of where they
// differ.
func constantTimeEqualFold(mac, got []byte) bool {
	if len(mac) != len(got) {
		return false
	}
	var d byte
	for i := range mac {
		ch := got[i]
		if ch >= 'A' && ch <= 'F' {
			ch += 'a' - 'A'
		}
		d |= mac[i] ^ ch
	}
	return d == 0
}

// flowOf returns the flow token in the URI parameters of one of our Route
// values, nil when there is none, and the transport and address of ours
// the value names (where a connection another node holds is reached
// here).
func flowOf(uri []byte) (tok []byte, proto transport.Proto, local netip.AddrPort) {
	var u parser.URI
	if u.Parse(uri) != nil {
		return nil, 0, local
	}
	tok, _ = u.Param(flowParam)
	if tok == nil {
		return nil, 0, local
	}
	proto = transport.UDP
	if tp := u.Transport(); tp != nil {
		proto, _ = transport.ParseProto(string(tp))
	} else if u.Scheme == parser.SchemeSIPS {
		proto = transport.TLS
	}
	if ip, ok := parser.ParseIP(u.Host); ok {
		port := u.Port
		if port == 0 {
			port = 5060
			if proto == transport.TLS {
				port = 5061
			}
		}
		local = netip.AddrPortFrom(ip, uint16(port))
	}
	return tok, proto, local
}

// flowInfo returns the listener and remote address of connection id, ok
// false when it is closed (or the sender knows no connections). For a
// flow another node holds: the listener here that stands for its, and the
// holder's relay address.
func (c *Core) flowInfo(id transport.ConnID) (*transport.Listener, netip.AddrPort, bool) {
	if id&RemoteFlowBit != 0 {
		rf := c.remoteFlows()
		if rf == nil {
			return nil, netip.AddrPort{}, false
		}
		l, relay, _, _, ok := rf.RemoteFlowInfo(id)
		return l, relay, ok
	}
	if c.flows == nil || id == 0 {
		return nil, netip.AddrPort{}, false
	}
	return c.flows.ConnInfo(id)
}

// FlowAlive reports whether stream connection id is still open: a
// binding whose flow closed is not used (the registrar asks).
func (r *Request) FlowAlive(id transport.ConnID) bool {
	_, _, ok := r.c.flowInfo(id)
	return ok
}

// SetFlow sends the Request-URI branch over stream connection id (an RFC
// 5626 flow), and nowhere else: when it has closed the branch fails with
// 430 Flow Failed. It replaces SetDestination.
func (r *Request) SetFlow(id transport.ConnID) {
	r.st.flow, r.st.flowSet, r.st.destSet = id, id != 0, false
}

// Flow returns the flow SetFlow set or an in-dialog request's Route
// named, 0 when none.
func (r *Request) Flow() transport.ConnID {
	r.c.preprocessRoutes(r)
	if !r.st.flowSet {
		return 0
	}
	return r.st.flow
}

// SetFlow sends the branch over stream connection id (see
// Request.SetFlow). Only in Router.Branch.
func (b *Branch) SetFlow(id transport.ConnID) {
	b.conn = id
	b.destSet = id != 0
	b.host = b.host[:0]
}

// Flow returns the connection the branch goes over, 0 when none.
func (b *Branch) Flow() transport.ConnID { return b.conn }

// outboundContact reports whether a dialog-forming request comes from a
// phone that asks for RFC 5626 outbound: its Contact URI carries ";ob".
func outboundContact(m *parser.Message) bool {
	it := m.NameAddrs(parser.HdrContact)
	if !it.Next() {
		return false
	}
	var u parser.URI
	if u.Parse(it.NameAddr.URI) != nil {
		return false
	}
	_, ok := u.Param("ob")
	return ok
}

// uaFlow returns the flow of the request's sender that our Record-Route
// must name: the connection it came on, when it came over one from a
// phone asking for outbound; 0 otherwise.
func uaFlow(r *Request, m *parser.Message) transport.ConnID {
	if r.Conn == 0 || m.ToTag() != nil || !outboundContact(m) {
		return 0
	}
	return r.Conn
}

// appendFlowExtra appends the Record-Route parameters extra and, for a
// flow, its token parameter.
func (c *Core) appendFlowExtra(dst, extra []byte, id transport.ConnID) []byte {
	dst = append(dst, extra...)
	if id == 0 {
		return dst
	}
	dst = append(dst, ";"+flowParam+"="...)
	return c.appendFlowToken(dst, id, flowRR)
}

// routeFlow applies a flow token in the last of our Route values (after
// preprocessRoutes): a verified one whose connection is not the one the
// request came on becomes the request's flow; one that does not verify
// (or a Record-Route token outside a signed route set, a Path token inside
// one) makes the route forged.
//
// signed says whether that value carries a signature (which then
// verified, or the route would be forged already): a Record-Route token
// counts only under the signature that covers it, so that a party to one
// dialog cannot add an unsigned value with a token seen in another.
func (c *Core) routeFlow(r *Request, last []byte, signed bool) {
	st := r.st
	if st.kind != RouteDialog && st.kind != RouteLocal {
		return
	}
	tok, proto, local := flowOf(last)
	if tok == nil {
		return
	}
	kind := flowRR
	if st.kind == RouteLocal {
		kind = flowPath
	}
	holder, n, ok := c.sigs.parseFlowToken(tok, kind)
	if kind == flowRR && !signed {
		ok = false
	}
	if !ok {
		st.kind = RouteForged
		return
	}
	id := c.flowOfHolder(holder, n, proto, local)
	if id != r.Conn && !st.destSet { // a destination the route chose stands
		st.flow, st.flowSet = id, true
	}
}

// sendOnBranch sends a message of branch b (a retransmission, CANCEL,
// ACK): over its flow when it has one, else to its destination.
func (c *Core) sendOnBranch(b *Branch, data []byte) error {
	if b.conn == 0 {
		return c.sendTo(b.l, b.dst, data)
	}
	return c.sendFlow(b.conn, b.l, b.dst, data)
}

// sendFlow sends data over connection id (whose listener is l and remote
// address dst): ErrFlowFailed when it has closed.
func (c *Core) sendFlow(id transport.ConnID, l *transport.Listener, dst netip.AddrPort, data []byte) error {
	if id&RemoteFlowBit != 0 {
		return c.sendRemoteFlow(id, l, dst, data, transport.Tag{})
	}
	if c.conns == nil || !dst.IsValid() || !c.allowed(dst.Addr()) {
		c.stats.sendErrs.Add(1)
		return ErrNotAllowed
	}
	if err := c.conns.SendConn(id, data); err != nil {
		c.stats.sendErrs.Add(1)
		if err == transport.ErrNoConn {
			return ErrFlowFailed
		}
		return err
	}
	c.tapSent(l, dst, data)
	return nil
}

// sendRemoteFlow hands data to the node that holds flow id (relay is
// its relay address). The outbound allow-list is not asked: it bounds
// where this node sends, and the holder writes on a connection the phone
// opened to the group.
func (c *Core) sendRemoteFlow(id transport.ConnID, l *transport.Listener, relay netip.AddrPort, data []byte, tag transport.Tag) error {
	rf := c.remoteFlows()
	if rf == nil {
		c.stats.sendErrs.Add(1)
		return ErrFlowFailed
	}
	if err := rf.SendRemoteFlow(id, data, tag); err != nil {
		c.stats.sendErrs.Add(1)
		return err
	}
	c.tapSent(l, relay, data)
	return nil
}

// flowRecordRoutes inserts a double Record-Route where either side is a
// flow: the value facing the next hop (out) on top, naming outFlow, the
// one facing the sender (in) below, naming inFlow; each signed with its
// own parameters.
func (c *Core) flowRecordRoutes(x *ctx, ed *parser.Editor, m *parser.Message, in, out *transport.Listener, rrx []byte, inFlow, outFlow transport.ConnID) {
	x.fx = c.appendFlowExtra(x.fx[:0], rrx, outFlow)
	x.sig = c.sigs.appendSigExtra(x.sig[:0], m.CallID(), m.FromTag(), x.fx)
	x.rr = appendRR(x.rr[:0], out, x.fx, x.sig)
	n := len(x.rr)
	x.fx = c.appendFlowExtra(x.fx[:0], rrx, inFlow)
	x.sig2 = c.sigs.appendSigExtra(x.sig2[:0], m.CallID(), m.FromTag(), x.fx)
	x.rr = appendRR(x.rr, in, x.fx, x.sig2)
	ed.InsertRecordRoute(x.rr[:n])
	ed.InsertRecordRoute(x.rr[n:])
}

// dialogForming reports whether a request of method m may create a dialog
// (RFC 5626 §5.3 asks the edge proxy to record-route those).
func dialogForming(m parser.Method) bool {
	return m == parser.MethodInvite || m == parser.MethodSubscribe || m == parser.MethodRefer || m == parser.MethodNotify
}

// AddPath has the relayed REGISTER carry a Path header naming us (RFC
// 3327; OpenSIPS add_path()), so that the registrar sends the requests
// for the phone through us. When the REGISTER came over a connection, the
// Path URI names it with a flow token, and, when the phone asks for RFC
// 5626 outbound (a Contact with +sip.instance and reg-id), carries ";ob":
// the registrar then does outbound, and requests it sends along the Path
// go over the phone's connection (a request whose Route names a closed
// one gets 430). Without a connection (UDP) the Path is a plain one. Only
// for REGISTER; the value goes on top of any Path already there.
func (r *Request) AddPath() { r.st.path = true }

// addPath inserts our Path value for the REGISTER's relayed copy: the
// listener facing the registrar (out), the flow the phone is on.
func (c *Core) addPath(x *ctx, ed *parser.Editor, r *Request, m *parser.Message, out *transport.Listener) {
	x.fx = append(x.fx[:0], "<sip:"...)
	x.fx = appendHostPort(x.fx, out)
	switch out.Proto {
	case transport.TCP:
		x.fx = append(x.fx, ";transport=tcp"...)
	case transport.TLS:
		x.fx = append(x.fx, ";transport=tls"...)
	case transport.WS:
		x.fx = append(x.fx, ";transport=ws"...)
	case transport.WSS:
		x.fx = append(x.fx, ";transport=wss"...)
	}
	x.fx = append(x.fx, ";lr"...)
	if r.Conn != 0 {
		if regIDContact(m) {
			x.fx = append(x.fx, ";ob"...)
		}
		x.fx = append(x.fx, ";"+flowParam+"="...)
		x.fx = c.appendFlowToken(x.fx, r.Conn, flowPath)
	}
	x.fx = append(x.fx, '>')
	ed.AddHeaderTop("Path", x.fx)
}

// regIDContact reports whether a Contact of the REGISTER has
// +sip.instance and reg-id: the phone asks for outbound.
func regIDContact(m *parser.Message) bool {
	it := m.NameAddrs(parser.HdrContact)
	for it.Next() {
		if it.NameAddr.RegID() > 0 && it.NameAddr.Instance() != nil {
			return true
		}
	}
	return false
}
