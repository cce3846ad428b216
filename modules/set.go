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

// CheckReload is the first step of a reload: every module whose section
// differs from the one in force (differ) and that implements Reloader is
// asked whether it can take the new settings (CheckReload), changing
// nothing. err joins every refusal, each a *KeyError whose key is the
// module's section and key ("dialplan.max_rules"): when it is not nil the
// reload must apply nothing. reload names the modules to hand their
// settings to (Reload) once the server's own keys passed too. restart
// lists what keeps its value in force until the next start, as the
// server's own restart keys: the keys a module named with NeedRestart
// ("dialog.persist"; the module applies its other keys), and the sections
// of modules that take no settings while running (no Reloader).
func (s *Set) CheckReload(settings map[string]any, differ func(name string) bool) (reload, restart []string, err error) {
	var errs []error
	for i, d := range s.defs {
		if !differ(d.Name) {
			continue
		}
		r, ok := s.inst[i].(Reloader)
		if !ok {
			restart = append(restart, d.Name)
			continue
		}
		refused := false
		if err := r.CheckReload(settings[d.Name]); err != nil {
			for _, e := range inSection(d.Name, err) {
				if ke, ok := e.(*KeyError); ok && ke.Restart {
					restart = append(restart, ke.Key)
					continue
				}
				errs = append(errs, e)
				refused = true
			}
		}
		if !refused {
			reload = append(reload, d.Name)
		}
	}
	if len(errs) > 0 {
		return nil, restart, errors.Join(errs...)
	}
	return reload, restart, nil
}

// Reload hands the settings CheckReload passed to the modules named in
// reload, in the set's (dependency) order. A module's Reload fails only on
// what its check could not know (a socket that cannot be opened, a table
// grown past its limit meanwhile): that module keeps all its old
// settings, its error is returned, and the modules after it are still
// applied, so that as much of the file as can be is in force. applied
// names those that took settings of theirs: a module whose section still
// differs from the one in force (differ) once Reload wrote back the
// values it keeps until a restart, so that one whose only change was such
// a key is not listed.
func (s *Set) Reload(settings map[string]any, reload []string, differ func(name string) bool) (applied []string, errs []error) {
	want := make(map[string]bool, len(reload))
	for _, n := range reload {
		want[n] = true
	}
	for i, d := range s.defs {
		r, ok := s.inst[i].(Reloader)
		if !ok || !want[d.Name] {
			continue
		}
		if err := r.Reload(settings[d.Name]); err != nil {
			errs = append(errs, inSection(d.Name, err)...)
			continue
		}
		if differ(d.Name) {
			applied = append(applied, d.Name)
		}
	}
	return applied, errs
}

// inSection puts the module's name in front of each of err's keys (err
// may join several): "persist" becomes "dialog.persist".
func inSection(name string, err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, inSection(name, e)...)
		}
		return out
	}
	if ke, ok := err.(*KeyError); ok {
		key := name
		if ke.Key != "" {
			key += "." + ke.Key
		}
		return []error{&KeyError{Key: key, Msg: ke.Msg, Restart: ke.Restart}}
	}
	return []error{fmt.Errorf("%s: %w", name, err)}
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
