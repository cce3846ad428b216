// Package groups is OpenSIPS's group module (is_user_in): subscribers'
// memberships of named groups ("pstn": may call the PSTN,
// "international": may call abroad), kept in the store's grp table. A
// route asks IsUserIn (usually for the From user, after authentication)
// and decides.
//
// The memberships are held in memory, one hash set keyed by user, domain
// and group, reloaded whole when the table's version in the store moves
// and swapped in one atomic store. A check takes no lock and allocates
// nothing. See README.md.
package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/tablepoll"
	"switchboard/routing"
	"switchboard/store"
)

// Settings are the groups section of the configuration.
type Settings struct {
	// PollInterval is how often the store is asked whether the
	// memberships changed; a change is in use within it.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxEntries bounds the memberships loaded: a larger table is not
	// loaded (the one in use stays, an error is logged and counted).
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
		Name:     "groups",
		Doc:      "subscribers' group memberships (OpenSIPS group module, is_user_in)",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// table is one generation of the memberships.
type table struct {
	m      map[string]struct{} // user@domain NUL group (domain lower-case)
	groups map[string]int      // members per group
}

// Groups is the module instance; route sets find it in
// routing.Env.Modules["groups"]. Its methods are safe for concurrent use.
type Groups struct {
	st  *store.Store
	log *slog.Logger

	tab *tablepoll.Snapshot[table]

	checks, members *metrics.Counter
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Store == nil {
		return nil, errors.New("groups needs the store")
	}
	g := &Groups{st: h.Store, log: h.Logger()}
	g.tab = tablepoll.NewSnapshot(tablepoll.SnapshotSpec[table]{
		Module: "groups", Table: "table", Items: "the memberships", Log: g.log, Metrics: h.Metrics,
		Version: g.st.GroupsVersion, Build: g.load,
		Loaded: func(t *table) []any { return []any{"memberships", len(t.m), "groups", len(t.groups)} },
	}, &table{m: map[string]struct{}{}, groups: map[string]int{}}, s.PollInterval, int64(s.MaxEntries))
	g.checks = h.Metrics.GetOrCreateCounter("switchboard_groups_checks_total")
	g.members = h.Metrics.GetOrCreateCounter("switchboard_groups_members_total")
	h.Metrics.GetOrCreateGauge("switchboard_groups_entries", func() float64 { return float64(len(g.tab.Current().m)) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.Load(ctx); err != nil {
		return nil, err
	}
	g.registerCommands(h)
	return g, nil
}

// Start polls the store for changes.
func (g *Groups) Start() error {
	g.tab.Start()
	return nil
}

// Stop ends the poller.
func (g *Groups) Stop() { g.tab.Stop() }

// CheckReload refuses a max_entries the table in the store is over.
func (g *Groups) CheckReload(v any) error {
	if err := g.tab.CheckReload(int64(v.(*Settings).MaxEntries)); err != nil {
		return modules.Errorf("max_entries", "%v", err)
	}
	return nil
}

// Reload applies changed settings (SIGHUP); a changed max_entries loads
// the table again, and if it is over the new limit the old settings stay.
func (g *Groups) Reload(v any) error {
	s := v.(*Settings)
	return g.tab.Reload(s.PollInterval, int64(s.MaxEntries))
}

// Load reads the memberships from the store and swaps them in; it returns
// the table version loaded. On error the memberships in use stay.
func (g *Groups) Load(ctx context.Context) (int64, error) { return g.tab.Load(ctx) }

func (g *Groups) load(ctx context.Context, _ *table, limit int64) (*table, int64, error) {
	v, err := g.st.GroupsVersion(ctx) // first: a write meanwhile is loaded at the next poll
	if err != nil {
		return nil, 0, fmt.Errorf("reading the groups version: %w", err)
	}
	rows, err := g.st.ListGroupMembers(ctx, "")
	if err != nil {
		return nil, 0, fmt.Errorf("reading the groups: %w", err)
	}
	if int64(len(rows)) > limit {
		return nil, 0, fmt.Errorf("the grp table has %d entries, more than groups.max_entries (%d)", len(rows), limit)
	}
	t := &table{m: make(map[string]struct{}, len(rows)), groups: map[string]int{}}
	for _, r := range rows {
		t.m[r.User+"@"+r.Domain+"\x00"+r.Group] = struct{}{}
		t.groups[r.Group]++
	}
	return t, v, nil
}

// maxKey is the longest key: user (128), '@', domain (253), NUL, group (64).
const maxKey = 128 + 1 + 253 + 1 + store.MaxGroupName

// IsUserIn reports whether user@domain is a member of group (OpenSIPS
// is_user_in("From", "group") with user and domain the From's). The user
// is compared as written (escapes are not decoded: "%61lice" is not
// "alice", so a forged spelling never gains a membership), the domain
// case-insensitively. It takes no lock and allocates nothing. c is the
// request the check is for; it may be nil.
func (g *Groups) IsUserIn(c *routing.Ctx, user, domain []byte, group string) bool {
	g.checks.Inc()
	if len(user) == 0 || len(user)+len(domain)+len(group)+2 > maxKey {
		return false
	}
	var kb [maxKey]byte
	key := append(kb[:0], user...)
	key = append(key, '@')
	for _, ch := range domain {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		key = append(key, ch)
	}
	key = append(key, 0)
	key = append(key, group...)
	if _, ok := g.tab.Current().m[string(key)]; !ok {
		return false
	}
	g.members.Inc()
	return true
}

// IsFromIn is IsUserIn for the request's From user and domain: the
// caller, once authenticated (the From is forgeable before).
func (g *Groups) IsFromIn(c *routing.Ctx, group string) bool {
	return g.IsUserIn(c, c.FUser(), c.FDomain(), group)
}

// Len returns the number of memberships in use and of groups.
func (g *Groups) Len() (memberships, groups int) {
	t := g.tab.Current()
	return len(t.m), len(t.groups)
}
