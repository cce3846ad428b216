package mgmt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"switchboard/store"
)

// TokenFile is the name of the token file in the data directory: the
// server creates it when mgmt.token is empty, `switchboard ctl` reads it.
const TokenFile = "mgmt.token"

// MinTokenLen is the shortest token accepted, from the file or the
// configuration: 16 characters leave no room for guessing over HTTP.
const MinTokenLen = 16

// CheckToken says why s cannot be a bearer token, or returns nil. A token
// is what RFC 6750 allows after "Bearer " (letters, digits and -._~+/,
// then '=' padding), so it passes through the header unchanged.
func CheckToken(s string) error {
	if len(s) < MinTokenLen {
		return fmt.Errorf("a token needs at least %d characters, this one has %d", MinTokenLen, len(s))
	}
	if len(s) > 512 {
		return fmt.Errorf("a token has at most 512 characters, this one has %d", len(s))
	}
	body := strings.TrimRight(s, "=")
	if body == "" {
		return errors.New("a token cannot be only '=' padding")
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
		if !ok {
			return fmt.Errorf("a token may hold letters, digits and -._~+/ (then = padding), not %q", c)
		}
	}
	return nil
}

// ReadTokenFile reads the token at path. A missing file is an error that
// wraps os.ErrNotExist; a file that holds no valid token is an error that
// names the path and says how to repair it.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if err := CheckToken(tok); err != nil {
		return "", fmt.Errorf("%s does not hold a management token (%v); delete it and restart the server to create a new one, or set mgmt.token", path, err)
	}
	return tok, nil
}

// LoadOrCreateToken returns the token in path, creating the file with a
// random token (32 bytes, hex) and mode 0600 when it does not exist.
// created says whether this call wrote it.
//
// The file appears complete or not at all (store.CreateFileOnce): two
// processes starting on the same data directory end up with the same
// token, and neither can read a half-written file.
func LoadOrCreateToken(path string) (tok string, created bool, err error) {
	tok, err = ReadTokenFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return tok, false, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", false, err
	}
	tok = hex.EncodeToString(b)
	created, err = store.CreateFileOnce(path, []byte(tok+"\n"))
	if err != nil {
		return "", false, fmt.Errorf("creating the management token %s: %w", path, err)
	}
	if !created { // another process was first: use its token
		tok, err = ReadTokenFile(path)
		return tok, false, err
	}
	return tok, true, nil
}
