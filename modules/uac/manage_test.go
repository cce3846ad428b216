package uac

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/store"
)

func runCLI(t *testing.T, st *store.Store, verb string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := cliCommands[verb].Run(ctx, st, args, &out)
	return out.String(), err
}

// The CLI writes to the store from another process; the running module
// takes the change within poll_interval, and drops a deleted credential.
func TestCredentialsReloadWithoutRestart(t *testing.T) {
	f := build(t, nil, nil, nil)
	cli, err := store.Open(f.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	out, err := runCLI(t, cli, "cred-add", "trunk1", "--gateway", "192.0.2.10:5060", "--realm", "carrier.example", "--password", "s3cret")
	if err != nil || !strings.Contains(out, "added credential 1: user trunk1 realm \"carrier.example\" gateway 192.0.2.10:5060 (password)") {
		t.Fatalf("cred-add: %q %v", out, err)
	}
	gw := netip.MustParseAddrPort("192.0.2.10:5060")
	waitFor(t, 2*time.Second, "credential in use", func() bool { return f.u.creds.Load().lookup(gw, []byte("carrier.example"), true) != nil })
	if f.u.creds.Load().lookup(netip.MustParseAddrPort("192.0.2.10:5070"), []byte("carrier.example"), true) != nil {
		t.Error("a credential bound to port 5060 answers for 5070")
	}
	out, _ = runCLI(t, cli, "cred-list")
	if !strings.Contains(out, "trunk1") || strings.Contains(out, "s3cret") {
		t.Errorf("cred-list shows:\n%s", out)
	}
	if _, err := runCLI(t, cli, "cred-del", "1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "credential dropped", func() bool { return f.u.creds.Load().n == 0 })
}

func TestCLIErrors(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range []struct {
		verb  string
		args  []string
		usage bool
		words string
	}{
		{"cred-add", nil, true, "one username"},
		{"cred-add", []string{"u", "--nope"}, true, "nope"},
		{"cred-add", []string{"u", "--gateway", "gw.example", "--password", "x"}, false, `gateway "gw.example"`},
		{"cred-add", []string{"u", "--password", "x"}, false, "realm and gateway"},
		{"cred-del", []string{"x"}, true, "positive numbers"},
		{"cred-del", []string{"9"}, false, "uac credential 9 does not exist"},
		{"reg-add", []string{"sip:a@b"}, false, "registrar: empty"},
		{"reg-add", []string{"sip:a@b", "--registrar", "b", "--expires", "5"}, false, "expires 5"},
		{"reg-list", []string{"x"}, true, "no arguments"},
	} {
		_, err := runCLI(t, st, c.verb, c.args...)
		var ke *modules.KeyError
		if err == nil || errors.As(err, &ke) != c.usage || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s %q: %v (usage error: %v), want %q", c.verb, c.args, err, errors.As(err, &ke), c.words)
		}
	}
	out, err := runCLI(t, st, "reg-add", "sip:+4930123@carrier.example", "--registrar", "carrier.example", "--password", "pw")
	if err != nil || !strings.Contains(out, "added registration 1: sip:+4930123@carrier.example at sip:carrier.example") {
		t.Fatalf("reg-add: %q %v", out, err)
	}
	out, _ = runCLI(t, st, "reg-list")
	if !strings.Contains(out, "sip:+4930123@carrier.example") || strings.Contains(out, " pw") {
		t.Errorf("reg-list:\n%s", out)
	}
}

func TestSettingsChecked(t *testing.T) {
	for key, edit := range map[string]func(s *Settings){
		"poll_interval":     func(s *Settings) { s.PollInterval = time.Hour },
		"max_credentials":   func(s *Settings) { s.MaxCredentials = 0 },
		"max_registrations": func(s *Settings) { s.MaxRegistrations = -1 },
		"retry_min":         func(s *Settings) { s.RetryMin = time.Millisecond },
		"retry_max":         func(s *Settings) { s.RetryMax = time.Second },
	} {
		s := defaultSettings().(*Settings)
		edit(s)
		var ke *modules.KeyError
		if err := checkSettings(s); !errors.As(err, &ke) || ke.Key != key {
			t.Errorf("%s: %v", key, err)
		}
	}
	if err := checkSettings(defaultSettings()); err != nil {
		t.Fatal(err)
	}
}

// TestReloadMaxBelowTables: a reload that lowers max_credentials or
// max_registrations below the rows of the table in the store is refused
// by CheckReload, naming the key, as every other module's limit below its
// table is (docs/configuration.md, Reload): it was taken as applied, and
// from then on every change to that table failed to load (an operator's
// new credential never used, an error at each poll) until the limit was
// raised again.
func TestReloadMaxBelowTables(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		for _, u := range []string{"trunk1", "trunk2"} {
			if _, err := st.AddUACCredential(ctx, store.UACCredential{Realm: u + ".example", Username: u, Password: "s3cret"}); err != nil {
				t.Fatal(err)
			}
		}
		for _, aor := range []string{"sip:+4930100@carrier.example", "sip:+4930101@carrier.example"} {
			if _, err := st.AddUACRegistration(ctx, store.UACRegistration{AOR: aor, Registrar: "sip:carrier.example", Password: "pw"}); err != nil {
				t.Fatal(err)
			}
		}
	}, nil)
	for _, c := range []struct {
		key  string
		edit func(*Settings)
	}{
		{"max_credentials", func(s *Settings) { s.MaxCredentials = 1 }},
		{"max_registrations", func(s *Settings) { s.MaxRegistrations = 1 }},
	} {
		s := defaultSettings().(*Settings)
		s.PollInterval = 20 * time.Millisecond
		c.edit(s)
		var ke *modules.KeyError
		if err := f.u.CheckReload(s); !errors.As(err, &ke) || ke.Key != c.key {
			t.Errorf("%s below the table's 2 rows: CheckReload %v, want an error naming it", c.key, err)
		}
	}
	s := defaultSettings().(*Settings)
	s.PollInterval = 20 * time.Millisecond
	s.MaxCredentials, s.MaxRegistrations = 2, 2 // as many as the tables hold
	if err := f.u.CheckReload(s); err != nil {
		t.Fatalf("limits the tables fit: %v", err)
	}
}
