package dialplan

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

var ctx = context.Background()

type env struct {
	t   testing.TB
	dir string
	st  *store.Store
	set *metrics.Set
	d   *Dialplan
	api *mgmt.Client
}

type envOptions struct {
	settings *Settings
	mgmt     bool
	start    bool // run the poller
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, dir: dir, st: st, set: metrics.NewSet()}
	s := o.settings
	if s == nil {
		s = DefaultSettings()
	}
	svc := modules.Services{Store: st, Metrics: e.set, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if o.mgmt {
		srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "test-token"})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(context.Background()) })
		svc.Mgmt = srv
		e.api = &mgmt.Client{Addr: srv.Addr(), Token: "test-token"}
	}
	set, err := modules.Build(svc, map[string]any{"dialplan": s}, "dialplan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	if o.start {
		if err := set.Start(); err != nil {
			t.Fatal(err)
		}
	}
	e.d = set.Get("dialplan").(*Dialplan)
	return e
}

// other opens a second handle on the store, as the CLI does while the
// server runs.
func (e *env) other() *store.Store {
	st, err := store.Open(e.dir, store.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) translate(id int, in string) (string, bool) {
	res, _, ok := e.d.Translate(id, []byte(in), nil)
	return string(res), ok
}

func (e *env) metric(name string) float64 {
	var b strings.Builder
	e.set.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// TestReloadWithoutRestart: a rule added from another handle (the CLI) is
// in use within the poll interval, and gone after its deletion.
func TestReloadWithoutRestart(t *testing.T) {
	const poll = 50 * time.Millisecond
	s := DefaultSettings()
	s.PollInterval = poll
	e := newEnv(t, envOptions{settings: s, start: true})
	if _, ok := e.translate(1, "0612345678"); ok {
		t.Fatal("a rule before any was added")
	}
	cli := e.other()
	r, err := cli.AddDialplanRule(ctx, store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: `+33\2`})
	if err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	for {
		if out, ok := e.translate(1, "0612345678"); ok {
			if out != "+33612345678" {
				t.Fatalf("translated to %q", out)
			}
			break
		}
		if time.Since(added) > 20*poll {
			t.Fatalf("the rule is not in use %s after it was added", time.Since(added))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("in use %s after the add (poll interval %s)", time.Since(added), poll)
	if e.metric("switchboard_dialplan_rules") != 1 || e.metric("switchboard_dialplan_translations_total") != 1 {
		t.Errorf("metrics: rules %v, translations %v", e.metric("switchboard_dialplan_rules"), e.metric("switchboard_dialplan_translations_total"))
	}
	if _, err := cli.DeleteDialplanRule(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for {
		if _, ok := e.translate(1, "0612345678"); !ok {
			break
		}
		if time.Since(deleted) > 20*poll {
			t.Fatal("the rule is still in use after its deletion")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReloadIsAtomic: while whole tables are replaced under them,
// translations see one generation or the next, never a table in part. Each
// generation has 2,000 rules; its long prefix (priority 0) beats its short
// one (priority 1), so a translation by the short rule, or by none, would
// be a half-loaded table.
func TestReloadIsAtomic(t *testing.T) {
	e := newEnv(t, envOptions{})
	gen := func(g int) []store.DialplanRule {
		rs := []store.DialplanRule{
			{DPID: 1, Priority: 1, MatchOp: "prefix", MatchExp: "1", ReplExp: fmt.Sprintf("g%d-short", g)},
		}
		for i := 0; i < 1998; i++ {
			rs = append(rs, store.DialplanRule{DPID: 1, MatchOp: "exact", MatchExp: fmt.Sprintf("9%06d", i), ReplExp: fmt.Sprintf("g%d", g)})
		}
		return append(rs, store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "12345", ReplExp: fmt.Sprintf("g%d-long", g)})
	}
	if err := e.st.AddDialplanRules(ctx, gen(0), true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Value
	var n atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 32)
			for !stop.Load() {
				res, _, ok := e.d.Translate(1, []byte("123456789"), buf[:0])
				if !ok || !strings.HasSuffix(string(res), "-long") {
					bad.Store(fmt.Sprintf("%q, %v", res, ok))
					return
				}
				n.Add(1)
			}
		}()
	}
	for g := 1; g <= 5; g++ {
		if err := e.st.AddDialplanRules(ctx, gen(g), true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.d.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a translation saw a table in part: %v", v)
	}
	if out, _ := e.translate(1, "123456789"); out != "g5-long" {
		t.Fatalf("after the last load: %q", out)
	}
	t.Logf("%d translations during 5 loads of 2,000 rules", n.Load())
}

// TestMaxRules: a table over max_rules is not loaded: at start the module
// fails naming the key, at run time the rules in use stay; a SIGHUP that
// raises the limit loads the table, one that lowers it under the table
// is refused and changes nothing.
func TestMaxRules(t *testing.T) {
	s := DefaultSettings()
	s.MaxRules = 2
	e := newEnv(t, envOptions{settings: s})
	for _, p := range []string{"1", "2"} {
		if _, err := e.st.AddDialplanRule(ctx, store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: p, ReplExp: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AddDialplanRule(ctx, store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "3", ReplExp: "x"}); err != nil {
		t.Fatal(err)
	}
	_, err := e.d.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "dialplan.max_rules (2)") {
		t.Fatalf("load over the limit: %v", err)
	}
	if _, ok := e.translate(1, "2"); !ok {
		t.Fatal("the rules in use were dropped")
	}
	if _, ok := e.translate(1, "3"); ok {
		t.Fatal("the table over the limit was loaded")
	}
	if e.metric("switchboard_dialplan_reload_errors_total") != 1 {
		t.Errorf("reload errors = %v", e.metric("switchboard_dialplan_reload_errors_total"))
	}
	if err := e.d.Reload(&Settings{PollInterval: time.Second, MaxRules: 1}); err == nil {
		t.Fatal("lowering max_rules under the table was taken")
	}
	if err := e.d.Reload(&Settings{PollInterval: time.Second, MaxRules: 3}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.translate(1, "3"); !ok {
		t.Fatal("raising max_rules did not load the table")
	}

	// At start: the server does not start.
	st, err := store.Open(e.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = modules.Build(modules.Services{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		map[string]any{"dialplan": &Settings{PollInterval: time.Second, MaxRules: 2}}, "dialplan")
	if err == nil || !strings.Contains(err.Error(), "dialplan.max_rules") {
		t.Fatalf("build over the limit: %v", err)
	}
}

func TestSettingsErrors(t *testing.T) {
	for _, c := range []struct {
		s   Settings
		key string
	}{
		{Settings{PollInterval: time.Millisecond, MaxRules: 1}, "poll_interval"},
		{Settings{PollInterval: 2 * time.Minute, MaxRules: 1}, "poll_interval"},
		{Settings{PollInterval: time.Second, MaxRules: 0}, "max_rules"},
	} {
		var ke *modules.KeyError
		if err := checkSettings(&c.s); !errors.As(err, &ke) || ke.Key != c.key {
			t.Errorf("%+v: %v, want an error for %s", c.s, err, c.key)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
}

// TestHandEditedRows: a row written to the database by hand that does
// not validate is skipped and counted; the others load.
func TestHandEditedRows(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.st.AddDialplanRule(ctx, store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: "ok"}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, store.DefaultFileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO dialplan (dpid, pr, match_op, match_exp, repl_exp, created) VALUES (1, 0, 'regex', '^0(', 'x', 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if out, ok := e.translate(1, "01"); !ok || out != "ok" {
		t.Fatalf("%q %v", out, ok)
	}
	if e.metric("switchboard_dialplan_skipped_rules") != 1 || e.metric("switchboard_dialplan_rules") != 1 {
		t.Errorf("skipped %v, rules %v", e.metric("switchboard_dialplan_skipped_rules"), e.metric("switchboard_dialplan_rules"))
	}
}

func (e *env) call(cmd string, args any, out any) error {
	e.t.Helper()
	raw, err := e.api.Call(ctx, cmd, args)
	if err == nil && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s: %v: %s", cmd, err, raw)
		}
	}
	return err
}

func apiStatus(err error) int {
	var ae *mgmt.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestManagementCommands(t *testing.T) {
	e := newEnv(t, envOptions{mgmt: true})
	// Numbers as strings, as `switchboard ctl dialplan.add key=value` sends them.
	var r RuleInfo
	if err := e.call("dialplan.add", map[string]string{"dpid": "1", "match_op": "prefix", "match_exp": "0", "repl_exp": `+33\2`, "attrs": "national"}, &r); err != nil {
		t.Fatal(err)
	}
	if r.ID == 0 || r.DPID != 1 || r.MatchOp != "prefix" || r.ReplExp != `+33\2` {
		t.Fatalf("added %+v", r)
	}
	// In use when the command returns.
	var tr TranslateResult
	if err := e.call("dialplan.translate", map[string]string{"dpid": "1", "input": "0612345678"}, &tr); err != nil {
		t.Fatal(err)
	}
	if !tr.Match || tr.Output != "+33612345678" || tr.Attrs != "national" || tr.Rule != r.ID {
		t.Fatalf("translate: %+v", tr)
	}
	err := e.call("dialplan.add", map[string]any{"dpid": 1, "match_op": "regex", "match_exp": `^0(\d+`, "repl_exp": `\1`}, nil)
	if apiStatus(err) != 400 || !strings.Contains(err.Error(), "dialplan rule (dpid 1, pr 0, regex `^0(\\d+`): match_exp") {
		t.Fatalf("bad regex: %v", err)
	}
	if err := e.call("dialplan.add", map[string]any{"dpid": 1, "match_op": "prefix", "match_exp": "0"}, nil); apiStatus(err) != 400 ||
		!strings.Contains(err.Error(), "exists already") {
		t.Fatalf("duplicate: %v", err)
	}
	if err := e.call("dialplan.add", map[string]any{"dpid": 1, "id": 5, "match_op": "prefix", "match_exp": "1"}, nil); apiStatus(err) != 400 {
		t.Fatalf("id given: %v", err)
	}
	if err := e.call("dialplan.add", map[string]any{"dpid": 0, "pr": "3", "match_op": "exact", "match_exp": "Voicemail",
		"match_flags": 1, "repl_exp": "*98", "disabled": "1"}, &r); err != nil || !r.Disabled {
		t.Fatalf("add to dialplan 0: %+v %v", r, err)
	}
	var list []RuleInfo
	if err := e.call("dialplan.list", map[string]string{"dpid": "0"}, &list); err != nil || len(list) != 1 || list[0].MatchExp != "Voicemail" {
		t.Fatalf("list dpid 0: %+v %v", list, err)
	}
	if err := e.call("dialplan.list", nil, &list); err != nil || len(list) != 2 {
		t.Fatalf("list all: %+v %v", list, err)
	}
	if err := e.call("dialplan.translate", map[string]any{"dpid": 0, "input": "voicemail"}, &tr); err != nil || tr.Match {
		t.Fatalf("a disabled rule matched: %+v %v", tr, err)
	}
	if err := e.call("dialplan.translate", map[string]any{"input": "1"}, nil); apiStatus(err) != 400 {
		t.Fatalf("no dpid: %v", err)
	}
	var sum Summary
	if err := e.call("dialplan.reload", nil, &sum); err != nil || sum.Rules != 1 || sum.Disabled != 1 || sum.Dialplans != 1 {
		t.Fatalf("reload: %+v %v", sum, err)
	}
	if err := e.call("dialplan.del", map[string]any{"id": 99}, nil); apiStatus(err) != 404 {
		t.Fatalf("unknown id: %v", err)
	}
	if err := e.call("dialplan.del", map[string]any{"id": 1, "dpid": 1}, nil); apiStatus(err) != 400 {
		t.Fatalf("both: %v", err)
	}
	var del struct{ Deleted int }
	if err := e.call("dialplan.del", map[string]string{"dpid": "1"}, &del); err != nil || del.Deleted != 1 {
		t.Fatalf("del dpid 1: %+v %v", del, err)
	}
	if _, ok := e.translate(1, "0612345678"); ok {
		t.Fatal("a deleted rule still translates")
	}
	if err := e.call("dialplan.del", map[string]string{"dpid": "1"}, nil); apiStatus(err) != 404 {
		t.Fatalf("empty dialplan: %v", err)
	}
}
