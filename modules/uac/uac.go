// Package uac is Switchboard acting as a user agent client toward
// carriers, OpenSIPS's uac, uac_auth and uac_registrant modules (Kamailio's
// uac): it answers a carrier's 401/407 with the trunk's credentials
// (UACAuth, in the failure route), presents the identity a carrier wants
// (ReplaceFrom, ReplaceTo) and puts the caller's back on what the caller
// sees, and keeps registrations with carriers as a client (the
// registrant). Credentials and registrations are tables in the store,
// edited with the CLI and the management API and reloaded without a
// restart. Nothing here keeps dialog state: what a dialog's later
// requests need (the CSeq offset after a challenge, the replaced From
// and To) travels, signed and encrypted, in our Record-Route. See
// README.md.
package uac

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/tablepoll"
	"switchboard/store"
)

// Settings are the uac section of the configuration.
type Settings struct {
	// PollInterval is how often the tables' versions are read; a change
	// made with the CLI (another process) is in use within it.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxCredentials and MaxRegistrations bound the tables loaded: a
	// larger table is not loaded (the one in use stays, an error is
	// logged).
	MaxCredentials   int `yaml:"max_credentials"`
	MaxRegistrations int `yaml:"max_registrations"`
	// RetryMin is the wait before a failed registration is tried again,
	// doubled after each failure up to RetryMax (a registrar's
	// Retry-After within those bounds is honoured).
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
}

// Defaults of the settings.
const (
	DefaultPollInterval     = time.Second
	DefaultMaxCredentials   = 100_000
	DefaultMaxRegistrations = 10_000
	DefaultRetryMin         = 30 * time.Second
	DefaultRetryMax         = 10 * time.Minute
)

func defaultSettings() any {
	return &Settings{PollInterval: DefaultPollInterval, MaxCredentials: DefaultMaxCredentials,
		MaxRegistrations: DefaultMaxRegistrations, RetryMin: DefaultRetryMin, RetryMax: DefaultRetryMax}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute:
		return modules.Errorf("poll_interval", "must be between 10ms and 1m, not %s", s.PollInterval)
	case s.MaxCredentials < 1 || s.MaxCredentials > 10_000_000:
		return modules.Errorf("max_credentials", "must be between 1 and 10000000, not %d", s.MaxCredentials)
	case s.MaxRegistrations < 1 || s.MaxRegistrations > 1_000_000:
		return modules.Errorf("max_registrations", "must be between 1 and 1000000, not %d", s.MaxRegistrations)
	case s.RetryMin < 100*time.Millisecond || s.RetryMin > time.Hour:
		return modules.Errorf("retry_min", "must be between 100ms and 1h, not %s", s.RetryMin)
	case s.RetryMax < s.RetryMin || s.RetryMax > 24*time.Hour:
		return modules.Errorf("retry_max", "must be between retry_min (%s) and 24h, not %s", s.RetryMin, s.RetryMax)
	}
	return nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "uac",
		Doc:      "trunks that authenticate us: uac_auth, uac_replace_from/to, and registrations to carriers (uac_registrant)",
		Settings: defaultSettings,
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// UAC is the built module; route sets find it in
// routing.Env.Modules["uac"].
type UAC struct {
	st   *store.Store
	log  *slog.Logger
	host *modules.Host

	creds atomic.Pointer[credTable]
	aead  cipher.AEAD // the From/To tokens in our Record-Route (replace.go)
	reg   *registrant

	interval         atomic.Int64 // ns
	maxCreds, maxReg atomic.Int64
	retryMin         atomic.Int64 // ns
	retryMax         atomic.Int64 // ns

	reloadMu  sync.Mutex // serialises credential reloads
	credsVer  int64
	pollers   [2]*tablepoll.Poller // credentials, registrations
	scratches sync.Pool            // *scratch

	authAnswered, authNoCreds, authRejected, authRefused *metrics.Counter
	replaced, restored, badTokens                        *metrics.Counter
	reloads, reloadErrors                                *metrics.Counter
}

func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	s := settings.(*Settings)
	if h.Store == nil {
		return nil, fmt.Errorf("uac needs the store")
	}
	u := &UAC{st: h.Store, log: h.Logger(), host: h}
	u.apply(s)
	u.creds.Store(&credTable{})
	u.scratches.New = func() any { return newScratch() }
	// The key of the From/To tokens: on disk like the Record-Route
	// secret, so that calls set up before a restart, or on another node
	// that shares the file, keep their identity.
	secret := make([]byte, 32)
	if h.DataDir != "" {
		s, err := store.LoadSecret(filepath.Join(h.DataDir, "uac.secret"), "uac secret")
		if err != nil {
			return nil, err
		}
		secret = s
	} else if _, err := rand.Read(secret); err != nil { // no data directory (tests): this process only
		return nil, err
	}
	key := sha256.Sum256(append([]byte("switchboard uac tokens\x00"), secret...))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	if u.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	m := h.Metrics
	u.authAnswered = m.GetOrCreateCounter("switchboard_uac_auth_answered_total")
	u.authNoCreds = m.GetOrCreateCounter("switchboard_uac_auth_no_credentials_total")
	u.authRejected = m.GetOrCreateCounter("switchboard_uac_auth_rejected_total")
	u.authRefused = m.GetOrCreateCounter("switchboard_uac_auth_refused_total")
	u.replaced = m.GetOrCreateCounter("switchboard_uac_replaced_total")
	u.restored = m.GetOrCreateCounter("switchboard_uac_restored_total")
	u.badTokens = m.GetOrCreateCounter("switchboard_uac_bad_tokens_total")
	u.reloads = m.GetOrCreateCounter("switchboard_uac_reloads_total")
	u.reloadErrors = m.GetOrCreateCounter("switchboard_uac_reload_errors_total")
	m.GetOrCreateGauge("switchboard_uac_credentials", func() float64 { return float64(u.creds.Load().n) })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := u.reloadCredentials(ctx); err != nil {
		return nil, err
	}
	u.reg = newRegistrant(u, h)
	if _, err := u.reg.reload(ctx); err != nil {
		return nil, err
	}
	u.registerCommands(h)
	return u, nil
}

func (u *UAC) apply(s *Settings) {
	u.interval.Store(int64(s.PollInterval))
	u.maxCreds.Store(int64(s.MaxCredentials))
	u.maxReg.Store(int64(s.MaxRegistrations))
	u.retryMin.Store(int64(s.RetryMin))
	u.retryMax.Store(int64(s.RetryMax))
}

// Start begins polling the tables and registering.
func (u *UAC) Start() error {
	u.reg.start()
	interval := func() time.Duration { return time.Duration(u.interval.Load()) }
	u.pollers[0] = tablepoll.Start(tablepoll.Config{
		Interval: interval, Version: u.st.UACCredentialsVersion, Load: u.reloadCredentials, Loaded: u.loadedCredsVersion(),
		Failed: func(err error) {
			u.log.Warn("uac: reading the credentials failed; the table in use may be stale", "err", err)
		},
	})
	u.pollers[1] = tablepoll.Start(tablepoll.Config{
		Interval: interval, Version: u.st.UACRegistrationsVersion, Load: u.reg.reload, Loaded: u.reg.loadedVersion(),
		Failed: func(err error) { u.log.Warn("uac: reading the registrations failed", "err", err) },
	})
	return nil
}

// Stop ends the pollers and the registrations' timers. Bindings at the
// carriers are left to expire (a restart registers again at once).
func (u *UAC) Stop() {
	for _, p := range u.pollers {
		p.Stop()
	}
	u.reg.stopAll()
}

// Reload takes new settings (SIGHUP), which CheckReload passed.
func (u *UAC) Reload(settings any) error {
	u.apply(settings.(*Settings))
	return nil
}

// CheckReload refuses a max_credentials or max_registrations below the
// rows of its table in the store (or a table it cannot read then), as the
// other modules refuse a limit below their tables: taken, the limit left
// the table in use as it was and failed every later load of it, an
// operator's new credential or registration never used. Every other key
// applies at once.
func (u *UAC) CheckReload(settings any) error {
	s := settings.(*Settings)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if int64(s.MaxCredentials) != u.maxCreds.Load() {
		rows, err := u.st.ListUACCredentials(ctx)
		if err != nil {
			return fmt.Errorf("reading the uac_credentials table for max_credentials: %w", err)
		}
		if len(rows) > s.MaxCredentials {
			return modules.Errorf("max_credentials", "%d: the uac_credentials table has %d rows", s.MaxCredentials, len(rows))
		}
	}
	if int64(s.MaxRegistrations) != u.maxReg.Load() {
		rows, err := u.st.ListUACRegistrations(ctx)
		if err != nil {
			return fmt.Errorf("reading the uac_registrations table for max_registrations: %w", err)
		}
		if len(rows) > s.MaxRegistrations {
			return modules.Errorf("max_registrations", "%d: the uac_registrations table has %d rows", s.MaxRegistrations, len(rows))
		}
	}
	return nil
}

func (u *UAC) loadedCredsVersion() int64 {
	u.reloadMu.Lock()
	defer u.reloadMu.Unlock()
	return u.credsVer
}

// reloadCredentials reads the credentials and swaps the table in use,
// returning the version loaded; on error the table in use stays.
func (u *UAC) reloadCredentials(ctx context.Context) (int64, error) {
	u.reloadMu.Lock()
	defer u.reloadMu.Unlock()
	v, err := u.st.UACCredentialsVersion(ctx)
	if err == nil {
		var rows []store.UACCredential
		if rows, err = u.st.ListUACCredentials(ctx); err == nil {
			if max := u.maxCreds.Load(); int64(len(rows)) > max {
				err = fmt.Errorf("the uac_credentials table has %d rows, more than uac.max_credentials (%d); the table in use stays", len(rows), max)
			} else {
				t, skipped := buildCredTable(rows)
				for i, e := range skipped {
					if i == 10 {
						break
					}
					u.log.Warn("uac: credential skipped (used for nothing until corrected)", "err", e)
				}
				u.creds.Store(t)
				u.credsVer = v
				u.reloads.Inc()
				u.log.Info("uac: credentials loaded", "credentials", t.n, "skipped", len(skipped))
				return v, nil
			}
		}
	}
	u.reloadErrors.Inc()
	u.log.Error("uac: loading the credentials failed; the table in use stays", "err", err)
	return 0, fmt.Errorf("uac credentials: %w", err)
}
