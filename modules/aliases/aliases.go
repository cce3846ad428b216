// Package aliases is OpenSIPS's alias_db (alias_db_lookup): DIDs and other
// names mapped to subscribers. The store's aliases table says that
// requests for alias@domain go to the subscriber user@domain; AliasLookup
// rewrites the Request-URI accordingly, before the location lookup, so a
// call to a DID reaches the phones its subscriber registered.
//
// The table is held in memory, one hash map keyed by alias@domain, and
// reloaded whole when its version in the store moves (a write from the
// CLI, the management API or another node), swapped in one atomic store.
// A lookup takes no lock and allocates nothing. See README.md.
package aliases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/tablepoll"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
)

// Settings are the aliases section of the configuration.
type Settings struct {
	// PollInterval is how often the store is asked whether the aliases
	// changed; a change is in use within it.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxEntries bounds the aliases loaded: a larger table is not loaded
	// (the aliases in use stay, an error is logged and counted).
	MaxEntries int `yaml:"max_entries"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{PollInterval: time.Second, MaxEntries: 1_000_000}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	if s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute {
		return modules.Errorf("poll_interval", "%s: want 10ms to 1m", s.PollInterval)
	}
	if s.MaxEntries < 1 || s.MaxEntries > 100_000_000 {
		return modules.Errorf("max_entries", "%d: want 1 to 100000000", s.MaxEntries)
	}
	return nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "aliases",
		Doc:      "DIDs and aliases mapped to subscribers (OpenSIPS alias_db, alias_db_lookup)",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// target is the subscriber an alias reaches.
type target struct {
	user, domain []byte
}

// table is one generation of the aliases: built whole, swapped whole.
type table struct {
	m map[string]target // alias@domain (domain lower-case) -> subscriber
}

// Aliases is the module instance; route sets find it in
// routing.Env.Modules["aliases"]. Its methods are safe for concurrent use.
type Aliases struct {
	st  *store.Store
	log *slog.Logger

	tab *tablepoll.Snapshot[table]

	lookups, hits *metrics.Counter
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Store == nil {
		return nil, errors.New("aliases needs the store")
	}
	a := &Aliases{st: h.Store, log: h.Logger()}
	a.tab = tablepoll.NewSnapshot(tablepoll.SnapshotSpec[table]{
		Module: "aliases", Table: "table", Items: "the aliases", Log: a.log, Metrics: h.Metrics,
		Version: a.st.AliasesVersion, Build: a.load,
		Loaded: func(t *table) []any { return []any{"aliases", len(t.m)} },
	}, &table{m: map[string]target{}}, s.PollInterval, int64(s.MaxEntries))
	a.lookups = h.Metrics.GetOrCreateCounter("switchboard_aliases_lookups_total")
	a.hits = h.Metrics.GetOrCreateCounter("switchboard_aliases_hits_total")
	h.Metrics.GetOrCreateGauge("switchboard_aliases_entries", func() float64 { return float64(len(a.tab.Current().m)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Load(ctx); err != nil {
		return nil, err
	}
	a.registerCommands(h)
	return a, nil
}

// Start polls the store for changes.
func (a *Aliases) Start() error {
	a.tab.Start()
	return nil
}

// Stop ends the poller.
func (a *Aliases) Stop() { a.tab.Stop() }

// CheckReload refuses a max_entries the table in the store is over.
func (a *Aliases) CheckReload(v any) error {
	if err := a.tab.CheckReload(int64(v.(*Settings).MaxEntries)); err != nil {
		return modules.Errorf("max_entries", "%v", err)
	}
	return nil
}

// Reload applies changed settings (SIGHUP); a changed max_entries loads
// the table again, and if it is over the new limit the old settings stay.
func (a *Aliases) Reload(v any) error {
	s := v.(*Settings)
	return a.tab.Reload(s.PollInterval, int64(s.MaxEntries))
}

// Load reads the aliases from the store and swaps them in; it returns the
// table version loaded. On error the aliases in use stay.
func (a *Aliases) Load(ctx context.Context) (int64, error) { return a.tab.Load(ctx) }

func (a *Aliases) load(ctx context.Context, _ *table, limit int64) (*table, int64, error) {
	v, err := a.st.AliasesVersion(ctx) // first: a write meanwhile is loaded at the next poll
	if err != nil {
		return nil, 0, fmt.Errorf("reading the aliases version: %w", err)
	}
	rows, err := a.st.ListAliases(ctx, "")
	if err != nil {
		return nil, 0, fmt.Errorf("reading the aliases: %w", err)
	}
	if int64(len(rows)) > limit {
		return nil, 0, fmt.Errorf("the aliases table has %d entries, more than aliases.max_entries (%d)", len(rows), limit)
	}
	t := &table{m: make(map[string]target, len(rows))}
	var escaped []store.Alias
	for _, r := range rows {
		if strings.IndexByte(r.AliasUser, '%') >= 0 {
			escaped = append(escaped, r)
			continue
		}
		t.m[r.AliasName()] = target{user: []byte(r.User), domain: []byte(r.Domain)}
	}
	// A row stored with escapes in its alias user (before the store
	// decoded them, or written by hand) is keyed by the decoded name the
	// lookup compares, unless a row stored decoded has that name.
	for _, r := range escaped {
		key := r.AliasName()
		if u, d, err := store.SplitAlias(key); err == nil {
			key = u + "@" + d
		}
		if _, taken := t.m[key]; taken {
			a.log.Warn("aliases: an alias stored with escapes is shadowed by the same alias stored decoded", "alias", r.AliasName(), "decoded", key)
			continue
		}
		t.m[key] = target{user: []byte(r.User), domain: []byte(r.Domain)}
	}
	return t, v, nil
}

// maxKey is the longest alias@domain (user 128 bytes, domain 253).
const maxKey = 128 + 1 + 253

// AliasLookup rewrites the Request-URI's user and host to the subscriber
// its user@host is an alias of, and reports whether it was one (OpenSIPS
// alias_db_lookup("dbaliases")). Call it for requests to served domains
// before the location lookup. The user part is compared with its escapes
// decoded (%2B33... is +33..., and the store keeps aliases decoded:
// store.SplitAlias) and the host case-insensitively; the rest
// of the URI (port, parameters) is kept. It takes no lock and allocates
// nothing.
func (a *Aliases) AliasLookup(c *routing.Ctx) bool {
	a.lookups.Inc()
	user, host := c.RUser(), c.RDomain()
	if len(user) == 0 || len(user)+1+len(host) > maxKey {
		return false
	}
	var kb [maxKey]byte
	key := kb[:0]
	if bytes.IndexByte(user, '%') >= 0 {
		var err error
		if key, err = parser.Unescape(key, user); err != nil {
			return false
		}
	} else {
		key = append(key, user...)
	}
	key = append(key, '@')
	for _, ch := range host {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		key = append(key, ch)
	}
	t, ok := a.tab.Current().m[string(key)]
	if !ok {
		return false
	}
	if !c.SetRUser(t.user) || !c.SetRDomain(t.domain) {
		return false
	}
	a.hits.Inc()
	return true
}

// Lookup returns the subscriber "user@domain" that alias ("alias@domain",
// its user with or without escapes) reaches in the table in use.
func (a *Aliases) Lookup(alias string) (string, bool) {
	u, d, err := store.SplitAlias(alias)
	if err != nil {
		return "", false
	}
	t, ok := a.tab.Current().m[u+"@"+d]
	if !ok {
		return "", false
	}
	return string(t.user) + "@" + string(t.domain), true
}

// Len returns the number of aliases in use.
func (a *Aliases) Len() int { return len(a.tab.Current().m) }
