package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/cmd/switchboard/config"
	"switchboard/mgmt"
	"switchboard/store"
)

// TestCtlFindsToken: ctl takes the token from --token, then
// $SWITCHBOARD_MGMT_TOKEN, then mgmt.token, then the file in storage.dir,
// against a management server on loopback; its errors say what to do.
func TestCtlFindsToken(t *testing.T) {
	const good = "good-token-0123456789"
	const bad = "bad-token-0123456789"
	srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: good})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	dir := t.TempDir()
	file := filepath.Join(dir, mgmt.TokenFile)
	ctl := func(env string, args ...string) (int, string, string) {
		t.Helper()
		t.Setenv(tokenEnv, env)
		return runCLI(t, "", append([]string{"ctl", "-o", "json", "-a", srv.Addr(), "--set", "storage.dir=" + dir}, args...)...)
	}

	// No listener configured: that is what ctl reports, not the token.
	if code, _, errs := runCLI(t, "", "ctl", "--set", "mgmt.listen=", "--set", "storage.dir="+dir, "info"); code != 2 || !strings.Contains(errs, "no management address") {
		t.Fatalf("no listener: %d %q", code, errs)
	}
	// No token anywhere: the path, and how to get one.
	code, _, errs := ctl("", "info")
	if code != 2 || !strings.Contains(errs, file+" does not exist") || !strings.Contains(errs, "--token") || !strings.Contains(errs, "-c") {
		t.Fatalf("no token: %d %q", code, errs)
	}
	os.WriteFile(file, []byte("not a token\n"), 0o600)
	if code, _, errs := ctl("", "info"); code != 2 || !strings.Contains(errs, file+" does not hold a management token") {
		t.Fatalf("malformed file: %d %q", code, errs)
	}

	// The file the server created.
	os.WriteFile(file, []byte(good+"\n"), 0o600)
	if code, out, errs := ctl("", "info"); code != 0 || !strings.Contains(out, `"pid"`) {
		t.Fatalf("token from the file: %d %q %q", code, out, errs)
	}
	os.WriteFile(file, []byte(bad+"\n"), 0o600)
	code, _, errs = ctl("", "info")
	if code != 1 || !strings.Contains(errs, "info: 401: wrong token") || !strings.Contains(errs, "the token was read from "+file) {
		t.Fatalf("wrong token in the file: %d %q", code, errs)
	}
	// mgmt.token comes before the file, the environment before mgmt.token,
	// --token before the environment.
	for _, c := range []struct {
		env  string
		args []string
		ok   bool
		says string
	}{
		{"", []string{"--set", "mgmt.token=" + good}, true, ""},
		{"", []string{"--set", "mgmt.token=" + bad}, false, "refused the token from mgmt.token of the embedded default configuration"},
		{good, []string{"--set", "mgmt.token=" + bad}, true, ""},
		{bad, []string{"--set", "mgmt.token=" + good}, false, "refused the token from $" + tokenEnv},
		{bad, []string{"--token", good}, true, ""},
		{good, []string{"--token", bad}, false, "refused the token from --token"},
	} {
		code, _, errs := ctl(c.env, append(c.args, "info")...)
		if (code == 0) != c.ok || !strings.Contains(errs, c.says) {
			t.Errorf("env %q %v: %d %q", c.env, c.args, code, errs)
		}
	}
}

// TestServerToken: mgmt.token overrides the file; without it the server
// creates the file once and keeps it; a malformed file stops the start.
func TestServerToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, mgmt.TokenFile)
	s := &server{cfg: config.Default(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.cfg.Storage.Dir = dir

	s.cfg.Mgmt.Token = "from-config-0123456789"
	if tok, err := s.mgmtToken(); err != nil || tok != "from-config-0123456789" {
		t.Fatalf("mgmt.token: %q %v", tok, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("token file created although mgmt.token is set: %v", err)
	}

	s.cfg.Mgmt.Token = ""
	first, err := s.mgmtToken()
	if err != nil || len(first) != 64 {
		t.Fatalf("created: %q %v", first, err)
	}
	if again, err := s.mgmtToken(); err != nil || again != first {
		t.Fatalf("second start: %q %v", again, err)
	}

	os.WriteFile(file, []byte("x\n"), 0o600)
	if _, err := s.mgmtToken(); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("malformed file: %v", err)
	}

	// No management listener: no token, no file.
	os.Remove(file)
	s.cfg.Mgmt.Listen = ""
	if tok, err := s.mgmtToken(); err != nil || tok != "" {
		t.Fatalf("no listener: %q %v", tok, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("token file created without a listener: %v", err)
	}
}

// TestReadableSecretWarned: a secret file others may read (a copy made
// with cp between nodes) is named in a warning at start; one created by
// the server (0600) is not.
func TestReadableSecretWarned(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	s := &server{cfg: config.Default(), log: slog.New(slog.NewTextHandler(&log, nil))}
	s.cfg.Storage.Dir = dir
	if _, err := store.LoadSecret(filepath.Join(dir, "auth.secret"), "nonce secret"); err != nil {
		t.Fatal(err)
	}
	s.warnReadableSecrets()
	if log.Len() != 0 {
		t.Fatalf("a 0600 secret warned of:\n%s", log.String())
	}
	copied := filepath.Join(dir, "route.secret")
	if err := os.WriteFile(copied, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.warnReadableSecrets()
	if !strings.Contains(log.String(), "route.secret") || strings.Contains(log.String(), "auth.secret") {
		t.Fatalf("warnings:\n%s", log.String())
	}
}
