// Package fraud is the fraud module, OpenSIPS's fraud_detection: per
// caller and per called prefix, it counts calls per minute, calls per day,
// concurrent calls and consecutive calls to the same number, and compares
// them with the warning and critical thresholds of rules kept in the
// store. A route calls Check for a new call (OpenSIPS: check_fraud(user,
// number, profile)); a critical result refuses the call, a warning lets it
// through; both are events (log line, metric, fraud.events).
//
// Rules live in the store's fraud_rules table, grouped in profiles; a
// route checks a call against one profile. The rules of each profile are
// held in a digit trie in memory: Check finds the longest prefix of the
// dialled number whose rule is active at the present hour and day of the
// week without allocating. A change to the table (CLI, management API,
// another node sharing the database) is picked up by polling the table's
// version; the new rules are built aside and swapped in atomically, and
// the counters, which live apart from the rules, carry on.
//
// Counters are kept per (caller, profile, matched prefix) in a bounded
// sharded table. Concurrent calls are counted from the moment Check lets a
// call through until it ends: a final non-2xx response, the end of the
// call's dialog (BindDialog: whatever ended it), a BYE for a call without
// one, or a safety timeout (see README.md).
package fraud

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/dialog"
	"switchboard/modules/internal/calltrack"
	"switchboard/shards"
	"switchboard/store"
)

// Settings are the fraud section of the configuration.
type Settings struct {
	// Profile is the profile the provider route set checks the calls of
	// authenticated subscribers against; 0 checks nothing.
	Profile int `yaml:"profile"`
	// MaxCallers bounds the counter table: one entry per caller, profile
	// and matched prefix. When a shard is full the entry idle the longest
	// is evicted (one with calls in progress last).
	MaxCallers int `yaml:"max_callers"`
	// MaxCalls bounds the calls in progress counted as concurrent; past
	// it a new call is checked but not counted as concurrent.
	MaxCalls int `yaml:"max_calls"`
	// CallTimeout releases a concurrent call whose end the proxy did not
	// see (a BYE that took another path, a lost final response).
	CallTimeout time.Duration `yaml:"call_timeout"`
	// Timezone is the zone the rules' hours, days and the calls of the day
	// are read in: "" (or "Local") the server's, "UTC", or an IANA name.
	Timezone string `yaml:"timezone"`
	// MaxEvents is how many recent warning and critical events
	// fraud.events keeps.
	MaxEvents int `yaml:"max_events"`
	// PollInterval is how often the store is asked whether the rules
	// changed.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{
		Profile:      1,
		MaxCallers:   50_000,
		MaxCalls:     100_000,
		CallTimeout:  4 * time.Hour,
		MaxEvents:    1000,
		PollInterval: time.Second,
	}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.Profile < 0 || s.Profile > 1<<31-1:
		return modules.Errorf("profile", "%d: want 0 (off) or a profile number", s.Profile)
	case s.MaxCallers < 100 || s.MaxCallers > 10_000_000:
		return modules.Errorf("max_callers", "%d: want 100 to 10000000", s.MaxCallers)
	case s.MaxCalls < 100 || s.MaxCalls > 10_000_000:
		return modules.Errorf("max_calls", "%d: want 100 to 10000000", s.MaxCalls)
	case s.CallTimeout < time.Minute || s.CallTimeout > 48*time.Hour:
		return modules.Errorf("call_timeout", "%s: want 1m to 48h", s.CallTimeout)
	case s.MaxEvents < 0 || s.MaxEvents > 100_000:
		return modules.Errorf("max_events", "%d: want 0 to 100000", s.MaxEvents)
	case s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute:
		return modules.Errorf("poll_interval", "%s: want 10ms to 1m", s.PollInterval)
	}
	if _, err := loadZone(s.Timezone); err != nil {
		return modules.Errorf("timezone", "%q: %v", s.Timezone, err)
	}
	return nil
}

func loadZone(name string) (*time.Location, error) {
	switch name {
	case "", "Local":
		return time.Local, nil
	}
	return time.LoadLocation(name)
}

func init() {
	modules.Register(modules.Definition{
		Name:     "fraud",
		Doc:      "fraud limits per caller and called prefix (OpenSIPS fraud_detection)",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		// The dialog module's events end the calls bound to dialogs
		// (BindDialog), as OpenSIPS's fraud_detection ends them from
		// the dialog's callbacks.
		Uses: []string{"dialog"},
		New:  newModule,
		CLI:  cliCommands,
	})
}

// Fraud is the module instance. Its methods are safe for concurrent use.
type Fraud struct {
	h       *modules.Host
	st      *store.Store
	clock   *shards.Clock
	log     *slog.Logger
	profile atomic.Int64
	wall    atomic.Pointer[wallClock]
	rules   atomic.Pointer[ruleSet]

	counters *shards.Table[counter]
	lru      []lru // per counter shard
	perShard int   // counter entries per shard
	calls    *calltrack.Table[Lease]
	tracker  Tracker
	dlg      *dialog.Dialog // whose ended dialogs end the calls bound to them; nil without the module
	timeout  atomic.Int64   // ms

	events eventLog

	reloadMu sync.Mutex // one rule load at a time

	// the sweeper's (run's goroutine) own state
	lastCounterSweep int64

	stop chan struct{}
	done chan struct{}
	poll time.Duration
	max  [2]int // MaxCallers, MaxCalls: need a restart to change

	results      [numResults]*metrics.Counter
	evicted      *metrics.Counter
	reloadErrors *metrics.Counter
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Store == nil || h.Clock == nil {
		return nil, errors.New("fraud: needs the store and the clock")
	}
	f := &Fraud{h: h, st: h.Store, clock: h.Clock, log: h.Logger(), poll: s.PollInterval,
		max: [2]int{s.MaxCallers, s.MaxCalls}}
	f.profile.Store(int64(s.Profile))
	f.timeout.Store(s.CallTimeout.Milliseconds())
	loc, err := loadZone(s.Timezone)
	if err != nil {
		return nil, err
	}
	f.wall.Store(newWallClock(loc))
	f.events.init(s.MaxEvents)
	if f.counters, err = shards.New(shards.Config[counter]{Clock: h.Clock, Shards: h.Shards}); err != nil {
		return nil, err
	}
	f.perShard = perShard(s.MaxCallers, f.counters.NumShards())
	f.lru = make([]lru, f.counters.NumShards())
	f.calls, err = calltrack.New[Lease](calltrack.Config{Clock: h.Clock, Shards: h.Shards, MaxCalls: s.MaxCalls,
		Timeout: &f.timeout, Metrics: h.Metrics, Prefix: "switchboard_fraud_calls"})
	if err != nil {
		f.counters.Close()
		return nil, err
	}
	f.tracker = f.calls
	if d, _ := h.Module("dialog").(*dialog.Dialog); d != nil {
		f.dlg = d
		d.Subscribe(f.dialogEvent)
	}
	f.registerMetrics(h.Metrics)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.LoadRules(ctx); err != nil {
		f.closeTables()
		return nil, err
	}
	f.registerCommands(h)
	return f, nil
}

func perShard(max, shards int) int {
	n := (max + shards - 1) / shards
	if n < 1 {
		n = 1
	}
	return n
}

// Profile is the profile the provider route set checks calls against (the
// setting profile); 0: none, also for a nil *Fraud.
func (f *Fraud) Profile() int {
	if f == nil {
		return 0
	}
	return int(f.profile.Load())
}

// Start polls the store for rule changes and sweeps the tables (calls past
// their timeout, counters idle for a day).
func (f *Fraud) Start() error {
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.run()
	return nil
}

// Stop ends the background work.
func (f *Fraud) Stop() {
	if f.stop != nil {
		close(f.stop)
		<-f.done
		f.stop = nil
	}
	f.closeTables()
}

func (f *Fraud) closeTables() {
	f.counters.Close()
	f.calls.Close()
}

// sweepEvery is how often calls past their timeout are released (so the
// timeout is kept to within this) and counters idle for a day dropped.
const sweepEvery = 5 * time.Second

func (f *Fraud) run() {
	defer close(f.done)
	poll := time.NewTicker(f.poll)
	defer poll.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	var seen int64 = -1
	if rs := f.rules.Load(); rs != nil {
		seen = rs.version
	}
	var outage store.OncePerOutage
	for {
		select {
		case <-f.stop:
			return
		case <-poll.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v, err := f.st.FraudRulesVersion(ctx)
			if err == nil && v != seen {
				err = f.LoadRules(ctx)
			}
			cancel()
			if outage.Report(err) {
				f.log.Warn("fraud: reading the rules failed; the rules loaded before stay in force", "err", err)
			}
			if err != nil {
				f.reloadErrors.Inc()
				continue
			}
			seen = v
		case <-sweep.C:
			f.sweep()
		}
	}
}

// LoadRules loads the rules from the store and swaps them in. A request sees
// the old rules or the new ones, never a mix; counters and calls in
// progress are kept. Rows that do not pass validation (written to the
// database by hand) are skipped and logged.
func (f *Fraud) LoadRules(ctx context.Context) error {
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	v, err := f.st.FraudRulesVersion(ctx)
	if err != nil {
		return err
	}
	rows, err := f.st.ListFraudRules(ctx)
	if err != nil {
		return err
	}
	rs, bad := buildRules(rows)
	rs.version = v
	for _, err := range bad {
		f.log.Warn("fraud: rule skipped", "err", err)
	}
	f.rules.Store(rs)
	return nil
}

// CheckReload names the keys that take effect at the next start
// (keepRestartKeys) and refuses a timezone that cannot be loaded.
func (f *Fraud) CheckReload(v any) error {
	s := *v.(*Settings)
	keys := f.keepRestartKeys(&s)
	if _, err := loadZone(s.Timezone); err != nil {
		return modules.Errorf("timezone", "%q: %v", s.Timezone, err)
	}
	return modules.NeedRestart(keys...)
}

// keepRestartKeys writes into s the values in force of max_callers,
// max_calls, max_events and poll_interval where s changes them, and
// returns those keys: the tables and the poller are made with them at
// start.
func (f *Fraud) keepRestartKeys(s *Settings) (keys []string) {
	keys = modules.KeepInForce(keys, "max_callers", &s.MaxCallers, f.max[0])
	keys = modules.KeepInForce(keys, "max_calls", &s.MaxCalls, f.max[1])
	keys = modules.KeepInForce(keys, "max_events", &s.MaxEvents, f.events.size())
	keys = modules.KeepInForce(keys, "poll_interval", &s.PollInterval, f.poll)
	return keys
}

// Reload applies changed settings (modules.Reloader): profile, timezone
// and call_timeout (for calls counted from then on). max_callers,
// max_calls, max_events and poll_interval keep their values in force
// until the next start (keepRestartKeys).
func (f *Fraud) Reload(v any) error {
	s := v.(*Settings)
	f.keepRestartKeys(s)
	loc, err := loadZone(s.Timezone)
	if err != nil {
		return err
	}
	f.wall.Store(newWallClock(loc))
	f.profile.Store(int64(s.Profile))
	f.timeout.Store(s.CallTimeout.Milliseconds())
	return nil
}
