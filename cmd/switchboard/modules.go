package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"switchboard/modules"
	"switchboard/routing"
	"switchboard/routing/provider"
	"switchboard/shards"
	"switchboard/store"
)

// startModules builds every module compiled in (plugins.go) on the store,
// in dependency order, each from its section of the configuration, and
// hands them to the route set through env. They start once the transport
// listens (startedModules).
func (s *server) startModules(env *routing.Env) error {
	cfg := s.cfg
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The configured domains are served: make them known to the store so
	// that subscribers can be added to them.
	for _, d := range cfg.Domains {
		if err := s.store.AddDomain(ctx, d); err != nil && !errors.Is(err, store.ErrDomainExists) {
			s.log.Warn("domain not added to the store; subscribers cannot be added to it", "domain", d, "err", err)
		}
	}

	// The clock of every table: the transaction core's as well (each
	// clock is a ticker waking the process every tick).
	s.clock = shards.NewClock()
	if err := s.clock.Start(shards.DefaultTick); err != nil {
		return err
	}
	set, err := modules.Build(modules.Services{
		Store: s.store, Clock: s.clock, Metrics: s.mgmt.Metrics(), Logger: s.log, Mgmt: s.mgmt,
		DataDir: cfg.Storage.Dir, Shards: cfg.Limits.Shards, Domains: s.domains,
		AllowOutbound: cfg.Outbound.AllowPrefixes(),
	}, cfg.Modules)
	if err != nil {
		return fmt.Errorf("module %w", err)
	}
	s.mods = set
	env.Modules = set.Env()
	env.Modules["provider"] = provider.Options{RevealUnknownUsers: cfg.Provider.RevealUnknownUsers, TrustedGroup: cfg.Provider.TrustedGroup,
		DialplanID: cfg.Provider.DialplanID}
	return nil
}

// startedModules starts the modules' background work, once the transport
// listens.
func (s *server) startedModules() error {
	if err := s.mods.Start(); err != nil {
		return fmt.Errorf("module %w", err)
	}
	return nil
}

// stopModules stops the modules (they write what they queued) and the
// clock. The transport and the core are stopped already; the store is
// closed after.
func (s *server) stopModules() {
	s.mods.Stop()
	if s.clock != nil {
		s.clock.Stop()
	}
}
