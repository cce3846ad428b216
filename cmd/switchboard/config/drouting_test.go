package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/drouting"
)

// TestDroutingSection: the drouting module's section decodes into its
// settings, and its errors name file, line and key.
func TestDroutingSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("drouting:\n  group: 2\n  fr_timeout: 3s\n  probe_reply_codes: [404]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["drouting"].(*drouting.Settings)
	if s.Group != 2 || s.FRTimeout != 3*time.Second || len(s.ProbeReplyCodes) != 1 || s.MaxCalls != 65536 {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"drouting:\n  max_calls: 5\n", "x.yaml:2: drouting.max_calls: 5: want 1024 to"},
		{"drouting:\n  probe_interval: 1ms\n", "x.yaml:2: drouting.probe_interval: 1ms"},
		{"drouting:\n  probe_reply_codes: [200, 7]\n", "x.yaml:2: drouting.probe_reply_codes[1]: 7"},
		{"drouting:\n  groups: 1\n", "x.yaml:2: drouting.groups: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}

// TestProviderDialplanID: provider.dialplan_id defaults to -1 (none) and
// takes a dialplan id; below -1 is refused naming the key.
func TestProviderDialplanID(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("domains: [example.com]\n"), nil)
	if err != nil || cfg.Provider.DialplanID != -1 {
		t.Fatalf("default: %d %v", cfg.Provider.DialplanID, err)
	}
	if cfg, err := Load("x.yaml", []byte("provider:\n  dialplan_id: 3\n"), nil); err != nil || cfg.Provider.DialplanID != 3 {
		t.Fatalf("3: %v", err)
	}
	if _, err := Load("x.yaml", []byte("provider:\n  dialplan_id: -2\n"), nil); err == nil || !strings.Contains(err.Error(), "provider.dialplan_id") {
		t.Fatalf("-2: %v", err)
	}
}
