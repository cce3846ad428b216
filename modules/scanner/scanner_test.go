package scanner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
)

// build makes the module as the server does, with settings s (nil: the
// defaults), and a harness whose route is `if Blocked(c) return; 200`.
func build(t *testing.T, s *Settings) (*Scanner, *routetest.Harness, *metrics.Set) {
	t.Helper()
	clock := shards.NewManualClock(1_700_000_000_000)
	set := metrics.NewSet()
	cfg := map[string]any{}
	if s != nil {
		cfg["scanner"] = s
	}
	ms, err := modules.Build(modules.Services{Clock: clock, Metrics: set, Logger: slog.New(slog.DiscardHandler)}, cfg, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ms.Stop)
	sc := ms.Get("scanner").(*Scanner)
	h := routetest.New(t, clock)
	h.Route = func(c *routing.Ctx) {
		if sc.Blocked(c) {
			return
		}
		c.ReplyStateless(200, "OK", nil)
	}
	return sc, h, set
}

func settings(mod func(s *Settings)) *Settings {
	s := defaults().(*Settings)
	if mod != nil {
		mod(s)
	}
	return s
}

func withUA(method, ua string) string {
	return routetest.Request(method, "sip:bob@example.com", "User-Agent: "+ua+"\r\n")
}

func TestBlockedDropsSilentlyAndCounts(t *testing.T) {
	sc, h, set := build(t, nil)
	h.Take()
	h.Receive("127.0.0.3:5060", withUA("OPTIONS", "friendly-scanner"))
	h.Receive("127.0.0.3:5060", withUA("INVITE", "sipcli/v1.8"))
	h.Receive("127.0.0.4:5070", withUA("REGISTER", "Friendly-Scanner"))
	if sent := h.Take(); len(sent) != 0 {
		t.Fatalf("blocked requests were answered: %q", sent)
	}
	if got := h.Answer("127.0.0.2:5060", withUA("OPTIONS", "Linphonec/5.1.65")); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("phone got %q", got)
	}
	counts := map[string]uint64{}
	for _, r := range sc.Rules() {
		counts[r.Rule] = r.Blocked
	}
	if counts["friendly-scanner"] != 2 || counts["^sipcli/"] != 1 {
		t.Errorf("counts %v", counts)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{
		`switchboard_scanner_blocked_total{pattern="friendly-scanner"} 2`,
		`switchboard_scanner_blocked_total{pattern="^sipcli/"} 1`,
		`switchboard_scanner_blocked_total{fingerprint="sipvicious-tag"} 0`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, buf.String())
		}
	}
	rec := sc.Recent(0)
	if len(rec) != 3 {
		t.Fatalf("recent: %+v", rec)
	}
	if r := rec[len(rec)-1]; r.Source != "127.0.0.3:5060" || r.Method != "OPTIONS" || r.Rule != "friendly-scanner" || r.UserAgent != "friendly-scanner" || r.Proto != "UDP" {
		t.Errorf("oldest block: %+v", r)
	}
}

// TestBlockedSIPVicious runs the captured SIPVicious requests through the
// route: none is answered, the compact svmap (no User-Agent) included.
func TestBlockedSIPVicious(t *testing.T) {
	sc, h, _ := build(t, nil)
	for name, msg := range readMessages(t, "testdata/sipvicious-0.3.3.txt") {
		if got := h.Answer("127.0.0.3:5060", msg); got != "" {
			t.Errorf("%s answered %q", name, got)
		}
	}
	counts := map[string]uint64{}
	for _, r := range sc.Rules() {
		counts[r.Rule] = r.Blocked
	}
	// svmap -c has no User-Agent: the fingerprint caught it.
	if counts["friendly-scanner"] != 5 || counts["sipvicious-tag"] != 1 {
		t.Errorf("counts %v", counts)
	}
	for name, msg := range readMessages(t, "testdata/phones.txt") {
		if got := h.Answer("127.0.0.2:5060", msg); !strings.HasPrefix(got, "SIP/2.0 200 ") {
			t.Errorf("%s got %q", name, got)
		}
	}
}

func TestRejectAction(t *testing.T) {
	_, h, _ := build(t, settings(func(s *Settings) { s.Action = ActionReject }))
	if got := h.Answer("127.0.0.3:5060", withUA("OPTIONS", "friendly-scanner")); !strings.HasPrefix(got, "SIP/2.0 403 ") {
		t.Fatalf("got %q", got)
	}
}

func TestNoRules(t *testing.T) {
	_, h, _ := build(t, settings(func(s *Settings) { s.Patterns, s.Fingerprints = nil, nil }))
	for name, msg := range readMessages(t, "testdata/sipvicious-0.3.3.txt") {
		if got := h.Answer("127.0.0.3:5060", msg); !strings.HasPrefix(got, "SIP/2.0 200 ") {
			t.Errorf("%s got %q", name, got)
		}
	}
}

func TestReload(t *testing.T) {
	sc, h, _ := build(t, nil)
	h.Answer("127.0.0.3:5060", withUA("OPTIONS", "friendly-scanner"))
	if got := h.Answer("127.0.0.3:5060", withUA("OPTIONS", "EvilDialer 2.0")); got == "" {
		t.Fatal("EvilDialer blocked before the reload")
	}
	if err := sc.Reload(settings(func(s *Settings) { s.Patterns = []string{"friendly-scanner", "^evildialer"} })); err != nil {
		t.Fatal(err)
	}
	if got := h.Answer("127.0.0.3:5060", withUA("OPTIONS", "EvilDialer 2.0")); got != "" {
		t.Fatalf("EvilDialer answered %q after the reload", got)
	}
	if got := h.Answer("127.0.0.3:5060", withUA("OPTIONS", "sipcli/v1.8")); got == "" {
		t.Fatal("sipcli still blocked: its pattern was removed")
	}
	h.Answer("127.0.0.3:5060", withUA("OPTIONS", "friendly-scanner"))
	rules := sc.Rules()
	if len(rules) != 4 || rules[0].Rule != "friendly-scanner" || rules[0].Blocked != 2 || rules[1].Blocked != 1 {
		t.Errorf("rules after reload: %+v", rules)
	}
	if len(sc.Recent(0)) != 3 {
		t.Errorf("the recent list was lost: %+v", sc.Recent(0))
	}
	// A bad reload keeps the rules in force.
	err := sc.Reload(settings(func(s *Settings) { s.Patterns = []string{"re:("} }))
	var ke *modules.KeyError
	if !errors.As(err, &ke) || ke.Key != "patterns[0]" {
		t.Fatalf("bad reload: %v", err)
	}
	if got := h.Answer("127.0.0.3:5060", withUA("OPTIONS", "EvilDialer 2.0")); got != "" {
		t.Fatal("a failed reload changed the rules")
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		mod func(s *Settings)
		key string
	}{
		{func(s *Settings) { s.Patterns = []string{"ok", ""} }, "patterns[1]"},
		{func(s *Settings) { s.MaxPatterns = 2 }, "patterns"},
		{func(s *Settings) { s.MaxPatterns = 0 }, "max_patterns"},
		{func(s *Settings) { s.Fingerprints = []string{"sipvicious-tag", "nmap"} }, "fingerprints[1]"},
		{func(s *Settings) { s.Action = "ban" }, "action"},
		{func(s *Settings) { s.Recent = 0 }, "recent"},
	} {
		err := check(settings(tc.mod))
		var ke *modules.KeyError
		if !errors.As(err, &ke) || ke.Key != tc.key {
			t.Errorf("want an error on %s, got %v", tc.key, err)
		}
	}
	if err := check(settings(nil)); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestRecentIsBounded(t *testing.T) {
	sc, h, _ := build(t, settings(func(s *Settings) { s.Recent = 10 }))
	for i := 0; i < 100; i++ {
		h.Clock.Advance(time.Millisecond)
		h.Receive("127.0.0."+string(rune('1'+i%8))+":5060", withUA("OPTIONS", "friendly-scanner/"+strings.Repeat("x", i)))
	}
	rec := sc.Recent(0)
	if len(rec) != 10 {
		t.Fatalf("%d kept", len(rec))
	}
	for i := 1; i < len(rec); i++ {
		if rec[i].At.After(rec[i-1].At) {
			t.Fatal("not newest first")
		}
	}
	if len(rec[0].UserAgent) != uaKept {
		t.Errorf("User-Agent kept: %d bytes", len(rec[0].UserAgent))
	}
	if n := len(sc.Recent(3)); n != 3 {
		t.Errorf("limit 3: %d", n)
	}
}

// countingHandler counts the log lines.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h countingHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h countingHandler) WithGroup(string) slog.Handler             { return h }

// TestBlocksLoggedAtFewLinesASecond: a flood of blocked requests logs
// logPerSecond lines a second, and again the next second.
func TestBlocksLoggedAtFewLinesASecond(t *testing.T) {
	var lines atomic.Int64
	clock := shards.NewManualClock(1_700_000_000_000)
	ms, err := modules.Build(modules.Services{Clock: clock, Logger: slog.New(countingHandler{&lines})}, nil, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	sc := ms.Get("scanner").(*Scanner)
	h := routetest.New(t, clock)
	h.Route = func(c *routing.Ctx) { sc.Blocked(c) }
	for i := 0; i < 200; i++ {
		h.Receive("127.0.0.3:5060", withUA("OPTIONS", "friendly-scanner"))
	}
	if n := lines.Load(); n != logPerSecond {
		t.Fatalf("%d lines for 200 blocks in one second", n)
	}
	clock.Advance(time.Second)
	for i := 0; i < 200; i++ {
		h.Receive("127.0.0.3:5060", withUA("OPTIONS", "friendly-scanner"))
	}
	if n := lines.Load(); n != 2*logPerSecond {
		t.Fatalf("%d lines after two seconds", n)
	}
	if n := sc.Rules()[0].Blocked; n != 400 {
		t.Fatalf("%d counted", n)
	}
}

func TestBlockedAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	sc, h, _ := build(t, nil)
	h.Keep = false
	for _, ua := range []string{"friendly-scanner", "Linphonec/5.1.65 (belle-sip/5.1.55)"} {
		h.InRoute(t, "127.0.0.3:5060", withUA("OPTIONS", ua), func(c *routing.Ctx) {
			// The first call logs (one line a second at most); the
			// clock stands still, so the runs measured do not.
			sc.Blocked(c)
			for i := 0; i < logPerSecond; i++ {
				sc.Blocked(c)
			}
			if n := testing.AllocsPerRun(1000, func() { sc.Blocked(c) }); n != 0 {
				t.Errorf("Blocked(%q) allocated %.1f times", ua, n)
			}
		})
	}
}

// BenchmarkBlocked is the whole route function on a real routing.Ctx: a
// phone's request (no match: every pattern and fingerprint tried) and a
// scanner's (matched, counted, recorded and dropped).
func BenchmarkBlocked(b *testing.B) {
	for _, tc := range []struct{ name, ua string }{{"phone", "Linphonec/5.1.65 (belle-sip/5.1.55)"}, {"scanner", "friendly-scanner"}} {
		b.Run(tc.name, func(b *testing.B) {
			clock := shards.NewManualClock(1_700_000_000_000)
			ms, err := modules.Build(modules.Services{Clock: clock, Logger: slog.New(slog.DiscardHandler)}, nil, "scanner")
			if err != nil {
				b.Fatal(err)
			}
			defer ms.Stop()
			sc := ms.Get("scanner").(*Scanner)
			h := routetest.New(b, clock)
			h.Keep = false
			h.InRoute(b, "127.0.0.3:5060", withUA("OPTIONS", tc.ua), func(c *routing.Ctx) {
				for i := 0; i <= logPerSecond; i++ {
					sc.Blocked(c)
				}
				b.ReportAllocs()
				for b.Loop() {
					sc.Blocked(c)
				}
			})
		})
	}
}

// TestBlockRaisesEventAndLogsCallFields: a block is raised as
// E_SCANNER_BLOCKED, and its log line carries call_id, src and route.
func TestBlockRaisesEventAndLogsCallFields(t *testing.T) {
	var out bytes.Buffer
	clock := shards.NewManualClock(1_700_000_000_000)
	ev := modules.NewEvents(clock, nil)
	sub := ev.Subscribe([]string{modules.EventScanner}, 4)
	ms, err := modules.Build(modules.Services{Clock: clock, Events: ev, Logger: slog.New(slog.NewTextHandler(&out, nil))}, nil, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	sc := ms.Get("scanner").(*Scanner)
	h := routetest.New(t, clock)
	h.Route = func(c *routing.Ctx) { sc.Blocked(c) }
	msg := withUA("OPTIONS", "friendly-scanner")
	h.Receive("127.0.0.3:5060", msg)
	callID := msg[strings.Index(msg, "Call-ID: ")+9:]
	callID = callID[:strings.Index(callID, "\r\n")]
	if want := "call_id=" + callID + " src=127.0.0.3:5060 route=request"; !strings.Contains(out.String(), want) {
		t.Errorf("no %q in %s", want, out.String())
	}
	select {
	case e := <-sub.C():
		if !strings.Contains(string(e.JSON), `"src":"127.0.0.3:5060"`) || !strings.Contains(string(e.JSON), `"user_agent":"friendly-scanner"`) {
			t.Errorf("event %s", e.JSON)
		}
	default:
		t.Error("no E_SCANNER_BLOCKED")
	}
}
