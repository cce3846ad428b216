package config

import (
	"strings"
	"testing"

	"switchboard/modules/topohiding"
)

// TestTopohidingSection: the topohiding module's section decodes into its
// settings, the default configuration's values are the module's
// defaults, and its errors name file, line and key.
func TestTopohidingSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("topohiding:\n  calls: true\n  trunks: true\n  param: th\n  contact_user: sbc\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := *cfg.Modules["topohiding"].(*topohiding.Settings); s != (topohiding.Settings{Calls: true, Trunks: true, Param: "th", ContactUser: "sbc"}) {
		t.Fatalf("settings %+v", s)
	}
	def, err := Load("default.yaml", DefaultYAML, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *def.Modules["topohiding"].(*topohiding.Settings), *topohiding.DefaultSettings(); got != want {
		t.Fatalf("default.yaml %+v, module defaults %+v", got, want)
	}
	for _, tc := range []struct{ src, want string }{
		{"topohiding:\n  param: \"\"\n", `x.yaml:2: topohiding.param: "": want 1 to 32 letters`},
		{"topohiding:\n  param: lr\n", `x.yaml:2: topohiding.param: "lr"`},
		{"topohiding:\n  contact_user: \"a@b\"\n", `x.yaml:2: topohiding.contact_user: "a@b"`},
		{"topohiding:\n  calls: maybe\n", "x.yaml:2: topohiding.calls"},
		{"topohiding:\n  trunks: 1s\n", "x.yaml:2: topohiding.trunks"},
		{"topohiding:\n  hide: true\n", "x.yaml:2: topohiding.hide: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
