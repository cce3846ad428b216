package panel

import (
	"context"
	"errors"
	"net/http"
	"time"

	"switchboard/store"
)

// Sessions live in memory, and, with Config.Sessions, in the store: a
// session outlives a restart and is good on every node sharing the store
// (behind a load balancer). The store holds the SHA-256 of the cookie's
// token, never the token. A node that meets a cookie it does not hold
// reads it from the store; a node that holds one re-reads its user and
// moves its expiry in the store every RecheckEvery, so a logout, a
// deleted user or a changed password on any node ends it everywhere
// within that time.
//
// A session also ends SessionLifetime after its login however busy it is
// (OWASP's absolute timeout): its idle expiry is never moved past that
// end, here or in the store, and a node reading it from the store checks
// the end from the row's creation time itself.

// Sessions keeps sessions in the store: store.Store.
type Sessions interface {
	AddPanelSession(ctx context.Context, s store.PanelSession) error
	GetPanelSession(ctx context.Context, id string) (store.PanelSession, error)
	TouchPanelSession(ctx context.Context, id string, expires int64) error
	DeletePanelSession(ctx context.Context, id string) error
	DeleteExpiredPanelSessions(ctx context.Context, now int64) (int64, error)
}

// sessionOf returns the request's live session, or nil. It extends the
// session, and every RecheckEvery re-reads its user (and its row) from
// the store.
func (p *Panel) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	now := p.cfg.Now()
	p.mu.Lock()
	s := p.sessions[c.Value]
	if s != nil && now.After(s.expires) {
		delete(p.sessions, s.id)
		s = nil
	}
	if s == nil {
		p.mu.Unlock()
		return p.load(r.Context(), c.Value)
	}
	s.expires = p.lastUntil(s.created, now)
	recheck := now.Sub(s.checked) >= RecheckEvery
	if recheck {
		s.checked = now
	}
	p.mu.Unlock()
	if recheck {
		return p.recheck(r.Context(), s)
	}
	return s
}

// lastUntil is the expiry of a session created at created and used at
// now: the idle timeout, but never past the session's lifetime.
func (p *Panel) lastUntil(created, now time.Time) time.Time {
	return minTime(now.Add(p.cfg.SessionTTL), created.Add(p.cfg.SessionLifetime))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// tokenLen is the length of randomToken's text.
const tokenLen = 43

// load reads a session this process does not hold from the store: one
// made on another node, or before a restart. It is used when it has not
// expired and its user still has the password of the login.
func (p *Panel) load(ctx context.Context, token string) *session {
	if p.cfg.Sessions == nil || len(token) != tokenLen {
		return nil // not a token of ours: no need to ask the store
	}
	now := p.cfg.Now()
	ps, err := p.cfg.Sessions.GetPanelSession(ctx, store.PanelSessionID(token))
	if err != nil {
		if !errors.Is(err, store.ErrNoPanelSession) {
			p.log.Warn("panel: reading a session from the store failed", "err", err)
		}
		return nil
	}
	if now.Unix() > ps.Expires {
		return nil
	}
	created := time.Unix(ps.Created, 0)
	if now.After(created.Add(p.cfg.SessionLifetime)) {
		// Past its lifetime whatever the row's expiry says (a row of an
		// older version, a node with a longer lifetime): gone for good.
		if err := p.cfg.Sessions.DeletePanelSession(ctx, ps.ID); err != nil {
			p.log.Warn("panel: deleting a session from the store failed", "user", ps.User, "err", err)
		}
		return nil
	}
	u, err := p.cfg.Users.GetPanelUser(ctx, ps.User)
	if err != nil || store.PanelPasswordTag(u.Hash) != ps.PasswordTag {
		if errors.Is(err, store.ErrNoPanelUser) || err == nil {
			p.cfg.Sessions.DeletePanelSession(ctx, ps.ID)
		}
		return nil
	}
	s := &session{id: token, sid: ps.ID, user: u.Name, role: u.Role, pwTag: ps.PasswordTag, csrf: ps.CSRF,
		created: created, expires: p.lastUntil(created, now), checked: now, stored: true}
	if err := p.cfg.Sessions.TouchPanelSession(ctx, s.sid, s.expires.Unix()); err != nil && !errors.Is(err, store.ErrNoPanelSession) {
		p.log.Warn("panel: moving a session's expiry in the store failed", "user", s.user, "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if o := p.sessions[token]; o != nil { // loaded by a request at the same time
		return o
	}
	p.keepLocked(s)
	return s
}

// recheck re-reads s's user: gone or with another password, the session
// ends; a new role applies at once. With the store it also moves the
// session's expiry there, and a session whose row is gone (a logout on
// another node) ends. A store that does not answer keeps the session as
// it is.
func (p *Panel) recheck(ctx context.Context, s *session) *session {
	u, err := p.cfg.Users.GetPanelUser(ctx, s.user)
	if errors.Is(err, store.ErrNoPanelUser) || err == nil && store.PanelPasswordTag(u.Hash) != s.pwTag {
		p.end(ctx, s)
		return nil
	}
	if ss := p.cfg.Sessions; ss != nil {
		p.mu.Lock()
		stored, expires := s.stored, s.expires.Unix()
		p.mu.Unlock()
		switch err := ss.TouchPanelSession(ctx, s.sid, expires); {
		case errors.Is(err, store.ErrNoPanelSession) && stored:
			p.end(ctx, s)
			return nil
		case errors.Is(err, store.ErrNoPanelSession):
			// The store was down at the login: store it now.
			p.save(ctx, s)
		case err != nil:
			p.log.Warn("panel: moving a session's expiry in the store failed", "user", s.user, "err", err)
		}
	}
	if err == nil {
		p.mu.Lock()
		s.role = u.Role
		p.mu.Unlock()
	}
	return s
}

// newSession starts a session for u after a login, and stores it.
func (p *Panel) newSession(ctx context.Context, u store.PanelUser) *session {
	now := p.cfg.Now()
	s := &session{id: randomToken(), user: u.Name, role: u.Role, pwTag: store.PanelPasswordTag(u.Hash), csrf: randomToken(),
		created: now, expires: p.lastUntil(now, now), checked: now}
	s.sid = store.PanelSessionID(s.id)
	if ss := p.cfg.Sessions; ss != nil {
		// Logins are rare: the expired rows of every node go here.
		if _, err := ss.DeleteExpiredPanelSessions(ctx, now.Unix()); err != nil {
			p.log.Warn("panel: deleting expired sessions from the store failed", "err", err)
		}
		p.save(ctx, s)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keepLocked(s)
	return s
}

// save writes s to the store; failing, it lives in this process only
// until a recheck stores it.
func (p *Panel) save(ctx context.Context, s *session) {
	p.mu.Lock()
	ps := store.PanelSession{ID: s.sid, User: s.user, CSRF: s.csrf, PasswordTag: s.pwTag, Created: s.created.Unix(), Expires: s.expires.Unix()}
	p.mu.Unlock()
	if err := p.cfg.Sessions.AddPanelSession(ctx, ps); err != nil {
		p.log.Warn("panel: storing the session failed; it lasts on this node only until the store answers", "user", s.user, "err", err)
		return
	}
	p.mu.Lock()
	s.stored = true
	p.mu.Unlock()
}

// keepLocked adds s to the sessions held in memory; at MaxSessions the
// one idle longest makes room (it stays in the store, and is read again
// when it is used).
func (p *Panel) keepLocked(s *session) {
	if len(p.sessions) >= p.cfg.MaxSessions {
		var oldest *session
		for _, o := range p.sessions {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(p.sessions, oldest.id)
	}
	p.sessions[s.id] = s
}

// end ends s here and in the store.
func (p *Panel) end(ctx context.Context, s *session) {
	p.mu.Lock()
	delete(p.sessions, s.id)
	p.mu.Unlock()
	if p.cfg.Sessions != nil {
		if err := p.cfg.Sessions.DeletePanelSession(ctx, s.sid); err != nil {
			p.log.Warn("panel: deleting a session from the store failed", "user", s.user, "err", err)
		}
	}
}
