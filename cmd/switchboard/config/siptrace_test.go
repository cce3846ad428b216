package config

import (
	"strings"
	"testing"

	"switchboard/modules/siptrace"
)

// TestSiptraceSection: the siptrace module's section decodes into its
// settings, and its errors name file, line and key.
func TestSiptraceSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("siptrace:\n  collectors: [\"127.0.0.1:9060\", \"tcp:[::1]:9061\"]\n  mode: sample\n  sample_rate: 0.5\n  password: pw\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["siptrace"].(*siptrace.Settings)
	if len(s.Collectors) != 2 || s.Mode != "sample" || s.SampleRate != 0.5 || s.Password != "pw" || s.NodeID != 1 || s.QueueSize != 1024 {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"siptrace:\n  collectors: [homer:9060]\n", `x.yaml:2: siptrace.collectors[0]: "homer:9060": want ip:port`},
		{"siptrace:\n  mode: some\n", `x.yaml:2: siptrace.mode: must be all, route, sample or off, not "some"`},
		{"siptrace:\n  sample_rate: 2\n", "x.yaml:2: siptrace.sample_rate: must be above 0 and at most 1"},
		{"siptrace:\n  queue_size: 1\n", "x.yaml:2: siptrace.queue_size: must be between 16 and 1048576"},
		{"siptrace:\n  collector: []\n", "x.yaml:2: siptrace.collector: unknown key"},
		// Checked at load, so that a reload narrowing outbound.allow (applied
		// live) past a collector is refused whole.
		{"outbound:\n  allow: [127.0.0.0/8]\nsiptrace:\n  collectors: [\"127.0.0.1:9060\", \"tcp:192.0.2.9:9061\"]\n",
			"x.yaml:4: siptrace.collectors[1]: 192.0.2.9:9061 is outside outbound.allow"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
