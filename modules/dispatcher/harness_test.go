package dispatcher

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
)

var ctx = context.Background()

// env is the module built the way the server builds it, on a real SQLite
// store and a manual clock, optionally with a management server.
type env struct {
	t     testing.TB
	d     *Dispatcher
	st    *store.Store
	dir   string
	clock *shards.Clock
	set   *metrics.Set
	mods  *modules.Set
	api   *mgmt.Client
}

type envOptions struct {
	settings *Settings
	mgmt     bool
	rows     []store.DispatcherDest // in the store before the module is built
	events   *modules.Events        // nil: the set's own
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if len(o.rows) > 0 {
		if err := st.AddDispatcherDests(ctx, o.rows); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, st: st, dir: dir, clock: shards.NewManualClock(1_700_000_000_000), set: metrics.NewSet()}
	s := o.settings
	if s == nil {
		s = DefaultSettings()
		s.ProbeInterval = 0
	}
	svc := modules.Services{Store: st, Clock: e.clock, Metrics: e.set, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Events: o.events}
	if o.mgmt {
		srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "test-token"})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(context.Background()) })
		svc.Mgmt = srv
		e.api = &mgmt.Client{Addr: srv.Addr(), Token: "test-token"}
	}
	e.mods, err = modules.Build(svc, map[string]any{"dispatcher": s}, "dispatcher")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.mods.Stop)
	e.d = e.mods.Get("dispatcher").(*Dispatcher)
	return e
}

// add stores destinations and loads the table.
func (e *env) add(rows ...store.DispatcherDest) {
	e.t.Helper()
	for i := range rows {
		if rows[i].Weight == 0 {
			rows[i].Weight = 1
		}
	}
	if err := e.st.AddDispatcherDests(ctx, rows); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.d.LoadTable(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// dst is a destination row of set on 127.0.0.1:port.
func dst(set, port int) store.DispatcherDest {
	return store.DispatcherDest{SetID: set, Destination: fmt.Sprintf("sip:127.0.0.1:%d", port), Weight: 1}
}

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

func (e *env) hasMetric(name string) bool {
	var b strings.Builder
	e.set.WritePrometheus(&b)
	return strings.Contains(b.String(), name+" ")
}

// state returns the run-time state of destination uri of set.
func (e *env) state(set int, uri string) string {
	for _, i := range e.d.List(set) {
		if i.Destination == uri {
			return i.State
		}
	}
	return "missing"
}

// info returns the management view of destination uri of set.
func (e *env) info(set int, uri string) DestInfo {
	e.t.Helper()
	for _, i := range e.d.List(set) {
		if i.Destination == uri {
			return i
		}
	}
	e.t.Fatalf("%s not in set %d", uri, set)
	return DestInfo{}
}

// chosen returns the URI of the destination the request went to last.
func (d *Dispatcher) chosen(c *routing.Ctx) string {
	_, s, i, ok := d.current(c)
	if !ok {
		return ""
	}
	return s.dests[i].uri
}

// proxy is a real transaction core and router (routetest's) running a
// route set that sends initial requests to a set with SelectDst, fails
// over with NextDst on 408 and 5xx, and releases calls as a route set
// must; nothing leaves the process.
type proxy struct {
	*env
	*routetest.Harness
	set int
	alg Algorithm
	// markOn408 marks a destination that did not answer with
	// MarkDst(Probing) before failing over.
	markOn408  bool
	noFailover bool
}

func newProxy(t testing.TB, o envOptions) *proxy {
	t.Helper()
	e := newEnv(t, o)
	p := &proxy{env: e, Harness: routetest.New(t, e.clock), set: 1, alg: RoundRobin}
	d := p.d
	p.Route = func(c *routing.Ctx) {
		if c.HasToTag() {
			d.CallEnded(c)
			c.ReplyStateless(200, "OK", nil)
			return
		}
		if !d.SelectDst(c, p.set, p.alg) {
			if d.CallInUse(c) {
				c.ReplyStateless(482, "Loop Detected", nil)
				return
			}
			c.ReplyStateless(503, "No Destination", nil)
			return
		}
		if c.Relay() != nil {
			d.CallFailed(c)
			c.ReplyStateless(500, "Relay Failed", nil)
		}
	}
	p.Reply = func(c *routing.ReplyCtx) bool { d.Reply(c); return true }
	p.Failure = func(c *routing.FailureCtx) {
		st := c.Status()
		if !c.Canceled() && !p.noFailover && (st == 408 || st >= 500 && st < 600) {
			if st == 408 && p.markOn408 {
				d.MarkDst(c.Ctx, Probing)
			}
			if d.NextDst(c) {
				c.Relay()
				return
			}
		}
		d.CallFailed(c.Ctx)
	}
	return p
}

var phone = netip.MustParseAddrPort("127.0.0.1:5080")

var seq int

// testCall is a call placed through the proxy.
type testCall struct {
	p       *proxy
	callID  string
	from    string
	ruri    string
	relayed []routetest.Sent // INVITEs the proxy sent, in order
	answers []string         // final responses sent back to the phone
}

// invite sends an INVITE from user to ruri with a fresh Call-ID.
func (p *proxy) invite(from, ruri string) *testCall {
	seq++
	return p.inviteWithID(fmt.Sprintf("call-%d@phone", seq), from, ruri)
}

func (p *proxy) inviteWithID(callID, from, ruri string) *testCall {
	return p.send(callID, from, ruri, callID, 1)
}

// inviteTxn sends another initial INVITE on callID, with its own branch
// and CSeq.
func (p *proxy) inviteTxn(callID, branch string, cseq int) *testCall {
	return p.send(callID, "alice", "sip:conf@example.com", branch, cseq)
}

func (p *proxy) send(callID, from, ruri, branch string, cseq int) *testCall {
	c := &testCall{p: p, callID: callID, from: from, ruri: ruri}
	p.Take()
	p.Receive(phone.String(), "INVITE "+ruri+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-"+token(branch)+";rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:"+from+"@example.com>;tag=f"+token(callID)+"\r\n"+
		"To: <"+ruri+">\r\n"+
		"Call-ID: "+callID+"\r\n"+
		fmt.Sprintf("CSeq: %d INVITE\r\n", cseq)+
		"Contact: <sip:"+from+"@127.0.0.1:5080>\r\n"+
		"Content-Length: 0\r\n\r\n")
	c.collect()
	return c
}

// collect records what the proxy sent since the last call.
func (c *testCall) collect() {
	for _, s := range c.p.Take() {
		switch {
		case strings.HasPrefix(s.Data, "INVITE "):
			c.relayed = append(c.relayed, s)
		case strings.HasPrefix(s.Data, "SIP/2.0 ") && !strings.HasPrefix(s.Data, "SIP/2.0 1"):
			c.answers = append(c.answers, s.Data[:strings.Index(s.Data, "\r\n")])
		}
	}
}

// to returns where the INVITE was relayed last ("" when it was not).
func (c *testCall) to() string {
	if len(c.relayed) == 0 {
		return ""
	}
	return c.relayed[len(c.relayed)-1].Dst.String()
}

// destinations lists where the INVITE was relayed, in order, without
// retransmissions.
func (c *testCall) destinations() string {
	var out []string
	for _, r := range c.relayed {
		if d := r.Dst.String(); len(out) == 0 || out[len(out)-1] != d {
			out = append(out, d)
		}
	}
	return strings.Join(out, " ")
}

// answer sends code from the destination the INVITE went to last.
func (c *testCall) answer(code int) {
	t := c.p.t
	t.Helper()
	if len(c.relayed) == 0 {
		t.Fatal("answer: the INVITE was not relayed")
	}
	last := c.relayed[len(c.relayed)-1]
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d Whatever\r\n", code)
	for _, line := range strings.Split(last.Data, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=uas\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	c.p.Receive(last.Dst.String(), b.String())
	c.collect()
}

// bye sends the BYE of an answered call from the phone (in dialog).
func (c *testCall) bye() {
	c.p.Take()
	c.p.Receive(phone.String(), "BYE sip:uas@127.0.0.1 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-bye-"+token(c.callID)+";rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:"+c.from+"@example.com>;tag=f"+token(c.callID)+"\r\n"+
		"To: <"+c.ruri+">;tag=uas\r\n"+
		"Call-ID: "+c.callID+"\r\n"+
		"CSeq: 2 BYE\r\n"+
		"Content-Length: 0\r\n\r\n")
	c.collect()
}

// timeout lets the INVITE's branch time out (timer B/F: 64·T1 with the
// harness's defaults), as a destination that never answers.
func (c *testCall) timeout() {
	c.p.Clock.Advance(40 * time.Second)
	c.collect()
}

// token makes s fit a branch or tag parameter.
func token(s string) string { return strings.NewReplacer("@", "-", ".", "-").Replace(s) }
