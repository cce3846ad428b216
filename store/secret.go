package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadSecret reads a key the server keeps in its data directory (the
// nonce secret of digest authentication, the Record-Route signing key),
// creating it on first use: 32 random bytes, hex, mode 0600, created
// exclusively so that two processes starting together agree on one. Keys
// on disk keep nonces and signed routes valid across a restart, and can be
// copied to every node that must accept them. what names the key in
// errors.
func LoadSecret(path, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(s) < 16 {
			return nil, fmt.Errorf("%s: %s is not a hex secret of at least 16 bytes; delete it to create a new one", what, path)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process created it first
			return LoadSecret(path, what)
		}
		return nil, fmt.Errorf("%s: creating %s: %w", what, path, err)
	}
	_, err = f.WriteString(hex.EncodeToString(s) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: writing %s: %w", what, path, err)
	}
	return s, nil
}
