// Package rtpengine relays the media of calls through rtpengine
// (https://github.com/sipwise/rtpengine), as OpenSIPS's and Kamailio's
// rtpengine modules do: the SDP of an offer and of its answer goes to
// rtpengine over its "ng" control protocol (package ng), and the SDP
// rtpengine returns, which names its own address and ports, replaces the
// one in the relayed request or response. Both parties then send their
// media to rtpengine, which forwards it between them: a phone behind NAT
// is heard, and heard from, whatever its SDP said.
//
// The control exchange never blocks a receive loop: a request waits
// suspended (txn Request.Suspend) and a response held (txn
// Request.HoldResponse) while rtpengine answers, on the client's own
// goroutines.
package rtpengine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/internal/tablepoll"
	"switchboard/modules/rtpengine/ng"
	"switchboard/store"
)

// Settings are the rtpengine section of the configuration
// (docs/configuration.md).
type Settings struct {
	// Instances are the control sockets, "udp:IP:port", each optionally
	// followed by "=weight" (OpenSIPS rtpengine_sock) and preceded by
	// "N == " for set N (OpenSIPS's set syntax; set 0 without it). They
	// join the rows of the rtpengine table. None anywhere: the module is
	// off and the route set relays media untouched.
	Instances []string `yaml:"instances"`
	// BindAddress is the local address the control sockets are bound
	// to. Empty: for each instance, the address the kernel chooses to
	// reach it (127.0.0.1 for an rtpengine on loopback); never the
	// wildcard address.
	BindAddress string `yaml:"bind_address"`
	// DefaultSet is the set of the commands whose flags name none (the
	// provider route set's).
	DefaultSet int `yaml:"default_set"`
	// PollInterval is how often the rtpengine table's version is read;
	// the table is loaded again when it moved.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxCalls bounds the calls whose instance is remembered (so that
	// their answer and delete reach the rtpengine that has their session
	// whatever a reload changed); past it a call's commands go where its
	// Call-ID hashes.
	MaxCalls int `yaml:"max_calls"`
	// CallTimeout forgets a call's instance this long after its last
	// command (a delete forgets it at once).
	CallTimeout time.Duration `yaml:"call_timeout"`
	// Timeout is how long an answer is waited for before a command is
	// sent again (rtpengine_tout).
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many times a command is sent again to one instance
	// before it counts as down and the next one is tried (rtpengine_retr).
	Retries int `yaml:"retries"`
	// DisableTimeout is how long an instance that stopped answering stays
	// out before it is pinged again (rtpengine_disable_tout).
	DisableTimeout time.Duration `yaml:"disable_timeout"`
	// PingInterval: each instance in service is pinged (and its session
	// count read) this often; 0: only down instances are pinged.
	PingInterval time.Duration `yaml:"ping_interval"`
	// Flags are the offer and answer flags of the provider route set's
	// rtpengine_manage, in OpenSIPS's form.
	Flags string `yaml:"flags"`
	// OnUnavailable says what a call gets when no instance answers:
	// "reject" (503 Media Relay Unavailable) or "relay" (relayed with its
	// own SDP, no media relay).
	OnUnavailable string `yaml:"on_unavailable"`
}

// DefaultSettings: no instance (off), OpenSIPS's timings, the NAT script's
// flags.
func DefaultSettings() *Settings {
	return &Settings{
		PollInterval:   time.Second,
		MaxCalls:       1_000_000,
		CallTimeout:    4 * time.Hour,
		Timeout:        time.Second,
		Retries:        2,
		DisableTimeout: time.Minute,
		PingInterval:   10 * time.Second,
		Flags:          "replace-origin replace-session-connection ICE=remove",
		OnUnavailable:  "reject",
	}
}

func init() {
	modules.Register(modules.Definition{
		Name:          "rtpengine",
		Doc:           "media relay through rtpengine: rtpengine_offer/answer/delete/manage over the ng protocol; instance sets in the rtpengine table",
		Settings:      func() any { return DefaultSettings() },
		Check:         func(s any) error { return s.(*Settings).check() },
		CheckOutbound: func(s any, allowed func(netip.Addr) bool) error { return s.(*Settings).checkOutbound(allowed) },
		New:           newModule,
		CLI:           cliCommands,
	})
}

// confInstance is one entry of rtpengine.instances.
type confInstance struct {
	index  int // in the list, for errors naming the key
	set    int
	url    string
	addr   netip.AddrPort
	weight int
}

func (c confInstance) key() string { return fmt.Sprintf("instances[%d]", c.index) }

// parseConfInstance reads "[N ==] udp:IP:port[=weight]".
func parseConfInstance(i int, s string) (confInstance, error) {
	c := confInstance{index: i}
	if set, rest, ok := strings.Cut(s, "=="); ok {
		n, err := strconv.Atoi(strings.TrimSpace(set))
		if err != nil || n < 0 || n > store.MaxRTPEngineSet {
			return c, fmt.Errorf("set %q before '==': want 0-%d", strings.TrimSpace(set), store.MaxRTPEngineSet)
		}
		c.set, s = n, strings.TrimSpace(rest)
	}
	in, err := ng.ParseInstance(s)
	if err != nil {
		return c, err
	}
	c.url, c.addr, c.weight = in.URL, in.Addr, in.Weight
	return c, nil
}

func (s *Settings) parseInstances() ([]confInstance, error) {
	out := make([]confInstance, 0, len(s.Instances))
	seen := map[instKey]bool{}
	for i, in := range s.Instances {
		c, err := parseConfInstance(i, in)
		if err != nil {
			return nil, modules.Errorf(c.key(), "%q: %v", in, err)
		}
		k := instKey{c.set, c.addr}
		if seen[k] {
			return nil, modules.Errorf(c.key(), "%s is listed twice in set %d", c.addr, c.set)
		}
		seen[k] = true
		out = append(out, c)
	}
	return out, nil
}

// bindAddr parses bind_address (zero when empty).
func (s *Settings) bindAddr() (netip.Addr, error) {
	if s.BindAddress == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s.BindAddress)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s.BindAddress)
	}
	if a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("%s is the wildcard address: give the address of an interface (or leave it empty for the one that reaches each instance)", a)
	}
	return a.Unmap(), nil
}

func (s *Settings) check() error {
	insts, err := s.parseInstances()
	if err != nil {
		return err
	}
	if len(s.Instances) > 64 {
		return modules.Errorf("instances", "at most 64, not %d", len(s.Instances))
	}
	bind, err := s.bindAddr()
	if err != nil {
		return modules.Errorf("bind_address", "%v", err)
	}
	for _, c := range insts {
		if bind.IsValid() && bind.Is4() != c.addr.Addr().Unmap().Is4() {
			return modules.Errorf(c.key(), "%s cannot be reached from bind_address %s (another address family)", c.addr, bind)
		}
	}
	if s.DefaultSet < 0 || s.DefaultSet > store.MaxRTPEngineSet {
		return modules.Errorf("default_set", "must be between 0 and %d, not %d", store.MaxRTPEngineSet, s.DefaultSet)
	}
	if s.PollInterval < 10*time.Millisecond || s.PollInterval > time.Minute {
		return modules.Errorf("poll_interval", "must be between 10ms and 1m, not %s", s.PollInterval)
	}
	if s.MaxCalls < 0 || s.MaxCalls > 100_000_000 {
		return modules.Errorf("max_calls", "must be between 0 (remember none) and 100000000, not %d", s.MaxCalls)
	}
	if s.CallTimeout < time.Minute || s.CallTimeout > 48*time.Hour {
		return modules.Errorf("call_timeout", "must be between 1m and 48h, not %s", s.CallTimeout)
	}
	if s.Timeout < 10*time.Millisecond || s.Timeout > 30*time.Second {
		return modules.Errorf("timeout", "must be between 10ms and 30s, not %s", s.Timeout)
	}
	if s.Retries < 0 || s.Retries > 10 {
		return modules.Errorf("retries", "must be between 0 and 10, not %d", s.Retries)
	}
	if s.DisableTimeout < time.Second || s.DisableTimeout > time.Hour {
		return modules.Errorf("disable_timeout", "must be between 1s and 1h, not %s", s.DisableTimeout)
	}
	if s.PingInterval != 0 && (s.PingInterval < time.Second || s.PingInterval > time.Hour) {
		return modules.Errorf("ping_interval", "must be 0 (ping only down instances) or between 1s and 1h, not %s", s.PingInterval)
	}
	if _, err := ParseFlags(s.Flags); err != nil {
		return modules.Errorf("flags", "%v", err)
	}
	if s.OnUnavailable != "reject" && s.OnUnavailable != "relay" {
		return modules.Errorf("on_unavailable", "must be reject or relay, not %q", s.OnUnavailable)
	}
	return nil
}

// checkOutbound refuses an instance outside outbound.allow: the control
// socket sends nowhere the server may not send to.
func (s *Settings) checkOutbound(allowed func(netip.Addr) bool) error {
	insts, err := s.parseInstances()
	if err != nil {
		return err
	}
	for _, c := range insts {
		if !allowed(c.addr.Addr()) {
			return modules.Errorf(c.key(), "%s is outside outbound.allow: the server sends nowhere else", c.addr)
		}
	}
	return nil
}

// maxHeldAcks bounds the ACKs (of late offers) kept at once while
// rtpengine answers their SDP: each holds a scratch context of the
// transaction core (its message buffers, some kilobytes).
const maxHeldAcks = 1024

// instKey identifies an instance across reloads: its set and address.
// The same rtpengine in two sets is two instances (each pinged, each
// with its own state).
type instKey struct {
	set  int
	addr netip.AddrPort
}

// member is an instance in a snapshot, with where it comes from.
type member struct {
	in     *ng.Instance
	set    int
	source string // "config" or "table"
	id     int64  // the row's id (table)
	desc   string
}

// snapshot is the instances in use: built whole by a reload and swapped
// in with one pointer. A command selects from the set it read when it
// started (its fail-over walks that list), so a reload never moves a
// command in flight.
type snapshot struct {
	sets    map[int][]*ng.Instance
	members []member // config first, then table rows, by set and id
	skipped int      // table rows not used (logged)
}

// Engine is the module. Its route functions are safe for concurrent use;
// a nil *Engine (the module not compiled in) and one without instances
// do nothing (Enabled is false).
type Engine struct {
	h      *modules.Host
	st     *store.Store
	client *ng.Client
	bind   netip.Addr // bind_address; zero: chosen per instance

	snap        atomic.Pointer[snapshot]
	enabled     atomic.Bool
	defaultSet  atomic.Int64
	flags       atomic.Pointer[Flags]
	relayOnFail atomic.Bool
	pingEvery   time.Duration
	pollEvery   time.Duration
	// started are the settings the module was made with: those of the
	// keys only a restart applies stay in force (keepRestartKeys).
	started     Settings
	calls       *callTable
	callTimeout atomic.Int64 // ms

	// reloadMu serialises loads; it guards what follows.
	reloadMu sync.Mutex
	conf     []confInstance
	states   map[instKey]*ng.Instance
	stored   map[instKey]bool // disabled, as the table said when last loaded
	version  int64

	poller        *tablepoll.Poller
	bufs          sync.Pool // *[]byte, command buffers
	stop          chan struct{}
	stopped       sync.WaitGroup
	sessionsByURL sync.Map // URL → *atomic.Int64 (rtpengine's own count)
	answering     sync.Map // pendingKey → struct{}: responses held for an answer
	provisional   provisionalOffers

	heldAcks    atomic.Int64 // ACKs kept while rtpengine answers their SDP
	maxHeldAcks int64
	acksNotHeld *metrics.Counter
	orphans     *metrics.Counter // offers answered after their transaction ended

	deletes               chan timedOutDelete // sessions of timed-out offers, to delete
	timeoutDeletes        *metrics.Counter
	timeoutDeletesDropped *metrics.Counter

	commands map[string]*metrics.Counter
	errors   map[string]*metrics.Counter
	latency  *metrics.Histogram
	held     *metrics.Counter
	dedup    *metrics.Counter
	downs    *metrics.Counter
	reloads  *metrics.Counter
	reloadKO *metrics.Counter
}

func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	s := settings.(*Settings)
	e := &Engine{h: h, st: h.Store, stop: make(chan struct{}), pingEvery: s.PingInterval, pollEvery: s.PollInterval,
		commands: map[string]*metrics.Counter{}, errors: map[string]*metrics.Counter{},
		states: map[instKey]*ng.Instance{}, stored: map[instKey]bool{},
		started: *s, calls: newCallTable(s.MaxCalls)}
	e.bind, _ = s.bindAddr() // checked
	e.maxHeldAcks = maxHeldAcks
	e.bufs.New = func() any { b := make([]byte, 0, 2048); return &b }
	set := h.Metrics
	for _, c := range []string{"offer", "answer", "delete", "ping", "statistics", "query"} {
		e.commands[c] = set.NewCounter(`switchboard_rtpengine_commands_total{command="` + c + `"}`)
	}
	for _, r := range []string{"timeout", "no_instance", "error", "bad_sdp", "malformed"} {
		e.errors[r] = set.NewCounter(`switchboard_rtpengine_errors_total{reason="` + r + `"}`)
	}
	e.latency = set.NewHistogram("switchboard_rtpengine_ng_latency_seconds")
	e.held = set.NewCounter("switchboard_rtpengine_responses_held_total")
	e.dedup = set.NewCounter("switchboard_rtpengine_retransmissions_dropped_total")
	e.downs = set.NewCounter("switchboard_rtpengine_instance_down_total")
	e.reloads = set.NewCounter("switchboard_rtpengine_reloads_total")
	e.reloadKO = set.NewCounter("switchboard_rtpengine_reload_errors_total")
	e.acksNotHeld = set.NewCounter("switchboard_rtpengine_acks_not_held_total")
	e.orphans = set.NewCounter("switchboard_rtpengine_orphan_offers_total")
	e.timeoutDeletes = set.NewCounter("switchboard_rtpengine_timeout_deletes_total")
	e.timeoutDeletesDropped = set.NewCounter("switchboard_rtpengine_timeout_deletes_dropped_total")
	set.NewGauge("switchboard_rtpengine_sessions", func() float64 {
		var n int64
		e.sessionsByURL.Range(func(_, v any) bool { n += v.(*atomic.Int64).Load(); return true })
		return float64(n)
	})
	set.NewGauge("switchboard_rtpengine_instances_up", func() float64 {
		n := 0
		if sn := e.snap.Load(); sn != nil {
			for _, m := range sn.members {
				if m.in.Up() {
					n++
				}
			}
		}
		return float64(n)
	})
	set.NewGauge("switchboard_rtpengine_skipped_rows", func() float64 {
		if sn := e.snap.Load(); sn != nil {
			return float64(sn.skipped)
		}
		return 0
	})
	set.NewGauge("switchboard_rtpengine_calls_tracked", func() float64 { return float64(e.calls.len()) })
	e.snap.Store(&snapshot{sets: map[int][]*ng.Instance{}})
	var err error
	e.client, err = ng.New(ng.Config{
		Timeout: s.Timeout, Retries: s.Retries, DisableFor: s.DisableTimeout,
		PingInterval: s.PingInterval, Observe: e.observe, StateChanged: e.stateChanged,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("rtpengine: %w", err)
	}
	e.apply(s)
	conf, _ := s.parseInstances() // checked
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.load(ctx, conf, true); err != nil {
		e.client.Close()
		return nil, err
	}
	e.deletes = make(chan timedOutDelete, maxTimeoutDeletes)
	e.stopped.Add(1)
	go e.sendTimeoutDeletes()
	e.registerCommands(h)
	return e, nil
}

// apply puts the settings that change at run time in force.
func (e *Engine) apply(s *Settings) {
	f, _ := ParseFlags(s.Flags) // checked
	e.flags.Store(f)
	e.relayOnFail.Store(s.OnUnavailable == "relay")
	e.defaultSet.Store(int64(s.DefaultSet))
	e.callTimeout.Store(s.CallTimeout.Milliseconds())
}

// load builds a snapshot of the configured instances and the table's
// rows (read here when withTable) and swaps it in. A configured instance
// that cannot be used (outside outbound.allow, no socket for it) is an
// error naming its key, and the snapshot in use stays; a table row that
// cannot be used is skipped and logged with its id and the reason.
func (e *Engine) load(ctx context.Context, conf []confInstance, withTable bool) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	var rows []store.RTPEngine
	version := e.version
	if withTable && e.st != nil {
		v, err := e.st.RTPEngineVersion(ctx)
		if err == nil {
			rows, err = e.st.ListRTPEngines(ctx)
		}
		if err != nil {
			e.reloadKO.Inc()
			return fmt.Errorf("rtpengine: reading the rtpengine table: %w", err)
		}
		version = v
	} else if sn := e.snap.Load(); sn != nil {
		// Only the configuration changed: the rows in use stay.
		for _, m := range sn.members {
			if m.source == "table" {
				rows = append(rows, store.RTPEngine{ID: m.id, SetID: m.set, Socket: m.in.URL, Weight: m.in.Weight,
					Disabled: e.stored[instKey{m.set, m.in.Addr}], Description: m.desc})
			}
		}
	}
	_, err := e.build(conf, rows)
	if err != nil {
		e.reloadKO.Inc()
		return err
	}
	e.conf, e.version = conf, version
	e.reloads.Inc()
	return nil
}

// build makes the snapshot and swaps it in (reloadMu held).
func (e *Engine) build(conf []confInstance, rows []store.RTPEngine) (*snapshot, error) {
	sn := &snapshot{sets: map[int][]*ng.Instance{}}
	seen := map[instKey]bool{}
	fresh := map[instKey]*ng.Instance{} // states made by this build, dropped if it fails
	stored := map[instKey]bool{}
	for _, c := range conf {
		k := instKey{c.set, c.addr}
		if !e.h.Originator.Allowed(c.addr.Addr()) {
			return nil, modules.Errorf(c.key(), "%s is outside outbound.allow: the server sends nowhere else", c.addr)
		}
		in, err := e.instance(k, c.url, c.weight, fresh)
		if err != nil {
			return nil, modules.Errorf(c.key(), "%v", err)
		}
		seen[k] = true
		sn.sets[c.set] = append(sn.sets[c.set], in)
		sn.members = append(sn.members, member{in: in, set: c.set, source: "config"})
	}
	logged := 0
	skip := func(r store.RTPEngine, why string) {
		if logged < 10 {
			e.h.Logger().Warn("rtpengine: table row skipped (it is not used until corrected)", "row", r.ID, "set", r.SetID, "socket", r.Socket, "reason", why)
		}
		logged++
		sn.skipped++
	}
	for _, r := range rows {
		if err := store.CheckRTPEngine(&r); err != nil {
			skip(r, err.Error())
			continue
		}
		addr, _, _ := store.ParseRTPEngineSocket(r.Socket)
		k := instKey{r.SetID, addr}
		if seen[k] {
			skip(r, "already in set "+strconv.Itoa(r.SetID)+" (rtpengine.instances or another row)")
			continue
		}
		if !e.h.Originator.Allowed(addr.Addr()) {
			skip(r, addr.Addr().String()+" is outside outbound.allow")
			continue
		}
		in, err := e.instance(k, r.Socket, r.Weight, fresh)
		if err != nil {
			skip(r, err.Error())
			continue
		}
		seen[k] = true
		stored[k] = r.Disabled
		// The table's disabled column, when it changed (or the row is
		// new): an operator's rtpengine.enable/disable holds until then.
		if old, ok := e.stored[k]; !ok || old != r.Disabled {
			e.client.SetDisabled(in, r.Disabled)
		}
		sn.sets[r.SetID] = append(sn.sets[r.SetID], in)
		sn.members = append(sn.members, member{in: in, set: r.SetID, source: "table", id: r.ID, desc: r.Description})
	}
	all := make([]*ng.Instance, len(sn.members))
	for i, m := range sn.members {
		all[i] = m.in
	}
	if err := e.client.SetInstances(all); err != nil {
		return nil, err // sockets are bound in instance(): not reached
	}
	for k, in := range fresh {
		e.states[k] = in
	}
	for k := range e.states {
		if !seen[k] {
			delete(e.states, k)
		}
	}
	e.stored = stored
	e.snap.Store(sn)
	e.enabled.Store(len(sn.members) > 0)
	if len(sn.members) > 0 && len(sn.sets[int(e.defaultSet.Load())]) == 0 {
		e.h.Logger().Warn("rtpengine: the default set has no instance: commands that name no set fail", "default_set", e.defaultSet.Load())
	}
	return sn, nil
}

// instance returns the instance of k: the one known (with its state; a
// copy when its URL or weight changed) or a new one, whose control socket
// is bound here (bind_address, or the address that reaches it).
func (e *Engine) instance(k instKey, url string, weight int, fresh map[instKey]*ng.Instance) (*ng.Instance, error) {
	if old := e.states[k]; old != nil {
		in := old
		if old.URL != url || old.Weight != weight {
			cp := *old // same state
			cp.URL, cp.Weight = url, weight
			in = &cp
		}
		fresh[k] = in
		return in, nil
	}
	in, err := ng.ParseInstance("udp:" + k.addr.String())
	if err != nil {
		return nil, err
	}
	in.URL, in.Weight = url, weight
	local := e.bind
	if local.IsValid() {
		if local.Is4() != k.addr.Addr().Unmap().Is4() {
			return nil, fmt.Errorf("%s cannot be reached from bind_address %s (another address family)", k.addr, local)
		}
	} else if local, err = ng.LocalFor(k.addr); err != nil {
		return nil, fmt.Errorf("no local address reaches %s: %v", k.addr, err)
	}
	if err := e.client.Bind(local); err != nil {
		return nil, fmt.Errorf("control socket on %s: %v", local, err)
	}
	in.Local = local
	fresh[k] = in
	return in, nil
}

// Start polls the rtpengine table and reads rtpengine's session counts.
func (e *Engine) Start() error {
	if e.st != nil {
		e.reloadMu.Lock()
		loaded := e.version
		e.reloadMu.Unlock()
		e.poller = tablepoll.Start(tablepoll.Config{
			Interval: func() time.Duration { return e.pollEvery },
			Version:  e.st.RTPEngineVersion,
			Load: func(ctx context.Context) (int64, error) {
				e.reloadMu.Lock()
				conf := e.conf
				e.reloadMu.Unlock()
				if err := e.load(ctx, conf, true); err != nil {
					return 0, err
				}
				e.reloadMu.Lock()
				defer e.reloadMu.Unlock()
				return e.version, nil
			},
			Loaded: loaded,
			Failed: func(err error) {
				e.h.Logger().Warn("rtpengine: reading the table failed; the instances loaded before stay in use", "err", err)
			},
		})
	}
	e.stopped.Add(1)
	go e.poll()
	return nil
}

// Stop closes the control sockets; commands in flight end with an error
// (their requests get the on_unavailable answer).
func (e *Engine) Stop() {
	e.poller.Stop()
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.stopped.Wait()
	e.client.Close()
}

// CheckReload names the keys that take effect at the next start
// (keepRestartKeys), and refuses an instance that no local address
// reaches (another address family than bind_address, no route). Whether
// a new instance's control socket can be bound is known only when Reload
// binds it.
func (e *Engine) CheckReload(settings any) error {
	s := *settings.(*Settings)
	keys := e.keepRestartKeys(&s)
	conf, err := s.parseInstances()
	if err != nil {
		return err
	}
	for _, c := range conf {
		if e.bind.IsValid() {
			if e.bind.Is4() != c.addr.Addr().Unmap().Is4() {
				return modules.Errorf(c.key(), "%s cannot be reached from bind_address %s (another address family)", c.addr, e.bind)
			}
		} else if _, err := ng.LocalFor(c.addr); err != nil {
			return modules.Errorf(c.key(), "no local address reaches %s: %v", c.addr, err)
		}
	}
	return modules.NeedRestart(keys...)
}

// keepRestartKeys writes into s the value in force of each key that
// takes effect only at the next start and that s changes, and returns
// those keys: bind_address, poll_interval and max_calls, and the timings
// the ng client is made with (timeout, retries, disable_timeout,
// ping_interval).
func (e *Engine) keepRestartKeys(s *Settings) (keys []string) {
	in := &e.started
	keys = modules.KeepInForce(keys, "bind_address", &s.BindAddress, in.BindAddress)
	keys = modules.KeepInForce(keys, "poll_interval", &s.PollInterval, in.PollInterval)
	keys = modules.KeepInForce(keys, "max_calls", &s.MaxCalls, in.MaxCalls)
	keys = modules.KeepInForce(keys, "timeout", &s.Timeout, in.Timeout)
	keys = modules.KeepInForce(keys, "retries", &s.Retries, in.Retries)
	keys = modules.KeepInForce(keys, "disable_timeout", &s.DisableTimeout, in.DisableTimeout)
	keys = modules.KeepInForce(keys, "ping_interval", &s.PingInterval, in.PingInterval)
	return keys
}

// Reload applies changed settings: instances (a new one joins, a removed
// one leaves; those kept keep their state), flags, on_unavailable,
// default_set and call_timeout. The other keys keep their values in force
// until the next start (keepRestartKeys).
func (e *Engine) Reload(settings any) error {
	s := settings.(*Settings)
	e.keepRestartKeys(s)
	conf, err := s.parseInstances()
	if err != nil {
		return err
	}
	// The instances first: when one cannot be used, the settings in
	// force stay, all of them.
	if err := e.load(context.Background(), conf, false); err != nil {
		return err
	}
	e.apply(s)
	return nil
}

// LoadTable reads the rtpengine table now and swaps in the instances
// (rtpengine.reload; OpenSIPS rtpengine_reload).
func (e *Engine) LoadTable(ctx context.Context) error {
	e.reloadMu.Lock()
	conf := e.conf
	e.reloadMu.Unlock()
	return e.load(ctx, conf, true)
}

// OutboundChanged checks the instances again against outbound.allow,
// which a reload changed: the table is read again, and a row now outside
// the list is skipped (logged, switchboard_rtpengine_skipped_rows), one
// now inside taken up. The configured instances were checked against the
// new list when the configuration was loaded. When the table cannot be
// read, the rows in use are checked again all the same, so that no
// command goes outside the new list.
func (e *Engine) OutboundChanged() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := e.LoadTable(ctx)
	if err != nil {
		e.reloadMu.Lock()
		conf := e.conf
		e.reloadMu.Unlock()
		if err2 := e.load(ctx, conf, false); err2 != nil {
			return errors.Join(err, err2)
		}
	}
	return err
}

// Enabled reports whether media goes through rtpengine: the module is
// there and has instances (rtpengine.instances).
func (e *Engine) Enabled() bool { return e != nil && e.enabled.Load() }

// DefaultFlags are the configured flags (rtpengine.flags).
func (e *Engine) DefaultFlags() *Flags {
	if e == nil {
		return nil
	}
	return e.flags.Load()
}

// Client is the ng client (tests, benchmarks).
func (e *Engine) Client() *ng.Client { return e.client }

func (e *Engine) observe(in *ng.Instance, cmd string, rtt time.Duration, err error) {
	if c := e.commands[cmd]; c != nil {
		c.Inc()
	}
	switch {
	case err == ng.ErrTimeout:
		e.errors["timeout"].Inc()
	case err != nil:
		e.errors["malformed"].Inc()
	default:
		e.latency.Update(rtt.Seconds())
	}
}

func (e *Engine) stateChanged(in *ng.Instance, up bool) {
	if up {
		e.h.Logger().Info("rtpengine instance back in service", "instance", in.URL)
		return
	}
	e.downs.Inc()
	e.h.Warn("rtpengine instance not answering: out of service", "instance", in.URL)
}

// poll reads each instance's session count (ng "statistics") every
// ping_interval, for switchboard_rtpengine_sessions, and forgets the
// calls past call_timeout.
func (e *Engine) poll() {
	defer e.stopped.Done()
	every := e.pingEvery
	if every <= 0 || every > time.Minute {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.calls.sweep(time.Now().UnixMilli() - e.callTimeout.Load())
			e.provisional.sweep()
			if e.pingEvery <= 0 {
				continue
			}
			for _, in := range e.client.Instances() {
				if !in.Up() {
					continue
				}
				in := in
				e.client.DoOn(in, "statistics", cmdStatistics, func(_ *ng.Instance, v ng.Value, err error) {
					n, ok := v.Get("statistics").Get("currentstatistics").Get("sessionsown").Int()
					if err == nil && ok {
						c, _ := e.sessionsByURL.LoadOrStore(in.URL, new(atomic.Int64))
						c.(*atomic.Int64).Store(n)
					}
				})
			}
		}
	}
}

var cmdStatistics = []byte("d7:command10:statisticse")

// InstanceInfo is one instance as rtpengine.list shows it.
type InstanceInfo struct {
	Set       int    `json:"set"`
	URL       string `json:"url"`
	Weight    int    `json:"weight"`
	State     string `json:"state"` // up, down, disabled
	DownUntil string `json:"down_until,omitempty"`
	Sessions  int64  `json:"sessions"`
	Local     string `json:"local"`  // the address commands leave from
	Source    string `json:"source"` // config or table
	ID        int64  `json:"id,omitempty"`
	Desc      string `json:"description,omitempty"`
}

// List describes the instances (rtpengine.list; OpenSIPS rtpengine_show).
func (e *Engine) List() []InstanceInfo {
	out := []InstanceInfo{}
	for _, m := range e.snap.Load().members {
		in := m.in
		i := InstanceInfo{Set: m.set, URL: in.URL, Weight: in.Weight, State: "up", Local: in.Local.String(),
			Source: m.source, ID: m.id, Desc: m.desc}
		if down, until := in.Down(); down {
			i.State, i.DownUntil = "down", until.UTC().Format(time.RFC3339)
		}
		if in.Disabled() {
			i.State = "disabled"
		}
		if c, ok := e.sessionsByURL.Load(in.URL); ok {
			i.Sessions = c.(*atomic.Int64).Load()
		}
		out = append(out, i)
	}
	return out
}

// SetDisabled takes the instances named by url out of service or puts
// them back (rtpengine.disable, rtpengine.enable; OpenSIPS
// rtpengine_enable): those of set, or of every set when set < 0. The
// state holds until the instance's table row changes its disabled column.
func (e *Engine) SetDisabled(url string, set int, disabled bool) error {
	n := 0
	want := strings.TrimPrefix(strings.TrimPrefix(url, "udp:"), "UDP:")
	for _, m := range e.snap.Load().members {
		if (set < 0 || m.set == set) && (m.in.URL == url || m.in.Addr.String() == want) {
			e.client.SetDisabled(m.in, disabled)
			n++
		}
	}
	if n == 0 {
		if set >= 0 {
			return fmt.Errorf("%w: no rtpengine instance %q in set %d", mgmt.ErrNotFound, url, set)
		}
		return fmt.Errorf("%w: no rtpengine instance %q", mgmt.ErrNotFound, url)
	}
	return nil
}

func (e *Engine) registerCommands(h *modules.Host) {
	h.Command("rtpengine.list", mgmt.Command{ReadOnly: true,
		Help: "the rtpengine instances by set: weight, state (up, down until a recheck, disabled), sessions, local address, source (config or table) (OpenSIPS rtpengine_show)",
		Run:  func(context.Context, json.RawMessage) (any, error) { return e.List(), nil }})
	h.Command("rtpengine.reload", mgmt.Command{
		Help: "read the rtpengine table now and use its instances (OpenSIPS rtpengine_reload); the table is also polled every rtpengine.poll_interval",
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			if err := e.LoadTable(ctx); err != nil {
				return nil, err
			}
			return e.List(), nil
		}})
	h.Command("rtpengine.add", mgmt.Command{
		Help: `add an instance to the rtpengine table and use it at once: {"socket":"udp:192.0.2.20:2223","set":1,"weight":2,"disabled":false,"description":"media 2"} (set 0 and weight 1 by default; refused outside outbound.allow)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Socket      string `json:"socket"`
				Set         num    `json:"set"`
				Weight      *num   `json:"weight"`
				Disabled    bool   `json:"disabled"`
				Description string `json:"description"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Socket == "" {
				return nil, &mgmt.ArgError{Msg: `"socket" is required (udp:IP:port)`}
			}
			if args.Set < 0 || args.Set > store.MaxRTPEngineSet {
				return nil, &mgmt.ArgError{Msg: fmt.Sprintf("set: %d: want 0-%d", args.Set, store.MaxRTPEngineSet)}
			}
			r := store.RTPEngine{SetID: int(args.Set), Socket: args.Socket, Weight: 1, Disabled: args.Disabled, Description: args.Description}
			if args.Weight != nil {
				r.Weight = int(*args.Weight)
			}
			e.reloadMu.Lock()
			conf := e.conf
			e.reloadMu.Unlock()
			if err := checkNewRow(&r, e.h.Originator.Allowed, e.bind, conf); err != nil {
				return nil, &mgmt.ArgError{Msg: err.Error()} // the row as given cannot be used
			}
			r, err := e.st.AddRTPEngine(ctx, r)
			if err != nil {
				return nil, tableErr(err)
			}
			if err := e.LoadTable(ctx); err != nil {
				return nil, err
			}
			return map[string]any{"added": rowInfo(r), "instances": e.List()}, nil
		}})
	h.Command("rtpengine.del", mgmt.Command{
		Help: `delete an instance from the rtpengine table and stop using it at once: {"id":3}, or {"socket":"udp:192.0.2.20:2223","set":1}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				ID     num    `json:"id"`
				Socket string `json:"socket"`
				Set    num    `json:"set"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			var r store.RTPEngine
			var err error
			switch {
			case args.ID > 0 && args.Socket == "":
				r, err = e.st.DeleteRTPEngine(ctx, int64(args.ID))
			case args.ID == 0 && args.Socket != "":
				r, err = e.st.DeleteRTPEngineOf(ctx, int(args.Set), args.Socket)
			default:
				return nil, &mgmt.ArgError{Msg: `give "id" (a positive number), or "socket" and "set"`}
			}
			if err != nil {
				return nil, tableErr(err)
			}
			if err := e.LoadTable(ctx); err != nil {
				return nil, err
			}
			return map[string]any{"deleted": rowInfo(r), "instances": e.List()}, nil
		}})
	for _, verb := range []string{"enable", "disable"} {
		disable := verb == "disable"
		h.Command("rtpengine."+verb, mgmt.Command{
			Help: `{"instance":"udp:127.0.0.1:2223","set":1}: ` + map[bool]string{true: "take an instance out of service until enabled", false: "put an instance back in service (pinged at once)"}[disable] + "; without set, in every set (OpenSIPS rtpengine_enable)",
			Run: func(_ context.Context, raw json.RawMessage) (any, error) {
				var args struct {
					Instance string `json:"instance"`
					Set      *num   `json:"set"`
				}
				if err := mgmt.DecodeArgs(raw, &args); err != nil {
					return nil, err
				}
				if args.Instance == "" {
					return nil, &mgmt.ArgError{Msg: "instance is required"}
				}
				set := -1
				if args.Set != nil {
					if *args.Set < 0 || *args.Set > store.MaxRTPEngineSet {
						return nil, &mgmt.ArgError{Msg: fmt.Sprintf("set: want 0-%d", store.MaxRTPEngineSet)}
					}
					set = int(*args.Set)
				}
				if err := e.SetDisabled(args.Instance, set, disable); err != nil {
					return nil, err
				}
				return e.List(), nil
			}})
	}
}

// num is an integer argument given as a JSON number or a string ("2"),
// which is what `switchboard ctl rtpengine.disable set=2` sends.
type num int64

func (n *num) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = num(v)
	return nil
}

// rowInfo is a table row in the management API's words (rtpengine.list's).
func rowInfo(r store.RTPEngine) map[string]any {
	return map[string]any{"id": r.ID, "set": r.SetID, "url": r.Socket, "weight": r.Weight, "disabled": r.Disabled, "description": r.Description}
}

// tableErr maps the table's errors to the management API's: bad input
// 400, a missing row 404.
func tableErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNoRTPEngine):
		return fmt.Errorf("%w: %v", mgmt.ErrNotFound, err)
	case errors.Is(err, store.ErrMalformedRTPEngine), errors.Is(err, store.ErrRTPEngineExists),
		errors.Is(err, store.ErrNotInSchema):
		return &mgmt.ArgError{Msg: err.Error()}
	}
	return err
}
