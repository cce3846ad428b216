package config

import (
	"strings"
	"testing"

	"switchboard/modules/acc"
)

// TestAccSection: the acc module's section decodes into its settings,
// the default configuration's values are the module's defaults, and its
// errors name file, line and key.
func TestAccSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("acc:\n  file: /tmp/cdr.json\n  format: json\n  file_max_size: 10MiB\n  failed: false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["acc"].(*acc.Settings)
	if s.File != "/tmp/cdr.json" || s.Format != "json" || s.FileMaxSize != "10MiB" || s.Failed || !s.Store || s.QueueSize != 16384 || s.BatchSize != 256 || s.FileKeep != 5 {
		t.Fatalf("settings %+v", s)
	}
	def, err := Load("default.yaml", DefaultYAML, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *def.Modules["acc"].(*acc.Settings), *acc.DefaultSettings(); got != want {
		t.Fatalf("default.yaml %+v, module defaults %+v", got, want)
	}
	for _, tc := range []struct{ src, want string }{
		{"acc:\n  format: xml\n", `x.yaml:2: acc.format: "xml": want csv or json`},
		{"acc:\n  file_max_size: lots\n", "x.yaml:2: acc.file_max_size"},
		{"acc:\n  queue_size: 0\n", "x.yaml:2: acc.queue_size"},
		{"acc:\n  batch_size: 20000\n", "x.yaml:2: acc.batch_size"},
		{"acc:\n  file_keep: -2\n", "x.yaml:2: acc.file_keep"},
		{"acc:\n  extra: [a]\n", "x.yaml:2: acc.extra: unknown key"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}
