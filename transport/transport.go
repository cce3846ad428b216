package transport

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Transport owns every listening socket, the stream connection table and
// the counters. Create it with New, bind with Start, stop with Close.
type Transport struct {
	cfg        Config
	handler    Handler
	listeners  []*Listener
	udpBufSize int

	started atomic.Bool
	closing atomic.Bool
	wg      sync.WaitGroup
	stats   counters

	closeOnce sync.Once
	streams   *streams // TCP (gnet) and TLS (workers); nil without stream listeners
	onSendErr atomic.Pointer[errHandler]
}

// New checks cfg and prepares a transport that delivers every received
// message to h. Nothing is bound until Start.
func New(cfg Config, h Handler) (*Transport, error) {
	if h == nil {
		return nil, errors.New("transport: nil handler")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg.withDefaults(), handler: h}
	if eh, ok := h.(SendErrorHandler); ok {
		t.SetSendErrorHandler(eh)
	}
	t.udpBufSize = t.cfg.MaxMessageSize
	if t.udpBufSize > maxUDPDatagram {
		t.udpBufSize = maxUDPDatagram
	}
	for i, lc := range cfg.Listeners {
		ap, _ := netip.ParseAddrPort(lc.Addr)
		if ap.Addr().Is4In6() {
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		t.listeners = append(t.listeners, &Listener{
			Index:          i,
			Proto:          lc.Proto,
			Local:          ap,
			AdvertisedHost: uriHost(lc.AdvertisedHost),
			AdvertisedPort: lc.AdvertisedPort,
		})
	}
	return t, nil
}

// Start binds every listener and starts the readers and event loops. When
// it returns without error, Listeners() show the bound addresses.
func (t *Transport) Start() error {
	if !t.started.CompareAndSwap(false, true) {
		return errors.New("transport: already started")
	}
	// Bind everything first: the Listener fields are final before any
	// reader or event loop can hand one to the handler.
	if err := t.bindUDP(); err != nil {
		t.Close()
		return err
	}
	if err := t.bindStreams(); err != nil {
		t.Close()
		return err
	}
	for _, l := range t.listeners {
		if l.AdvertisedHost == "" {
			l.AdvertisedHost = hostForURI(l.Local.Addr())
		}
		if l.AdvertisedPort == 0 {
			l.AdvertisedPort = l.Local.Port()
		}
	}
	t.startUDP()
	if err := t.startStreams(); err != nil {
		t.Close()
		return err
	}
	return nil
}

func (t *Transport) bindUDP() error {
	for _, l := range t.listeners {
		if l.Proto != UDP {
			continue
		}
		ap := l.Local
		for i := 0; i < t.cfg.UDPReaders; i++ {
			fd, bound, err := openUDP(ap, t.cfg.SocketBuffer)
			if err != nil {
				return &ConfigError{"listeners[" + strconv.Itoa(l.Index) + "].addr", err}
			}
			// Port 0: the first socket picks the port, the others join it.
			ap = bound
			l.Local = bound
			// A non-blocking descriptor handed to os.NewFile joins the
			// network poller.
			f := os.NewFile(uintptr(fd), "udp "+bound.String())
			l.udp = append(l.udp, &udpSocket{fd: fd, file: f, l: l, v6: bound.Addr().Is6()})
		}
	}
	return nil
}

func (t *Transport) startUDP() {
	stripe := 0
	for _, l := range t.listeners {
		for _, s := range l.udp {
			t.wg.Add(1)
			go t.runUDPReader(s, stripe)
			stripe++
		}
	}
}

// Close stops all readers and event loops, closes every socket and
// connection, and waits for the goroutines it started. Sends after Close
// return ErrClosed.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		// Sends check closing after counting themselves in flight: once
		// the count drops to zero no send can use the descriptor. Closing
		// the file wakes the reader parked on it; a reader serving a batch
		// sees closing after it, and the file's Close waits for it.
		for _, l := range t.listeners {
			for _, s := range l.udp {
				for s.inflight.Load() != 0 {
					runtime.Gosched()
				}
				s.file.Close()
			}
		}
		t.stopStreams()
		t.wg.Wait()
	})
	return nil
}

// Listeners returns the listeners in configuration order. The slice and
// the Listeners are shared: do not modify them.
func (t *Transport) Listeners() []*Listener { return t.listeners }

// Listener returns the first listener of proto whose address family
// matches dst (IPv4 or IPv6); for stream protocols a listener of the other
// family is returned when none matches. Nil when proto is not served.
func (t *Transport) Listener(proto Proto, dst netip.Addr) *Listener {
	v6 := dst.Is6() && !dst.Is4In6()
	var other *Listener
	for _, l := range t.listeners {
		if l.Proto != proto {
			continue
		}
		if l.Local.Addr().Is6() == v6 {
			return l
		}
		if other == nil {
			other = l
		}
	}
	if proto.Stream() && other != nil {
		return other
	}
	if proto.WebSocket() {
		// A SIP URI says transport=ws for WS and WSS alike (RFC 7118
		// §5.2): either listener serves it.
		for _, l := range t.listeners {
			if l.Proto == proto^WS^WSS {
				return l
			}
		}
	}
	return nil
}

// Send sends one message to dst on l's protocol.
//
// UDP: one datagram from l's own socket (the source address and port are
// the listener's), never blocking; ErrWouldBlock when the socket buffer is
// full. TCP/TLS: on the open connection to dst (inbound or outbound, or an
// alias registered with Alias); without one, a connection is opened in the
// background and data is queued up to WriteQueueBytes meanwhile. data is
// copied or written before Send returns: the caller may reuse it at once.
// Send may be called from a Handler and from any goroutine. A queued
// message that is lost when the connection cannot be opened is not
// reported: use SendTagged for that.
func (t *Transport) Send(l *Listener, dst netip.AddrPort, data []byte) error {
	return t.SendTagged(l, dst, data, Tag{})
}

// SendProto is Send with the listener chosen by Listener(proto, dst.Addr()).
func (t *Transport) SendProto(proto Proto, dst netip.AddrPort, data []byte) error {
	l := t.Listener(proto, dst.Addr())
	if l == nil {
		t.stats.sendDrops.Add(1)
		return ErrNoListener
	}
	return t.Send(l, dst, data)
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	return t.stats.snapshot()
}
