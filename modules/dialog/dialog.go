// Package dialog keeps the state of calls that go through the proxy,
// OpenSIPS's dialog module: a route calls CreateDialog on an initial
// INVITE (create_dialog), the module follows its responses (early on a
// 1xx with a To tag, several for a forked call; confirmed on the 2xx;
// ended on a final of 300 or above, after a CANCEL) and MatchDialog on
// the in-dialog requests loose-routed by our Record-Route (match_dialog:
// a BYE from either side ends the answered call, a re-INVITE or UPDATE
// refreshes the targets; a request counts only when it goes to the other
// party's target as the dialog knows it: ValidateDialog, validate.go). A
// confirmed dialog that outlives its timeout
// (dialog.default_timeout, or SetTimeout from the route: $DLG_timeout) is
// ended by the proxy with a BYE to each side. Profiles count dialogs by
// name and value (set_dlg_profile, get_profile_size, is_in_profile) for
// limits on concurrent calls. An accounting module subscribes to the
// dialogs' events (Subscribe). With dialog.persist the confirmed dialogs
// are written to the store behind the calls and restored at start
// (persist.go), so that a restart does not lose them.
//
// Dialogs live in a shards table whose shard is picked by the Call-ID
// hash, as transactions are; the dialog's id travels in our signed
// Record-Route (";did=", covered by the signature: routesig.go in txn),
// so an in-dialog request finds its dialog in one lookup, and neither
// party, nor anyone outside the call, can make a request match another
// call's dialog. See README.md.
package dialog

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/rediscfg"
	"switchboard/shards"
	"switchboard/txn"
)

// Settings are the dialog section of the configuration.
type Settings struct {
	// DefaultTimeout is how long a confirmed dialog may last before the
	// proxy ends it with a BYE to each side (OpenSIPS
	// default_timeout); a route changes it per call with SetTimeout. It
	// also bounds how long a call may ring: past it the proxy cancels
	// the INVITE.
	DefaultTimeout time.Duration `yaml:"default_timeout"`
	// MaxDialogs bounds the dialogs held; past it CreateDialog refuses
	// (the route answers, the provider route set 503).
	MaxDialogs int `yaml:"max_dialogs"`
	// Profiles are the named profiles routes may put dialogs in.
	Profiles []ProfileSettings `yaml:"profiles"`
	// Persist writes confirmed dialogs to the store's dialog table,
	// behind the calls, and loads them at start (OpenSIPS db_mode
	// delayed), so that calls up across a restart keep their dialog:
	// listed, counted in their profiles, ended at their timeout.
	Persist bool `yaml:"persist"`
	// WriteInterval is how often the changes of the dialogs (answered,
	// in-dialog CSeq, target refresh, ended) are written, in one
	// transaction (OpenSIPS db_update_period). A crash loses at most
	// that much; a SIGTERM loses nothing.
	WriteInterval time.Duration `yaml:"write_interval"`
	// DrainTimeout, when not zero, is how long a SIGTERM lets confirmed
	// calls go on before the proxy ends them with a BYE to each side,
	// for a node being retired. Zero (the default): a SIGTERM leaves
	// them up; with Persist they resume after the restart.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// PingInterval, when not zero, is how often the proxy sends an
	// in-dialog OPTIONS to each side of a confirmed call (OpenSIPS
	// options_ping_interval); a side that does not answer (408) or has
	// no such dialog (481) ends the call with a BYE to each side.
	PingInterval time.Duration `yaml:"ping_interval"`
	// Sharing is none (dialogs in this node only) or redis: confirmed
	// dialogs are written to Redis, so that another node finds the
	// dialog of an in-dialog request that lands on it, and ends the
	// dialogs of a node that died at their timeout; one node alone ends
	// each call (share.go).
	Sharing string `yaml:"sharing"`
	// Redis is where the dialogs are shared; with its addr left out, the
	// registrar's (registrar.redis, every key of it).
	Redis rediscfg.Settings `yaml:"redis"`
	// TakeoverDelay is how long past a dialog's timeout the other nodes
	// leave it to the node that set it up before one of them ends it
	// (that node died).
	TakeoverDelay time.Duration `yaml:"takeover_delay"`
}

// ProfileSettings defines one profile.
type ProfileSettings struct {
	// Name is what routes and the management API call it.
	Name string `yaml:"name"`
	// WithValue: dialogs are counted per value (a caller, a trunk);
	// without it the profile is one counter (OpenSIPS
	// profiles_with_value / profiles_no_value).
	WithValue bool `yaml:"with_value"`
	// Value makes ApplyProfiles put every dialog in the profile: with
	// the From user ("from_user"), the Request-URI user ("ruri_user") or
	// the source address ("source_ip") as value, or, for a profile
	// without values, "all". Empty: only a route's SetProfile does.
	Value string `yaml:"value"`
	// Limit is the most dialogs ApplyProfiles lets in per value (0: no
	// limit); the route answers the one over it (486 in the dialog route
	// set).
	Limit int `yaml:"limit"`
}

// DefaultSettings are the defaults of every key.
func DefaultSettings() *Settings {
	rs := rediscfg.Default()
	rs.Addr = "" // the registrar's
	return &Settings{DefaultTimeout: 12 * time.Hour, MaxDialogs: 200_000, Persist: true, WriteInterval: time.Second,
		Sharing: SharingNone, Redis: rs, TakeoverDelay: 2 * time.Second}
}

// Sharing modes of dialog.sharing.
const (
	SharingNone  = "none"
	SharingRedis = "redis"
)

// maxTimeout bounds a dialog's timeout (default_timeout, SetTimeout)
// and how long after its answer a dialog lasts, a restored one too.
const maxTimeout = 7 * 24 * time.Hour

// maxProfiles bounds the profiles defined.
const maxProfiles = 64

func checkSettings(v any) error {
	s := v.(*Settings)
	switch {
	case s.DefaultTimeout < time.Second || s.DefaultTimeout > maxTimeout:
		return modules.Errorf("default_timeout", "%s: want 1s to 168h", s.DefaultTimeout)
	case s.MaxDialogs < 1 || s.MaxDialogs > 1<<24:
		return modules.Errorf("max_dialogs", "%d: want 1 to %d", s.MaxDialogs, 1<<24)
	case len(s.Profiles) > maxProfiles:
		return modules.Errorf("profiles", "%d profiles: at most %d", len(s.Profiles), maxProfiles)
	case s.WriteInterval < 10*time.Millisecond || s.WriteInterval > 10*time.Minute:
		return modules.Errorf("write_interval", "%s: want 10ms to 10m", s.WriteInterval)
	case s.DrainTimeout < 0 || s.DrainTimeout > 24*time.Hour:
		return modules.Errorf("drain_timeout", "%s: want 0 (leave calls up) to 24h", s.DrainTimeout)
	case s.PingInterval != 0 && (s.PingInterval < time.Second || s.PingInterval > time.Hour):
		return modules.Errorf("ping_interval", "%s: want 0 (no pings) or 1s to 1h", s.PingInterval)
	case s.Sharing != SharingNone && s.Sharing != SharingRedis && s.Sharing != "":
		return modules.Errorf("sharing", "%q: want none or redis", s.Sharing)
	case s.TakeoverDelay < 100*time.Millisecond || s.TakeoverDelay > 10*time.Minute:
		return modules.Errorf("takeover_delay", "%s: want 100ms to 10m", s.TakeoverDelay)
	}
	if s.Sharing == SharingRedis && s.Redis.Addr != "" {
		if err := s.Redis.Check("redis."); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, p := range s.Profiles {
		key := fmt.Sprintf("profiles[%d].name", i)
		if !validName(p.Name) {
			return modules.Errorf(key, "%q: want 1 to 64 letters, digits, '-' or '_'", p.Name)
		}
		if seen[p.Name] {
			return modules.Errorf(key, "%q defined twice", p.Name)
		}
		seen[p.Name] = true
		switch {
		case p.WithValue && p.Value != "" && p.Value != "from_user" && p.Value != "ruri_user" && p.Value != "source_ip":
			return modules.Errorf(fmt.Sprintf("profiles[%d].value", i), "%q: want from_user, ruri_user, source_ip or empty for a profile with values", p.Value)
		case !p.WithValue && p.Value != "" && p.Value != "all":
			return modules.Errorf(fmt.Sprintf("profiles[%d].value", i), "%q: want all or empty for a profile without values", p.Value)
		case p.Limit < 0 || p.Limit > 1_000_000:
			return modules.Errorf(fmt.Sprintf("profiles[%d].limit", i), "%d: want 0 (none) to 1000000", p.Limit)
		case p.Limit > 0 && p.Value == "":
			return modules.Errorf(fmt.Sprintf("profiles[%d].limit", i), "a limit needs a value to apply it with (value)")
		}
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func init() {
	modules.Register(modules.Definition{
		Name: "dialog",
		Doc:  "call state: early, confirmed and ended dialogs, timeouts with BYE both ways, profiles for concurrent-call limits (OpenSIPS dialog)",
		// The registrar's Redis settings serve dialog.sharing when
		// dialog.redis.addr is left out.
		Uses:     []string{"registrar"},
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		New:      newModule,
		CLI:      cliCommands,
	})
}

// SlotDialog is the per-transaction value (routing.Ctx.Value) that holds
// the id of the dialog an INVITE created, or an in-dialog request (not a
// BYE) matched: the route's functions on the dialog and the module's
// watcher of the transaction's responses find it there. The
// registrar uses the last two slots, the dispatcher the two before, and
// drouting the one before those.
const SlotDialog = txn.NumValues - 6

// Dialog is the module instance. Its methods are safe for concurrent use.
type Dialog struct {
	h     *modules.Host
	log   *slog.Logger
	clock *shards.Clock
	tbl   *shards.Table[dlg]

	perShard      int
	maxDialogs    int
	persist       bool
	writeInterval time.Duration
	timeout       atomic.Int64 // default_timeout, ms
	nextID        atomic.Uint64

	profiles []*Profile
	byName   map[string]*Profile
	// profileSettings are the settings profiles were made with, which a
	// reload keeps until the next start (keepRestartKeys).
	profileSettings []ProfileSettings

	subs   []func(*Event) // set before Start
	events sync.Pool      // *Event, for emit

	byes byeQueue
	stop chan struct{}
	wg   sync.WaitGroup

	// w writes the confirmed dialogs to the store (dialog.persist); nil
	// without persistence.
	w            *writer
	store        storeMetrics
	drainTimeout atomic.Int64 // dialog.drain_timeout, ms
	pingInterval atomic.Int64 // dialog.ping_interval, ms
	started      bool

	// share writes the confirmed dialogs to Redis and reads other
	// nodes' (dialog.sharing: redis); nil otherwise.
	share   *sharer
	sharing string
	// redis and takeoverDelay are the settings share was made with, kept
	// for a reload to keep them until the next start.
	redis         rediscfg.Settings
	takeoverDelay time.Duration

	// Figures, updated under the dialog's shard lock. remote counts
	// the copies of other nodes' dialogs (not in the others).
	unconfirmed, early, confirmed, remote atomic.Int64
	ended                                 [numReasons]*metrics.Counter
	refused                               *metrics.Counter
	limited                               *metrics.Counter
	mismatched                            *metrics.Counter
	misrouted                             *metrics.Counter
	routeFixed                            *metrics.Counter
	byeSent, byeFailed                    *metrics.Counter
	byeElsewhere                          *metrics.Counter // byeFromElsewhere
	cancels, pings                        *metrics.Counter
	unkeptAnswers                         *metrics.Counter
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Clock == nil {
		return nil, errors.New("dialog: needs the clock")
	}
	d := &Dialog{h: h, log: h.Logger(), clock: h.Clock, stop: make(chan struct{})}
	d.timeout.Store(s.DefaultTimeout.Milliseconds())
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	// Ids start at a random point so that a restarted server does not
	// hand out the ids of the dialogs its predecessor had.
	d.nextID.Store(binary.LittleEndian.Uint64(seed[:]) >> 1)
	tbl, err := shards.New(shards.Config[dlg]{
		Clock:   h.Clock,
		Shards:  h.Shards,
		OnTimer: d.onTimer,
		Reset:   resetDlg,
	})
	if err != nil {
		return nil, err
	}
	d.tbl = tbl
	d.perShard = max((s.MaxDialogs+tbl.NumShards()-1)/tbl.NumShards(), 1)
	d.maxDialogs = s.MaxDialogs
	d.byes.wake = make(chan struct{}, 1)
	d.profiles, d.byName = newProfiles(s.Profiles)
	d.profileSettings = slices.Clone(s.Profiles)
	d.drainTimeout.Store(s.DrainTimeout.Milliseconds())
	d.pingInterval.Store(s.PingInterval.Milliseconds())
	d.persist, d.writeInterval = s.Persist, s.WriteInterval
	d.registerMetrics(h.Metrics)
	d.registerCommands(h)
	d.sharing, d.redis, d.takeoverDelay = s.Sharing, s.Redis, s.TakeoverDelay
	if s.Sharing == SharingRedis {
		rs := s.Redis
		if rs.Addr == "" {
			reg, _ := h.Module("registrar").(interface{ RedisSettings() rediscfg.Settings })
			if reg == nil {
				d.tbl.Close()
				return nil, modules.Errorf("redis.addr", "missing, and no registrar whose redis settings to use")
			}
			rs = reg.RedisSettings()
			if err := rs.Check("redis."); err != nil {
				d.tbl.Close()
				return nil, fmt.Errorf("registrar.redis, used by dialog.sharing: %w", err)
			}
		}
		sh, err := newSharer(d, rs, s.TakeoverDelay, func(reason string) { h.Degraded("dialog.redis", reason) })
		if err != nil {
			d.tbl.Close()
			return nil, fmt.Errorf("dialog.redis: %w", err)
		}
		d.share = sh
		sh.registerMetrics(h.Metrics)
	}
	if s.Persist && h.Store != nil {
		d.w = newWriter(h.Store, s.WriteInterval, tbl.NumShards(), d.perShard, d.store)
		start := time.Now()
		n, err := d.load()
		if err != nil {
			d.tbl.Close()
			return nil, fmt.Errorf("loading the stored dialogs: %w", err)
		}
		d.log.Info("dialog: stored dialogs restored", "dialogs", n, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return d, nil
}

// Start starts the goroutines that send the BYEs of ended dialogs and
// write the dialogs to the store, and the timers of the dialogs restored
// from it.
func (d *Dialog) Start() error {
	d.started = true
	d.wg.Add(2)
	go d.byeLoop()
	go d.pingLoop()
	if d.w != nil {
		d.startRestored()
		d.wg.Add(1)
		go d.writeLoop()
	}
	if d.share != nil {
		d.share.start()
	}
	return nil
}

// Stop ends the goroutines, writing what changed to the store, and
// detaches the table from the clock. Dialogs in progress are not ended:
// with persistence they are restored at the next start; without, their
// calls go on without the proxy counting them.
func (d *Dialog) Stop() {
	select {
	case <-d.stop:
		return
	default:
	}
	if d.share != nil {
		// First: the ends it settles send BYEs and write records.
		d.share.stop()
	}
	close(d.stop)
	d.wg.Wait()
	d.tbl.Close()
	if d.w != nil && !d.started {
		d.flush() // the deletes of rows load could not restore
	}
}

// CheckReload names the keys that take effect at the next start
// (keepRestartKeys); it refuses nothing.
func (d *Dialog) CheckReload(v any) error {
	s := *v.(*Settings)
	return modules.NeedRestart(d.keepRestartKeys(&s)...)
}

// Reload applies a changed default_timeout to dialogs created from now
// on, and a changed drain_timeout and ping_interval; the keys that take
// effect at the next start keep their values in force (keepRestartKeys).
func (d *Dialog) Reload(v any) error {
	s := v.(*Settings)
	d.keepRestartKeys(s)
	d.timeout.Store(s.DefaultTimeout.Milliseconds())
	d.drainTimeout.Store(s.DrainTimeout.Milliseconds())
	d.pingInterval.Store(s.PingInterval.Milliseconds())
	return nil
}

// keepRestartKeys writes into s the value in force of each key that
// takes effect only at the next start and that s changes: max_dialogs,
// persist, write_interval, sharing, profiles, and with sharing on its
// redis settings and takeover_delay (with it off they are not used). It
// returns those keys.
func (d *Dialog) keepRestartKeys(s *Settings) (keys []string) {
	keys = modules.KeepInForce(keys, "max_dialogs", &s.MaxDialogs, d.maxDialogs)
	keys = modules.KeepInForce(keys, "persist", &s.Persist, d.persist)
	keys = modules.KeepInForce(keys, "write_interval", &s.WriteInterval, d.writeInterval)
	if sharingMode(s.Sharing) != sharingMode(d.sharing) {
		s.Sharing = d.sharing
		keys = append(keys, "sharing")
	}
	if d.share != nil {
		keys = modules.KeepInForce(keys, "redis", &s.Redis, d.redis)
		keys = modules.KeepInForce(keys, "takeover_delay", &s.TakeoverDelay, d.takeoverDelay)
	}
	if !sameProfiles(d.profiles, s.Profiles) {
		s.Profiles = slices.Clone(d.profileSettings)
		keys = append(keys, "profiles")
	}
	return keys
}

// sharingMode is dialog.sharing with "" (left empty) read as none.
func sharingMode(s string) string {
	if s == "" {
		return SharingNone
	}
	return s
}

func (d *Dialog) registerMetrics(set *metrics.Set) {
	set.NewGauge("switchboard_dialog_active", func() float64 {
		return float64(d.unconfirmed.Load() + d.early.Load() + d.confirmed.Load())
	})
	set.NewGauge("switchboard_dialog_early", func() float64 { return float64(d.early.Load()) })
	set.NewGauge("switchboard_dialog_remote", func() float64 { return float64(d.remote.Load()) })
	set.NewGauge("switchboard_dialog_confirmed", func() float64 { return float64(d.confirmed.Load()) })
	for r := Reason(1); r < numReasons; r++ {
		d.ended[r] = set.NewCounter(`switchboard_dialog_ended_total{reason="` + r.String() + `"}`)
	}
	d.refused = set.NewCounter("switchboard_dialog_refused_total")
	d.limited = set.NewCounter("switchboard_dialog_profile_limited_total")
	d.mismatched = set.NewCounter("switchboard_dialog_mismatched_total")
	d.misrouted = set.NewCounter("switchboard_dialog_misrouted_total")
	d.routeFixed = set.NewCounter("switchboard_dialog_route_fixed_total")
	d.byeSent = set.NewCounter("switchboard_dialog_byes_sent_total")
	d.byeFailed = set.NewCounter("switchboard_dialog_bye_failures_total")
	d.byeElsewhere = set.NewCounter("switchboard_dialog_byes_from_elsewhere_total")
	d.cancels = set.NewCounter("switchboard_dialog_cancels_sent_total")
	d.pings = set.NewCounter("switchboard_dialog_pings_sent_total")
	d.unkeptAnswers = set.NewCounter("switchboard_dialog_unkept_answers_total")
	d.store = newStoreMetrics(set)
	for _, p := range d.profiles {
		p := p
		set.NewGauge(`switchboard_dialog_profile_size{profile="`+p.name+`"}`, func() float64 { return float64(p.Total()) })
	}
}
