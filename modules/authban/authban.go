// Package authban bans addresses that fail digest authentication and
// locks accounts that many addresses fail on: fail2ban for SIP, inside the
// proxy. It is the auth module's Guard (modules/auth/guard.go) and bans
// through pike's ban table, so that a banned address is dropped by the
// transport before parsing.
//
//   - An address whose answers fail max_failures times within window
//     (wrong password, unknown user, replayed nonce-count, digest uri of
//     another request, malformed credentials) is banned for ban_time.
//     Only answers carrying a nonce auth sent to that address count
//     (auth.Source): the sender receives packets there. Answers with
//     any other nonce, which anyone forging the address over UDP can
//     send, are counted by why but ban nobody (unless auth.check_source
//     is off: then no nonce proves anything and every failure counts).
//   - An account (user@domain) that answers with a wrong password come
//     from account_sources different addresses within account_window is
//     locked for lock_time: slow cracking spread over many addresses,
//     each staying under max_failures. Only answers on a nonce auth sent
//     to that address count: a forged UDP source never receives one, so
//     it cannot lock anyone out. A locked account answers the right
//     password exactly as a wrong one (modules/auth), so the lock tells
//     the attacker nothing; the subscriber's phones fail too until it
//     ends (or authban.unlock), which is the price of the lock.
//
// Trusted sources (pike.exempt, the permissions module's group) are not
// counted. Every table is fixed in size; counting a failure and the
// lock check allocate nothing.
package authban

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/modules"
	"switchboard/modules/auth"
	"switchboard/modules/pike"
	"switchboard/shards"
)

// Settings are the authban section of the configuration.
type Settings struct {
	// MaxFailures failed answers from one address within Window ban it.
	// Default 10; 0: addresses are not banned for failures.
	MaxFailures int `yaml:"max_failures"`
	// Window is the sliding window failures are counted over. Default 10m.
	Window time.Duration `yaml:"window"`
	// BanTime is how long such an address is banned. Default 30m.
	BanTime time.Duration `yaml:"ban_time"`
	// AccountSources different addresses answering one account with a
	// wrong password within AccountWindow lock it. Default 5; 0: accounts
	// are never locked.
	AccountSources int `yaml:"account_sources"`
	// AccountWindow is the window those addresses are counted over.
	// Default 1h.
	AccountWindow time.Duration `yaml:"account_window"`
	// LockTime is how long a locked account stays locked. Default 15m.
	LockTime time.Duration `yaml:"lock_time"`
	// MaxSources is the size of the table of failure counts per address.
	// Default 16384.
	MaxSources int `yaml:"max_sources"`
	// MaxAccounts sizes the account tables: counts and locks of that
	// many accounts, and four times as many (account, address) pairs.
	// Default 4096.
	MaxAccounts int `yaml:"max_accounts"`
}

// DefaultSettings are the defaults documented in docs/configuration.md.
func DefaultSettings() *Settings {
	return &Settings{
		MaxFailures:    10,
		Window:         10 * time.Minute,
		BanTime:        30 * time.Minute,
		AccountSources: 5,
		AccountWindow:  time.Hour,
		LockTime:       15 * time.Minute,
		MaxSources:     16384,
		MaxAccounts:    4096,
	}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.MaxFailures < 0 || s.MaxFailures > 1_000_000:
		return modules.Errorf("max_failures", "must be between 0 (off) and 1000000, not %d", s.MaxFailures)
	case s.Window < time.Second || s.Window > 24*time.Hour:
		return modules.Errorf("window", "must be between 1s and 24h, not %v", s.Window)
	case s.BanTime < time.Second || s.BanTime > 30*24*time.Hour:
		return modules.Errorf("ban_time", "must be between 1s and 720h, not %v", s.BanTime)
	case s.AccountSources < 0 || s.AccountSources > 1_000_000:
		return modules.Errorf("account_sources", "must be between 0 (off) and 1000000, not %d", s.AccountSources)
	case s.AccountWindow < time.Second || s.AccountWindow > 7*24*time.Hour:
		return modules.Errorf("account_window", "must be between 1s and 168h, not %v", s.AccountWindow)
	case s.LockTime < time.Second || s.LockTime > 30*24*time.Hour:
		return modules.Errorf("lock_time", "must be between 1s and 720h, not %v", s.LockTime)
	case s.MaxSources < 1024 || s.MaxSources > 1<<24:
		return modules.Errorf("max_sources", "must be between 1024 and %d, not %d", 1<<24, s.MaxSources)
	case s.MaxAccounts < 128 || s.MaxAccounts > 1<<22:
		return modules.Errorf("max_accounts", "must be between 128 and %d, not %d", 1<<22, s.MaxAccounts)
	}
	return nil
}

// reasonAuth labels authban's bans in pike's table and metrics.
var reasonAuth = pike.RegisterReason("auth")

func init() {
	modules.Register(modules.Definition{
		Name:     "authban",
		Doc:      "bans addresses that fail digest authentication, locks accounts many addresses fail on",
		After:    []string{"auth", "pike"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
	})
}

// Authban is the auth module's Guard. It is safe for concurrent use.
type Authban struct {
	host  *modules.Host
	clock *shards.Clock
	pike  *pike.Pike

	params   atomic.Pointer[params]
	addrs    *pike.Counters // failures per address (pike's key)
	accounts *pike.Counters // addresses failing per account
	pairs    *pike.Counters // failures per (account, address)
	locks    *locks
	seed0    maphash.Seed
	seed1    maphash.Seed

	failures [16]atomic.Uint64 // by auth.Failure
	bans     atomic.Uint64

	mu   sync.Mutex
	set  Settings
	stop chan struct{}
	wg   sync.WaitGroup
}

type params struct {
	maxFailures, accountSources uint32
	ban, lock                   int64 // ms
}

func paramsOf(s *Settings) *params {
	return &params{
		maxFailures: uint32(s.MaxFailures), accountSources: uint32(s.AccountSources),
		ban: s.BanTime.Milliseconds(), lock: s.LockTime.Milliseconds(),
	}
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	p, _ := h.Module("pike").(*pike.Pike)
	a, _ := h.Module("auth").(*auth.Auth)
	if p == nil || a == nil {
		return nil, errors.New("authban needs the auth and pike modules")
	}
	b, err := New(h.Clock, *v.(*Settings), p)
	if err != nil {
		return nil, err
	}
	b.host = h
	a.SetGuard(b)
	b.registerCommands(h)
	b.registerMetrics(h)
	return b, nil
}

// New builds an Authban that bans through p (outside the module
// framework: tests). Install it with auth.SetGuard.
func New(clock *shards.Clock, s Settings, p *pike.Pike) (*Authban, error) {
	if err := checkSettings(&s); err != nil {
		return nil, err
	}
	if clock == nil || p == nil {
		return nil, errors.New("authban needs the clock and pike")
	}
	b := &Authban{
		clock:    clock,
		pike:     p,
		addrs:    pike.NewCounters(s.MaxSources, 16, s.Window),
		accounts: pike.NewCounters(s.MaxAccounts, 16, s.AccountWindow),
		pairs:    pike.NewCounters(4*s.MaxAccounts, 16, s.AccountWindow),
		locks:    newLocks(s.MaxAccounts),
		seed0:    maphash.MakeSeed(),
		seed1:    maphash.MakeSeed(),
		set:      s,
		stop:     make(chan struct{}),
	}
	b.params.Store(paramsOf(&s))
	return b, nil
}

// Locked is the auth Guard's lock check: whether user@realm is locked now.
// With no lock in force it is one atomic load.
func (b *Authban) Locked(user, realm []byte) bool {
	if b.locks.live.Load() == 0 {
		return false
	}
	k, _ := b.keys(user, realm, netip.Addr{})
	return b.locks.locked(k, b.clock.Now())
}

// Failed is the auth Guard's report of a failed answer: it counts it
// against the address when the answer shows that its sender receives
// packets there, and a wrong password against the account too.
func (b *Authban) Failed(src netip.Addr, user, realm []byte, why auth.Failure, from auth.Source) {
	b.failures[why&15].Add(1)
	if why == auth.FailExpired || why == auth.FailLocked {
		return // a phone's normal retry; the owner's password during a lock
	}
	if from == auth.SourceUnproven {
		// No nonce sent to src: anyone can send this with src forged
		// over UDP, and counting it would let a few datagrams ban a
		// customer's or a trunk's address. A cracker loses nothing by
		// it: its password is compared only on a nonce sent to where it
		// sends from, which is counted. With auth.check_source off
		// (SourceUnchecked) nothing is proven and src is counted as it
		// always was.
		return
	}
	if b.pike.Exempt(src) {
		return
	}
	pr := b.params.Load()
	now := b.clock.Now()
	if pr.maxFailures > 0 {
		// pike's key, and its ban: src's IPv6 prefix, or src alone when
		// that prefix holds an exempt address (a neighbour's forged
		// failures must not ban a trusted trunk's /64).
		k := b.pike.KeyOf(src)
		if b.addrs.Hit(k, now) >= pr.maxFailures {
			b.addrs.Forget(k)
			if b.pike.Ban(src, time.Duration(pr.ban)*time.Millisecond, reasonAuth) {
				b.bans.Add(1)
			}
		}
	}
	if why != auth.FailPassword || pr.accountSources == 0 {
		// Only a wrong password counts toward the account: it comes on a
		// nonce sent to src (or with auth.check_source off, any of ours);
		// FailNonce is what a forged source sends.
		return
	}
	ak, pk := b.keys(user, realm, src)
	// The account counts addresses, not answers: each address once per
	// window (its first failure on this account).
	if b.pairs.Hit(pk, now) != 1 {
		return
	}
	if b.accounts.Hit(ak, now) >= pr.accountSources {
		b.accounts.Forget(ak)
		b.lockKey(ak, user, realm, now, now+pr.lock)
	}
}

// keys returns the account's key (keyed hashes of user@realm, the realm
// without case) and, when src is valid, the key of the pair (account,
// src's pike key).
func (b *Authban) keys(user, realm []byte, src netip.Addr) (account, pair pike.Key) {
	var h0, h1 maphash.Hash
	h0.SetSeed(b.seed0)
	h1.SetSeed(b.seed1)
	h0.Write(user)
	h1.Write(user)
	h0.WriteByte('@')
	h1.WriteByte('@')
	for _, c := range realm {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h0.WriteByte(c)
		h1.WriteByte(c)
	}
	account = pike.Key{Hi: h0.Sum64(), Lo: h1.Sum64()}
	if src.IsValid() {
		k := b.pike.KeyOf(src)
		var a [16]byte
		for i := 0; i < 8; i++ {
			a[i], a[8+i] = byte(k.Hi>>(56-8*i)), byte(k.Lo>>(56-8*i))
		}
		h0.Write(a[:])
		h1.Write(a[:])
		pair = pike.Key{Hi: h0.Sum64(), Lo: h1.Sum64()}
	}
	return account, pair
}

// lockKey locks the account and records its name (user@realm, the realm
// in lower case) for listings.
func (b *Authban) lockKey(k pike.Key, user, realm []byte, now, until int64) bool {
	var name [nameCap]byte
	n := copy(name[:], user)
	if n < nameCap {
		name[n] = '@'
		n++
	}
	for _, c := range realm {
		if n == nameCap {
			break
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		name[n] = c
		n++
	}
	return b.locks.lock(k, name[:n], now, until)
}

// Lock locks user@domain for d by hand; it reports whether it was not
// locked.
func (b *Authban) Lock(user, domain string, d time.Duration) bool {
	k, _ := b.keys([]byte(user), []byte(domain), netip.Addr{})
	now := b.clock.Now()
	return b.lockKey(k, []byte(user), []byte(domain), now, now+d.Milliseconds())
}

// Unlock lifts user@domain's lock and forgets the addresses counted
// against it; it reports whether it was locked.
func (b *Authban) Unlock(user, domain string) bool {
	k, _ := b.keys([]byte(user), []byte(domain), netip.Addr{})
	b.accounts.Forget(k)
	return b.locks.unlock(k, b.clock.Now())
}

// IsLocked reports whether user@domain is locked now.
func (b *Authban) IsLocked(user, domain string) bool {
	return b.Locked([]byte(user), []byte(domain))
}

// Start runs the sweeper: once a second it frees expired locks and logs
// the new ones (off the receive path; Host.Warn bounds the lines).
func (b *Authban) Start() error {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := b.clock.Now()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
			now := b.clock.Now()
			b.locks.sweep(now, last, false, func(l Lock) {
				if b.host != nil {
					b.host.Warn("account locked: wrong passwords from many addresses", "account", l.Account,
						"for", time.Duration(l.Until-l.Since)*time.Millisecond)
					b.host.Events.Begin(modules.EventAuthBanned).Str("account", l.Account).
						Int("since_ms", l.Since).Int("until_ms", l.Until).Raise()
				}
			})
			last = now
		}
	}()
	return nil
}

// Stop ends the sweeper. Locks are not kept across restarts.
func (b *Authban) Stop() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.wg.Wait()
}

// CheckReload names window, account_window, max_sources and
// max_accounts where they change (keepRestartKeys); it refuses nothing.
func (b *Authban) CheckReload(v any) error {
	s := *v.(*Settings)
	return modules.NeedRestart(b.keepRestartKeys(&s)...)
}

// keepRestartKeys writes into s the values in force of window,
// account_window, max_sources and max_accounts where s changes them, and
// returns those keys: the tables are made with them at start.
func (b *Authban) keepRestartKeys(s *Settings) (keys []string) {
	b.mu.Lock()
	old := b.set
	b.mu.Unlock()
	keys = modules.KeepInForce(keys, "window", &s.Window, old.Window)
	keys = modules.KeepInForce(keys, "account_window", &s.AccountWindow, old.AccountWindow)
	keys = modules.KeepInForce(keys, "max_sources", &s.MaxSources, old.MaxSources)
	keys = modules.KeepInForce(keys, "max_accounts", &s.MaxAccounts, old.MaxAccounts)
	return keys
}

// Reload applies new thresholds and times at once; the keys the tables
// are made with keep their values in force (keepRestartKeys).
func (b *Authban) Reload(v any) error {
	s := v.(*Settings)
	b.keepRestartKeys(s)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.params.Store(paramsOf(s))
	b.set = *s
	return nil
}
