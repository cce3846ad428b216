// Package anycast lets several nodes share one SIP address (BGP anycast
// in production; SO_REUSEPORT on one machine in the tests) over UDP.
//
// A node sends requests from the shared address and writes it in its Via,
// so the responses come back to the shared address, and the network (ECMP,
// or the kernel's SO_REUSEPORT hash) hands them to whichever node the
// responder's flow hashes to, not necessarily the one whose transaction
// they answer. Every branch a node makes starts with its own random
// prefix (txn.Core.BranchPrefix); a node that receives a response with
// another node's prefix relays it, with its original source, to that node
// over a unicast relay address, and the owner handles it as if it had
// arrived itself (the txn.Config.ForeignResponse hook). This is what
// OpenSIPS's anycast support does with its clusterer replicating replies
// to the node owning the transaction.
//
// A TCP, TLS or WebSocket connection lands on one node and stays there.
// A node that has to send a request over a connection another node holds
// (a call to a phone registered through that node, an in-dialog request
// whose flow token names it) hands the request to the holder over the
// relay (flows.go): it keeps the transaction, the holder writes the bytes
// on the connection unchanged, and the phone's responses, which come back
// on the connection to the holder, are relayed to the sender like those
// over UDP. When the connection is gone the holder says so and the
// sender answers 430 Flow Failed at once.
//
// Nodes learn each other's prefixes from hellos they send every half
// second to the configured peers' relay addresses; a peer unheard for
// PeerTimeout is forgotten (its responses are then forwarded statelessly,
// as any response of an unknown transaction, and the flows it held are
// failed flows). Packets on the relay socket are taken only from the
// configured peers' addresses: keep the relay addresses on a private
// network.
package anycast

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/transport"
)

// PeerTimeout is how long a peer's prefix is kept without a hello.
//
// Hellos go every 0.5 s: 5 s rides out a node starved of CPU for a few
// seconds, and bounds how long responses to a dead node's transactions are
// sent to it instead of being forwarded statelessly.
const PeerTimeout = 5 * time.Second

// Packet kinds on the relay socket:
//
//   - "SBRH" + 13-byte branch prefix: a hello;
//   - "SBRR" + local address (18 bytes) + source (18 bytes) + the
//     response: a response received over UDP;
//   - "SBRS" + transport (1 byte) + local address + source + the response:
//     a response received over a stream connection (flows.go);
//   - "SBRF" + holder (6 bytes) + connection (8) + flow id (8) + tag (16)
//   - the request: a request to write on a connection the receiver
//     holds (flows.go);
//   - "SBRX" + flow id (8) + tag (16): the connection of an SBRF is gone.
const (
	magicHello     = "SBRH"
	magicResp      = "SBRR"
	magicStream    = "SBRS"
	magicFlow      = "SBRF"
	magicFlowGone  = "SBRX"
	prefixLen      = 13 // "z9hG4bK" + 6
	addrLen        = 18 // 16-byte address, 2-byte port
	respHdr        = 4 + 2*addrLen
	streamHdr      = 4 + 1 + 2*addrLen
	flowHdr        = 4 + 6 + 8 + 8 + 16
	flowGoneLen    = 4 + 8 + 16
	maxRelayPacket = 65507 // the largest UDP payload over IPv4
	relayBuffer    = 1 << 20
)

// Config configures a Relay.
type Config struct {
	// Listen is this node's relay address (unicast, private).
	Listen netip.AddrPort
	// Peers are the other nodes' relay addresses.
	Peers []netip.AddrPort
	// Prefix is this node's branch prefix (txn.Core.BranchPrefix).
	Prefix string
	// Handle takes a relayed response (txn.Core.HandleMessage).
	Handle func(*transport.Packet)
	// Listener returns this node's listener of proto bound to local (the
	// shared address a response was received on, or a flow's listener on
	// the node that holds it); with an invalid local, any listener of
	// proto. Nil drops the response, or makes the flow unusable here.
	Listener func(proto transport.Proto, local netip.AddrPort) *transport.Listener
	// SendConn writes a request another node handed over on stream
	// connection id of this node (transport.Transport.SendConnTagged:
	// a non-zero tag comes back in a SendFailure to SendErrors when the
	// connection closes before the request is written); nil refuses
	// every hand-off.
	SendConn func(id transport.ConnID, data []byte, tag transport.Tag) error
	// FlowFailed gets the hand-offs whose holder found the connection
	// gone (txn.Core.SendFailed): Conn is the flow, Tag the one given to
	// SendRemoteFlow.
	FlowFailed func(transport.SendFailure)
	// MaxFlows bounds the connections of other nodes this node knows
	// (RemoteFlow, anycast.max_flows); past it the slot of a gone one is
	// reused, else that of one not used lately. Default 65536.
	MaxFlows int
	Logger   *slog.Logger
}

// Relay hands responses between the nodes of an anycast group.
type Relay struct {
	cfg     Config
	conn    *net.UDPConn
	mine    [6]byte
	allowed map[netip.AddrPort]bool

	mu    sync.Mutex // seen
	seen  map[[6]byte]peer
	peers atomic.Pointer[map[[6]byte]netip.AddrPort] // read on the receive path

	bufs sync.Pool

	relayed, received, refused, sendErrs atomic.Uint64

	flows   flowTable   // connections other nodes hold (flows.go)
	pending pendingRing // tagged hand-offs written here lately (flows.go)
	// hand-offs: sent to a holder, written here for another node, failed
	// (the holder reported the connection gone), dropped here (no such
	// connection)
	handSent, handReceived, handFailed, handDropped atomic.Uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

type peer struct {
	addr netip.AddrPort
	last time.Time
}

// New binds the relay socket.
func New(cfg Config) (*Relay, error) {
	if len(cfg.Prefix) != prefixLen {
		return nil, errors.New("anycast: branch prefix must be 13 bytes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.Listen))
	if err != nil {
		return nil, err
	}
	// Nothing on the relay is sent again when lost (a relayed response
	// or a hand-off is sent once): the kernel's default 208 KiB drops
	// datagrams when the reader waits for a core under load. The kernel
	// caps it at net.core.rmem_max / wmem_max.
	conn.SetReadBuffer(relayBuffer)
	conn.SetWriteBuffer(relayBuffer)
	r := &Relay{cfg: cfg, conn: conn, allowed: map[netip.AddrPort]bool{}, seen: map[[6]byte]peer{}, stop: make(chan struct{})}
	copy(r.mine[:], cfg.Prefix[7:])
	for _, p := range cfg.Peers {
		r.allowed[unmap(p)] = true
	}
	empty := map[[6]byte]netip.AddrPort{}
	r.peers.Store(&empty)
	r.bufs.New = func() any { b := make([]byte, 0, 65536+flowHdr); return &b }
	r.flows.init(cfg.MaxFlows)
	return r, nil
}

// Addr is the bound relay address.
func (r *Relay) Addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Start starts the hellos and the relay socket's reader. Call it after
// the transport started: the reader writes hand-offs through SendConn.
// Forward and the flow methods may be used before.
func (r *Relay) Start() {
	r.wg.Add(2)
	go r.readLoop()
	go r.helloLoop()
}

// Close stops the relay.
func (r *Relay) Close() {
	close(r.stop)
	r.conn.Close()
	r.wg.Wait()
}

// Forward relays a response whose branch another node of the group made
// to that node; false when the branch is not a known peer's (the caller
// forwards it statelessly). It runs on the receive path and allocates
// nothing.
//
// Responses received over a stream connection are relayed too: a request
// another node handed to this one for a connection it holds is answered
// on that connection (flows.go).
func (r *Relay) Forward(branch, data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto) bool {
	if len(branch) < prefixLen || string(branch[:7]) != "z9hG4bK" || l == nil {
		return false
	}
	key := [6]byte(branch[7:prefixLen])
	if key == r.mine {
		return false
	}
	dst, ok := (*r.peers.Load())[key]
	if !ok {
		return false
	}
	bp := r.bufs.Get().(*[]byte)
	var b []byte
	if proto == transport.UDP {
		b = append((*bp)[:0], magicResp...)
	} else {
		b = append((*bp)[:0], magicStream...)
		b = append(b, byte(proto))
	}
	b = appendAddr(b, l.Local)
	b = appendAddr(b, src)
	b = append(b, data...)
	if _, err := r.conn.WriteToUDPAddrPort(b, dst); err != nil {
		r.sendErrs.Add(1)
	} else {
		r.relayed.Add(1)
	}
	*bp = b
	r.bufs.Put(bp)
	return true
}

func appendAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().As16()
	b = append(b, a[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func readAddr(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])).Unmap(), binary.BigEndian.Uint16(b[16:]))
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (r *Relay) readLoop() {
	defer r.wg.Done()
	buf := make([]byte, 65536+flowHdr)
	var p transport.Packet
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = unmap(src)
		if !r.allowed[src] || n < 4 {
			r.refused.Add(1)
			continue
		}
		switch string(buf[:4]) {
		case magicHello:
			if n == 4+prefixLen {
				r.hello(src, [6]byte(buf[4+7:4+prefixLen]))
			}
		case magicResp:
			if n <= respHdr {
				continue
			}
			l := r.cfg.Listener(transport.UDP, readAddr(buf[4:]))
			if l == nil {
				r.refused.Add(1)
				continue
			}
			p = transport.Packet{Data: buf[respHdr:n], Src: readAddr(buf[4+addrLen:]), Listener: l, Proto: transport.UDP}
			r.received.Add(1)
			r.cfg.Handle(&p)
		case magicStream:
			if n <= streamHdr {
				continue
			}
			proto := transport.Proto(buf[4])
			var l *transport.Listener
			if proto.Stream() {
				l = r.cfg.Listener(proto, readAddr(buf[5:]))
			}
			if l == nil {
				r.refused.Add(1)
				continue
			}
			p = transport.Packet{Data: buf[streamHdr:n], Src: readAddr(buf[5+addrLen:]), Listener: l, Proto: proto}
			r.received.Add(1)
			r.cfg.Handle(&p)
		case magicFlow:
			if n > flowHdr {
				r.handOver(src, buf[:n])
			}
		case magicFlowGone:
			if n == flowGoneLen {
				r.flowGone(src, buf[:n])
			}
		}
	}
}

// hello records a peer's prefix; the map the receive path reads is
// replaced only when it changes.
func (r *Relay) hello(src netip.AddrPort, key [6]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, known := r.seen[key]
	r.seen[key] = peer{addr: src, last: time.Now()}
	if !known || old.addr != src {
		r.cfg.Logger.Info("anycast: peer up", "relay", src.String(), "branch_prefix", "z9hG4bK"+string(key[:]))
		r.publish()
	}
}

// expire forgets peers unheard for PeerTimeout; the slots of the flows
// they held are reused first (flowTable.forget).
func (r *Relay) expire() {
	r.mu.Lock()
	var gone map[[6]byte]bool
	for k, p := range r.seen {
		if time.Since(p.last) > PeerTimeout {
			delete(r.seen, k)
			if gone == nil {
				gone = map[[6]byte]bool{}
			}
			gone[k] = true
			r.cfg.Logger.Warn("anycast: peer gone (no hello): its responses are forwarded statelessly", "relay", p.addr.String())
		}
	}
	if gone != nil {
		r.publish()
	}
	r.mu.Unlock()
	if gone != nil {
		r.flows.forget(gone)
	}
}

func (r *Relay) publish() {
	m := make(map[[6]byte]netip.AddrPort, len(r.seen))
	for k, p := range r.seen {
		m[k] = p.addr
	}
	r.peers.Store(&m)
}

func (r *Relay) helloLoop() {
	defer r.wg.Done()
	msg := append([]byte(magicHello), r.cfg.Prefix...)
	t := time.NewTicker(time.Second / 2)
	defer t.Stop()
	for {
		for _, p := range r.cfg.Peers {
			r.conn.WriteToUDPAddrPort(msg, p)
		}
		r.expire()
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// Stats are the relay's counters.
type Stats struct {
	Peers                      int
	Relayed, Received, Refused uint64
	SendErrors                 uint64
	// Flows are the connections of other nodes known here; FlowsEvicted
	// live ones forgotten to make room (MaxFlows), FlowsFreed the slots of
	// gone ones (reported closed, or their node not heard from) reused.
	Flows        int
	FlowsEvicted uint64
	FlowsFreed   uint64
	// Hand-offs of requests over connections: sent to their holder,
	// received from another node and written here, failed (the holder
	// reported the connection gone), dropped here (no such connection).
	HandoffsSent, HandoffsReceived, HandoffsFailed, HandoffsDropped uint64
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	flows, evicted, freed := r.flows.stats()
	return Stats{Peers: len(*r.peers.Load()), Relayed: r.relayed.Load(), Received: r.received.Load(),
		Refused: r.refused.Load(), SendErrors: r.sendErrs.Load(), Flows: flows, FlowsEvicted: evicted, FlowsFreed: freed,
		HandoffsSent: r.handSent.Load(), HandoffsReceived: r.handReceived.Load(),
		HandoffsFailed: r.handFailed.Load(), HandoffsDropped: r.handDropped.Load()}
}
