package dispatcher

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/routing"
	"switchboard/store"
)

// A reload keeps what destinations that stay have at run time: their
// state, their calls in progress, their counters; it applies a state the
// store changed (another process's set_state) and drops what left.
func TestReloadKeepsStateCallsAndCounters(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071), dst(1, 5072))
	call := p.invite("alice", "sip:conf@example.com") // to A
	call.answer(200)
	p.d.force(p.d.states[stateKey{1, uri(5072)}], Probing, "test")

	other, err := store.Open(p.dir, store.Options{}) // the CLI, while the server runs
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.AddDispatcherDest(ctx, dst(1, 5073)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.d.LoadTable(ctx); err != nil {
		t.Fatal(err)
	}
	a := p.info(1, uri(5071))
	if a.Calls != 1 || a.Selected != 1 || p.state(1, uri(5072)) != "probing" || p.state(1, uri(5073)) != "active" {
		t.Fatalf("after a reload: A %+v, B %s, C %s", a, p.state(1, uri(5072)), p.state(1, uri(5073)))
	}

	// Another process sets B inactive in the store: the reload applies it.
	if _, err := other.SetDispatcherState(ctx, 1, uri(5072), store.DispatcherInactive); err != nil {
		t.Fatal(err)
	}
	p.d.LoadTable(ctx)
	if s := p.state(1, uri(5072)); s != "inactive" {
		t.Fatalf("state from the store: %s", s)
	}

	// A leaves the table with its call in progress: its metrics go, and
	// the call's BYE releases nothing that is still counted.
	if _, err := other.DeleteDispatcherDestOf(ctx, 1, uri(5071)); err != nil {
		t.Fatal(err)
	}
	p.d.LoadTable(ctx)
	if p.hasMetric(`switchboard_dispatcher_selected_total{set="1",destination="sip:127.0.0.1:5071"}`) {
		t.Fatal("the metrics of a removed destination are still served")
	}
	call.bye()
	if p.metric("switchboard_dispatcher_calls_tracked") != 0 {
		t.Fatal("the call was not released")
	}
	// It comes back: a new destination, from its stored state.
	if _, err := other.AddDispatcherDest(ctx, dst(1, 5071)); err != nil {
		t.Fatal(err)
	}
	p.d.LoadTable(ctx)
	if a := p.info(1, uri(5071)); a.Calls != 0 || a.Selected != 0 || a.State != "active" {
		t.Fatalf("A again: %+v", a)
	}
}

// A fail-over that began before a reload goes on in the set it began
// with: the request sees the old table or the new one, never a mix.
func TestFailoverAcrossReload(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.alg = Priority
	a, b, c := dst(1, 5071), dst(1, 5072), dst(1, 5073)
	a.Priority, c.Priority = 9, 5
	p.add(a, b)
	call := p.invite("alice", "sip:conf@example.com")
	// The table is replaced: C comes, before B in the fail-over order.
	if err := p.st.ReplaceDispatcherDests(ctx, []store.DispatcherDest{a, b, c}); err != nil {
		t.Fatal(err)
	}
	p.d.LoadTable(ctx)
	call.answer(503)
	if call.to() != "127.0.0.1:5072" {
		t.Fatalf("the fail-over went to %s, want B of the table it began with", call.to())
	}
	call.answer(200)
	call.bye()
	// A new call sees the new table.
	c2 := p.invite("alice", "sip:conf@example.com")
	c2.answer(503)
	if c2.to() != "127.0.0.1:5073" {
		t.Fatalf("a new call failed over to %s, want C", c2.to())
	}
	c2.answer(486)

	// Past recentTables reloads the old table is gone: the fail-over goes
	// on in the table in use.
	c3 := p.invite("alice", "sip:conf@example.com")
	for i := 0; i < recentTables; i++ {
		p.d.LoadTable(ctx)
	}
	c3.answer(503)
	if c3.to() != "127.0.0.1:5073" && c3.to() != "127.0.0.1:5071" {
		t.Fatalf("after %d reloads the fail-over went to %s", recentTables, c3.to())
	}
	if len(c3.answers) != 0 {
		t.Fatalf("no fail-over after %d reloads: %v", recentTables, c3.answers)
	}
}

// An operator deletes a destination (a media server being retired) while
// a call that began before sits on another one: when that one answers
// 503 the fail-over does not send the call to the deleted destination,
// which the snapshot the call began with still lists; with nothing else
// left the caller gets the failure (the 503 as a 500, RFC 3261 16.7). A
// route's MarkDst(Active) on the deleted destination does not bring it
// back either.
func TestFailoverSkipsDeletedDestination(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.alg = Priority
	a := dst(1, 5101)
	a.Priority = 10
	p.add(a, dst(1, 5102))
	c := p.invite("alice", "sip:conf@example.com")
	if _, err := p.st.DeleteDispatcherDestOf(ctx, 1, "sip:127.0.0.1:5102"); err != nil {
		t.Fatal(err)
	}
	p.d.LoadTable(ctx)
	c.answer(503)
	if got := c.destinations(); got != "127.0.0.1:5101" {
		t.Errorf("relayed to %s, want only 127.0.0.1:5101", got)
	}
	if len(c.answers) != 1 || !strings.HasPrefix(c.answers[0], "SIP/2.0 500") {
		t.Errorf("the caller got %v, want the 503 as a 500", c.answers)
	}
	if p.metric("switchboard_dispatcher_calls_tracked") != 0 {
		t.Error("the failed call is still counted")
	}

	// Two calls before the reload, X on A and Y on B; B is deleted. Y's
	// failure route marks B active (MarkDst(Active)): that does not bring
	// B back, and X's fail-over does not go there either.
	p = newProxy(t, envOptions{})
	p.alg = Priority
	p.add(a, dst(1, 5102))
	x := p.invite("alice", "sip:conf@example.com") // to A
	p.d.force(p.d.states[stateKey{1, uri(5101)}], Inactive, "test")
	y := p.invite("bob", "sip:conf@example.com") // to B
	p.d.force(p.d.states[stateKey{1, uri(5101)}], Active, "test")
	if x.to() != "127.0.0.1:5101" || y.to() != "127.0.0.1:5102" {
		t.Fatalf("x to %s, y to %s", x.to(), y.to())
	}
	if _, err := p.st.DeleteDispatcherDestOf(ctx, 1, "sip:127.0.0.1:5102"); err != nil {
		t.Fatal(err)
	}
	p.d.LoadTable(ctx)
	changes := p.metric("switchboard_dispatcher_state_changes_total")
	failure := p.Failure
	p.Failure = func(fc *routing.FailureCtx) {
		p.d.MarkDst(fc.Ctx, Active)
		p.d.CallFailed(fc.Ctx)
	}
	y.answer(503)
	p.Failure = failure
	x.answer(503)
	if got := x.destinations(); got != "127.0.0.1:5101" {
		t.Errorf("after MarkDst(Active) of the deleted destination, relayed to %s, want only 127.0.0.1:5101", got)
	}
	if n := p.metric("switchboard_dispatcher_state_changes_total"); n != changes {
		t.Errorf("state changes %v, want %v: the deleted destination changed state", n, changes)
	}
}

// Readers choosing while tables of two shapes replace each other see one
// table whole.
func TestReloadIsAtomic(t *testing.T) {
	p := newProxy(t, envOptions{})
	shape := func(tag string, base int) []store.DispatcherDest {
		var ds []store.DispatcherDest
		for i := 0; i < 50; i++ {
			d := dst(1, base+i)
			d.Attrs = tag
			ds = append(ds, d)
		}
		return ds
	}
	p.st.ReplaceDispatcherDests(ctx, shape("x", 6000))
	p.d.LoadTable(ctx)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				l := p.d.List(1)
				if len(l) != 50 {
					bad.Add(1)
					continue
				}
				base := 6000
				if l[0].Attrs == "y" {
					base = 7000
				}
				for i, d := range l {
					if d.Attrs != l[0].Attrs || d.Destination != uri(base+i) {
						bad.Add(1)
						break
					}
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		tag, base := "x", 6000
		if i%2 == 0 {
			tag, base = "y", 7000
		}
		if err := p.st.ReplaceDispatcherDests(ctx, shape(tag, base)); err != nil {
			t.Fatal(err)
		}
		p.d.LoadTable(ctx)
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d views of a table in part", bad.Load())
	}
}

// A change made by another process is loaded within poll_interval.
func TestReloadFromStoreChanges(t *testing.T) {
	s := DefaultSettings()
	s.PollInterval = 20 * time.Millisecond
	s.ProbeInterval = 0
	e := newEnv(t, envOptions{settings: s})
	if err := e.mods.Start(); err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(e.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.AddDispatcherDest(ctx, dst(4, 5071)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(e.d.List(4)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the change was not loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMaxDestinations(t *testing.T) {
	s := DefaultSettings()
	s.MaxDestinations = 2
	s.ProbeInterval = 0
	rows := []store.DispatcherDest{dst(1, 5071), dst(1, 5072), dst(1, 5073)}
	// At start: the server does not start, the error names the key.
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddDispatcherDests(ctx, rows)
	_, err = modules.Build(modules.Services{Store: st, Clock: newEnv(t, envOptions{}).clock}, map[string]any{"dispatcher": s}, "dispatcher")
	if err == nil || !strings.Contains(err.Error(), "more than dispatcher.max_destinations (2)") {
		t.Fatalf("start with 3 destinations, max 2: %v", err)
	}
	// At run time: the table in use stays.
	e := newEnv(t, envOptions{settings: s, rows: rows[:2]})
	e.st.AddDispatcherDest(ctx, rows[2])
	if _, err := e.d.LoadTable(ctx); err == nil || len(e.d.List(1)) != 2 || e.metric("switchboard_dispatcher_reload_errors_total") != 1 {
		t.Fatalf("a reload past the bound: %v, %d in use", err, len(e.d.List(1)))
	}
	// A SIGHUP that raises it loads the table; one that lowers it below
	// the table fails and keeps the bound.
	s2 := *s
	s2.MaxDestinations = 3
	if err := e.d.Reload(&s2); err != nil || len(e.d.List(1)) != 3 {
		t.Fatalf("raised: %v, %d in use", err, len(e.d.List(1)))
	}
	s2.MaxDestinations = 1
	// The reload's check refuses it first, naming the key, changing nothing.
	if err := e.d.CheckReload(&s2); err == nil || !strings.Contains(err.Error(), "max_destinations") || e.d.maxDests.Load() != 3 {
		t.Fatalf("check of a bound below the table: %v, max %d", err, e.d.maxDests.Load())
	}
	if err := e.d.Reload(&s2); err == nil || e.d.maxDests.Load() != 3 || len(e.d.List(1)) != 3 {
		t.Fatalf("lowered below the table: %v, max %d", err, e.d.maxDests.Load())
	}
}

// Rows written to the database by hand that do not validate are skipped,
// counted and logged; the others load.
func TestBadRowsSkipped(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.d.reloadMu.Lock()
	tab := e.d.build([]store.DispatcherDest{
		{ID: 1, SetID: 1, Destination: "sip:gw.example.net", Weight: 1},
		{ID: 2, SetID: 1, Destination: "sip:127.0.0.1:5071", Weight: 0},
		{ID: 3, SetID: 1, Destination: "sip:127.0.0.1:5072", Weight: 1},
		{ID: 4, SetID: 1, Destination: "sip:127.0.0.1:5072;transport=udp", Weight: 1}, // the same, written otherwise
	})
	e.d.reloadMu.Unlock()
	if tab.dests != 1 || tab.skipped != 3 || e.metric("switchboard_dispatcher_skipped_rows") != 3 {
		t.Fatalf("%d loaded, %d skipped", tab.dests, tab.skipped)
	}
}

func TestSettingsChecked(t *testing.T) {
	for _, c := range []struct {
		edit func(*Settings)
		key  string
	}{
		{func(s *Settings) { s.PollInterval = time.Millisecond }, "poll_interval"},
		{func(s *Settings) { s.MaxDestinations = 0 }, "max_destinations"},
		{func(s *Settings) { s.MaxDestinations = 70000 }, "max_destinations"},
		{func(s *Settings) { s.MaxCalls = 10 }, "max_calls"},
		{func(s *Settings) { s.CallTimeout = time.Second }, "call_timeout"},
		{func(s *Settings) { s.ProbeInterval = 10 * time.Millisecond }, "probe_interval"},
		{func(s *Settings) { s.ProbeTimeout = time.Millisecond }, "probe_timeout"},
		{func(s *Settings) { s.ProbeTimeout = s.ProbeInterval }, "probe_timeout"},
		{func(s *Settings) { s.ProbeFailures = 0 }, "probe_failures"},
		{func(s *Settings) { s.ProbeSuccesses = 101 }, "probe_successes"},
		{func(s *Settings) { s.ProbeFrom = "dispatcher@localhost" }, "probe_from"},
		{func(s *Settings) { s.ProbeFrom = "sip:a@b>\r\nX: y" }, "probe_from"},
		{func(s *Settings) { s.ProbeReplyCodes = []int{501, 99} }, "probe_reply_codes[1]"},
		{func(s *Settings) { s.DispatchSet = -1 }, "dispatch_set"},
		{func(s *Settings) { s.DispatchAlgorithm = "random" }, "dispatch_algorithm"},
	} {
		s := DefaultSettings()
		c.edit(s)
		err := checkSettings(s)
		var ke *modules.KeyError
		if err == nil || !asKeyError(err, &ke) || ke.Key != c.key {
			t.Errorf("%s: %v", c.key, err)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.ProbeInterval = 0
	s.ProbeTimeout = time.Minute // no probes: no relation to the interval
	if err := checkSettings(s); err != nil {
		t.Fatal(err)
	}
}

func asKeyError(err error, ke **modules.KeyError) bool {
	k, ok := err.(*modules.KeyError)
	*ke = k
	return ok
}

// A SIGHUP applies the probe keys, call_timeout and the dispatch keys;
// poll_interval and max_calls need a restart: CheckReload names them
// (not a refusal), Reload applies the rest and keeps them.
func TestReloadSettings(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := DefaultSettings()
	s.ProbeInterval = 0
	s.DispatchSet, s.DispatchAlgorithm, s.ProbeFailures = 7, "weight", 5
	if err := e.d.Reload(s); err != nil {
		t.Fatal(err)
	}
	if set, alg := e.d.Dispatch(); set != 7 || alg != Weight || e.d.probe.Load().failures != 5 {
		t.Fatalf("dispatch %d %v, failures %d", set, alg, e.d.probe.Load().failures)
	}
	s.MaxCalls, s.DispatchSet = 500, 8
	var ke *modules.KeyError
	if err := e.d.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "max_calls" {
		t.Fatalf("max_calls changed: CheckReload %v, want it named as needing a restart", err)
	}
	if err := e.d.Reload(s); err != nil || s.MaxCalls != DefaultSettings().MaxCalls {
		t.Fatalf("max_calls changed: %v, settings left with %d", err, s.MaxCalls)
	}
	if set, _ := e.d.Dispatch(); set != 8 {
		t.Fatalf("dispatch_set %d after a reload with max_calls changed, want 8", set)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for i := Algorithm(0); i < numAlgorithms; i++ {
		if a, err := ParseAlgorithm(strings.ToUpper(i.String())); a != i || err != nil {
			t.Errorf("%s: %v %v", i, a, err)
		}
	}
	if _, err := ParseAlgorithm("random"); err == nil || !strings.Contains(err.Error(), "call_id, from_user, ruri, round_robin, weight, least_calls, priority") {
		t.Fatal(err)
	}
}

func TestWeightSlots(t *testing.T) {
	mk := func(ws ...uint32) []dest {
		var ds []dest
		for _, w := range ws {
			ds = append(ds, dest{weight: w})
		}
		return ds
	}
	for _, c := range []struct {
		ws   []uint32
		want string
	}{
		{[]uint32{1, 3}, "[1 0 1 1]"},
		{[]uint32{2, 6}, "[1 0 1 1]"}, // reduced by the gcd
		{[]uint32{5, 5, 5}, "[0 1 2]"},
	} {
		slots, uniform := weightSlots(mk(c.ws...))
		if fmt.Sprint(slots) != c.want || uniform != (c.ws[0] == c.ws[len(c.ws)-1]) {
			t.Errorf("%v: %v %v", c.ws, slots, uniform)
		}
	}
	// Past maxSlots the weights are scaled, every destination keeping
	// one slot at least.
	ws := []uint32{1000, 1000, 1000, 1000, 1000, 1}
	slots, _ := weightSlots(mk(ws...))
	n := map[uint16]int{}
	for _, s := range slots {
		n[s]++
	}
	if len(slots) > maxSlots+len(ws) || n[5] != 1 || n[0] != n[4] {
		t.Fatalf("%d slots, counts %v", len(slots), n)
	}
}

// SelectDst in a route, while a reload swaps tables, never fails for a
// set that both tables have.
func TestSelectDuringReloads(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071), dst(1, 5072))
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			p.d.LoadTable(ctx)
		}
	}()
	for i := 0; i < 300; i++ {
		p.InRoute(t, phone.String(), options(i), func(c *routing.Ctx) {
			if !p.d.SelectDst(c, 1, RoundRobin) {
				t.Error("no destination during a reload")
			}
		})
	}
	stop.Store(true)
	<-done
}

// A Reload whose table load fails (the table grew past a new
// max_destinations after the reload's check, or the store went down)
// keeps every setting in force, as modules.Reloader says: it had put the
// dispatch set, the algorithm, the probe keys and call_timeout in force
// and restored only the bound, so the server ran a mix of both files
// while ctl reload said the dispatcher took nothing.
func TestFailedReloadKeepsAllSettings(t *testing.T) {
	s := DefaultSettings()
	s.MaxDestinations = 3
	s.ProbeInterval = 0
	rows := []store.DispatcherDest{dst(1, 5071), dst(1, 5072)}
	e := newEnv(t, envOptions{settings: s, rows: rows})
	set, alg := e.d.Dispatch()
	timeout, probe := e.d.timeout.Load(), e.d.probe.Load()

	s2 := *s
	s2.MaxDestinations = 2
	s2.DispatchSet, s2.DispatchAlgorithm, s2.ProbeFailures = set+6, "weight", int(probe.failures)+2
	s2.CallTimeout = 2 * time.Duration(timeout) * time.Millisecond
	if err := e.d.CheckReload(&s2); err != nil {
		t.Fatal(err)
	}
	e.st.AddDispatcherDest(ctx, dst(1, 5073)) // between the check and the reload
	if err := e.d.Reload(&s2); err == nil {
		t.Fatal("a table over the new bound loaded")
	}
	if gotSet, gotAlg := e.d.Dispatch(); gotSet != set || gotAlg != alg || e.d.maxDests.Load() != 3 ||
		e.d.timeout.Load() != timeout || e.d.probe.Load() != probe {
		t.Fatalf("after a failed reload: dispatch %d %v (was %d %v), max %d, timeout %d (was %d), probe failures %d (was %d)",
			gotSet, gotAlg, set, alg, e.d.maxDests.Load(), e.d.timeout.Load(), timeout, e.d.probe.Load().failures, probe.failures)
	}
}
