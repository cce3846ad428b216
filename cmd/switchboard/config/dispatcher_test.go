package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/dispatcher"
)

// TestDispatcherSection: the dispatcher module's section decodes into its
// settings, and its errors name file, line and key.
func TestDispatcherSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("dispatcher:\n  probe_interval: 500ms\n  probe_timeout: 200ms\n  probe_reply_codes: [404, 501]\n  dispatch_algorithm: weight\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["dispatcher"].(*dispatcher.Settings)
	if s.ProbeInterval != 500*time.Millisecond || s.ProbeTimeout != 200*time.Millisecond || len(s.ProbeReplyCodes) != 2 ||
		s.DispatchAlgorithm != "weight" || s.MaxDestinations != 10_000 {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"dispatcher:\n  probe_reply_codes: [501, 99]\n", "x.yaml:2: dispatcher.probe_reply_codes[1]: 99: want a response code 100-699"},
		{"dispatcher:\n  dispatch_algorithm: random\n", `x.yaml:2: dispatcher.dispatch_algorithm: "random" is not an algorithm`},
		{"dispatcher:\n  probe_interval: 1s\n  probe_timeout: 1s\n", "x.yaml:3: dispatcher.probe_timeout: 1s: must be shorter than probe_interval (1s)"},
		{"dispatcher:\n  probes: 1\n", "x.yaml:2: dispatcher.probes: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
