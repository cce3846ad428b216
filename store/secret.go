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
// once (CreateFileOnce) so that two processes starting together agree on
// one. Keys
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
	created, err := CreateFileOnce(path, []byte(hex.EncodeToString(s)+"\n"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !created { // another process was first: use its key
		return LoadSecret(path, what)
	}
	return s, nil
}

// CreateFileOnce writes data to path with mode 0600 unless path exists,
// and reports whether it did. The file appears whole or not at all: data
// is written to a private temporary file in the same directory, synced,
// and linked to path; link(2) fails when path exists, as O_EXCL does. So
// two processes starting on one data directory end up with the same file,
// and neither can read it half-written. The directory is created (0700)
// when missing.
func CreateFileOnce(path string, data []byte) (created bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*") // O_EXCL, mode 0600
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
