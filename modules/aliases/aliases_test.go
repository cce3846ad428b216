package aliases

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

var ctx = context.Background()

type env struct {
	t   testing.TB
	dir string
	st  *store.Store
	a   *Aliases
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
	for _, d := range []string{"example.com", "example.org"} {
		if err := st.AddDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
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
	set, err := modules.Build(svc, map[string]any{"aliases": s}, "aliases")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	e.a = set.Get("aliases").(*Aliases)
	return e
}

func (e *env) add(alias, target string) {
	e.t.Helper()
	a, err := store.NewAlias(alias, target)
	if err == nil {
		_, err = e.st.AddAlias(ctx, a)
	}
	if err == nil {
		_, err = e.a.Load(ctx)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestAliasLookup(t *testing.T) {
	e := newEnv(t, nil, false)
	e.add("+33123456789@example.com", "alice@example.com")
	e.add("100@example.com", "bob@example.org")
	h := routetest.New(t, nil)
	for _, c := range []struct {
		ruri, want string
		ok         bool
	}{
		{"sip:+33123456789@example.com", "sip:alice@example.com", true},
		{"sip:+33123456789@EXAMPLE.com:5070;user=phone", "sip:alice@example.com:5070;user=phone", true},
		{"sip:%2B33123456789@example.com", "sip:alice@example.com", true}, // escapes decoded
		{"sip:100@example.com", "sip:bob@example.org", true},              // another served domain
		{"sip:100@example.org", "sip:100@example.org", false},             // an alias is per domain
		{"sip:alice@example.com", "sip:alice@example.com", false},
		{"sip:example.com", "sip:example.com", false},
		{"sip:%zz@example.com", "sip:%zz@example.com", false},
	} {
		h.InRoute(t, "127.0.0.1:5070", routetest.Request("INVITE", c.ruri, ""), func(rc *routing.Ctx) {
			if ok := e.a.AliasLookup(rc); ok != c.ok || string(rc.RU()) != c.want {
				t.Errorf("%s: %v %s; want %v %s", c.ruri, ok, rc.RU(), c.ok, c.want)
			}
		})
	}
}

// An operator who adds the DID as it appears escaped in a Request-URI
// (%2B33123456789@example.com, with the CLI, the API or a CSV file) gets
// calls to it whether the caller's INVITE writes the user escaped or not:
// the alias is stored decoded, as the lookup compares the request's user.
// A row stored escaped before the store decoded aliases is loaded under
// its decoded name too, unless the same alias is stored decoded.
func TestEscapedAliasMatches(t *testing.T) {
	e := newEnv(t, nil, false)
	e.add("%2B33123456789@example.com", "alice@example.com")
	h := routetest.New(t, nil)
	for _, ruri := range []string{"sip:%2B33123456789@example.com", "sip:+33123456789@example.com", "sip:%2b33123456789@example.com"} {
		h.InRoute(t, "127.0.0.1:5070", routetest.Request("INVITE", ruri, ""), func(rc *routing.Ctx) {
			if !e.a.AliasLookup(rc) || string(rc.RU()) != "sip:alice@example.com" {
				t.Errorf("%s: the stored alias does not match (%s)", ruri, rc.RU())
			}
		})
	}
	for _, name := range []string{"%2B33123456789@example.com", "+33123456789@example.com"} {
		if got, ok := e.a.Lookup(name); !ok || got != "alice@example.com" {
			t.Errorf("Lookup(%s) = %q, %v", name, got, ok)
		}
	}

	// Rows written before: %2B44 alone, and %2B45 beside +45 stored
	// decoded (which wins).
	db, err := sql.Open("sqlite", filepath.Join(e.dir, store.DefaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, r := range [][2]string{{"%2B44", "bob"}, {"%2B45", "bob"}, {"+45", "carol"}, {"%40x", "bob"}} {
		if _, err := db.Exec(`INSERT INTO aliases (alias_username, alias_domain, username, domain, created) VALUES (?, 'example.com', ?, 'example.com', 1)`, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.a.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ruri, want string }{
		{"sip:+44@example.com", "sip:bob@example.com"},
		{"sip:%2B44@example.com", "sip:bob@example.com"},
		{"sip:+45@example.com", "sip:carol@example.com"},
	} {
		h.InRoute(t, "127.0.0.1:5070", routetest.Request("INVITE", c.ruri, ""), func(rc *routing.Ctx) {
			if !e.a.AliasLookup(rc) || string(rc.RU()) != c.want {
				t.Errorf("%s: reached %s, want %s", c.ruri, rc.RU(), c.want)
			}
		})
	}
	if e.a.Len() != 4 { // +33..., +44, +45 and %40x (never matched: no request user decodes to it)
		t.Errorf("%d aliases in use, want 4", e.a.Len())
	}
}

// TestReloadWithoutRestart: an alias added by another process (the CLI)
// is in use within the poll interval, and gone after its deletion.
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
	if err := cliCommands["add"].Run(ctx, cli, []string{"0123@example.com", "alice@example.com"}, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := e.a.Lookup("0123@example.com"); return ok })
	if err := cliCommands["del"].Run(ctx, cli, []string{"0123@example.com"}, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := e.a.Lookup("0123@example.com"); return !ok })
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
	e.add("1@example.com", "alice@example.com")
	if _, err := e.st.AddAlias(ctx, store.Alias{AliasUser: "2", AliasDomain: "example.com", User: "bob", Domain: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Load(ctx); err == nil || !strings.Contains(err.Error(), "aliases.max_entries (1)") {
		t.Fatalf("load over the limit: %v", err)
	}
	if _, ok := e.a.Lookup("1@example.com"); !ok || e.a.Len() != 1 {
		t.Fatal("the table in use was dropped")
	}
	if err := e.a.Reload(&Settings{PollInterval: time.Second, MaxEntries: 2}); err != nil || e.a.Len() != 2 {
		t.Fatalf("raising max_entries: %v, %d aliases", err, e.a.Len())
	}
	var ke *modules.KeyError
	if err := checkSettings(&Settings{PollInterval: time.Second}); !errors.As(err, &ke) || ke.Key != "max_entries" {
		t.Fatalf("max_entries 0: %v", err)
	}
	if err := checkSettings(&Settings{PollInterval: time.Hour, MaxEntries: 1}); !errors.As(err, &ke) || ke.Key != "poll_interval" {
		t.Fatalf("poll_interval 1h: %v", err)
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
	var info Info
	if err := call("aliases.add", map[string]string{"alias": "+33123456789@Example.com", "target": "alice@example.com"}, &info); err != nil ||
		info.Alias != "+33123456789@example.com" || info.Target != "alice@example.com" {
		t.Fatalf("add: %+v %v", info, err)
	}
	var look struct {
		Found  bool
		Target string
	}
	if err := call("aliases.lookup", map[string]string{"alias": "+33123456789@example.com"}, &look); err != nil || !look.Found || look.Target != "alice@example.com" {
		t.Fatalf("lookup right after add: %+v %v", look, err)
	}
	for _, c := range []struct {
		args  map[string]string
		words string
	}{
		{map[string]string{"alias": "+33123456789@example.com", "target": "bob@example.com"}, "exists already"},
		{map[string]string{"alias": "555@example.net", "target": "bob@example.com"}, "not served"},
		{map[string]string{"alias": "555", "target": "bob@example.com"}, "missing '@'"},
	} {
		if err := call("aliases.add", c.args, nil); status(err) != 400 || !strings.Contains(err.Error(), c.words) {
			t.Errorf("add %v: %v, want 400 %q", c.args, err, c.words)
		}
	}
	// The escaped spelling of the DID is the same alias; one that stands
	// for a character no alias holds is refused, naming it.
	if err := call("aliases.add", map[string]string{"alias": "%2B33123456789@example.com", "target": "bob@example.com"}, nil); status(err) != 400 || !strings.Contains(err.Error(), "alias +33123456789@example.com exists already") {
		t.Errorf("add the escaped spelling: %v", err)
	}
	if err := call("aliases.add", map[string]string{"alias": "%40100@example.com", "target": "bob@example.com"}, nil); status(err) != 400 || !strings.Contains(err.Error(), `alias "%40100@example.com": the escape %40 in the user stands for '@'`) {
		t.Errorf("add %%40100: %v", err)
	}
	if err := call("aliases.lookup", map[string]string{"alias": "%2B33123456789@example.com"}, &look); err != nil || !look.Found || look.Target != "alice@example.com" {
		t.Fatalf("lookup of the escaped spelling: %+v %v", look, err)
	}
	var list []Info
	if err := call("aliases.list", nil, &list); err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := call("aliases.del", map[string]string{"alias": "999@example.com"}, nil); status(err) != 404 {
		t.Fatalf("del unknown: %v", err)
	}
	if err := call("aliases.del", map[string]string{"alias": "+33123456789@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.a.Lookup("+33123456789@example.com"); ok {
		t.Fatal("deleted alias still in use")
	}
	var sum struct{ Aliases int }
	if err := call("aliases.reload", nil, &sum); err != nil || sum.Aliases != 0 {
		t.Fatalf("reload: %+v %v", sum, err)
	}
}

func TestCLI(t *testing.T) {
	e := newEnv(t, nil, false)
	run := func(args ...string) (string, error) {
		var out strings.Builder
		err := cliCommands[args[0]].Run(ctx, e.st, args[1:], &out)
		return out.String(), err
	}
	if out, err := run("add", "0123@example.com", "alice@example.com"); err != nil || out != "added alias 0123@example.com -> alice@example.com\n" {
		t.Fatalf("add: %q %v", out, err)
	}
	var ke *modules.KeyError
	if _, err := run("add", "0123@example.com"); !errors.As(err, &ke) {
		t.Fatalf("one argument: %v", err)
	}
	if _, err := run("add", "0124@example.net", "alice@example.com"); err == nil || !strings.Contains(err.Error(), `domain "example.net" is not served`) {
		t.Fatalf("foreign domain: %v", err)
	}
	file := filepath.Join(t.TempDir(), "aliases.csv")
	// OpenSIPS's columns, and the short form; replace.
	os.WriteFile(file, []byte("alias_username,alias_domain,username,domain\n+3311,example.com,bob,example.com\n+3312,example.org,carol,example.com\n"), 0o644)
	if out, err := run("import", file, "--replace"); err != nil || out != "imported 2 aliases, replacing the aliases stored before\n" {
		t.Fatalf("import: %q %v", out, err)
	}
	exported, err := run("export")
	if err != nil || exported != "alias_username,alias_domain,username,domain\n+3311,example.com,bob,example.com\n+3312,example.org,carol,example.com\n" {
		t.Fatalf("export: %q %v", exported, err)
	}
	for _, c := range []struct{ csv, words string }{
		{"", "empty file"},
		{"alias\n", "line 1: the columns are"},
		{"alias,target,colour\n", `unknown column "colour"`},
		{"alias,target\n1@example.com,bob@example.com\n2@example.com,bob\n", "line 3: alias 2@example.com: target"},
		{"alias,target\n1@example.com,bob@example.com\n1@example.com,carol@example.com\n", "line 3: alias 1@example.com is on line 2 already"},
		{"alias,target\n+3311@example.com,carol@example.com\n", "exists already"},
		{"alias,target\n%2B3399@example.com,bob@example.com\n+3399@example.com,carol@example.com\n", "line 3: alias +3399@example.com is on line 2 already"},
		{"alias_username,alias_domain,username,domain\n%2B3311,example.com,carol,example.com\n", "alias +3311@example.com exists already"},
		{"alias,target\n%40100@example.com,bob@example.com\n", `line 2: alias "%40100@example.com": the escape %40 in the user stands for '@'`},
		{"alias,target\n1@example.com,bob@example.com\n1@example.net,bob@example.com\n", `domain "example.net" is not served`},
	} {
		os.WriteFile(file, []byte(c.csv), 0o644)
		if _, err := run("import", file); err == nil || !strings.Contains(err.Error(), c.words) {
			t.Errorf("import %q: %v, want %q", c.csv, err, c.words)
		}
	}
	if out, _ := run("list"); strings.Count(out, "\n") != 3 || !strings.Contains(out, "+3312@example.org") {
		t.Fatalf("a refused import changed the table:\n%s", out)
	}
	if out, _ := run("list", "--domain", "example.org"); strings.Count(out, "\n") != 2 {
		t.Fatalf("list --domain:\n%s", out)
	}
	if out, err := run("del", "+3311@example.com"); err != nil || out != "deleted alias +3311@example.com -> bob@example.com\n" {
		t.Fatalf("del: %q %v", out, err)
	}
	// Escapes in an alias are decoded: stored, shown and deleted as the
	// name a request's user is compared with.
	if out, err := run("add", "%2B3313@example.com", "bob@example.com"); err != nil || out != "added alias +3313@example.com -> bob@example.com\n" {
		t.Fatalf("add escaped: %q %v", out, err)
	}
	if out, err := run("del", "%2B3313@example.com"); err != nil || out != "deleted alias +3313@example.com -> bob@example.com\n" {
		t.Fatalf("del escaped: %q %v", out, err)
	}
}

// TestAliasLookupAllocatesNothing: an INVITE to a DID through the core,
// rewritten to its subscriber and answered statelessly.
func TestAliasLookupAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil, false)
	e.add("+33123456789@example.com", "alice@example.com")
	clock := shards.NewManualClock(1_700_000_000_000)
	h := routetest.New(t, clock)
	h.Keep = false
	var ru []byte
	var hits int
	h.Route = func(c *routing.Ctx) {
		if e.a.AliasLookup(c) {
			hits++
		}
		ru = append(ru[:0], c.RU()...)
		c.ReplyStateless(404, "Not Found", nil)
	}
	msg := []byte("INVITE sip:+33123456789@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-00000000;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:gw@example.com>;tag=00000000\r\nTo: <sip:+33123456789@example.com>\r\n" +
		"Call-ID: 00000000@gw\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	pkt := &transport.Packet{Data: msg, Src: netip.MustParseAddrPort("127.0.0.1:5080"), Listener: h.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	n := 0
	send := func() {
		numberMessage(msg, n)
		h.Handle(pkt)
		if n%1000 == 999 {
			clock.Advance(time.Minute)
		}
		n++
	}
	for n < 3000 {
		send()
	}
	if allocs := testing.AllocsPerRun(2000, send); allocs != 0 {
		t.Errorf("%v allocations per request", allocs)
	}
	if string(ru) != "sip:alice@example.com" || hits != n {
		t.Fatalf("R-URI %s; %d lookups, want every request's", ru, hits)
	}
}

// numberMessage writes n as 8 digits over every "00000000"-sized number
// field of msg: a new transaction each time.
func numberMessage(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=", "Call-ID: "} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}
