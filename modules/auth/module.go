package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// Settings are the auth section of the configuration file
// (docs/configuration.md).
type Settings struct {
	// Register makes REGISTER authenticate. false saves registrations
	// without a password: for registrar benchmarks only.
	Register bool `yaml:"register"`
	// Algorithms offered in challenges, most preferred first.
	Algorithms []string `yaml:"algorithms"`
	// NonceLifetime is how long a nonce is accepted.
	NonceLifetime time.Duration `yaml:"nonce_lifetime"`
	// CacheEntries bounds the credential cache (subscribers).
	CacheEntries int `yaml:"cache_entries"`
	// Workers read the store on a credential-cache miss.
	Workers int `yaml:"workers"`
	// PollInterval is how often the store is asked for changed users.
	PollInterval time.Duration `yaml:"poll_interval"`
	// CheckURI requires the digest uri to be the Request-URI.
	CheckURI bool `yaml:"check_uri"`
	// CheckSource binds each nonce to the address it was sent to.
	CheckSource bool `yaml:"check_source"`
}

// DefaultSettings are the auth defaults.
func DefaultSettings() *Settings {
	return &Settings{
		Register:      true,
		Algorithms:    []string{SHA256, MD5},
		NonceLifetime: DefaultNonceLifetime,
		CacheEntries:  DefaultCacheEntries,
		Workers:       DefaultWorkers,
		PollInterval:  DefaultPollInterval,
		CheckURI:      true,
		CheckSource:   true,
	}
}

func init() {
	modules.Register(modules.Definition{
		Name:     "auth",
		Doc:      "digest authentication of subscribers, subscriber and domain management",
		Settings: func() any { return DefaultSettings() },
		Check:    func(s any) error { return s.(*Settings).check() },
		New:      newModule,
	})
}

func (a *Settings) check() error {
	if len(a.Algorithms) == 0 {
		return modules.Errorf("algorithms", "at least one of SHA-256, MD5")
	}
	seen := map[string]bool{}
	for i, alg := range a.Algorithms {
		key := fmt.Sprintf("algorithms[%d]", i)
		if alg != SHA256 && alg != MD5 {
			return modules.Errorf(key, "unknown algorithm %q; SHA-256 or MD5", alg)
		}
		if seen[alg] {
			return modules.Errorf(key, "%s is listed twice", alg)
		}
		seen[alg] = true
	}
	if a.NonceLifetime < 10*time.Second || a.NonceLifetime > 24*time.Hour {
		return modules.Errorf("nonce_lifetime", "must be between 10s and 24h, not %s", a.NonceLifetime)
	}
	if a.CacheEntries < 100 {
		return modules.Errorf("cache_entries", "must be at least 100, not %d", a.CacheEntries)
	}
	if a.Workers < 1 || a.Workers > 256 {
		return modules.Errorf("workers", "must be between 1 and 256, not %d", a.Workers)
	}
	if a.PollInterval < 10*time.Millisecond || a.PollInterval > time.Minute {
		return modules.Errorf("poll_interval", "must be between 10ms and 1m, not %s", a.PollInterval)
	}
	return nil
}

// newModule builds the auth service on the server's store: the nonce
// secret in the data directory, the credential cache, and the management
// commands for subscribers and domains.
func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	st := settings.(*Settings)
	if h.Store == nil {
		return nil, errors.New("needs the store")
	}
	secret, err := store.LoadSecret(filepath.Join(h.DataDir, "auth.secret"), "nonce secret")
	if err != nil {
		return nil, err
	}
	a, err := New(Config{
		Store:               h.Store,
		Clock:               h.Clock,
		Secret:              secret,
		Algorithms:          st.Algorithms,
		NonceLifetime:       st.NonceLifetime,
		CacheEntries:        int64(st.CacheEntries),
		Workers:             st.Workers,
		PollInterval:        st.PollInterval,
		SkipURICheck:        !st.CheckURI,
		SkipSourceCheck:     !st.CheckSource,
		RegisterWithoutAuth: !st.Register,
		Domains:             h.Domains,
		Logger:              h.Logger(),
	})
	if err != nil {
		return nil, err
	}
	if !st.Register {
		h.Logger().Warn("auth.register is false: REGISTER is accepted without a password (benchmarks only)")
	}
	a.registerMetrics(h)
	a.registerCommands(h)
	return a, nil
}

// RegisterWithoutAuth reports whether REGISTER is to be saved without
// authentication (auth.register: false, for registrar benchmarks).
func (a *Auth) RegisterWithoutAuth() bool { return a.cfg.RegisterWithoutAuth }

// Start keeps the store's domains served: the poller adds them when they
// change, and a slow loop puts them back after a reload replaced the
// served set with the configured ones.
func (a *Auth) Start() error {
	if a.cfg.Domains == nil {
		return nil
	}
	a.SyncDomains()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				a.SyncDomains()
			}
		}
	}()
	return nil
}

// Stop stops the workers, the poller and the domain loop.
func (a *Auth) Stop() { a.Close() }

// SyncDomains adds the store's domains to the served set when some are
// missing (added by `switchboard domain add` or the API). Domains removed
// from the store stay served until a reload or restart.
func (a *Auth) SyncDomains() {
	if a.cfg.Domains == nil {
		return
	}
	a.domainMu.Lock()
	defer a.domainMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := a.st.ListDomains(ctx)
	if a.domainOutage.Report(err) {
		a.log.Warn("reading the store's domains failed", "err", err)
	}
	if err != nil {
		return
	}
	var missing []string
	for _, d := range ds {
		if !a.cfg.Domains.Has([]byte(d.Domain)) {
			missing = append(missing, d.Domain)
		}
	}
	if len(missing) > 0 {
		a.cfg.Domains.Replace(append(a.cfg.Domains.List(), missing...))
		a.log.Info("serving domains from the store", "added", fmt.Sprint(missing))
	}
}

func (a *Auth) registerMetrics(h *modules.Host) {
	for name, f := range map[string]func(Stats) uint64{
		"authorized": func(s Stats) uint64 { return s.Authorized }, "failed": func(s Stats) uint64 { return s.Failed },
		"stale": func(s Stats) uint64 { return s.Stale }, "forbidden": func(s Stats) uint64 { return s.Forbidden },
		"challenges": func(s Stats) uint64 { return s.Challenges }, "cache_misses": func(s Stats) uint64 { return s.CacheMisses },
		"busy": func(s Stats) uint64 { return s.Busy }, "store_errors": func(s Stats) uint64 { return s.StoreErrors },
		"bad_uri": func(s Stats) uint64 { return s.BadURI }, "retransmits": func(s Stats) uint64 { return s.Retransmits },
		"foreign_nonces": func(s Stats) uint64 { return s.ForeignNonces },
	} {
		h.Metrics.NewGauge(`switchboard_auth_`+name+`_total`, func() float64 { return float64(f(a.Stats())) })
	}
}

// registerCommands adds the management commands for subscribers and
// domains: the same operations as `switchboard user` and `switchboard
// domain`.
func (a *Auth) registerCommands(h *modules.Host) {
	st := a.st
	cmd := func(name, help string, run func(ctx context.Context, args json.RawMessage) (any, error)) {
		h.Command(name, mgmt.Command{Help: help, Run: run})
	}
	view := func(name, help string, run func(ctx context.Context, args json.RawMessage) (any, error)) {
		h.Command(name, mgmt.Command{Help: help, ReadOnly: true, Run: run})
	}
	type userArgs struct {
		User      string `json:"user"` // user@domain
		Password  string `json:"password"`
		HA1       string `json:"ha1"`
		HA1SHA256 string `json:"ha1_sha256"`
		Email     string `json:"email"`
		Domain    string `json:"domain"` // users.list
	}
	userOf := func(raw json.RawMessage, needCreds bool) (userArgs, store.Subscriber, error) {
		var args userArgs
		if err := mgmt.DecodeArgs(raw, &args); err != nil {
			return args, store.Subscriber{}, err
		}
		user, domain, err := store.SplitAOR(args.User)
		if err != nil {
			return args, store.Subscriber{}, &mgmt.ArgError{Msg: `"user": ` + err.Error()}
		}
		if needCreds && args.Password == "" && args.HA1 == "" {
			return args, store.Subscriber{}, &mgmt.ArgError{Msg: `"password" or "ha1" is required`}
		}
		return args, store.Subscriber{Username: user, Domain: domain, Password: args.Password, HA1: args.HA1, HA1SHA256: args.HA1SHA256, Email: args.Email}, nil
	}
	storeErr := func(err error) error {
		switch {
		case errors.Is(err, store.ErrNoSubscriber), errors.Is(err, store.ErrUnknownDomain):
			return fmt.Errorf("%w: %w", mgmt.ErrNotFound, err)
		case errors.Is(err, store.ErrSubscriberExists), errors.Is(err, store.ErrDomainExists), errors.Is(err, store.ErrDomainInUse),
			errors.Is(err, store.ErrMalformedUser), errors.Is(err, store.ErrMalformedDomain), errors.Is(err, store.ErrMalformedHA1),
			errors.Is(err, store.ErrNoCredentials):
			return &mgmt.ArgError{Msg: err.Error()}
		}
		return err
	}
	userCmd := func(name, help string, needCreds bool, do func(ctx context.Context, sub store.Subscriber) error, done string) {
		cmd(name, help, func(ctx context.Context, raw json.RawMessage) (any, error) {
			_, sub, err := userOf(raw, needCreds)
			if err != nil {
				return nil, err
			}
			if err := do(ctx, sub); err != nil {
				return nil, storeErr(err)
			}
			a.Invalidate(sub.Username, sub.Domain)
			return done + sub.Username + "@" + sub.Domain, nil
		})
	}
	userCmd("users.add", `add a subscriber: {"user":"alice@example.com","password":"..."} (or "ha1" and "ha1_sha256"; "email")`, true,
		st.AddSubscriber, "added ")
	userCmd("users.passwd", `change a subscriber's password: {"user":"alice@example.com","password":"..."} (or "ha1"...)`, true,
		st.SetCredentials, "password changed for ")
	userCmd("users.del", `delete a subscriber: {"user":"alice@example.com"} (its registrations stay until they expire or are deleted)`, false,
		func(ctx context.Context, sub store.Subscriber) error {
			return st.DeleteSubscriber(ctx, sub.Username, sub.Domain)
		}, "deleted ")
	view("users.list", `list subscribers: {"domain":"example.com"}, or all`,
		func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args userArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			subs, err := st.ListSubscribers(ctx, args.Domain)
			if err != nil {
				return nil, storeErr(err)
			}
			type user struct {
				User    string `json:"user"`
				Email   string `json:"email,omitempty"`
				Created string `json:"created"`
			}
			out := []user{}
			for _, s := range subs {
				out = append(out, user{s.Username + "@" + s.Domain, s.Email, time.Unix(s.Created, 0).UTC().Format(time.RFC3339)})
			}
			return out, nil
		})
	type domainArgs struct {
		Domain string `json:"domain"`
	}
	domainCmd := func(name, help string, do func(ctx context.Context, d string) error, done string) {
		cmd(name, help, func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args domainArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Domain == "" {
				return nil, &mgmt.ArgError{Msg: `"domain" is required`}
			}
			if err := do(ctx, args.Domain); err != nil {
				return nil, storeErr(err)
			}
			a.SyncDomains()
			return done + " " + args.Domain, nil
		})
	}
	domainCmd("domains.add", `serve a domain and allow subscribers in it: {"domain":"example.com"}`, st.AddDomain, "added")
	domainCmd("domains.del", `remove a domain from the store (it must have no subscribers): {"domain":"example.com"}`, st.DeleteDomain, "deleted")
	view("domains.list", "the domains in the store (subscribers' domains)", func(ctx context.Context, _ json.RawMessage) (any, error) {
		ds, err := st.ListDomains(ctx)
		if err != nil {
			return nil, err
		}
		out := []string{}
		for _, d := range ds {
			out = append(out, d.Domain)
		}
		return out, nil
	})
}
