package txn

import (
	"net/netip"
	"strconv"
	"strings"

	"switchboard/transport"
)

// Flows held by another node of an anycast group.
//
// Behind one anycast address a phone's TCP, TLS or WebSocket connection
// lands on one node and stays there, while the calls to the phone (and
// the in-dialog requests of its calls) land on any node. A node that has
// to send over a connection another node holds hands the request to that
// node (package anycast): it keeps the transaction, and the holder writes
// the bytes on the connection as they are. The phone answers on the
// connection, so its responses reach the holder, which relays them to the
// node whose branch prefix they carry, as it does responses over UDP.
//
// Such a flow is a ConnID with RemoteFlowBit set, which the core's
// RemoteFlows (SetRemoteFlows) gives out and resolves: flowInfo,
// sendFlow and the tagged send of a branch request go to it instead of the
// transport. The flow tokens of our Record-Route and Path name the node
// that holds the connection by its branch prefix (flow.go), so every node
// of the group can verify one (they share the Record-Route secret) and
// tell its own connections from another node's.
//
// The hand-off is one datagram between the nodes, and the branch counts
// as one over a stream, which RFC 3261 does not retransmit: a branch
// request handed over is sent once more after T1 when no response came
// (nor the holder's report that the connection is gone), so that a
// datagram lost between the nodes does not cost the call (timer B, 408).
// The holder writes both copies on the connection; the phone takes the
// second for a retransmission. ACK and CANCEL are not sent again.

// RemoteFlowBit is set in a ConnID that names a connection held by
// another node (a RemoteFlows id); the transport's own connection numbers
// count up from 1 and never reach it.
const RemoteFlowBit transport.ConnID = 1 << 63

// deadFlow is a flow that is never open: what a verified flow token names
// when its node is not one this core can hand requests to (an earlier run
// of this process, or no anycast group). Requests for it get 430.
const deadFlow = ^transport.ConnID(0)

// RemoteFlows resolves and sends over connections held by other nodes of
// an anycast group. package anycast's Relay implements it. Its methods run
// on the receive path with a shard locked: no blocking, and no allocation
// once a flow is known.
type RemoteFlows interface {
	// RemoteFlow returns the id (RemoteFlowBit set) naming connection id
	// of the node whose branch prefix ends in holder, reached here
	// through the listener of proto at local (local may be invalid: any
	// listener of proto). 0 when it has no room for another flow. The id
	// stays the same for the same connection while it is in use.
	RemoteFlow(holder [6]byte, id uint64, proto transport.Proto, local netip.AddrPort) transport.ConnID
	// RemoteFlowInfo returns the listener here that stands for the
	// flow's (the Via and Record-Route of requests sent over it), the
	// holder's relay address, and the holder and its connection number;
	// ok false when the holder is not heard from any more, or reported
	// the connection gone.
	RemoteFlowInfo(f transport.ConnID) (l *transport.Listener, relay netip.AddrPort, holder [6]byte, id uint64, ok bool)
	// SendRemoteFlow hands data to the holder, which writes it on the
	// connection unchanged. With a non-zero tag, a holder that finds the
	// connection gone says so, and the core's SendFailed gets a
	// transport.SendFailure with that tag and Conn f.
	SendRemoteFlow(f transport.ConnID, data []byte, tag transport.Tag) error
}

type remoteFlowsBox struct{ rf RemoteFlows }

// SetRemoteFlows gives the core the flows of other nodes (nil: none).
// Set it before the transport starts.
func (c *Core) SetRemoteFlows(rf RemoteFlows) {
	if rf == nil {
		c.remote.Store(nil)
		return
	}
	c.remote.Store(&remoteFlowsBox{rf})
}

func (c *Core) remoteFlows() RemoteFlows {
	if b := c.remote.Load(); b != nil {
		return b.rf
	}
	return nil
}

// holderOf returns the node and connection number a flow token names for
// flow id: this node's prefix and id for its own connections. ok false for
// a remote flow that is not known.
func (c *Core) holderOf(id transport.ConnID) (holder [6]byte, n uint64, ok bool) {
	if id&RemoteFlowBit == 0 {
		return [6]byte(c.prefix[7:]), uint64(id), id != 0
	}
	rf := c.remoteFlows()
	if rf == nil {
		return holder, 0, false
	}
	_, _, holder, n, ok = rf.RemoteFlowInfo(id)
	return holder, n, ok
}

// flowOfHolder returns the flow for connection n of holder: ours, another
// node's through RemoteFlows, or deadFlow.
func (c *Core) flowOfHolder(holder [6]byte, n uint64, proto transport.Proto, local netip.AddrPort) transport.ConnID {
	if holder == [6]byte(c.prefix[7:]) {
		if n == 0 || transport.ConnID(n)&RemoteFlowBit != 0 {
			return deadFlow
		}
		return transport.ConnID(n)
	}
	if rf := c.remoteFlows(); rf != nil {
		if f := rf.RemoteFlow(holder, n, proto, local); f != 0 {
			return f
		}
	}
	return deadFlow
}

// FlowName names flow id for the other nodes of an anycast group (the
// registrar writes it in the bindings it shares): the holder's six
// branch-prefix characters, ".", the connection number. False for 0 and
// for a remote flow no longer known.
func (c *Core) FlowName(id transport.ConnID) (string, bool) {
	holder, n, ok := c.holderOf(id)
	if !ok {
		return "", false
	}
	return string(holder[:]) + "." + strconv.FormatUint(n, 10), true
}

// FlowByName returns the flow a FlowName names, reached through the
// listener of proto at local: a connection of ours, one another node
// holds, or a flow that is never open (a node gone, an earlier run of
// this one): 0 only for a name that does not parse.
func (c *Core) FlowByName(name string, proto transport.Proto, local netip.AddrPort) transport.ConnID {
	h, num, ok := strings.Cut(name, ".")
	if !ok || len(h) != 6 {
		return 0
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return 0
	}
	return c.flowOfHolder([6]byte([]byte(h)), n, proto, local)
}
