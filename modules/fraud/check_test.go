package fraud

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/store"
)

func results(e *env, user, number string, n int) []Result {
	var out []Result
	for i := 0; i < n; i++ {
		out = append(out, e.check(user, number))
	}
	return out
}

func same(a, b []Result) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestNoRuleCountsNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	if got := e.check("alice@example.com", "0900123"); got != NoRule {
		t.Fatalf("no rules: %v", got)
	}
	e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Critical: 1}})
	if got := e.check("alice@example.com", "0800123"); got != NoRule {
		t.Fatalf("other prefix: %v", got)
	}
	if got := e.f.Check(nil, []byte("alice@example.com"), []byte("0900123"), 2); got != NoRule {
		t.Fatalf("other profile: %v", got)
	}
	if n := e.f.counters.Len(); n != 0 {
		t.Fatalf("%d counters for calls no rule matched", n)
	}
	if e.counter(`switchboard_fraud_checks_total{result="no_rule"}`) != 3 {
		t.Error("no_rule checks not counted")
	}
}

func TestCallsPerMinute(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Warning: 3, Critical: 5}})
	// The count includes the call checked: the 3rd call of the minute
	// reaches the warning, the 5th the critical threshold (OpenSIPS).
	got := results(e, "alice@example.com", "0900123", 6)
	if want := []Result{OK, OK, Warning, Warning, Critical, Critical}; !same(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	// Per caller: bob is not affected.
	if got := e.check("bob@example.com", "0900123"); got != OK {
		t.Fatalf("bob: %v", got)
	}
	// The window slides: 6 calls at 10:00:00. At 10:00:59 they still
	// count; at 10:01:00 they have left it.
	e.clock.Advance(59 * time.Second)
	if got := e.check("alice@example.com", "0900123"); got != Critical {
		t.Fatalf("59 s later: %v (cpm %d)", got, e.stats("alice@example.com", "0900").CPM)
	}
	e.clock.Advance(time.Second)
	if got := e.check("alice@example.com", "0900123"); got != OK {
		t.Fatalf("60 s after the burst: %v (cpm %d)", got, e.stats("alice@example.com", "0900").CPM)
	}
	// Now the calls of 10:00:59 and 10:01:00 (2) are in the window.
	if cpm := e.stats("alice@example.com", "0900").CPM; cpm != 2 {
		t.Fatalf("cpm %d, want 2", cpm)
	}
	e.clock.Advance(10 * time.Minute)
	if cpm := e.stats("alice@example.com", "0900").CPM; cpm != 0 {
		t.Fatalf("cpm %d after 10 idle minutes", cpm)
	}
}

func TestCallsPerDay(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.rule(store.FraudRule{Prefix: "00", TotalCalls: store.FraudLimit{Warning: 2, Critical: 3}})
	var got []Result
	for i := 0; i < 4; i++ {
		got = append(got, e.check("alice@example.com", fmt.Sprintf("0044%d", i)))
		e.clock.Advance(3 * time.Hour) // no minute count involved; 10:00 to 19:00
	}
	if want := []Result{OK, Warning, Critical, Critical}; !same(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	// 22:00 UTC, still Monday: still refused. At 00:00 the count starts again.
	if got := e.check("alice@example.com", "00449"); got != Critical {
		t.Fatalf("same day: %v", got)
	}
	e.clock.Set(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC).UnixMilli())
	if got := e.check("alice@example.com", "00449"); got != OK {
		t.Fatalf("next day: %v", got)
	}
}

func TestCallsPerDayInTimezone(t *testing.T) {
	s := DefaultSettings()
	s.Timezone = "Asia/Tokyo" // UTC+9, no summer time
	if _, err := time.LoadLocation(s.Timezone); err != nil {
		t.Skip("no time zone data:", err)
	}
	e := newEnv(t, envOptions{settings: s})
	e.rule(store.FraudRule{Prefix: "00", TotalCalls: store.FraudLimit{Critical: 2}})
	e.clock.Set(time.Date(2026, 3, 2, 14, 58, 0, 0, time.UTC).UnixMilli()) // 23:58 in Tokyo
	got := results(e, "alice@example.com", "0044", 2)
	e.clock.Set(time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC).UnixMilli()) // midnight in Tokyo
	got = append(got, e.check("alice@example.com", "0044"))
	if want := []Result{OK, Critical, OK}; !same(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
}

func TestSequentialCalls(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.rule(store.FraudRule{Prefix: "0900", SequentialCalls: store.FraudLimit{Warning: 2, Critical: 3}})
	step := func(number string) Result {
		e.clock.Advance(time.Minute)
		return e.check("alice@example.com", number)
	}
	got := []Result{step("0900111"), step("0900-111"), step("%30900111"), step("0900222"), step("0900222"), step("0900111")}
	// Separators and escapes make no other number; another number starts
	// again.
	if want := []Result{OK, Warning, Critical, OK, Warning, OK}; !same(got, want) {
		t.Fatalf("results %v, want %v", got, want)
	}
}

func TestWindowsPickTheRuleAndResetTheInterval(t *testing.T) {
	e := newEnv(t, envOptions{})
	// Monday 10:00 UTC. Daytime: generous; at night: 2 calls.
	day := e.rule(store.FraudRule{Prefix: "0900", StartHour: "08:00", EndHour: "19:59", TotalCalls: store.FraudLimit{Critical: 100}})
	night := e.rule(store.FraudRule{Prefix: "0900", StartHour: "20:00", EndHour: "07:59", TotalCalls: store.FraudLimit{Critical: 2}})
	results(e, "alice@example.com", "0900123", 5)
	if s := e.stats("alice@example.com", "0900"); s.Rule != day.ID || s.TotalCalls != 5 {
		t.Fatalf("daytime stats %+v", s)
	}
	// At 20:00 the night rule applies: a new interval starts (OpenSIPS
	// resets the counts when another rule matches).
	e.clock.Set(time.Date(2026, 3, 2, 20, 0, 0, 0, time.UTC).UnixMilli())
	got := results(e, "alice@example.com", "0900123", 2)
	if want := []Result{OK, Critical}; !same(got, want) {
		t.Fatalf("night results %v, want %v", got, want)
	}
	if s := e.stats("alice@example.com", "0900"); s.Rule != night.ID || s.TotalCalls != 2 {
		t.Fatalf("night stats %+v", s)
	}
}

func TestEventsListedAndCounted(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Warning: 2, Critical: 3}})
	results(e, "alice@example.com", "0900123", 4)
	ev := e.f.Events("", "")
	if len(ev) != 3 {
		t.Fatalf("events %+v", ev)
	}
	// Newest first: two critical, one warning.
	if ev[0].Level != "critical" || ev[1].Level != "critical" || ev[2].Level != "warning" {
		t.Fatalf("levels %+v", ev)
	}
	want := EventInfo{Time: "2026-03-02T10:00:00Z", Level: "critical", Param: "cpm", Value: 4, Threshold: 3,
		User: "alice@example.com", Number: "0900123", Rule: r.ID, Profile: 1, Prefix: "0900"}
	if ev[0] != want {
		t.Fatalf("event %+v\nwant  %+v", ev[0], want)
	}
	if n := len(e.f.Events("warning", "")); n != 1 {
		t.Errorf("%d warning events", n)
	}
	if n := len(e.f.Events("", "bob@example.com")); n != 0 {
		t.Errorf("%d events for bob", n)
	}
	if e.counter(`switchboard_fraud_events_total{level="critical"}`) != 2 || e.counter(`switchboard_fraud_events_total{level="warning"}`) != 1 {
		t.Error("event metrics wrong")
	}
}

func TestEventRingAndLogBounded(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.MaxEvents = "UTC", 5
	e := newEnv(t, envOptions{settings: s})
	e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Critical: 1}})
	results(e, "alice@example.com", "0900123", 50)
	if ev := e.f.Events("", ""); len(ev) != 5 || ev[0].Value != 50 || ev[4].Value != 46 {
		t.Fatalf("ring: %+v", ev)
	}
	// 50 events in one second: 10 logged; the next second's line says
	// how many were not.
	l := &e.f.events
	if l.logN != logPerSecond || l.dropped != 40 {
		t.Fatalf("logged %d, not logged %d", l.logN, l.dropped)
	}
	e.clock.Advance(time.Second)
	if log, dropped := l.add(&event{at: e.clock.Now()}); !log || dropped != 40 {
		t.Fatalf("next second: log %v, dropped %d", log, dropped)
	}
}

func TestReloadKeepsCounters(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.rule(store.FraudRule{Prefix: "0900", TotalCalls: store.FraudLimit{Critical: 10}})
	results(e, "alice@example.com", "0900123", 4)
	// The thresholds change in place (same rule): the counts go on.
	r.TotalCalls.Critical = 5
	if err := e.st.UpdateFraudRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := e.f.LoadRules(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.check("alice@example.com", "0900123"); got != Critical {
		t.Fatalf("5th call after lowering the threshold to 5: %v", got)
	}
	// Another rule for another prefix leaves them alone too.
	e.rule(store.FraudRule{Prefix: "0800", CPM: store.FraudLimit{Critical: 1}})
	if s := e.stats("alice@example.com", "0900"); s.TotalCalls != 5 {
		t.Fatalf("after adding a rule: %+v", s)
	}
}

func TestRulesReloadedFromStoreChanges(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.PollInterval = "UTC", 20*time.Millisecond
	e := newEnv(t, envOptions{settings: s})
	if err := e.f.Start(); err != nil { // the set's Stop, at cleanup, stops it
		t.Fatal(err)
	}
	// Another process (the CLI) adds a rule: the poller loads it.
	other, err := store.Open(e.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.AddFraudRule(ctx, store.FraudRule{Profile: 1, Prefix: "0900", CPM: store.FraudLimit{Critical: 1}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.check("carol@example.com", "0900") != Critical {
		if time.Now().After(deadline) {
			t.Fatal("rule added in the store not loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResetLiftsBlock(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Critical: 2}})
	e.rule(store.FraudRule{Prefix: "00", CPM: store.FraudLimit{Critical: 2}})
	results(e, "alice@example.com", "0900123", 3)
	results(e, "alice@example.com", "0044", 1)
	results(e, "bob@example.com", "0900123", 3)
	if n := e.f.Reset("alice@example.com"); n != 2 {
		t.Fatalf("reset %d counters, want 2", n)
	}
	if got := e.check("alice@example.com", "0900123"); got != OK {
		t.Fatalf("alice after reset: %v", got)
	}
	if got := e.check("bob@example.com", "0900123"); got != Critical {
		t.Fatalf("bob after alice's reset: %v", got)
	}
}

func TestCounterTableBounded(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.MaxCallers = "UTC", 100
	e := newEnv(t, envOptions{settings: s, shards: 1})
	e.rule(store.FraudRule{Prefix: "", CPM: store.FraudLimit{Critical: 1000}})
	for i := 0; i < 250; i++ {
		e.clock.Advance(time.Second)
		e.check(fmt.Sprintf("user%d@example.com", i), "0900")
	}
	if n := e.f.counters.Len(); n != 100 {
		t.Fatalf("%d counters, bound 100", n)
	}
	if ev := e.counter(`switchboard_fraud_counters_evicted_total`); ev != 150 {
		t.Fatalf("%v evicted, want 150", ev)
	}
	// The oldest went: user150 is the oldest left.
	if len(e.f.Stats("user150@example.com")) != 1 || len(e.f.Stats("user149@example.com")) != 0 {
		t.Fatal("eviction did not take the oldest")
	}
	// Counters idle for a day go at the sweep.
	e.clock.Advance(24 * time.Hour)
	e.f.sweep()
	if n := e.f.counters.Len(); n != 0 {
		t.Fatalf("%d counters after a day idle", n)
	}
}

func TestSettingsChecked(t *testing.T) {
	for key, edit := range map[string]func(s *Settings){
		"profile":       func(s *Settings) { s.Profile = -1 },
		"max_callers":   func(s *Settings) { s.MaxCallers = 10 },
		"max_calls":     func(s *Settings) { s.MaxCalls = 0 },
		"call_timeout":  func(s *Settings) { s.CallTimeout = time.Second },
		"timezone":      func(s *Settings) { s.Timezone = "Mars/Olympus" },
		"max_events":    func(s *Settings) { s.MaxEvents = -1 },
		"poll_interval": func(s *Settings) { s.PollInterval = 0 },
	} {
		s := DefaultSettings()
		edit(s)
		var ke *modules.KeyError
		if err := checkSettings(s); !errors.As(err, &ke) || ke.Key != key {
			t.Errorf("%s: %v", key, err)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
}

// TestReloadSettings: profile and timezone are applied at once; a new
// max_callers, with a new profile, is named as needing a restart (not a
// refusal) and kept, the profile applied; a timezone that does not load
// is refused.
func TestReloadSettings(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := DefaultSettings()
	s.Timezone, s.Profile = "UTC", 7
	if err := e.f.Reload(s); err != nil || e.f.Profile() != 7 {
		t.Fatalf("reload: %v, profile %d", err, e.f.Profile())
	}
	s.MaxCallers, s.Profile = 1000, 8
	var ke *modules.KeyError
	if err := e.f.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "max_callers" {
		t.Fatalf("max_callers changed: CheckReload %v, want it named as needing a restart", err)
	}
	if err := e.f.Reload(s); err != nil || e.f.Profile() != 8 || s.MaxCallers != DefaultSettings().MaxCallers || e.f.max[0] != DefaultSettings().MaxCallers {
		t.Fatalf("reload with max_callers changed: %v, profile %d, max_callers %d in the settings", err, e.f.Profile(), s.MaxCallers)
	}
	s.Timezone = "Nowhere/Atlantis"
	if err := e.f.CheckReload(s); !errors.As(err, &ke) || ke.Restart || ke.Key != "timezone" {
		t.Fatalf("a timezone that does not load: CheckReload %v, want it refused", err)
	}
}

// TestEventsRaised: a warning and a critical threshold reached are
// raised as E_FRD_WARNING and E_FRD_CRITICAL with OpenSIPS's fields.
func TestEventsRaised(t *testing.T) {
	ev := modules.NewEvents(nil, nil)
	sub := ev.Subscribe([]string{modules.EventFraudWarning, modules.EventFraudCritical}, 8)
	e := newEnv(t, envOptions{events: ev})
	r := e.rule(store.FraudRule{Prefix: "0900", CPM: store.FraudLimit{Warning: 2, Critical: 3}})
	results(e, "alice@example.com", "0900123", 3)
	var names []string
	var last string
	for len(sub.C()) > 0 {
		m := <-sub.C()
		names = append(names, m.Name)
		last = string(m.JSON)
	}
	if strings.Join(names, ",") != "E_FRD_WARNING,E_FRD_CRITICAL" {
		t.Fatalf("events %v", names)
	}
	want := `"params":{"param":"cpm","value":3,"threshold":3,"user":"alice@example.com","number":"0900123","ruleid":` + strconv.FormatInt(r.ID, 10) + `,"profile":1}`
	if !strings.Contains(last, want) {
		t.Fatalf("critical event %s\nwant %s", last, want)
	}
}
