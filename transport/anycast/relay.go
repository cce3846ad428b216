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
// Nodes learn each other's prefixes from hellos they send every second to
// the configured peers' relay addresses; a peer unheard for
// PeerTimeout is forgotten (its responses are then forwarded statelessly,
// as any response of an unknown transaction). Packets on the relay socket
// are taken only from the configured peers' addresses: keep the relay
// addresses on a private network.
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

// Packet kinds on the relay socket: "SBRH" + 13-byte branch prefix (a
// hello), "SBRR" + local address (18 bytes) + source (18 bytes) + the
// response (a relayed response).
const (
	magicHello = "SBRH"
	magicResp  = "SBRR"
	prefixLen  = 13 // "z9hG4bK" + 6
	addrLen    = 18 // 16-byte address, 2-byte port
	respHdr    = 4 + 2*addrLen
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
	// Listener returns this node's UDP listener bound to local (the
	// shared address the response was received on); nil drops it.
	Listener func(local netip.AddrPort) *transport.Listener
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
	r := &Relay{cfg: cfg, conn: conn, allowed: map[netip.AddrPort]bool{}, seen: map[[6]byte]peer{}, stop: make(chan struct{})}
	copy(r.mine[:], cfg.Prefix[7:])
	for _, p := range cfg.Peers {
		r.allowed[unmap(p)] = true
	}
	empty := map[[6]byte]netip.AddrPort{}
	r.peers.Store(&empty)
	r.bufs.New = func() any { b := make([]byte, 0, 65536+respHdr); return &b }
	return r, nil
}

// Addr is the bound relay address.
func (r *Relay) Addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Start starts the hellos and the relay socket's reader.
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
func (r *Relay) Forward(branch, data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto) bool {
	if proto != transport.UDP || len(branch) < prefixLen || string(branch[:7]) != "z9hG4bK" || l == nil {
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
	b := append((*bp)[:0], magicResp...)
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
	buf := make([]byte, 65536+respHdr)
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
			l := r.cfg.Listener(readAddr(buf[4:]))
			if l == nil {
				r.refused.Add(1)
				continue
			}
			p = transport.Packet{Data: buf[respHdr:n], Src: readAddr(buf[4+addrLen:]), Listener: l, Proto: transport.UDP}
			r.received.Add(1)
			r.cfg.Handle(&p)
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

// expire forgets peers unheard for PeerTimeout.
func (r *Relay) expire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for k, p := range r.seen {
		if time.Since(p.last) > PeerTimeout {
			delete(r.seen, k)
			changed = true
			r.cfg.Logger.Warn("anycast: peer gone (no hello): its responses are forwarded statelessly", "relay", p.addr.String())
		}
	}
	if changed {
		r.publish()
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
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	return Stats{Peers: len(*r.peers.Load()), Relayed: r.relayed.Load(), Received: r.received.Load(),
		Refused: r.refused.Load(), SendErrors: r.sendErrs.Load()}
}
