package auth

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/routing"
	"switchboard/transport"
)

// recordingGuard keeps what it is told and locks the accounts in locked.
type recordingGuard struct {
	mu     sync.Mutex
	told   []string // "src user realm why from"
	locked map[string]bool
	asked  int
}

func (g *recordingGuard) Locked(user, realm []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	return g.locked[string(user)+"@"+strings.ToLower(string(realm))]
}

func (g *recordingGuard) Failed(src netip.Addr, user, realm []byte, why Failure, from Source) {
	g.mu.Lock()
	g.told = append(g.told, src.String()+" "+string(user)+" "+string(realm)+" "+why.String()+" "+from.String())
	g.mu.Unlock()
}

func (g *recordingGuard) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.told
	g.told = nil
	return t
}

// The guard is told of each kind of failed answer, with the source and
// the name, and of nothing when the answer is right.
func TestGuardToldOfFailures(t *testing.T) {
	h := newHarness(t, Config{NonceLifetime: 30 * time.Second})
	g := &recordingGuard{}
	h.a.SetGuard(g)
	const src = "192.0.2.5:5062"
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.requestFrom(src, u.msg("")), "MD5")
	expect := func(what string, want ...string) {
		t.Helper()
		got := g.take()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: guard told %q, want %q", what, got, want)
		}
	}
	expect("a challenge")
	h.requestFrom(src, u.msg(u.answer(ch, 1, "wrong")))
	expect("wrong password", "192.0.2.5 alice example.com password proven")
	ghost := &ua{user: "ghost", method: "REGISTER"}
	h.requestFrom(src, ghost.msg(ghost.answer(ch, 1, "x")))
	expect("unknown user", "192.0.2.5 ghost example.com unknown_user proven")
	if r := h.requestFrom(src, u.msg(u.answer(ch, 2, "secret"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	expect("right password")
	replay := &ua{user: "alice", method: "REGISTER", seq: 100}
	h.requestFrom(src, replay.msg(replay.answer(ch, 2, "secret")))
	expect("replayed nonce-count", "192.0.2.5 alice example.com replay proven")
	bad := &ua{user: "alice", method: "REGISTER", duri: "sip:elsewhere.example.net"}
	h.requestFrom(src, bad.msg(bad.answer(ch, 3, "secret")))
	expect("digest uri of another request", "192.0.2.5 alice example.com bad_uri proven")
	h.clock.Advance(31 * time.Second)
	h.requestFrom(src, u.msg(u.answer(ch, 4, "secret")))
	expect("expired nonce", "192.0.2.5 alice example.com expired proven")
	// The password is compared before the nonce's freshness, so a wrong
	// one on an expired nonce sent to the address is a password failure
	// held against it: a cracker keeping one old nonce is counted.
	h.requestFrom(src, u.msg(u.answer(ch, 5, "wrong")))
	expect("expired nonce, wrong password", "192.0.2.5 alice example.com password proven")
}

// The guard is told whether an answer shows that its sender receives
// packets at its source (Source): only with a nonce sent to that
// address, whatever failed, checked before or after the nonce. An
// unknown name with another address's nonce is "nonce": the nonce is
// checked before the name is looked up.
func TestGuardToldWhetherSourceProven(t *testing.T) {
	h := newHarness(t, Config{})
	g := &recordingGuard{}
	h.a.SetGuard(g)
	u := &ua{user: "alice", method: "REGISTER"}
	own := pick(t, h.requestFrom("192.0.2.5:5062", u.msg("")), "MD5")
	other := pick(t, h.requestFrom("203.0.113.66:5062", u.msg("")), "MD5")
	madeUp := own
	madeUp.nonce = strings.Repeat("A", len(own.nonce))
	noName := &ua{user: "alice", method: "REGISTER", noName: true}
	badURI := &ua{user: "alice", method: "REGISTER", duri: "sip:elsewhere.example.net"}
	ghost := &ua{user: "ghost", method: "REGISTER"}
	for _, c := range []struct {
		what, status, told string
		u                  *ua
		ch                 challenge
	}{
		{"no name, own nonce", "401 Unauthorized", "malformed proven", noName, own},
		{"no name, another address's nonce", "401 Unauthorized", "malformed unproven", noName, other},
		{"no name, a made-up nonce", "401 Unauthorized", "malformed unproven", noName, madeUp},
		{"another uri, own nonce", "400 Digest URI Mismatch", "bad_uri proven", badURI, own},
		{"another uri, another address's nonce", "400 Digest URI Mismatch", "bad_uri unproven", badURI, other},
		{"another uri, a made-up nonce", "400 Digest URI Mismatch", "bad_uri unproven", badURI, madeUp},
		{"unknown name, own nonce", "401 Unauthorized", "unknown_user proven", ghost, own},
		{"unknown name, another address's nonce", "401 Unauthorized", "nonce unproven", ghost, other},
		{"wrong password, another address's nonce", "401 Unauthorized", "nonce unproven", u, other},
		{"wrong password, own nonce", "401 Unauthorized", "password proven", u, own},
	} {
		r := h.requestFrom("192.0.2.5:5062", c.u.msg(c.u.answer(c.ch, 1, "wrong")))
		if status(r) != c.status {
			t.Fatalf("%s: %s", c.what, r)
		}
		got := g.take()
		if len(got) != 1 || !strings.HasSuffix(got[0], " "+c.told) || !strings.HasPrefix(got[0], "192.0.2.5 ") {
			t.Fatalf("%s: the guard was told %q, want %q", c.what, got, c.told)
		}
	}
	// Without the source check no answer proves anything.
	h2 := newHarness(t, Config{SkipSourceCheck: true})
	g2 := &recordingGuard{}
	h2.a.SetGuard(g2)
	own = pick(t, h2.requestFrom("192.0.2.5:5062", u.msg("")), "MD5")
	h2.requestFrom("192.0.2.5:5062", badURI.msg(badURI.answer(own, 1, "x")))
	h2.requestFrom("198.51.100.1:5062", u.msg(u.answer(madeUp, 1, "x")))
	if got := g2.take(); strings.Join(got, "|") != "192.0.2.5 alice example.com bad_uri unchecked|198.51.100.1 alice example.com nonce unchecked" {
		t.Fatalf("without the source check the guard was told %q", got)
	}
}

// A locked account answers the right password exactly as a wrong one:
// the same 401 with a fresh challenge, not stale, and its nonce-count is
// not used up; once unlocked, the same password works.
func TestLockedAccountLooksLikeWrongPassword(t *testing.T) {
	h := newHarness(t, Config{})
	g := &recordingGuard{locked: map[string]bool{"alice@example.com": true}}
	h.a.SetGuard(g)
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	wrong := h.request(u.msg(u.answer(ch, 1, "not-the-password")))
	right := h.request(u.msg(u.answer(ch, 2, "secret")))
	norm := func(r string) string {
		r = challengeRE.ReplaceAllString(r, "challenge\r\n")
		var keep []string
		for _, line := range strings.Split(r, "\r\n") {
			if !strings.HasPrefix(line, "Via:") && !strings.HasPrefix(line, "CSeq:") && !strings.HasPrefix(line, "To:") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "|")
	}
	if status(right) != "401 Unauthorized" || challenges(right)[0].stale || norm(right) != norm(wrong) {
		t.Fatalf("locked account, right password:\n%s\nwrong password:\n%s", right, wrong)
	}
	if got := g.take(); len(got) != 2 || !strings.HasSuffix(got[0], " password proven") || !strings.HasSuffix(got[1], " locked proven") {
		t.Fatalf("guard told %q", got)
	}
	// The cached path too (the first answer above read the store).
	h.a.cache.Wait()
	if r := h.request(u.msg(u.answer(ch, 3, "secret"))); status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("locked, cached: %s", r)
	}
	g.mu.Lock()
	g.locked = nil
	g.mu.Unlock()
	if r := h.request(u.msg(u.answer(ch, 3, "secret"))); status(r) != "200 OK" {
		t.Fatalf("unlocked, the nonce-count refused while locked: %s", r)
	}
}

// With a guard installed, a right answer still allocates nothing.
func TestGuardedAuthorizeAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h := newHarness(t, Config{})
	h.a.SetGuard(nopGuard{})
	u, ch := warm(t, h, "MD5")
	var got Result
	next := Next(func(c *routing.Ctx, res Result) { got = res })
	h.inRoute = func(c *routing.Ctx) {
		h.a.WWWAuthorize(c, next)
		if got != Authorized {
			t.Errorf("first check %v", got)
		}
		if n := testing.AllocsPerRun(500, func() { h.a.WWWAuthorize(c, next) }); n != 0 {
			t.Errorf("a guarded check allocated %.1f times", n)
		}
		c.Reply(500, "")
	}
	h.request(u.msg(u.answer(ch, 2, "secret")))
}

type nopGuard struct{}

func (nopGuard) Locked(user, realm []byte) bool                     { return false }
func (nopGuard) Failed(netip.Addr, []byte, []byte, Failure, Source) {}

// TestNonceBoundToSource: a nonce is good only from the address it was
// issued to (an IPv4 address, an IPv6 /64; any port, any transport), as
// Kamailio's auth_checks_register with the source IP. An answer whose
// nonce was issued elsewhere, or is no nonce of ours, cannot come from a
// sender that received our challenge where it sends from (a forged UDP
// source): it gets a fresh challenge, not stale, whatever the password
// (no oracle either), the store is not read for it, and the guard is
// told "nonce", never "password", so it does not count toward an
// account's lock. The same nonce from another port of the address (NAT
// rebinding), over TCP, from elsewhere in the IPv6 /64, and on another
// node sharing the secret is accepted.
func TestNonceBoundToSource(t *testing.T) {
	h := newHarness(t, Config{})
	g := &recordingGuard{}
	h.a.SetGuard(g)
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.requestFrom("192.0.2.5:5062", u.msg("")), "MD5")
	misses := h.a.Stats().CacheMisses

	// Five forged sources with a wrong password, then one with the
	// right password: a new challenge each, never stale.
	for i, src := range []string{"198.51.100.1:5060", "198.51.100.2:5060", "198.51.100.3:5060", "198.51.100.4:5060", "192.0.2.6:5062", "[2001:db8::5]:5062"} {
		pw := "wrong"
		if i == 5 {
			pw = "secret"
		}
		r := h.requestFrom(src, u.msg(u.answer(ch, 10+i, pw)))
		if status(r) != "401 Unauthorized" || len(challenges(r)) == 0 || challenges(r)[0].stale || challenges(r)[0].nonce == ch.nonce {
			t.Fatalf("nonce of 192.0.2.5 answered from %s (%s): %s", src, pw, r)
		}
		addr := netip.MustParseAddrPort(src).Addr().String()
		if got := g.take(); len(got) != 1 || got[0] != addr+" alice example.com nonce unproven" {
			t.Fatalf("from %s the guard was told %q", src, got)
		}
	}
	// A forged nonce and a ghost's name: the same, and the store is not
	// asked for the ghost.
	forged := ch
	forged.nonce = strings.Repeat("A", len(ch.nonce))
	ghost := &ua{user: "ghost-nonce", method: "REGISTER"}
	if r := h.requestFrom("192.0.2.5:5062", ghost.msg(ghost.answer(forged, 1, "x"))); status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("forged nonce: %s", r)
	}
	if got := g.take(); len(got) != 1 || got[0] != "192.0.2.5 ghost-nonce example.com nonce unproven" {
		t.Fatalf("forged nonce: the guard was told %q", got)
	}
	if n := h.a.Stats().CacheMisses; n != misses {
		t.Fatalf("answers with nonces not ours read the store %d times", n-misses)
	}

	// Its own address, another port (a NAT rebinding): the nonce is good.
	if r := h.requestFrom("192.0.2.5:40000", u.msg(u.answer(ch, 20, "wrong"))); status(r) != "401 Unauthorized" {
		t.Fatalf("wrong password from another port: %s", r)
	}
	if got := g.take(); len(got) != 1 || got[0] != "192.0.2.5 alice example.com password proven" {
		t.Fatalf("wrong password from the nonce's address: the guard was told %q", got)
	}
	if r := h.requestFrom("192.0.2.5:40000", u.msg(u.answer(ch, 21, "secret"))); status(r) != "200 OK" {
		t.Fatalf("from another port of the address: %s", r)
	}
	// Over TCP the source is the connection's peer.
	if r := h.requestProto("192.0.2.5:51000", transport.TCP, u.msg(u.answer(ch, 22, "secret"))); status(r) != "200 OK" {
		t.Fatalf("over TCP from the address: %s", r)
	}
	if r := h.requestProto("203.0.113.9:51000", transport.TCP, u.msg(u.answer(ch, 23, "secret"))); status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("over TCP from another address: %s", r)
	}
	g.take()

	// IPv6: bound to the /64.
	v6 := &ua{user: "bob", method: "REGISTER"}
	ch6 := pick(t, h.requestFrom("[2001:db8:1:2::10]:5062", v6.msg("")), "MD5")
	if r := h.requestFrom("[2001:db8:1:2:a:b:c:d]:6000", v6.msg(v6.answer(ch6, 1, "hunter2"))); status(r) != "200 OK" {
		t.Fatalf("from the same /64: %s", r)
	}
	if r := h.requestFrom("[2001:db8:1:3::10]:5062", v6.msg(v6.answer(ch6, 2, "hunter2"))); status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("from another /64: %s", r)
	}
	// An IPv4 address and the IPv6 prefix that starts with its bytes
	// are not the same source.
	ch4 := pick(t, h.requestFrom("32.1.13.184:5062", v6.msg("")), "MD5") // 0x20010db8
	if r := h.requestFrom("[2001:db8::]:5062", v6.msg(v6.answer(ch4, 1, "hunter2"))); status(r) != "401 Unauthorized" {
		t.Fatalf("an IPv4 nonce from the IPv6 prefix of its bytes: %s", r)
	}

	// Another node with the same secret takes the nonce from the same
	// address, not from another.
	h2 := newHarness(t, Config{})
	ch = pick(t, h.requestFrom("192.0.2.7:5062", u.msg("")), "MD5")
	if r := h2.requestFrom("192.0.2.7:5062", u.msg(u.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatalf("on another node from the same address: %s", r)
	}
	if r := h2.requestFrom("192.0.2.8:5062", u.msg(u.answer(ch, 2, "secret"))); status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("on another node from another address: %s", r)
	}

	// auth.check_source: false takes a nonce from anywhere (and a
	// forged source's wrong password is a password failure again).
	h3 := newHarness(t, Config{SkipSourceCheck: true})
	g3 := &recordingGuard{}
	h3.a.SetGuard(g3)
	ch = pick(t, h3.requestFrom("192.0.2.7:5062", u.msg("")), "MD5")
	h3.requestFrom("198.51.100.1:5060", u.msg(u.answer(ch, 1, "wrong")))
	if got := g3.take(); len(got) != 1 || got[0] != "198.51.100.1 alice example.com password unchecked" {
		t.Fatalf("without the source check the guard was told %q", got)
	}
	if r := h3.requestFrom("192.0.2.8:5062", u.msg(u.answer(ch, 2, "secret"))); status(r) != "200 OK" {
		t.Fatalf("without the source check, from another address: %s", r)
	}
}
