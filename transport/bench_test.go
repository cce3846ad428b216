package transport

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// UDP echo benchmark: datagrams per second through receive -> handler ->
// sendto on one core, for three servers measured in the same run:
//
//	recvmmsg  this package (SO_REUSEPORT socket, recvmmsg reader parked in the poller)
//	gnet      gnet v2 UDP event loop, same handler and sendto
//	stdlib    net.UDPConn ReadFromUDPAddrPort / WriteToUDPAddrPort loop
//
// The client keeps a window of datagrams in flight and sends one more per
// echo; it is the same raw-socket client for all three, so differences are
// the servers'. allocs/op is process-wide (runtime.MemStats), i.e. the
// server's allocations per datagram, since the client allocates nothing.

const benchWindow = 32

var benchMsg = []byte(sipMsg("OPTIONS", "") + "User-Agent: bench\r\n" +
	"Contact: <sip:bench@192.0.2.1:5060>\r\nAccept: application/sdp\r\n" +
	"Supported: replaces, timer\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n")

type echoServer struct {
	addr netip.AddrPort
	stop func()
}

// echoHandler sends every datagram back to its source from the socket it
// came on: the proxy's forwarding path without the proxy.
type echoHandler struct{ tr *Transport }

func (h *echoHandler) HandleMessage(p *Packet) { _ = h.tr.Send(p.Listener, p.Src, p.Data) }

func startRecvmmsgEcho(tb testing.TB) echoServer {
	h := &echoHandler{}
	tr, err := New(Config{
		Listeners:    []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}},
		UDPReaders:   1,
		SocketBuffer: 4 << 20,
	}, h)
	if err != nil {
		tb.Fatal(err)
	}
	h.tr = tr
	if err := tr.Start(); err != nil {
		tb.Fatal(err)
	}
	return echoServer{tr.Listeners()[0].Local, func() { tr.Close() }}
}

type gnetEcho struct {
	gnet.BuiltinEventEngine
	tr    Transport
	l     *Listener
	p     Packet
	ready chan struct{}
}

func (g *gnetEcho) OnBoot(gnet.Engine) gnet.Action { close(g.ready); return gnet.None }

func (g *gnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	if g.l == nil {
		// For UDP, gnet's Fd is the listening socket's.
		g.l = &Listener{Proto: UDP, udp: []*udpSocket{{fd: c.Fd()}}}
	}
	buf, _ := c.Next(-1)
	ra, _ := c.RemoteAddr().(*net.UDPAddr)
	g.p.Data, g.p.Src, g.p.Listener = buf, ra.AddrPort(), g.l
	_ = g.tr.sendUDP(g.l, g.p.Src, g.p.Data)
	return gnet.None
}

func startGnetEcho(tb testing.TB) echoServer {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	g := &gnetEcho{ready: make(chan struct{})}
	proto := "udp4://" + addr.String()
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(g, proto, gnet.WithNumEventLoop(1), gnet.WithLogger(quietLogger{}),
			gnet.WithSocketRecvBuffer(4<<20), gnet.WithSocketSendBuffer(4<<20))
	}()
	select {
	case <-g.ready:
	case err := <-done:
		tb.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // OnBoot runs before the loop polls
	return echoServer{addr, func() { gnet.Stop(contextDone(), proto); <-done }}
}

func startStdEcho(tb testing.TB) echoServer {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		tb.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return echoServer{c.LocalAddr().(*net.UDPAddr).AddrPort(), func() { c.Close(); wg.Wait() }}
}

// blockingClient opens the echo clients' socket: blocking recvmmsg with a
// 100 ms timeout that detects a loss, sends through a bare Listener. The
// socket is closed when the test ends.
func blockingClient(tb testing.TB, sockBuf, batch int) (*Listener, *udpReader) {
	fd, _, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), sockBuf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	unix.SetNonblock(fd, false)
	tv := unix.Timeval{Usec: 100000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &Listener{Proto: UDP, udp: []*udpSocket{{fd: fd}}}, newUDPReader(fd, batch, 2048)
}

// echoClient drives n round trips against srv and returns how many
// datagrams were lost (resent after a 100 ms silence).
func echoClient(tb testing.TB, srv netip.AddrPort, n int, start func()) (lost int) {
	l, r := blockingClient(tb, 4<<20, 64)
	var sender Transport
	if start != nil {
		start()
	}
	sent, recvd := 0, 0
	for ; sent < benchWindow && sent < n; sent++ {
		sender.sendUDP(l, srv, benchMsg)
	}
	for recvd < n {
		got, errno := r.recvWait()
		if errno == unix.EAGAIN {
			// Lost in flight: count them and refill the window.
			lost += sent - recvd
			recvd = sent
			for k := 0; k < benchWindow && sent < n; k++ {
				sender.sendUDP(l, srv, benchMsg)
				sent++
			}
			continue
		}
		if errno != 0 {
			continue
		}
		for i := 0; i < got; i++ {
			r.datagram(i)
		}
		recvd += got
		for i := 0; i < got && sent < n; i++ {
			sender.sendUDP(l, srv, benchMsg)
			sent++
		}
	}
	return lost
}

func BenchmarkUDPEcho(b *testing.B) {
	servers := []struct {
		name  string
		start func(testing.TB) echoServer
	}{
		{"recvmmsg", startRecvmmsgEcho},
		{"gnet", startGnetEcho},
		{"stdlib", startStdEcho},
	}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			srv := s.start(b)
			defer srv.stop()
			echoClient(b, srv.addr, 1000, nil) // warm up
			b.ReportAllocs()
			b.SetBytes(int64(len(benchMsg)))
			lost := echoClient(b, srv.addr, b.N, b.ResetTimer)
			b.StopTimer()
			b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
		})
	}
}

// The next two tests are halves of the syscall count measurement in
// README.md; they run only when the environment asks for them:
//
//	SWB_ECHO_SERVER=recvmmsg|gnet|stdlib  serve until stdin closes, print the port
//	SWB_ECHO_CLIENT=127.0.0.1:port SWB_ECHO_N=200000  drive the round trips
func TestEchoServerProcess(t *testing.T) {
	kind := os.Getenv("SWB_ECHO_SERVER")
	if kind == "" {
		t.Skip("SWB_ECHO_SERVER not set")
	}
	var srv echoServer
	switch kind {
	case "recvmmsg":
		srv = startRecvmmsgEcho(t)
	case "gnet":
		srv = startGnetEcho(t)
	case "stdlib":
		srv = startStdEcho(t)
	default:
		t.Fatal("unknown server " + kind)
	}
	os.Stdout.WriteString(srv.addr.String() + "\n")
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	srv.stop()
}

func TestEchoClientProcess(t *testing.T) {
	to := os.Getenv("SWB_ECHO_CLIENT")
	if to == "" {
		t.Skip("SWB_ECHO_CLIENT not set")
	}
	n, _ := strconv.Atoi(os.Getenv("SWB_ECHO_N"))
	start := time.Now()
	lost := echoClient(t, netip.MustParseAddrPort(to), n, nil)
	d := time.Since(start)
	t.Logf("%d round trips in %v: %.0f/s, %d lost", n, d, float64(n)/d.Seconds(), lost)
}

func contextDone() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// BenchmarkUDPEchoInterleaved runs the servers side by side and takes
// turns in slices of 2000 round trips, so that load from other processes
// falls on all of them alike. b.N is the number of round trips per server.
// Metrics per server: wall ns per datagram and process CPU ns per datagram
// (client included; the client is the same for all), and the ratio of each
// to stdlib.
func BenchmarkUDPEchoInterleaved(b *testing.B) {
	servers := []struct {
		name  string
		start func(testing.TB) echoServer
	}{
		{"recvmmsg", startRecvmmsgEcho},
		{"gnet", startGnetEcho},
		{"stdlib", startStdEcho},
	}
	srvs := make([]echoServer, len(servers))
	for i, s := range servers {
		srvs[i] = s.start(b)
		defer srvs[i].stop()
		echoClient(b, srvs[i].addr, 2000, nil)
	}
	wall := make([]time.Duration, len(servers))
	cpu := make([]time.Duration, len(servers))
	const slice = 2000
	b.ResetTimer()
	for done := 0; done < b.N; done += slice {
		n := min(slice, b.N-done)
		for i := range srvs {
			c0, t0 := processCPU(), time.Now()
			echoClient(b, srvs[i].addr, n, nil)
			wall[i] += time.Since(t0)
			cpu[i] += processCPU() - c0
		}
	}
	b.StopTimer()
	std := len(servers) - 1
	for i, s := range servers {
		b.ReportMetric(float64(wall[i].Nanoseconds())/float64(b.N), s.name+"-ns/dgram")
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(b.N), s.name+"-cpu-ns/dgram")
		if i != std {
			b.ReportMetric(float64(wall[std])/float64(wall[i]), s.name+"/stdlib-speed")
		}
	}
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Low-rate echo: one round trip at a time with a pause between them, so
// that every datagram finds the reader idle and costs a wake-up. This is
// the proxy's usual load (a few hundred messages per second per core), and
// where a reader blocked in a system call paid a thread hand-off per
// datagram. The client is another process (TestEchoPacedClientProcess,
// started by the benchmark), so getrusage(RUSAGE_SELF) counts only the
// servers' process: its CPU and context switches per datagram.
//
//	go test -run '^$' -bench UDPEchoPaced -benchtime 2000x -count 3 ./transport
//
// b.N is the number of round trips per server; the servers take turns in
// slices of 500. SWB_ECHO_PACE sets the pause (default 200µs).
func BenchmarkUDPEchoPaced(b *testing.B) {
	servers := []struct {
		name  string
		start func(testing.TB) echoServer
	}{
		{"recvmmsg", startRecvmmsgEcho},
		{"gnet", startGnetEcho},
		{"stdlib", startStdEcho},
	}
	pace := os.Getenv("SWB_ECHO_PACE")
	if pace == "" {
		pace = "200us"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEchoPacedClientProcess$")
	cmd.Env = append(os.Environ(), "SWB_ECHO_PACED_CLIENT=1", "SWB_ECHO_PACE="+pace)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewReader(outPipe)
	defer func() { in.Close(); cmd.Wait() }()
	// run asks the client for n paced round trips against srv.
	run := func(srv netip.AddrPort, n int) {
		if _, err := in.Write([]byte(srv.String() + " " + strconv.Itoa(n) + "\n")); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "done") {
			b.Fatalf("client: %q %v", line, err)
		}
	}

	srvs := make([]echoServer, len(servers))
	for i, s := range servers {
		srvs[i] = s.start(b)
		defer srvs[i].stop()
		run(srvs[i].addr, 100) // warm up
	}
	cpu := make([]time.Duration, len(servers))
	csw := make([]int64, len(servers))
	const slice = 500
	b.ResetTimer()
	for done := 0; done < b.N; done += slice {
		n := min(slice, b.N-done)
		for i := range srvs {
			c0, s0 := processCPU(), contextSwitches()
			run(srvs[i].addr, n)
			cpu[i] += processCPU() - c0
			csw[i] += contextSwitches() - s0
		}
	}
	b.StopTimer()
	std := len(servers) - 1
	for i, s := range servers {
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(b.N), s.name+"-cpu-ns/dgram")
		b.ReportMetric(float64(csw[i])/float64(b.N), s.name+"-ctxsw/dgram")
		if i != std {
			b.ReportMetric(float64(cpu[i])/float64(cpu[std]), s.name+"/stdlib-cpu")
		}
	}
}

// contextSwitches is the number of voluntary and involuntary context
// switches of every thread of this process so far.
func contextSwitches() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}

// TestEchoPacedClientProcess is the client of BenchmarkUDPEchoPaced and of
// the paced mode of syscalls.sh; it runs only when SWB_ECHO_PACED_CLIENT is
// set. For each line "addr n" on stdin it makes n round trips against addr
// one at a time, pausing SWB_ECHO_PACE between them, and answers
// "done <lost> <round trips/s>".
func TestEchoPacedClientProcess(t *testing.T) {
	if os.Getenv("SWB_ECHO_PACED_CLIENT") == "" {
		t.Skip("SWB_ECHO_PACED_CLIENT not set")
	}
	pace, err := time.ParseDuration(os.Getenv("SWB_ECHO_PACE"))
	if err != nil {
		t.Fatal(err)
	}
	l, r := blockingClient(t, 0, 1)
	var sender Transport
	ts := unix.NsecToTimespec(pace.Nanoseconds())
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 2 {
			t.Fatalf("bad command %q", lines.Text())
		}
		srv := netip.MustParseAddrPort(f[0])
		n, _ := strconv.Atoi(f[1])
		lost := 0
		start := time.Now()
		for i := 0; i < n; i++ {
			sender.sendUDP(l, srv, benchMsg)
			_, errno := r.recvWait()
			for errno == unix.EINTR { // a signal to this process, not a loss
				_, errno = r.recvWait()
			}
			if errno != 0 {
				lost++
			} else {
				r.datagram(0)
			}
			// nanosleep keeps the pause exact (Go timers round up
			// to the millisecond).
			unix.Nanosleep(&ts, nil)
		}
		rate := float64(n) / time.Since(start).Seconds()
		os.Stdout.WriteString("done " + strconv.Itoa(lost) + " " + strconv.Itoa(int(rate)) + "\n")
	}
}
