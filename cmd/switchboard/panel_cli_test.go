package main

import (
	"strings"
	"testing"
)

// TestPanelUserCLI: switchboard panel user add, passwd, role, list, del
// on the store, with the store's refusals as errors.
func TestPanelUserCLI(t *testing.T) {
	st := "storage.dir=" + t.TempDir()
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
		out   string
	}{
		{"", []string{"add", "ops", "--password", "ops password 1", "--set", st}, 0, "added panel user ops (admin)"},
		{"noc password 1\n", []string{"add", "noc", "--role", "read-only", "--password-stdin", "--set", st}, 0, "added panel user noc (read-only)"},
		{"", []string{"add", "ops", "--password", "ops password 1", "--set", st}, 1, "panel user ops exists already"},
		{"", []string{"add", "x", "--password", "short", "--set", st}, 1, "password: at least 10 characters"},
		{"", []string{"add", "x", "--password", "long enough pw", "--role", "root", "--set", st}, 1, `role "root": want admin or read-only`},
		{"", []string{"passwd", "noc", "--password", "new noc password", "--set", st}, 0, "password changed for panel user noc"},
		{"", []string{"passwd", "nobody", "--password", "new noc password", "--set", st}, 1, "no panel user nobody"},
		{"", []string{"role", "noc", "admin", "--set", st}, 0, "panel user noc is admin"},
		{"", []string{"list", "--set", st}, 0, "noc   admin"},
		{"", []string{"del", "noc", "--set", st}, 0, "deleted panel user noc"},
		{"", []string{"del", "noc", "--set", st}, 1, "no panel user noc"},
		{"", []string{"frobnicate", "--set", st}, 2, "unknown subcommand"},
	} {
		code, out, errs := runCLI(t, c.stdin, append([]string{"panel", "user"}, c.args...)...)
		if code != c.code || !strings.Contains(out+errs, c.out) {
			t.Errorf("panel user %s: %d %q %q, want %d and %q", strings.Join(c.args, " "), code, out, errs, c.code, c.out)
		}
	}
	if code, out, _ := runCLI(t, "", "panel", "user", "list", "--set", st); code != 0 || strings.Contains(out, "noc") || !strings.Contains(out, "ops") {
		t.Fatalf("list after del: %q", out)
	}
	if code, _, errs := runCLI(t, "", "panel"); code != 2 || !strings.Contains(errs, "switchboard panel user add NAME") {
		t.Fatalf("usage: %d %q", code, errs)
	}
}
