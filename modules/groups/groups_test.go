package groups

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/store"
)

var ctx = context.Background()

type env struct {
	t   testing.TB
	dir string
	st  *store.Store
	g   *Groups
	api *mgmt.Client
}

func newEnv(t testing.TB, s *Settings, withMgmt bool) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if s == nil {
		s = DefaultSettings()
	}
	e := &env{t: t, dir: dir, st: st}
	svc := modules.Services{Store: st, Metrics: metrics.NewSet(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if withMgmt {
		srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "test-token"})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close(context.Background()) })
		svc.Mgmt = srv
		e.api = &mgmt.Client{Addr: srv.Addr(), Token: "test-token"}
	}
	set, err := modules.Build(svc, map[string]any{"groups": s}, "groups")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	e.g = set.Get("groups").(*Groups)
	return e
}

func (e *env) add(aor, group string) {
	e.t.Helper()
	m, err := store.NewGroupMember(aor, group)
	if err == nil {
		_, err = e.st.AddGroupMember(ctx, m)
	}
	if err == nil {
		_, err = e.g.Load(ctx)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) in(user, domain, group string) bool {
	return e.g.IsUserIn(nil, []byte(user), []byte(domain), group)
}

func TestIsUserIn(t *testing.T) {
	e := newEnv(t, nil, false)
	e.add("alice@example.com", "pstn")
	e.add("alice@example.com", "international")
	e.add("bob@example.com", "pstn")
	for _, c := range []struct {
		user, domain, group string
		want                bool
	}{
		{"alice", "example.com", "pstn", true},
		{"alice", "EXAMPLE.COM", "international", true},
		{"bob", "example.com", "pstn", true},
		{"bob", "example.com", "international", false},
		{"Alice", "example.com", "pstn", false},   // user parts are case-sensitive
		{"%61lice", "example.com", "pstn", false}, // an escaped spelling gains nothing
		{"alice", "example.org", "pstn", false},
		{"alice", "example.com", "PSTN", false},
		{"", "example.com", "pstn", false},
		{"alice", "example.com", "", false},
		{"alice", "example.com\x00pstn", "", false}, // no way to forge the separator into a match
	} {
		if got := e.in(c.user, c.domain, c.group); got != c.want {
			t.Errorf("%s@%s in %q: %v, want %v", c.user, c.domain, c.group, got, c.want)
		}
	}
	// From the From header, in a route.
	h := routetest.New(t, nil)
	h.InRoute(t, "127.0.0.1:5070", routetest.Request("INVITE", "sip:+4930123@example.com", ""), func(c *routing.Ctx) {
		if !e.g.IsFromIn(c, "pstn") || e.g.IsFromIn(c, "emergency-only") {
			t.Error("IsFromIn: alice (the From) is in pstn, not in emergency-only")
		}
	})
}

func TestReloadWithoutRestart(t *testing.T) {
	s := DefaultSettings()
	s.PollInterval = 30 * time.Millisecond
	e := newEnv(t, s, false)
	cli, err := store.Open(e.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var out strings.Builder
	if err := cliCommands["add"].Run(ctx, cli, []string{"alice@example.com", "pstn"}, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.in("alice", "example.com", "pstn") })
	if err := cliCommands["del"].Run(ctx, cli, []string{"alice@example.com", "pstn"}, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !e.in("alice", "example.com", "pstn") })
	if out.String() != "added alice@example.com to group pstn\ndeleted alice@example.com from group pstn\n" {
		t.Fatalf("CLI output %q", out.String())
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !f(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not in use 2s after the change")
		}
	}
}

func TestMaxEntries(t *testing.T) {
	e := newEnv(t, &Settings{PollInterval: time.Second, MaxEntries: 1}, false)
	e.add("alice@example.com", "pstn")
	if _, err := e.st.AddGroupMember(ctx, store.GroupMember{User: "bob", Domain: "example.com", Group: "pstn"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.g.Load(ctx); err == nil || !strings.Contains(err.Error(), "groups.max_entries (1)") {
		t.Fatalf("load over the limit: %v", err)
	}
	if !e.in("alice", "example.com", "pstn") || e.in("bob", "example.com", "pstn") {
		t.Fatal("the table in use changed")
	}
	var ke *modules.KeyError
	if err := checkSettings(&Settings{PollInterval: time.Second}); !errors.As(err, &ke) || ke.Key != "max_entries" {
		t.Fatalf("max_entries 0: %v", err)
	}
}

func TestManagementCommands(t *testing.T) {
	e := newEnv(t, nil, true)
	call := func(cmd string, args any, out any) error {
		raw, err := e.api.Call(ctx, cmd, args)
		if err == nil && out != nil {
			json.Unmarshal(raw, out)
		}
		return err
	}
	status := func(err error) int {
		var ae *mgmt.APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}
	if err := call("groups.add", map[string]string{"user": "alice@Example.com", "group": "pstn"}, nil); err != nil {
		t.Fatal(err)
	}
	var check struct{ Member bool }
	if err := call("groups.check", map[string]string{"user": "alice@example.com", "group": "pstn"}, &check); err != nil || !check.Member {
		t.Fatalf("check right after add: %+v %v", check, err)
	}
	if err := call("groups.add", map[string]string{"user": "alice@example.com", "group": "pstn"}, nil); status(err) != 400 || !strings.Contains(err.Error(), "already") {
		t.Fatalf("twice: %v", err)
	}
	if err := call("groups.add", map[string]string{"user": "alice@example.com", "group": "in ternational"}, nil); status(err) != 400 {
		t.Fatalf("bad group: %v", err)
	}
	var list []Info
	if err := call("groups.list", map[string]string{"group": "pstn"}, &list); err != nil || len(list) != 1 || list[0].User != "alice@example.com" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := call("groups.del", map[string]string{"user": "bob@example.com", "group": "pstn"}, nil); status(err) != 404 {
		t.Fatalf("del unknown: %v", err)
	}
	if err := call("groups.del", map[string]string{"user": "alice@example.com", "group": "pstn"}, nil); err != nil {
		t.Fatal(err)
	}
	if e.in("alice", "example.com", "pstn") {
		t.Fatal("deleted membership still in use")
	}
	var sum struct{ Memberships int }
	if err := call("groups.reload", nil, &sum); err != nil || sum.Memberships != 0 {
		t.Fatalf("reload: %+v %v", sum, err)
	}
}

func TestIsUserInAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil, false)
	e.add("alice@example.com", "pstn")
	user, domain := []byte("alice"), []byte("Example.com")
	var in, out bool
	allocs := testing.AllocsPerRun(1000, func() {
		in = e.g.IsUserIn(nil, user, domain, "pstn")
		out = e.g.IsUserIn(nil, user, domain, "international")
	})
	if allocs != 0 || !in || out {
		t.Fatalf("%v allocations; member %v, non-member %v", allocs, in, out)
	}
}
