package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("timers:\n  t1: 250ms\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("timers:\n  t1: 250ms\n  tx: 1s\n"), 0o644)

	if code, out, errs := runCLI(t, "", "check-config", "-c", good); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("good config: %d %q %q", code, out, errs)
	}
	code, _, errs := runCLI(t, "", "check-config", "-c", bad)
	if code != 2 || !strings.Contains(errs, "bad.yaml:3: timers.tx: unknown key") {
		t.Fatalf("bad config: %d %q", code, errs)
	}
	code, _, errs = runCLI(t, "", "check-config", "--set", "log.level=loud")
	if code != 2 || !strings.Contains(errs, "log.level: must be debug, info, warn or error") {
		t.Fatalf("bad override: %d %q", code, errs)
	}
	code, _, errs = runCLI(t, "", "check-config", "-c", filepath.Join(dir, "missing.yaml"))
	if code != 2 || !strings.Contains(errs, "missing.yaml") {
		t.Fatalf("missing file: %d %q", code, errs)
	}
}

func TestConfigDefaultAndVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "config-default")
	if code != 0 || !strings.Contains(out, "listen:") {
		t.Fatalf("config-default: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "switchboard ") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, _, errs := runCLI(t, "", "frobnicate")
	if code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
}

func TestUserAndDomainCommands(t *testing.T) {
	dir := t.TempDir()
	set := "storage.dir=" + dir
	must := func(stdin string, args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, stdin, append(args, "--set", set)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		return out
	}
	fail := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errs := runCLI(t, "", append(args, "--set", set)...)
		if code != wantCode || !strings.Contains(errs, wantErr) {
			t.Fatalf("%v: exit %d, stderr %q; want %d and %q", args, code, errs, wantCode, wantErr)
		}
	}

	fail(1, "example.com", "user", "add", "alice@example.com", "--password", "pw")
	must("", "domain", "add", "example.com")
	if out := must("", "domain", "list"); !strings.Contains(out, "example.com") {
		t.Fatalf("domain list: %q", out)
	}
	must("", "user", "add", "alice@example.com", "--password", "secret1", "--email", "a@example.com")
	must("s3cret\n", "user", "add", "bob@example.com", "--password-stdin")
	must("typed\n", "user", "add", "carol@example.com")
	fail(1, "exists", "user", "add", "alice@example.com", "--password", "x")
	fail(2, "not USER@DOMAIN", "user", "add", "alice", "--password", "x")
	fail(2, "no password given", "user", "add", "dave@example.com", "--password-stdin")

	out := must("", "user", "list", "example.com")
	for _, u := range []string{"alice@example.com", "bob@example.com", "carol@example.com", "a@example.com"} {
		if !strings.Contains(out, u) {
			t.Fatalf("user list lacks %s:\n%s", u, out)
		}
	}
	must("", "user", "passwd", "alice@example.com", "--password", "new")
	must("", "user", "del", "bob@example.com")
	fail(1, "bob", "user", "del", "bob@example.com")
	if out := must("", "user", "list"); strings.Contains(out, "bob@") {
		t.Fatalf("deleted user still listed:\n%s", out)
	}
}
