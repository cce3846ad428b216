package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/nathelper" // its section is in default.yaml
)

// TestNathelperSection: the section decodes into the module's settings
// (defaults for the keys left out), and a bad value is reported with
// file, line and key.
func TestNathelperSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("nathelper:\n  nat_tests: [\"19\", private-sdp]\n  fix_sdp: [rewrite-media-ip]\n  ping_interval: 20s\n  ping_method: crlf\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["nathelper"].(*nathelper.Settings)
	if !s.Enabled || len(s.NATTests) != 2 || s.FixSDP[0] != "rewrite-media-ip" || s.PingInterval != 20*time.Second ||
		s.PingMethod != "crlf" || s.PingTimeout != 5*time.Second || s.PingFailures != 3 {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"nathelper:\n  nat_tests: [private_contact]\n", "x.yaml:2: nathelper.nat_tests[0]: unknown test"},
		{"nathelper:\n  fix_sdp: [rewrite-media-ip, 0x40]\n", "x.yaml:2: nathelper.fix_sdp[1]: unknown change"},
		{"nathelper:\n  ping_interval: 10ms\n", "x.yaml:2: nathelper.ping_interval: must be 0"},
		{"nathelper:\n  ping_method: stun\n", "x.yaml:2: nathelper.ping_method: must be options, crlf or null"},
		{"nathelper:\n  ping_interval: 4s\n", "x.yaml:2: nathelper.ping_timeout: must be at least 100ms and below"},
		{"nathelper:\n  ping_failures: 101\n", "x.yaml:2: nathelper.ping_failures"},
		{"nathelper:\n  ping_from: alice\n", "x.yaml:2: nathelper.ping_from"},
		{"nathelper:\n  interval: 1s\n", "x.yaml:2: nathelper.interval: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
