package transport

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Handler that keeps copies of what it receives.
type recorder struct {
	mu   sync.Mutex
	pkts []Packet
	ch   chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1024)} }

func (r *recorder) HandleMessage(p *Packet) {
	c := *p
	c.Data = append([]byte(nil), p.Data...)
	r.mu.Lock()
	r.pkts = append(r.pkts, c)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// wait returns once n packets arrived, or fails the test.
func (r *recorder) wait(t *testing.T, n int) []Packet {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		if len(r.pkts) >= n {
			out := append([]Packet(nil), r.pkts...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			r.mu.Lock()
			got := len(r.pkts)
			r.mu.Unlock()
			t.Fatalf("timed out waiting for %d messages, got %d", n, got)
		}
	}
}

func startTransport(t *testing.T, cfg Config, h Handler) *Transport {
	t.Helper()
	tr, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settle waits until the goroutine and descriptor counts drop back to the
// given baseline, or fails with the numbers seen.
func expectNoLeak(t *testing.T, goroutines, fds int) {
	t.Helper()
	var g, f int
	for i := 0; i < 200; i++ {
		runtime.GC()
		g, f = countGoroutines(), countFDs(t)
		if g <= goroutines && f <= fds {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	n := runtime.Stack(buf, true)
	t.Fatalf("leak: goroutines %d -> %d, fds %d -> %d\n%s", goroutines, g, fds, f, buf[:n])
}

func udpPeer(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countGoroutines counts goroutines except idle workers of the ants pool
// that gnet uses to enroll outbound connections: they are shared, bounded
// and expire after 10 s, so they are not per-connection leaks.
func countGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.TrimSpace(g) != "" && !strings.Contains(g, "panjf2000/ants") {
			n++
		}
	}
	return n
}
