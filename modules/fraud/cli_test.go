package fraud

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/store"
)

func runVerb(t *testing.T, st *store.Store, verb string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := cliCommands[verb].Run(ctx, st, args, &out)
	return out.String(), err
}

func TestCLI(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	out, err := runVerb(t, st, "add", "--prefix", "0900", "--days", "Mon-Fri", "--start", "08:00", "--end", "18:00",
		"--cpm-warning", "5", "--cpm-critical", "10", "--concurrent-calls-critical", "3")
	if err != nil || out != "added fraud rule 1\n" {
		t.Fatalf("add: %q, %v", out, err)
	}
	r, _ := st.GetFraudRule(ctx, 1)
	want := store.FraudRule{ID: 1, Profile: 1, Prefix: "0900", StartHour: "08:00", EndHour: "18:00", Days: "Mon-Fri",
		CPM: store.FraudLimit{Warning: 5, Critical: 10}, ConcurrentCalls: store.FraudLimit{Critical: 3}, Created: r.Created}
	if r != want {
		t.Fatalf("stored %+v\nwant   %+v", r, want)
	}

	// set changes only what it is given.
	if _, err := runVerb(t, st, "set", "1", "--cpm-critical", "20", "--days", ""); err != nil {
		t.Fatal(err)
	}
	r, _ = st.GetFraudRule(ctx, 1)
	if r.CPM != (store.FraudLimit{Warning: 5, Critical: 20}) || r.Days != "" || r.StartHour != "08:00" || r.ConcurrentCalls.Critical != 3 {
		t.Fatalf("after set: %+v", r)
	}

	if _, err := runVerb(t, st, "add", "--profile", "2", "--total-calls-critical", "100"); err != nil {
		t.Fatal(err)
	}
	out, err = runVerb(t, st, "list", "--profile", "1")
	if err != nil || !strings.Contains(out, "0900") || !strings.Contains(out, "5/20") || !strings.Contains(out, "every day") || strings.Contains(out, "(any)") {
		t.Fatalf("list --profile 1: %v\n%s", err, out)
	}
	out, _ = runVerb(t, st, "list")
	if !strings.Contains(out, "(any)") || !strings.Contains(out, "-/100") {
		t.Fatalf("list:\n%s", out)
	}

	// Bad values name the field; bad usage is a usage error.
	_, err = runVerb(t, st, "add", "--prefix", "09x")
	if !errors.Is(err, store.ErrMalformedFraudRule) || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("bad prefix: %v", err)
	}
	_, err = runVerb(t, st, "add", "--end", "25:00")
	if !errors.Is(err, store.ErrMalformedFraudRule) || !strings.Contains(err.Error(), "end_hour") {
		t.Errorf("bad hour: %v", err)
	}
	var ke *modules.KeyError
	for _, args := range [][]string{
		{"add", "--cpm-critical", "ten"},
		{"add", "0900"},
		{"set"},
		{"set", "x"},
		{"del", "1", "2"},
		{"list", "--nosuch"},
	} {
		if _, err := runVerb(t, st, args[0], args[1:]...); !errors.As(err, &ke) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if _, err := runVerb(t, st, "add", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	if _, err := runVerb(t, st, "set", "99", "--cpm-critical", "1"); !errors.Is(err, store.ErrNoFraudRule) {
		t.Errorf("set 99: %v", err)
	}

	if out, err := runVerb(t, st, "del", "1"); err != nil || out != "deleted fraud rule 1\n" {
		t.Fatalf("del: %q, %v", out, err)
	}
	if _, err := runVerb(t, st, "del", "1"); !errors.Is(err, store.ErrNoFraudRule) {
		t.Errorf("del again: %v", err)
	}
}
