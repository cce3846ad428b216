package modules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/txn"
)

// Services are what the server shares with every module.
type Services struct {
	Store   *store.Store
	Clock   *shards.Clock
	Metrics *metrics.Set
	Logger  *slog.Logger
	// Mgmt receives the modules' management commands; nil registers none
	// (tests, check-config).
	Mgmt    *mgmt.Server
	DataDir string
	Shards  int
	Domains *routing.Domains
	// Originator is handed the transaction core by the server once it
	// exists (before Start); nil: one without a core (tests, check-config).
	Originator *Originator
	// Events is the event interface the modules raise events on; nil: a
	// new one on Clock and Metrics.
	Events *Events
	// AllowOutbound is outbound.allow: Originator.Allowed answers from it
	// until the core is handed over (in New).
	AllowOutbound []netip.Prefix
}

// Set is the modules built for one server, in dependency order.
type Set struct {
	defs  []Definition
	inst  []Instance
	hosts []*Host
	admit []func(netip.Addr) bool
	start int         // instances started
	orig  *Originator // the hosts' Originator, given the core by SetCore
}

// Build builds every registered module (or only those named in only, and
// what they need) in dependency order. settings holds each module's
// checked settings by name; a module without an entry gets its defaults.
// On error the modules built so far are stopped.
func Build(svc Services, settings map[string]any, only ...string) (*Set, error) {
	defs, err := Ordered()
	if err != nil {
		return nil, err
	}
	if len(only) > 0 {
		defs = withDeps(defs, only)
	}
	if svc.Logger == nil {
		svc.Logger = slog.Default()
	}
	if svc.Metrics == nil {
		svc.Metrics = metrics.NewSet()
	}
	if svc.Originator == nil {
		svc.Originator = &Originator{allow: svc.AllowOutbound}
	}
	if svc.Events == nil {
		svc.Events = NewEvents(svc.Clock, svc.Metrics)
	}
	s := &Set{orig: svc.Originator}
	built := map[string]Instance{}
	commands := map[string]string{}
	for _, d := range defs {
		cfg, ok := settings[d.Name]
		if !ok && d.Settings != nil {
			cfg = d.Settings()
			if d.Check != nil {
				if err := d.Check(cfg); err != nil {
					s.Stop()
					return nil, fmt.Errorf("%s: defaults do not pass Check: %w", d.Name, err)
				}
			}
		}
		h := &Host{
			Store: svc.Store, Clock: svc.Clock, Metrics: svc.Metrics, DataDir: svc.DataDir,
			Shards: svc.Shards, Domains: svc.Domains, Originator: svc.Originator, Events: svc.Events,
			name: d.Name, logger: svc.Logger.With("module", d.Name), mgmt: svc.Mgmt,
			built: built, commands: commands, after: append(append([]string(nil), d.After...), d.Uses...), admit: &s.admit,
		}
		inst, err := d.New(h, cfg)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		if inst == nil {
			s.Stop()
			return nil, errors.New(d.Name + ": New returned no instance")
		}
		built[d.Name] = inst
		s.defs, s.inst, s.hosts = append(s.defs, d), append(s.inst, inst), append(s.hosts, h)
	}
	return s, nil
}

// withDeps keeps the definitions named in only and those they need, in
// the order of defs.
func withDeps(defs []Definition, only []string) []Definition {
	byName := map[string]Definition{}
	for _, d := range defs {
		byName[d.Name] = d
	}
	want := map[string]bool{}
	var mark func(n string)
	mark = func(n string) {
		if want[n] {
			return
		}
		want[n] = true
		for _, a := range byName[n].After {
			mark(a)
		}
	}
	for _, n := range only {
		mark(n)
	}
	var out []Definition
	for _, d := range defs {
		if want[d.Name] {
			out = append(out, d)
		}
	}
	return out
}

// Env returns the modules by name, for routing.Env.Modules.
func (s *Set) Env() map[string]any {
	m := make(map[string]any, len(s.inst))
	for i, d := range s.defs {
		m[d.Name] = s.inst[i]
	}
	return m
}

// Get returns the module built under name, or nil.
func (s *Set) Get(name string) Instance {
	for i, d := range s.defs {
		if d.Name == name {
			return s.inst[i]
		}
	}
	return nil
}

// Admit returns the transport's source filter: the conjunction of every
// module's AdmitSources filter, nil when no module gave one (the
// transport then checks nothing).
func (s *Set) Admit() func(netip.Addr) bool {
	switch len(s.admit) {
	case 0:
		return nil
	case 1:
		return s.admit[0]
	}
	fs := append([]func(netip.Addr) bool(nil), s.admit...)
	return func(a netip.Addr) bool {
		for _, f := range fs {
			if !f(a) {
				return false
			}
		}
		return true
	}
}

// SetCore hands the transaction core to the modules' Originator
// (Host.Originator), once it is built and before Start.
func (s *Set) SetCore(c *txn.Core) { s.orig.SetCore(c) }

// Start starts the modules in order; on error the ones started are
// stopped.
func (s *Set) Start() error {
	for s.start < len(s.inst) {
		if err := s.inst[s.start].Start(); err != nil {
			name := s.defs[s.start].Name
			s.Stop()
			return fmt.Errorf("%s: %w", name, err)
		}
		s.start++
	}
	return nil
}

// Stop stops every module built, in reverse order. Safe to call twice.
func (s *Set) Stop() {
	if s == nil {
		return
	}
	for i := len(s.inst) - 1; i >= 0; i-- {
		s.inst[i].Stop()
	}
	s.inst, s.defs, s.hosts, s.start = nil, nil, nil, 0
}

// Drain calls every module that implements Drainer, in the order they
// were started, and returns when they are done or ctx ends.
func (s *Set) Drain(ctx context.Context) {
	for _, inst := range s.inst {
		if dr, ok := inst.(Drainer); ok && ctx.Err() == nil {
			dr.Drain(ctx)
		}
	}
}

// Reload hands changed settings to the modules that implement Reloader.
// changed reports, for each module whose settings differ, whether it took
// them (true) or needs a restart (false); errors are logged by the caller.
func (s *Set) Reload(settings map[string]any, differ func(name string) bool) (applied, restart []string, errs []error) {
	for i, d := range s.defs {
		if !differ(d.Name) {
			continue
		}
		r, ok := s.inst[i].(Reloader)
		if !ok {
			restart = append(restart, d.Name)
			continue
		}
		if err := r.Reload(settings[d.Name]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			continue
		}
		applied = append(applied, d.Name)
	}
	return applied, restart, errs
}

// OutboundChanged tells the modules that implement OutboundWatcher that
// outbound.allow changed (the core applies the new list already).
func (s *Set) OutboundChanged() (errs []error) {
	for i, d := range s.defs {
		if w, ok := s.inst[i].(OutboundWatcher); ok {
			if err := w.OutboundChanged(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			}
		}
	}
	return errs
}

// StoreOptions applies every module's StoreOptions hook to o, with the
// module's settings from settings (defaults when missing).
func StoreOptions(settings map[string]any, o *store.Options) {
	defs, _ := Ordered()
	for _, d := range defs {
		if d.StoreOptions == nil {
			continue
		}
		st, ok := settings[d.Name]
		if !ok && d.Settings != nil {
			st = d.Settings()
		}
		d.StoreOptions(st, o)
	}
}
