package permissions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

var ctx = context.Background()

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	dir string
	st  *store.Store
	set *modules.Set
	p   *Permissions
	m   *metrics.Set
}

// build opens a store in a new directory, runs seed on it, and builds the
// module exactly as the server does.
func build(t *testing.T, s *Settings, seed func(st *store.Store)) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), m: metrics.NewSet()}
	var err error
	f.st, err = store.Open(f.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	if seed != nil {
		seed(f.st)
	}
	if s == nil {
		s = defaultSettings().(*Settings)
		s.PollInterval = 20 * time.Millisecond
	}
	f.set, err = modules.Build(modules.Services{Store: f.st, Clock: shards.NewManualClock(1_700_000_000_000), Metrics: f.m, Logger: quiet},
		map[string]any{"permissions": s}, "permissions")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.set.Stop)
	if err := f.set.Start(); err != nil {
		t.Fatal(err)
	}
	f.p = f.set.Get("permissions").(*Permissions)
	return f
}

// cli opens a second handle on the store, as `switchboard permissions`
// run from a shell while the server runs does.
func (f *fixture) cli(t *testing.T, verb string, args ...string) (string, error) {
	t.Helper()
	st, err := store.Open(f.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out bytes.Buffer
	err = cliCommands[verb].Run(ctx, st, args, &out)
	return out.String(), err
}

func (f *fixture) gauge(name string) float64 {
	var b bytes.Buffer
	f.m.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var x float64
			fmt.Sscan(v, &x)
			return x
		}
	}
	return -1
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestLoadedAtBuild(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		must(t, st.AddAddresses(ctx, []store.Address{
			{Group: 1, IP: "192.0.2.10", ContextInfo: "carrier A"},
			{Group: 1, IP: "198.51.100.0/24", Proto: "tcp"},
			{Group: 5, IP: "2001:db8::/32"},
		}))
	})
	m, ok := f.p.CheckAddress(1, addr("192.0.2.10"), 5060, transport.UDP, nil)
	if !ok || m.Group != 1 || m.Info != "carrier A" || m.ID == 0 {
		t.Fatalf("CheckAddress = %+v, %v", m, ok)
	}
	if _, ok := f.p.CheckAddress(1, addr("198.51.100.7"), 5060, transport.UDP, nil); ok {
		t.Error("a tcp entry matched udp")
	}
	if _, ok := f.p.CheckAddress(1, addr("198.51.100.7"), 5060, transport.TCP, nil); !ok {
		t.Error("the tcp subnet did not match")
	}
	if !f.p.InGroup(5, addr("2001:db8::1")) || f.p.InGroup(1, addr("2001:db8::1")) || !f.p.InGroup(0, addr("2001:db8::1")) {
		t.Error("InGroup wrong")
	}
	if f.p.InGroup(-1, addr("192.0.2.10")) || f.p.InGroup(70000, addr("192.0.2.10")) {
		t.Error("InGroup accepted a group out of range")
	}
	n, groups := f.p.Entries()
	if n != 3 || groups[1] != 2 || groups[5] != 1 {
		t.Errorf("entries %d %v", n, groups)
	}
	if g := f.gauge(`switchboard_permissions_entries{group="1"}`); g != 2 {
		t.Errorf("group 1 gauge = %v", g)
	}
	if c := f.gauge("switchboard_permissions_checks_total"); c != 3 {
		t.Errorf("checks = %v, want 3 (InGroup is not counted)", c)
	}
	if c := f.gauge("switchboard_permissions_matches_total"); c != 2 {
		t.Errorf("matches = %v, want 2", c)
	}
}

// The server runs; an address is added with the CLI, from another store
// handle: it is trusted within the poll interval, without a restart, and
// no longer once deleted.
// An operator who runs `permissions add 0.0.0.0/0 --group 4` (or ::/0,
// or ::ffff:0:0/96, the same /0) lets every source of that family into
// the group, as `permissions list` shows it (/0): the row's mask 0 is the
// prefix length when the table is loaded, not "no mask given", which made
// the entry the single address 0.0.0.0 (or ::) and matched no source.
func TestZeroPrefixSurvivesTheStore(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		must(t, st.AddAddresses(ctx, []store.Address{{Group: 4, IP: "0.0.0.0/0"}, {Group: 5, IP: "::/0"}, {Group: 6, IP: "::ffff:0:0/96"}}))
	})
	if _, ok := f.p.CheckAddress(4, addr("11.0.0.1"), 5060, transport.UDP, nil); !ok {
		t.Error("0.0.0.0/0 does not match 11.0.0.1")
	}
	if _, ok := f.p.CheckAddress(5, addr("2001:db8::1"), 5060, transport.UDP, nil); !ok {
		t.Error("::/0 does not match 2001:db8::1")
	}
	if _, ok := f.p.CheckAddress(6, addr("::ffff:198.51.100.7"), 5060, transport.UDP, nil); !ok {
		t.Error("::ffff:0:0/96 does not match ::ffff:198.51.100.7")
	}
	if f.p.InGroup(4, addr("2001:db8::1")) || f.p.InGroup(5, addr("11.0.0.1")) {
		t.Error("a /0 matched the other family")
	}
	out, err := f.cli(t, "list", "--group", "4")
	if err != nil || !strings.Contains(out, "0.0.0.0/0") {
		t.Errorf("list = %q, %v", out, err)
	}
}

func TestReloadWithoutRestart(t *testing.T) {
	f := build(t, nil, nil)
	gw := addr("203.0.113.5")
	if f.p.InGroup(1, gw) {
		t.Fatal("trusted before being added")
	}
	out, err := f.cli(t, "add", "203.0.113.0/24", "--group", "1", "--info", "carrier B")
	if err != nil || !strings.Contains(out, "group 1 203.0.113.0/24") {
		t.Fatalf("add: %q, %v", out, err)
	}
	took := eventually(t, 2*time.Second, "the new subnet in use", func() bool { return f.p.InGroup(1, gw) })
	t.Logf("in use %s after the CLI wrote it (poll interval 20ms)", took)
	if m, _ := f.p.CheckAddress(1, gw, 5060, transport.UDP, nil); m.Info != "carrier B" {
		t.Errorf("info = %q", m.Info)
	}
	if g := f.gauge(`switchboard_permissions_entries{group="1"}`); g != 1 {
		t.Errorf("group 1 gauge = %v", g)
	}
	out, err = f.cli(t, "del", "203.0.113.0/24")
	if err != nil || !strings.Contains(out, "deleted id") {
		t.Fatalf("del: %q, %v", out, err)
	}
	eventually(t, 2*time.Second, "the deletion in use", func() bool { return !f.p.InGroup(1, gw) })
	if g := f.gauge(`switchboard_permissions_entries{group="1"}`); g != -1 {
		t.Errorf("the gauge of an emptied group is still exported: %v", g)
	}
}

// A request sees the old set or the new one, never part of a change: a
// batch of entries added in one transaction appears all at once to
// readers running while it is loaded.
func TestReloadIsAtomic(t *testing.T) {
	f := build(t, nil, nil)
	const n, rounds = 2000, 3
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.%d.%d.1", i/250, i%250)
	}
	first, last := addr(addrs[0]), addr(addrs[n-1])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var torn, seen int
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tn, sn int
			for {
				select {
				case <-stop:
					mu.Lock()
					torn, seen = torn+tn, seen+sn
					mu.Unlock()
					return
				default:
				}
				tab := f.p.tab.Load() // what one check uses
				for g := uint16(1); g <= rounds; g++ {
					q := query{group: g}
					a, b := tab.lookup(first, &q) != nil, tab.lookup(last, &q) != nil
					if a != b {
						tn++
					}
					if a {
						sn++
					}
				}
			}
		}()
	}
	for g := 1; g <= rounds; g++ {
		batch := make([]store.Address, n)
		for i := range batch {
			batch[i] = store.Address{Group: g, IP: addrs[i]}
		}
		must(t, f.st.AddAddresses(ctx, batch))
		eventually(t, 5*time.Second, "batch loaded", func() bool { return f.p.InGroup(g, last) })
	}
	close(stop)
	wg.Wait()
	if torn != 0 {
		t.Fatalf("%d lookups saw a batch half loaded", torn)
	}
	if seen == 0 {
		t.Fatal("the readers never saw a batch: the test proves nothing")
	}
}

func TestMaxEntriesKeepsTheOldSet(t *testing.T) {
	s := defaultSettings().(*Settings)
	s.PollInterval = 20 * time.Millisecond
	s.MaxEntries = 2
	f := build(t, s, func(st *store.Store) {
		must(t, st.AddAddresses(ctx, []store.Address{{Group: 1, IP: "192.0.2.1"}, {Group: 1, IP: "192.0.2.2"}}))
	})
	if _, err := f.st.AddAddress(ctx, store.Address{Group: 1, IP: "192.0.2.3"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "reload refused", func() bool { return f.gauge("switchboard_permissions_reload_errors_total") >= 1 })
	if !f.p.InGroup(1, addr("192.0.2.1")) || f.p.InGroup(1, addr("192.0.2.3")) {
		t.Fatal("the table in use changed although the new one is over max_entries")
	}
	// A larger limit by SIGHUP loads it.
	s2 := *s
	s2.MaxEntries = 10
	if err := f.p.Reload(&s2); err != nil {
		t.Fatal(err)
	}
	if !f.p.InGroup(1, addr("192.0.2.3")) {
		t.Fatal("not loaded after raising max_entries")
	}
	// Lowering it below the table fails and keeps the old settings.
	s3 := s2
	s3.MaxEntries = 1
	if err := f.p.Reload(&s3); err == nil || !strings.Contains(err.Error(), "max_entries") {
		t.Fatalf("Reload = %v", err)
	}
	if f.p.cur.MaxEntries != 10 {
		t.Errorf("max_entries after a failed reload = %d", f.p.cur.MaxEntries)
	}
}

// A table over the limit at start stops the start, naming the key.
func TestMaxEntriesAtStart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	must(t, err)
	defer st.Close()
	must(t, st.AddAddresses(ctx, []store.Address{{Group: 1, IP: "192.0.2.1"}, {Group: 1, IP: "192.0.2.2"}}))
	s := defaultSettings().(*Settings)
	s.MaxEntries = 1
	_, err = modules.Build(modules.Services{Store: st, Clock: shards.NewManualClock(0), Logger: quiet}, map[string]any{"permissions": s}, "permissions")
	if err == nil || !strings.Contains(err.Error(), "permissions.max_entries") {
		t.Fatalf("Build = %v", err)
	}
}

func TestPatternOnReload(t *testing.T) {
	f := build(t, nil, func(st *store.Store) {
		_, err := st.AddAddress(ctx, store.Address{Group: 1, IP: "192.0.2.1", Pattern: "^sip:gw@"})
		must(t, err)
	})
	if f.p.tab.Load().subject != subjectFrom {
		t.Fatal("default subject is not From")
	}
	s := f.p.cur
	s.PatternOn = "ruri"
	must(t, f.p.Reload(&s))
	if f.p.tab.Load().subject != subjectRURI {
		t.Fatal("pattern_on: ruri not applied")
	}
}

func TestCheckSettings(t *testing.T) {
	cases := []struct {
		edit func(*Settings)
		key  string
	}{
		{func(s *Settings) { s.PollInterval = time.Millisecond }, "poll_interval"},
		{func(s *Settings) { s.PollInterval = 2 * time.Minute }, "poll_interval"},
		{func(s *Settings) { s.MaxEntries = 0 }, "max_entries"},
		{func(s *Settings) { s.PatternOn = "to" }, "pattern_on"},
	}
	for _, c := range cases {
		s := defaultSettings().(*Settings)
		c.edit(s)
		var ke *modules.KeyError
		if err := checkSettings(s); !errors.As(err, &ke) || ke.Key != c.key {
			t.Errorf("%+v: %v, want an error on %s", s, err, c.key)
		}
	}
	if err := checkSettings(defaultSettings()); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestCLI(t *testing.T) {
	f := build(t, nil, nil)
	out, err := f.cli(t, "add", "--group", "2", "192.0.2.0/24", "--port", "5060", "--proto", "udp", "--pattern", `^sip:\+49`, "--info", "DE")
	if err != nil || out != "added id 1: group 2 192.0.2.0/24 port 5060 proto udp pattern \"^sip:\\\\+49\" info \"DE\"\n"+udpNote+"\n" {
		t.Fatalf("add: %q, %v", out, err)
	}
	if _, err := f.cli(t, "add", "2001:db8::1"); err != nil {
		t.Fatal(err)
	}
	out, err = f.cli(t, "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.Contains(lines[1], "2001:db8::1/128") || !strings.Contains(lines[1], "any") ||
		!strings.Contains(lines[2], "192.0.2.0/24") || !strings.Contains(lines[2], "5060") || !strings.Contains(lines[2], "DE") {
		t.Fatalf("list:\n%s", out)
	}
	out, _ = f.cli(t, "list", "--group", "2")
	if strings.Count(out, "\n") != 2 {
		t.Fatalf("list --group 2:\n%s", out)
	}

	// Mistakes: named, usage errors (exit 2) for the command line, store
	// errors for the values.
	for _, c := range []struct {
		args  []string
		usage bool
		words string
	}{
		{[]string{"add"}, true, "one address"},
		{[]string{"add", "192.0.2.1", "192.0.2.2"}, true, "one address"},
		{[]string{"add", "192.0.2.1", "--group", "x"}, true, "group"},
		{[]string{"add", "192.0.2.1", "--group", "0"}, true, "group 0"},
		{[]string{"add", "192.0.2.1", "--bogus"}, true, "bogus"},
		{[]string{"add", "192.0.2.300"}, false, `"192.0.2.300": not an IPv4 or IPv6 address`},
		{[]string{"add", "192.0.2.1/24"}, false, "the subnet is 192.0.2.0/24"},
		{[]string{"add", "192.0.2.1", "--port", "70000"}, false, "port 70000"},
		{[]string{"add", "192.0.2.1", "--proto", "sctp"}, false, `proto "sctp"`},
		{[]string{"add", "192.0.2.1", "--pattern", "("}, false, `pattern "("`},
		{[]string{"add", "192.0.2.1", "--group", "70000"}, false, "group 70000"},
		{[]string{"add", "2001:db8::1"}, false, "already in group 1"},
		{[]string{"list", "x"}, true, "no arguments"},
		{[]string{"del"}, true, "an id or an address"},
		{[]string{"del", "99"}, false, "no address entry with id 99"},
		{[]string{"del", "-1"}, true, "-1"},
		{[]string{"del", "192.0.2.0/24"}, false, "no entry for 192.0.2.0/24 in group 1"},
	} {
		_, err := f.cli(t, c.args[0], c.args[1:]...)
		var ke *modules.KeyError
		if usage := errors.As(err, &ke); err == nil || usage != c.usage || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%v: %v (usage error %v), want one mentioning %q (usage error %v)", c.args, err, usage, c.words, c.usage)
		}
	}
	out, err = f.cli(t, "del", "192.0.2.0/24", "--group", "2")
	if err != nil || !strings.HasPrefix(out, "deleted id 1: group 2 192.0.2.0/24") {
		t.Fatalf("del by address: %q, %v", out, err)
	}
	out, err = f.cli(t, "del", "2")
	if err != nil || !strings.HasPrefix(out, "deleted id 2: group 1 2001:db8::1/128") {
		t.Fatalf("del by id: %q, %v", out, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBroadEntriesWarned: an entry wider than any one network's block
// (0.0.0.0/0, a /7, ::/0) makes every source, or much of the Internet, a
// trusted one: in the provider route set each of them calls subscribers
// unchallenged with the identity it asserts, and pike.exempt_group leaves
// them unbanned. It is taken (OpenSIPS takes it; a lab may want it) but
// the CLI and the API say so when it is added or listed, and each load
// logs it. An entry that accepts UDP gets a note from the CLI that UDP
// sources can be forged; one for TCP or TLS does not.
func TestBroadEntriesWarned(t *testing.T) {
	var logs bytes.Buffer
	f := &fixture{dir: t.TempDir(), m: metrics.NewSet()}
	var err error
	if f.st, err = store.Open(f.dir, store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	for _, c := range []struct {
		args          []string
		warning, note bool
	}{
		{[]string{"0.0.0.0/0"}, true, true},
		{[]string{"::/0", "--proto", "tls"}, true, false},
		{[]string{"64.0.0.0/7", "--proto", "udp"}, true, true},
		{[]string{"10.0.0.0/8"}, false, true},
		{[]string{"2001:db8::/32", "--proto", "tcp"}, false, false},
		{[]string{"192.0.2.10", "--proto", "tls"}, false, false},
	} {
		out, err := f.cli(t, "add", c.args...)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out, "warning: trusts"); got != c.warning {
			t.Errorf("add %v: warning %v, want %v:\n%s", c.args, got, c.warning, out)
		}
		if got := strings.Contains(out, "UDP sources can be forged"); got != c.note {
			t.Errorf("add %v: UDP note %v, want %v:\n%s", c.args, got, c.note, out)
		}
	}
	as, err := f.st.ListAddresses(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	warned := 0
	for _, a := range as {
		if view(a).Warning != "" {
			warned++
		}
	}
	if warned != 3 {
		t.Errorf("%d entries listed with a warning, want 3", warned)
	}
	s := defaultSettings().(*Settings)
	f.set, err = modules.Build(modules.Services{Store: f.st, Clock: shards.NewManualClock(1_700_000_000_000), Metrics: f.m,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, map[string]any{"permissions": s}, "permissions")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.set.Stop)
	if n := strings.Count(logs.String(), "permissions: entry trusts"); n != 3 {
		t.Errorf("the load logged %d broad entries, want 3:\n%s", n, logs.String())
	}
}
