package store

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// TestLoadSecretRace: processes starting together on one data directory
// agree on one key, and none reads a half-written file.
func TestLoadSecretRace(t *testing.T) {
	for round := 0; round < 20; round++ {
		path := filepath.Join(t.TempDir(), "route.secret")
		keys := make([][]byte, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				keys[i], errs[i] = LoadSecret(path, "route secret")
			}()
		}
		wg.Wait()
		for i := range keys {
			if errs[i] != nil || string(keys[i]) != string(keys[0]) {
				t.Fatalf("round %d: goroutine %d: %v, key differs: %v", round, i, errs[i], string(keys[i]) != string(keys[0]))
			}
		}
	}
}
