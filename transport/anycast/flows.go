package anycast

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"switchboard/transport"
	"switchboard/txn"
)

// Requests over connections another node holds.
//
// A phone's TCP, TLS or WebSocket connection lands on one node (the
// holder). Its binding, shared on Redis, names the holder by the six
// characters of its branch prefix and the connection by its number there;
// so do the flow tokens of our Record-Route and Path (txn/flow.go). A
// node that has to send a request over it (B) hands the request to the
// holder (A):
//
//	B ── "SBRF" holder, connection, B's flow id, tag, request ──► A
//	                                   A writes the request on the connection
//	B ◄── "SBRX" flow id, tag ─────────── A, when the connection is gone
//
// B keeps the transaction; A keeps nothing (no transaction, no state): it
// checks that the packet comes from a configured peer (the read loop) and
// names its own prefix (a restarted A has a new one, and its connection
// numbers start again), and writes the bytes on the connection as they
// are. The phone answers on the connection, to A; the response carries
// B's branch prefix, so A relays it to B (Forward, "SBRS"). When the
// connection is gone, a tagged hand-off (a branch request) is answered
// "SBRX", and B ends the branch with 430 Flow Failed at once
// (Config.FlowFailed, txn.Core.SendFailed) and marks the flow dead, so
// that later lookups skip it; an untagged one (ACK, CANCEL, a
// retransmission) is dropped.
//
// B names each known (holder, connection) with a flow id (txn.RemoteFlowBit
// set), which the registrar keeps in the binding and the core in the
// branch: the slot in a bounded table and its generation, so an id whose
// slot was reused names nothing. A flow is usable while its holder is
// heard from (hellos, PeerTimeout): after a node dies, calls to phones on
// its connections get 430 as soon as it is forgotten, and the phones,
// whose RFC 5626 keep-alives fail, register again over a new connection
// to a live node.

// ErrFlowGone: the flow's holder is not heard from, or reported the
// connection gone, or the flow id names nothing any more.
var ErrFlowGone = errors.New("anycast: the connection's node is gone or closed it")

// errTooLarge: a request that does not fit in one relay datagram.
var errTooLarge = errors.New("anycast: request too large for the relay")

// DefaultMaxFlows is Config.MaxFlows' default.
const DefaultMaxFlows = 65536

type flowKey struct {
	holder [6]byte
	id     uint64
}

type flowEntry struct {
	key   flowKey
	proto transport.Proto
	local netip.AddrPort
	gen   uint32
	gone  atomic.Bool // the holder reported the connection gone
	used  atomic.Bool // looked at since the clock hand last passed
}

// flowTable is the bounded table of (holder, connection) pairs. Lookups
// by id take the read lock; a new pair takes the write lock and, when the
// table is full, reuses the slot of one not used for a while (the clock
// algorithm: the hand clears "used" marks until it finds a slot without).
type flowTable struct {
	mu      sync.RWMutex
	byKey   map[flowKey]uint32
	slots   []flowEntry
	max     int
	hand    int
	evicted atomic.Uint64
}

func (ft *flowTable) init(max int) {
	if max <= 0 {
		max = DefaultMaxFlows
	}
	ft.max = min(max, 1<<24)
	ft.byKey = make(map[flowKey]uint32)
}

// flowID is the id of slot i at generation gen: RemoteFlowBit, 31 bits
// of generation, 32 bits of slot. Never all ones (txn's deadFlow): slots
// stay below 1<<24.
func flowID(i int, gen uint32) transport.ConnID {
	return txn.RemoteFlowBit | transport.ConnID(gen&(1<<31-1))<<32 | transport.ConnID(i)
}

// entry returns the slot flow id names, nil when it names nothing. The
// read lock is held on return when the result is not nil.
func (ft *flowTable) entry(f transport.ConnID) *flowEntry {
	if f&txn.RemoteFlowBit == 0 {
		return nil
	}
	i, gen := int(f&(1<<32-1)), uint32(f>>32)&(1<<31-1)
	ft.mu.RLock()
	if i >= len(ft.slots) || ft.slots[i].gen&(1<<31-1) != gen {
		ft.mu.RUnlock()
		return nil
	}
	e := &ft.slots[i]
	if !e.used.Load() {
		e.used.Store(true)
	}
	return e
}

// get returns the id of (holder, id), adding it; 0 only when max is 0.
func (ft *flowTable) get(k flowKey, proto transport.Proto, local netip.AddrPort) transport.ConnID {
	ft.mu.RLock()
	if i, ok := ft.byKey[k]; ok {
		e := &ft.slots[i]
		if !e.used.Load() {
			e.used.Store(true)
		}
		id := flowID(int(i), e.gen)
		ft.mu.RUnlock()
		return id
	}
	ft.mu.RUnlock()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if i, ok := ft.byKey[k]; ok {
		return flowID(int(i), ft.slots[i].gen)
	}
	var i int
	if len(ft.slots) < ft.max {
		ft.slots = append(ft.slots, flowEntry{})
		i = len(ft.slots) - 1
	} else {
		for {
			e := &ft.slots[ft.hand]
			if !e.used.Load() {
				break
			}
			e.used.Store(false)
			ft.hand = (ft.hand + 1) % len(ft.slots)
		}
		i = ft.hand
		ft.hand = (ft.hand + 1) % len(ft.slots)
		delete(ft.byKey, ft.slots[i].key)
		ft.evicted.Add(1)
	}
	e := &ft.slots[i]
	e.key, e.proto, e.local = k, proto, local
	e.gen++
	e.gone.Store(false)
	e.used.Store(true)
	ft.byKey[k] = uint32(i)
	return flowID(i, e.gen)
}

func (ft *flowTable) stats() (int, uint64) {
	ft.mu.RLock()
	defer ft.mu.RUnlock()
	return len(ft.byKey), ft.evicted.Load()
}

// RemoteFlow implements txn.RemoteFlows: the id of connection id of the
// node whose branch prefix ends in holder. The holder need not be heard
// from yet (a node reads the bindings from Redis before the hellos
// arrive); the flow is usable once it is.
func (r *Relay) RemoteFlow(holder [6]byte, id uint64, proto transport.Proto, local netip.AddrPort) transport.ConnID {
	if holder == r.mine || id == 0 || !proto.Stream() {
		return 0
	}
	return r.flows.get(flowKey{holder, id}, proto, local)
}

// RemoteFlowInfo implements txn.RemoteFlows: the listener here of the
// flow's transport and address, the holder's relay address, the holder
// and its connection number; ok false when the holder is not heard from
// or reported the connection gone. No allocation.
func (r *Relay) RemoteFlowInfo(f transport.ConnID) (l *transport.Listener, relay netip.AddrPort, holder [6]byte, id uint64, ok bool) {
	e := r.flows.entry(f)
	if e == nil {
		return nil, relay, holder, 0, false
	}
	k, proto, local, gone := e.key, e.proto, e.local, e.gone.Load()
	r.flows.mu.RUnlock()
	relay, alive := (*r.peers.Load())[k.holder]
	if !alive || gone {
		return nil, relay, k.holder, k.id, false
	}
	if l = r.cfg.Listener(proto, local); l == nil {
		return nil, relay, k.holder, k.id, false
	}
	return l, relay, k.holder, k.id, true
}

// SendRemoteFlow implements txn.RemoteFlows: data goes to the holder of
// flow f, to be written on the connection. No allocation.
func (r *Relay) SendRemoteFlow(f transport.ConnID, data []byte, tag transport.Tag) error {
	if flowHdr+len(data) > maxRelayPacket {
		r.handFailed.Add(1)
		return errTooLarge
	}
	e := r.flows.entry(f)
	if e == nil {
		return ErrFlowGone
	}
	k, gone := e.key, e.gone.Load()
	r.flows.mu.RUnlock()
	dst, alive := (*r.peers.Load())[k.holder]
	if !alive || gone {
		return ErrFlowGone
	}
	bp := r.bufs.Get().(*[]byte)
	b := append((*bp)[:0], magicFlow...)
	b = append(b, k.holder[:]...)
	b = binary.BigEndian.AppendUint64(b, k.id)
	b = binary.BigEndian.AppendUint64(b, uint64(f))
	b = binary.BigEndian.AppendUint64(b, tag[0])
	b = binary.BigEndian.AppendUint64(b, tag[1])
	b = append(b, data...)
	_, err := r.conn.WriteToUDPAddrPort(b, dst)
	*bp = b
	r.bufs.Put(bp)
	if err != nil {
		r.sendErrs.Add(1)
		return err
	}
	r.handSent.Add(1)
	return nil
}

// handOver writes a request a peer (src) handed over on the connection it
// names, or tells the peer the connection is gone. The read loop checked
// that src is a configured peer.
func (r *Relay) handOver(src netip.AddrPort, pkt []byte) {
	holder := [6]byte(pkt[4:10])
	id := binary.BigEndian.Uint64(pkt[10:18])
	data := pkt[flowHdr:]
	if holder == r.mine && id != 0 && transport.ConnID(id)&txn.RemoteFlowBit == 0 && r.cfg.SendConn != nil {
		if r.cfg.SendConn(transport.ConnID(id), data) == nil {
			r.handReceived.Add(1)
			return
		}
	}
	// Not ours (an earlier run of this node held it) or closed.
	r.handDropped.Add(1)
	if binary.BigEndian.Uint64(pkt[26:34])|binary.BigEndian.Uint64(pkt[34:42]) == 0 {
		return // untagged: nobody waits for it
	}
	var b [flowGoneLen]byte
	copy(b[:], magicFlowGone)
	copy(b[4:], pkt[18:42]) // the sender's flow id and tag
	if _, err := r.conn.WriteToUDPAddrPort(b[:], src); err != nil {
		r.sendErrs.Add(1)
	}
}

// flowGone takes a holder's report that the connection of a hand-off is
// gone: the flow is dead from now on, and the branch that sent it fails.
// Only the flow's holder (src) can say so of its connections.
func (r *Relay) flowGone(src netip.AddrPort, pkt []byte) {
	f := transport.ConnID(binary.BigEndian.Uint64(pkt[4:12]))
	tag := transport.Tag{binary.BigEndian.Uint64(pkt[12:20]), binary.BigEndian.Uint64(pkt[20:28])}
	e := r.flows.entry(f)
	if e == nil {
		return // forgotten meanwhile: nothing to tell
	}
	if relay, ok := (*r.peers.Load())[e.key.holder]; !ok || relay != src {
		r.flows.mu.RUnlock()
		r.refused.Add(1)
		return
	}
	e.gone.Store(true)
	proto := e.proto
	r.flows.mu.RUnlock()
	r.handFailed.Add(1)
	if r.cfg.FlowFailed != nil {
		r.cfg.FlowFailed(transport.SendFailure{Conn: f, Tag: tag, Proto: proto, Err: ErrFlowGone})
	}
}
