package acc

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// env is the dialog and acc modules built the way the server builds
// them, on a real SQLite store and a manual clock, inside a real
// transaction core (routetest's): a request route that creates a dialog
// for every initial INVITE (after the hook the test sets) and matches
// the in-dialog requests our Record-Route brings back.
type env struct {
	t     testing.TB
	a     *Acc
	d     *dialog.Dialog
	st    *store.Store
	dir   string // the store's data directory
	clock *shards.Clock
	set   *metrics.Set
	mods  *modules.Set
	logs  *syncBuffer
	*routetest.Harness

	// beforeRelay runs after CreateDialog; false: the route answered.
	beforeRelay func(c *routing.Ctx) bool
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

// newEnv builds the modules with s (nil: the defaults) and starts them
// unless start is false (the writer then does not run until Stop).
func newEnv(t testing.TB, s *Settings, start bool) *env {
	t.Helper()
	return newEnvStore(t, s, start, store.Options{})
}

// newEnvStore is newEnv on a store opened with opts.
func newEnvStore(t testing.TB, s *Settings, start bool, opts store.Options) *env {
	t.Helper()
	if s == nil {
		s = DefaultSettings()
	}
	dir := t.TempDir()
	st, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, dir: dir, clock: shards.NewManualClock(1_700_000_000_000), set: metrics.NewSet(), logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(e.logs, nil))
	e.mods, err = modules.Build(modules.Services{Store: st, Clock: e.clock, Metrics: e.set, Shards: 4, Logger: logger},
		map[string]any{"acc": s}, "acc")
	if err != nil {
		t.Fatal(err)
	}
	e.a = e.mods.Get("acc").(*Acc)
	e.d = e.mods.Get("dialog").(*dialog.Dialog)
	e.Harness = routetest.New(t, e.clock)
	e.mods.SetCore(e.Core())
	if start {
		if err := e.mods.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		e.mods.Stop()
		st.Close()
	})
	e.Route = e.route
	return e
}

func (e *env) route(c *routing.Ctx) {
	if c.HasToTag() {
		if !c.LooseRoute() {
			if !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(404, "Not here", nil)
			}
			return
		}
		e.d.MatchDialog(c)
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
)

// call is one call's messages.
type call struct {
	e      *env
	callID string
	invite string // as the caller sent it
	fwd    string // as the proxy relayed it
	rr     string // our Record-Route value
	tag    string // the callee's tag once it answered
}

// invite sends an initial INVITE from the caller.
func (e *env) invite(callID string) *call {
	e.t.Helper()
	inv := "INVITE sip:bob@" + calleeAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + callerAddr + ";branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: \"Alice\" <sip:alice@example.com>;tag=a-" + callID + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 10 INVITE\r\n" +
		"Contact: <sip:alice@" + callerAddr + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	c := &call{e: e, callID: callID, invite: inv}
	e.Take()
	e.Receive(callerAddr, inv)
	for _, s := range e.Take() {
		if strings.HasPrefix(s.Data, "INVITE ") {
			c.fwd = s.Data
			c.rr = header(s.Data, "Record-Route")
		}
	}
	return c
}

// respond sends the callee's response to the relayed INVITE (reason ""
// the standard phrase).
func (c *call) respond(code int, reason, tag string) {
	c.e.t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(c.fwd)); err != nil {
		c.e.t.Fatal(err)
	}
	var phrase []byte
	if reason != "" {
		phrase = []byte(reason)
	}
	extra := "Record-Route: " + c.rr + "\r\nContact: <sip:bob@" + calleeAddr + ">\r\n"
	if code >= 200 && code < 300 {
		c.tag = tag
	}
	c.e.Take()
	c.e.Receive(calleeAddr, string(parser.AppendResponseHeaders(nil, &m, code, phrase, []byte(tag), []byte(extra))))
	c.e.Take()
}

// bye sends a BYE from the caller or the callee along our Record-Route.
func (c *call) bye(fromCaller bool) {
	c.e.t.Helper()
	from := "\"Alice\" <sip:alice@example.com>;tag=a-" + c.callID
	to := "<sip:bob@example.com>;tag=" + c.tag
	src, ruri, cseq := callerAddr, "sip:bob@"+calleeAddr, "11"
	if !fromCaller {
		from, to = to, from
		src, ruri, cseq = calleeAddr, "sip:alice@"+callerAddr, "1"
	}
	c.e.Take()
	c.e.Receive(src, "BYE "+ruri+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+src+";branch=z9hG4bK-bye-"+c.callID+"\r\n"+
		"Max-Forwards: 70\r\n"+
		"Route: "+c.rr+"\r\n"+
		"From: "+from+"\r\nTo: "+to+"\r\n"+
		"Call-ID: "+c.callID+"\r\nCSeq: "+cseq+" BYE\r\nContent-Length: 0\r\n\r\n")
	c.e.Take()
}

// cancel sends the caller's CANCEL of the INVITE.
func (c *call) cancel() {
	c.e.Take()
	c.e.Receive(callerAddr, strings.Replace(strings.Replace(c.invite, "INVITE sip", "CANCEL sip", 1), "10 INVITE", "10 CANCEL", 1))
	c.e.Take()
}

func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// waitWritten waits until the store sink wrote n records in all.
func (e *env) waitWritten(n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if int(e.a.written[sinkStore].Get()) >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.t.Fatalf("%d records written, want %d", e.a.written[sinkStore].Get(), n)
}

// records returns the records of a table with Call-ID callID.
func (e *env) records(missed bool, callID string) []store.CDR {
	e.t.Helper()
	cs, err := e.st.ListCDRs(t0ctx, store.CDRFilter{Missed: missed, CallID: callID})
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}
