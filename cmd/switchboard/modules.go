package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"switchboard/mgmt"
	"switchboard/modules/auth"
	"switchboard/modules/registrar"
	"switchboard/routing"
	"switchboard/routing/provider"
	"switchboard/shards"
	"switchboard/store"
)

// modules are the services of modules/ that route sets call: the
// registrar (location service) and digest authentication.
type modules struct {
	clock  *shards.Clock
	writer *store.LocationWriter
	reg    *registrar.Registrar
	auth   *auth.Auth

	stop     chan struct{}
	wg       sync.WaitGroup
	domainMu sync.Mutex
}

// startModules builds the registrar and auth on the store, fills the
// location table from it, hands both to the route set through env and
// registers their management commands.
func (s *server) startModules(env *routing.Env) error {
	cfg := s.cfg
	m := &modules{stop: make(chan struct{})}
	s.mods = m
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The configured domains are served: make them known to the store so
	// that subscribers can be added to them.
	for _, d := range cfg.Domains {
		if err := s.store.AddDomain(ctx, d); err != nil && !errors.Is(err, store.ErrDomainExists) {
			s.log.Warn("domain not added to the store; subscribers cannot be added to it", "domain", d, "err", err)
		}
	}

	// The clock of every table: the transaction core's as well (each
	// clock is a ticker waking the process every tick).
	m.clock = shards.NewClock()
	if err := m.clock.Start(shards.DefaultTick); err != nil {
		return err
	}
	m.writer = s.store.NewLocationWriter(store.WriterOptions{
		CleanupInterval: time.Minute,
		OnError: func(err error, ops int) {
			s.log.Error("registrar: location changes not stored (they are rewritten at the next refresh)", "ops", ops, "err", err)
		},
	})
	rc := cfg.Registrar
	var err error
	m.reg, err = registrar.New(registrar.Config{
		Clock:          m.clock,
		DefaultExpires: rc.DefaultExpires.D(),
		MinExpires:     rc.MinExpires.D(),
		MaxExpires:     rc.MaxExpires.D(),
		MaxContacts:    rc.MaxContacts,
		MaxBytes:       int64(rc.MaxMemory) << 20,
		Shards:         cfg.Limits.Shards,
		Writer:         m.writer,
		Logger:         s.log,
	})
	if err != nil {
		return err
	}
	n, err := m.reg.Load(ctx, s.store)
	if err != nil {
		return fmt.Errorf("registrar: loading the stored bindings: %w", err)
	}
	s.log.Info("registrar: bindings loaded", "bindings", n)

	secret, err := store.LoadSecret(filepath.Join(cfg.Storage.Dir, "auth.secret"), "nonce secret")
	if err != nil {
		return err
	}
	ac := cfg.Auth
	m.auth, err = auth.New(auth.Config{
		Store:          s.store,
		Clock:          m.clock,
		Secret:         secret,
		Algorithms:     ac.Algorithms,
		NonceLifetime:  ac.NonceLifetime.D(),
		CacheEntries:   int64(ac.CacheEntries),
		Workers:        ac.Workers,
		PollInterval:   ac.PollInterval.D(),
		OnDomainChange: s.syncStoreDomains,
		Logger:         s.log,
	})
	if err != nil {
		return err
	}
	if !ac.Register {
		s.log.Warn("auth.register is false: REGISTER is accepted without a password (benchmarks only)")
	}
	env.Modules = map[string]any{
		"registrar": m.reg,
		"auth":      m.auth,
		"provider": provider.Options{
			RegisterWithoutAuth: !ac.Register,
			RevealUnknownUsers:  cfg.Provider.RevealUnknownUsers,
		},
	}
	s.registerModuleMetrics()
	s.registerModuleCommands()

	// Domains added to the store (CLI or API) are served too. The auth
	// poller calls syncStoreDomains when they change; this loop also puts
	// them back after a reload replaced the served set.
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				s.syncStoreDomains()
			}
		}
	}()
	return nil
}

// stopModules stops the modules and writes the queued location changes.
// The transport and the core are stopped already; the store is closed after.
func (s *server) stopModules() {
	m := s.mods
	if m == nil {
		return
	}
	close(m.stop)
	m.wg.Wait()
	if m.auth != nil {
		m.auth.Close()
	}
	if m.reg != nil {
		m.reg.Close()
	}
	if m.writer != nil {
		if err := m.writer.Close(); err != nil {
			s.log.Error("registrar: location changes lost at shutdown", "err", err)
		}
	}
	if m.clock != nil {
		m.clock.Stop()
	}
}

// syncStoreDomains adds the store's domains to the served set when some
// are missing (added by `switchboard domain add` or the API). Domains
// removed from the store stay served until a reload or restart.
func (s *server) syncStoreDomains() {
	m := s.mods
	m.domainMu.Lock()
	defer m.domainMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := s.store.ListDomains(ctx)
	if err != nil {
		s.log.Warn("reading the store's domains failed", "err", err)
		return
	}
	var missing []string
	for _, d := range ds {
		if !s.domains.Has([]byte(d.Domain)) {
			missing = append(missing, d.Domain)
		}
	}
	if len(missing) > 0 {
		s.domains.Replace(append(s.domains.List(), missing...))
		s.log.Info("serving domains from the store", "added", fmt.Sprint(missing))
	}
}

func (s *server) registerModuleMetrics() {
	set, m := s.mgmt.Metrics(), s.mods
	var mu sync.Mutex
	var last registrar.Stats
	var lastAt time.Time
	// Stats walks every shard: take it at most once per scrape.
	stats := func() registrar.Stats {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(lastAt) > 500*time.Millisecond {
			last, lastAt = m.reg.Stats(), time.Now()
		}
		return last
	}
	set.NewGauge("switchboard_registrar_aors", func() float64 { return float64(stats().AORs) })
	set.NewGauge("switchboard_registrar_bindings", func() float64 { return float64(stats().Bindings) })
	for name, f := range map[string]func(registrar.Stats) uint64{
		"saved": func(s registrar.Stats) uint64 { return s.Saved }, "removed": func(s registrar.Stats) uint64 { return s.Removed },
		"expired": func(s registrar.Stats) uint64 { return s.Expired }, "refused": func(s registrar.Stats) uint64 { return s.Refused },
		"lookups": func(s registrar.Stats) uint64 { return s.Lookups }, "found": func(s registrar.Stats) uint64 { return s.Found },
		"write_drops": func(s registrar.Stats) uint64 { return s.WriteDrops },
	} {
		set.NewGauge(`switchboard_registrar_`+name+`_total`, func() float64 { return float64(f(stats())) })
	}
	for name, f := range map[string]func(auth.Stats) uint64{
		"authorized": func(s auth.Stats) uint64 { return s.Authorized }, "failed": func(s auth.Stats) uint64 { return s.Failed },
		"stale": func(s auth.Stats) uint64 { return s.Stale }, "forbidden": func(s auth.Stats) uint64 { return s.Forbidden },
		"challenges": func(s auth.Stats) uint64 { return s.Challenges }, "cache_misses": func(s auth.Stats) uint64 { return s.CacheMisses },
		"busy": func(s auth.Stats) uint64 { return s.Busy }, "store_errors": func(s auth.Stats) uint64 { return s.StoreErrors },
	} {
		set.NewGauge(`switchboard_auth_`+name+`_total`, func() float64 { return float64(f(m.auth.Stats())) })
	}
}

// registerModuleCommands adds the management API commands of the
// registrar and of subscriber and domain management (the same operations
// as `switchboard user` and `switchboard domain`). cmd registers a command
// that changes state (POST only), view one that only reads.
func (s *server) registerModuleCommands() {
	reg, a, st := s.mods.reg, s.mods.auth, s.store
	cmd := func(name, help string, run func(ctx context.Context, args json.RawMessage) (any, error)) {
		s.mgmt.Register(name, mgmt.Command{Help: help, Run: run})
	}
	view := func(name, help string, run func(ctx context.Context, args json.RawMessage) (any, error)) {
		s.mgmt.Register(name, mgmt.Command{Help: help, ReadOnly: true, Run: run})
	}
	type aorArgs struct {
		AOR     string `json:"aor"`
		Contact string `json:"contact"`
	}
	view("registrations.list", `registered contacts: {"aor":"alice@example.com"} for one AOR, none for all`,
		func(_ context.Context, raw json.RawMessage) (any, error) {
			var args aorArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			l := reg.List(args.AOR)
			if l == nil {
				l = []registrar.Info{}
			}
			return l, nil
		})
	cmd("registrations.delete", `remove a binding: {"aor":"alice@example.com","contact":"sip:alice@192.0.2.1:5060"}; without contact every binding of the AOR`,
		func(_ context.Context, raw json.RawMessage) (any, error) {
			var args aorArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.AOR == "" {
				return nil, &mgmt.ArgError{Msg: `"aor" is required`}
			}
			n := reg.Delete(args.AOR, args.Contact)
			if n == 0 {
				return nil, fmt.Errorf("no such binding of %s: %w", args.AOR, mgmt.ErrNotFound)
			}
			return map[string]int{"removed": n}, nil
		})
	cmd("registrations.flush", `remove every binding of every AOR (or of {"aor":...})`,
		func(_ context.Context, raw json.RawMessage) (any, error) {
			var args aorArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.AOR != "" {
				return map[string]int{"removed": reg.Delete(args.AOR, "")}, nil
			}
			return map[string]int{"removed": reg.Flush()}, nil
		})

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
	cmd("users.add", `add a subscriber: {"user":"alice@example.com","password":"..."} (or "ha1" and "ha1_sha256"; "email")`,
		func(ctx context.Context, raw json.RawMessage) (any, error) {
			_, sub, err := userOf(raw, true)
			if err != nil {
				return nil, err
			}
			if err := st.AddSubscriber(ctx, sub); err != nil {
				return nil, storeErr(err)
			}
			a.Invalidate(sub.Username, sub.Domain)
			return "added " + sub.Username + "@" + sub.Domain, nil
		})
	cmd("users.passwd", `change a subscriber's password: {"user":"alice@example.com","password":"..."} (or "ha1"...)`,
		func(ctx context.Context, raw json.RawMessage) (any, error) {
			_, sub, err := userOf(raw, true)
			if err != nil {
				return nil, err
			}
			if err := st.SetCredentials(ctx, sub); err != nil {
				return nil, storeErr(err)
			}
			a.Invalidate(sub.Username, sub.Domain)
			return "password changed for " + sub.Username + "@" + sub.Domain, nil
		})
	cmd("users.del", `delete a subscriber: {"user":"alice@example.com"} (its registrations stay until they expire or are deleted)`,
		func(ctx context.Context, raw json.RawMessage) (any, error) {
			_, sub, err := userOf(raw, false)
			if err != nil {
				return nil, err
			}
			if err := st.DeleteSubscriber(ctx, sub.Username, sub.Domain); err != nil {
				return nil, storeErr(err)
			}
			a.Invalidate(sub.Username, sub.Domain)
			return "deleted " + sub.Username + "@" + sub.Domain, nil
		})
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
			s.syncStoreDomains()
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
