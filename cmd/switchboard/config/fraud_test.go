package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/fraud"
)

// TestFraudSection: the fraud module's section decodes into its settings,
// and its errors name file, line and key.
func TestFraudSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("fraud:\n  profile: 3\n  timezone: UTC\n  call_timeout: 90m\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["fraud"].(*fraud.Settings)
	if s.Profile != 3 || s.Timezone != "UTC" || s.CallTimeout != 90*time.Minute || s.MaxCallers != 50_000 {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"fraud:\n  max_callers: 5\n", "x.yaml:2: fraud.max_callers: 5: want 100 to 10000000"},
		{"fraud:\n  timezone: Mars/Olympus\n", `x.yaml:2: fraud.timezone: "Mars/Olympus"`},
		{"fraud:\n  call_timeout: 1s\n", "x.yaml:2: fraud.call_timeout: 1s: want 1m to 48h"},
		{"fraud:\n  profiles: 1\n", "x.yaml:2: fraud.profiles: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
