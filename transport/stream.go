package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// ErrConnLimit is returned by Send when a new outbound connection would
// exceed MaxConns.
var ErrConnLimit = errors.New("transport: connection limit reached")

const (
	connDialing uint8 = iota // outbound connect or TLS handshake in progress
	connOpen
	connClosed
)

// wbuf is a pooled copy of data waiting to be written on a stream, with
// the destination and tag it was sent with (for SendFailure).
type wbuf struct {
	b   []byte
	dst netip.AddrPort
	tag Tag
}

var wbufPool = sync.Pool{New: func() any { return &wbuf{b: make([]byte, 0, 2048)} }}

func getWbuf(data []byte, dst netip.AddrPort, tag Tag) *wbuf {
	w := wbufPool.Get().(*wbuf)
	w.b = append(w.b[:0], data...)
	w.dst, w.tag = dst, tag
	return w
}

func putWbuf(w *wbuf) {
	if cap(w.b) > 64<<10 {
		return // do not keep rare huge buffers
	}
	wbufPool.Put(w)
}

var crlf = []byte("\r\n")

// streamConn is one TCP or TLS connection, inbound or outbound.
type streamConn struct {
	s       *streams
	id      ConnID
	proto   Proto
	l       *Listener
	remote  netip.AddrPort
	inbound bool
	keys    []connKey // table keys (address, aliases); guarded by connTable.mu

	lastRead atomic.Int64 // coarse clock, unix nanoseconds
	// partSince is when the bytes of a message not yet whole began to
	// wait in the read buffer (coarse clock), 0 when none wait.
	partSince atomic.Int64
	pkt       Packet // reused for every message read on this connection

	mu          sync.Mutex
	state       uint8
	queue       []*wbuf   // waiting for the connection (dialing) or for the next flush
	queuedBytes int       // the memory the queue holds: its buffers' capacity
	pongBuf     *wbuf     // TLS, WS: the answer to a ping in queue, until a writer takes it (queuePong)
	pongOp      byte      // pongBuf's WebSocket opcode
	gc          gnet.Conn // TCP
	raw         net.Conn  // TLS: the TCP connection under tc
	tc          *tls.Conn
	wake        chan struct{} // TLS writer signal
	done        chan struct{} // closed when the connection is closed

	// TCP writes are coalesced: senders append to queue and, when no flush
	// is pending, wake the event loop once; flush writes the whole queue.
	flushPending bool
	spare        []*wbuf
	iov          [][]byte // event loop only
	unread       int      // TCP: bytes left in gnet's inbound buffer; event loop only

	serverName string  // outbound TLS: name to verify and send as SNI ("" = the IP)
	ws         *wsConn // WS, WSS: frame reader and keep-alive state

	closeOnce sync.Once
	closeErr  error              // why the connection failed, if it did; guarded by mu
	onFlush   gnet.AsyncCallback // bound once: no allocation per send
}

func (s *streams) newConn(proto Proto, l *Listener, remote netip.AddrPort, inbound bool) *streamConn {
	c := &streamConn{
		s:       s,
		proto:   proto,
		l:       l,
		remote:  remote,
		inbound: inbound,
		done:    make(chan struct{}),
	}
	c.onFlush = c.flush
	c.lastRead.Store(s.now.Load())
	return c
}

// send queues data on the connection. It never blocks on the network.
// dst and tag are kept with the data for a SendFailure should the
// connection close before writing it (zero tag: not reported).
func (c *streamConn) send(data []byte, dst netip.AddrPort, tag Tag) error {
	op := byte(0)
	if c.ws != nil {
		op = wsOpFor(data)
	}
	return c.sendOp(op, data, dst, tag)
}

// sendOp is send with the WebSocket opcode to frame data with (0: not a
// WebSocket connection, data goes as it is).
func (c *streamConn) sendOp(op byte, data []byte, dst netip.AddrPort, tag Tag) error {
	return c.enqueue(op, data, dst, tag, false)
}

// enqueue is sendOp; pong marks data as the answer to a ping (queuePong).
//
// The queue's bound counts the capacity of its buffers, not the bytes
// they carry: a buffer holds at least 2 KiB, so a peer that makes the
// server queue many small messages (pongs) and reads none must not hold
// a thousand times the bound.
func (c *streamConn) enqueue(op byte, data []byte, dst netip.AddrPort, tag Tag, pong bool) error {
	limit := c.s.t.cfg.WriteQueueBytes
	c.mu.Lock()
	switch c.state {
	case connClosed:
		c.mu.Unlock()
		return ErrNoConn
	case connDialing:
		if c.queuedBytes+len(data) > limit {
			c.mu.Unlock()
			c.s.t.stats.sendDrops.Add(1)
			return ErrQueueFull
		}
		w := c.newWbuf(op, data, dst, tag)
		c.queue = append(c.queue, w)
		c.queuedBytes += cap(w.b)
		c.mu.Unlock()
		return nil
	}
	if c.queuedBytes+len(data) > limit {
		// The peer does not read: close rather than grow without bound.
		c.mu.Unlock()
		c.s.t.stats.connsOverflow.Add(1)
		c.s.t.stats.sendDrops.Add(1)
		c.fail(ErrQueueFull, false)
		return ErrQueueFull
	}
	w := c.newWbuf(op, data, dst, tag)
	c.queue = append(c.queue, w)
	c.queuedBytes += cap(w.b)
	if pong {
		c.pongBuf, c.pongOp = w, op
	}
	wake := !c.flushPending
	c.flushPending = true
	gc := c.gc
	c.mu.Unlock()
	if c.proto == TCP {
		// One wake-up per burst: gnet allocates a little per Wake, and
		// under load many sends share one flush.
		if wake {
			if err := gc.Wake(c.onFlush); err != nil {
				c.s.t.stats.errors.Add(1)
				// The caller learns from err: not from a SendFailure too.
				c.unqueue(w)
				c.fail(err, false)
				return err
			}
		}
	} else if wake {
		select {
		case c.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	c.s.t.stats.out(int(c.id), c.proto, len(data))
	return nil
}

func (c *streamConn) newWbuf(op byte, data []byte, dst netip.AddrPort, tag Tag) *wbuf {
	if c.ws != nil {
		return getWSWbuf(op, data, dst, tag)
	}
	return getWbuf(data, dst, tag)
}

// unqueue takes w back out of the queue if it is still there.
func (c *streamConn) unqueue(w *wbuf) {
	c.mu.Lock()
	for i := len(c.queue) - 1; i >= 0; i-- {
		if c.queue[i] == w {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			c.queuedBytes -= cap(w.b)
			if c.pongBuf == w {
				c.pongBuf = nil
			}
			c.mu.Unlock()
			putWbuf(w)
			return
		}
	}
	c.mu.Unlock()
}

// flush runs on the gnet event loop (after Wake) and writes everything
// queued, in order, to the socket or to gnet's outbound buffer.
func (c *streamConn) flush(gc gnet.Conn, _ error) error {
	c.mu.Lock()
	batch := c.queue
	c.queue = c.spare[:0]
	c.queuedBytes = 0
	c.pongBuf = nil
	c.flushPending = false
	closed := c.state == connClosed
	c.mu.Unlock()
	if !closed && gc != nil && len(batch) > 0 {
		// writev takes at most IOV_MAX (1024) buffers; gnet closes the
		// connection on EINVAL, so write in chunks.
		const maxIOV = 512
		iov := c.iov[:0]
		for i := 0; i < len(batch); i += maxIOV {
			iov = iov[:0]
			for _, w := range batch[i:min(i+maxIOV, len(batch))] {
				iov = append(iov, w.b)
			}
			if _, err := gc.Writev(iov); err != nil {
				// gnet closes the connection; the rest is lost.
				c.s.t.stats.sendDrops.Add(uint64(len(batch) - i))
				if lost := taggedOf(batch[i:]); len(lost) > 0 && c.s.t.onSendErr.Load() != nil {
					go c.s.reportDropped(c, lost, err)
				}
				break
			}
		}
		clear(iov)
		c.iov = iov[:0]
	}
	for i, w := range batch {
		putWbuf(w)
		batch[i] = nil
	}
	c.mu.Lock()
	c.spare = batch[:0]
	c.mu.Unlock()
	// gnet's outbound buffer grows when the peer does not read: bound it.
	if !closed && gc != nil && gc.OutboundBuffered() > c.s.t.cfg.WriteQueueBytes {
		c.s.t.stats.connsOverflow.Add(1)
		c.fail(ErrQueueFull, false)
	}
	return nil
}

// close removes the connection from the table and closes its socket. It is
// idempotent and safe from any goroutine. Tagged messages still queued are
// reported to the SendErrorHandler on a new goroutine: close may run on an
// event loop, which must not wait for the handler.
func (c *streamConn) close() { c.fail(nil, false) }

// fail closes the connection because of err (nil: no error of its own).
// With inline set the queued tagged messages are reported on the calling
// goroutine, which must hold no lock and be no event loop: a dialer or
// the TLS writer.
func (c *streamConn) fail(err error, inline bool) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.state = connClosed
		if c.closeErr == nil {
			c.closeErr = err
		}
		err = c.closeErr
		q := c.queue
		c.queue = nil
		c.queuedBytes = 0
		c.pongBuf = nil
		gc, raw := c.gc, c.raw
		c.mu.Unlock()
		lost := taggedOf(q)
		c.s.t.stats.sendDrops.Add(uint64(len(q)))
		for _, w := range q {
			putWbuf(w)
		}
		c.s.table.remove(c)
		c.s.t.stats.connsOpen.Add(-1)
		close(c.done)
		if gc != nil {
			_ = gc.Close()
		}
		if raw != nil {
			_ = raw.Close()
		}
		if len(lost) > 0 && c.s.t.onSendErr.Load() != nil {
			if inline {
				c.s.reportDropped(c, lost, err)
			} else {
				go c.s.reportDropped(c, lost, err)
			}
		}
	})
}

func (c *streamConn) dialing() bool {
	c.mu.Lock()
	d := c.state == connDialing
	c.mu.Unlock()
	return d
}

// consume delivers the complete messages at the start of b to the handler
// and returns the bytes used. An error means the stream cannot be framed
// any more and the connection must be closed.
// errRefused ends an inbound connection whose source Config.Admit now
// refuses.
var errRefused = errors.New("transport: source refused")

func (c *streamConn) consume(b []byte) (int, error) {
	t := c.s.t
	used := 0
	for {
		n, pings, need := skipKeepalives(b[used:])
		used += n
		for ; pings > 0; pings-- {
			t.stats.keepalivePings.Add(1)
			c.pong()
		}
		rest := b[used:]
		if need || len(rest) == 0 {
			return used, nil
		}
		skip, m, err := frameMessage(rest, t.cfg.MaxMessageSize)
		if err != nil {
			return used, err
		}
		// The stray CRs and LFs before a message (or before nothing yet)
		// go: kept, a peer sending only those would grow the buffer
		// without the message size bound ever seeing them.
		used += skip
		if m == 0 {
			return used, nil
		}
		rest = rest[skip:]
		if c.inbound && t.cfg.Admit != nil && !t.cfg.Admit(c.remote.Addr()) {
			// The source was refused (banned) after it connected: the
			// connection goes at its next message.
			t.stats.admitClosed.Add(1)
			return used, errRefused
		}
		p := &c.pkt
		p.Data = rest[:m:m]
		p.Src = c.remote
		p.Listener = c.l
		p.Proto = c.proto
		p.Conn = c.id
		t.stats.in(int(c.id), c.proto, m)
		t.handler.HandleMessage(p)
		p.Data = nil
		used += m
	}
}

// pong answers an RFC 5626 CRLFCRLF ping with CRLF.
func (c *streamConn) pong() {
	if c.proto == TCP && c.gc != nil {
		// On the event loop: write directly, unless gnet holds bytes the
		// peer has not taken yet. A peer that pings and does not read
		// would otherwise grow gnet's buffer past WriteQueueBytes (which
		// flush checks, not this write) by a small allocation a pong; one
		// that reads again gets the bytes held, and pings again.
		if c.gc.OutboundBuffered() == 0 {
			_, _ = c.gc.Write(crlf)
		}
		return
	}
	op := byte(0)
	if c.ws != nil {
		op = wsOpText
	}
	c.queuePong(op, crlf)
}

// queuePong queues the answer to a ping on a TLS or WebSocket connection:
// a CRLF (op 0, or in a text frame), or a WebSocket pong frame with the
// ping's payload. At most one answer waits in the queue: a later ping's
// replaces it (RFC 6455 §5.5.3 lets a pong answer only the latest ping),
// so pings from a peer that does not read grow nothing.
func (c *streamConn) queuePong(op byte, payload []byte) {
	c.mu.Lock()
	if w := c.pongBuf; w != nil && c.pongOp == op {
		if op == wsOpPong {
			c.queuedBytes -= cap(w.b)
			w.b = wsAppendHeader(w.b[:0], op, len(payload))
			w.b = append(w.b, payload...)
			c.queuedBytes += cap(w.b)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = c.enqueue(op, payload, c.remote, Tag{}, true)
}

// streams is the stream half of the transport: the gnet engine for TCP,
// the TLS listeners and workers, the connection table and the idle sweep.
type streams struct {
	t      *Transport
	table  connTable
	limits connLimits
	now    atomic.Int64 // coarse clock, advanced by the sweeper

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// TCP on gnet.
	tcpAddrs   []string
	tcpByLocal map[netip.AddrPort]*Listener
	eng        gnet.Engine
	// engRunning is set once eng may be used. It is atomic because event
	// loops already serve (and may dial) before startTCP returns; eng is
	// written before the flag and read only after it is seen set.
	engRunning atomic.Bool
	engDone    chan error

	// TLS.
	tlsLns []net.Listener
	tls    *tlsState

	// WS and WSS listening sockets, in the order of wsLnListeners.
	wsLns         []net.Listener
	wsLnListeners []*Listener
}

func (t *Transport) bindStreams() error {
	s := &streams{t: t, tcpByLocal: make(map[netip.AddrPort]*Listener), limits: t.cfg.connLimits()}
	s.table.init()
	s.now.Store(time.Now().UnixNano())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	needTLS := false
	for _, l := range t.listeners {
		if !l.Proto.Stream() {
			continue
		}
		// Set before binding so that Close releases what was bound when a
		// later listener fails.
		t.streams = s
		key := "listeners[" + strconv.Itoa(l.Index) + "].addr"
		network := "tcp4"
		if l.Local.Addr().Is6() {
			network = "tcp6"
		}
		switch l.Proto {
		case TCP:
			// gnet binds by address string, reports errors without the
			// address, and cannot tell an ephemeral port before it
			// accepts: bind once here to check the address and pick the
			// port, then hand it to gnet.
			ln, err := t.listenStream(network, l.Local.String())
			if err != nil {
				return &ConfigError{key, err}
			}
			l.Local = ln.Addr().(*net.TCPAddr).AddrPort()
			ln.Close()
			s.tcpAddrs = append(s.tcpAddrs, network+"://"+l.Local.String())
			s.tcpByLocal[l.Local] = l
		case TLS:
			ln, err := t.listenStream(network, l.Local.String())
			if err != nil {
				return &ConfigError{key, err}
			}
			l.Local = ln.Addr().(*net.TCPAddr).AddrPort()
			s.tlsLns = append(s.tlsLns, ln)
			needTLS = true
		case WS, WSS:
			ln, err := t.listenStream(network, l.Local.String())
			if err != nil {
				return &ConfigError{key, err}
			}
			l.Local = ln.Addr().(*net.TCPAddr).AddrPort()
			l.ws = newWSOptions(&t.cfg, &t.cfg.Listeners[l.Index])
			s.wsLns = append(s.wsLns, ln)
			s.wsLnListeners = append(s.wsLnListeners, l)
			needTLS = needTLS || l.Proto == WSS
		}
	}
	if needTLS {
		st, err := newTLSState(&t.cfg)
		if err != nil {
			return err
		}
		s.tls = st
	}
	return nil
}

// listenStream binds a stream listener's socket, with SO_REUSEPORT when
// Config.StreamReusePort asks for it (Go sets SO_REUSEADDR already).
func (t *Transport) listenStream(network, addr string) (net.Listener, error) {
	if !t.cfg.StreamReusePort {
		return net.Listen(network, addr)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), network, addr)
}

func (t *Transport) startStreams() error {
	s := t.streams
	if s == nil {
		return nil
	}
	if len(s.tcpAddrs) > 0 {
		if err := s.startTCP(); err != nil {
			return err
		}
	}
	for i, ln := range s.tlsLns {
		s.wg.Add(1)
		go s.acceptTLS(ln, s.tlsListener(i))
	}
	for i, ln := range s.wsLns {
		s.wg.Add(1)
		go s.acceptWS(ln, s.wsLnListeners[i])
	}
	s.wg.Add(1)
	go s.sweep()
	return nil
}

func (s *streams) tlsListener(i int) *Listener {
	for _, l := range s.t.listeners {
		if l.Proto == TLS {
			if i == 0 {
				return l
			}
			i--
		}
	}
	return nil
}

func (t *Transport) stopStreams() {
	s := t.streams
	if s == nil {
		return
	}
	s.cancel()
	for _, ln := range s.tlsLns {
		ln.Close()
	}
	for _, ln := range s.wsLns {
		ln.Close()
	}
	conns := s.table.snapshot(nil)
	s.goAway(conns)
	for _, c := range conns {
		c.close()
	}
	if s.engRunning.Load() {
		// Stop polls for completion every 500 ms; with a done context it
		// only triggers the shutdown, and Rotate's return says it is over.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.eng.Stop(ctx)
		<-s.engDone
	}
	s.wg.Wait()
}

// wsGoAwayWait bounds how long stopping waits for the close frames of
// goAway to be written: a peer that does not read must not hold a shutdown.
const wsGoAwayWait = 500 * time.Millisecond

// goAway sends every WebSocket connection among conns a close frame (1001
// Going Away, RFC 6455 §7.4.1), behind the messages already queued on it,
// and waits up to wsGoAwayWait for the writers to send them. A browser
// phone then sees the server leave on purpose and reconnects (JsSIP and
// SIP.js do, to the next server of their list), instead of seeing the
// connection reset.
func (s *streams) goAway(conns []*streamConn) {
	var payload [2 + len("server shutting down")]byte
	binary.BigEndian.PutUint16(payload[:], wsCloseGoingAway)
	copy(payload[2:], "server shutting down")
	var sent []*streamConn
	for _, c := range conns {
		if c.ws == nil {
			continue
		}
		c.mu.Lock()
		open := c.state == connOpen // not one still in its HTTP upgrade
		c.mu.Unlock()
		if open && c.sendOp(wsOpClose, payload[:], netip.AddrPort{}, Tag{}) == nil {
			sent = append(sent, c)
		}
	}
	deadline := time.Now().Add(wsGoAwayWait)
	for _, c := range sent {
		for time.Now().Before(deadline) {
			c.mu.Lock()
			done := c.queuedBytes == 0 || c.state == connClosed
			c.mu.Unlock()
			if done {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// partial notes whether the read buffer holds the start of a message
// after a read: MessageTimeout runs from the first read that left one.
func (c *streamConn) partial(waiting bool) {
	switch {
	case !waiting:
		if c.partSince.Load() != 0 {
			c.partSince.Store(0)
		}
	case c.partSince.Load() == 0:
		c.partSince.Store(c.s.now.Load())
	}
}

// sweep advances the coarse clock and closes idle connections, and those
// whose message began more than MessageTimeout ago and is not whole yet
// (a peer that drips a message a byte at a time is no idler).
func (s *streams) sweep() {
	defer s.wg.Done()
	idle := s.t.cfg.IdleTimeout
	slow := int64(s.t.cfg.MessageTimeout)
	tick := idle / 4
	if tick > time.Second {
		tick = time.Second
	}
	if tick < 5*time.Millisecond {
		tick = 5 * time.Millisecond
	}
	tk := time.NewTicker(tick)
	defer tk.Stop()
	var conns []*streamConn
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tk.C:
			n := now.UnixNano()
			s.now.Store(n)
			conns = s.table.snapshot(conns[:0])
			for i, c := range conns {
				// Connections being opened have their own (dial and
				// handshake) timeout.
				if n-c.lastRead.Load() > int64(idle) && !c.dialing() {
					s.t.stats.connsIdle.Add(1)
					c.close()
				} else if p := c.partSince.Load(); p != 0 && n-p > slow {
					s.t.stats.connsSlow.Add(1)
					c.close()
				} else if c.ws != nil && !c.dialing() {
					c.wsKeepalive(n, int64(idle))
				}
				conns[i] = nil
			}
		}
	}
}

func (t *Transport) sendStream(l *Listener, dst netip.AddrPort, data []byte, tag Tag) error {
	s := t.streams
	if s == nil {
		return ErrNoListener
	}
	if !dst.IsValid() || dst.Port() == 0 {
		return ErrInvalidAddr
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	c := s.table.lookup(connKey{l.Proto, dst})
	if c == nil && l.Proto.WebSocket() {
		// transport=ws names WS and WSS alike (RFC 7118 §5.2).
		c = s.table.lookup(connKey{l.Proto ^ WS ^ WSS, dst})
	}
	if c == nil {
		nc, fresh, err := s.open(l, dst, "")
		if err != nil {
			t.stats.sendDrops.Add(1)
			return err
		}
		if fresh {
			// Queue before connecting: a connect refused at once must
			// find the message there (and report it), not close the
			// connection under this send.
			err = nc.send(data, dst, tag)
			s.connect(nc)
			return err
		}
		c = nc
	}
	return c.send(data, dst, tag)
}

// open registers an outbound connection to dst in the dialing state, for
// connect to open; fresh is false when another sender registered one
// first (that one is returned).
func (s *streams) open(l *Listener, dst netip.AddrPort, serverName string) (c *streamConn, fresh bool, err error) {
	if l.Proto == TCP && !s.engRunning.Load() {
		return nil, false, ErrNoListener
	}
	if l.Proto == TLS && s.tls == nil {
		return nil, false, ErrNoListener
	}
	if l.Proto.WebSocket() {
		// A browser cannot be dialed: the connection it opened is the
		// only way to it (RFC 7118 §5), and it is gone.
		return nil, false, ErrNoConn
	}
	c = s.newConn(l.Proto, l, dst, false)
	c.state = connDialing
	c.serverName = serverName
	existing, err := s.table.admit(c, s.limits)
	if existing != nil {
		return existing, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	s.t.stats.connsOpen.Add(1)
	return c, true, nil
}

// connect opens a connection registered by open in the background; sends
// queue on it meanwhile.
func (s *streams) connect(c *streamConn) {
	s.wg.Add(1)
	if c.proto == TCP {
		go s.dialTCP(c)
	} else {
		go s.dialTLS(c)
	}
}

// Connect returns the stream connection to dst on l's protocol, opening
// one in the background if there is none (sends queue on it until it is
// up). For TLS, serverName is sent as SNI and the server's certificate is
// verified for it; "" verifies for dst's IP address. Later Sends to dst use
// this connection.
func (t *Transport) Connect(l *Listener, dst netip.AddrPort, serverName string) (ConnID, error) {
	if t.closing.Load() {
		return 0, ErrClosed
	}
	if l == nil || !l.Proto.Stream() || t.streams == nil {
		return 0, ErrNoListener
	}
	if !dst.IsValid() || dst.Port() == 0 {
		return 0, ErrInvalidAddr
	}
	dst = unmapAP(dst)
	if c := t.streams.table.lookup(connKey{l.Proto, dst}); c != nil {
		return c.id, nil
	}
	c, fresh, err := t.streams.open(l, dst, serverName)
	if err != nil {
		return 0, err
	}
	if fresh {
		t.streams.connect(c)
	}
	return c.id, nil
}

// SendConn sends data on the stream connection id (the one a request came
// on, to send its responses). ErrNoConn when it is closed.
func (t *Transport) SendConn(id ConnID, data []byte) error { return t.SendConnTagged(id, data, Tag{}) }

// SendConnTagged is SendConn with a tag: when the connection closes
// before data is written, the SendErrorHandler gets a SendFailure with
// tag (and the connection's remote address as Dst).
func (t *Transport) SendConnTagged(id ConnID, data []byte, tag Tag) error {
	if t.closing.Load() {
		return ErrClosed
	}
	if t.streams == nil {
		return ErrNoConn
	}
	if len(data) > t.cfg.MaxMessageSize {
		return ErrTooLarge
	}
	c := t.streams.table.get(id)
	if c == nil {
		t.stats.sendDrops.Add(1)
		return ErrNoConn
	}
	return c.send(data, c.remote, tag)
}

// Alias makes connection id the one used by Send for addr as well (RFC
// 5923: a request's top Via has ";alias", and later requests to its
// sent-by address reuse the connection). It reports false when the
// connection is gone.
func (t *Transport) Alias(id ConnID, addr netip.AddrPort) bool {
	if t.streams == nil {
		return false
	}
	c := t.streams.table.get(id)
	if c == nil {
		return false
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return t.streams.table.alias(id, connKey{c.proto, addr})
}

// CloseConn closes stream connection id. It reports false when it is gone.
func (t *Transport) CloseConn(id ConnID) bool {
	if t.streams == nil {
		return false
	}
	c := t.streams.table.get(id)
	if c == nil {
		return false
	}
	c.close()
	return true
}

// HasConn reports whether a stream connection of proto to addr (or an
// alias of it) is in the table: for a WebSocket peer, whether the only
// way to it is still open.
func (t *Transport) HasConn(proto Proto, addr netip.AddrPort) bool {
	if t.streams == nil || !proto.Stream() {
		return false
	}
	return t.streams.table.lookup(connKey{proto, unmapAP(addr)}) != nil
}

// ConnRemote returns the remote address of stream connection id.
func (t *Transport) ConnRemote(id ConnID) (netip.AddrPort, bool) {
	if t.streams == nil {
		return netip.AddrPort{}, false
	}
	c := t.streams.table.get(id)
	if c == nil {
		return netip.AddrPort{}, false
	}
	return c.remote, true
}
