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
	// listed: the slot is on the free list (flowTable.free), at most
	// once, so the list never outgrows the table.
	listed atomic.Bool
}

// flowTable is the bounded table of (holder, connection) pairs. Lookups
// by id take the read lock; a new pair takes the write lock and, when the
// table is full, reuses first the slot of a flow known to be gone (the
// free list: the holder reported the connection gone, or the holder is
// not heard from), and only when there is none the slot of one not used
// for a while (the clock algorithm: the hand clears "used" marks until it
// finds a slot without).
//
// An id whose slot was reused names nothing; the registrar then resolves
// the binding's flow again from its name (RemoteFlow), so a table smaller
// than the flows in use costs look-ups, not calls.
type flowTable struct {
	mu      sync.RWMutex
	byKey   map[flowKey]uint32
	slots   []flowEntry
	max     int
	hand    int
	evicted atomic.Uint64 // live flows forgotten by the clock
	freed   atomic.Uint64 // slots of gone flows reused

	freeMu sync.Mutex // free; also taken by holders of the read lock
	free   []uint32
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

// get returns the id of (holder, id), adding it. peers are the holders
// heard from now.
func (ft *flowTable) get(k flowKey, proto transport.Proto, local netip.AddrPort, peers map[[6]byte]netip.AddrPort) transport.ConnID {
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
	} else if j, ok := ft.popFree(peers); ok {
		i = j
		delete(ft.byKey, ft.slots[i].key)
		ft.freed.Add(1)
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
	e.listed.Store(false)
	ft.byKey[k] = uint32(i)
	if _, alive := peers[k.holder]; !alive && len(ft.slots) == ft.max {
		// A full table and a holder not heard from (dead, or not yet
		// heard at start): its slot goes first, before a live flow's.
		ft.markFree(i)
	}
	return flowID(i, e.gen)
}

// markFree puts slot i on the free list: its flow is gone, or its holder
// is not heard from. The caller holds ft.mu (read or write).
func (ft *flowTable) markFree(i int) {
	if ft.slots[i].listed.Swap(true) {
		return
	}
	ft.freeMu.Lock()
	ft.free = append(ft.free, uint32(i))
	ft.freeMu.Unlock()
}

// popFree returns a slot of the free list whose flow is still gone or
// whose holder is still not heard from (peers: the holders heard from);
// the others (a holder heard again) go back to the clock. The caller
// holds the write lock.
func (ft *flowTable) popFree(peers map[[6]byte]netip.AddrPort) (int, bool) {
	ft.freeMu.Lock()
	defer ft.freeMu.Unlock()
	for len(ft.free) > 0 {
		i := int(ft.free[len(ft.free)-1])
		ft.free = ft.free[:len(ft.free)-1]
		e := &ft.slots[i]
		if !e.listed.Swap(false) {
			continue
		}
		if _, alive := peers[e.key.holder]; e.gone.Load() || !alive {
			return i, true
		}
	}
	return 0, false
}

// forget lists the slots of the flows whose holders are no longer heard
// from (gone: their prefixes), so that new flows take their slots first.
func (ft *flowTable) forget(gone map[[6]byte]bool) {
	ft.mu.RLock()
	defer ft.mu.RUnlock()
	for i := range ft.slots {
		if gone[ft.slots[i].key.holder] {
			ft.markFree(i)
		}
	}
}

func (ft *flowTable) stats() (n int, evicted, freed uint64) {
	ft.mu.RLock()
	defer ft.mu.RUnlock()
	return len(ft.byKey), ft.evicted.Load(), ft.freed.Load()
}

// RemoteFlow implements txn.RemoteFlows: the id of connection id of the
// node whose branch prefix ends in holder. The holder need not be heard
// from yet (a node reads the bindings from Redis before the hellos
// arrive); the flow is usable once it is.
func (r *Relay) RemoteFlow(holder [6]byte, id uint64, proto transport.Proto, local netip.AddrPort) transport.ConnID {
	if holder == r.mine || id == 0 || !proto.Stream() {
		return 0
	}
	return r.flows.get(flowKey{holder, id}, proto, local, *r.peers.Load())
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
//
// A tagged hand-off is written with a tag of this node's (pendingRing):
// the transport may accept it and then lose it, when the connection
// closes before the request is written; its SendFailure then comes back
// here (SendErrors) and is reported to the sender like a connection found
// gone at once.
func (r *Relay) handOver(src netip.AddrPort, pkt []byte) {
	holder := [6]byte(pkt[4:10])
	id := binary.BigEndian.Uint64(pkt[10:18])
	data := pkt[flowHdr:]
	tagged := binary.BigEndian.Uint64(pkt[26:34])|binary.BigEndian.Uint64(pkt[34:42]) != 0
	if holder == r.mine && id != 0 && transport.ConnID(id)&txn.RemoteFlowBit == 0 && r.cfg.SendConn != nil {
		var tag transport.Tag
		if tagged {
			tag = r.pending.add(src, [24]byte(pkt[18:42]))
		}
		if r.cfg.SendConn(transport.ConnID(id), data, tag) == nil {
			r.handReceived.Add(1)
			return
		}
		if tagged {
			r.pending.take(tag) // reported below
		}
	}
	// Not ours (an earlier run of this node held it) or closed.
	r.handDropped.Add(1)
	if !tagged {
		return // untagged: nobody waits for it
	}
	r.reportGone(src, [24]byte(pkt[18:42]))
}

// reportGone tells the sender of a hand-off (src) that its connection is
// gone; ref is the sender's flow id and tag, as in its SBRF.
func (r *Relay) reportGone(src netip.AddrPort, ref [24]byte) {
	var b [flowGoneLen]byte
	copy(b[:], magicFlowGone)
	copy(b[4:], ref[:])
	if _, err := r.conn.WriteToUDPAddrPort(b[:], src); err != nil {
		r.sendErrs.Add(1)
	}
}

// handoffMark is tag[0] of the hand-offs this node writes tagged; tag[1]
// is the pending hand-off's sequence number, below 1<<63, so that no
// branch tag of txn's (top bit of tag[1] set) is taken for one.
const handoffMark = 0x5342524668616e64 // "SBRFhand"

// pendingHandoffs is how many tagged hand-offs the holder remembers: the
// most recent ones. A connection that closes with a request still queued
// does so within the time it takes to write it (milliseconds), or within
// limits.write_queue's worth for a phone that does not read; a report
// lost past that costs the sender's branch its timer (408), as before.
const pendingHandoffs = 4096

// pendingRing holds the sender (relay address, flow id and tag) of the
// tagged hand-offs written here lately, by sequence number.
type pendingRing struct {
	mu   sync.Mutex
	seq  uint64
	ring [pendingHandoffs]pendingHandoff
}

type pendingHandoff struct {
	seq uint64 // 0: free
	src netip.AddrPort
	ref [24]byte
}

func (p *pendingRing) add(src netip.AddrPort, ref [24]byte) transport.Tag {
	p.mu.Lock()
	p.seq = (p.seq + 1) & (1<<63 - 1)
	if p.seq == 0 {
		p.seq = 1
	}
	seq := p.seq
	p.ring[seq%pendingHandoffs] = pendingHandoff{seq: seq, src: src, ref: ref}
	p.mu.Unlock()
	return transport.Tag{handoffMark, seq}
}

// take returns and forgets the hand-off of tag; false when it is not one
// of ours or was overwritten by later ones.
func (p *pendingRing) take(tag transport.Tag) (pendingHandoff, bool) {
	if tag[0] != handoffMark || tag[1]>>63 != 0 || tag[1] == 0 {
		return pendingHandoff{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.ring[tag[1]%pendingHandoffs]
	if h.seq != tag[1] {
		return pendingHandoff{}, false
	}
	got := *h
	*h = pendingHandoff{}
	return got, true
}

// SendErrors returns the SendErrorHandler for the transport of a node in
// a group: the late failures of hand-offs written here (the connection
// closed before the request was written) are reported to their senders,
// which answer 430 at once; every other failure goes to next (the core).
// Set it on the transport after the core (which sets itself).
func (r *Relay) SendErrors(next transport.SendErrorHandler) transport.SendErrorHandler {
	return &sendErrors{r, next}
}

type sendErrors struct {
	r    *Relay
	next transport.SendErrorHandler
}

func (h *sendErrors) SendFailed(f transport.SendFailure) {
	if f.Tag[0] == handoffMark && f.Tag[1]>>63 == 0 {
		if p, ok := h.r.pending.take(f.Tag); ok {
			h.r.handDropped.Add(1)
			h.r.reportGone(p.src, p.ref)
		}
		return
	}
	if h.next != nil {
		h.next.SendFailed(f)
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
	r.flows.markFree(int(f & (1<<32 - 1)))
	proto := e.proto
	r.flows.mu.RUnlock()
	r.handFailed.Add(1)
	if r.cfg.FlowFailed != nil {
		r.cfg.FlowFailed(transport.SendFailure{Conn: f, Tag: tag, Proto: proto, Err: ErrFlowGone})
	}
}
