package panel

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"switchboard/store"
)

// Cookies: the session, and the login form's CSRF token (double submit:
// the form's hidden field must equal the cookie, which another site can
// neither read nor set).
const (
	sessionCookie = "sb_session"
	loginCookie   = "sb_login"
	// RecheckEvery is how often a session re-reads its user from the
	// store: a deleted user, a new password or a new role takes effect
	// within this time on every node sharing the store.
	RecheckEvery = 15 * time.Second
)

type session struct {
	id      string // the cookie's token
	sid     string // the store's id of it: store.PanelSessionID(id)
	user    string
	role    string
	pwTag   string // store.PanelPasswordTag of the hash at login: a change ends the session
	csrf    string
	created time.Time // the login: the session ends SessionLifetime after it, however busy
	expires time.Time // the idle timeout, never past the lifetime (lastUntil)
	checked time.Time
	stored  bool  // the store has it (Config.Sessions)
	flash   flash // the outcome of the last form, shown once
}

type flash struct {
	OK, Err string
}

// failures counts wrong passwords for one account or one address, and
// the logins of it whose password is being checked.
type failures struct {
	n        int
	inFlight int // logins past the lock check whose hash is not done yet
	first    time.Time
	locked   time.Time // locked until
}

// maxFailureKeys bounds the failure table: names and addresses an
// attacker makes up cannot grow it further (the oldest entries not locked
// are dropped first).
const maxFailureKeys = 10000

// maxFormBytes is the most a form's body may hold.
const maxFormBytes = 1 << 20

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func equal(a, b string) bool {
	return len(a) > 0 && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// secure says whether the cookies must be Secure: the request came over
// TLS, directly or through a reverse proxy that says so.
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func (p *Panel) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/ui/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	})
}

// authed wraps a handler that needs a session: without one a page
// redirects to the login, a POST or a poll gets 401. Every POST must carry
// the session's CSRF token (form field "csrf" or header X-CSRF-Token), on
// top of the Origin check of the listener.
func (p *Panel) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := p.sessionOf(r)
		if s == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/ui/stats.json" {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			// The form is read here, whichever way the token comes, so
			// that the handler finds its fields and no body is read past
			// the limit (a multipart body is not parsed: no form sends
			// one).
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				code := http.StatusBadRequest
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					code = http.StatusRequestEntityTooLarge
				}
				http.Error(w, "the form could not be read: "+err.Error(), code)
				return
			}
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostForm.Get("csrf")
			}
			if !equal(tok, s.csrf) {
				p.csrfRefused.Inc()
				http.Error(w, "the form's CSRF token is missing or wrong: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, s)
	}
}

func (p *Panel) loginPage(w http.ResponseWriter, r *http.Request) {
	if p.sessionOf(r) != nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	p.renderLogin(w, r, "", http.StatusOK)
}

func (p *Panel) renderLogin(w http.ResponseWriter, r *http.Request, msg string, code int) {
	tok := randomToken()
	p.setCookie(w, r, loginCookie, tok, 3600)
	w.WriteHeader(code)
	p.render(w, "login", map[string]any{"CSRF": tok, "Error": msg, "User": r.PostFormValue("user")})
}

// login checks a user name and password. The account and the client's
// address are each locked out after LockoutFailures wrong passwords
// within LockoutTime, for LockoutTime: a locked login is refused without
// computing the hash. An unknown user costs the same hash computation as
// a known one, so the time taken does not tell which names exist.
func (p *Panel) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !equal(r.PostFormValue("csrf"), c.Value) {
		p.csrfRefused.Inc()
		p.renderLogin(w, r, "The login form expired: please try again.", http.StatusForbidden)
		return
	}
	name, pw := r.PostFormValue("user"), r.PostFormValue("password")
	ip := clientIP(r)
	userKey, ipKey := "user:"+name, "ip:"+sourceKey(ip)
	if len(name) > store.MaxPanelUserName {
		// No such user can exist: counting it would let long made-up
		// names fill the table with large keys. The address still counts.
		userKey = ""
	}
	// The password is checked only under a reservation: a login that
	// waits for the hash counts against the lockout already, so that
	// logins sent at once cannot all be checked before the first failure
	// is counted.
	left, busy := p.reserve(userKey, ipKey)
	if left > 0 || busy {
		p.loginLocked.Inc()
		msg := "Too many failed logins for this account or from this address: try again in " + roundUp(left) + "."
		if left == 0 {
			msg = "Too many logins for this account or from this address are being checked at once: try again in a few seconds."
		}
		p.renderLogin(w, r, msg, http.StatusTooManyRequests)
		return
	}
	u, ok, err := p.checkPassword(r.Context(), name, pw)
	if err != nil {
		p.unreserve(userKey, ipKey)
		p.log.Error("panel login: reading the user failed", "user", name, "err", err)
		p.renderLogin(w, r, "The server could not check the password; the error is in its log.", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		p.loginFailed.Inc()
		p.fail(userKey, name, ip)
		p.fail(ipKey, name, ip)
		p.renderLogin(w, r, "Wrong user name or password.", http.StatusUnauthorized)
		return
	}
	p.succeeded(userKey, ipKey)
	p.loginOK.Inc()
	s := p.newSession(r.Context(), u)
	p.log.Info("panel login", "user", u.Name, "role", u.Role, "from", ip)
	p.setCookie(w, r, loginCookie, "", -1)
	p.setCookie(w, r, sessionCookie, s.id, 0)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// dummyHash is verified for unknown users, to spend the same time.
var dummyHash, _ = store.HashPanelPassword("not a password of anyone")

func (p *Panel) checkPassword(ctx context.Context, name, pw string) (store.PanelUser, bool, error) {
	u, err := p.cfg.Users.GetPanelUser(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNoPanelUser) && !errors.Is(err, store.ErrMalformedPanelUser) {
		return u, false, err
	}
	hash := dummyHash
	if known {
		hash = u.Hash
	}
	select {
	case p.hashing <- struct{}{}:
	case <-ctx.Done():
		return u, false, ctx.Err()
	}
	ok, err := store.VerifyPanelPassword(hash, pw)
	<-p.hashing
	if err != nil {
		return u, false, err
	}
	return u, ok && known, nil
}

// reserve takes a password check for keys: it returns how long one of
// them stays locked, or busy when the failures counted and the checks in
// flight of one of them reach LockoutFailures (each check may yet fail);
// otherwise each key's check is counted in flight until fail, unreserve
// or a successful login's reset.
func (p *Panel) reserve(keys ...string) (left time.Duration, busy bool) {
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		f := p.fails[k]
		if k == "" || f == nil {
			continue
		}
		if f.locked.After(now) {
			left = max(left, f.locked.Sub(now))
		}
		if p.current(f, now).n+f.inFlight >= p.cfg.LockoutFailures {
			busy = true
		}
	}
	if left > 0 || busy {
		return left, busy
	}
	for _, k := range keys {
		if k != "" {
			p.entryLocked(k, now).inFlight++
		}
	}
	return 0, false
}

// unreserve gives back the checks of keys that ended without a verdict
// (the store could not be read).
func (p *Panel) unreserve(keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		if f := p.fails[k]; f != nil && f.inFlight > 0 {
			f.inFlight--
		}
	}
}

// succeeded clears the failures of keys after a right password, whose
// check it ends; the checks of other logins still in flight stay counted.
func (p *Panel) succeeded(keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		f := p.fails[k]
		if f == nil {
			continue
		}
		if f.inFlight > 0 {
			f.inFlight--
		}
		if f.inFlight == 0 {
			delete(p.fails, k)
		} else {
			f.n, f.locked = 0, time.Time{}
		}
	}
}

// current restarts f's count when its window has passed.
func (p *Panel) current(f *failures, now time.Time) *failures {
	if now.Sub(f.first) > p.cfg.LockoutTime {
		f.n, f.first = 0, now
	}
	return f
}

// entryLocked returns key's entry, made when there is none. p.mu is held.
func (p *Panel) entryLocked(key string, now time.Time) *failures {
	f := p.fails[key]
	if f == nil {
		if len(p.fails) >= maxFailureKeys {
			p.pruneFailuresLocked(now)
		}
		f = &failures{first: now}
		p.fails[key] = f
	}
	return p.current(f, now)
}

// fail counts a wrong password against key, whose check it ends, and
// locks it at the limit.
func (p *Panel) fail(key, user, ip string) {
	if key == "" {
		return
	}
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.entryLocked(key, now)
	if f.inFlight > 0 {
		f.inFlight--
	}
	f.n++
	if f.n >= p.cfg.LockoutFailures {
		f.locked = now.Add(p.cfg.LockoutTime)
		f.n, f.first = 0, now
		p.lockouts.Inc()
		p.log.Warn("panel login locked after repeated wrong passwords", "key", key, "user", user, "from", ip,
			"failures", p.cfg.LockoutFailures, "for", p.cfg.LockoutTime.String())
	}
}

// pruneFailuresLocked drops the entries neither locked nor being
// checked; when that is not enough, half of the rest go (an attacker
// filling the table with locks loses some of them, never the table's
// bound).
func (p *Panel) pruneFailuresLocked(now time.Time) {
	for k, f := range p.fails {
		if !f.locked.After(now) && f.inFlight == 0 {
			delete(p.fails, k)
		}
	}
	for k := range p.fails {
		if len(p.fails) < maxFailureKeys/2 {
			break
		}
		delete(p.fails, k)
	}
}

func (p *Panel) logout(w http.ResponseWriter, r *http.Request, s *session) {
	p.end(r.Context(), s)
	p.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// sourceKey is what the per-address lockout counts: the address, or for
// IPv6 its /64, which one host usually has whole.
func sourceKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func roundUp(d time.Duration) string {
	if d >= time.Minute {
		return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " min"
	}
	return strconv.Itoa(int((d+time.Second-1)/time.Second)) + " s"
}
