// Package dialplan is the dialplan module, OpenSIPS's and Kamailio's
// dialplan (dp_translate): rules in the store's dialplan table, grouped by
// dialplan id, translate an input (a dialled number, a user part) into an
// output, with free-text attributes for the route. The provider's number
// normalisation (0xxx to +33xxx, 00 to +) and the drouting module's
// translations are written as these rules.
//
// Rules are held in memory, one plan per dialplan id: exact rules in a
// hash map, prefix rules in a digit trie, regular expressions (compiled
// once per load, and reused across loads) in a list tried only while one
// could beat the exact or prefix rule found. A translation by an exact or
// prefix rule allocates nothing and runs no regular expression. The table
// is reloaded whole when its version in the store moves (a write from the
// CLI, the management API or another node) and swapped in one atomic
// store: a translation sees the old rules or the new ones, never a mix.
// See README.md.
package dialplan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/tablepoll"
	"switchboard/store"
)

// Settings are the dialplan section of the configuration.
type Settings struct {
	// PollInterval is how often the store is asked whether the rules
	// changed; a change is in use within it.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxRules bounds the rules loaded: a larger table is not loaded (the
	// rules in use stay, an error is logged and counted).
	MaxRules int `yaml:"max_rules"`
}

// Defaults of the settings.
const (
	DefaultPollInterval = time.Second
	DefaultMaxRules     = 1_000_000
)

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{PollInterval: DefaultPollInterval, MaxRules: DefaultMaxRules}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	if s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute {
		return modules.Errorf("poll_interval", "%s: want 10ms to 1m", s.PollInterval)
	}
	if s.MaxRules < 1 || s.MaxRules > 100_000_000 {
		return modules.Errorf("max_rules", "%d: want 1 to 100000000", s.MaxRules)
	}
	return nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "dialplan",
		Doc:      "number translation rules (OpenSIPS/Kamailio dialplan, dp_translate)",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// Dialplan is the module instance; route sets find it in
// routing.Env.Modules["dialplan"]. Its methods are safe for concurrent use.
type Dialplan struct {
	st  *store.Store
	log *slog.Logger

	tab *tablepoll.Snapshot[table]

	translations, misses *metrics.Counter
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Store == nil {
		return nil, errors.New("dialplan needs the store")
	}
	d := &Dialplan{st: h.Store, log: h.Logger()}
	d.tab = tablepoll.NewSnapshot(tablepoll.SnapshotSpec[table]{
		Module: "dialplan", Table: "rules", Items: "the rules", Log: d.log, Metrics: h.Metrics,
		Version: d.st.DialplanVersion, Build: d.load,
		Loaded: func(t *table) []any {
			return []any{"rules", len(t.rules), "dialplans", len(t.plans), "disabled", t.off, "skipped", t.skipped}
		},
	}, emptyTable, s.PollInterval, int64(s.MaxRules))
	d.translations = h.Metrics.GetOrCreateCounter("switchboard_dialplan_translations_total")
	d.misses = h.Metrics.GetOrCreateCounter("switchboard_dialplan_misses_total")
	h.Metrics.GetOrCreateGauge("switchboard_dialplan_rules", func() float64 { return float64(len(d.tab.Current().rules)) })
	h.Metrics.GetOrCreateGauge("switchboard_dialplan_dialplans", func() float64 { return float64(len(d.tab.Current().plans)) })
	h.Metrics.GetOrCreateGauge("switchboard_dialplan_skipped_rules", func() float64 { return float64(d.tab.Current().skipped) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Load(ctx); err != nil {
		return nil, err
	}
	d.registerCommands(h)
	return d, nil
}

// Start polls the store for rule changes.
func (d *Dialplan) Start() error {
	d.tab.Start()
	return nil
}

// Stop ends the poller.
func (d *Dialplan) Stop() { d.tab.Stop() }

// CheckReload refuses a max_rules the table in the store is over.
func (d *Dialplan) CheckReload(v any) error {
	if err := d.tab.CheckReload(int64(v.(*Settings).MaxRules)); err != nil {
		return modules.Errorf("max_rules", "%v", err)
	}
	return nil
}

// Reload applies changed settings (SIGHUP): poll_interval at the next
// poll; a changed max_rules loads the table again, and if the table is
// over the new limit the old settings stay.
func (d *Dialplan) Reload(v any) error {
	s := v.(*Settings)
	return d.tab.Reload(s.PollInterval, int64(s.MaxRules))
}

// Load reads the rules from the store, builds a new table and swaps it
// in; it returns the table version loaded. On error the rules in use
// stay. Rows that do not validate (edited in the database by hand) are
// skipped, logged (the first ten) and counted.
func (d *Dialplan) Load(ctx context.Context) (int64, error) { return d.tab.Load(ctx) }

func (d *Dialplan) load(ctx context.Context, prev *table, limit int64) (*table, int64, error) {
	// The version first: a write committed while the rows are read is
	// loaded again at the next poll instead of being missed.
	v, err := d.st.DialplanVersion(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the dialplan version: %w", err)
	}
	rows, err := d.st.ListDialplanRules(ctx, -1)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the dialplan rules: %w", err)
	}
	if int64(len(rows)) > limit {
		return nil, 0, fmt.Errorf("the dialplan table has %d rules, more than dialplan.max_rules (%d)", len(rows), limit)
	}
	logged := 0
	t := buildTable(rows, prev, func(r *store.DialplanRule, err error) {
		if logged < 10 {
			d.log.Warn("dialplan: rule skipped (it matches nothing until corrected)", "id", r.ID, "err", err)
		}
		logged++
	})
	t.version = v
	return t, v, nil
}

// Translate translates in with the rules of dialplan id (OpenSIPS
// dp_translate(id, input, output)): the output is appended to out, which
// is returned as res (no allocation when out has the capacity), with the
// matching rule's attributes. ok is false when no rule of id matches (res
// is then out, unchanged). Exact and prefix rules allocate nothing, and
// neither do regex rules whose output does not refer to the input; a
// regex rule whose output does (\0-\9) allocates once (Go's regexp
// returns group positions in a new slice). in is read during the call
// only, but a regex match makes it escape to the heap.
func (d *Dialplan) Translate(id int, in []byte, out []byte) (res []byte, attrs string, ok bool) {
	res, r, ok := d.tab.Current().translate(id, in, out)
	if !ok {
		d.misses.Inc()
		return res, "", false
	}
	d.translations.Inc()
	return res, r.attrs, true
}

// Rules returns the number of rules in use and of dialplans.
func (d *Dialplan) Rules() (rules, dialplans int) {
	t := d.tab.Current()
	return len(t.rules), len(t.plans)
}
