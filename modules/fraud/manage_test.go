package fraud

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"switchboard/mgmt"
)

func (e *env) call(cmd string, args any, out any) error {
	e.t.Helper()
	raw, err := e.api.Call(ctx, cmd, args)
	if err == nil && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s: %v: %s", cmd, err, raw)
		}
	}
	return err
}

func apiStatus(err error) int {
	var ae *mgmt.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestManagementCommands(t *testing.T) {
	e := newEnv(t, envOptions{mgmt: true})
	// Numbers as strings, as `switchboard ctl fraud.rules.add key=value` sends them.
	var r RuleInfo
	if err := e.call("fraud.rules.add", map[string]string{"profile": "1", "prefix": "0900", "cpm_critical": "2"}, &r); err != nil {
		t.Fatal(err)
	}
	if r.ID == 0 || r.Prefix != "0900" || r.CPMCritical != 2 || r.EndHour != "23:59" {
		t.Fatalf("added %+v", r)
	}
	// Loaded at once, without waiting for the poller.
	if got := results(e, "alice@example.com", "0900123", 2); !same(got, []Result{OK, Critical}) {
		t.Fatalf("after add: %v", got)
	}
	err := e.call("fraud.rules.add", map[string]any{"profile": 1, "prefix": "09 00"}, nil)
	if apiStatus(err) != 400 || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("bad prefix: %v", err)
	}
	err = e.call("fraud.rules.add", map[string]any{"profile": 1, "prefix": "0900", "cpm_critical": 2}, nil)
	if apiStatus(err) != 400 || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("duplicate: %v", err)
	}
	if err := e.call("fraud.rules.add", map[string]any{"profile": 1, "cpm_critical": "two"}, nil); apiStatus(err) != 400 {
		t.Fatalf("not a number: %v", err)
	}

	// set changes the fields given and keeps the counters.
	if err := e.call("fraud.rules.set", map[string]any{"id": r.ID, "cpm_critical": 5}, &r); err != nil {
		t.Fatal(err)
	}
	if r.CPMCritical != 5 || r.Prefix != "0900" {
		t.Fatalf("after set: %+v", r)
	}
	if got := results(e, "alice@example.com", "0900123", 3); !same(got, []Result{OK, OK, Critical}) {
		t.Fatalf("after set: %v (the 3rd, 4th and 5th calls of the minute)", got)
	}
	if err := e.call("fraud.rules.set", map[string]any{"id": 99}, nil); apiStatus(err) != 404 {
		t.Fatalf("set 99: %v", err)
	}

	var rules []RuleInfo
	if err := e.call("fraud.rules", map[string]any{"profile": 1}, &rules); err != nil || len(rules) != 1 {
		t.Fatalf("rules: %+v, %v", rules, err)
	}

	var events []EventInfo
	if err := e.call("fraud.events", map[string]string{"level": "critical", "user": "alice@example.com"}, &events); err != nil || len(events) != 2 {
		t.Fatalf("events: %+v, %v", events, err)
	}
	if err := e.call("fraud.events", map[string]string{"level": "loud"}, nil); apiStatus(err) != 400 {
		t.Fatalf("bad level: %v", err)
	}

	var stats []StatInfo
	if err := e.call("fraud.stats", map[string]string{"user": "alice@example.com"}, &stats); err != nil ||
		len(stats) != 1 || stats[0].CPM != 5 || stats[0].TotalCalls != 5 || stats[0].Prefix != "0900" {
		t.Fatalf("stats: %+v, %v", stats, err)
	}
	var cleared map[string]int
	if err := e.call("fraud.reset", map[string]string{"user": "alice@example.com"}, &cleared); err != nil || cleared["counters_cleared"] != 1 {
		t.Fatalf("reset: %v, %v", cleared, err)
	}
	if err := e.call("fraud.reset", nil, nil); apiStatus(err) != 400 {
		t.Fatalf("reset without user: %v", err)
	}
	if got := e.check("alice@example.com", "0900123"); got != OK {
		t.Fatalf("after reset: %v", got)
	}

	if err := e.call("fraud.rules.del", map[string]any{"id": r.ID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.call("fraud.rules.del", map[string]any{"id": r.ID}, nil); apiStatus(err) != 404 {
		t.Fatalf("del again: %v", err)
	}
	if got := e.check("alice@example.com", "0900123"); got != NoRule {
		t.Fatalf("after del: %v", got)
	}
	var msg string
	if err := e.call("fraud.rules.reload", nil, &msg); err != nil || msg != "0 fraud rules loaded" {
		t.Fatalf("reload: %q, %v", msg, err)
	}
}
