package modules_test

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"switchboard/modules"
	_ "switchboard/modules/all"
	"switchboard/modules/dialog"
	"switchboard/modules/fraud"
	"switchboard/shards"
	"switchboard/store"
)

// reloadSet builds the dialog and fraud modules, real ones on a real
// store, with their defaults (fraud's profile 1).
func reloadSet(t *testing.T) (*modules.Set, map[string]any) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	old := map[string]any{"dialog": dialog.DefaultSettings(), "fraud": fraud.DefaultSettings()}
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, old, "dialog", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	return set, old
}

// reload runs a reload of the set to cfg as the server does: the sections
// that differ from old are checked, all of them, and applied only when
// every one passed.
func reload(set *modules.Set, old, cfg map[string]any) (applied []string, errs []error) {
	names, _, err := set.CheckReload(cfg, func(name string) bool {
		return fmt.Sprint(cfg[name]) != fmt.Sprint(old[name])
	})
	if err != nil {
		return nil, []error{err}
	}
	return set.Reload(cfg, names)
}

// TestReloadAllOrNothing: a reload whose file changes fraud.profile (a key
// fraud applies at once) and dialog.persist (one that takes effect only at
// the next start) applies neither, and the error names dialog.persist.
// Before, fraud took its new profile while dialog kept its old settings
// (default_timeout applied, persist refused): the server ran a mix that no
// configuration file describes, and the operator was told the reload
// failed. With only fraud's change, the reload applies it.
func TestReloadAllOrNothing(t *testing.T) {
	set, old := reloadSet(t)
	f := set.Get("fraud").(*fraud.Fraud)

	fs := fraud.DefaultSettings()
	fs.Profile = 7
	ds := dialog.DefaultSettings()
	ds.Persist = false
	cfg := map[string]any{"dialog": ds, "fraud": fs}
	applied, errs := reload(set, old, cfg)
	if len(applied) != 0 {
		t.Errorf("a reload with dialog.persist changed applied %v, want nothing", applied)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "dialog.persist") {
		t.Errorf("errors %v, want one naming dialog.persist", errs)
	}
	if f.Profile() != 1 {
		t.Errorf("fraud.profile is %d after the refused reload, want the old 1", f.Profile())
	}

	cfg["dialog"] = dialog.DefaultSettings()
	applied, errs = reload(set, old, cfg)
	if len(errs) != 0 || strings.Join(applied, ",") != "fraud" {
		t.Errorf("a valid reload: applied %v, errors %v; want fraud applied", applied, errs)
	}
	if f.Profile() != 7 {
		t.Errorf("fraud.profile is %d after the reload, want 7", f.Profile())
	}
}

// TestEveryReloaderChecks: every module compiled in whose instance has a
// Reload method implements modules.Reloader, CheckReload with it. One
// without CheckReload would not be a Reloader: its changed section would
// silently wait for a restart.
func TestEveryReloaderChecks(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000),
		DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	reloaders := 0
	for name, inst := range set.Env() {
		_, isReloader := inst.(modules.Reloader)
		if _, hasReload := reflect.TypeOf(inst).MethodByName("Reload"); hasReload && !isReloader {
			t.Errorf("%s has Reload but is no modules.Reloader (CheckReload missing?)", name)
		}
		if isReloader {
			reloaders++
		}
	}
	if reloaders < 20 {
		t.Errorf("%d modules are Reloaders, want the 20 of modules/all at least", reloaders)
	}
}
