package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// PanelUser is one row of the panel_users table: an operator who may log
// in to the web panel on the management listener (mgmt/panel). Hash is
// the password's Argon2id hash in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$key); the password itself is
// never stored.
type PanelUser struct {
	Name    string
	Hash    string
	Role    string // RoleAdmin or RoleReadOnly
	Created int64  // unix seconds
	Updated int64  // unix seconds of the last password or role change
}

// The panel's roles: an admin may run every management command from the
// panel, a read-only user only those that change nothing.
const (
	RoleAdmin    = "admin"
	RoleReadOnly = "read-only"
)

var (
	ErrMalformedPanelUser = errors.New("malformed panel user")
	ErrPanelUserExists    = errors.New("panel user already exists")
	ErrNoPanelUser        = errors.New("no such panel user")
	ErrWrongPassword      = errors.New("wrong password")
)

// MaxPanelUserName is the longest panel user name.
const MaxPanelUserName = 64

// MinPanelPassword is the shortest panel password accepted: the panel
// can change every subscriber and route, and it is reachable from a
// browser, so a short password is refused rather than warned about.
const MinPanelPassword = 10

// CheckPanelUserName accepts 1-64 letters, digits, '-', '_', '.' and '@'.
func CheckPanelUserName(name string) error {
	if name == "" {
		return errorf(ErrMalformedPanelUser, "empty panel user name")
	}
	if len(name) > MaxPanelUserName {
		return errorf(ErrMalformedPanelUser, "panel user %.20q...: longer than %d bytes", name, MaxPanelUserName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@') {
			return errorf(ErrMalformedPanelUser, "panel user %q: invalid character %q (letters, digits, '-', '_', '.', '@')", name, c)
		}
	}
	return nil
}

// CheckPanelRole accepts RoleAdmin and RoleReadOnly.
func CheckPanelRole(role string) error {
	if role != RoleAdmin && role != RoleReadOnly {
		return errorf(ErrMalformedPanelUser, "role %q: want %s or %s", role, RoleAdmin, RoleReadOnly)
	}
	return nil
}

func checkPanelPassword(pw string) error {
	if len(pw) < MinPanelPassword {
		return errorf(ErrMalformedPanelUser, "password: at least %d characters", MinPanelPassword)
	}
	if len(pw) > 1024 {
		return errorf(ErrMalformedPanelUser, "password: longer than 1024 bytes")
	}
	return nil
}

// The Argon2id parameters of new hashes: OWASP's first recommendation
// (19 MiB, 2 passes, 1 lane), about 30 ms on one core. Verification reads
// the parameters from the stored hash, so raising these later keeps old
// hashes working.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
)

// HashPanelPassword returns the Argon2id hash of pw in PHC string format,
// with a random salt.
func HashPanelPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPanelPassword says whether pw matches hash (from
// HashPanelPassword), comparing in constant time. A hash it cannot read
// is an error, not a mismatch. Parameters beyond what this binary would
// write (memory above 256 MiB, more than 10 passes) are refused, so a
// tampered row cannot make a login exhaust the server.
func VerifyPanelPassword(hash, pw string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errors.New("panel password hash: not an argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("panel password hash: unsupported version %q", parts[2])
	}
	var mem, passes uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &passes, &threads); err != nil {
		return false, fmt.Errorf("panel password hash: parameters %q: %v", parts[3], err)
	}
	if mem == 0 || mem > 256*1024 || passes == 0 || passes > 10 || threads == 0 || threads > 16 {
		return false, fmt.Errorf("panel password hash: parameters %q out of bounds", parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("panel password hash: salt: %v", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errors.New("panel password hash: malformed key")
	}
	got := argon2.IDKey([]byte(pw), salt, passes, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// panelUsers is the database work for the panel_users table, which each
// backend implements (panelusers_sql.go).
type panelUsers interface {
	AddPanelUser(ctx context.Context, u *PanelUser) error
	// UpdatePanelUser sets hash (when not empty), role (when not empty)
	// and updated of one user (ErrNoPanelUser).
	UpdatePanelUser(ctx context.Context, name, hash, role string, updated int64) error
	DeletePanelUser(ctx context.Context, name string) error
	// GetPanelUser fills u (ErrNoPanelUser).
	GetPanelUser(ctx context.Context, name string, u *PanelUser) error
	ListPanelUsers(ctx context.Context) ([]PanelUser, error)
}

func (s *Store) panelUsers() (panelUsers, error) {
	p, ok := s.b.(panelUsers)
	if !ok {
		return nil, fmt.Errorf("this storage backend has no panel users")
	}
	return p, nil
}

// AddPanelUser adds a panel user with password pw (hashed here) and role.
func (s *Store) AddPanelUser(ctx context.Context, name, pw, role string) error {
	if err := CheckPanelUserName(name); err != nil {
		return err
	}
	if err := CheckPanelRole(role); err != nil {
		return err
	}
	if err := checkPanelPassword(pw); err != nil {
		return err
	}
	b, err := s.panelUsers()
	if err != nil {
		return err
	}
	hash, err := HashPanelPassword(pw)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	err = b.AddPanelUser(ctx, &PanelUser{Name: name, Hash: hash, Role: role, Created: now, Updated: now})
	if errors.Is(err, ErrPanelUserExists) {
		return errorf(ErrPanelUserExists, "panel user %s exists already", name)
	}
	return err
}

// SetPanelUser changes a panel user's password (when pw is not empty)
// and role (when role is not empty).
func (s *Store) SetPanelUser(ctx context.Context, name, pw, role string) error {
	if err := CheckPanelUserName(name); err != nil {
		return err
	}
	if role != "" {
		if err := CheckPanelRole(role); err != nil {
			return err
		}
	}
	var hash string
	if pw != "" {
		if err := checkPanelPassword(pw); err != nil {
			return err
		}
		var err error
		if hash, err = HashPanelPassword(pw); err != nil {
			return err
		}
	}
	b, err := s.panelUsers()
	if err != nil {
		return err
	}
	return noPanelUser(b.UpdatePanelUser(ctx, name, hash, role, time.Now().Unix()), name)
}

// DeletePanelUser removes a panel user.
func (s *Store) DeletePanelUser(ctx context.Context, name string) error {
	b, err := s.panelUsers()
	if err != nil {
		return err
	}
	return noPanelUser(b.DeletePanelUser(ctx, name), name)
}

// GetPanelUser returns one panel user (ErrNoPanelUser).
func (s *Store) GetPanelUser(ctx context.Context, name string) (PanelUser, error) {
	var u PanelUser
	b, err := s.panelUsers()
	if err != nil {
		return u, err
	}
	return u, noPanelUser(b.GetPanelUser(ctx, name, &u), name)
}

// ListPanelUsers lists the panel users by name.
func (s *Store) ListPanelUsers(ctx context.Context) ([]PanelUser, error) {
	b, err := s.panelUsers()
	if err != nil {
		return nil, err
	}
	return b.ListPanelUsers(ctx)
}

func noPanelUser(err error, name string) error {
	if errors.Is(err, ErrNoPanelUser) {
		return errorf(ErrNoPanelUser, "no panel user %s", name)
	}
	return err
}
