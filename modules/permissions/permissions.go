// Package permissions is the address access list of OpenSIPS' permissions
// module (check_source_address, get_source_group) and Kamailio's
// allow_source_address / allow_trusted: groups of source addresses and
// subnets, stored in the store's address table, loaded into memory, and
// reloaded without a restart when the table changes (the store's change
// log, polled every poll_interval, as the auth module does for
// subscribers).
//
// A lookup is one hash probe for single addresses and one per prefix
// length in use for subnets, allocation-free, on an immutable snapshot of
// the table that a reload replaces in one atomic swap. See README.md.
package permissions

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

// Settings are the permissions section of the configuration.
type Settings struct {
	// PollInterval is how often the store's change log is read; a change
	// to the address table (from the CLI, another process, the API) is in
	// effect within it.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxEntries bounds the table loaded into memory: a table with more
	// rows is not loaded (the set in use stays, and an error is logged).
	MaxEntries int `yaml:"max_entries"`
	// PatternOn is what an entry's pattern is matched against: "from"
	// (the From URI, as Kamailio's trusted table) or "ruri" (the
	// Request-URI).
	PatternOn string `yaml:"pattern_on"`
}

// Defaults of the settings.
const (
	DefaultPollInterval = time.Second
	DefaultMaxEntries   = 1_000_000
)

func defaultSettings() any {
	return &Settings{PollInterval: DefaultPollInterval, MaxEntries: DefaultMaxEntries, PatternOn: "from"}
}

func checkSettings(v any) error {
	s := v.(*Settings)
	if s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute {
		return modules.Errorf("poll_interval", "must be between 10ms and 1m, not %s", s.PollInterval)
	}
	if s.MaxEntries < 1 || s.MaxEntries > 100_000_000 {
		return modules.Errorf("max_entries", "must be between 1 and 100000000, not %d", s.MaxEntries)
	}
	if _, ok := parseSubject(s.PatternOn); !ok {
		return modules.Errorf("pattern_on", "must be from or ruri, not %q", s.PatternOn)
	}
	return nil
}

func parseSubject(s string) (subject, bool) {
	switch s {
	case "from":
		return subjectFrom, true
	case "ruri":
		return subjectRURI, true
	}
	return 0, false
}

func init() {
	modules.Register(modules.Definition{
		Name:     "permissions",
		Doc:      "address access lists (check_source_address, allow_trusted): trusted gateways and other groups of sources",
		Settings: defaultSettings,
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// Permissions is the built module; route sets find it in
// routing.Env.Modules["permissions"].
type Permissions struct {
	st  *store.Store
	log *slog.Logger
	set *metrics.Set

	tab atomic.Pointer[table]

	interval   atomic.Int64 // poll interval, ns
	maxEntries atomic.Int64
	subj       atomic.Uint32

	// reloadMu serialises reloads (poller, management commands, Reload)
	// and guards gauges.
	reloadMu sync.Mutex
	gauges   map[int]string // group -> metric name registered

	cur   Settings // as last applied (New, Reload)
	since uint64   // change-log position when the table was first loaded
	stop  chan struct{}
	wg    sync.WaitGroup

	checks, matches       *metrics.Counter
	reloads, reloadErrors *metrics.Counter
}

// Match is what CheckAddress and Match return on a match: the entry's id,
// group and context info (OpenSIPS' context_info variable).
type Match struct {
	ID    int64
	Group int
	Info  string
}

func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	s := settings.(*Settings)
	if h.Store == nil {
		return nil, fmt.Errorf("permissions needs the store")
	}
	p := &Permissions{
		st:     h.Store,
		log:    h.Logger(),
		set:    h.Metrics,
		gauges: map[int]string{},
		stop:   make(chan struct{}),
	}
	p.apply(s)
	p.tab.Store(emptyTable)
	p.checks = h.Metrics.GetOrCreateCounter("switchboard_permissions_checks_total")
	p.matches = h.Metrics.GetOrCreateCounter("switchboard_permissions_matches_total")
	p.reloads = h.Metrics.GetOrCreateCounter("switchboard_permissions_reloads_total")
	p.reloadErrors = h.Metrics.GetOrCreateCounter("switchboard_permissions_reload_errors_total")
	h.Metrics.GetOrCreateGauge("switchboard_permissions_entries_total", func() float64 { return float64(p.tab.Load().entries) })
	h.Metrics.GetOrCreateGauge("switchboard_permissions_skipped_entries", func() float64 { return float64(p.tab.Load().skipped) })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The change log position first: a change committed while the table
	// loads is then seen by the first poll (and loaded twice, harmlessly).
	since, err := p.st.LastChange(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the store's change log: %w", err)
	}
	if _, err := p.reload(ctx); err != nil {
		return nil, err
	}
	p.since = since
	p.registerCommands(h)
	return p, nil
}

func (p *Permissions) apply(s *Settings) {
	p.cur = *s
	p.interval.Store(int64(s.PollInterval))
	p.maxEntries.Store(int64(s.MaxEntries))
	subj, _ := parseSubject(s.PatternOn)
	p.subj.Store(uint32(subj))
}

// Start begins polling the change log. The table itself is loaded by New,
// so routes can use it from the first request.
func (p *Permissions) Start() error {
	p.wg.Add(1)
	go p.poll(p.since)
	return nil
}

// Stop ends the poller.
func (p *Permissions) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// CheckReload refuses a max_entries below the entries of the address
// table in the store. A table that grows past it before Reload loads it
// fails there.
func (p *Permissions) CheckReload(settings any) error {
	s := settings.(*Settings)
	if int64(s.MaxEntries) == p.maxEntries.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := p.st.ListAddresses(ctx, 0)
	if err != nil {
		return fmt.Errorf("reading the address table for max_entries: %w", err)
	}
	if len(rows) > s.MaxEntries {
		return modules.Errorf("max_entries", "%d: the address table has %d entries", s.MaxEntries, len(rows))
	}
	return nil
}

// Reload takes new settings (SIGHUP). A changed pattern_on or max_entries
// reloads the table; if that fails the old settings and table stay.
func (p *Permissions) Reload(settings any) error {
	s, old := *settings.(*Settings), p.cur
	p.apply(&s)
	if s.PatternOn == old.PatternOn && s.MaxEntries == old.MaxEntries {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.reload(ctx); err != nil {
		p.apply(&old)
		return err
	}
	return nil
}

// poll reads the change log every poll interval and reloads the table
// when the address table changed. A reload that fails is tried again at
// the next tick.
func (p *Permissions) poll(since uint64) {
	defer p.wg.Done()
	dirty := false
	var outage store.OncePerOutage
	for {
		t := time.NewTimer(time.Duration(p.interval.Load()))
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		var changed bool
		var err error
		since, changed, err = p.readChanges(since)
		if outage.Report(err) {
			p.log.Warn("permissions: reading the change log failed; the address table in use may be stale", "err", err)
		}
		if err != nil {
			continue
		}
		dirty = dirty || changed
		if !dirty {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = p.reload(ctx)
		cancel()
		dirty = err != nil
	}
}

// readChanges reports whether the address table changed after since.
func (p *Permissions) readChanges(since uint64) (uint64, bool, error) {
	changed := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		changes, next, err := p.st.Changes(ctx, since)
		cancel()
		if err != nil {
			return since, changed, err
		}
		for _, ch := range changes {
			if ch.Kind == store.ChangeAddress || ch.Kind == store.ChangeAll {
				changed = true
			}
		}
		since = next
		if len(changes) < 1000 {
			return since, changed, nil
		}
	}
}

// reload reads the whole address table, builds a new snapshot and swaps
// it in. On error the table in use stays.
func (p *Permissions) reload(ctx context.Context) (*table, error) {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	rows, err := p.st.ListAddresses(ctx, 0)
	if err != nil {
		p.reloadErrors.Inc()
		p.log.Error("permissions: loading the address table failed; the set in use stays", "err", err)
		return nil, fmt.Errorf("loading the address table: %w", err)
	}
	if max := p.maxEntries.Load(); int64(len(rows)) > max {
		p.reloadErrors.Inc()
		err := fmt.Errorf("the address table has %d entries, more than permissions.max_entries (%d); the set in use stays", len(rows), max)
		p.log.Error("permissions: "+err.Error(), "entries", len(rows), "max_entries", max)
		return nil, err
	}
	broad := 0
	for _, a := range rows {
		if w := broadWarning(a); w != "" {
			if broad < 10 {
				p.log.Warn("permissions: entry "+w, "id", a.ID)
			}
			broad++
		}
	}
	logged := 0
	t := buildTable(rows, subject(p.subj.Load()), p.tab.Load(), func(a store.Address, err error) {
		if logged < 10 {
			p.log.Warn("permissions: address entry skipped (it grants nothing until corrected)", "id", a.ID, "err", err)
		}
		logged++
	})
	p.tab.Store(t)
	p.reloads.Inc()
	p.updateGauges(t)
	p.log.Info("permissions: address table loaded", "entries", t.entries, "groups", len(t.groups), "skipped", t.skipped)
	return t, nil
}

// updateGauges keeps one switchboard_permissions_entries{group} gauge
// per group present (under reloadMu).
func (p *Permissions) updateGauges(t *table) {
	for g := range t.groups {
		if _, ok := p.gauges[g]; ok {
			continue
		}
		name := `switchboard_permissions_entries{group="` + strconv.Itoa(g) + `"}`
		p.set.GetOrCreateGauge(name, func() float64 { return float64(p.tab.Load().groups[g]) })
		p.gauges[g] = name
	}
	for g, name := range p.gauges {
		if _, ok := t.groups[g]; !ok {
			p.set.UnregisterMetric(name)
			delete(p.gauges, g)
		}
	}
}

// Entries returns the number of entries in use and per group.
func (p *Permissions) Entries() (int, map[int]int) {
	t := p.tab.Load()
	groups := make(map[int]int, len(t.groups))
	for g, n := range t.groups {
		groups[g] = n
	}
	return t.entries, groups
}

// CheckSourceAddress reports whether the request's source address, port
// and transport match an entry of group (0: any group) whose pattern, if
// it has one, matches the From URI or the Request-URI (pattern_on).
// OpenSIPS check_source_address(group), Kamailio
// allow_source_address(group). It allocates nothing.
func (p *Permissions) CheckSourceAddress(c *routing.Ctx, group int) bool {
	_, ok := p.Match(c, group)
	return ok
}

// AllowTrusted reports whether the request's source matches an entry of
// any group (Kamailio allow_trusted(); OpenSIPS check_source_address("0")).
func (p *Permissions) AllowTrusted(c *routing.Ctx) bool {
	_, ok := p.Match(c, 0)
	return ok
}

// GroupOf returns the group of the most specific entry the request's
// source matches (the lowest group among equally specific ones), or -1
// (OpenSIPS get_source_group).
func (p *Permissions) GroupOf(c *routing.Ctx) int {
	m, ok := p.Match(c, 0)
	if !ok {
		return -1
	}
	return m.Group
}

// Match is CheckSourceAddress returning the entry matched, for routes
// that use its context info.
func (p *Permissions) Match(c *routing.Ctx, group int) (Match, bool) {
	t := p.tab.Load()
	var subj []byte
	if t.subject == subjectRURI {
		subj = c.RU()
	} else {
		subj = c.FU()
	}
	return p.check(t, group, c.SrcIP(), c.SrcPort(), c.Proto(), subj)
}

// CheckAddress is OpenSIPS check_address(group, ip, port, proto, ...,
// pattern): the same test on an address the route chooses, with subject
// the string patterns are matched against (nil matches no pattern).
func (p *Permissions) CheckAddress(group int, addr netip.Addr, port uint16, proto transport.Proto, subject []byte) (Match, bool) {
	return p.check(p.tab.Load(), group, addr, port, proto, subject)
}

func (p *Permissions) check(t *table, group int, addr netip.Addr, port uint16, proto transport.Proto, subj []byte) (Match, bool) {
	p.checks.Inc()
	if group < 0 || group > store.MaxAddressGroup {
		return Match{}, false
	}
	q := query{group: uint16(group), port: port, proto: proto, full: true, subject: subj}
	e := t.lookup(addr, &q)
	if e == nil {
		return Match{}, false
	}
	p.matches.Inc()
	return Match{ID: e.id, Group: int(e.group), Info: e.info}, true
}

// InGroup reports whether address a is in group (0: in any group), by
// address alone: an entry's port, transport and pattern are not looked
// at, since a caller such as the pike module asks about a datagram's
// source before any message is parsed. Allocation-free and safe for
// concurrent use; not counted in the checks metric.
func (p *Permissions) InGroup(group int, a netip.Addr) bool {
	if group < 0 || group > store.MaxAddressGroup {
		return false
	}
	q := query{group: uint16(group)}
	return p.tab.Load().lookup(a, &q) != nil
}
