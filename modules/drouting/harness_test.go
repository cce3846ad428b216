package drouting

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// monday10 is Monday 2 March 2026, 10:00:00 UTC, when the tests start.
var monday10 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC).UnixMilli()

var ctx = context.Background()

// env is the module built the way the server builds it, on a real SQLite
// store and a manual clock, inside a real transaction core and router
// (routetest's) whose request route sends INVITEs through DoRouting and
// whose failure route calls UseNextGW; nothing leaves the process.
type env struct {
	t     testing.TB
	d     *Drouting
	st    *store.Store
	dir   string
	clock *shards.Clock
	set   *metrics.Set
	api   *mgmt.Client
	log   *syncBuffer
	*routetest.Harness
	group  int
	result Result // of the last Route

	// capture's (alloc_test.go)
	probeIDs   map[string]bool // Call-IDs of the probes seen (probe_test.go)
	lastInvite []byte
	lastDst    netip.AddrPort
	respMsg    parser.Message
}

type envOptions struct {
	settings *Settings
	mgmt     bool
	events   *modules.Events // nil: the set's own
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, dir: dir, probeIDs: map[string]bool{}, clock: shards.NewManualClock(monday10), set: metrics.NewSet(), log: &syncBuffer{}}
	s := o.settings
	if s == nil {
		s = DefaultSettings()
		s.Timezone = "UTC"
	}
	svc := modules.Services{Store: st, Clock: e.clock, Metrics: e.set, Logger: slog.New(slog.NewTextHandler(e.log, nil)), Events: o.events}
	if o.mgmt {
		srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "test-token"})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(context.Background()) })
		svc.Mgmt = srv
		e.api = &mgmt.Client{Addr: srv.Addr(), Token: "test-token"}
	}
	set, err := modules.Build(svc, map[string]any{"drouting": s}, "drouting")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e.d = set.Get("drouting").(*Drouting)
	e.Harness = routetest.New(t, e.clock)
	set.SetCore(e.Core())
	d := e.d
	e.Route = func(c *routing.Ctx) {
		if c.IsMethod(parser.MethodAck) {
			return
		}
		e.result = d.Route(c, e.group)
		switch e.result {
		case Routed:
			if c.Relay() != nil {
				c.ReplyStateless(500, "Relay Failed", nil)
			}
		case NoGateway:
			c.ReplyStateless(503, "No Gateway", nil)
		default:
			c.ReplyStateless(404, "No Route", nil)
		}
	}
	e.Failure = func(c *routing.FailureCtx) { d.UseNextGW(c) }
	return e
}

// gw adds gateways ("gw1 127.0.0.11:5060" and the like, with optional
// fields after) and loads them.
func (e *env) gws(gs ...store.DRGateway) {
	e.t.Helper()
	if err := e.st.AddDRGateways(ctx, gs, false); err != nil {
		e.t.Fatal(err)
	}
	e.load(store.DRGatewaysTable)
}

func (e *env) carriers(cs ...store.DRCarrier) {
	e.t.Helper()
	if err := e.st.AddDRCarriers(ctx, cs, false); err != nil {
		e.t.Fatal(err)
	}
	e.load(store.DRCarriersTable)
}

func (e *env) rules(rs ...store.DRRule) []store.DRRule {
	e.t.Helper()
	for i := range rs {
		if rs[i].Groups == "" {
			rs[i].Groups = "0"
		}
	}
	if err := e.st.AddDRRules(ctx, rs, false); err != nil {
		e.t.Fatal(err)
	}
	e.load(store.DRRulesTable)
	return rs
}

func (e *env) load(table string) {
	e.t.Helper()
	if err := e.d.LoadTable(ctx, table); err != nil {
		e.t.Fatal(err)
	}
}

// gwAddr is the address of test gateway n: 127.0.0.1:5100+n.
func gwAddr(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(5100+n))
}

func gwRow(id string, n int) store.DRGateway {
	return store.DRGateway{GWID: id, Address: gwAddr(n).String()}
}

var phone = netip.MustParseAddrPort("127.0.0.1:5080")

var seq int

// call is an INVITE the tests send through the proxy.
type call struct {
	e      *env
	callID string
	number string
	relay  string         // the INVITE as last relayed
	dst    netip.AddrPort // where it went
	final  string         // the final answer to the phone, "" while none
}

// invite sends an INVITE for number (the Request-URI user at the served
// domain example.com) from the phone.
func (e *env) invite(number string) *call {
	seq++
	c := &call{e: e, callID: fmt.Sprintf("dr-%d@phone", seq), number: number}
	e.Take()
	e.Receive(phone.String(), "INVITE sip:"+number+"@example.com SIP/2.0\r\n"+
		fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-dr%d;rport\r\n", seq)+
		"Max-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=a"+itoa(seq)+"\r\n"+
		"To: <sip:"+number+"@example.com>\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:alice@127.0.0.1:5080>\r\n"+
		"Content-Length: 0\r\n\r\n")
	c.collect()
	return c
}

// collect takes what the proxy sent: the INVITE relayed (and where), the
// final answer to the phone.
func (c *call) collect() {
	for _, s := range c.e.Take() {
		switch {
		case strings.HasPrefix(s.Data, "INVITE "):
			c.relay, c.dst = s.Data, s.Dst
		case strings.HasPrefix(s.Data, "SIP/2.0 ") && !strings.HasPrefix(s.Data, "SIP/2.0 1") && s.Dst == phone:
			c.final = s.Data[:strings.Index(s.Data, "\r\n")]
		}
	}
}

// ruri is the Request-URI of the INVITE as relayed.
func (c *call) ruri() string {
	line, _, _ := strings.Cut(c.relay, "\r\n")
	return strings.TrimSuffix(strings.TrimPrefix(line, "INVITE "), " SIP/2.0")
}

// answer sends the gateway's response to the relayed INVITE, code with
// or without a 100 Trying first.
func (c *call) answer(code int) {
	c.e.t.Helper()
	if c.relay == "" {
		c.e.t.Fatal("answer: the INVITE was not relayed")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d Whatever\r\n", code)
	for _, line := range strings.Split(c.relay, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=gw\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	c.relay = ""
	c.e.Receive(c.dst.String(), b.String())
	c.collect()
}

// metric reads one metric from the set.
func (e *env) metric(name string) float64 {
	e.t.Helper()
	var b strings.Builder
	e.set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	e.t.Fatalf("metric %s not found in\n%s", name, b.String())
	return 0
}

func itoa(n int) string { return strconv.Itoa(n) }
