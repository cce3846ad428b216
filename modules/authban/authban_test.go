package authban

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/auth"
	"switchboard/modules/pike"
	"switchboard/shards"
	"switchboard/store"
)

func newAuthban(t testing.TB, s *Settings) (*Authban, *pike.Pike, *shards.Clock) {
	t.Helper()
	clock := shards.NewManualClock(1_700_000_000_000)
	p, err := pike.New(clock, *pike.DefaultSettings(), nil, 8)
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		s = DefaultSettings()
	}
	b, err := New(clock, *s, p)
	if err != nil {
		t.Fatal(err)
	}
	return b, p, clock
}

var (
	alice   = []byte("alice")
	realm   = []byte("example.com")
	srcA    = netip.MustParseAddr("192.0.2.10")
	srcHost = netip.MustParseAddr("127.0.0.1") // pike.exempt by default
)

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }

// The max_failures-th failed answer from one address within the window
// bans it in pike's table; an expired nonce, a locked owner's answer and
// exempt sources do not count.
func TestAddressBannedAfterMaxFailures(t *testing.T) {
	b, p, clock := newAuthban(t, nil)
	kinds := []auth.Failure{auth.FailPassword, auth.FailUnknownUser, auth.FailReplay, auth.FailBadURI, auth.FailMalformed}
	for i := 0; i < 9; i++ {
		b.Failed(srcA, alice, realm, kinds[i%len(kinds)], auth.SourceProven)
		b.Failed(srcA, alice, realm, auth.FailExpired, auth.SourceProven)
		b.Failed(srcA, alice, realm, auth.FailLocked, auth.SourceProven)
		b.Failed(srcHost, alice, realm, auth.FailPassword, auth.SourceProven)
		clock.Advance(time.Second)
	}
	if p.Banned(srcA) {
		t.Fatal("banned after 9 failures")
	}
	b.Failed(srcA, []byte("ghost"), realm, auth.FailUnknownUser, auth.SourceProven)
	if !p.Banned(srcA) || p.Banned(srcHost) {
		t.Fatalf("after the 10th failure: banned %v, exempt host banned %v", p.Banned(srcA), p.Banned(srcHost))
	}
	if l := p.List(); len(l) != 1 || l[0].Reason != "auth" || l[0].Remaining != 1800 {
		t.Fatalf("pike bans %+v", l)
	}
	// Failures spread wider than the window never add up to a ban.
	other := netip.MustParseAddr("192.0.2.11")
	for i := 0; i < 30; i++ {
		b.Failed(other, alice, realm, auth.FailPassword, auth.SourceProven)
		clock.Advance(2 * time.Minute) // 5 per window of 10 minutes
	}
	if p.Banned(other) {
		t.Fatal("5 failures per window banned")
	}
	if b.bans.Load() != 1 {
		t.Fatalf("bans %d", b.bans.Load())
	}
}

// An answer that does not show that its sender receives packets at its
// source (auth.SourceUnproven: no nonce sent there) counts by why but
// toward no ban and no lock, however many; with auth.check_source off
// (SourceUnchecked) every failure counts as before.
func TestUnprovenFailuresBanNobody(t *testing.T) {
	b, p, _ := newAuthban(t, nil)
	kinds := []auth.Failure{auth.FailNonce, auth.FailMalformed, auth.FailBadURI, auth.FailPassword, auth.FailUnknownUser}
	for i := 0; i < 100; i++ {
		b.Failed(addr(i%5), alice, realm, kinds[i%len(kinds)], auth.SourceUnproven)
	}
	if p.Banned(addr(0)) || b.Locked(alice, realm) || b.bans.Load() != 0 {
		t.Fatal("unproven failures banned or locked")
	}
	if n := b.failures[auth.FailNonce].Load(); n != 20 {
		t.Fatalf("nonce failures counted %d", n)
	}
	for i := 1; i <= 10; i++ {
		b.Failed(srcA, alice, realm, auth.FailNonce, auth.SourceUnchecked)
		if p.Banned(srcA) != (i == 10) {
			t.Fatalf("after %d unchecked failures: banned %v", i, p.Banned(srcA))
		}
	}
	for i := 0; i < 5; i++ {
		b.Failed(addr(100+i), alice, realm, auth.FailPassword, auth.SourceUnchecked)
	}
	if !b.Locked(alice, realm) {
		t.Fatal("wrong passwords from 5 addresses without the source check did not lock")
	}
}

// Failures from a neighbour of an exempt IPv6 trunk ban that neighbour
// alone: 10 forged Authorization headers from 2001:db8:1:2::bad, spoofed
// over UDP, banned the trunk's whole /64, and the transport dropped the
// trunk's datagrams for ban_time. The failures are counted, and the ban
// made, under pike's key, the address alone in a prefix that holds an
// exempt one.
func TestExemptIPv6TrunkNotBannedByNeighbourFailures(t *testing.T) {
	clock := shards.NewManualClock(1_700_000_000_000)
	ps := *pike.DefaultSettings()
	ps.Exempt = append(ps.Exempt, "2001:db8:1:2::10")
	p, err := pike.New(clock, ps, nil, 8)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(clock, *DefaultSettings(), p)
	if err != nil {
		t.Fatal(err)
	}
	trunk := netip.MustParseAddr("2001:db8:1:2::10")
	bad := netip.MustParseAddr("2001:db8:1:2::bad")
	for i := 0; i < 10; i++ {
		b.Failed(bad, []byte("ghost"), realm, auth.FailUnknownUser, auth.SourceProven)
	}
	if !p.Admit(trunk) || p.Banned(trunk) {
		t.Fatal("exempt trunk banned by 10 failures of a spoofed address in its /64")
	}
	if !p.Banned(bad) || p.Admit(bad) || p.Banned(netip.MustParseAddr("2001:db8:1:2::bae")) {
		t.Fatal("the failing address is not banned alone")
	}
	if l := p.List(); len(l) != 1 || l[0].Source != "2001:db8:1:2::bad" || l[0].Reason != "auth" {
		t.Fatalf("pike bans %+v", l)
	}
	// Elsewhere an IPv6 source is still its /64.
	for i := 0; i < 10; i++ {
		b.Failed(netip.MustParseAddr("2001:db8:9:9::"+strconv.Itoa(i+1)), []byte("ghost"), realm, auth.FailUnknownUser, auth.SourceProven)
	}
	if !p.Banned(netip.MustParseAddr("2001:db8:9:9::abcd")) {
		t.Fatal("failures spread over a /64 without an exempt address did not ban it")
	}
}

// Wrong passwords for one account from account_sources different
// addresses lock it; the same address again, unknown users and other
// accounts do not count. The lock ends after lock_time.
func TestAccountLockedByManyAddresses(t *testing.T) {
	b, p, clock := newAuthban(t, nil)
	for i := 0; i < 4; i++ {
		for j := 0; j < 3; j++ { // each address stays under max_failures
			b.Failed(addr(i), alice, realm, auth.FailPassword, auth.SourceProven)
		}
		b.Failed(addr(100+i), []byte("ghost"), realm, auth.FailUnknownUser, auth.SourceProven)
		b.Failed(addr(200+i), []byte("bob"), realm, auth.FailPassword, auth.SourceProven)
		clock.Advance(time.Minute)
	}
	b.Failed(addr(300), alice, realm, auth.FailReplay, auth.SourceProven)
	if b.Locked(alice, realm) {
		t.Fatal("locked by 4 addresses")
	}
	b.Failed(addr(4), alice, []byte("EXAMPLE.com"), auth.FailPassword, auth.SourceProven)
	if !b.Locked(alice, realm) || !b.Locked(alice, []byte("Example.COM")) {
		t.Fatal("not locked by the 5th address")
	}
	if b.Locked([]byte("bob"), realm) || b.Locked([]byte("Alice"), realm) || b.Locked(alice, []byte("example.net")) {
		t.Fatal("another account locked")
	}
	for i := 0; i < 5; i++ {
		if p.Banned(addr(i)) {
			t.Fatalf("address %v banned under max_failures", addr(i))
		}
	}
	if l := b.List(); len(l) != 1 || l[0].Account != "alice@example.com" || l[0].Remaining != 900 {
		t.Fatalf("locks %+v", l)
	}
	clock.Advance(15*time.Minute - time.Millisecond)
	if !b.Locked(alice, realm) {
		t.Fatal("lock ended early")
	}
	clock.Advance(time.Millisecond)
	if b.Locked(alice, realm) {
		t.Fatal("lock did not end after lock_time")
	}
	// The addresses counted were forgotten with the lock: one more does
	// not lock again.
	b.Failed(addr(5), alice, realm, auth.FailPassword, auth.SourceProven)
	if b.Locked(alice, realm) {
		t.Fatal("locked again by one address")
	}
}

// Whatever the number of accounts and addresses, the tables keep their
// size; every lock table slot is one account.
func TestTablesBounded(t *testing.T) {
	s := DefaultSettings()
	s.AccountSources = 2
	s.MaxAccounts = 128
	b, _, clock := newAuthban(t, s)
	user := make([]byte, 0, 16)
	for i := 0; i < 200_000; i++ {
		user = append(user[:0], "u"...)
		user = append(user, byte('a'+i%26), byte('a'+i/26%26), byte('a'+i/676%26), byte('a'+i/17576%26))
		b.Failed(addr(i), user, realm, auth.FailPassword, auth.SourceProven)
		b.Failed(addr(i+1), user, realm, auth.FailPassword, auth.SourceProven)
		if i%1000 == 0 {
			clock.Advance(time.Millisecond)
		}
	}
	st := b.locks.stats(clock.Now())
	if st.Slots != 128 || st.Active > 128 || st.Made < 100_000 || st.Evicted == 0 {
		t.Fatalf("lock table %+v", st)
	}
	if b.pairs.Slots() != 512 || b.accounts.Slots() != 128 || b.addrs.Slots() != 16384 {
		t.Fatal("counter tables not the configured size")
	}
}

// Counting a failure and the lock check allocate nothing.
func TestGuardAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	b, _, clock := newAuthban(t, nil)
	b.Lock("carol", "example.com", time.Hour) // a lock in force: the check hashes
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		i++
		b.Failed(addr(i), alice, realm, auth.FailPassword, auth.SourceProven)
		b.Failed(srcA, alice, realm, auth.FailUnknownUser, auth.SourceProven)
		b.Locked(alice, realm)
		clock.Advance(time.Millisecond)
	}); a != 0 {
		t.Fatalf("%.1f allocations", a)
	}
	if !b.Locked(alice, realm) {
		t.Fatal("the allocation test did not reach the lock")
	}
}

func BenchmarkGuard(b *testing.B) {
	ab, _, _ := newAuthban(b, nil)
	b.Run("locked-check-none", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ab.Locked(alice, realm)
		}
	})
	ab.Lock("carol", "example.com", time.Hour)
	b.Run("locked-check", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ab.Locked(alice, realm)
		}
	})
	b.Run("failed", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ab.Failed(addr(i&0xffff), alice, realm, auth.FailPassword, auth.SourceProven)
		}
	})
}

// Built as the server builds it, authban is auth's guard and bans through
// pike; its management commands list, set and lift locks; the metrics
// count failures, bans and locks.
func TestModuleCommandsAndMetrics(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := shards.NewManualClock(1_700_000_000_000)
	mg := mgmt.New(mgmt.Config{Listen: "127.0.0.1:8080", Token: "secret"})
	ms := metrics.NewSet()
	set, err := modules.Build(modules.Services{Store: st, Clock: clock, Metrics: ms, Mgmt: mg, DataDir: dir}, nil, "authban")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	b := set.Get("authban").(*Authban)
	if b.pike != set.Get("pike") {
		t.Fatal("authban does not ban through the pike module")
	}
	if g := set.Get("auth").(*auth.Auth).Guard(); g != auth.Guard(b) {
		t.Fatalf("auth's guard is %v", g)
	}
	api := func(cmd, args string) (int, string) {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/v1/"+cmd, strings.NewReader(args))
		req.Header.Set("Authorization", "Bearer secret")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		mg.Handler().ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	if code, body := api("authban.lock", `{"user":"alice@Example.com","duration":"2h"}`); code != 200 {
		t.Fatalf("lock: %d %s", code, body)
	}
	if !b.Locked(alice, realm) {
		t.Fatal("authban.lock did not lock")
	}
	code, body := api("authban.locks", "")
	var res struct{ Result []LockInfo }
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || len(res.Result) != 1 ||
		res.Result[0].Account != "alice@example.com" || res.Result[0].Remaining != 7200 {
		t.Fatalf("locks: %d %s", code, body)
	}
	for _, bad := range []string{`{"user":"alice"}`, `{"user":"alice@example.com","duration":"x"}`, `{}`} {
		if code, body := api("authban.lock", bad); code != 400 {
			t.Fatalf("lock %s: %d %s", bad, code, body)
		}
	}
	if code, body := api("authban.unlock", `{"user":"alice@example.com"}`); code != 200 || b.Locked(alice, realm) {
		t.Fatalf("unlock: %d %s", code, body)
	}
	if code, _ := api("authban.unlock", `{"user":"alice@example.com"}`); code != 404 {
		t.Fatalf("unlock twice: %d", code)
	}
	b.Lock("bob", "example.com", time.Hour)
	if code, body := api("authban.unlock", `{"all":true}`); code != 200 || !strings.Contains(body, `"unlocked": 1`) {
		t.Fatalf("unlock all: %d %s", code, body)
	}
	for i := 0; i < 10; i++ {
		b.Failed(srcA, alice, realm, auth.FailPassword, auth.SourceProven)
	}
	var buf bytes.Buffer
	ms.WritePrometheus(&buf)
	for _, want := range []string{
		`switchboard_authban_failures_total{why="password"} 10`,
		`switchboard_authban_bans_total 1`,
		`switchboard_authban_locks_total 2`,
		`switchboard_authban_locks_active 0`,
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

// TestLockRaisesEvent: an account locked by wrong passwords from many
// addresses is raised as E_AUTHBAN_LOCKED by the sweeper.
func TestLockRaisesEvent(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := shards.NewManualClock(1_700_000_000_000)
	ev := modules.NewEvents(clock, nil)
	sub := ev.Subscribe([]string{modules.EventAuthBanned}, 4)
	set, err := modules.Build(modules.Services{Store: st, Clock: clock, DataDir: dir, Events: ev}, nil, "authban")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
	defer set.Stop()
	b := set.Get("authban").(*Authban)
	for i := range 5 {
		b.Failed(addr(i), alice, realm, auth.FailPassword, auth.SourceProven)
	}
	select {
	case e := <-sub.C():
		if !strings.Contains(string(e.JSON), `"account":"alice@example.com"`) || !strings.Contains(string(e.JSON), `"until_ms":1700000900000`) {
			t.Fatalf("event %s", e.JSON)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no E_AUTHBAN_LOCKED within 3 s")
	}
}

// TestReloadKeepsRestartKeys: a reload that changes max_failures and
// window applies max_failures (two failures ban) and keeps window, which
// the tables are made with: CheckReload names it as needing a restart
// rather than refusing the reload, and the settings handed over say the
// window in force. Before, the whole reload was refused and max_failures
// stayed at its old value.
func TestReloadKeepsRestartKeys(t *testing.T) {
	b, p, _ := newAuthban(t, nil)
	s := DefaultSettings()
	s.MaxFailures = 2
	s.Window = 2 * DefaultSettings().Window
	var ke *modules.KeyError
	if err := b.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "window" {
		t.Fatalf("window changed: CheckReload %v, want window named as needing a restart", err)
	}
	if err := b.Reload(s); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if s.Window != DefaultSettings().Window || b.set.Window != DefaultSettings().Window {
		t.Errorf("window is %s in the settings, %s in force; want the old %s kept", s.Window, b.set.Window, DefaultSettings().Window)
	}
	for i := 0; i < 2; i++ {
		b.Failed(srcA, alice, realm, auth.FailPassword, auth.SourceProven)
	}
	if !p.Banned(srcA) {
		t.Error("two failures did not ban with max_failures 2 reloaded")
	}
}
