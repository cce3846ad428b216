package sst

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/modules/dispatcher"
	"switchboard/modules/drouting"
	"switchboard/modules/internal/routetest"
	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/txn"
)

// env is the sst and dialog modules built as the server builds them, on a
// manual clock, inside a real transaction core and router whose routes are
// the provider's steps: CheckMin, CreateDialog, Manage and Relay for an
// initial INVITE; LooseRoute, MatchDialog and Relay inside a dialog;
// Reply in the reply route.
type env struct {
	*routetest.Harness
	t     *testing.T
	m     *SST
	d     *dialog.Dialog
	clock *shards.Clock
	mods  *modules.Set
}

const (
	caller = "127.0.0.1:5070"
	callee = "127.0.0.1:5080"
)

func newEnv(t *testing.T, s *Settings, ds *dialog.Settings) *env {
	t.Helper()
	if s == nil {
		s = DefaultSettings()
		s.Enabled = true
	}
	if ds == nil {
		ds = dialog.DefaultSettings()
	}
	ds.Persist = false
	e := &env{t: t, clock: shards.NewManualClock(1_700_000_000_000)}
	set, err := modules.Build(modules.Services{Clock: e.clock, Metrics: metrics.NewSet(), Shards: 4},
		map[string]any{"sst": s, "dialog": ds}, "sst")
	if err != nil {
		t.Fatal(err)
	}
	e.mods = set
	e.m, e.d = set.Get("sst").(*SST), set.Get("dialog").(*dialog.Dialog)
	e.Harness = routetest.New(t, e.clock)
	set.SetCore(e.Core())
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	e.Route = e.route
	e.Reply = func(c *routing.ReplyCtx) bool { e.m.Reply(c); return true }
	return e
}

func (e *env) route(c *routing.Ctx) {
	if c.HasToTag() {
		if !c.LooseRoute() {
			c.ReplyStateless(404, "Not here", nil)
			return
		}
		e.d.MatchDialog(c)
		c.Relay()
		return
	}
	if !e.m.CheckMin(c) {
		return
	}
	if !e.d.CreateDialog(c) {
		c.ReplyStateless(503, "No Dialog", nil)
		return
	}
	e.m.Manage(c)
	c.Relay()
}

// call is one call: the INVITE as relayed, the 2xx as the caller got it.
type call struct {
	e      *env
	callID string
	fwd    string // the INVITE relayed, or the final answer to it
	up     string // what the caller got for the 2xx
}

var seq int

// invite sends the caller's INVITE with extra header lines and returns
// the call; fwd is the relayed INVITE, or the answer when there is none.
func (e *env) invite(extra string) *call {
	e.t.Helper()
	seq++
	c := &call{e: e, callID: "sst-" + itoa(seq)}
	inv := "INVITE sip:bob@" + callee + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + caller + ";branch=z9hG4bK" + c.callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a" + c.callID + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: " + c.callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@" + caller + ">\r\n" + extra +
		"Content-Length: 0\r\n\r\n"
	e.Take()
	e.Receive(caller, inv)
	for _, s := range e.Take() {
		if strings.HasPrefix(s.Data, "INVITE ") || strings.HasPrefix(s.Data, "SIP/2.0 4") {
			c.fwd = s.Data
		}
	}
	return c
}

// answer sends the callee's response to the relayed request req with
// extra header lines and returns what went upstream.
func (c *call) answer(req string, code int, extra string) string {
	c.e.t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		c.e.t.Fatalf("%v: %q", err, req)
	}
	tag := []byte("b" + c.callID)
	if m.ToTag() != nil {
		tag = nil
	}
	rr := ""
	for _, v := range values(req, "Record-Route") {
		rr += "Record-Route: " + v + "\r\n"
	}
	src := callee
	if strings.Contains(string(m.RequestURI()), caller) {
		src = caller
	}
	c.e.Take()
	c.e.Receive(src, string(parser.AppendResponseHeaders(nil, &m, code, nil, tag, []byte(rr+"Contact: <sip:x@"+src+">\r\n"+extra))))
	for _, s := range c.e.Take() {
		if strings.HasPrefix(s.Data, "SIP/2.0 2") {
			c.up = s.Data
			return s.Data
		}
	}
	c.e.t.Fatal("no 2xx relayed")
	return ""
}

// refresh sends a re-INVITE (or UPDATE) of the call from the caller (or
// the callee) with extra header lines, and answers it 200 with reply's;
// it returns what the requester got.
func (c *call) refresh(method string, fromCaller bool, cseq int, extra, reply string) string {
	c.e.t.Helper()
	route := values(c.fwd, "Record-Route")[0]
	from, to := "<sip:alice@example.com>;tag=a"+c.callID, "<sip:bob@example.com>;tag=b"+c.callID
	src, ruri := caller, "sip:x@"+callee
	if !fromCaller {
		from, to, src, ruri = to, from, callee, "sip:alice@"+caller
	}
	c.e.Take()
	c.e.Receive(src, method+" "+ruri+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+src+";branch=z9hG4bKr"+itoa(cseq)+c.callID+"\r\n"+
		"Max-Forwards: 70\r\nRoute: "+route+"\r\nFrom: "+from+"\r\nTo: "+to+"\r\n"+
		"Call-ID: "+c.callID+"\r\nCSeq: "+itoa(cseq)+" "+method+"\r\n"+extra+"Content-Length: 0\r\n\r\n")
	for _, s := range c.e.Take() {
		if strings.HasPrefix(s.Data, method+" ") {
			return c.answer(s.Data, 200, reply)
		}
	}
	c.e.t.Fatalf("%s not relayed", method)
	return ""
}

// byes advances the clock by d and returns the BYEs the proxy then sent.
func (e *env) byes(d time.Duration, callID string) []routetest.Sent {
	e.Take()
	e.clock.Advance(d)
	var out []routetest.Sent
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, s := range e.Take() {
			if strings.HasPrefix(s.Data, "BYE ") && value(s.Data, "Call-ID") == callID {
				out = append(out, s)
			}
		}
		if len(out) >= 2 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	return out
}

// endsAt checks that the call is up at d-1ms from now and ended, with a
// BYE each way, at d (BYEs of calls ended before, retransmitted, aside).
func (c *call) endsAt(d time.Duration) {
	e := c.e
	e.t.Helper()
	if b := e.byes(d-time.Millisecond, c.callID); len(b) != 0 {
		e.t.Fatalf("BYEs %v before %v", b, d)
	}
	b := e.byes(time.Millisecond, c.callID)
	if len(b) != 2 {
		e.t.Fatalf("at %v: %d BYEs, want one each way", d, len(b))
	}
}

func values(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func value(msg, name string) string {
	return strings.Join(values(msg, name), " | ")
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

func status(msg string) string {
	line, _, _ := strings.Cut(msg, "\r\n")
	return strings.TrimPrefix(line, "SIP/2.0 ")
}

// TestTooSmall: an INVITE whose Session-Expires is below min_se gets 422
// with Min-SE when its caller says Supported: timer (the larger of min_se
// and its own Min-SE), and makes no dialog; a caller that did not say it
// is never answered 422 (RFC 4028 §8.1): its INVITE is relayed with the
// interval raised to min_se, its parameters kept, and Min-SE raised or
// added. With reject_too_small off it is relayed as it is.
func TestTooSmall(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, tc := range []struct{ extra, status, minSE string }{
		{"Session-Expires: 60\r\nSupported: timer\r\n", "422 Session Interval Too Small", "90"},
		{"x: 60;refresher=uac\r\nk: 100rel, timer\r\n", "422 Session Interval Too Small", "90"},
		{"Session-Expires: 0\r\nSupported: timer\r\n", "422 Session Interval Too Small", "90"},
		{"Session-Expires: 60\r\nMin-SE: 120\r\nSupported: timer\r\n", "422 Session Interval Too Small", "120"},
	} {
		c := e.invite(tc.extra)
		if status(c.fwd) != tc.status || value(c.fwd, "Min-SE") != tc.minSE {
			t.Fatalf("%q: got %q with Min-SE %q", tc.extra, status(c.fwd), value(c.fwd, "Min-SE"))
		}
	}
	if n := e.d.List("", 0); len(n) != 0 {
		t.Fatalf("dialogs after 422s: %+v", n)
	}
	if e.m.tooSmall.Get() != 4 {
		t.Fatalf("422s counted %d", e.m.tooSmall.Get())
	}
	for _, tc := range []struct{ extra, se, minSE string }{
		{"Session-Expires: 60;refresher=uac\r\n", "90;refresher=uac", "90"},
		{"Session-Expires: 0\r\nMin-SE: 30\r\n", "90", "90"},
		{"Session-Expires: 60\r\nMin-SE: 120\r\n", "120", "120"},
		{"Session-Expires: 1800\r\nMin-SE: 30\r\nSupported: timer\r\n", "1800", "30"}, // above min_se: untouched
	} {
		c := e.invite(tc.extra)
		if !strings.HasPrefix(c.fwd, "INVITE ") || value(c.fwd, "Session-Expires") != tc.se || value(c.fwd, "Min-SE") != tc.minSE {
			t.Fatalf("%q relayed with Session-Expires %q, Min-SE %q:\n%s", tc.extra, value(c.fwd, "Session-Expires"), value(c.fwd, "Min-SE"), c.fwd)
		}
	}
	if e.m.raised.Get() != 3 {
		t.Fatalf("raised %d", e.m.raised.Get())
	}

	s := DefaultSettings()
	s.Enabled, s.RejectTooSmall = true, false
	e = newEnv(t, s, nil)
	c := e.invite("Session-Expires: 60\r\nSupported: timer\r\n")
	if value(c.fwd, "Session-Expires") != "60" || value(c.fwd, "Min-SE") != "" {
		t.Fatalf("reject_too_small off: relayed %q", c.fwd)
	}
	// Its 2xx is timed by min_se at least: 90 s + 32 s of grace.
	c.answer(c.fwd, 200, "Session-Expires: 60;refresher=uac\r\n")
	c.endsAt(122 * time.Second)
}

// TestMalformed: what a forged or broken Session-Expires or Min-SE of an
// initial INVITE gets: 400 with the header named, no dialog.
func TestMalformed(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, tc := range []struct{ extra, status string }{
		{"Session-Expires: abc\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: -5\r\n", "400 Bad Session-Expires"},
		{"Session-Expires:\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800, 90\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800\r\nSession-Expires: 90\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800\r\nx: 1800\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800;refresher=me\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800;=x\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800 junk\r\n", "400 Bad Session-Expires"},
		{"Session-Expires: 1800\r\nMin-SE: ninety\r\n", "400 Bad Min-SE"},
		{"Min-SE: 90\r\nMin-SE: 91\r\n", "400 Bad Min-SE"},
	} {
		c := e.invite(tc.extra)
		if status(c.fwd) != tc.status {
			t.Fatalf("%q: got %q", tc.extra, status(c.fwd))
		}
	}
	if len(e.d.List("", 0)) != 0 || e.m.badRequests.Get() != 11 {
		t.Fatalf("dialogs %d, counted %d", len(e.d.List("", 0)), e.m.badRequests.Get())
	}
	// Well formed, parameters and all, and a number past 2^32 taken as
	// 2^32-1 (RFC 3261's rule): relayed as they are.
	for _, se := range []string{"1800;refresher=UAS;foo", "1800 ; refresher = uac ; x=y", "99999999999999999999"} {
		c := e.invite("Session-Expires: " + se + "\r\n")
		if value(c.fwd, "Session-Expires") != se {
			t.Fatalf("%q relayed as %q", se, c.fwd)
		}
	}
}

// TestIntervalInserted: with sst.interval an INVITE without
// Session-Expires is relayed with one and with Min-SE: min_se (RFC 4028
// §8.1); interval 0 adds nothing and times nothing.
func TestIntervalInserted(t *testing.T) {
	s := DefaultSettings()
	s.Enabled, s.Interval = true, 1800
	e := newEnv(t, s, nil)
	c := e.invite("")
	if value(c.fwd, "Session-Expires") != "1800" || value(c.fwd, "Min-SE") != "90" {
		t.Fatalf("relayed %q", c.fwd)
	}
	c = e.invite("Min-SE: 2000\r\n")
	if value(c.fwd, "Session-Expires") != "2000" || value(c.fwd, "Min-SE") != "2000" {
		t.Fatalf("with the caller's Min-SE 2000: relayed %q", c.fwd)
	}
	if e.m.inserted.Get() != 2 {
		t.Fatalf("inserted %d", e.m.inserted.Get())
	}

	e = newEnv(t, nil, nil) // interval 0
	c = e.invite("")
	if value(c.fwd, "Session-Expires") != "" || value(c.fwd, "Min-SE") != "" {
		t.Fatalf("interval 0: relayed %q", c.fwd)
	}
	c.answer(c.fwd, 200, "")
	if e.m.sessions.Get() != 0 {
		t.Fatal("a call without session timer was timed")
	}
}

// TestSessionExpiry: a call whose 2xx says Session-Expires: 90 is ended
// with a BYE each way 90 s + grace after the answer when nobody
// refreshes; each refresh (a re-INVITE of the caller, an UPDATE of the
// callee) restarts it from its 2xx; a refresh answered without
// Session-Expires stops it (the dialog's own timeout again).
func TestSessionExpiry(t *testing.T) {
	ds := dialog.DefaultSettings()
	ds.DefaultTimeout = time.Hour
	e := newEnv(t, nil, ds)
	c := e.invite("Session-Expires: 90\r\nSupported: timer\r\n")
	e.clock.Advance(5 * time.Second) // ringing does not count
	c.answer(c.fwd, 200, "Session-Expires: 90;refresher=uac\r\nRequire: timer\r\n")
	e.clock.Advance(45 * time.Second)
	c.refresh("INVITE", true, 2, "Session-Expires: 90;refresher=uac\r\nSupported: timer\r\n", "Session-Expires: 90;refresher=uac\r\n")
	e.clock.Advance(45 * time.Second)
	c.refresh("UPDATE", false, 1, "Session-Expires: 120;refresher=uas\r\n", "Session-Expires: 120;refresher=uas\r\n")
	c.endsAt(152 * time.Second) // 120 + 32 from the UPDATE's 2xx
	if e.m.sessions.Get() != 1 || e.m.refreshes.Get() != 2 || e.m.expired.Get() != 1 {
		t.Fatalf("sessions %d, refreshes %d, expired %d", e.m.sessions.Get(), e.m.refreshes.Get(), e.m.expired.Get())
	}

	c = e.invite("Session-Expires: 90\r\n")
	c.answer(c.fwd, 200, "Session-Expires: 90;refresher=uas\r\n")
	c.refresh("INVITE", true, 2, "", "")
	if e.m.stopped.Get() != 1 {
		t.Fatal("a refresh without Session-Expires did not stop the timer")
	}
	c.endsAt(time.Hour)
}

// TestCalleeWithoutTimers: the callee answers without Session-Expires
// though the INVITE asked for one (it does not do session timers). A
// caller that said Supported: timer refreshes (RFC 4028 §8.2, §9): its
// 2xx gets Session-Expires with refresher=uac and Require: timer, and
// the call is timed by it. A caller that did not say it gets nothing
// added: nobody refreshes, and the call is not timed.
func TestCalleeWithoutTimers(t *testing.T) {
	s := DefaultSettings()
	s.Enabled, s.Interval = true, 600
	ds := dialog.DefaultSettings()
	ds.DefaultTimeout = time.Hour
	e := newEnv(t, s, ds)
	c := e.invite("Supported: timer\r\n") // the proxy asks for 600
	up := c.answer(c.fwd, 200, "")
	if value(up, "Session-Expires") != "600;refresher=uac" || value(up, "Require") != "timer" {
		t.Fatalf("2xx upstream:\n%s", up)
	}
	c.endsAt(632 * time.Second)

	c = e.invite("Session-Expires: 1800;refresher=uac\r\nSupported: timer\r\n")
	up = c.answer(c.fwd, 200, "")
	if value(up, "Session-Expires") != "1800;refresher=uac" {
		t.Fatalf("2xx upstream:\n%s", up)
	}
	// The caller's refresh, answered without either: the same.
	e.clock.Advance(10 * time.Minute)
	up = c.refresh("INVITE", true, 2, "Session-Expires: 1800\r\nSupported: timer\r\n", "")
	if value(up, "Session-Expires") != "1800;refresher=uac" || value(up, "Require") != "timer" {
		t.Fatalf("refresh's 2xx upstream:\n%s", up)
	}
	c.endsAt(1832 * time.Second)
	if e.m.uacRefresh.Get() != 3 {
		t.Fatalf("refresher=uac added %d times", e.m.uacRefresh.Get())
	}

	c = e.invite("") // the proxy asks for 600; the caller knows nothing of it
	up = c.answer(c.fwd, 200, "")
	if value(up, "Session-Expires") != "" || value(up, "Require") != "" {
		t.Fatalf("2xx upstream to a caller without timers:\n%s", up)
	}
	c.endsAt(time.Hour)
}

// TestForgedAnswers: what the Session-Expires of a 2xx can do: 0 or 1
// second times the call by min_se (90 s + grace), never less; a number
// past 2^32 or a week is cut at the dialog's own timeout, and so is a
// refresh asking for more (a party cannot make a call outlive it); a 2xx
// with two Session-Expires changes nothing (counted); the 2xx of an
// in-dialog request that is not the dialog's (another To tag) changes
// nothing.
func TestForgedAnswers(t *testing.T) {
	ds := dialog.DefaultSettings()
	ds.DefaultTimeout = 10 * time.Minute
	e := newEnv(t, nil, ds)
	for _, se := range []string{"0", "1;refresher=uac"} {
		c := e.invite("Session-Expires: 90\r\n")
		c.answer(c.fwd, 200, "Session-Expires: "+se+"\r\n")
		c.endsAt(122 * time.Second)
	}
	c := e.invite("Session-Expires: 90\r\n")
	c.answer(c.fwd, 200, "Session-Expires: 99999999999999999999\r\n")
	e.clock.Advance(5 * time.Minute)
	c.refresh("INVITE", false, 1, "Session-Expires: 604800\r\n", "Session-Expires: 604800\r\n")
	c.endsAt(5 * time.Minute) // 10 min after the answer

	c = e.invite("Session-Expires: 90\r\n")
	c.answer(c.fwd, 200, "Session-Expires: 90\r\nSession-Expires: 604800\r\n")
	if e.m.badAnswers.Get() != 1 || e.m.sessions.Get() != 3 {
		t.Fatalf("malformed 2xx: counted %d, sessions %d", e.m.badAnswers.Get(), e.m.sessions.Get())
	}
	c.endsAt(10 * time.Minute)

	c = e.invite("Session-Expires: 90\r\n")
	c.answer(c.fwd, 200, "Session-Expires: 90\r\n")
	e.clock.Advance(60 * time.Second)
	// The callee's re-INVITE with another To tag (its own changed):
	// MatchDialog does not match, the 2xx times nothing.
	route := values(c.fwd, "Record-Route")[0]
	e.Take()
	e.Receive(callee, "INVITE sip:alice@"+caller+" SIP/2.0\r\nVia: SIP/2.0/UDP "+callee+";branch=z9hG4bKforged\r\n"+
		"Max-Forwards: 70\r\nRoute: "+route+"\r\nFrom: <sip:bob@example.com>;tag=someone-else\r\n"+
		"To: <sip:alice@example.com>;tag=a"+c.callID+"\r\nCall-ID: "+c.callID+"\r\nCSeq: 5 INVITE\r\n"+
		"Session-Expires: 3600\r\nContent-Length: 0\r\n\r\n")
	for _, s := range e.Take() {
		if strings.HasPrefix(s.Data, "INVITE ") {
			c.answer(s.Data, 200, "Session-Expires: 3600\r\n")
		}
	}
	c.endsAt(62 * time.Second) // 90 + 32 after the answer
}

// TestDisabled: with sst.enabled false (the default) nothing is checked,
// added or timed.
func TestDisabled(t *testing.T) {
	e := newEnv(t, DefaultSettings(), nil)
	c := e.invite("Session-Expires: 30\r\nSupported: timer\r\n")
	if !strings.HasPrefix(c.fwd, "INVITE ") || value(c.fwd, "Session-Expires") != "30" {
		t.Fatalf("disabled: %q", c.fwd)
	}
	c.answer(c.fwd, 200, "Session-Expires: 30\r\n")
	if e.m.sessions.Get() != 0 || (*SST)(nil).Enabled() {
		t.Fatal("disabled module timed a call")
	}
}

// TestSettingsChecked: the keys' bounds, each error naming its key.
func TestSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		mod func(*Settings)
		key string
	}{
		{func(s *Settings) { s.MinSE = 89 }, "min_se"},
		{func(s *Settings) { s.MinSE = 0 }, "min_se"},
		{func(s *Settings) { s.MinSE = 604801 }, "min_se"},
		{func(s *Settings) { s.Interval = 60 }, "interval"},
		{func(s *Settings) { s.MinSE, s.Interval = 1800, 900 }, "interval"},
		{func(s *Settings) { s.Interval = 604801 }, "interval"},
		{func(s *Settings) { s.Grace = -time.Second }, "grace"},
		{func(s *Settings) { s.Grace = 11 * time.Minute }, "grace"},
	} {
		s := DefaultSettings()
		tc.mod(s)
		err := checkSettings(s)
		if ke, ok := err.(*modules.KeyError); !ok || ke.Key != tc.key {
			t.Fatalf("%+v: %v, want an error naming %s", s, err, tc.key)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
}

// TestSlotsApart: SlotSST is no other module's per-transaction value.
func TestSlotsApart(t *testing.T) {
	if SlotSST < 0 || SlotSST >= txn.NumValues {
		t.Fatalf("SlotSST %d", SlotSST)
	}
	for _, other := range []int{dialog.SlotDialog, registrar.SlotAOR, registrar.SlotNextQ, dispatcher.SlotSet, dispatcher.SlotDest, drouting.SlotCall} {
		if SlotSST == other {
			t.Fatalf("SlotSST %d is another module's", SlotSST)
		}
	}
}

// TestReloadKeepsEnabled: a reload that turns enabled off and raises
// min_se applies min_se and keeps the session timers on, as the route set
// was built with them: CheckReload names enabled as needing a restart
// rather than refusing the reload, and the settings handed over say
// enabled. Before, min_se stayed at its old value until a restart.
func TestReloadKeepsEnabled(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := DefaultSettings()
	s.Enabled, s.MinSE = false, 1800
	var ke *modules.KeyError
	if err := e.m.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "enabled" {
		t.Fatalf("enabled changed: CheckReload %v, want enabled named as needing a restart", err)
	}
	if err := e.m.Reload(s); err != nil {
		t.Fatal(err)
	}
	if !s.Enabled || !e.m.Enabled() || e.m.cfg.Load().minSE != 1800 {
		t.Errorf("after the reload: enabled %v (settings %v), min_se %d; want enabled kept and min_se 1800", e.m.Enabled(), s.Enabled, e.m.cfg.Load().minSE)
	}
}
