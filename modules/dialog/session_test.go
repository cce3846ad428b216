package dialog

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// deadline returns when the dialog of callID ends (its timer), 0 when
// there is none.
func (e *env) deadline(callID string) int64 {
	h := shards.SumString(callID)
	s := e.d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	x := s.Find(h, func(x *shards.Entry[dlg]) bool { return string(x.Key()) == callID })
	if x == nil {
		return 0
	}
	return x.Value.timer.When()
}

// answerRelayed answers a request the proxy relayed (an in-dialog one)
// with code from src, extra header lines added, and returns what the
// proxy sent.
func (e *env) answerRelayed(t *testing.T, sent []routetest.Sent, src string, code int, extra string) []routetest.Sent {
	t.Helper()
	var req []routetest.Sent
	for _, x := range sent {
		if !strings.HasPrefix(x.Data, "SIP/2.0 ") {
			req = append(req, x)
		}
	}
	if len(req) != 1 {
		t.Fatalf("relayed %v", sent)
	}
	var m parser.Message
	if err := m.Parse([]byte(req[0].Data)); err != nil {
		t.Fatal(err)
	}
	// The party's Contact as it stands (a 2xx's Contact is a target
	// refresh, which the requests that follow must go to).
	contact := "sip:bob@" + src
	if src == callerAddr {
		contact = "sip:alice@" + src
	}
	e.Take()
	e.Receive(src, string(parser.AppendResponseHeaders(nil, &m, code, nil, nil, []byte("Contact: <"+contact+">\r\n"+extra))))
	return e.Take()
}

// TestSessionTimer: SetSessionTimer from the reply route times a dialog
// by its session: from the answer, restarted by each refresh's 2xx,
// never past the dialog's own timeout (SetTimeout's, set before or
// after), stopped by 0 (the own timeout again), and a second fork's 2xx
// of the INVITE changes nothing; without a dialog it is refused.
func TestSessionTimer(t *testing.T) {
	s := DefaultSettings()
	s.DefaultTimeout = 10 * time.Minute
	e := newEnv(t, s)
	iv := 2 * time.Minute
	e.Reply = func(c *routing.ReplyCtx) bool {
		if c.Status() == 200 {
			e.d.SetSessionTimer(c.Req, iv)
		}
		return true
	}
	c := e.invite("sst-1")
	e.clock.Advance(3 * time.Second) // ringing does not count
	c.respond(0, 200, "b")
	answer := e.clock.Now()
	if got := e.deadline("sst-1"); got != answer+iv.Milliseconds() {
		t.Fatalf("deadline %d after the answer, want %d", got-answer, iv.Milliseconds())
	}
	// A refresh from the caller a minute in: two minutes from its 2xx.
	e.clock.Advance(time.Minute)
	e.answerRelayed(t, c.inDialog("INVITE", true, "b", 11), calleeAddr, 200, "")
	if got := e.deadline("sst-1"); got != e.clock.Now()+iv.Milliseconds() {
		t.Fatalf("refreshed deadline %d after now, want %d", got-e.clock.Now(), iv.Milliseconds())
	}
	// The callee's refresh (UPDATE) asks for a week: its own timeout, 10
	// minutes after the answer, comes first.
	iv = 7 * 24 * time.Hour
	e.answerRelayed(t, c.inDialog("UPDATE", false, "b", 3), callerAddr, 200, "")
	if got := e.deadline("sst-1"); got != answer+10*time.Minute.Milliseconds() {
		t.Fatalf("a week's refresh: deadline %d after the answer, want the 10 min timeout", got-answer)
	}
	// A route's SetTimeout (a prepaid limit) of 90 s from now bounds the
	// session, and a refresh after it cannot extend the call past it.
	iv = 2 * time.Minute
	e.afterMatch = func(cx *routing.Ctx) {
		if cx.IsMethod(parser.MethodInfo) && !e.d.SetTimeout(cx, 90*time.Second) {
			t.Error("SetTimeout refused")
		}
	}
	c.inDialog("INFO", true, "b", 12)
	limit := e.clock.Now() + 90_000
	if got := e.deadline("sst-1"); got != limit {
		t.Fatalf("after SetTimeout(90s): deadline %d after now", got-e.clock.Now())
	}
	e.clock.Advance(10 * time.Second)
	e.answerRelayed(t, c.inDialog("INVITE", true, "b", 13), calleeAddr, 200, "")
	if got := e.deadline("sst-1"); got != limit {
		t.Fatalf("refresh past the route's limit: deadline %d, want %d", got, limit)
	}
	// 0 stops the session timer: the own deadline.
	iv = 0
	e.answerRelayed(t, c.inDialog("INVITE", true, "b", 14), calleeAddr, 200, "")
	if got := e.deadline("sst-1"); got != limit {
		t.Fatalf("stopped: deadline %d, want %d", got, limit)
	}

	// Two forks answer: the second 2xx of the INVITE changes nothing.
	iv = time.Minute
	f := e.invite("sst-2")
	f.respond(0, 200, "f1")
	first := e.deadline("sst-2")
	e.clock.Advance(time.Second)
	iv = 5 * time.Minute
	f.respond(0, 200, "f2") // a fork behind the callee answers too
	if got := e.deadline("sst-2"); got != first {
		t.Fatalf("another fork's 2xx moved the deadline by %d ms", got-first)
	}

	// The session expires: a BYE each way.
	e.Take()
	e.clock.Advance(time.Minute)
	byes := e.waitFor(t, 2, func(s routetest.Sent) bool {
		return strings.HasPrefix(s.Data, "BYE ") && header(s.Data, "Call-ID") == "sst-2"
	})
	if len(byes) != 2 || e.ended(ReasonTimeout) != 1 {
		t.Fatalf("expiry: %v, timeouts %d", byes, e.ended(ReasonTimeout))
	}

	// No dialog: refused.
	e.Route = func(cx *routing.Ctx) {
		if e.d.SetSessionTimer(cx, time.Minute) {
			t.Error("SetSessionTimer without a dialog")
		}
		cx.Reply(500, "")
	}
	e.Receive(callerAddr, routetest.Request("INVITE", "sip:bob@example.com", ""))
}

// TestSessionTimerSurvivesRestart: a dialog timed by its session is
// stored with its session's expiry and FlagSessionTimer; restored, it
// ends at that expiry, and a refresh after the restart moves it, bounded
// by default_timeout (a route's own timeout is not stored).
func TestSessionTimerSurvivesRestart(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := persistSettings()
	s.DefaultTimeout = 30 * time.Minute
	e1 := newEnvWith(t, s, envOptions{store: st, secret: testSecret})
	iv := 2 * time.Minute
	timeBySession := func(e *env) func(c *routing.ReplyCtx) bool {
		return func(c *routing.ReplyCtx) bool {
			if c.Status() == 200 {
				e.d.SetSessionTimer(c.Req, iv)
			}
			return true
		}
	}
	e1.Reply = timeBySession(e1)
	a := e1.invite("sst-restart")
	a.respond(0, 200, "b")
	answer := e1.clock.Now()
	e1.mods.Stop()
	r := stored(t, st)["sst-restart"]
	if r.Timeout != answer+iv.Milliseconds() || r.Flags&FlagSessionTimer == 0 {
		t.Fatalf("stored timeout %d after the answer, flags %#x", r.Timeout-answer, r.Flags)
	}

	e1.clock.Advance(30 * time.Second)
	e2 := newEnvWith(t, s, envOptions{store: st, clock: e1.clock, secret: testSecret})
	e2.Reply = timeBySession(e2)
	if got := e2.deadline("sst-restart"); got != answer+iv.Milliseconds() {
		t.Fatalf("restored deadline %d after the answer", got-answer)
	}
	a.e = e2
	e2.answerRelayed(t, a.inDialog("INVITE", true, "b", 11), calleeAddr, 200, "")
	if got := e2.deadline("sst-restart"); got != e2.clock.Now()+iv.Milliseconds() {
		t.Fatalf("refresh after the restart: deadline %d after now", got-e2.clock.Now())
	}
	iv = time.Hour
	e2.answerRelayed(t, a.inDialog("INVITE", true, "b", 12), calleeAddr, 200, "")
	if got := e2.deadline("sst-restart"); got != answer+30*time.Minute.Milliseconds() {
		t.Fatalf("an hour's refresh after the restart: deadline %d after the answer, want default_timeout", got-answer)
	}
}
