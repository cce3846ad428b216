package fraud

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// monday10 is Monday 2 March 2026, 10:00:00 UTC, when the tests start.
var monday10 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC).UnixMilli()

var ctx = context.Background()

// env is the module built the way the server builds it, on a real SQLite
// store and a manual clock, optionally with a management server.
type env struct {
	t     testing.TB
	f     *Fraud
	st    *store.Store
	dir   string
	clock *shards.Clock
	set   *metrics.Set
	api   *mgmt.Client
}

type envOptions struct {
	settings *Settings
	shards   int
	mgmt     bool
	events   *modules.Events // nil: the set's own
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, dir: dir, clock: shards.NewManualClock(monday10), set: metrics.NewSet()}
	s := o.settings
	if s == nil {
		s = DefaultSettings()
		s.Timezone = "UTC"
	}
	svc := modules.Services{Store: st, Clock: e.clock, Metrics: e.set, Shards: o.shards,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Events: o.events}
	if o.mgmt {
		srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "test-token"})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(context.Background()) })
		svc.Mgmt = srv
		e.api = &mgmt.Client{Addr: srv.Addr(), Token: "test-token"}
	}
	set, err := modules.Build(svc, map[string]any{"fraud": s}, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e.f = set.Get("fraud").(*Fraud)
	return e
}

// rule adds a rule to the store and reloads the module's rules.
func (e *env) rule(r store.FraudRule) store.FraudRule {
	e.t.Helper()
	if r.Profile == 0 {
		r.Profile = 1
	}
	r, err := e.st.AddFraudRule(ctx, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.f.LoadRules(ctx); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// check runs Check without a request (nothing is tracked).
func (e *env) check(user, number string) Result {
	return e.f.Check(nil, []byte(user), []byte(number), 1)
}

func (e *env) counter(name string) float64 {
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

// stats returns user's counter for profile 1 and prefix.
func (e *env) stats(user, prefix string) StatInfo {
	for _, s := range e.f.Stats(user) {
		if s.Profile == 1 && s.Prefix == prefix {
			return s
		}
	}
	return StatInfo{}
}

// proxy is a real transaction core and router (routetest's) running a
// route set that checks INVITEs with the module and relays them to a
// callee at 127.0.0.1:5070; nothing leaves the process.
type proxy struct {
	*env
	*routetest.Harness
	// refuseAfterCheck makes the route refuse a checked INVITE (480)
	// instead of relaying it, as a route whose next step fails would.
	refuseAfterCheck bool
	last             Result
	pkt              transport.Packet
}

var callee = netip.MustParseAddrPort("127.0.0.1:5070")

func newProxy(t testing.TB, o envOptions) *proxy {
	t.Helper()
	e := newEnv(t, o)
	p := &proxy{env: e, Harness: routetest.New(t, e.clock)}
	f := p.f
	p.Route = func(c *routing.Ctx) {
		if c.HasToTag() {
			f.CallEnded(c)
			c.ReplyStateless(200, "OK", nil)
			return
		}
		var buf [64]byte
		p.last = f.Check(c, AppendCaller(buf[:0], c), c.RUser(), 1)
		switch {
		case p.last == Critical && f.CallInUse(c, AppendCaller(buf[:0], c)):
			c.ReplyStateless(482, "Loop Detected", nil)
		case p.last == Critical:
			c.ReplyStateless(403, "Forbidden", nil)
		case p.refuseAfterCheck:
			f.CallFailed(c)
			c.ReplyStateless(480, "Temporarily Unavailable", nil)
		default:
			c.SetDestination(transport.UDP, callee)
			if c.Relay() != nil {
				f.CallFailed(c)
				c.ReplyStateless(500, "Relay Failed", nil)
			}
		}
	}
	p.Reply = func(c *routing.ReplyCtx) bool { f.Reply(c); return true }
	p.Failure = func(c *routing.FailureCtx) { f.CallFailed(c.Ctx) }
	return p
}

func (p *proxy) receive(src netip.AddrPort, msg string) {
	p.Handle(&transport.Packet{Data: []byte(msg), Src: src, Listener: p.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP})
}

// take returns and forgets what was sent.
func (p *proxy) take() []string {
	var out []string
	for _, s := range p.Take() {
		out = append(out, s.Data)
	}
	return out
}

var phone = netip.MustParseAddrPort("127.0.0.1:5080")

var seq int

// testCall is a call the tests place through the proxy.
type testCall struct {
	p      *proxy
	callID string
	from   string
	number string
	cseq   int
	via    string // the INVITE's Via as the phone sent it
	// withVia, when set, is the Via the INVITE is sent with instead of a
	// fresh branch's (a forgery copying another INVITE's branch).
	withVia string
	relay   string // the INVITE as relayed to the callee
}

// invite sends an INVITE from user (alice: alice@example.com) to number and
// returns the call; answer is the proxy's first final answer to the phone,
// "" when it relayed the INVITE.
func (p *proxy) invite(user, number string) (*testCall, string) {
	seq++
	c := &testCall{p: p, callID: fmt.Sprintf("call-%d@phone", seq), from: user, number: number, cseq: 1}
	return c, c.send()
}

func (c *testCall) send() string {
	p := c.p
	seq++
	p.take()
	c.via = fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-%d;rport", seq)
	if c.withVia != "" {
		c.via = c.withVia
	}
	p.receive(phone, "INVITE sip:"+c.number+"@gw.example.net SIP/2.0\r\n"+
		c.via+"\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:"+c.from+"@example.com>;tag="+c.tag()+"\r\n"+
		"To: <sip:"+c.number+"@gw.example.net>\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		fmt.Sprintf("CSeq: %d INVITE\r\n", c.cseq)+
		"Contact: <sip:"+c.from+"@127.0.0.1:5080>\r\n"+
		"Content-Length: 0\r\n\r\n")
	for _, m := range p.take() {
		switch {
		case strings.HasPrefix(m, "INVITE "):
			c.relay = m
		case strings.HasPrefix(m, "SIP/2.0 ") && !strings.HasPrefix(m, "SIP/2.0 1"):
			return m[:strings.Index(m, "\r\n")]
		}
	}
	if c.relay == "" {
		p.t.Fatalf("INVITE %s neither relayed nor answered", c.callID)
	}
	return ""
}

// answer sends the callee's final response to the relayed INVITE.
func (c *testCall) answer(code int) {
	c.p.t.Helper()
	if c.relay == "" {
		c.p.t.Fatal("answer: the INVITE was not relayed")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d Whatever\r\n", code)
	for _, line := range strings.Split(c.relay, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=callee\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	c.p.receive(callee, b.String())
}

// bye sends a BYE in the call's dialog from the phone.
func (c *testCall) bye() {
	seq++
	c.p.receive(phone, "BYE sip:"+c.number+"@127.0.0.1:5070 SIP/2.0\r\n"+
		fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-%d;rport\r\n", seq)+
		"Max-Forwards: 70\r\n"+
		"From: <sip:"+c.from+"@example.com>;tag="+c.tag()+"\r\n"+
		"To: <sip:"+c.number+"@gw.example.net>;tag=callee\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		fmt.Sprintf("CSeq: %d BYE\r\n", c.cseq+1)+
		"Content-Length: 0\r\n\r\n")
}

// cancel sends a CANCEL for the call's INVITE.
func (c *testCall) cancel() {
	c.p.receive(phone, "CANCEL sip:"+c.number+"@gw.example.net SIP/2.0\r\n"+
		c.via+"\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:"+c.from+"@example.com>;tag="+c.tag()+"\r\n"+
		"To: <sip:"+c.number+"@gw.example.net>\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		fmt.Sprintf("CSeq: %d CANCEL\r\n", c.cseq)+
		"Content-Length: 0\r\n\r\n")
}

// concurrent is alice's concurrent calls for the prefix.
func (p *proxy) concurrent(prefix string) int32 {
	return p.stats("alice@example.com", prefix).ConcurrentCalls
}

// tag is the From tag of the call: its Call-ID made a token.
func (c *testCall) tag() string { return "ft-" + strings.ReplaceAll(c.callID, "@", ".") }

// packet is a received datagram; tests that count allocations reuse one.
func packet(p *proxy, data []byte) *transport.Packet {
	p.pkt = transport.Packet{Data: data, Src: phone, Listener: p.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	return &p.pkt
}
