package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/dialog"
)

// TestDialogSection: the dialog module's section decodes into its
// settings, profiles included, and its errors name file, line and key.
func TestDialogSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("dialog:\n  default_timeout: 2s\n  profiles:\n    - {name: caller, with_value: true, value: from_user, limit: 2}\n    - {name: inbound}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["dialog"].(*dialog.Settings)
	if s.DefaultTimeout != 2*time.Second || s.MaxDialogs != 200_000 || len(s.Profiles) != 2 || s.Profiles[0].Limit != 2 || !s.Profiles[0].WithValue || s.Profiles[1].Name != "inbound" ||
		!s.Persist || s.WriteInterval != time.Second || s.DrainTimeout != 0 {
		t.Fatalf("settings %+v", s)
	}
	cfg, err = Load("x.yaml", []byte("dialog:\n  persist: false\n  write_interval: 250ms\n  drain_timeout: 30s\n  ping_interval: 30s\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Modules["dialog"].(*dialog.Settings); s.Persist || s.WriteInterval != 250*time.Millisecond || s.DrainTimeout != 30*time.Second || s.PingInterval != 30*time.Second {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct{ src, want string }{
		{"dialog:\n  default_timeout: 0s\n", "x.yaml:2: dialog.default_timeout: 0s: want 1s to 168h"},
		{"dialog:\n  max_dialogs: 0\n", "x.yaml:2: dialog.max_dialogs: 0"},
		{"dialog:\n  profiles:\n    - {name: \"a b\"}\n", "x.yaml:3: dialog.profiles[0].name"},
		{"dialog:\n  profiles:\n    - {name: a, value: from_user}\n", "x.yaml:3: dialog.profiles[0].value"},
		{"dialog:\n  profiles:\n    - {name: a, with_value: true, limit: 3}\n", "x.yaml:3: dialog.profiles[0].limit"},
		{"dialog:\n  timeout: 1s\n", "x.yaml:2: dialog.timeout: unknown key"},
		{"dialog:\n  write_interval: 1ms\n", "x.yaml:2: dialog.write_interval: 1ms: want 10ms to 10m"},
		{"dialog:\n  drain_timeout: -1s\n", "x.yaml:2: dialog.drain_timeout: -1s: want 0"},
		{"dialog:\n  persist: maybe\n", "x.yaml:2: dialog.persist"},
		{"dialog:\n  ping_interval: 500ms\n", "x.yaml:2: dialog.ping_interval: 500ms: want 0 (no pings) or 1s to 1h"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
