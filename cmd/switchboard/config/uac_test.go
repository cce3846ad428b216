package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/uac"
)

// TestUACSection: the uac module's section decodes into its settings,
// and its errors name file, line and key.
func TestUACSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("uac:\n  retry_min: 5s\n  retry_max: 1m\n  max_registrations: 20\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["uac"].(*uac.Settings)
	if s.RetryMin != 5*time.Second || s.RetryMax != time.Minute || s.MaxRegistrations != 20 || s.PollInterval != time.Second {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"uac:\n  retry_max: 1s\n", "x.yaml:2: uac.retry_max: must be between retry_min (30s) and 24h, not 1s"},
		{"uac:\n  max_credentials: 0\n", "x.yaml:2: uac.max_credentials: must be between 1 and 10000000"},
		{"uac:\n  poll_interval: 2m\n", "x.yaml:2: uac.poll_interval: must be between 10ms and 1m"},
		{"uac:\n  retry: 1s\n", "x.yaml:2: uac.retry: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
