package dialog

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// env is the module built the way the server builds it, on a manual
// clock, inside a real transaction core and router (routetest's) whose
// request route is a small provider: CreateDialog and Relay for an
// initial INVITE (after the hook the test sets), MatchDialog and Relay
// for what LooseRoute verifies, 404 for the rest. Nothing leaves the
// process; the BYEs the module sends go through the same core.
type env struct {
	t     testing.TB
	d     *Dialog
	mods  *modules.Set
	clock *shards.Clock
	set   *metrics.Set
	*routetest.Harness

	// beforeRelay runs after CreateDialog for an initial INVITE; false:
	// the route answered.
	beforeRelay func(c *routing.Ctx) bool
	// afterMatch runs for an in-dialog request MatchDialog matched.
	afterMatch func(c *routing.Ctx)
	matched    []bool // MatchDialog's answers, in order
	kinds      []routing.RouteKind
}

func newEnv(t testing.TB, s *Settings) *env {
	t.Helper()
	return newEnvWith(t, s, envOptions{})
}

// envOptions are what a test of persistence shares between the module
// before and after a restart.
type envOptions struct {
	store  *store.Store  // nil: none (dialog.persist does nothing)
	clock  *shards.Clock // nil: a manual clock of its own
	secret []byte        // the Record-Route key (nil: random)
	t1     time.Duration // the core's T1 (0: 500ms)
	// subscribe, when set, is subscribed to the module's events before
	// it starts.
	subscribe func(*Event)
}

func newEnvWith(t testing.TB, s *Settings, o envOptions) *env {
	t.Helper()
	if s == nil {
		s = DefaultSettings()
	}
	e := &env{t: t, clock: o.clock, set: metrics.NewSet()}
	if e.clock == nil {
		e.clock = shards.NewManualClock(1_700_000_000_000)
	}
	set, err := modules.Build(modules.Services{Clock: e.clock, Metrics: e.set, Shards: 4, Store: o.store}, map[string]any{"dialog": s}, "dialog")
	if err != nil {
		t.Fatal(err)
	}
	e.mods = set
	e.d = set.Get("dialog").(*Dialog)
	if o.subscribe != nil {
		e.d.Subscribe(o.subscribe)
	}
	e.Harness = routetest.NewWith(t, e.clock, func(c *txn.Config) { c.RouteSecret, c.T1 = o.secret, o.t1 })
	set.SetCore(e.Core())
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e.Route = e.route
	return e
}

func (e *env) route(c *routing.Ctx) {
	if c.HasToTag() {
		ok := c.LooseRoute()
		e.kinds = append(e.kinds, c.RouteKind())
		if !ok {
			if !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(404, "Not here", nil)
			}
			return
		}
		matched := e.d.MatchDialog(c)
		e.matched = append(e.matched, matched)
		if matched && e.afterMatch != nil {
			e.afterMatch(c)
		}
		c.Relay()
		return
	}
	if c.IsMethod(parser.MethodInvite) {
		if !e.d.CreateDialog(c) {
			c.ReplyStateless(503, "No Dialog", nil)
			return
		}
		if e.beforeRelay != nil && !e.beforeRelay(c) {
			return
		}
	}
	c.Relay()
}

// Addresses of the parties.
const (
	callerAddr = "127.0.0.1:5070"
	calleeAddr = "127.0.0.1:5080"
	callee2    = "127.0.0.1:5090"
)

// call is one call's messages as the parties see them.
type call struct {
	e      *env
	callID string
	invite string // as the caller sent it
	fwd    string // as the proxy relayed it (first branch)
	fwds   []string
	rr     []string // Record-Route values of the relayed INVITE
	cseq   int
	// targets are the callee's Contact URIs by To tag (respond): the
	// caller's requests are addressed to them.
	targets map[string]string
	// src, when set, is where inDialog's requests come from, whichever
	// party's they are.
	src string
}

// invite sends an initial INVITE from the caller, with a Record-Route of
// a proxy before us (caller side), and returns the call.
func (e *env) invite(callID string) *call {
	e.t.Helper()
	return e.inviteOver(callID, transport.UDP)
}

// inviteOver is invite over protocol p: the caller's Via names it, and
// the core takes the INVITE as received over it (the dialog's first hop
// towards the caller is "wss:..." for WSS).
func (e *env) inviteOver(callID string, p transport.Proto) *call {
	e.t.Helper()
	inv := "INVITE sip:bob@" + calleeAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + p.String() + " " + callerAddr + ";branch=z9hG4bK" + strings.ReplaceAll(callID, "@", "-") + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"Record-Route: <sip:10.0.0.9;lr;caller-side>\r\n" +
		"From: \"Alice\" <sip:alice@example.com>;tag=atag-" + strings.ReplaceAll(callID, "@", "-") + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 10 INVITE\r\n" +
		"Contact: <sip:alice@" + callerAddr + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	c := &call{e: e, callID: callID, invite: inv, cseq: 10}
	e.Take()
	e.Handle(&transport.Packet{Data: []byte(inv), Src: netip.MustParseAddrPort(callerAddr),
		Listener: e.Listener(p, netip.Addr{}), Proto: p})
	for _, s := range e.Take() {
		if strings.HasPrefix(s.Data, "INVITE ") {
			c.fwds = append(c.fwds, s.Data)
		}
	}
	if len(c.fwds) > 0 {
		c.fwd = c.fwds[0]
		c.rr = headerValues(c.fwd, "Record-Route")
	}
	return c
}

// respond sends a response from the callee to the relayed INVITE i, with
// the Record-Route of the request, a proxy of the callee's side above it,
// and the callee's Contact.
func (c *call) respond(i int, code int, tag string) []routetest.Sent {
	c.e.t.Helper()
	return c.respondReason(i, code, "", tag)
}

// respondReason is respond with a reason phrase ("": the standard one).
func (c *call) respondReason(i int, code int, reason, tag string) []routetest.Sent {
	c.e.t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(c.fwds[i])); err != nil {
		c.e.t.Fatal(err)
	}
	extra := "Record-Route: <sip:10.0.0.7;lr;callee-side>\r\n"
	for _, v := range headerValues(c.fwds[i], "Record-Route") {
		extra += "Record-Route: " + v + "\r\n"
	}
	src := calleeAddr
	if i == 1 {
		src = callee2
	}
	extra += "Contact: <sip:bob@" + src + ";transport=udp>\r\n"
	if c.targets == nil {
		c.targets = map[string]string{}
	}
	c.targets[tag] = "sip:bob@" + src + ";transport=udp"
	var phrase []byte
	if reason != "" {
		phrase = []byte(reason)
	}
	resp := string(parser.AppendResponseHeaders(nil, &m, code, phrase, []byte(tag), []byte(extra)))
	c.e.Take()
	c.e.Receive(src, resp)
	return c.e.Take()
}

// inDialog sends an in-dialog request from the caller (fromCaller) or
// the callee, with the Route set each has once the proxy of its own side
// removed itself, and the tags given.
func (c *call) inDialog(method string, fromCaller bool, calleeTag string, cseq int) []routetest.Sent {
	c.e.t.Helper()
	return c.inDialogTo(method, fromCaller, calleeTag, cseq, "", nil, "")
}

// inDialogTo is inDialog with the Request-URI ruri and the Route values
// route instead of the party's ("", nil: the party's), and the header
// lines extra.
func (c *call) inDialogTo(method string, fromCaller bool, calleeTag string, cseq int, ruri string, route []string, extra string) []routetest.Sent {
	c.e.t.Helper()
	from := "\"Alice\" <sip:alice@example.com>;tag=atag-" + strings.ReplaceAll(c.callID, "@", "-")
	to := "<sip:bob@example.com>;tag=" + calleeTag
	src, target := callerAddr, "sip:bob@"+calleeAddr
	if t, ok := c.targets[calleeTag]; ok {
		target = t
	}
	if !fromCaller {
		from, to = to, from
		src, target = calleeAddr, "sip:alice@"+callerAddr
	}
	if ruri == "" {
		ruri = target
	}
	if c.src != "" {
		src = c.src
	}
	if route == nil {
		route = c.routeFrom(fromCaller)
	}
	return c.send(src, method+" "+ruri+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+src+";branch=z9hG4bK"+method+itoa(cseq)+strings.ReplaceAll(c.callID, "@", "-")+"\r\n"+
		"Max-Forwards: 70\r\n"+
		"Route: "+strings.Join(route, ", ")+"\r\n"+
		"From: "+from+"\r\n"+
		"To: "+to+"\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		"CSeq: "+itoa(cseq)+" "+method+"\r\n"+
		extra+
		"Content-Length: 0\r\n\r\n")
}

// routeFrom is the Route set of a party's in-dialog requests: ours, and
// the proxy on the other party's side.
func (c *call) routeFrom(fromCaller bool) []string {
	var ours, route []string
	for _, v := range c.rr {
		if !strings.Contains(v, "caller-side") {
			ours = append(ours, v)
		}
	}
	if fromCaller {
		for i := len(ours) - 1; i >= 0; i-- {
			route = append(route, ours[i])
		}
		return append(route, "<sip:10.0.0.7;lr;callee-side>")
	}
	return append(append(route, ours...), "<sip:10.0.0.9;lr;caller-side>")
}

// send hands msg to the core from src and returns what was sent.
func (c *call) send(src, msg string) []routetest.Sent {
	c.e.Take()
	c.e.Receive(src, msg)
	return c.e.Take()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// headerValues returns the values of every header line called name.
func headerValues(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			for _, part := range splitComma(strings.TrimSpace(v)) {
				out = append(out, part)
			}
		}
	}
	return out
}

func splitComma(v string) []string {
	var out []string
	depth := 0
	start := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

func header(msg, name string) string {
	if v := headerValues(msg, name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// count returns d's dialogs in each state.
func (e *env) count() (unconfirmed, early, confirmed int64) {
	return e.d.unconfirmed.Load(), e.d.early.Load(), e.d.confirmed.Load()
}

func (e *env) wantCount(t *testing.T, unconfirmed, early, confirmed int64) {
	t.Helper()
	if u, ea, c := e.count(); u != unconfirmed || ea != early || c != confirmed {
		t.Fatalf("dialogs unconfirmed/early/confirmed = %d/%d/%d, want %d/%d/%d", u, ea, c, unconfirmed, early, confirmed)
	}
	if n := int64(e.d.tbl.Len()); n != unconfirmed+early+confirmed {
		t.Fatalf("table holds %d dialogs, the counts say %d", n, unconfirmed+early+confirmed)
	}
}

func (e *env) ended(r Reason) uint64 { return e.d.ended[r].Get() }

// waitFor waits for n messages sent by the core for which keep is true
// and returns them; the others are dropped.
func (e *env) waitFor(t *testing.T, n int, keep func(routetest.Sent) bool) []routetest.Sent {
	t.Helper()
	var got []routetest.Sent
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range e.Take() {
			if keep(s) {
				got = append(got, s)
			}
		}
		if len(got) >= n {
			return got
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%d messages sent, want %d: %v", len(got), n, got)
	return nil
}

// waitSent waits for n messages sent by the core (the module's BYEs go
// out from its goroutine) and returns them.
func (e *env) waitSent(t *testing.T, n int) []routetest.Sent {
	t.Helper()
	var got []routetest.Sent
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got = append(got, e.Take()...)
		if len(got) >= n {
			return got
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%d messages sent, want %d: %v", len(got), n, got)
	return nil
}
