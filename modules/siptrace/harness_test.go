package siptrace

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/txn"
)

// collectorSock is a HEP collector on a loopback UDP port: it keeps what
// it receives.
type collectorSock struct {
	conn *net.UDPConn
	pkts chan []byte
}

func newCollector(t *testing.T) *collectorSock {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &collectorSock{conn: conn, pkts: make(chan []byte, 10000)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			c.pkts <- append([]byte(nil), buf[:n]...)
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

// newSink is a collector that reads and forgets, allocating nothing per
// packet (for the allocation tests, which count every goroutine's).
func newSink(t testing.TB) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return conn.LocalAddr().String()
}

func (c *collectorSock) addr() string { return c.conn.LocalAddr().String() }

// next returns the next packet decoded, failing after a second.
func (c *collectorSock) next(t *testing.T) Record {
	t.Helper()
	select {
	case p := <-c.pkts:
		var r Record
		if err := ParseHEP3(p, &r); err != nil {
			t.Fatalf("collector got a packet that is not HEP3: %v", err)
		}
		return r
	case <-time.After(time.Second):
		t.Fatal("collector got nothing within 1s")
	}
	return Record{}
}

// drain returns what arrives until nothing came for quiet.
func (c *collectorSock) drain(t *testing.T, quiet time.Duration) []Record {
	t.Helper()
	var out []Record
	for {
		select {
		case p := <-c.pkts:
			var r Record
			if err := ParseHEP3(p, &r); err != nil {
				t.Fatalf("collector got a packet that is not HEP3: %v", err)
			}
			out = append(out, r)
		case <-time.After(quiet):
			return out
		}
	}
}

// testModule is the module built and started as the server does.
type testModule struct {
	st  *SipTrace
	set *modules.Set
	ms  *metrics.Set
}

// start builds and starts the module with s; core, when not nil, is the
// transaction core it taps (and whose allow-list it keeps to).
func start(t testing.TB, s *Settings, core *txn.Core) *testModule {
	t.Helper()
	tm, err := tryStart(t, s, core)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func tryStart(t testing.TB, s *Settings, core *txn.Core) (*testModule, error) {
	t.Helper()
	if err := checkSettings(s); err != nil {
		t.Fatalf("settings: %v", err)
	}
	o := &modules.Originator{}
	if core != nil {
		o.SetCore(core)
	}
	ms := metrics.NewSet()
	set, err := modules.Build(modules.Services{Clock: shards.NewManualClock(1_700_000_000_000), Originator: o, Metrics: ms},
		map[string]any{"siptrace": s}, "siptrace")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(set.Stop)
	return &testModule{st: set.Get("siptrace").(*SipTrace), set: set, ms: ms}, nil
}

func settings(mode string, collectors ...string) *Settings {
	s := DefaultSettings()
	s.Mode = mode
	s.Collectors = collectors
	return s
}

// metric returns the value of one line of the module's metrics.
func (tm *testModule) metric(t *testing.T, name string) string {
	t.Helper()
	var b bytes.Buffer
	tm.ms.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("metric %s not exported:\n%s", name, b.String())
	return ""
}

// waitSent waits until the sender has handed every queued message to the
// collectors.
func (tm *testModule) waitSent(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		q := tm.st.q.Load()
		if q == nil || q.tail.Load() == tm.st.flushed.Load()+tm.st.encodeErr.Load() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("the sender did not empty the queue within 3s")
}

var (
	uac   = netip.MustParseAddrPort("127.0.0.1:5070")
	uas   = netip.MustParseAddrPort("127.0.0.1:5080")
	proxy = netip.MustParseAddrPort("127.0.0.1:5060")
)
