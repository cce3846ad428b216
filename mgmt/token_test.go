package mgmt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", TokenFile) // the directory does not exist yet
	tok, created, err := LoadOrCreateToken(path)
	if err != nil || !created {
		t.Fatalf("first start: %q %v %v", tok, created, err)
	}
	if len(tok) != 64 || CheckToken(tok) != nil {
		t.Fatalf("generated token %q", tok)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != tok+"\n" {
		t.Fatalf("file holds %q", b)
	}
	again, created, err := LoadOrCreateToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("second start: %q %v %v, want %q", again, created, err, tok)
	}
	if got, err := ReadTokenFile(path); err != nil || got != tok {
		t.Fatalf("ReadTokenFile: %q %v", got, err)
	}
}

// TestLoadOrCreateTokenRace: processes starting together on one data
// directory agree on one token, and no temporary file is left.
func TestLoadOrCreateTokenRace(t *testing.T) {
	for round := 0; round < 20; round++ {
		dir := t.TempDir()
		path := filepath.Join(dir, TokenFile)
		const n = 8
		toks := make([]string, n)
		var creators sync.WaitGroup
		var mu sync.Mutex
		made := 0
		for i := range n {
			creators.Add(1)
			go func() {
				defer creators.Done()
				tok, created, err := LoadOrCreateToken(path)
				if err != nil {
					t.Error(err)
				}
				toks[i] = tok
				if created {
					mu.Lock()
					made++
					mu.Unlock()
				}
			}()
		}
		creators.Wait()
		if made != 1 {
			t.Fatalf("%d callers created the file", made)
		}
		for _, tok := range toks {
			if tok != toks[0] {
				t.Fatalf("callers disagree: %q", toks)
			}
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("files left: %v", ents)
		}
	}
}

func TestTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadTokenFile(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for _, content := range []string{"", "\n", "short\n", "has space in the middle of it\n", strings.Repeat("é", 20)} {
		path := filepath.Join(dir, TokenFile)
		os.WriteFile(path, []byte(content), 0o600)
		_, _, err := LoadOrCreateToken(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "delete it") {
			t.Fatalf("content %q: %v", content, err)
		}
		// The server does not replace a file it cannot read.
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Fatalf("content %q replaced by %q", content, b)
		}
	}
	// An operator's own token is kept as written (without the newline).
	path := filepath.Join(dir, TokenFile)
	os.WriteFile(path, []byte("my-own.token_0123456789+/==\n"), 0o600)
	if tok, created, err := LoadOrCreateToken(path); err != nil || created || tok != "my-own.token_0123456789+/==" {
		t.Fatalf("own token: %q %v %v", tok, created, err)
	}
}

func TestCheckToken(t *testing.T) {
	for tok, ok := range map[string]bool{
		"0123456789abcdef":                  true,
		"A-Za-z0-9._~+/xxxxx==":             true,
		"0123456789abcde":                   false, // 15
		"================":                  false,
		"0123456789abcdef ":                 false,
		"0123456789abcdef\r\nX-Injected: 1": false,
		"0123456789\"abcdef":                false,
		strings.Repeat("a", 512):            true,
		strings.Repeat("a", 513):            false,
	} {
		if err := CheckToken(tok); (err == nil) != ok {
			t.Errorf("%q: %v", tok, err)
		}
	}
}
