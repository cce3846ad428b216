package registrar

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// Settings are the registrar's configuration section (registrar: in the
// file; docs/configuration.md).
type Settings struct {
	// DefaultExpires applies to a contact without expires parameter or
	// Expires header; MinExpires is the shortest registration accepted
	// (shorter gets 423 Interval Too Brief); MaxExpires caps longer ones.
	DefaultExpires time.Duration `yaml:"default_expires"`
	MinExpires     time.Duration `yaml:"min_expires"`
	MaxExpires     time.Duration `yaml:"max_expires"`
	// MaxContacts bounds the bindings of one address-of-record.
	MaxContacts int `yaml:"max_contacts"`
	// MaxMemory caps the memory of the bindings, in MiB.
	MaxMemory int `yaml:"max_memory"`
	// NATTests name the tests that mark a contact of an authenticated
	// REGISTER as behind NAT (reached at the REGISTER's source), like
	// nathelper's nat_uac_test flags. Empty: none.
	NATTests []string `yaml:"nat_tests"`
	// Persist is when a binding change is written to the store:
	// write-back (after the 200, from a bounded queue) or write-through
	// (the 200 waits for the commit).
	Persist string `yaml:"persist"`
	// WriteInterval is how long the store's writer gathers binding changes
	// after the first of a batch before committing them in one transaction
	// (store.WriterOptions.Linger); 0 commits what is queued at once.
	WriteInterval time.Duration `yaml:"write_interval"`
	// Sharing is none (bindings in this node only) or redis (bindings
	// shared by every node through Redis; share.go).
	Sharing string `yaml:"sharing"`
	// Redis is where the bindings are shared (registrar.sharing: redis).
	Redis RedisSettings `yaml:"redis"`
	// FlowTimer is the Flow-Timer of the 200 to a REGISTER done with RFC
	// 5626 outbound over TCP or TLS: the phone's CRLF keep-alive interval
	// (0: no header; the phone then keeps its own, 95 to 120 s).
	FlowTimer time.Duration `yaml:"flow_timer"`
}

// DefaultSettings are the registrar's defaults.
func DefaultSettings() *Settings {
	return &Settings{
		DefaultExpires: time.Hour,
		MinExpires:     time.Minute,
		MaxExpires:     2 * time.Hour,
		MaxContacts:    10,
		MaxMemory:      1024,
		NATTests:       DefaultNATTests.Names(),
		Persist:        "write-back",
		WriteInterval:  10 * time.Millisecond,
		Sharing:        SharingNone,
		Redis:          defaultRedisSettings(),
		FlowTimer:      120 * time.Second,
	}
}

func init() {
	modules.Register(modules.Definition{
		Name:     "registrar",
		Doc:      "location service: REGISTER (save), lookup, serial forking by q",
		Settings: func() any { return DefaultSettings() },
		Check:    func(s any) error { return s.(*Settings).check() },
		StoreOptions: func(s any, o *store.Options) {
			if s.(*Settings).Persist == "write-through" {
				o.SyncCommits = true
			}
		},
		New: newModule,
	})
}

func (r *Settings) check() error {
	whole := func(d time.Duration) bool { return d%time.Second == 0 }
	if r.MinExpires < time.Second || !whole(r.MinExpires) {
		return modules.Errorf("min_expires", "must be whole seconds, at least 1s, not %s", r.MinExpires)
	}
	if r.MaxExpires < r.MinExpires || !whole(r.MaxExpires) || r.MaxExpires > 365*24*time.Hour {
		return modules.Errorf("max_expires", "must be whole seconds between registrar.min_expires (%s) and 8760h, not %s", r.MinExpires, r.MaxExpires)
	}
	if r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires || !whole(r.DefaultExpires) {
		return modules.Errorf("default_expires", "must be whole seconds between registrar.min_expires and registrar.max_expires, not %s", r.DefaultExpires)
	}
	if r.MaxContacts < 1 || r.MaxContacts > 1000 {
		return modules.Errorf("max_contacts", "must be between 1 and 1000, not %d", r.MaxContacts)
	}
	if r.MaxMemory < 1 || r.MaxMemory > 1<<20 {
		return modules.Errorf("max_memory", "must be between 1 and 1048576 (MiB), not %d", r.MaxMemory)
	}
	seen := map[string]bool{}
	for i, n := range r.NATTests {
		key := fmt.Sprintf("nat_tests[%d]", i)
		if _, err := ParseNATTests([]string{n}); err != nil {
			return modules.Errorf(key, "unknown NAT test %q; one of %s", n, strings.Join(NATTestNames(), ", "))
		}
		if seen[n] {
			return modules.Errorf(key, "%s is listed twice", n)
		}
		seen[n] = true
	}
	if r.WriteInterval < 0 || r.WriteInterval > 10*time.Second {
		return modules.Errorf("write_interval", "must be between 0s and 10s, not %s", r.WriteInterval)
	}
	if r.FlowTimer < 0 || r.FlowTimer > time.Hour || !whole(r.FlowTimer) || r.FlowTimer > 0 && r.FlowTimer < 10*time.Second {
		return modules.Errorf("flow_timer", "must be 0 or whole seconds between 10s and 1h, not %s", r.FlowTimer)
	}
	if _, err := ParsePersist(r.Persist); err != nil || r.Persist == "" {
		return modules.Errorf("persist", "must be write-back or write-through, not %q", r.Persist)
	}
	return r.checkSharing()
}

// Start does nothing: expiry runs on the shared clock's timer wheels.
func (r *Registrar) Start() error {
	if r.share != nil {
		r.share.start()
	}
	return nil
}

// Stop ends the expiry timers and, when the module opened it, writes the
// queued location changes and closes the writer.
func (r *Registrar) Stop() {
	if r.share != nil {
		r.share.stop()
	}
	r.Close()
	if r.ownWriter != nil {
		if err := r.ownWriter.Close(); err != nil {
			r.log.Error("registrar: location changes lost at shutdown", "err", err)
		}
	}
}

// newModule builds the registrar on the server's store: a location writer,
// the bindings loaded from the store, its management commands and metrics.
func newModule(h *modules.Host, settings any) (modules.Instance, error) {
	st := settings.(*Settings)
	natTests, _ := ParseNATTests(st.NATTests)
	persist, _ := ParsePersist(st.Persist)
	log := h.Logger()
	var writer *store.LocationWriter
	if h.Store != nil {
		writer = h.Store.NewLocationWriter(writerOptions(st, log))
	}
	cfg := Config{
		Clock:          h.Clock,
		DefaultExpires: st.DefaultExpires,
		MinExpires:     st.MinExpires,
		MaxExpires:     st.MaxExpires,
		MaxContacts:    st.MaxContacts,
		MaxBytes:       int64(st.MaxMemory) << 20,
		Shards:         h.Shards,
		NATTests:       natTests,
		Persist:        persist,
		Writer:         writer,
		Logger:         log,
		FlowTimer:      st.FlowTimer,
		Events:         h.Events,
	}
	r, err := New(cfg)
	if err != nil {
		if writer != nil {
			writer.Close()
		}
		return nil, err
	}
	r.ownWriter = writer
	if h.Store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := r.Load(ctx, h.Store)
		if err != nil {
			r.Stop()
			return nil, fmt.Errorf("loading the stored bindings: %w", err)
		}
		log.Info("registrar: bindings loaded", "bindings", n)
	}
	r.redis = st.Redis
	if st.Sharing == SharingRedis {
		sh, err := newSharer(r, st.Redis, log, h.Warn, func(reason string) { h.Degraded("registrar.redis", reason) })
		if err != nil {
			r.Stop()
			return nil, fmt.Errorf("registrar.redis: %w", err)
		}
		r.share = sh
		sh.load()
		n := r.Stats()
		log.Info("registrar: bindings read from Redis", "aors", n.AORs, "bindings", n.Bindings, "redis_up", sh.up.Load())
		r.registerShareMetrics(h)
	}
	r.registerMetrics(h)
	r.registerCommands(h)
	return r, nil
}

// writerOptions configure the module's location writer: registrar.write_interval
// is how long it gathers changes before a commit.
func writerOptions(st *Settings, log *slog.Logger) store.WriterOptions {
	linger := st.WriteInterval
	if linger == 0 {
		linger = -1 // the writer's "do not wait"; its zero means its default
	}
	return store.WriterOptions{
		Linger:          linger,
		CleanupInterval: time.Minute,
		OnError: func(err error, ops int) {
			log.Error("registrar: location changes not stored (they are rewritten at the next refresh)", "ops", ops, "err", err, "persist", st.Persist)
		},
	}
}

func (r *Registrar) registerMetrics(h *modules.Host) {
	var mu sync.Mutex
	var last Stats
	var lastAt time.Time
	// Stats walks every shard: take it at most once per scrape.
	stats := func() Stats {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(lastAt) > 500*time.Millisecond {
			last, lastAt = r.Stats(), time.Now()
		}
		return last
	}
	set := h.Metrics
	if w := r.ownWriter; w != nil {
		// Binding changes the store could not commit after the writer's
		// retries (a database unreachable or locked); in write-back they
		// stay in memory and are stored again at the next refresh.
		set.NewGauge("switchboard_registrar_store_write_failures_total", func() float64 { return float64(w.Stats().Failed) })
	}
	set.NewGauge("switchboard_registrar_aors", func() float64 { return float64(stats().AORs) })
	set.NewGauge("switchboard_registrar_bindings", func() float64 { return float64(stats().Bindings) })
	for name, f := range map[string]func(Stats) uint64{
		"saved": func(s Stats) uint64 { return s.Saved }, "removed": func(s Stats) uint64 { return s.Removed },
		"expired": func(s Stats) uint64 { return s.Expired }, "refused": func(s Stats) uint64 { return s.Refused },
		"lookups": func(s Stats) uint64 { return s.Lookups }, "found": func(s Stats) uint64 { return s.Found },
		"write_drops":   func(s Stats) uint64 { return s.WriteDrops },
		"store_busy":    func(s Stats) uint64 { return s.StoreBusy },
		"store_errors":  func(s Stats) uint64 { return s.StoreErrors },
		"unreachable":   func(s Stats) uint64 { return s.Unreachable },
		"conn_closed":   func(s Stats) uint64 { return s.ConnClosed },
		"loop_contacts": func(s Stats) uint64 { return s.LoopContacts },
		"spirals":       func(s Stats) uint64 { return s.Spirals },
	} {
		set.NewGauge(`switchboard_registrar_`+name+`_total`, func() float64 { return float64(f(stats())) })
	}
}

// registerCommands adds the management commands (OpenSIPS ul_dump,
// ul_rm, ul_rm_contact).
func (r *Registrar) registerCommands(h *modules.Host) {
	type aorArgs struct {
		AOR     string `json:"aor"`
		Contact string `json:"contact"`
	}
	args := func(raw json.RawMessage) (aorArgs, error) {
		var a aorArgs
		err := mgmt.DecodeArgs(raw, &a)
		return a, err
	}
	h.Command("registrations.list", mgmt.Command{ReadOnly: true,
		Help: `registered contacts: {"aor":"alice@example.com"} for one AOR, none for all`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			a, err := args(raw)
			if err != nil {
				return nil, err
			}
			l := r.List(a.AOR)
			if l == nil {
				l = []Info{}
			}
			return l, nil
		}})
	h.Command("registrations.delete", mgmt.Command{
		Help: `remove a binding: {"aor":"alice@example.com","contact":"sip:alice@192.0.2.1:5060"}; without contact every binding of the AOR`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			a, err := args(raw)
			if err != nil {
				return nil, err
			}
			if a.AOR == "" {
				return nil, &mgmt.ArgError{Msg: `"aor" is required`}
			}
			n, err := r.Delete(a.AOR, a.Contact)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, fmt.Errorf("no such binding of %s: %w", a.AOR, mgmt.ErrNotFound)
			}
			return map[string]int{"removed": n}, nil
		}})
	h.Command("registrations.flush", mgmt.Command{
		Help: `remove every binding of every AOR (or of {"aor":...})`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			a, err := args(raw)
			if err != nil {
				return nil, err
			}
			var n int
			if a.AOR != "" {
				n, err = r.Delete(a.AOR, "")
			} else {
				n, err = r.Flush()
			}
			if err != nil {
				return nil, err
			}
			return map[string]int{"removed": n}, nil
		}})
}

// RedisSettings returns registrar.redis as configured: the dialog module
// uses them for dialog.sharing when dialog.redis.addr is left out.
func (r *Registrar) RedisSettings() RedisSettings { return r.redis }

// registerShareMetrics adds the Redis sharing's metrics.
func (r *Registrar) registerShareMetrics(h *modules.Host) {
	sh := r.share
	set := h.Metrics
	set.NewGauge("switchboard_registrar_redis_up", func() float64 {
		if sh.up.Load() {
			return 1
		}
		return 0
	})
	set.NewGauge("switchboard_registrar_redis_pending_aors", func() float64 { return float64(sh.pending()) })
	for name, c := range map[string]*atomic.Uint64{
		"ops": &sh.ops, "errors": &sh.errs, "outages": &sh.outages,
		"published": &sh.published, "applied": &sh.applied, "resyncs": &sh.resyncs,
	} {
		set.NewGauge("switchboard_registrar_redis_"+name+"_total", func() float64 { return float64(c.Load()) })
	}
}
