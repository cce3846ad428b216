package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failRecorder is a Handler that also records SendFailed calls.
type failRecorder struct {
	*recorder
	mu    sync.Mutex
	fails []SendFailure
	ch    chan struct{}
}

func newFailRecorder() *failRecorder {
	return &failRecorder{recorder: newRecorder(), ch: make(chan struct{}, 1024)}
}

func (r *failRecorder) SendFailed(f SendFailure) {
	r.mu.Lock()
	r.fails = append(r.fails, f)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// waitFails returns once n failures arrived and no more came for a short
// while (a duplicate report would show), or fails the test.
func (r *failRecorder) waitFails(t *testing.T, n int) []SendFailure {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.fails)
		r.mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d send failures, got %d", n, got)
		}
	}
	time.Sleep(100 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]SendFailure(nil), r.fails...)
	if len(out) != n {
		t.Fatalf("%d send failures, want %d: %+v", len(out), n, out)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag[0] < out[j].Tag[0] })
	return out
}

func deadTCPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

// Messages queued on a TCP connection whose connect is refused are each
// reported once, with their tag and destination; untagged ones are not.
func TestSendFailedTCPConnectRefused(t *testing.T) {
	rec := newFailRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	l := tr.Listeners()[0]
	dead := deadTCPPort(t)
	for i := uint64(1); i <= 3; i++ {
		if err := tr.SendTagged(l, dead, []byte(sipMsg("INVITE", "")), Tag{i, 100 + i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Send(l, dead, []byte(sipMsg("OPTIONS", ""))); err != nil {
		t.Fatal(err)
	}
	fails := rec.waitFails(t, 3)
	for i, f := range fails {
		n := uint64(i + 1)
		if f.Tag != (Tag{n, 100 + n}) || f.Dst != dead || f.Proto != TCP || f.Listener != l {
			t.Errorf("failure %d: %+v", i, f)
		}
		if !errors.Is(f.Err, syscall.ECONNREFUSED) {
			t.Errorf("failure %d: error %v, want connection refused", i, f.Err)
		}
	}
	// All four were accepted and lost: they count as send drops.
	deadline := time.Now().Add(2 * time.Second)
	for tr.Stats().SendDrops < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := tr.Stats().SendDrops; n != 4 {
		t.Fatalf("SendDrops %d, want 4", n)
	}
}

// The handler can be set after New (the layer that tags messages is often
// created after the transport), and nil turns reporting off.
func TestSetSendErrorHandler(t *testing.T) {
	tr := startTransport(t, tcpConfig(nil), newRecorder())
	l := tr.Listeners()[0]
	dead := deadTCPPort(t)
	rec := newFailRecorder()
	tr.SetSendErrorHandler(rec)
	if err := tr.SendTagged(l, dead, []byte(sipMsg("INVITE", "")), Tag{7}); err != nil {
		t.Fatal(err)
	}
	if f := rec.waitFails(t, 1)[0]; f.Tag != (Tag{7}) || f.Dst != dead {
		t.Fatalf("failure %+v", f)
	}
	tr.SetSendErrorHandler(nil)
	if err := tr.SendTagged(l, dead, []byte(sipMsg("INVITE", "")), Tag{8}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().Errors < 2 {
		if time.Now().After(deadline) {
			t.Fatal("second connect never failed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	n := len(rec.fails)
	rec.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d failures reported with the handler removed", n)
	}
}

// A tagged message on a connection that opens is delivered and never
// reported, and an error returned by SendTagged is not reported again.
func TestSendTaggedDeliveredNotReported(t *testing.T) {
	rec := newFailRecorder()
	tr := startTransport(t, tcpConfig(func(c *Config) { c.WriteQueueBytes = 4096 }), rec)
	l := tr.Listeners()[0]
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := ln.Addr().(*net.TCPAddr).AddrPort()
	msg := sipMsg("INVITE", "")
	for i := uint64(1); i <= 2; i++ {
		if err := tr.SendTagged(l, peer, []byte(msg), Tag{i}); err != nil {
			t.Fatal(err)
		}
	}
	// Over the queue bound while connecting: refused at once, not reported.
	if err := tr.SendTagged(l, peer, make([]byte, 4000), Tag{9}); err != ErrQueueFull {
		t.Fatalf("oversized queue: %v", err)
	}
	pc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 2*len(msg))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != msg+msg {
		t.Fatalf("peer got %q %v", buf, err)
	}
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.fails) != 0 {
		t.Fatalf("delivered messages reported: %+v", rec.fails)
	}
}

// A TLS next hop whose certificate is not trusted: the handshake fails and
// every message queued meanwhile is reported with the verification error;
// the peer never sees a byte of SIP.
func TestSendFailedTLSUntrusted(t *testing.T) {
	pki := newPKI(t, "ca")
	rec := newFailRecorder()
	tr, _ := startTLS(t, pki, rec, func(c *Config) { c.TLSRootCAFile = pki.caFile })
	l := tr.Listeners()[0]
	rogue := newPKI(t, "rogue")
	rcf, rkf, _ := rogue.issue(t, "rogue", nil, false)
	rcert, err := tls.LoadX509KeyPair(rcf, rkf)
	if err != nil {
		t.Fatal(err)
	}
	rln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{rcert}})
	if err != nil {
		t.Fatal(err)
	}
	defer rln.Close()
	// Both messages usually queue on one connection; on a loaded machine the
	// handshake may fail before the second send, which then dials again.
	// Every connection is served, and must receive nothing.
	var received atomic.Int64
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := rln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				n, _ := io.Copy(io.Discard, c) // handshake, then whatever arrives
				received.Add(n)
			}()
		}
	}()
	peer := rln.Addr().(*net.TCPAddr).AddrPort()
	for i := uint64(1); i <= 2; i++ {
		if err := tr.SendTagged(l, peer, []byte(sipMsg("INVITE", "")), Tag{i, i}); err != nil {
			t.Fatal(err)
		}
	}
	fails := rec.waitFails(t, 2)
	for i, f := range fails {
		n := uint64(i + 1)
		if f.Tag != (Tag{n, n}) || f.Dst != peer || f.Proto != TLS || f.Listener != l {
			t.Errorf("failure %d: %+v", i, f)
		}
		var ua x509.UnknownAuthorityError
		if !errors.As(f.Err, &ua) {
			t.Errorf("failure %d: error %v, want an unknown authority", i, f.Err)
		}
	}
	rln.Close()
	conns.Wait()
	if n := received.Load(); n != 0 {
		t.Fatalf("untrusted peer received %d bytes", n)
	}
	if st := tr.Stats(); st.TLSHandshakeKO < 1 || st.TLSHandshakeKO > 2 || st.ConnsOpen != 0 {
		t.Fatalf("handshake failures %d, open %d", st.TLSHandshakeKO, st.ConnsOpen)
	}
}

// A connection closed with messages still queued and no error of its own
// (CloseConn, the idle sweep, the peer hanging up): every tagged message
// not written is reported once, with ErrConnClosed.
func TestSendFailedQueuedOnClose(t *testing.T) {
	rec := newFailRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	l := tr.Listeners()[0]
	c := tr.streams.newConn(TCP, l, netip.MustParseAddrPort("127.0.0.1:9"), false)
	c.state = connDialing
	if _, err := tr.streams.table.admit(c, connLimits{total: 10, inbound: 10, perIP: 10}); err != nil {
		t.Fatal("not admitted:", err)
	}
	tr.streams.t.stats.connsOpen.Add(1)
	for i := uint64(1); i <= 3; i++ {
		if err := c.send([]byte("x"), c.remote, Tag{i}); err != nil {
			t.Fatal(err)
		}
	}
	c.send([]byte("y"), c.remote, Tag{})
	c.close()
	c.close()
	for i, f := range rec.waitFails(t, 3) {
		if f.Tag != (Tag{uint64(i + 1)}) || !errors.Is(f.Err, ErrConnClosed) {
			t.Errorf("failure %d: %+v", i, f)
		}
	}
}

// SendConnTagged (a request another node handed over for a connection
// here, package anycast): the message is written on that connection, and
// when it closes first, the tag comes back with the connection's remote
// address; SendConn's untagged messages are not reported.
func TestSendConnTaggedQueuedOnClose(t *testing.T) {
	rec := newFailRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	l := tr.Listeners()[0]
	c := tr.streams.newConn(TCP, l, netip.MustParseAddrPort("127.0.0.1:9"), false)
	c.state = connDialing
	if _, err := tr.streams.table.admit(c, connLimits{total: 10, inbound: 10, perIP: 10}); err != nil {
		t.Fatal("not admitted:", err)
	}
	tr.streams.t.stats.connsOpen.Add(1)
	if err := tr.SendConnTagged(c.id, []byte("x"), Tag{0x5342524668616e64, 42}); err != nil {
		t.Fatal(err)
	}
	if err := tr.SendConn(c.id, []byte("y")); err != nil {
		t.Fatal(err)
	}
	c.close()
	fs := rec.waitFails(t, 1)
	if len(fs) != 1 || fs[0].Tag != (Tag{0x5342524668616e64, 42}) || fs[0].Dst != c.remote || !errors.Is(fs[0].Err, ErrConnClosed) {
		t.Fatalf("failures %+v, want the tagged one only", fs)
	}
	if err := tr.SendConnTagged(c.id, []byte("z"), Tag{1, 1}); err != ErrNoConn {
		t.Fatalf("on a closed connection: %v, want ErrNoConn", err)
	}
}

// Tagging costs nothing on the hot path: a UDP SendTagged allocates
// nothing, nor does queueing a tagged message on an open stream connection
// (the pooled buffer carries the tag).
func TestSendTaggedNoAllocs(t *testing.T) {
	tr := startTransport(t, Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1}, newFailRecorder())
	l := tr.Listeners()[0]
	peer := udpPeer(t, "udp4", "127.0.0.1:0")
	dst := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	msg := []byte(sipMsg("OPTIONS", ""))
	if a := testing.AllocsPerRun(1000, func() {
		if err := tr.SendTagged(l, dst, msg, Tag{1, 2}); err != nil && err != ErrWouldBlock {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("UDP SendTagged: %.1f allocations per call", a)
	}

	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under -race")
	}
	s := &streams{t: tr}
	c := s.newConn(TLS, &Listener{Proto: TLS}, netip.MustParseAddrPort("127.0.0.1:5061"), false)
	c.state = connOpen
	c.wake = make(chan struct{}, 1)
	drain := func() {
		c.mu.Lock()
		for i, w := range c.queue {
			putWbuf(w)
			c.queue[i] = nil
		}
		c.queue = c.queue[:0]
		c.queuedBytes = 0
		c.flushPending = false
		c.mu.Unlock()
		select {
		case <-c.wake:
		default:
		}
	}
	if a := testing.AllocsPerRun(1000, func() {
		if err := c.send(msg, c.remote, Tag{3, 4}); err != nil {
			t.Fatal(err)
		}
		drain()
	}); a != 0 {
		t.Fatalf("tagged stream send: %.1f allocations per call", a)
	}
}
