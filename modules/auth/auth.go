// Package auth is digest authentication for routes (RFC 3261 §22, RFC 2617,
// RFC 7616, RFC 8760): WWWAuthorize checks a REGISTER's Authorization
// (challenging with 401 and WWW-Authenticate), ProxyAuthorize checks other
// requests' Proxy-Authorization (407 and Proxy-Authenticate), with MD5 and
// SHA-256, qop=auth and nonce counts.
//
// Nonces carry their own expiry and sequence number and are signed with
// HMAC-SHA-256 under a server secret, so checking one needs no table; a
// fixed array indexed by the nonce's sequence number remembers the highest
// nonce-count seen, which makes a replayed nonce/nc fail. Subscriber
// credentials are cached in front of the store (ristretto); the cache is
// invalidated by polling the store's change log, so a password changed with
// the CLI or the API takes effect within a poll interval. A cache miss never
// blocks the receive path: the request is suspended, the store is read on
// a small worker pool, and the route continues from there.
//
// OpenSIPS equivalents: www_authorize, proxy_authorize, www_challenge,
// proxy_challenge, and does_uri_exist (SubscriberExists).
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// Algorithm names accepted in Config.Algorithms.
const (
	SHA256 = "SHA-256"
	MD5    = "MD5"
)

// Defaults for zero Config fields.
const (
	DefaultNonceLifetime = 5 * time.Minute
	DefaultCacheEntries  = 100_000
	DefaultWorkers       = 4
	DefaultQueueSize     = 4096
	DefaultPollInterval  = time.Second
)

// nonceSlots is the size of the nonce-count table: the number of nonces
// whose counts are remembered at once. A nonce whose slot was taken by a
// newer one is answered stale=true, so the phone simply retries with a fresh
// nonce. 2^18 slots (2 MiB, plus 3 MiB of retransmission fingerprints)
// cover about 870 challenges a second over the default five-minute
// lifetime.
const nonceSlots = 1 << 18

// Config configures an Auth.
type Config struct {
	// Store holds the subscribers. Required.
	Store *store.Store
	// Clock is the coarse clock used for nonce expiry. Required.
	Clock *shards.Clock
	// Secret signs nonces (at least 16 bytes). LoadSecret keeps one in the
	// data directory so nonces survive a restart.
	Secret []byte
	// Algorithms offered in challenges, in order of preference (RFC 8760:
	// the most preferred first). Default: SHA-256, then MD5.
	Algorithms []string
	// NonceLifetime is how long a nonce is accepted (default 5m); after it
	// the answer is a new challenge with stale=true.
	NonceLifetime time.Duration
	// CacheEntries bounds the credential cache (default 100,000 users;
	// unknown users are cached too, as negative entries).
	CacheEntries int64
	// Workers and QueueSize size the pool that reads the store on a cache
	// miss (defaults 4 and 4096). A miss that finds the queue full is
	// answered 503 with Retry-After.
	Workers, QueueSize int
	// PollInterval is how often the store's change log is read to drop
	// changed users from the cache (default 1s).
	PollInterval time.Duration
	// SkipURICheck accepts credentials whose uri is not the Request-URI
	// (OpenSIPS and Kamailio do not compare them; sipp 3.6 computes the
	// uri as sip:<server address>:<port>). The default compares them, as
	// RFC 7616 §3.4.6 requires.
	SkipURICheck bool
	// SkipSourceCheck accepts a nonce from any address, not only the one
	// it was sent to (digest.go): for front proxies that spread one
	// phone's requests over several addresses. Then a wrong password
	// from a forged UDP source counts as one again, authban's account
	// lock can be set off by forged sources, and every failure counts
	// against its source address (SourceUnchecked).
	SkipSourceCheck bool
	// RegisterWithoutAuth tells the route set that REGISTER is to be saved
	// without authentication (auth.register: false): for registrar
	// benchmarks only.
	RegisterWithoutAuth bool
	// Domains, when set, is the server's served set: the store's domains
	// are added to it when they change (SyncDomains).
	Domains *routing.Domains
	// OnDomainChange, when set, is called from the poller when domains
	// were added or removed in the store.
	OnDomainChange func()
	// Logger receives error-path lines. Nil: slog.Default().
	Logger *slog.Logger
}

// Auth is the authentication service. It is safe for concurrent use.
type Auth struct {
	cfg      Config
	st       *store.Store
	clock    *shards.Clock
	log      *slog.Logger
	algs     []algorithm
	lifetime int64 // seconds
	cache    *ristretto.Cache[[]byte, *cred]
	gen      atomic.Uint64 // bumped on every invalidation
	jobs     chan job
	slots    []atomic.Uint64
	prints   []atomic.Uint64 // per slot: fingerprint of the REGISTER accepted with its nc
	printAt  []atomic.Uint32 // per slot: when (unix seconds)
	seed     maphash.Seed
	seq      atomic.Uint32
	macs     sync.Pool // *signer
	scratch  sync.Pool // *scratch
	stop     chan struct{}
	wg       sync.WaitGroup
	domainMu sync.Mutex
	// domainOutage: SyncDomains warns once per outage of the database
	// (guarded by domainMu).
	domainOutage store.OncePerOutage
	guard        Guard // nil: no failure accounting, no account locks (guard.go)

	// counters
	ok, failed, stale, forbidden, challenges, misses, busy, storeErrors atomic.Uint64
	badURI, retrans, foreign                                            atomic.Uint64
}

// cred is a cached subscriber: its two HA1 values as lower-case hex, or
// exists=false for a user the store does not have.
type cred struct {
	exists bool
	ha1    [numAlgs][]byte
}

// New starts the credential cache, the lookup workers and the change-log
// poller. Close stops them.
func New(cfg Config) (*Auth, error) {
	if cfg.Store == nil || cfg.Clock == nil {
		return nil, errors.New("auth: Config.Store and Config.Clock are required")
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("auth: Config.Secret must have at least 16 bytes")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{SHA256, MD5}
	}
	if cfg.NonceLifetime == 0 {
		cfg.NonceLifetime = DefaultNonceLifetime
	}
	if cfg.NonceLifetime < time.Second {
		return nil, fmt.Errorf("auth: nonce lifetime %s is below 1s", cfg.NonceLifetime)
	}
	if cfg.CacheEntries == 0 {
		cfg.CacheEntries = DefaultCacheEntries
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Auth{cfg: cfg, st: cfg.Store, clock: cfg.Clock, log: cfg.Logger,
		lifetime: int64(cfg.NonceLifetime / time.Second), stop: make(chan struct{})}
	seen := map[algorithm]bool{}
	for _, name := range cfg.Algorithms {
		alg, ok := parseAlgorithm([]byte(name))
		if !ok || alg.sess {
			return nil, fmt.Errorf("auth: unknown algorithm %q; use SHA-256 or MD5", name)
		}
		if seen[alg] {
			return nil, fmt.Errorf("auth: algorithm %s listed twice", name)
		}
		seen[alg] = true
		a.algs = append(a.algs, alg)
	}
	secret := append([]byte(nil), cfg.Secret...)
	a.macs.New = func() any { return &signer{h: hmac.New(sha256.New, secret)} }
	a.scratch.New = func() any { return new(scratch) }
	a.slots = make([]atomic.Uint64, nonceSlots)
	a.prints = make([]atomic.Uint64, nonceSlots)
	a.printAt = make([]atomic.Uint32, nonceSlots)
	a.seed = maphash.MakeSeed()
	var r [4]byte
	rand.Read(r[:])
	a.seq.Store(uint32(r[0]) | uint32(r[1])<<8 | uint32(r[2])<<16 | uint32(r[3])<<24)

	var err error
	a.cache, err = ristretto.NewCache(&ristretto.Config[[]byte, *cred]{
		NumCounters:        cfg.CacheEntries * 10,
		MaxCost:            cfg.CacheEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: credential cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	since, err := a.st.LastChange(ctx)
	cancel()
	if err != nil {
		a.cache.Close()
		return nil, fmt.Errorf("auth: reading the store's change log: %w", err)
	}
	a.jobs = make(chan job, cfg.QueueSize)
	for i := 0; i < cfg.Workers; i++ {
		a.wg.Add(1)
		go a.worker()
	}
	a.wg.Add(1)
	go a.poll(since)
	return a, nil
}

// Close stops the workers and the poller. Requests still queued are
// answered 503.
func (a *Auth) Close() {
	close(a.stop)
	a.wg.Wait()
	for {
		select {
		case j := <-a.jobs:
			j.h.ReplyWithHeaders(503, "Service Unavailable", retryAfter)
		default:
			a.cache.Close()
			return
		}
	}
}

// poll reads the store's change log and drops the changed users from the
// cache.
func (a *Auth) poll(since uint64) {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.PollInterval)
	defer t.Stop()
	var key []byte
	var outage store.OncePerOutage
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			changes, next, err := a.st.Changes(ctx, since)
			cancel()
			if outage.Report(err) {
				a.log.Warn("auth: reading the change log failed; cached credentials may be stale", "err", err)
			}
			if err != nil {
				break
			}
			domains := false
			for _, ch := range changes {
				switch ch.Kind {
				case store.ChangeSubscriber:
					key = cacheKey(key[:0], []byte(ch.Username), []byte(ch.Domain))
					a.gen.Add(1)
					a.cache.Del(key)
				case store.ChangeDomain:
					domains = true
				case store.ChangeAddress:
					// The permissions module's table: no credentials.
				default:
					a.gen.Add(1)
					a.cache.Clear()
					domains = true
				}
			}
			if domains {
				a.SyncDomains()
			}
			if domains && a.cfg.OnDomainChange != nil {
				a.cfg.OnDomainChange()
			}
			since = next
			if len(changes) < 1000 {
				break
			}
		}
	}
}

// Invalidate drops one user from the cache at once (the management API
// calls it after changing a subscriber; other processes are seen by the
// poller).
func (a *Auth) Invalidate(user, domain string) {
	a.gen.Add(1)
	a.cache.Del(cacheKey(nil, []byte(user), []byte(domain)))
}

// Stats are the counters of an Auth.
type Stats struct {
	Authorized  uint64 // credentials accepted
	Failed      uint64 // wrong password, unknown user, malformed or forged credentials
	Stale       uint64 // expired or replayed nonces
	Forbidden   uint64 // authenticated as another user than allowed
	Challenges  uint64 // 401/407 sent
	CacheMisses uint64 // lookups sent to the store
	Busy        uint64 // misses refused because the queue was full
	StoreErrors uint64
	BadURI      uint64 // credentials whose uri is not the Request-URI (answered 400)
	Retransmits uint64 // REGISTER retransmissions accepted with the nonce-count of the original
	// ForeignNonces counts answers (in Failed too) whose nonce we did not
	// send to their source address, or did not send at all: forged
	// sources and nonces, a phone whose address changed since its
	// challenge. Each gets a new challenge.
	ForeignNonces uint64
}

// Stats returns the counters.
func (a *Auth) Stats() Stats {
	return Stats{a.ok.Load(), a.failed.Load(), a.stale.Load(), a.forbidden.Load(),
		a.challenges.Load(), a.misses.Load(), a.busy.Load(), a.storeErrors.Load(),
		a.badURI.Load(), a.retrans.Load(), a.foreign.Load()}
}

// cacheKey writes "user@domain" with the domain lower-cased.
func cacheKey(dst, user, domain []byte) []byte {
	dst = append(dst, user...)
	dst = append(dst, '@')
	for _, c := range domain {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
