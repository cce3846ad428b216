package transport

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sipMsg(method, body string) string {
	return method + " sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK" + method + "\r\n" +
		"Call-ID: " + method + "@example.com\r\nCSeq: 1 " + method + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func tcpConfig(extra func(*Config)) Config {
	cfg := Config{Listeners: []ListenerConfig{{Proto: TCP, Addr: "127.0.0.1:0"}}, StreamLoops: 2}
	if extra != nil {
		extra(&cfg)
	}
	return cfg
}

func dialTCP(t *testing.T, to netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed reads until EOF or a reset; it fails if the peer does not
// close within d.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open after %v", d)
		}
		return
	}
}

func TestTCPFramingEveryOffset(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	l := tr.Listeners()[0]
	c := dialTCP(t, l.Local)
	a := sipMsg("INVITE", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")
	b := sipMsg("ACK", "")
	stream := a + b
	want := 0
	for k := 1; k < len(stream); k++ {
		if _, err := c.Write([]byte(stream[:k])); err != nil {
			t.Fatal(err)
		}
		// Let the server read the first part on its own.
		time.Sleep(200 * time.Microsecond)
		if _, err := c.Write([]byte(stream[k:])); err != nil {
			t.Fatal(err)
		}
		want += 2
		pkts := rec.wait(t, want)
		if got := string(pkts[want-2].Data); got != a {
			t.Fatalf("cut at %d: first message %q", k, got)
		}
		if got := string(pkts[want-1].Data); got != b {
			t.Fatalf("cut at %d: second message %q", k, got)
		}
	}
	// Several messages in one write, with keep-alive pongs between them.
	var many strings.Builder
	for i := 0; i < 20; i++ {
		many.WriteString(sipMsg("MESSAGE", "hello "+strconv.Itoa(i)))
		if i%5 == 0 {
			many.WriteString("\r\n")
		}
	}
	c.Write([]byte(many.String()))
	pkts := rec.wait(t, want+20)
	for i := 0; i < 20; i++ {
		p := pkts[want+i]
		if string(p.Data) != sipMsg("MESSAGE", "hello "+strconv.Itoa(i)) {
			t.Fatalf("message %d: %q", i, p.Data)
		}
		if p.Proto != TCP || p.Listener != l || p.Conn == 0 || p.Src != c.LocalAddr().(*net.TCPAddr).AddrPort() {
			t.Fatalf("packet %+v", p)
		}
	}
}

func TestTCPKeepalivePingPong(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	c := dialTCP(t, tr.Listeners()[0].Local)
	buf := make([]byte, 16)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Whole ping.
	c.Write([]byte("\r\n\r\n"))
	if n, err := io.ReadFull(c, buf[:2]); err != nil || string(buf[:n]) != "\r\n" {
		t.Fatalf("pong %q %v", buf[:n], err)
	}
	// Ping split across two reads.
	c.Write([]byte("\r\n"))
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("\r\n"))
	if n, err := io.ReadFull(c, buf[:2]); err != nil || string(buf[:n]) != "\r\n" {
		t.Fatalf("pong %q %v", buf[:n], err)
	}
	// A lone CRLF (a pong) before a message is skipped and not answered.
	msg := sipMsg("OPTIONS", "")
	c.Write([]byte("\r\n" + msg))
	p := rec.wait(t, 1)[0]
	if string(p.Data) != msg {
		t.Fatalf("message %q", p.Data)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected answer %q", buf[:n])
	}
	if n := tr.Stats().KeepalivePings; n != 2 {
		t.Fatalf("pings %d", n)
	}
}

// Responses go back on the connection the request came on; later sends to
// the peer's address reuse it; Alias adds the peer's listening address.
func TestTCPReuseInbound(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	l := tr.Listeners()[0]
	c := dialTCP(t, l.Local)
	c.Write([]byte(sipMsg("REGISTER", "")))
	p := rec.wait(t, 1)[0]
	resp := "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
	if err := tr.SendConn(p.Conn, []byte(resp)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(l, p.Src, []byte(resp)); err != nil {
		t.Fatal(err)
	}
	alias := netip.MustParseAddrPort("127.0.0.1:5999")
	if !tr.Alias(p.Conn, alias) {
		t.Fatal("alias refused")
	}
	if err := tr.SendProto(TCP, alias, []byte(resp)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3*len(resp))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != resp+resp+resp {
		t.Fatalf("got %q", buf)
	}
	if got := tr.Stats().ConnsOpen; got != 1 {
		t.Fatalf("%d connections open", got)
	}
	// After the peer closes, the connection is gone from the table.
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tr.SendConn(p.Conn, []byte(resp)) != ErrNoConn {
		if time.Now().After(deadline) {
			t.Fatal("connection still in the table")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if tr.Alias(p.Conn, alias) {
		t.Fatal("alias on a closed connection")
	}
}

// Send to a peer with no connection opens one; the peer's requests on it
// reach the handler; the next Send reuses it.
func TestTCPReuseOutbound(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(nil), rec)
	l := tr.Listeners()[0]
	peerLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	peerAddr := peerLn.Addr().(*net.TCPAddr).AddrPort()

	req := sipMsg("INVITE", "")
	// Several sends before the connection is up: they queue in order.
	for i := 0; i < 3; i++ {
		if err := tr.Send(l, peerAddr, []byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	peerLn.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	pc, err := peerLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 3*len(req))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != req+req+req {
		t.Fatalf("peer got %q, %v", buf, err)
	}
	// The peer sends a request back on the same connection.
	bye := sipMsg("BYE", "")
	pc.Write([]byte(bye))
	p := rec.wait(t, 1)[0]
	if string(p.Data) != bye || p.Src != peerAddr || p.Listener != l || p.Conn == 0 {
		t.Fatalf("packet %+v", p)
	}
	// Reuse: a further send goes on the same connection, no new accept.
	if err := tr.Send(l, peerAddr, []byte(req)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(pc, buf[:len(req)]); err != nil || string(buf[:len(req)]) != req {
		t.Fatalf("peer got %q, %v", buf[:len(req)], err)
	}
	peerLn.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
	if extra, err := peerLn.Accept(); err == nil {
		extra.Close()
		t.Fatal("a second connection was opened")
	}
	st := tr.Stats()
	if st.ConnsDialed != 1 || st.ConnsOpen != 1 {
		t.Fatalf("dialed %d open %d", st.ConnsDialed, st.ConnsOpen)
	}
}

func TestTCPDialFailure(t *testing.T) {
	tr := startTransport(t, tcpConfig(nil), newRecorder())
	// A port nobody listens on: the send is queued, the connect fails, the
	// connection leaves the table, and the next send tries again.
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	dead := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	if err := tr.SendProto(TCP, dead, []byte(sipMsg("OPTIONS", ""))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().ConnsOpen != 0 {
		if time.Now().After(deadline) {
			t.Fatal("failed dial still in the table")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTCPIdleClose(t *testing.T) {
	tr := startTransport(t, tcpConfig(func(c *Config) { c.IdleTimeout = 100 * time.Millisecond }), newRecorder())
	c := dialTCP(t, tr.Listeners()[0].Local)
	start := time.Now()
	expectClosed(t, c, 2*time.Second)
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
	if n := tr.Stats().ConnsIdle; n != 1 {
		t.Fatalf("idle closes %d", n)
	}
}

func TestTCPOversizeCloses(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(func(c *Config) { c.MaxMessageSize = 300 }), rec)
	l := tr.Listeners()[0]
	// Declared body too large.
	c1 := dialTCP(t, l.Local)
	c1.Write([]byte(sipMsg("INVITE", strings.Repeat("x", 300))))
	expectClosed(t, c1, 2*time.Second)
	// Headers that never end.
	c2 := dialTCP(t, l.Local)
	c2.Write([]byte("INVITE sip:a SIP/2.0\r\nSubject: " + strings.Repeat("y", 400)))
	expectClosed(t, c2, 2*time.Second)
	// No Content-Length on a stream.
	c3 := dialTCP(t, l.Local)
	c3.Write([]byte("OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n"))
	expectClosed(t, c3, 2*time.Second)
	// A message at the limit passes.
	c4 := dialTCP(t, l.Local)
	base := len(sipMsg("INVITE", strings.Repeat("z", 100))) - 100
	ok := sipMsg("INVITE", strings.Repeat("z", 300-base))
	if len(ok) != 300 {
		t.Fatalf("test message has %d bytes", len(ok))
	}
	c4.Write([]byte(ok))
	if p := rec.wait(t, 1)[0]; string(p.Data) != ok {
		t.Fatalf("got %q", p.Data)
	}
	if n := tr.Stats().ConnsOversize; n != 3 {
		t.Fatalf("oversize closes %d", n)
	}
}

func TestTCPConnectionLimits(t *testing.T) {
	tr := startTransport(t, tcpConfig(func(c *Config) { c.MaxConns = 4; c.MaxConnsPerIP = 2 }), newRecorder())
	l := tr.Listeners()[0]
	// from dials from ip and waits until the server has accepted or
	// refused the connection (waitCounted).
	from := func(ip string) *net.TCPConn {
		t.Helper()
		seen := countedConns(tr)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", l.Local.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		waitCounted(t, tr, seen)
		return c.(*net.TCPConn)
	}
	alive := func(c net.Conn) bool {
		// A rejected connection is closed by the server right away.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		ne, ok := err.(net.Error)
		return ok && ne.Timeout()
	}
	a1, a2, a3 := from("127.0.0.1"), from("127.0.0.1"), from("127.0.0.1")
	if !alive(a1) || !alive(a2) {
		t.Fatal("connections under the per-IP limit were closed")
	}
	if alive(a3) {
		t.Fatal("third connection from one IP accepted")
	}
	b1, b2, b3 := from("127.0.0.2"), from("127.0.0.3"), from("127.0.0.4")
	if !alive(b1) || !alive(b2) {
		t.Fatal("connections under the total limit were closed")
	}
	if alive(b3) {
		t.Fatal("connection over the total limit accepted")
	}
	if n := tr.Stats().ConnsRejected; n != 2 {
		t.Fatalf("rejected %d", n)
	}
	// Outbound connections count against the total as well.
	if err := tr.SendProto(TCP, netip.MustParseAddrPort("127.0.0.1:9"), []byte("x")); err != ErrConnLimit {
		t.Fatalf("outbound over the limit: %v", err)
	}
	// Closing one frees a slot, once the server has seen it close.
	a1.Close()
	for deadline := time.Now().Add(5 * time.Second); tr.Stats().ConnsOpen != 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after one of four closed", tr.Stats().ConnsOpen)
		}
	}
	if c := from("127.0.0.1"); !alive(c) {
		t.Fatal("slot not freed after close")
	}
}

// A peer that sends half a message and stalls is released by the idle
// timeout and leaves nothing behind.
func TestTCPHalfMessageStallReleased(t *testing.T) {
	tr := startTransport(t, tcpConfig(func(c *Config) { c.IdleTimeout = 150 * time.Millisecond }), newRecorder())
	l := tr.Listeners()[0]
	time.Sleep(20 * time.Millisecond)
	g0, f0 := countGoroutines(), countFDs(t)
	var conns []*net.TCPConn
	for i := 0; i < 5; i++ {
		c := dialTCP(t, l.Local)
		c.Write([]byte(sipMsg("INVITE", "v=0\r\n")[:60]))
		conns = append(conns, c)
	}
	for _, c := range conns {
		expectClosed(t, c, 3*time.Second)
		c.Close()
	}
	expectNoLeak(t, g0, f0)
	st := tr.Stats()
	if st.ConnsIdle != 5 || st.ConnsOpen != 0 {
		t.Fatalf("idle %d open %d", st.ConnsIdle, st.ConnsOpen)
	}
}

// A peer that does not read cannot grow memory: the write queue bound
// closes the connection.
func TestTCPWriteBackPressure(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(func(c *Config) { c.WriteQueueBytes = 64 << 10 }), rec)
	c := dialTCP(t, tr.Listeners()[0].Local)
	c.SetReadBuffer(4096)
	c.Write([]byte(sipMsg("SUBSCRIBE", "")))
	p := rec.wait(t, 1)[0]
	chunk := []byte(sipMsg("NOTIFY", strings.Repeat("n", 1000)))
	var sendErr error
	for i := 0; i < 100000 && sendErr == nil; i++ {
		sendErr = tr.SendConn(p.Conn, chunk)
	}
	if sendErr == nil {
		t.Fatal("100 MB queued to a peer that does not read")
	}
	if n := tr.Stats().ConnsOverflow; n == 0 {
		t.Fatalf("overflow closes %d (last error %v)", n, sendErr)
	}
}

// Framing and delivery of stream messages allocate nothing.
func TestStreamConsumeNoAllocs(t *testing.T) {
	var n int
	tr := &Transport{cfg: (&Config{}).withDefaults(), handler: HandlerFunc(func(p *Packet) { n += len(p.Data) })}
	s := &streams{t: tr}
	c := s.newConn(TCP, &Listener{Proto: TCP}, netip.MustParseAddrPort("127.0.0.1:5060"), true)
	stream := []byte("\r\n" + sipMsg("INVITE", "v=0\r\n") + sipMsg("ACK", "") + sipMsg("BYE", "")[:40])
	allocs := testing.AllocsPerRun(1000, func() {
		used, err := c.consume(stream)
		if err != nil || used != len(stream)-40 {
			t.Fatalf("used %d err %v", used, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per call", allocs)
	}
}

// The whole TCP receive path, socket to handler, allocates nothing in
// steady state (gnet's read, framing, delivery).
func TestTCPReceiveNoAllocs(t *testing.T) {
	var got atomic.Int64
	tr := startTransport(t, tcpConfig(func(c *Config) { c.StreamLoops = 1 }), HandlerFunc(func(p *Packet) { got.Add(1) }))
	c := dialTCP(t, tr.Listeners()[0].Local)
	msg := []byte(sipMsg("OPTIONS", "") + sipMsg("OPTIONS", ""))
	for i := 0; i < 100; i++ {
		c.Write(msg)
	}
	waitCount(t, &got, 200)
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		c.Write(msg)
		if i%64 == 0 {
			waitCount(t, &got, int64(200+2*i))
		}
	}
	waitCount(t, &got, 200+2*n)
	runtime.ReadMemStats(&after)
	allocs := after.Mallocs - before.Mallocs
	t.Logf("%d allocations for %d messages", allocs, 2*n)
	if allocs > n/20 {
		t.Fatalf("%d allocations for %d messages", allocs, 2*n)
	}
}

// BenchmarkTCPSendConn measures a send on an open TCP connection from a
// goroutine outside the event loop (copy into a pooled buffer, AsyncWrite).
func BenchmarkTCPSendConn(b *testing.B) {
	rec := newRecorder()
	tr, err := New(tcpConfig(func(c *Config) { c.StreamLoops = 1; c.WriteQueueBytes = 64 << 20 }), rec)
	if err != nil {
		b.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	c, err := net.Dial("tcp", tr.Listeners()[0].Local.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	c.Write([]byte(sipMsg("OPTIONS", "")))
	deadline := time.Now().Add(5 * time.Second)
	var id ConnID
	for id == 0 {
		if time.Now().After(deadline) {
			b.Fatal("no message")
		}
		time.Sleep(time.Millisecond)
		rec.mu.Lock()
		if len(rec.pkts) > 0 {
			id = rec.pkts[0].Conn
		}
		rec.mu.Unlock()
	}
	msg := []byte(sipMsg("MESSAGE", strings.Repeat("x", 200)))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tr.SendConn(id, msg); err != nil {
			b.Fatalf("send %d: %v, %+v", i, err, tr.Stats())
		}
	}
}

// A burst of sends larger than IOV_MAX buffers arrives whole and in order.
func TestTCPSendBurstInOrder(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(func(c *Config) { c.WriteQueueBytes = 8 << 20 }), rec)
	c := dialTCP(t, tr.Listeners()[0].Local)
	c.Write([]byte(sipMsg("OPTIONS", "")))
	id := rec.wait(t, 1)[0].Conn
	var want []byte
	for i := 0; i < 5000; i++ {
		m := []byte(sipMsg("NOTIFY", strconv.Itoa(i)))
		want = append(want, m...)
		if err := tr.SendConn(id, m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("stream differs")
	}
}
