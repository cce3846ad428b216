package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// PanelSession is one row of the panel_sessions table: a web panel
// session (mgmt/panel), kept in the store so that it outlives a restart
// and is valid on every node sharing the store.
type PanelSession struct {
	// ID is PanelSessionID of the session cookie's token. The token
	// itself is never stored: reading the table gives no one a session.
	ID string
	// User is the panel user's name.
	User string
	// CSRF is the token every POST of the session must carry.
	CSRF string
	// PasswordTag is PanelPasswordTag of the user's password hash at
	// login: a changed password ends the session.
	PasswordTag string
	// Created and Expires are unix seconds. The panel moves Expires on
	// while the session is used.
	Created, Expires int64
}

// ErrNoPanelSession: no session with that id (ended, expired, swept).
var ErrNoPanelSession = errors.New("no such panel session")

// PanelSessionID is the id a session cookie's token is stored under: its
// SHA-256, in hex.
func PanelSessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// PanelPasswordTag is what a session keeps of its user's password hash to
// notice a change: the first 16 bytes of its SHA-256, in hex.
func PanelPasswordTag(hash string) string {
	h := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(h[:16])
}

// panelSessions is the database work for the panel_sessions table
// (panelsessions_sql.go). No change log entry: the panel reads a session
// when a request brings a cookie it does not hold, and re-reads the ones
// it holds every RecheckEvery.
type panelSessions interface {
	AddPanelSession(ctx context.Context, s *PanelSession) error
	// GetPanelSession fills s (ErrNoPanelSession).
	GetPanelSession(ctx context.Context, id string, s *PanelSession) error
	// TouchPanelSession sets the session's expiry (ErrNoPanelSession).
	TouchPanelSession(ctx context.Context, id string, expires int64) error
	DeletePanelSession(ctx context.Context, id string) error
	// DeleteExpiredPanelSessions deletes the sessions that expired
	// before now and returns how many.
	DeleteExpiredPanelSessions(ctx context.Context, now int64) (int64, error)
}

// HasPanelSessions reports whether the backend keeps panel sessions
// (every backend but the OpenSIPS schema mode's, which has no panel
// tables).
func (s *Store) HasPanelSessions() bool {
	_, ok := s.b.(panelSessions)
	return ok
}

func (s *Store) panelSessions() (panelSessions, error) {
	p, ok := s.b.(panelSessions)
	if !ok {
		return nil, notInSchema("panel_sessions")
	}
	return p, nil
}

// AddPanelSession stores a new session.
func (s *Store) AddPanelSession(ctx context.Context, ps PanelSession) error {
	b, err := s.panelSessions()
	if err != nil {
		return err
	}
	return b.AddPanelSession(ctx, &ps)
}

// GetPanelSession returns the session with id; ErrNoPanelSession when
// there is none.
func (s *Store) GetPanelSession(ctx context.Context, id string) (PanelSession, error) {
	var ps PanelSession
	b, err := s.panelSessions()
	if err != nil {
		return ps, err
	}
	err = b.GetPanelSession(ctx, id, &ps)
	return ps, err
}

// TouchPanelSession moves the expiry of the session with id;
// ErrNoPanelSession when it has ended.
func (s *Store) TouchPanelSession(ctx context.Context, id string, expires int64) error {
	b, err := s.panelSessions()
	if err != nil {
		return err
	}
	return b.TouchPanelSession(ctx, id, expires)
}

// DeletePanelSession ends the session with id (none: no error).
func (s *Store) DeletePanelSession(ctx context.Context, id string) error {
	b, err := s.panelSessions()
	if err != nil {
		return err
	}
	return b.DeletePanelSession(ctx, id)
}

// DeleteExpiredPanelSessions deletes the sessions that expired before now
// (unix seconds) and returns how many.
func (s *Store) DeleteExpiredPanelSessions(ctx context.Context, now int64) (int64, error) {
	b, err := s.panelSessions()
	if err != nil {
		return 0, err
	}
	return b.DeleteExpiredPanelSessions(ctx, now)
}
