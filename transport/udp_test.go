package transport

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestUDPReceive(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, Config{
		Listeners:  []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0", AdvertisedHost: "sip.example.com"}},
		UDPReaders: 2,
	}, rec)
	l := tr.Listeners()[0]
	if l.Local.Port() == 0 {
		t.Fatal("port not resolved")
	}
	if l.AdvertisedHost != "sip.example.com" || l.AdvertisedPort != l.Local.Port() {
		t.Fatalf("advertised %q:%d", l.AdvertisedHost, l.AdvertisedPort)
	}
	peer := udpPeer(t, "udp4", "127.0.0.1:0")
	msg := []byte("OPTIONS sip:a@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	for i := 0; i < 10; i++ {
		if _, err := peer.WriteToUDPAddrPort(msg, l.Local); err != nil {
			t.Fatal(err)
		}
	}
	pkts := rec.wait(t, 10)
	for _, p := range pkts {
		if !bytes.Equal(p.Data, msg) {
			t.Fatalf("data %q", p.Data)
		}
		if p.Src != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("src %v, want %v", p.Src, peer.LocalAddr())
		}
		if p.Listener != l || p.Proto != UDP || p.Conn != 0 {
			t.Fatalf("packet %+v", p)
		}
	}
	st := tr.Stats()
	if st.Proto[UDP].PacketsIn != 10 || st.Proto[UDP].BytesIn != uint64(10*len(msg)) {
		t.Fatalf("stats %+v", st.Proto[UDP])
	}
}

// A proxy forwards to a third party: the datagram must leave from the
// listener's port, not from an ephemeral one.
func TestUDPSendToThirdPartyFromListenerPort(t *testing.T) {
	var trp atomic.Pointer[Transport]
	third := udpPeer(t, "udp4", "127.0.0.1:0")
	thirdAddr := third.LocalAddr().(*net.UDPAddr).AddrPort()
	var sendErr atomic.Value
	tr := startTransport(t, Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}},
		HandlerFunc(func(p *Packet) {
			// Forward from inside the handler, like the proxy core does.
			if err := trp.Load().Send(p.Listener, thirdAddr, p.Data); err != nil {
				sendErr.Store(err)
			}
		}))
	trp.Store(tr)
	l := tr.Listeners()[0]
	caller := udpPeer(t, "udp4", "127.0.0.1:0")
	if _, err := caller.WriteToUDPAddrPort([]byte("INVITE"), l.Local); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := third.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err, sendErr.Load())
	}
	if string(buf[:n]) != "INVITE" {
		t.Fatalf("got %q", buf[:n])
	}
	if from != l.Local {
		t.Fatalf("third party saw source %v, want the listener %v", from, l.Local)
	}

	// And from another goroutine, outside any handler.
	if err := tr.SendProto(UDP, thirdAddr, []byte("BYE")); err != nil {
		t.Fatal(err)
	}
	n, from, err = third.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "BYE" || from != l.Local {
		t.Fatalf("got %q from %v err %v", buf[:n], from, err)
	}
	// The handler counts its send after the datagram has left: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().Proto[UDP].PacketsOut != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("packets out %d", tr.Stats().Proto[UDP].PacketsOut)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUDPIPv6Loopback(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, Config{Listeners: []ListenerConfig{
		{Proto: UDP, Addr: "127.0.0.1:0"},
		{Proto: UDP, Addr: "[::1]:0"},
	}}, rec)
	l6 := tr.Listeners()[1]
	if !l6.Local.Addr().Is6() || l6.AdvertisedHost != "[::1]" {
		t.Fatalf("listener %+v", l6)
	}
	peer := udpPeer(t, "udp6", "[::1]:0")
	if _, err := peer.WriteToUDPAddrPort([]byte("REGISTER"), l6.Local); err != nil {
		t.Fatal(err)
	}
	p := rec.wait(t, 1)[0]
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if p.Src != peerAddr || p.Listener != l6 || string(p.Data) != "REGISTER" {
		t.Fatalf("packet %+v", p)
	}
	// Send back from the v6 listener; the v4 listener is chosen for v4.
	if got := tr.Listener(UDP, peerAddr.Addr()); got != l6 {
		t.Fatalf("Listener picked %+v", got)
	}
	if err := tr.SendProto(UDP, peerAddr, []byte("200")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "200" || from != l6.Local {
		t.Fatalf("%q from %v: %v", buf[:n], from, err)
	}
	if err := tr.Send(l6, netip.MustParseAddrPort("127.0.0.1:5060"), []byte("x")); err != ErrAddressFamily {
		t.Fatalf("v4 destination on a v6 listener: %v", err)
	}
}

func TestUDPOversizeDropped(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, Config{
		Listeners:      []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}},
		MaxMessageSize: 100,
	}, rec)
	l := tr.Listeners()[0]
	peer := udpPeer(t, "udp4", "127.0.0.1:0")
	peer.WriteToUDPAddrPort(make([]byte, 101), l.Local)
	peer.WriteToUDPAddrPort(make([]byte, 100), l.Local)
	p := rec.wait(t, 1)[0]
	if len(p.Data) != 100 {
		t.Fatalf("delivered %d bytes", len(p.Data))
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.wait(t, 1)); n != 1 {
		t.Fatalf("%d delivered", n)
	}
	if d := tr.Stats().DropsIn; d != 1 {
		t.Fatalf("drops %d", d)
	}
	if err := tr.Send(l, p.Src, make([]byte, 101)); err != ErrTooLarge {
		t.Fatalf("oversize send: %v", err)
	}
}

func TestUDPCloseReleasesEverything(t *testing.T) {
	g0, f0 := countGoroutines(), countFDs(t)
	tr, err := New(Config{
		Listeners:  []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}, {Proto: UDP, Addr: "[::1]:0"}},
		UDPReaders: 3,
	}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	if got := countFDs(t) - f0; got != 6 {
		t.Fatalf("%d sockets open, want 6", got)
	}
	start := time.Now()
	tr.Close()
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Close took %v: shutdown did not wake the readers", d)
	}
	expectNoLeak(t, g0, f0)
	if err := tr.SendProto(UDP, netip.MustParseAddrPort("127.0.0.1:9"), []byte("x")); err != ErrClosed {
		t.Fatalf("send after close: %v", err)
	}
}

// The path socket -> handler -> sendto allocates nothing.
func TestUDPNoAllocs(t *testing.T) {
	sink := udpPeer(t, "udp4", "127.0.0.1:0")
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	var trp atomic.Pointer[Transport]
	var got atomic.Int64
	tr := startTransport(t, Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1},
		HandlerFunc(func(p *Packet) {
			if tr := trp.Load(); tr != nil {
				tr.Send(p.Listener, sinkAddr, p.Data)
			}
			got.Add(1)
		}))
	trp.Store(tr)
	l := tr.Listeners()[0]

	// Send from a raw socket so the sending side allocates nothing either.
	fd, _, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	sender := &Transport{}
	sl := &Listener{Proto: UDP, udp: []*udpSocket{{fd: fd}}}
	defer closeFD(fd)
	msg := []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")
	go func() {
		buf := make([]byte, 100)
		for {
			if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	// Warm up: first datagrams grow stacks and fill caches.
	for i := 0; i < 100; i++ {
		sender.sendUDP(sl, l.Local, msg)
	}
	waitCount(t, &got, 100)
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		sender.sendUDP(sl, l.Local, msg)
		if i%64 == 0 {
			waitCount(t, &got, int64(100+i+1))
		}
	}
	waitCount(t, &got, 100+n)
	runtime.ReadMemStats(&after)
	// The sink reader goroutine (net.UDPConn) and the runtime allocate a
	// little on their own; the budget is far below one allocation per datagram.
	allocs := after.Mallocs - before.Mallocs
	t.Logf("%d allocations for %d messages", allocs, n)
	if allocs > n/20 {
		t.Fatalf("%d allocations for %d datagrams", allocs, n)
	}
	a := testing.AllocsPerRun(1000, func() { sender.sendUDP(sl, l.Local, msg) })
	if a != 0 {
		t.Fatalf("sendUDP allocates %.1f per call", a)
	}
}

func waitCount(t *testing.T, c *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("count %d, want %d", c.Load(), n)
		}
		runtime.Gosched()
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		cfg Config
		key string
	}{
		{Config{}, "listeners"},
		{Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "localhost:5060"}}}, "listeners[0].addr"},
		{Config{Listeners: []ListenerConfig{{Proto: numProto, Addr: "127.0.0.1:80"}}}, "listeners[0].proto"},
		{Config{Listeners: []ListenerConfig{{Proto: TLS, Addr: "127.0.0.1:5061"}}}, "tls_cert_file"},
		{Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:5060"}, {Proto: UDP, Addr: "127.0.0.1:5060"}}}, "listeners[1].addr"},
		{Config{Listeners: []ListenerConfig{{Proto: TCP, Addr: "[::1]:5060"}, {Proto: TLS, Addr: "[::1]:5060"}}}, "listeners[1].addr"},
	}
	for _, c := range cases {
		_, err := New(c.cfg, newRecorder())
		ce, ok := err.(*ConfigError)
		if !ok || ce.Key != c.key {
			t.Errorf("%+v: got %v, want key %s", c.cfg, err, c.key)
		}
	}
	// A port already taken without SO_REUSEPORT fails at Start, naming the key.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tr, _ := New(Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: pc.LocalAddr().String()}}}, newRecorder())
	if err := tr.Start(); err == nil {
		t.Fatal("bound a busy port")
	} else if ce, ok := err.(*ConfigError); !ok || ce.Key != "listeners[0].addr" {
		t.Fatalf("error %v", err)
	}
}

// Sends racing with Close either complete or return ErrClosed.
func TestUDPSendDuringClose(t *testing.T) {
	tr, err := New(Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1}, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	sink := udpPeer(t, "udp4", "127.0.0.1:0")
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	var wg sync.WaitGroup
	var closedSeen atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := tr.SendProto(UDP, dst, []byte("x"))
				if err == ErrClosed {
					closedSeen.Add(1)
					return
				}
				if err != nil && err != ErrWouldBlock {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	tr.Close()
	wg.Wait()
	if closedSeen.Load() != 4 {
		t.Fatalf("%d senders saw ErrClosed", closedSeen.Load())
	}
}

// A datagram that arrives while the handler runs is delivered without
// waiting for another one. The poller records its readiness while the
// reader is busy; the reader must not throw that away before it parks
// again (a short batch means the socket was empty only until the handler
// started).
func TestUDPDatagramDuringHandlerDelivered(t *testing.T) {
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	var got atomic.Int64
	tr := startTransport(t, Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1},
		HandlerFunc(func(p *Packet) {
			if got.Add(1) == 1 {
				entered <- struct{}{}
				<-release
			}
		}))
	dst := tr.Listeners()[0].Local
	peer := udpPeer(t, "udp4", "127.0.0.1:0")
	msg := []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")
	for round := 0; round < 3; round++ {
		got.Store(0)
		if _, err := peer.WriteToUDPAddrPort(msg, dst); err != nil {
			t.Fatal(err)
		}
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("first datagram not delivered")
		}
		// The second datagram arrives while the handler holds the reader;
		// the sleep gives an idle thread time to take its readiness from
		// epoll before the reader parks again.
		if _, err := peer.WriteToUDPAddrPort(msg, dst); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		release <- struct{}{}
		deadline := time.Now().Add(2 * time.Second)
		for got.Load() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the datagram sent during the handler was not delivered", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// Close wakes readers parked in the poller, after they have served a
// datagram and parked again, and every reader goroutine returns.
func TestUDPCloseWakesParkedReader(t *testing.T) {
	g0, f0 := countGoroutines(), countFDs(t)
	rec := newRecorder()
	tr, err := New(Config{
		Listeners:  []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}, {Proto: UDP, Addr: "[::1]:0"}},
		UDPReaders: 2,
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	peer := udpPeer(t, "udp4", "127.0.0.1:0")
	if _, err := peer.WriteToUDPAddrPort([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), tr.Listeners()[0].Local); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 1)
	// All four readers parked in the poller ("IO wait"), none in a system
	// call or running.
	deadline := time.Now().Add(5 * time.Second)
	for parkedReaders() != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 readers parked in the poller", parkedReaders())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() { tr.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("Close hangs: %d readers still parked", parkedReaders())
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Close took %v: the parked readers were not woken at once", d)
	}
	if n := readerGoroutines(); n != 0 {
		t.Fatalf("%d reader goroutines left after Close", n)
	}
	peer.Close()
	expectNoLeak(t, g0, f0)
}

// parkedReaders counts UDP reader goroutines parked in the network poller.
func parkedReaders() int {
	n := 0
	for _, g := range goroutineStacks() {
		if strings.Contains(g, "runUDPReader") && strings.Contains(g, "[IO wait") {
			n++
		}
	}
	return n
}

// readerGoroutines counts reader goroutines, waiting up to a second for
// them to end: Close returns once each has called wg.Done, a moment
// before the goroutine itself is gone.
func readerGoroutines() int {
	n := countReaders()
	for deadline := time.Now().Add(time.Second); n != 0 && time.Now().Before(deadline); n = countReaders() {
		time.Sleep(time.Millisecond)
	}
	return n
}

func countReaders() int {
	n := 0
	for _, g := range goroutineStacks() {
		if strings.Contains(g, "runUDPReader") {
			n++
		}
	}
	return n
}

func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Split(string(buf), "\n\n")
}

// Close returns while the reader is never idle: each datagram handled
// sends another one to the same socket, so with more datagrams queued than
// one batch takes the socket never runs empty, and the reader stops after
// the batch in hand.
func TestUDPCloseUnderLoad(t *testing.T) {
	g0 := countGoroutines()
	peer := udpPeer(t, "udp4", "127.0.0.1:0")
	var dst atomic.Pointer[netip.AddrPort]
	tr, err := New(Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1},
		HandlerFunc(func(p *Packet) { peer.WriteToUDPAddrPort(p.Data, *dst.Load()) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	local := tr.Listeners()[0].Local
	dst.Store(&local)
	msg := []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")
	for i := 0; i < 64; i++ {
		if _, err := peer.WriteToUDPAddrPort(msg, local); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().Proto[UDP].PacketsIn < 2000 {
		if time.Now().After(deadline) {
			t.Fatal("the datagrams did not circulate")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { tr.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while the reader is busy")
	}
	if n := readerGoroutines(); n != 0 {
		t.Fatalf("%d reader goroutines left after Close", n)
	}
	if g := countGoroutines(); g > g0 {
		t.Fatalf("goroutines %d -> %d", g0, g)
	}
}

// TestAdvertisedIPv6Bracketed: an advertised IPv6 address given without
// brackets (as splitting "[2001:db8::1]:5060" into host and port gives it)
// is written with them, or Via and Record-Route would read
// "2001:db8::1:5060"; names, IPv4 and bracketed addresses stay as given.
func TestAdvertisedIPv6Bracketed(t *testing.T) {
	tr, err := New(Config{Listeners: []ListenerConfig{
		{Proto: UDP, Addr: "[::1]:0", AdvertisedHost: "2001:db8::1", AdvertisedPort: 5060},
		{Proto: UDP, Addr: "[::1]:0", AdvertisedHost: "[2001:db8::2]"},
		{Proto: UDP, Addr: "127.0.0.1:0", AdvertisedHost: "192.0.2.1"},
		{Proto: UDP, Addr: "127.0.0.1:0", AdvertisedHost: "sip.example.com"},
	}}, HandlerFunc(func(*Packet) {}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range tr.Listeners() {
		got = append(got, l.AdvertisedHost)
	}
	if want := "[2001:db8::1] [2001:db8::2] 192.0.2.1 sip.example.com"; strings.Join(got, " ") != want {
		t.Fatalf("advertised hosts %q, want %q", got, want)
	}
}
