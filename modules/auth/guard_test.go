package auth

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/routing"
)

// recordingGuard keeps what it is told and locks the accounts in locked.
type recordingGuard struct {
	mu     sync.Mutex
	told   []string // "src user realm why"
	locked map[string]bool
	asked  int
}

func (g *recordingGuard) Locked(user, realm []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	return g.locked[string(user)+"@"+strings.ToLower(string(realm))]
}

func (g *recordingGuard) Failed(src netip.Addr, user, realm []byte, why Failure) {
	g.mu.Lock()
	g.told = append(g.told, src.String()+" "+string(user)+" "+string(realm)+" "+why.String())
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
	expect("wrong password", "192.0.2.5 alice example.com password")
	ghost := &ua{user: "ghost", method: "REGISTER"}
	h.requestFrom(src, ghost.msg(ghost.answer(ch, 1, "x")))
	expect("unknown user", "192.0.2.5 ghost example.com unknown_user")
	if r := h.requestFrom(src, u.msg(u.answer(ch, 2, "secret"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	expect("right password")
	replay := &ua{user: "alice", method: "REGISTER", seq: 100}
	h.requestFrom(src, replay.msg(replay.answer(ch, 2, "secret")))
	expect("replayed nonce-count", "192.0.2.5 alice example.com replay")
	bad := &ua{user: "alice", method: "REGISTER", duri: "sip:elsewhere.example.net"}
	h.requestFrom(src, bad.msg(bad.answer(ch, 3, "secret")))
	expect("digest uri of another request", "192.0.2.5 alice example.com bad_uri")
	h.clock.Advance(31 * time.Second)
	h.requestFrom(src, u.msg(u.answer(ch, 4, "secret")))
	expect("expired nonce", "192.0.2.5 alice example.com expired")
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
	if got := g.take(); len(got) != 2 || !strings.HasSuffix(got[0], " password") || !strings.HasSuffix(got[1], " locked") {
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

func (nopGuard) Locked(user, realm []byte) bool             { return false }
func (nopGuard) Failed(netip.Addr, []byte, []byte, Failure) {}
