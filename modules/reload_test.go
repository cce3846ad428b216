package modules_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	_ "switchboard/modules/all"
	"switchboard/modules/dialog"
	"switchboard/modules/dialplan"
	"switchboard/modules/fraud"
	"switchboard/shards"
	"switchboard/store"
)

// reloadSet builds the dialog, fraud and dialplan modules, real ones on a
// real store, with their defaults (fraud's profile 1) and three dialplan
// rules in the store.
func reloadSet(t *testing.T) (*modules.Set, map[string]any) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, p := range []string{"1", "2", "3"} {
		if _, err := st.AddDialplanRule(context.Background(), store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: p, ReplExp: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	old := map[string]any{"dialog": dialog.DefaultSettings(), "fraud": fraud.DefaultSettings(), "dialplan": dialplan.DefaultSettings()}
	set, err := modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(1_700_000_000_000),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, old, "dialog", "fraud", "dialplan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	return set, old
}

// reload runs a reload of the set to cfg as the server does: the sections
// that differ from old are checked, all of them, and applied only when
// none was refused; the sections applied become old's.
func reload(set *modules.Set, old, cfg map[string]any) (applied, restart []string, errs []error) {
	differ := func(name string) bool { return fmt.Sprint(cfg[name]) != fmt.Sprint(old[name]) }
	names, restart, err := set.CheckReload(cfg, differ)
	if err != nil {
		return nil, nil, []error{err}
	}
	applied, errs = set.Reload(cfg, names, differ)
	for _, name := range applied {
		old[name] = cfg[name]
	}
	return applied, restart, errs
}

// TestReloadAllOrNothing: a reload whose file changes fraud.profile (a key
// fraud applies at once) and lowers dialplan.max_rules below the three
// rules of the table in the store (a refusal) applies neither, and the
// error names dialplan.max_rules. Before e7a71a4, fraud took its new
// profile while dialplan kept its old settings: the server ran a mix that
// no configuration file describes, and the operator was told the reload
// failed. With only fraud's change, the reload applies it.
func TestReloadAllOrNothing(t *testing.T) {
	set, old := reloadSet(t)
	f := set.Get("fraud").(*fraud.Fraud)

	fs := fraud.DefaultSettings()
	fs.Profile = 7
	ps := dialplan.DefaultSettings()
	ps.MaxRules = 2
	cfg := map[string]any{"dialog": dialog.DefaultSettings(), "fraud": fs, "dialplan": ps}
	applied, restart, errs := reload(set, old, cfg)
	if len(applied) != 0 || len(restart) != 0 {
		t.Errorf("a reload with dialplan.max_rules refused applied %v, need_restart %v; want nothing", applied, restart)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "dialplan.max_rules") {
		t.Errorf("errors %v, want one naming dialplan.max_rules", errs)
	}
	if f.Profile() != 1 {
		t.Errorf("fraud.profile is %d after the refused reload, want the old 1", f.Profile())
	}

	cfg["dialplan"] = dialplan.DefaultSettings()
	applied, restart, errs = reload(set, old, cfg)
	if len(errs) != 0 || strings.Join(applied, ",") != "fraud" || len(restart) != 0 {
		t.Errorf("a valid reload: applied %v, need_restart %v, errors %v; want fraud applied", applied, restart, errs)
	}
	if f.Profile() != 7 {
		t.Errorf("fraud.profile is %d after the reload, want 7", f.Profile())
	}
}

// TestReloadRestartKeyListed: a reload whose file changes fraud.profile
// and dialog.persist (a key that takes effect only at the next start, as
// the server's own listen) applies fraud.profile, keeps persist on, and
// lists dialog.persist as needing a restart; the dialog section kept as
// in force says persist: true, so the same file reloaded again names it
// again and applies nothing. Before, the restart key refused the whole
// reload, fraud.profile included, while a changed listen did not.
func TestReloadRestartKeyListed(t *testing.T) {
	set, old := reloadSet(t)
	f := set.Get("fraud").(*fraud.Fraud)

	fs := fraud.DefaultSettings()
	fs.Profile = 7
	ds := dialog.DefaultSettings()
	ds.Persist = false
	ds.DefaultTimeout = time.Hour
	cfg := map[string]any{"dialog": ds, "fraud": fs, "dialplan": dialplan.DefaultSettings()}
	applied, restart, errs := reload(set, old, cfg)
	if len(errs) != 0 {
		t.Fatalf("a reload with dialog.persist changed failed: %v", errs)
	}
	if got := strings.Join(applied, ","); got != "dialog,fraud" {
		t.Errorf("applied %q, want dialog (default_timeout) and fraud", got)
	}
	if got := strings.Join(restart, ","); got != "dialog.persist" {
		t.Errorf("need_restart %q, want dialog.persist", got)
	}
	if f.Profile() != 7 {
		t.Errorf("fraud.profile is %d after the reload, want 7", f.Profile())
	}
	if !old["dialog"].(*dialog.Settings).Persist || old["dialog"].(*dialog.Settings).DefaultTimeout != time.Hour {
		t.Errorf("the dialog section in force is %+v, want persist kept on and default_timeout 1h", old["dialog"])
	}

	ds = dialog.DefaultSettings()
	ds.Persist = false
	ds.DefaultTimeout = time.Hour
	cfg["dialog"] = ds
	applied, restart, errs = reload(set, old, cfg)
	if len(errs) != 0 || len(applied) != 0 || strings.Join(restart, ",") != "dialog.persist" {
		t.Errorf("the same file again: applied %v, need_restart %v, errors %v; want dialog.persist listed, nothing applied", applied, restart, errs)
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

// TestKeepInForce: a changed restart-only key gets its value in force
// back and is named; an unchanged one is left alone and not named.
func TestKeepInForce(t *testing.T) {
	persist, interval := false, 2
	keys := modules.KeepInForce(nil, "persist", &persist, true)
	keys = modules.KeepInForce(keys, "write_interval", &interval, 2)
	if !persist || interval != 2 || len(keys) != 1 || keys[0] != "persist" {
		t.Fatalf("persist %v, interval %d, keys %v", persist, interval, keys)
	}
}
