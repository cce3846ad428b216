package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "route.secret")
	s1, err := LoadSecret(path, "route secret")
	if err != nil || len(s1) != 32 {
		t.Fatalf("create: %v %d", err, len(s1))
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", err, fi.Mode())
	}
	s2, err := LoadSecret(path, "route secret")
	if err != nil || string(s1) != string(s2) {
		t.Fatal("secret changed on reload")
	}
	os.WriteFile(path, []byte("zz\n"), 0o600)
	if _, err := LoadSecret(path, "route secret"); err == nil || !strings.Contains(err.Error(), "route secret: "+path+" is not a hex secret") {
		t.Fatalf("junk secret: %v", err)
	}
}
