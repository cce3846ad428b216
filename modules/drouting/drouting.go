// Package drouting is dynamic routing to PSTN gateways, OpenSIPS's
// drouting module: rules pick, by routing group, longest number prefix,
// time of the week and priority, a list of gateways and carriers (named
// lists of gateways), sorted as written, by weight or at random. A route
// calls DoRouting for a new call (do_routing), which sends it to the first
// usable gateway with the gateway's digits stripped and prefix added, and
// UseNextGW in the failure route (use_next_gw), which tries the next one.
// IsFromGW and GoesToGW tell whether a request comes from or goes to a
// gateway. Gateways are probed with OPTIONS; a gateway that stops
// answering is skipped until it answers again.
//
// The three tables live in the store (dr_gateways, dr_carriers,
// dr_rules); the module polls their versions and reloads a changed table
// in the background. Rules are swapped whole (a call sees the old set or
// the new one, never half); each call keeps the gateway list it was given
// in a per-call record, so calls in progress fail over along their own
// list whatever is reloaded meanwhile. See README.md.
package drouting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
)

// Settings are the drouting section of the configuration.
type Settings struct {
	// Group is the routing group the provider route set sends calls to
	// numbers outside the served domains' subscribers through, and the
	// drouting route set every initial request.
	Group int `yaml:"group"`
	// FRTimeout is how long a call waits for a first response from a
	// gateway before it moves to the next (0: timers.fr).
	FRTimeout time.Duration `yaml:"fr_timeout"`
	// Timezone is the zone of the rules' days and hours: "" (or "Local")
	// the server's, "UTC", or an IANA name.
	Timezone string `yaml:"timezone"`
	// MaxCalls is how many calls' gateway lists are kept for fail-over: a
	// ring of records, each reused by the MaxCalls-th call routed after
	// its own.
	MaxCalls int `yaml:"max_calls"`
	// MaxRules, MaxGateways and MaxCarriers bound what is loaded from
	// the tables.
	MaxRules    int `yaml:"max_rules"`
	MaxGateways int `yaml:"max_gateways"`
	MaxCarriers int `yaml:"max_carriers"`
	// PollInterval is how often the tables' versions are read.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ProbeInterval is how often a gateway with probe_mode set gets an
	// OPTIONS; a probe unanswered by the next one failed.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeFailures is how many failed probes in a row mark a gateway
	// down; ProbeSuccesses how many answered ones bring it back up.
	ProbeFailures  int `yaml:"probe_failures"`
	ProbeSuccesses int `yaml:"probe_successes"`
	// ProbeFrom is the From URI of the probes.
	ProbeFrom string `yaml:"probe_from"`
	// ProbeReplyCodes are the final responses that count as answered
	// besides 2xx.
	ProbeReplyCodes []int `yaml:"probe_reply_codes"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	return &Settings{
		Group:          0,
		MaxCalls:       65536,
		MaxRules:       2_000_000,
		MaxGateways:    10_000,
		MaxCarriers:    10_000,
		PollInterval:   time.Second,
		ProbeInterval:  10 * time.Second,
		ProbeFailures:  3,
		ProbeSuccesses: 1,
		ProbeFrom:      "sip:switchboard@localhost",
	}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.Group < 0 || s.Group > store.MaxDRGroup:
		return modules.Errorf("group", "%d: want 0 to %d", s.Group, store.MaxDRGroup)
	case s.FRTimeout < 0 || s.FRTimeout > 10*time.Minute:
		return modules.Errorf("fr_timeout", "%s: want 0 (timers.fr) to 10m", s.FRTimeout)
	case s.MaxCalls < 1024 || s.MaxCalls > 1<<24:
		return modules.Errorf("max_calls", "%d: want 1024 to %d", s.MaxCalls, 1<<24)
	case s.MaxRules < 1 || s.MaxRules > 50_000_000:
		return modules.Errorf("max_rules", "%d: want 1 to 50000000", s.MaxRules)
	case s.MaxGateways < 1 || s.MaxGateways > 1_000_000:
		return modules.Errorf("max_gateways", "%d: want 1 to 1000000", s.MaxGateways)
	case s.MaxCarriers < 1 || s.MaxCarriers > 1_000_000:
		return modules.Errorf("max_carriers", "%d: want 1 to 1000000", s.MaxCarriers)
	case s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute:
		return modules.Errorf("poll_interval", "%s: want 10ms to 1m", s.PollInterval)
	case s.ProbeInterval < 100*time.Millisecond || s.ProbeInterval > time.Hour:
		return modules.Errorf("probe_interval", "%s: want 100ms to 1h", s.ProbeInterval)
	case s.ProbeFailures < 1 || s.ProbeFailures > 100:
		return modules.Errorf("probe_failures", "%d: want 1 to 100", s.ProbeFailures)
	case s.ProbeSuccesses < 1 || s.ProbeSuccesses > 100:
		return modules.Errorf("probe_successes", "%d: want 1 to 100", s.ProbeSuccesses)
	}
	if len(s.ProbeFrom) > 255 || len(s.ProbeFrom) < 5 || s.ProbeFrom[:4] != "sip:" || containsAny(s.ProbeFrom, "<>\r\n \"") {
		return modules.Errorf("probe_from", "%q: want a sip: URI", s.ProbeFrom)
	}
	for i, c := range s.ProbeReplyCodes {
		if c < 100 || c > 699 {
			return modules.Errorf(fmt.Sprintf("probe_reply_codes[%d]", i), "%d: want a status code (100 to 699)", c)
		}
	}
	if _, err := loadZone(s.Timezone); err != nil {
		return modules.Errorf("timezone", "%q: %v", s.Timezone, err)
	}
	return nil
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

func init() {
	modules.Register(modules.Definition{
		Name:     "drouting",
		Doc:      "dynamic routing to PSTN gateways and carriers by prefix, time and priority (OpenSIPS drouting)",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// Drouting is the module instance. Its methods are safe for concurrent use.
type Drouting struct {
	h     *modules.Host
	st    *store.Store
	clock *shards.Clock
	log   *slog.Logger
	set   *metrics.Set

	rules atomic.Pointer[ruleSet]
	addrs atomic.Pointer[addrIndex]
	// probeList is every gateway in the table, for the probe goroutine.
	probeList atomic.Pointer[[]*gwSlot]
	wall      atomic.Pointer[wallClock]
	group     atomic.Int64
	fr        atomic.Int64 // ms, 0: timers.fr
	probe     atomic.Pointer[probeSettings]

	// calls holds the gateway lists of calls routed: allocated with the
	// first rules loaded (a server that routes nothing keeps no records).
	calls    atomic.Pointer[callRing]
	maxCalls int

	// loadMu serialises loads; reg and seen belong to the holder.
	loadMu sync.Mutex
	reg    registry
	seen   [numTables]int64 // table versions loaded

	// The probe goroutine's own.
	probeSeq uint64
	probeBuf []byte

	poll time.Duration
	max  [4]int // MaxCalls, MaxRules, MaxGateways, MaxCarriers: need a restart

	stop chan struct{}
	wg   sync.WaitGroup

	results      [numResults]*metrics.Counter
	failovers    *metrics.Counter
	lost         *metrics.Counter
	reloadErrors *metrics.Counter
	probeOK      *metrics.Counter
	probeFailed  *metrics.Counter
	gateways     *metrics.Gauge
}

// The tables, in load order: lists resolve names to slots whatever the
// order, but loading gateways first saves a swap to a half-known state.
const (
	tGateways = iota
	tCarriers
	tRules
	numTables
)

var tableNames = [numTables]string{store.DRGatewaysTable, store.DRCarriersTable, store.DRRulesTable}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Store == nil || h.Clock == nil {
		return nil, errors.New("drouting: needs the store and the clock")
	}
	d := &Drouting{h: h, st: h.Store, clock: h.Clock, log: h.Logger(), set: h.Metrics, poll: s.PollInterval,
		max: [4]int{s.MaxCalls, s.MaxRules, s.MaxGateways, s.MaxCarriers}}
	d.reg.gws, d.reg.crs = map[string]*gwSlot{}, map[string]*crSlot{}
	for i := range d.seen {
		d.seen[i] = -1
	}
	if err := d.apply(s); err != nil {
		return nil, err
	}
	d.maxCalls = s.MaxCalls
	d.registerMetrics()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Load(ctx); err != nil {
		return nil, err
	}
	d.registerCommands(h)
	return d, nil
}

// apply takes the settings that can change at run time.
func (d *Drouting) apply(s *Settings) error {
	loc, err := loadZone(s.Timezone)
	if err != nil {
		return err
	}
	d.wall.Store(&wallClock{loc: loc})
	d.group.Store(int64(s.Group))
	d.fr.Store(s.FRTimeout.Milliseconds())
	d.probe.Store(newProbeSettings(s))
	return nil
}

// CheckReload names max_calls, max_rules, max_gateways, max_carriers and
// poll_interval, which take effect at the next start (keepRestartKeys),
// and refuses a timezone that cannot be loaded.
func (d *Drouting) CheckReload(v any) error {
	s := *v.(*Settings)
	keys := d.keepRestartKeys(&s)
	if _, err := loadZone(s.Timezone); err != nil {
		return modules.Errorf("timezone", "%q: %v", s.Timezone, err)
	}
	return modules.NeedRestart(keys...)
}

// keepRestartKeys writes into s the values in force of max_calls,
// max_rules, max_gateways, max_carriers and poll_interval where s
// changes them, and returns those keys: the tables and the poller are
// made with them at start.
func (d *Drouting) keepRestartKeys(s *Settings) (keys []string) {
	for i, n := range [4]*int{&s.MaxCalls, &s.MaxRules, &s.MaxGateways, &s.MaxCarriers} {
		if *n != d.max[i] {
			*n = d.max[i]
			keys = append(keys, [4]string{"max_calls", "max_rules", "max_gateways", "max_carriers"}[i])
		}
	}
	keys = modules.KeepInForce(keys, "poll_interval", &s.PollInterval, d.poll)
	return keys
}

// Reload applies changed settings (modules.Reloader): everything but the
// keys that keep their values in force until the next start
// (keepRestartKeys).
func (d *Drouting) Reload(v any) error {
	s := v.(*Settings)
	d.keepRestartKeys(s)
	return d.apply(s)
}

// Group is the routing group the provider and drouting route sets use for
// calls to the PSTN (the setting group); 0 for a nil *Drouting.
func (d *Drouting) Group() int {
	if d == nil {
		return 0
	}
	return int(d.group.Load())
}

// Start polls the tables and probes the gateways, each on a goroutine of
// its own: loading a million rules takes seconds, and probes must not
// wait for it.
func (d *Drouting) Start() error {
	d.stop = make(chan struct{})
	d.wg.Add(2)
	go d.pollTables()
	go d.probeLoop()
	return nil
}

// Stop ends the background work.
func (d *Drouting) Stop() {
	if d.stop != nil {
		close(d.stop)
		d.wg.Wait()
		d.stop = nil
	}
}

func (d *Drouting) pollTables() {
	defer d.wg.Done()
	poll := time.NewTicker(d.poll)
	defer poll.Stop()
	var outage store.OncePerOutage
	for {
		select {
		case <-d.stop:
			return
		case <-poll.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := d.loadChanged(ctx)
			if err != nil {
				d.reloadErrors.Inc()
			}
			if outage.Report(err) {
				d.log.Warn("drouting: reading the tables failed; what was loaded before stays in force", "err", err)
			}
			cancel()
		}
	}
}

func (d *Drouting) probeLoop() {
	defer d.wg.Done()
	probe := time.NewTicker(probeTick)
	defer probe.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-probe.C:
			if d.probeDue() {
				probe.Reset(probeTick)
			} else {
				probe.Reset(idleProbeTick)
			}
		}
	}
}

// Load loads the three tables now.
func (d *Drouting) Load(ctx context.Context) error {
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	for t := range numTables {
		if err := d.loadTable(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// loadChanged loads the tables whose version moved.
func (d *Drouting) loadChanged(ctx context.Context) error {
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	for t := range numTables {
		v, err := d.st.DRVersion(ctx, tableNames[t])
		if err != nil {
			return err
		}
		if v == d.seen[t] {
			continue
		}
		if err := d.loadTable(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// LoadTable loads one table now (store.DRGatewaysTable...): what the
// management commands do after a change.
func (d *Drouting) LoadTable(ctx context.Context, table string) error {
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	for t, n := range tableNames {
		if n == table {
			return d.loadTable(ctx, t)
		}
	}
	return errors.New("drouting: no table " + table)
}

// loadTable loads table t; loadMu is held. The version is read first: a
// change made during the load moves it again and is loaded at the next
// poll.
func (d *Drouting) loadTable(ctx context.Context, t int) error {
	v, err := d.st.DRVersion(ctx, tableNames[t])
	if err != nil {
		return err
	}
	switch t {
	case tGateways:
		err = d.loadGateways(ctx)
	case tCarriers:
		err = d.loadCarriers(ctx)
	default:
		err = d.loadRules(ctx, v)
	}
	if err != nil {
		return err
	}
	d.seen[t] = v
	d.prune()
	return nil
}

func (d *Drouting) loadGateways(ctx context.Context) error {
	rows, err := d.st.ListDRGateways(ctx)
	if err != nil {
		return err
	}
	if len(rows) > d.max[2] {
		return fmt.Errorf("dr_gateways has %d gateways, more than max_gateways (%d): not loaded", len(rows), d.max[2])
	}
	idx := &addrIndex{byIP: map[netip.Addr][]*gwSlot{}, byDest: map[netip.AddrPort]*gwSlot{}}
	seen := make(map[*gwSlot]bool, len(rows))
	probes := make([]*gwSlot, 0, len(rows))
	for i := range rows {
		r := rows[i]
		if err := store.CheckDRGateway(&r); err != nil {
			d.log.Warn("drouting: gateway skipped", "err", err)
			continue
		}
		slot := d.slot(r.GWID)
		g, err := newGateway(slot, &r)
		if err != nil {
			d.log.Warn("drouting: gateway skipped", "gwid", r.GWID, "err", err)
			continue
		}
		if old := slot.cfg.Load(); old == nil || old.addr != g.addr || old.proto != g.proto {
			slot.resetProbe() // another box: what was learnt of the old one does not hold
		}
		slot.cfg.Store(g)
		seen[slot] = true
		probes = append(probes, slot)
		ip := g.addr.Addr()
		idx.byIP[ip] = append(idx.byIP[ip], slot)
		idx.byDest[g.addr] = slot
	}
	for _, slot := range d.reg.gws {
		if !seen[slot] && slot.cfg.Load() != nil {
			slot.cfg.Store(nil)
			slot.resetProbe()
		}
	}
	d.addrs.Store(idx)
	d.probeList.Store(&probes)
	d.gateways.Set(float64(len(probes)))
	return nil
}

func (d *Drouting) loadCarriers(ctx context.Context) error {
	rows, err := d.st.ListDRCarriers(ctx)
	if err != nil {
		return err
	}
	if len(rows) > d.max[3] {
		return fmt.Errorf("dr_carriers has %d carriers, more than max_carriers (%d): not loaded", len(rows), d.max[3])
	}
	refs := map[*gwSlot]bool{}
	seen := make(map[*crSlot]bool, len(rows))
	for i := range rows {
		r := rows[i]
		if err := store.CheckDRCarrier(&r); err != nil {
			d.log.Warn("drouting: carrier skipped", "err", err)
			continue
		}
		entries, _ := store.ParseDRList(r.GWList, false)
		c := &carrier{list: d.list(entries, refs, nil), sort: r.SortAlg[0], useFirst: r.Flags&store.DRUseFirst != 0,
			disabled: r.State != 0, attrs: r.Attrs}
		slot := d.reg.cr(r.CarrierID)
		slot.cfg.Store(c)
		seen[slot] = true
	}
	for _, slot := range d.reg.crs {
		if !seen[slot] {
			slot.cfg.Store(nil)
		}
	}
	d.reg.carrierRefs = refs
	return nil
}

func (d *Drouting) loadRules(ctx context.Context, version int64) error {
	start := time.Now()
	b := newRuleBuilder(d, d.max[1])
	if err := d.st.ForEachDRRule(ctx, store.DRRuleFilter{Group: -1}, func(r *store.DRRule) error {
		b.add(r)
		return nil
	}); err != nil {
		return err
	}
	rs := b.finish()
	rs.version, rs.loadedAt, rs.took = version, time.Now().UnixMilli(), time.Since(start)
	for _, err := range b.bad {
		d.log.Warn("drouting: " + err.Error())
	}
	if b.tooMany {
		d.h.Warn("drouting: more rules than max_rules; the rest are not loaded", "max_rules", d.max[1], "skipped", rs.skipped)
	}
	if len(rs.rules) > 0 && d.calls.Load() == nil {
		ring := &callRing{}
		ring.init(d.maxCalls)
		d.calls.Store(ring) // before the rules: a rule that matches has its records
	}
	d.rules.Store(rs)
	d.reg.ruleRefs, d.reg.ruleCarriers = b.refs, b.crefs
	d.log.Info("drouting: rules loaded", "rules", len(rs.rules), "groups", len(rs.groups), "skipped", rs.skipped,
		"took", rs.took.Round(time.Millisecond), "mib", rs.bytes()>>20)
	return nil
}

// slot returns the slot of a gateway name, creating it (and its metrics)
// the first time; loadMu is held.
func (d *Drouting) slot(id string) *gwSlot {
	if s := d.reg.gws[id]; s != nil {
		return s
	}
	s := d.reg.gw(id)
	d.gatewayMetrics(s)
	return s
}

// list resolves a parsed list to slots, noting the gateways and carriers
// it names in refs and crefs; loadMu is held.
func (d *Drouting) list(entries []store.DRListEntry, refs map[*gwSlot]bool, crefs map[*crSlot]bool) []listItem {
	out := make([]listItem, len(entries))
	for i, e := range entries {
		out[i].weight = int32(e.Weight)
		if e.Carrier {
			out[i].cr = d.reg.cr(e.ID)
			crefs[out[i].cr] = true
		} else {
			out[i].gw = d.slot(e.ID)
			refs[out[i].gw] = true
		}
	}
	return out
}

// prune drops the slots that no table defines and no list names, and
// their metrics; loadMu is held. Calls in progress that point to one keep
// it (the garbage collector frees it after them).
func (d *Drouting) prune() {
	for id, s := range d.reg.gws {
		if s.cfg.Load() == nil && !d.reg.ruleRefs[s] && !d.reg.carrierRefs[s] {
			delete(d.reg.gws, id)
			for _, n := range s.metricNames {
				d.set.UnregisterMetric(n)
			}
		}
	}
	for id, s := range d.reg.crs {
		if s.cfg.Load() == nil && !d.reg.ruleCarriers[s] {
			delete(d.reg.crs, id)
		}
	}
}
