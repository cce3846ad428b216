package config

import (
	"strings"
	"testing"
	"time"

	// Their sections are in default.yaml.
	"switchboard/modules/aliases"
	"switchboard/modules/dialplan"
	"switchboard/modules/groups"
)

// TestDialplanAliasesGroupsSections: the three sections decode into their
// modules' settings, and a bad value is reported with file, line and key.
func TestDialplanAliasesGroupsSections(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("dialplan:\n  poll_interval: 250ms\n  max_rules: 5000\naliases:\n  max_entries: 10\ngroups:\n  poll_interval: 2s\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Modules["dialplan"].(*dialplan.Settings); d.PollInterval != 250*time.Millisecond || d.MaxRules != 5000 {
		t.Errorf("dialplan: %+v", d)
	}
	if a := cfg.Modules["aliases"].(*aliases.Settings); a.MaxEntries != 10 || a.PollInterval != time.Second {
		t.Errorf("aliases: %+v", a)
	}
	if g := cfg.Modules["groups"].(*groups.Settings); g.PollInterval != 2*time.Second || g.MaxEntries != 1_000_000 {
		t.Errorf("groups: %+v", g)
	}
	for _, tc := range []struct{ src, want string }{
		{"dialplan:\n  poll_interval: 1ms\n", "x.yaml:2: dialplan.poll_interval: 1ms: want 10ms to 1m"},
		{"dialplan:\n  max_rules: 0\n", "x.yaml:2: dialplan.max_rules: 0: want 1 to 100000000"},
		{"dialplan:\n  rules: 3\n", "x.yaml:2: dialplan.rules: unknown key"},
		{"aliases:\n  max_entries: -1\n", "x.yaml:2: aliases.max_entries: -1: want 1 to 100000000"},
		{"groups:\n  poll_interval: 2m\n", "x.yaml:2: groups.poll_interval: 2m0s: want 10ms to 1m"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %s...", tc.src, err, tc.want)
		}
	}
}
