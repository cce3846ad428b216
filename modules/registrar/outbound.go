package registrar

import (
	"net/netip"
	"strconv"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// RFC 5626 outbound at the registrar.
//
// A phone that registers with "+sip.instance" and "reg-id" asks for a
// flow: requests to it must come back over the connection it registered
// on, the only way to reach it behind NAT. The registrar does outbound
// when it can keep that flow alive and use it:
//
//   - it is the first hop (no Path) and the REGISTER came over a
//     connection (TCP, TLS): the binding keeps the connection, CRLF
//     keep-alives on it are answered by the transport, and the 200 says
//     "Require: outbound" and, with registrar.flow_timer, "Flow-Timer";
//   - or an edge proxy in front added a Path whose first URI has ";ob":
//     the edge proxy keeps the flow; the 200 says "Require: outbound".
//
// Otherwise (over UDP, where RFC 5626 keep-alives are STUN, which
// Switchboard does not answer, or behind an edge proxy without outbound)
// the binding is an ordinary one (§6; its instance and reg-id still key
// it, so the phone's next REGISTER replaces it), and the 200 does not say
// "Require: outbound"; a phone that insists with "Require: outbound" gets
// 439 First Hop Lacks Outbound Support.
//
// A binding over a connection keeps the connection's number (its flow).
// Lookup sends a request for an outbound binding over it (txn's SetFlow:
// the Via, the Record-Route with the flow token and the connection are
// the flow's). When the connection has closed, an outbound binding is
// skipped; when every binding is skipped so, FlowFailed reports it and the
// route answers 430 Flow Failed. An ordinary binding over a connection is
// sent to the address its REGISTER came from, as before: the transport
// uses the connection from there while it is open. A new REGISTER of the
// same instance and reg-id on a new connection replaces the binding, and
// so its flow.

// outboundMode says what a REGISTER gets: no outbound, outbound with the
// flow kept here (first hop), outbound through an edge proxy's Path.
type outboundMode uint8

const (
	outboundNone outboundMode = iota
	outboundHere
	outboundEdge
)

// outboundOf decides outbound for a REGISTER whose Path values are path:
// the mode, and whether outbound was asked for (a contact with reg-id, or
// Require: outbound) but cannot be done here.
func outboundOf(c *routing.Ctx, path []byte) (mode outboundMode, lacks bool) {
	m := c.Msg()
	asked := m.HasToken(parser.HdrRequire, "outbound")
	if !asked {
		it := m.NameAddrs(parser.HdrContact)
		for it.Next() {
			if it.NameAddr.RegID() > 0 && it.NameAddr.Instance() != nil {
				asked = true
				break
			}
		}
	}
	if !asked {
		return outboundNone, false
	}
	switch {
	case len(path) == 0 && c.R.Proto.Stream() && c.R.Conn != 0:
		return outboundHere, false
	case len(path) > 0 && firstPathOB(path):
		return outboundEdge, false
	}
	return outboundNone, true
}

// firstPathOB reports whether the first Path URI has the "ob" parameter:
// the edge proxy that added it does outbound (RFC 5626 §5.2).
func firstPathOB(path []byte) bool {
	u, err := parser.ParseURI(firstPathURI(path))
	if err != nil {
		return false
	}
	_, ok := u.Param("ob")
	return ok
}

// appendOutbound adds the headers of a 200 to a REGISTER done with
// outbound.
func (r *Registrar) appendOutbound(dst []byte, mode outboundMode) []byte {
	if mode == outboundNone {
		return dst
	}
	dst = append(dst, "Require: outbound\r\n"...)
	if mode == outboundHere && r.cfg.FlowTimer > 0 {
		dst = append(dst, "Flow-Timer: "...)
		dst = strconv.AppendInt(dst, int64(r.cfg.FlowTimer.Seconds()), 10)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// flowUsable reports whether binding b may be used: one without a flow,
// an ordinary binding whose connection closed (reached at its source, as
// before), or one whose flow is open. An outbound binding whose flow
// closed is not (RFC 5626 §5.3: no other way reaches the phone); nor is
// one whose flow another node of an anycast group held when that node is
// gone or closed it.
func (r *Registrar) flowUsable(c *routing.Ctx, b *binding) bool {
	return b.flow == 0 || !b.outbound || r.flowAlive(c, b)
}

// flowAlive reports whether b's flow is open. The id of a flow another
// node holds is the slot of a bounded table (package anycast,
// anycast.max_flows) and names nothing once the slot went to another
// flow: then the binding's flow is resolved again from its name, so that
// a phone on a live connection stays reachable however many bindings
// share the table. A flow whose holder is gone or closed it resolves to
// the same dead one. The shard lock is held: b is written.
func (r *Registrar) flowAlive(c *routing.Ctx, b *binding) bool {
	if c.R.FlowAlive(b.flow) {
		return true
	}
	if b.flow&txn.RemoteFlowBit == 0 || b.flowName == "" {
		return false
	}
	names := r.flowNames.Load()
	if names == nil {
		return false
	}
	f := names.byName(b.flowName, b.proto, b.socket)
	if f == 0 || f == b.flow {
		return false
	}
	b.flow = f
	return c.R.FlowAlive(f)
}

// openFlow returns the flow requests to a binding go over: the connection
// of an outbound binding while it is open (not through a Path, whose first
// hop may be elsewhere); 0 otherwise. An ordinary binding over a connection
// of this node is sent to its REGISTER's source (destination), which the
// transport maps to the same connection while it is open, and which
// carries no flow token. One over a connection another node holds
// (txn.RemoteFlowBit, bindings shared on Redis) goes over that connection,
// handed to that node, outbound or not: this node has no connection from
// the phone's address, and behind NAT could not open one; when that node
// is gone an ordinary binding falls back to its source as before.
func (r *Registrar) openFlow(c *routing.Ctx, b *binding) transport.ConnID {
	if b.flow == 0 || len(b.path) > 0 || !b.outbound && b.flow&txn.RemoteFlowBit == 0 || !r.flowAlive(c, b) {
		return 0
	}
	return b.flow
}

// flowNamer turns flows into the names the nodes of an anycast group
// share and back (txn.Core.FlowName, FlowByName).
type flowNamer struct {
	name   func(transport.ConnID) (string, bool)
	byName func(string, transport.Proto, netip.AddrPort) transport.ConnID
}

// resolve sets the flow of a binding read from Redis from its name.
func (n *flowNamer) resolve(b *binding) {
	if b.flowName != "" && b.proto.Stream() {
		b.flow = n.byName(b.flowName, b.proto, b.socket)
	}
}

// SetFlowNames lets bindings shared on Redis carry the connection they
// registered over (registrar.sharing: redis behind anycast): name gives
// the name of a flow of this node for the others (txn.Core.FlowName),
// byName the flow a name read from Redis is here (txn.Core.FlowByName: a
// connection of this node, one another node holds, or one that is never
// open). Call it once the core exists; bindings already read are resolved
// now.
func (r *Registrar) SetFlowNames(name func(transport.ConnID) (string, bool), byName func(string, transport.Proto, netip.AddrPort) transport.ConnID) {
	n := &flowNamer{name: name, byName: byName}
	r.flowNames.Store(n)
	r.tbl.Range(func(_ *shards.Shard[record], e *shards.Entry[record]) bool {
		for i := range e.Value.b {
			n.resolve(&e.Value.b[i])
		}
		return true
	})
}

// flowsFailed is the value of SlotNextQ after a Lookup that found only
// bindings whose flows have closed.
const flowsFailed = -1

// FlowFailed reports, after a Lookup that returned false, whether the
// address-of-record has live bindings that all registered with RFC 5626
// outbound over connections that have since closed: the phone can be
// reached by no other way and will register again on a new flow. The
// route answers 430 Flow Failed (RFC 5626 §5.3) rather than 480.
func (r *Registrar) FlowFailed(c *routing.Ctx) bool {
	return c.Value(SlotNextQ) == flowsFailed
}
