package ratelimit

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
)

// start is a whole second, so windows of 1s and 10s begin on it.
const start = 1_700_000_000_000

type fixture struct {
	rl  *RateLimit
	h   *routetest.Harness
	set *metrics.Set
}

// build makes the module as the server does, with the pipes given (and
// nshards shards per keyed table), and a harness whose route is
// `if Limited(c) return; 200`.
func build(t testing.TB, nshards int, pipes ...PipeSettings) *fixture {
	t.Helper()
	s := defaults().(*Settings)
	s.Pipes = pipes
	return buildWith(t, nshards, s)
}

func buildWith(t testing.TB, nshards int, s *Settings) *fixture {
	t.Helper()
	clock := shards.NewManualClock(start)
	set := metrics.NewSet()
	ms, err := modules.Build(modules.Services{Clock: clock, Metrics: set, Shards: nshards, Logger: slog.New(slog.DiscardHandler)},
		map[string]any{"ratelimit": s}, "ratelimit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ms.Stop)
	f := &fixture{rl: ms.Get("ratelimit").(*RateLimit), h: routetest.New(t, clock), set: set}
	f.h.Route = func(c *routing.Ctx) {
		if f.rl.Limited(c) {
			return
		}
		c.ReplyStateless(200, "OK", nil)
	}
	return f
}

func invite() string { return routetest.Request("INVITE", "sip:bob@example.com", "") }

// status sends msg from src and returns the final status code, 0 for none.
func (f *fixture) status(t testing.TB, src, msg string) int {
	t.Helper()
	got := f.h.Answer(src, msg)
	if got == "" {
		return 0
	}
	code, _ := strconv.Atoi(got[8:11])
	return code
}

// burst sends n INVITEs from src and returns how many got 200 and 503.
func (f *fixture) burst(t testing.TB, src string, n int) (ok, limited int) {
	t.Helper()
	for i := 0; i < n; i++ {
		switch c := f.status(t, src, invite()); c {
		case 200:
			ok++
		case 503:
			limited++
		default:
			t.Fatalf("status %d", c)
		}
	}
	return
}

func TestTaildropWindowBoundaries(t *testing.T) {
	f := build(t, 0, PipeSettings{Name: "calls", Limit: 3, Interval: time.Second, Methods: []string{"INVITE"}})
	if ok, lim := f.burst(t, "127.0.0.3:5060", 5); ok != 3 || lim != 2 {
		t.Fatalf("first window: %d passed, %d refused", ok, lim)
	}
	f.h.Clock.Advance(999 * time.Millisecond) // the last millisecond of the window
	if c := f.status(t, "127.0.0.3:5060", invite()); c != 503 {
		t.Fatalf("at 999 ms: %d", c)
	}
	f.h.Clock.Advance(time.Millisecond) // the next window
	if ok, lim := f.burst(t, "127.0.0.3:5060", 4); ok != 3 || lim != 1 {
		t.Fatalf("second window: %d passed, %d refused", ok, lim)
	}
	// Other methods do not go through the pipe.
	if got := f.h.Answer("127.0.0.3:5060", routetest.Request("OPTIONS", "sip:bob@example.com", "")); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("OPTIONS: %q", got)
	}
	// The refusal: 503 with Retry-After, stateless (no 100 Trying).
	f.h.Take()
	f.h.Receive("127.0.0.3:5060", invite())
	sent := f.h.Take()
	if len(sent) != 1 || !strings.HasPrefix(sent[0].Data, "SIP/2.0 503 Rate Limit Exceeded\r\n") || !strings.Contains(sent[0].Data, "\r\nRetry-After: 1\r\n") {
		t.Fatalf("sent %q", sent)
	}
}

func TestTaildropPerSource(t *testing.T) {
	f := build(t, 0, PipeSettings{Name: "calls", Limit: 2, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}})
	if ok, _ := f.burst(t, "127.0.0.3:5060", 5); ok != 2 {
		t.Fatalf("127.0.0.3: %d passed", ok)
	}
	// Another port of the same address shares its count; another
	// address has its own.
	if ok, _ := f.burst(t, "127.0.0.3:5070", 2); ok != 0 {
		t.Fatalf("127.0.0.3, other port: %d passed", ok)
	}
	if ok, _ := f.burst(t, "127.0.0.2:5060", 3); ok != 2 {
		t.Fatalf("127.0.0.2: %d passed", ok)
	}
	// A 10 s window: 9.999 s later still refused, at 10 s served.
	f.h.Clock.Advance(9999 * time.Millisecond)
	if ok, _ := f.burst(t, "127.0.0.3:5060", 1); ok != 0 {
		t.Fatal("served before the window ended")
	}
	f.h.Clock.Advance(time.Millisecond)
	if ok, _ := f.burst(t, "127.0.0.3:5060", 3); ok != 2 {
		t.Fatalf("next window: %d passed", ok)
	}
	l, _ := f.rl.List("calls")
	if len(l) != 1 || l[0].Keys != 2 || l[0].Passed != 6 || l[0].Dropped != 8 {
		t.Fatalf("list: %+v", l)
	}
}

func TestKeys(t *testing.T) {
	f := build(t, 0,
		PipeSettings{Name: "user", Limit: 1, Key: "user", Methods: []string{"MESSAGE"}},
		PipeSettings{Name: "domain", Limit: 3, Key: "domain", Methods: []string{"MESSAGE"}},
		PipeSettings{Name: "method", Limit: 1, Key: "method", Methods: []string{"OPTIONS", "SUBSCRIBE"}},
	)
	msg := func(from string) string {
		return strings.Replace(routetest.Request("MESSAGE", "sip:bob@example.com", ""), "<sip:alice@example.com>", "<sip:"+from+">", 1)
	}
	for i, tc := range []struct {
		from string
		want int
	}{
		{"alice@example.com", 200}, {"alice@example.com", 503}, // user
		{"bob@EXAMPLE.com", 200},   // another user, same domain (case folded)
		{"carol@Example.Com", 200}, // the domain's third
		{"dave@example.com", 503},  // the domain's fourth
		{"dave@example.org", 200},  // another domain
	} {
		if got := f.status(t, "127.0.0.3:5060", msg(tc.from)); got != tc.want {
			t.Errorf("%d %s: %d, want %d", i, tc.from, got, tc.want)
		}
	}
	for _, m := range []string{"OPTIONS", "SUBSCRIBE"} {
		if got := f.status(t, "127.0.0.3:5060", routetest.Request(m, "sip:bob@example.com", "Event: presence\r\n")); got != 200 {
			t.Errorf("first %s: %d", m, got)
		}
		if got := f.status(t, "127.0.0.3:5060", routetest.Request(m, "sip:bob@example.com", "Event: presence\r\n")); got != 503 {
			t.Errorf("second %s: %d", m, got)
		}
	}
	l, _ := f.rl.List("user")
	if len(l) != 1 || len(l[0].Limited) != 1 || l[0].Limited[0].Key != "alice@example.com" || l[0].Limited[0].Current != 2 {
		t.Errorf("user pipe: %+v", l)
	}
	l, _ = f.rl.List("method")
	if len(l[0].Limited) != 2 {
		t.Errorf("method pipe: %+v", l)
	}
}

// TestIPv6ByPrefix: the addresses of one /64 share a count.
func TestIPv6ByPrefix(t *testing.T) {
	f := build(t, 0, PipeSettings{Name: "calls", Limit: 2, Key: "source", Methods: []string{"INVITE"}})
	for i, src := range []string{"[2001:db8:1:2::1]:5060", "[2001:db8:1:2::ffff]:5060", "[2001:db8:1:2:aaaa::1]:5060", "[2001:db8:1:3::1]:5060"} {
		want := 200
		if i == 2 {
			want = 503
		}
		if got := f.status(t, src, invite()); got != want {
			t.Errorf("%s: %d, want %d", src, got, want)
		}
	}
	l, _ := f.rl.List("calls")
	if len(l[0].Limited) != 1 || l[0].Limited[0].Key != "2001:db8:1:2::/64" {
		t.Errorf("limited: %+v", l[0].Limited)
	}
}

// TestREDDropProbability: after a window that offered prev > limit
// requests, RED passes limit out of every prev, evenly spaced; below the
// limit it passes everything.
func TestREDDropProbability(t *testing.T) {
	for _, tc := range []struct{ limit, prev uint64 }{{100, 400}, {100, 150}, {7, 1000}, {100, 101}, {100, 100}, {100, 50}} {
		passed, gap, maxGap := 0, 0, 0
		for cur := uint32(1); uint64(cur) <= tc.prev; cur++ {
			if pass(red, tc.limit, cur, uint32(tc.prev)) {
				passed++
				maxGap, gap = max(maxGap, gap), 0
			} else {
				gap++
			}
		}
		want := min(tc.limit, tc.prev)
		if uint64(passed) != want {
			t.Errorf("limit %d, last window %d: %d of %d passed, want %d", tc.limit, tc.prev, passed, tc.prev, want)
		}
		// Evenly: never more than ceil(prev/limit)-1 refused in a row.
		if tc.prev > tc.limit && uint64(maxGap) > (tc.prev+tc.limit-1)/tc.limit-1 {
			t.Errorf("limit %d, last window %d: %d refused in a row", tc.limit, tc.prev, maxGap)
		}
	}
}

// TestREDThroughPipe: the first window of a burst passes (RED measures
// the load one window late), the next passes the limit's share of it.
func TestREDThroughPipe(t *testing.T) {
	f := build(t, 0, PipeSettings{Name: "calls", Algorithm: "red", Limit: 10, Methods: []string{"INVITE"}})
	if ok, _ := f.burst(t, "127.0.0.3:5060", 40); ok != 40 {
		t.Fatalf("first window: %d passed", ok)
	}
	f.h.Clock.Advance(time.Second)
	ok, lim := f.burst(t, "127.0.0.3:5060", 40)
	if ok != 10 || lim != 30 {
		t.Fatalf("second window: %d passed, %d refused", ok, lim)
	}
	f.h.Clock.Advance(time.Second)
	// The window before offered 40 again: a quieter one passes a
	// quarter of what it offers until the load is measured again.
	if ok, _ := f.burst(t, "127.0.0.3:5060", 8); ok != 2 {
		t.Fatalf("third window: %d passed", ok)
	}
	f.h.Clock.Advance(time.Second)
	if ok, _ := f.burst(t, "127.0.0.3:5060", 10); ok != 10 {
		t.Fatalf("fourth window: %d passed", ok)
	}
	// Two windows idle: nothing carried over.
	f.h.Clock.Advance(2 * time.Second)
	if ok, _ := f.burst(t, "127.0.0.3:5060", 30); ok != 30 {
		t.Fatalf("after a pause: %d passed", ok)
	}
}

// TestKeyEvictionUnderManyKeys: 20,000 sources (a spoofed flood) never
// grow a table of 64 keys; each source is still limited while it is
// held; and a key over its limit outlives the stale keys around it.
func TestKeyEvictionUnderManyKeys(t *testing.T) {
	s := defaults().(*Settings)
	s.MaxKeys = 64
	s.Pipes = []PipeSettings{{Name: "calls", Limit: 2, Key: "source", Methods: []string{"INVITE"}}}
	f := buildWith(t, 1, s)
	p := f.rl.Pipe("calls")
	tbl := p.st.Load().table
	if len(tbl.shards) != 1 || len(tbl.shards[0].entries) != 64 || len(tbl.shards[0].index) != 128 {
		t.Fatalf("table: %d shards of %d entries", len(tbl.shards), len(tbl.shards[0].entries))
	}
	// 64 keys in window 0.
	for i := 0; i < 64; i++ {
		f.status(t, "10.0."+strconv.Itoa(i)+".1:5060", invite())
	}
	// Window 2: one source over its limit, then 40 new sources.
	f.h.Clock.Advance(2 * time.Second)
	if ok, _ := f.burst(t, "127.0.0.3:5060", 3); ok != 2 {
		t.Fatalf("%d passed", ok)
	}
	for i := 0; i < 40; i++ {
		f.status(t, "10.1."+strconv.Itoa(i)+".1:5060", invite())
	}
	if c := f.status(t, "127.0.0.3:5060", invite()); c != 503 {
		t.Fatalf("the limited source was evicted before stale keys: %d", c)
	}
	// A flood of fresh sources: the table stays at 64.
	for i := 0; i < 20000; i++ {
		f.status(t, "10."+strconv.Itoa(2+i/60000)+"."+strconv.Itoa(i/250%240)+"."+strconv.Itoa(i%250+1)+":5060", invite())
	}
	_, _, keys, evicted, _ := tbl.totals(0)
	if keys != 64 || evicted != 64+1+40+20000-64 {
		t.Fatalf("%d keys held, %d evicted", keys, evicted)
	}
	if len(tbl.shards[0].entries) != 64 || len(tbl.shards[0].index) != 128 {
		t.Fatal("the table grew")
	}
	// The index is consistent: every entry is found, nothing else is.
	sh := &tbl.shards[0]
	for k := 0; k < sh.n; k++ {
		if slot, ok := sh.find(sh.entries[k].hash); !ok || sh.index[slot] != int32(k+1) {
			t.Fatalf("entry %d not found through the index", k)
		}
	}
	used := 0
	for _, e := range sh.index {
		if e != 0 {
			used++
		}
	}
	if used != 64 {
		t.Fatalf("%d index slots used", used)
	}
}

func TestFeedback(t *testing.T) {
	// Without a FEEDBACK pipe the controller has nothing to do, and says
	// so (it then looks once a second instead of ten times).
	if build(t, 0, PipeSettings{Name: "calls", Algorithm: "red", Limit: 10, Methods: []string{"INVITE"}}).rl.updateFeedback() {
		t.Fatal("updateFeedback reports a FEEDBACK pipe where there is none")
	}
	f := build(t, 0, PipeSettings{Name: "cpu", Algorithm: "FEEDBACK", Limit: 50, Methods: []string{"INVITE"}})
	var busy, total uint64
	load := 0.0
	f.rl.cpu = func() (uint64, uint64, error) {
		busy += uint64(load * 1000)
		total += 1000
		return busy, total, nil
	}
	step := func(l float64) int32 {
		load = l
		f.h.Clock.Advance(time.Second)
		if !f.rl.updateFeedback() {
			t.Fatal("updateFeedback does not report the FEEDBACK pipe")
		}
		return f.rl.Pipe("cpu").st.Load().drop.Load()
	}
	step(0.9) // the first reading only sets the baseline
	var rates []int32
	for i := 0; i < 6; i++ {
		rates = append(rates, step(0.9))
	}
	// Integral gain 25 per interval on an error of 0.4: +10 % each time.
	if rates[0] != 10 || rates[1] != 20 || rates[5] != 60 {
		t.Fatalf("drop rates at 90 %% load: %v", rates)
	}
	// Any 100 consecutive requests see exactly the drop rate.
	if ok, lim := f.burst(t, "127.0.0.3:5060", 100); lim != 60 || ok != 40 {
		t.Fatalf("%d passed, %d refused at 60 %%", ok, lim)
	}
	for i := 0; i < 10; i++ {
		step(1.0)
	}
	if r := step(1.0); r != 100 {
		t.Fatalf("full load: %d %%", r)
	}
	// Load down: the rate falls at once (the integral was held at 100 %).
	if r := step(0.3); r != 95 {
		t.Fatalf("after one quiet interval: %d %%", r)
	}
	for i := 0; i < 30; i++ {
		step(0.3)
	}
	if r := step(0.3); r != 0 {
		t.Fatalf("quiet: %d %%", r)
	}
	if ok, _ := f.burst(t, "127.0.0.3:5060", 50); ok != 50 {
		t.Fatalf("%d of 50 passed at 0 %%", ok)
	}
	// Long quiet does not bank credit: a burst is throttled at once.
	for i := 0; i < 100; i++ {
		step(0.1)
	}
	if r := step(0.9); r != 10 {
		t.Fatalf("after a long quiet spell, one busy interval: %d %%", r)
	}
}

func TestParseProcStat(t *testing.T) {
	busy, total, err := parseProcStat([]byte("cpu  100 5 50 800 20 3 2 1 0 0\ncpu0 1 2 3 4\n"))
	if err != nil || busy != 100+5+50+3+2+1 || total != 981 {
		t.Fatalf("busy %d total %d %v", busy, total, err)
	}
	if _, _, err := parseProcStat([]byte("intr 1 2\n")); err == nil {
		t.Fatal("no cpu line accepted")
	}
	if _, _, err := readProcStat(); err != nil {
		t.Skip("no /proc/stat here:", err)
	}
}

func TestSetChangesTheLimitAtOnce(t *testing.T) {
	f := build(t, 0, PipeSettings{Name: "calls", Limit: 3, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}})
	if ok, _ := f.burst(t, "127.0.0.3:5060", 5); ok != 3 {
		t.Fatalf("%d passed", ok)
	}
	five := 5
	in, err := f.rl.Set(SetArgs{Pipe: "calls", Limit: &five})
	if err != nil || in.Limit != 5 || in.Interval != "10s" || in.Key != "source" {
		t.Fatalf("set: %+v %v", in, err)
	}
	// The same window: the count stays (5 so far), the limit is higher.
	if ok, _ := f.burst(t, "127.0.0.3:5060", 2); ok != 0 {
		t.Fatalf("%d passed at the old count", ok)
	}
	f.h.Clock.Advance(10 * time.Second)
	if ok, _ := f.burst(t, "127.0.0.3:5060", 7); ok != 5 {
		t.Fatalf("next window: %d passed", ok)
	}
	// Algorithm and interval.
	if in, err := f.rl.Set(SetArgs{Pipe: "calls", Algorithm: "red", Interval: "2s"}); err != nil || in.Algorithm != "RED" || in.Interval != "2s" || in.Limit != 5 {
		t.Fatalf("set: %+v %v", in, err)
	}
	zero := 0
	for _, a := range []SetArgs{
		{Pipe: "calls", Limit: &zero},
		{Pipe: "calls", Algorithm: "fast"},
		{Pipe: "calls", Interval: "1ms"},
		{Pipe: "calls", Interval: "soon"},
		{Pipe: "calls", Algorithm: "FEEDBACK"}, // keyed
	} {
		var ae *mgmt.ArgError
		if _, err := f.rl.Set(a); !errors.As(err, &ae) {
			t.Errorf("%+v: %v", a, err)
		}
	}
	if _, err := f.rl.Set(SetArgs{Pipe: "nope", Limit: &five}); !errors.Is(err, mgmt.ErrNotFound) {
		t.Errorf("unknown pipe: %v", err)
	}
}

func TestReset(t *testing.T) {
	f := build(t, 0,
		PipeSettings{Name: "calls", Limit: 1, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}},
		PipeSettings{Name: "all", Limit: 100, Interval: 10 * time.Second, Methods: []string{"OPTIONS"}},
	)
	f.burst(t, "127.0.0.3:5060", 2)
	f.burst(t, "127.0.0.4:5060", 2)
	if n, err := f.rl.Reset("calls", "127.0.0.3"); n != 1 || err != nil {
		t.Fatalf("reset: %d %v", n, err)
	}
	if ok, _ := f.burst(t, "127.0.0.3:5060", 2); ok != 1 {
		t.Fatalf("after reset: %d passed", ok)
	}
	if ok, _ := f.burst(t, "127.0.0.4:5060", 1); ok != 0 {
		t.Fatal("the other key was reset too")
	}
	if n, err := f.rl.Reset("calls", ""); n != 2 || err != nil {
		t.Fatalf("reset all: %d %v", n, err)
	}
	if ok, _ := f.burst(t, "127.0.0.4:5060", 1); ok != 1 {
		t.Fatal("not reset")
	}
	var ae *mgmt.ArgError
	if _, err := f.rl.Reset("calls", "not-an-address"); !errors.As(err, &ae) {
		t.Errorf("bad key: %v", err)
	}
	if _, err := f.rl.Reset("all", "x"); !errors.As(err, &ae) {
		t.Errorf("key of an unkeyed pipe: %v", err)
	}
	if _, err := f.rl.Reset("nope", ""); !errors.Is(err, mgmt.ErrNotFound) {
		t.Errorf("unknown pipe: %v", err)
	}
}

func TestReload(t *testing.T) {
	f := build(t, 0, PipeSettings{Name: "calls", Limit: 2, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}})
	handle := f.rl.Pipe("calls")
	later := f.rl.Pipe("later") // not configured yet: passes
	f.h.Route = func(c *routing.Ctx) {
		if !handle.Check(c) || !later.Check(c) {
			c.ReplyStateless(503, "", nil)
			return
		}
		c.ReplyStateless(200, "OK", nil)
	}
	f.burst(t, "127.0.0.3:5060", 2)
	// A new limit for calls; a new pipe later. The counts of calls stay.
	s := defaults().(*Settings)
	s.Pipes = []PipeSettings{
		{Name: "calls", Limit: 3, Interval: 10 * time.Second, Key: "source", Methods: []string{"INVITE"}},
		{Name: "later", Limit: 1, Interval: 10 * time.Second},
	}
	if err := f.rl.Reload(s); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.burst(t, "127.0.0.3:5060", 3); ok != 1 {
		t.Fatalf("after reload: %d passed (the third of the window, and later's first)", ok)
	}
	// Removed: the handle passes everything.
	s = defaults().(*Settings)
	s.Pipes = nil
	if err := f.rl.Reload(s); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.burst(t, "127.0.0.3:5060", 10); ok != 10 || handle.Configured() {
		t.Fatalf("after removal: %d passed", ok)
	}
	if l, _ := f.rl.List(""); len(l) != 0 {
		t.Fatalf("list: %+v", l)
	}
	// A bad reload changes nothing.
	s.Pipes = []PipeSettings{{Name: "x", Limit: 0}}
	if err := f.rl.Reload(s); err == nil || !strings.Contains(err.Error(), "pipes[0].limit") {
		t.Fatalf("bad reload: %v", err)
	}
}

func TestCheck(t *testing.T) {
	ok := PipeSettings{Name: "p", Limit: 1}
	for _, tc := range []struct {
		mod func(s *Settings)
		key string
	}{
		{func(s *Settings) { s.Pipes = []PipeSettings{ok, {Name: "", Limit: 1}} }, "pipes[1].name"},
		{func(s *Settings) { s.Pipes = []PipeSettings{ok, {Name: "p q", Limit: 1}} }, "pipes[1].name"},
		{func(s *Settings) { s.Pipes = []PipeSettings{ok, ok} }, "pipes[1].name"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 1, Algorithm: "leaky"}} }, "pipes[0].algorithm"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 0}} }, "pipes[0].limit"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 101, Algorithm: "feedback"}} }, "pipes[0].limit"},
		{func(s *Settings) {
			s.Pipes = []PipeSettings{{Name: "p", Limit: 50, Algorithm: "feedback", Key: "source"}}
		}, "pipes[0].key"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 1, Key: "ip"}} }, "pipes[0].key"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 1, Interval: time.Millisecond}} }, "pipes[0].interval"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 1, Interval: 2 * time.Hour}} }, "pipes[0].interval"},
		{func(s *Settings) { s.Pipes = []PipeSettings{{Name: "p", Limit: 1, Methods: []string{"INVITE", "FOO"}}} }, "pipes[0].methods[1]"},
		{func(s *Settings) { s.MaxKeys = 1 }, "max_keys"},
		{func(s *Settings) { s.IPv6Prefix = 0 }, "ipv6_prefix"},
		{func(s *Settings) { s.Pipes = make([]PipeSettings, maxPipes+1) }, "pipes"},
	} {
		s := defaults().(*Settings)
		tc.mod(s)
		err := check(s)
		var ke *modules.KeyError
		if !errors.As(err, &ke) || ke.Key != tc.key {
			t.Errorf("want an error on %s, got %v", tc.key, err)
		}
	}
	if err := check(defaults()); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestDefaultPipesLetPhonesThrough: the default pipes limit a flood from
// one address and leave a phone, and every other address, alone.
func TestDefaultPipesLetPhonesThrough(t *testing.T) {
	f := buildWith(t, 0, defaults().(*Settings))
	reg := func() string { return routetest.Request("REGISTER", "sip:example.com", "") }
	// A phone registering (challenge included) and calling for an hour.
	for i := 0; i < 360; i++ {
		for _, m := range []string{reg(), reg(), invite(), invite()} {
			if c := f.status(t, "127.0.0.2:5060", m); c != 200 {
				t.Fatalf("phone refused %d at %d s", c, i*10)
			}
		}
		f.h.Clock.Advance(10 * time.Second)
	}
	ok, lim := f.burst(t, "127.0.0.3:5060", 400)
	if ok != 300 || lim != 100 {
		t.Fatalf("flood: %d passed, %d refused", ok, lim)
	}
	if c := f.status(t, "127.0.0.2:5060", invite()); c != 200 {
		t.Fatalf("phone refused during the flood: %d", c)
	}
}

func TestMetrics(t *testing.T) {
	f := build(t, 0,
		PipeSettings{Name: "calls", Limit: 2, Key: "source", Methods: []string{"INVITE"}},
		PipeSettings{Name: "all", Limit: 3, Interval: 2 * time.Second, Methods: []string{"INVITE"}},
	)
	f.burst(t, "127.0.0.3:5060", 3) // calls: 2 passed 1 dropped; all: 2 seen
	f.h.Clock.Advance(2 * time.Second)
	var b bytes.Buffer
	f.set.WritePrometheus(&b)
	for _, want := range []string{
		`switchboard_ratelimit_passed_total{pipe="calls"} 2`,
		`switchboard_ratelimit_dropped_total{pipe="calls"} 1`,
		`switchboard_ratelimit_keys{pipe="calls"} 1`,
		`switchboard_ratelimit_passed_total{pipe="all"} 2`,
		`switchboard_ratelimit_rate{pipe="all"} 1`, // 2 in the last 2 s window
		`switchboard_ratelimit_limit{pipe="all"} 3`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no %s in\n%s", want, b.String())
		}
	}
}
