// Package dispatcher is the dispatcher module of OpenSIPS and Kamailio:
// destination sets (media servers, PBX farms, gateways of one provider)
// kept in the store, one destination chosen per request by an algorithm
// (hash over the Call-ID, the From user or the Request-URI, round robin,
// weight, least active calls, priority), fail-over to the others from the
// failure route, and OPTIONS probing that takes destinations that stop
// answering out of the sets and puts them back when they answer again.
//
// A route calls SelectDst (OpenSIPS ds_select_dst), which sets the
// request's destination ($du) and keeps what it chose in two
// per-transaction values; NextDst (ds_next_dst) in the failure route sets
// the next candidate; MarkDst (ds_mark_dst) marks the one tried; IsInList
// (ds_is_in_list) tells whether an address belongs to a set. None of them
// allocates or takes a lock: they read an immutable snapshot of the table
// that a reload replaces in one atomic swap, and per-destination state
// (up or down, calls in progress, counters) lives in objects the
// snapshots share, so a reload keeps it.
//
// The table is reloaded whole when its version in the store moves
// (polled every poll_interval) or at once by the management commands; a
// request sees the old set or the new, never a mix, and a fail-over that
// started on an old set goes on with it. See README.md.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/calltrack"
	"switchboard/modules/internal/tablepoll"
	"switchboard/shards"
	"switchboard/store"
)

// Settings are the dispatcher section of the configuration.
type Settings struct {
	// PollInterval is how often the store is asked whether the table
	// changed.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxDestinations bounds the table loaded into memory: a larger table
	// is not loaded (the one in use stays).
	MaxDestinations int `yaml:"max_destinations"`
	// MaxCalls bounds the calls in progress counted per destination (the
	// least_calls algorithm, the calls gauge).
	MaxCalls int `yaml:"max_calls"`
	// CallTimeout stops counting a call whose end the proxy did not see.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// ProbeInterval is how often destinations are probed with OPTIONS;
	// 0 turns probing off.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout is how long a probe waits for its final response.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
	// ProbeFailures is how many failures in a row (probes, and MarkDst
	// with Probing) take an active destination out (OpenSIPS
	// ds_probing_threshold).
	ProbeFailures int `yaml:"probe_failures"`
	// ProbeSuccesses is how many answered probes in a row put a probing
	// destination back (Kamailio ds_inactive_threshold).
	ProbeSuccesses int `yaml:"probe_successes"`
	// ProbeFrom is the From URI of the probes (ds_ping_from).
	ProbeFrom string `yaml:"probe_from"`
	// ProbeReplyCodes are response codes that count as an answer besides
	// 2xx (options_reply_codes): 403, 404, 501 for destinations that do
	// not take OPTIONS.
	ProbeReplyCodes []int `yaml:"probe_reply_codes"`
	// DispatchSet and DispatchAlgorithm are what the "dispatch" route set
	// uses: every request goes to this set, chosen by this algorithm.
	DispatchSet       int    `yaml:"dispatch_set"`
	DispatchAlgorithm string `yaml:"dispatch_algorithm"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{
		PollInterval:      time.Second,
		MaxDestinations:   10_000,
		MaxCalls:          100_000,
		CallTimeout:       4 * time.Hour,
		ProbeInterval:     10 * time.Second,
		ProbeTimeout:      2 * time.Second,
		ProbeFailures:     3,
		ProbeSuccesses:    1,
		ProbeFrom:         "sip:dispatcher@localhost",
		DispatchSet:       1,
		DispatchAlgorithm: "round_robin",
	}
}

// maxSetSize bounds one set: indexes into a set travel in 16 bits of a
// per-transaction value.
const maxSetSize = 65_000

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute:
		return modules.Errorf("poll_interval", "%s: want 10ms to 1m", s.PollInterval)
	case s.MaxDestinations < 1 || s.MaxDestinations > maxSetSize:
		return modules.Errorf("max_destinations", "%d: want 1 to %d", s.MaxDestinations, maxSetSize)
	case s.MaxCalls < 100 || s.MaxCalls > 10_000_000:
		return modules.Errorf("max_calls", "%d: want 100 to 10000000", s.MaxCalls)
	case s.CallTimeout < time.Minute || s.CallTimeout > 48*time.Hour:
		return modules.Errorf("call_timeout", "%s: want 1m to 48h", s.CallTimeout)
	case s.ProbeInterval != 0 && (s.ProbeInterval < 50*time.Millisecond || s.ProbeInterval > time.Hour):
		return modules.Errorf("probe_interval", "%s: want 0 (off) or 50ms to 1h", s.ProbeInterval)
	case s.ProbeTimeout < 10*time.Millisecond || s.ProbeTimeout > time.Minute:
		return modules.Errorf("probe_timeout", "%s: want 10ms to 1m", s.ProbeTimeout)
	case s.ProbeInterval != 0 && s.ProbeTimeout >= s.ProbeInterval:
		return modules.Errorf("probe_timeout", "%s: must be shorter than probe_interval (%s)", s.ProbeTimeout, s.ProbeInterval)
	case s.ProbeFailures < 1 || s.ProbeFailures > 100:
		return modules.Errorf("probe_failures", "%d: want 1 to 100", s.ProbeFailures)
	case s.ProbeSuccesses < 1 || s.ProbeSuccesses > 100:
		return modules.Errorf("probe_successes", "%d: want 1 to 100", s.ProbeSuccesses)
	case s.DispatchSet < 0 || s.DispatchSet > store.MaxDispatcherSet:
		return modules.Errorf("dispatch_set", "%d: want 0 to %d", s.DispatchSet, store.MaxDispatcherSet)
	}
	if err := checkFromURI(s.ProbeFrom); err != nil {
		return modules.Errorf("probe_from", "%q: %v", s.ProbeFrom, err)
	}
	for i, c := range s.ProbeReplyCodes {
		if c < 100 || c > 699 {
			return modules.Errorf(fmt.Sprintf("probe_reply_codes[%d]", i), "%d: want a response code 100-699", c)
		}
	}
	if _, err := ParseAlgorithm(s.DispatchAlgorithm); err != nil {
		return modules.Errorf("dispatch_algorithm", "%v", err)
	}
	return nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "dispatcher",
		Doc:      "destination sets with load-balancing algorithms, fail-over and OPTIONS probing (ds_select_dst)",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// Dispatcher is the module instance; route sets find it in
// routing.Env.Modules["dispatcher"]. Its methods are safe for concurrent
// use.
type Dispatcher struct {
	h     *modules.Host
	st    *store.Store
	clock *shards.Clock
	log   *slog.Logger
	set   *metrics.Set

	tab atomic.Pointer[table]
	// recent are the last tables by generation (gen % len): a fail-over
	// or MarkDst finds the table its request chose from, so it goes on
	// with the same set after a reload.
	recent [recentTables]atomic.Pointer[table]

	// reloadMu serialises reloads and guards states, counters and gen.
	reloadMu sync.Mutex
	states   map[stateKey]*dstate
	counters map[int]*setCounters
	gen      uint64
	version  int64 // table version in the store when last loaded

	calls   *calltrack.Table[Lease]
	tracker Tracker
	timeout atomic.Int64 // call_timeout, ms

	probe     atomic.Pointer[probeSettings]
	pinger    Pinger
	pingerSet bool          // SetPinger chose it
	wakeup    chan struct{} // a probe round now (tests, settings changed)
	dispSet   atomic.Int64
	dispAlg   atomic.Uint32

	maxDests atomic.Int64
	// poll and maxCalls are poll_interval and max_calls, which take
	// effect at the next start (keepRestartKeys).
	poll     time.Duration
	maxCalls int

	poller *tablepoll.Poller
	stop   chan struct{}
	ctx    context.Context // ends at Stop: probes in flight give up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	reloads, reloadErrors, noDest, probes, stateChanges *metrics.Counter
	skipped                                             atomic.Int64
}

// probeSettings are the probe keys in force, swapped whole on a reload.
type probeSettings struct {
	interval, timeout time.Duration
	failures          int32
	successes         int32
	from              string
	okCodes           [700/64 + 1]uint64 // bit per code 100-699 counted as answered besides 2xx
}

func newProbeSettings(s *Settings) *probeSettings {
	p := &probeSettings{interval: s.ProbeInterval, timeout: s.ProbeTimeout,
		failures: int32(s.ProbeFailures), successes: int32(s.ProbeSuccesses), from: s.ProbeFrom}
	for _, c := range s.ProbeReplyCodes {
		p.okCodes[c/64] |= 1 << (c % 64)
	}
	return p
}

// answered reports whether a probe's final response code says the
// destination is up.
func (p *probeSettings) answered(code int) bool {
	if code >= 200 && code < 300 {
		return true
	}
	return code >= 100 && code < 700 && p.okCodes[code/64]&(1<<(code%64)) != 0
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Store == nil || h.Clock == nil {
		return nil, errors.New("dispatcher: needs the store and the clock")
	}
	d := &Dispatcher{h: h, st: h.Store, clock: h.Clock, log: h.Logger(), set: h.Metrics,
		states: map[stateKey]*dstate{}, counters: map[int]*setCounters{},
		pinger: &optionsPinger{}, wakeup: make(chan struct{}, 1), poll: s.PollInterval,
		maxCalls: s.MaxCalls}
	d.apply(s)
	var err error
	d.calls, err = calltrack.New[Lease](calltrack.Config{Clock: h.Clock, Shards: h.Shards, MaxCalls: s.MaxCalls,
		Timeout: &d.timeout, FailOver: true, Metrics: h.Metrics, Prefix: "switchboard_dispatcher_calls"})
	if err != nil {
		return nil, err
	}
	d.tracker = d.calls
	d.registerMetrics()
	empty := &table{sets: map[int]*set{}, addrs: map[[16]byte][]addrEntry{}}
	d.tab.Store(empty)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.LoadTable(ctx); err != nil {
		d.calls.Close()
		return nil, err
	}
	d.registerCommands(h)
	return d, nil
}

// apply puts the settings that change at run time in force.
func (d *Dispatcher) apply(s *Settings) {
	d.timeout.Store(s.CallTimeout.Milliseconds())
	d.probe.Store(newProbeSettings(s))
	d.dispSet.Store(int64(s.DispatchSet))
	alg, _ := ParseAlgorithm(s.DispatchAlgorithm)
	d.dispAlg.Store(uint32(alg))
	d.maxDests.Store(int64(s.MaxDestinations))
}

// Dispatch returns the set and the algorithm of the "dispatch" route set
// (the settings dispatch_set and dispatch_algorithm).
func (d *Dispatcher) Dispatch() (set int, alg Algorithm) {
	return int(d.dispSet.Load()), Algorithm(d.dispAlg.Load())
}

// SetPinger replaces the OPTIONS sender the probes use; call it before
// Start. By default probes go through the transaction core the server
// hands the modules (corePinger), or, without one (a module built alone),
// through the module's own sockets (optionsPinger).
func (d *Dispatcher) SetPinger(p Pinger) { d.pinger, d.pingerSet = p, true }

// SetTracker replaces the module's call table as the keeper of the leases
// of calls in progress (a dialog module); call it while the server is
// being built, before calls arrive. CallEnded, CallFailed and Reply then
// find nothing to release in the module's table.
func (d *Dispatcher) SetTracker(t Tracker) { d.tracker = t }

// Start polls the store for table changes, sweeps calls past their
// timeout and probes destinations.
func (d *Dispatcher) Start() error {
	if d.h.Originator.Ready() && !d.pingerSet {
		d.pinger = corePinger{core: d.h.Originator}
	}
	d.stop = make(chan struct{})
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.reloadMu.Lock()
	loaded := d.version
	d.reloadMu.Unlock()
	d.poller = tablepoll.Start(tablepoll.Config{
		Interval: func() time.Duration { return d.poll },
		Version:  d.st.DispatcherVersion,
		Load: func(ctx context.Context) (int64, error) {
			v, _, err := d.load(ctx)
			return v, err
		},
		Loaded: loaded,
		Failed: func(err error) {
			d.log.Warn("dispatcher: reading the table failed; the destinations loaded before stay in use", "err", err)
		},
	})
	d.wg.Add(2)
	go d.sweep()
	go d.probeLoop()
	return nil
}

// Stop ends the background work.
func (d *Dispatcher) Stop() {
	if d.stop != nil {
		d.poller.Stop()
		close(d.stop)
		d.cancel()
		d.wg.Wait()
		d.stop = nil
	}
	d.calls.Close()
}

// sweepEvery is how often calls past call_timeout are released.
const sweepEvery = 5 * time.Second

// sweep releases the calls past call_timeout until Stop.
func (d *Dispatcher) sweep() {
	defer d.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.calls.Sweep(d.clock.Now())
		}
	}
}

// LoadTable loads the whole table from the store, builds a new snapshot
// and swaps it in (OpenSIPS ds_reload). A request sees the old table or the
// new one, never a mix; destinations that stay keep their state, calls
// and counters. On error the table in use stays.
func (d *Dispatcher) LoadTable(ctx context.Context) (Summary, error) {
	_, sum, err := d.load(ctx)
	return sum, err
}

// load is LoadTable returning the table version it loaded: read before
// the rows, so that a write committed meanwhile is loaded again at the
// next poll rather than missed.
func (d *Dispatcher) load(ctx context.Context) (int64, Summary, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	v, err := d.st.DispatcherVersion(ctx)
	if err == nil {
		var rows []store.DispatcherDest
		if rows, err = d.st.ListDispatcherDests(ctx); err == nil {
			if max := d.maxDests.Load(); int64(len(rows)) > max {
				err = fmt.Errorf("the dispatcher table has %d destinations, more than dispatcher.max_destinations (%d); the table in use stays", len(rows), max)
			} else {
				t := d.build(rows)
				d.version = v
				d.reloads.Inc()
				d.log.Info("dispatcher: table loaded", "destinations", t.dests, "sets", len(t.sets), "skipped", t.skipped)
				return v, t.summary(), nil
			}
		}
	}
	d.reloadErrors.Inc()
	d.log.Error("dispatcher: loading the table failed; the table in use stays", "err", err)
	return 0, Summary{}, err
}

// CheckReload names poll_interval and max_calls, which take effect at
// the next start (keepRestartKeys), and refuses a max_destinations below
// the destinations of the table in the store. A table that grows past it
// before Reload loads it fails there.
func (d *Dispatcher) CheckReload(v any) error {
	s := *v.(*Settings)
	restart := modules.NeedRestart(d.keepRestartKeys(&s)...)
	if int64(s.MaxDestinations) == d.maxDests.Load() {
		return restart
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := d.st.ListDispatcherDests(ctx)
	if err != nil {
		return errors.Join(restart, fmt.Errorf("reading the dispatcher table for max_destinations: %w", err))
	}
	if len(rows) > s.MaxDestinations {
		return errors.Join(restart, modules.Errorf("max_destinations", "%d: the dispatcher table has %d destinations", s.MaxDestinations, len(rows)))
	}
	return restart
}

// keepRestartKeys writes into s the values in force of poll_interval and
// max_calls where s changes them, and returns those keys: the poller and
// the call table are made with them at start.
func (d *Dispatcher) keepRestartKeys(s *Settings) (keys []string) {
	keys = modules.KeepInForce(keys, "poll_interval", &s.PollInterval, d.poll)
	keys = modules.KeepInForce(keys, "max_calls", &s.MaxCalls, d.maxCalls)
	return keys
}

// Reload applies changed settings (modules.Reloader): the probe keys,
// call_timeout and the dispatch keys take effect at once, a changed
// max_destinations reloads the table; poll_interval and max_calls keep
// their values in force until the next start (keepRestartKeys).
func (d *Dispatcher) Reload(v any) error {
	s := v.(*Settings)
	d.keepRestartKeys(s)
	// The table first, under the new bound alone: when it does not load,
	// the module keeps all its settings, not the bound alone (the dispatch
	// and probe keys were in force, a mix of both files that ctl reload
	// reported as not applied).
	if oldMax := d.maxDests.Load(); int64(s.MaxDestinations) != oldMax {
		d.maxDests.Store(int64(s.MaxDestinations))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := d.LoadTable(ctx); err != nil {
			d.maxDests.Store(oldMax)
			return err
		}
	}
	d.apply(s)
	d.kickProbes()
	return nil
}

func (d *Dispatcher) registerMetrics() {
	m := d.set
	d.reloads = m.GetOrCreateCounter("switchboard_dispatcher_reloads_total")
	d.reloadErrors = m.GetOrCreateCounter("switchboard_dispatcher_reload_errors_total")
	d.noDest = m.GetOrCreateCounter("switchboard_dispatcher_no_destination_total")
	d.probes = m.GetOrCreateCounter("switchboard_dispatcher_probes_total")
	d.stateChanges = m.GetOrCreateCounter("switchboard_dispatcher_state_changes_total")
	m.GetOrCreateGauge("switchboard_dispatcher_destinations", func() float64 { return float64(d.tab.Load().dests) })
	m.GetOrCreateGauge("switchboard_dispatcher_sets", func() float64 { return float64(len(d.tab.Load().sets)) })
	m.GetOrCreateGauge("switchboard_dispatcher_skipped_rows", func() float64 { return float64(d.skipped.Load()) })
	m.GetOrCreateGauge("switchboard_dispatcher_calls_tracked", func() float64 { return float64(d.calls.Len()) })
}
