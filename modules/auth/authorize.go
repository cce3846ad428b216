package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/txn"
)

// Result is the outcome of an authorization check, in the spirit of
// OpenSIPS' return codes: positive means go on.
type Result int8

const (
	// Authorized: the credentials are right and the user may send this
	// request.
	Authorized Result = 1
	// NoCredentials: no credentials for this realm; challenge.
	NoCredentials Result = -1
	// InvalidCredentials: unknown user, wrong password, forged or
	// malformed credentials, a nonce not issued to the answer's source
	// address, an algorithm not offered. Deliberately one result, so the
	// answer (a new challenge) tells a scanner nothing.
	InvalidCredentials Result = -2
	// StaleNonce: the password was right but the nonce expired or its
	// count was used before; challenge again with stale=true.
	StaleNonce Result = -3
	// Forbidden: authenticated, but as a user other than the one in From
	// (To for REGISTER); answer 403.
	Forbidden Result = -4
	// Unavailable: the store could not be read; answer 500.
	Unavailable Result = -5
)

func (r Result) String() string {
	switch r {
	case Authorized:
		return "authorized"
	case NoCredentials:
		return "no credentials"
	case InvalidCredentials:
		return "invalid credentials"
	case StaleNonce:
		return "stale nonce"
	case Forbidden:
		return "forbidden"
	case Unavailable:
		return "store unavailable"
	}
	return "unknown"
}

// Next continues a route after an authorization check. It is called on
// the receive path when the credentials were cached, or later on a worker
// goroutine with a context on the suspended request when the store had to
// be read. Keep Next functions in variables built once (a method value
// made per call would allocate).
type Next func(c *routing.Ctx, res Result)

// Options say how to check.
type Options struct {
	// Proxy checks Proxy-Authorization and challenges with 407 and
	// Proxy-Authenticate; otherwise Authorization, 401, WWW-Authenticate.
	Proxy bool
	// Realm is the digest realm, which is the subscriber's domain. Nil:
	// the From host, or the To host for a REGISTER.
	Realm []byte
	// AnyUser accepts credentials of any subscriber of the realm instead
	// of requiring the From user (To user for REGISTER).
	AnyUser bool
}

// WWWAuthorize checks a REGISTER's Authorization header against the To
// user's credentials (OpenSIPS: www_authorize("", "subscriber")).
func (a *Auth) WWWAuthorize(c *routing.Ctx, next Next) { a.Authorize(c, Options{}, next) }

// ProxyAuthorize checks a request's Proxy-Authorization header against the
// From user's credentials (OpenSIPS: proxy_authorize("", "subscriber")).
func (a *Auth) ProxyAuthorize(c *routing.Ctx, next Next) {
	a.Authorize(c, Options{Proxy: true}, next)
}

// WWWChallenge answers 401 with a WWW-Authenticate challenge per offered
// algorithm (OpenSIPS: www_challenge("", "auth")).
func (a *Auth) WWWChallenge(c *routing.Ctx, stale bool) { a.Challenge(c, Options{}, stale) }

// ProxyChallenge answers 407 with Proxy-Authenticate challenges (OpenSIPS:
// proxy_challenge("", "auth")).
func (a *Auth) ProxyChallenge(c *routing.Ctx, stale bool) {
	a.Challenge(c, Options{Proxy: true}, stale)
}

// Authorize checks the request's credentials as o says and calls next with
// the result, at once or after reading the store off the receive path.
// When the lookup queue is full it answers 503 itself and next is not
// called.
func (a *Auth) Authorize(c *routing.Ctx, o Options, next Next) {
	realm := a.realm(c, o)
	var cr parser.Auth
	if !findCredentials(c.Msg(), o.Proxy, realm, &cr) {
		next(c, NoCredentials)
		return
	}
	// The nonce must be one we sent to the address the answer comes from
	// (digest.go). It is read first, as it says whether the answer's
	// sender receives packets at its source: a failure before it is
	// checked (a bad name, a digest uri of another request) is held
	// against the address only with such a nonce (Source).
	exp, seq, ours := a.decodeNonce(cr.Nonce, c.SrcIP())
	if len(cr.Username) == 0 || len(cr.Username)+len(realm) > 320 {
		a.failed.Add(1)
		a.tell(c, &cr, FailMalformed, ours)
		next(c, InvalidCredentials)
		return
	}
	if !a.cfg.SkipURICheck && !sameResource(cr.URI, c.Msg().RequestURI()) {
		// Credentials computed for another request (RFC 7616 §3.4.6: the
		// server SHOULD answer 400). Checked before the subscriber is
		// looked up, so the answer says nothing about the user.
		a.badURI.Add(1)
		a.tell(c, &cr, FailBadURI, ours)
		if c.IsMethod(parser.MethodAck) {
			next(c, InvalidCredentials) // an ACK cannot be answered
			return
		}
		c.ReplyStateless(400, "Digest URI Mismatch", nil)
		return
	}
	// A nonce not sent to the answer's address fails before the
	// subscriber is looked up: the answer says nothing about the
	// password (it was never compared, and the answer is the same
	// whatever it is), nor whether the name is a subscriber's, so it is
	// no password failure, counts toward no account's lock and, with
	// auth.check_source, against no address; it costs no store read.
	if !ours {
		a.notOurs(c, &cr)
		next(c, InvalidCredentials)
		return
	}
	sc := a.scratch.Get().(*scratch)
	sc.key = cacheKey(sc.key[:0], cr.Username, realm)
	if v, ok := a.cache.Get(sc.key); ok {
		res := a.check(c, o, v, &cr, sc, exp, seq)
		a.scratch.Put(sc)
		next(c, res)
		return
	}
	a.scratch.Put(sc)
	a.miss(c, string(cr.Username), strings.ToLower(string(realm)), func(c *routing.Ctx, v *cred, err error) {
		if err != nil {
			next(c, Unavailable)
			return
		}
		var cr parser.Auth
		realm := a.realm(c, o)
		if !findCredentials(c.Msg(), o.Proxy, realm, &cr) {
			next(c, NoCredentials)
			return
		}
		exp, seq, ours := a.decodeNonce(cr.Nonce, c.SrcIP())
		if !ours {
			a.notOurs(c, &cr)
			next(c, InvalidCredentials)
			return
		}
		sc := a.scratch.Get().(*scratch)
		res := a.check(c, o, v, &cr, sc, exp, seq)
		a.scratch.Put(sc)
		next(c, res)
	})
}

// SubscriberExists reports through next whether user@domain is a
// subscriber (OpenSIPS: does_uri_exist() with user and domain of the
// Request-URI). It uses the credential cache, so it reads the store only on
// a miss, off the receive path.
func (a *Auth) SubscriberExists(c *routing.Ctx, user, domain []byte, next func(c *routing.Ctx, exists bool, err error)) {
	if len(user) == 0 || len(user)+len(domain) > 320 {
		next(c, false, nil)
		return
	}
	sc := a.scratch.Get().(*scratch)
	sc.key = cacheKey(sc.key[:0], user, domain)
	v, ok := a.cache.Get(sc.key)
	a.scratch.Put(sc)
	if ok {
		next(c, v.exists, nil)
		return
	}
	a.miss(c, string(user), strings.ToLower(string(domain)), func(c *routing.Ctx, v *cred, err error) {
		next(c, err == nil && v.exists, err)
	})
}

// Challenge answers 401 (407 with o.Proxy) with one challenge per offered
// algorithm, most preferred first (RFC 8760 §2.4), sharing one fresh
// nonce; stale=true tells the phone its password was right and only the
// nonce must be renewed.
func (a *Auth) Challenge(c *routing.Ctx, o Options, stale bool) {
	realm := a.realm(c, o)
	sc := a.scratch.Get().(*scratch)
	name := "WWW-Authenticate: "
	code, reason := 401, "Unauthorized"
	if o.Proxy {
		name = "Proxy-Authenticate: "
		code, reason = 407, "Proxy Authentication Required"
	}
	sc.in = a.appendNonce(sc.in[:0], c.SrcIP())
	h := sc.hdr[:0]
	for _, alg := range a.algs {
		h = append(h, name...)
		h = append(h, `Digest realm="`...)
		for _, ch := range realm {
			if ch >= 'A' && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			h = append(h, ch)
		}
		h = append(h, `", nonce="`...)
		h = append(h, sc.in...)
		h = append(h, `", qop="auth", algorithm=`...)
		h = append(h, alg.name()...)
		if stale {
			h = append(h, ", stale=true"...)
		}
		h = append(h, "\r\n"...)
	}
	sc.hdr = h
	// Challenges go out statelessly, like OpenSIPS www_challenge and
	// proxy_challenge: the client answers with a new request, and a
	// retransmitted one is simply challenged again.
	c.ReplyStateless(code, reason, h)
	a.scratch.Put(sc)
	a.challenges.Add(1)
}

// realm is o.Realm, or the host of To (REGISTER) or From.
func (a *Auth) realm(c *routing.Ctx, o Options) []byte {
	if o.Realm != nil {
		return o.Realm
	}
	if c.IsMethod(parser.MethodRegister) {
		return c.TDomain()
	}
	return c.FDomain()
}

// findCredentials finds the Digest credentials for realm.
func findCredentials(m *parser.Message, proxy bool, realm []byte, cr *parser.Auth) bool {
	want := parser.HdrAuthorization
	if proxy {
		want = parser.HdrProxyAuthorization
	}
	if !m.Has(want) {
		return false
	}
	for i, n := 0, m.NumHeaders(); i < n; i++ {
		h := m.HeaderAt(i)
		if h.Name != want {
			continue
		}
		if parser.ParseAuth(h.Value, cr) && cr.IsDigest() && parser.EqualFold(cr.Realm, realm) {
			return true
		}
	}
	return false
}

// notOurs counts an answer whose nonce we did not send to its source
// address (or did not send at all) and tells the guard (FailNonce).
func (a *Auth) notOurs(c *routing.Ctx, cr *parser.Auth) {
	a.failed.Add(1)
	a.foreign.Add(1)
	a.tell(c, cr, FailNonce, false)
}

// check verifies credentials cr against the cached subscriber v; exp and
// seq are those of its nonce, which decodeNonce found ours for the source.
func (a *Auth) check(c *routing.Ctx, o Options, v *cred, cr *parser.Auth, sc *scratch, exp int64, seq uint32) Result {
	alg, ok := parseAlgorithm(cr.Algorithm)
	if ok {
		ok = false
		for _, x := range a.algs {
			ok = ok || x.h == alg.h
		}
	}
	if !ok || len(cr.Nonce) == 0 || len(cr.Response) != hexSize[alg.h] {
		a.failed.Add(1)
		a.tell(c, cr, FailMalformed, true)
		return InvalidCredentials
	}
	nc := uint32(1) // without qop a nonce is good for one request
	if len(cr.QOP) > 0 {
		if !parser.EqualFold(cr.QOP, []byte("auth")) || len(cr.CNonce) == 0 {
			a.failed.Add(1)
			a.tell(c, cr, FailMalformed, true)
			return InvalidCredentials
		}
		if nc, ok = parseNC(cr.NC); !ok {
			a.failed.Add(1)
			a.tell(c, cr, FailMalformed, true)
			return InvalidCredentials
		}
	}
	// A locked account (guard.go) fails as a wrong password does, after
	// the same work: the lock is looked up before the password is checked
	// and changes neither the answer nor the path.
	locked := a.guard != nil && a.guard.Locked(cr.Username, cr.Realm)
	// The digest is computed for an unknown user too (with a dummy HA1),
	// so the time taken does not tell the two apart.
	ha1 := v.ha1[alg.h]
	known := v.exists && len(ha1) == hexSize[alg.h]
	if !known {
		ha1 = dummyHA1[alg.h]
	}
	want := response(sc, alg, ha1, c.Msg().MethodBytes(), cr)
	match := equalHex(sc, cr.Response, want)
	if !known || !match || locked {
		a.failed.Add(1)
		a.tell(c, cr, failureOf(known, match), true)
		return InvalidCredentials
	}
	switch st := a.useNonce(exp, seq, nc); st {
	case nonceOK:
		if c.IsMethod(parser.MethodRegister) {
			a.remember(seq, c)
		}
	case nonceRepeated:
		// The count was used once already. A REGISTER is answered
		// statelessly, so its retransmission comes back here: the same
		// bytes from the same source within a transaction's lifetime get
		// the same answer as the first; anything else is a replay.
		if !c.IsMethod(parser.MethodRegister) || !a.retransmission(seq, c) {
			a.stale.Add(1)
			a.tell(c, cr, FailReplay, true)
			return StaleNonce
		}
		a.retrans.Add(1)
	default:
		a.stale.Add(1)
		if st == nonceExpired {
			a.tell(c, cr, FailExpired, true)
		} else {
			a.tell(c, cr, FailReplay, true)
		}
		return StaleNonce
	}
	if !o.AnyUser {
		user := c.FUser()
		if c.IsMethod(parser.MethodRegister) {
			user = c.TUser()
		}
		if !bytes.Equal(user, cr.Username) {
			a.forbidden.Add(1)
			return Forbidden
		}
	}
	a.ok.Add(1)
	return Authorized
}

var dummyHA1 = [numAlgs][]byte{
	[]byte("00000000000000000000000000000000"),
	[]byte("0000000000000000000000000000000000000000000000000000000000000000"),
}

// ---- cache misses ----

type job struct {
	h      *txn.Request
	env    *routing.Env
	user   string
	domain string
	gen    uint64
	done   func(c *routing.Ctx, v *cred, err error)
}

var retryAfter = []byte("Retry-After: 5\r\n")

// miss suspends the request and queues a store lookup; done continues the
// route with the result on a worker goroutine.
func (a *Auth) miss(c *routing.Ctx, user, domain string, done func(c *routing.Ctx, v *cred, err error)) {
	a.misses.Add(1)
	h := c.Suspend()
	if h == nil { // an ACK: nothing to answer, nothing to wait for
		done(c, &cred{}, nil)
		return
	}
	select {
	case a.jobs <- job{h: h, env: c.Env, user: user, domain: domain, gen: a.gen.Load(), done: done}:
	default:
		a.busy.Add(1)
		c.ReplyWithHeaders(503, "Service Unavailable", retryAfter)
	}
}

func (a *Auth) worker() {
	defer a.wg.Done()
	for {
		select {
		case <-a.stop:
			return
		case j := <-a.jobs:
			a.run(j)
		}
	}
}

func (a *Auth) run(j job) {
	v, err := a.load(j.user, j.domain)
	if err == nil && a.gen.Load() == j.gen {
		a.cache.Set(cacheKey(nil, []byte(j.user), []byte(j.domain)), v, 1)
	}
	routing.Resume(j.env, j.h, func(c *routing.Ctx) { j.done(c, v, err) })
}

// load reads one subscriber from the store.
func (a *Auth) load(user, domain string) (*cred, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := a.st.GetSubscriber(ctx, user, domain)
	v := &cred{}
	switch {
	case err == nil:
		v.exists = true
		v.ha1[algMD5] = []byte(strings.ToLower(sub.HA1))
		v.ha1[algSHA256] = []byte(strings.ToLower(sub.HA1SHA256))
	case errors.Is(err, store.ErrNoSubscriber):
	default:
		var bad bool
		for _, e := range badName {
			bad = bad || errors.Is(err, e)
		}
		if !bad {
			a.storeErrors.Add(1)
			a.log.Error("auth: credential lookup failed", "user", user, "domain", domain, "err", err)
			return nil, err
		}
	}
	return v, nil
}

// Lookups of these come back as "no such subscriber".
var badName = []error{store.ErrMalformedUser, store.ErrMalformedDomain, store.ErrMalformedAOR, store.ErrUnknownDomain}
