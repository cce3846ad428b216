package authban

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/modules/auth"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// sipRig is auth inside a real transaction core and router, on a SQLite
// store with alice@example.com (password "secret"), authban as its guard
// banning through pike. The socket is a recording double: a datagram is
// "from" whatever source the test writes, as a forged one is.
type sipRig struct {
	t    *testing.T
	a    *auth.Auth
	b    *Authban
	core *txn.Core
	l    transport.Listener
	ls   []*transport.Listener

	mu   sync.Mutex
	sent []string
	seq  int
}

func (r *sipRig) Send(_ *transport.Listener, _ netip.AddrPort, data []byte) error {
	r.mu.Lock()
	r.sent = append(r.sent, string(data))
	r.mu.Unlock()
	return nil
}
func (r *sipRig) Listener(transport.Proto, netip.Addr) *transport.Listener { return &r.l }
func (r *sipRig) Listeners() []*transport.Listener                         { return r.ls }

// newSIPRig builds the rig; cfg's Store, Clock, Secret and Algorithms
// are the rig's (cfg.SkipSourceCheck is auth.check_source: false).
func newSIPRig(t *testing.T, cfg auth.Config) *sipRig {
	t.Helper()
	b, _, clock := newAuthban(t, nil)
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddSubscriber(ctx, store.Subscriber{Username: "alice", Domain: "example.com", Password: "secret"}); err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Clock = st, clock
	cfg.Secret, cfg.Algorithms = []byte("0123456789abcdef0123456789abcdef"), []string{auth.MD5}
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.SetGuard(b)
	r := &sipRig{t: t, a: a, b: b}
	r.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	r.ls = []*transport.Listener{&r.l}
	next := auth.Next(func(c *routing.Ctx, res auth.Result) {
		if res == auth.Authorized {
			c.Reply(200, "OK")
			return
		}
		a.Challenge(c, auth.Options{}, res == auth.StaleNonce)
	})
	routes := &routing.Routes{Request: func(c *routing.Ctx) { a.WWWAuthorize(c, next) }}
	rs := routing.RouteSet{Name: "authban-test", New: func(*routing.Env) (*routing.Routes, error) { return routes, nil }}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com"})})
	if err != nil {
		t.Fatal(err)
	}
	r.core, err = txn.New(txn.Config{Sender: r, Listeners: r, Router: rt, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		r.core.Close()
		st.Close()
	})
	return r
}

// register sends a REGISTER for alice from src, with credentials
// answering nonce with password (none when nonce is ""), and returns the
// final response.
func (r *sipRig) register(src, nonce, password string) string {
	r.t.Helper()
	if nonce == "" {
		return r.send(src, "")
	}
	return r.send(src, digest{nonce: nonce, password: password}.header())
}

// digest is an Authorization header for a REGISTER to example.com:
// alice's unless user is set, computed for sip:example.com unless uri is,
// with qop=auth and nc=00000001 unless nc is.
type digest struct {
	user, nonce, password, uri, nc string
	noUser                         bool // username=""
}

func (d digest) header() string {
	if d.user == "" && !d.noUser {
		d.user = "alice"
	}
	if d.uri == "" {
		d.uri = "sip:example.com"
	}
	if d.nc == "" {
		d.nc = "00000001"
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1 := h(d.user + ":example.com:" + d.password)
	resp := h(ha1 + ":" + d.nonce + ":" + d.nc + ":cn:auth:" + h("REGISTER:"+d.uri))
	return `Authorization: Digest username="` + d.user + `", realm="example.com", nonce="` + d.nonce +
		`", uri="` + d.uri + `", response="` + resp + `", algorithm=MD5, cnonce="cn", qop=auth, nc=` + d.nc + "\r\n"
}

// send sends a REGISTER for alice (To and From) from src with the header
// line authz (none when ""), and returns the final response.
func (r *sipRig) send(src, authz string) string {
	r.t.Helper()
	r.seq++
	m := "REGISTER sip:example.com SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-s%d;rport\r\n", src, r.seq) +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:alice@example.com>\r\n" +
		fmt.Sprintf("Call-ID: spoof-%d\r\nCSeq: %d REGISTER\r\nContact: <sip:alice@%s>\r\n", r.seq, r.seq, src) +
		authz + "Content-Length: 0\r\n\r\n"
	r.mu.Lock()
	r.sent = nil
	r.mu.Unlock()
	r.core.HandleMessage(&transport.Packet{Data: []byte(m), Src: netip.MustParseAddrPort(src), Listener: &r.l, Proto: transport.UDP})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		r.mu.Lock()
		for _, s := range r.sent {
			if strings.HasPrefix(s, "SIP/2.0 ") && !strings.HasPrefix(s, "SIP/2.0 1") {
				r.mu.Unlock()
				return s
			}
		}
		r.mu.Unlock()
	}
	r.t.Fatalf("no final response from %s", src)
	return ""
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"(, qop="auth", algorithm=MD5)(, stale=true)?`)

func nonceOf(t *testing.T, resp string) (nonce string, stale bool) {
	t.Helper()
	m := nonceRE.FindStringSubmatch(resp)
	if !strings.HasPrefix(resp, "SIP/2.0 401 ") || m == nil {
		t.Fatalf("not a challenge:\n%s", resp)
	}
	return m[1], m[3] != ""
}

// TestSpoofedFailuresLockNoAccount: over UDP anyone can write a wrong
// password for alice from five forged addresses. The nonce it answers
// with was sent to its own address (it cannot receive one at a forged
// one): each forged answer gets a fresh 401, not stale, counts as a
// "nonce" failure, against neither the account, which stays unlocked
// (alice's phone registers), nor the forged address, which ten such
// answers do not ban. Five real
// addresses, each answering its own challenge wrongly, still lock her.
func TestSpoofedFailuresLockNoAccount(t *testing.T) {
	r := newSIPRig(t, auth.Config{})
	nonce, _ := nonceOf(t, r.register("203.0.113.66:5060", "", ""))
	for i := 1; i <= 5; i++ {
		src := fmt.Sprintf("198.51.100.%d:5060", i)
		resp := r.register(src, nonce, "guess")
		if n, stale := nonceOf(t, resp); stale || n == nonce {
			t.Fatalf("forged answer from %s: stale %v, the same nonce %v", src, stale, n == nonce)
		}
	}
	if r.b.IsLocked("alice", "example.com") {
		t.Fatal("alice locked by five forged sources")
	}
	if n := r.b.failures[auth.FailNonce].Load(); n != 5 || r.b.failures[auth.FailPassword].Load() != 0 {
		t.Fatalf("failures: nonce %d, password %d", n, r.b.failures[auth.FailPassword].Load())
	}
	// The forged address answering ten times is not banned either: its
	// answers carry no nonce sent to it (TestForgedFailuresBanNoAddress).
	for i := 0; i < 9; i++ {
		r.register("198.51.100.1:5060", nonce, "guess")
	}
	if r.b.pike.Banned(netip.MustParseAddr("198.51.100.1")) {
		t.Fatal("the forged address answering max_failures times is banned")
	}
	if r.b.IsLocked("alice", "example.com") {
		t.Fatal("alice locked by a forged address")
	}
	// Alice's phone.
	phone := "192.0.2.10:5060"
	n, _ := nonceOf(t, r.register(phone, "", ""))
	if resp := r.register(phone, n, "secret"); !strings.HasPrefix(resp, "SIP/2.0 200 ") {
		t.Fatalf("alice's phone after the forged failures:\n%s", resp)
	}

	// Five addresses that receive their challenges lock the account.
	for i := 1; i <= 5; i++ {
		src := fmt.Sprintf("203.0.113.%d:5060", i)
		n, _ := nonceOf(t, r.register(src, "", ""))
		r.register(src, n, "guess")
	}
	if !r.b.IsLocked("alice", "example.com") {
		t.Fatal("five real addresses with wrong passwords did not lock alice")
	}
}

// failureCounts is b's switchboard_authban_failures_total by why.
func failureCounts(b *Authban) map[string]uint64 {
	m := map[string]uint64{}
	for f := auth.FailPassword; f <= auth.FailNonce; f++ {
		if n := b.failures[f].Load(); n != 0 {
			m[f.String()] = n
		}
	}
	return m
}

// TestForgedFailuresBanNoAddress: over UDP anyone can send digest
// answers "from" a customer's or a trunk's address 198.51.100.7 (not in
// pike.exempt). With auth.check_source on, only an answer carrying a
// nonce sent to that address shows that its sender receives packets
// there, so only such answers count toward its ban. Thirty forged
// answers (a nonce sent to another address, with alice's name or an
// unknown one; a nonce made up; no user name; a digest uri of another
// request) get the answer each always got (a fresh 401, not stale; 400
// for the uri), are counted by why, and leave the address unbanned: its
// phone registers. Then the address's own failures, each answering a
// challenge sent to it (wrong password, unknown user, a digest uri of
// another request, malformed credentials), ban it at max_failures as
// before.
func TestForgedFailuresBanNoAddress(t *testing.T) {
	r := newSIPRig(t, auth.Config{})
	victim := netip.MustParseAddr("198.51.100.7")
	const from = "198.51.100.7:5060"
	elsewhere, _ := nonceOf(t, r.register("203.0.113.66:5060", "", ""))
	madeUp := strings.Repeat("A", len(elsewhere))
	forged := []struct {
		what string
		d    digest
		code string
	}{
		{"a nonce sent elsewhere, wrong password", digest{nonce: elsewhere, password: "guess"}, "401"},
		{"a nonce sent elsewhere, unknown user", digest{user: "ghost", nonce: elsewhere, password: "x"}, "401"},
		{"a made-up nonce", digest{nonce: madeUp, password: "guess"}, "401"},
		{"no user name", digest{noUser: true, nonce: elsewhere, password: "x"}, "401"},
		{"a digest uri of another request", digest{nonce: elsewhere, password: "guess", uri: "sip:elsewhere.example.net"}, "400"},
		{"malformed nonce-count", digest{nonce: madeUp, password: "guess", nc: "zz"}, "401"},
	}
	for i := 0; i < 5; i++ {
		for _, f := range forged {
			resp := r.send(from, f.d.header())
			if !strings.HasPrefix(resp, "SIP/2.0 "+f.code+" ") {
				t.Fatalf("%s: %s", f.what, resp)
			}
			if f.code == "401" {
				if n, stale := nonceOf(t, resp); stale || n == f.d.nonce {
					t.Fatalf("%s: stale %v, the same nonce %v", f.what, stale, n == f.d.nonce)
				}
			}
		}
	}
	if r.b.pike.Banned(victim) || !r.b.pike.Admit(victim) {
		t.Fatalf("%v banned by 30 answers forged from it", victim)
	}
	want := map[string]uint64{"nonce": 20, "malformed": 5, "bad_uri": 5}
	if got := failureCounts(r.b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("failures %v, want %v", got, want)
	}
	if r.b.bans.Load() != 0 {
		t.Fatalf("%d bans", r.b.bans.Load())
	}
	n, _ := nonceOf(t, r.register(from, "", ""))
	if resp := r.register(from, n, "secret"); !strings.HasPrefix(resp, "SIP/2.0 200 ") {
		t.Fatalf("the address's phone after the forged answers:\n%s", resp)
	}

	// Answers on challenges sent to the address count, whatever failed.
	own := []func(nonce string) (string, digest){
		func(n string) (string, digest) { return "401", digest{nonce: n, password: "guess"} },
		func(n string) (string, digest) { return "401", digest{user: "ghost", nonce: n, password: "x"} },
		func(n string) (string, digest) {
			return "400", digest{nonce: n, password: "guess", uri: "sip:elsewhere.example.net"}
		},
		func(n string) (string, digest) { return "401", digest{nonce: n, password: "guess", nc: "zz"} },
		func(n string) (string, digest) { return "401", digest{noUser: true, nonce: n, password: "x"} },
	}
	for i := 1; i <= 10; i++ {
		n, _ := nonceOf(t, r.register(from, "", ""))
		code, d := own[i%len(own)](n)
		if resp := r.send(from, d.header()); !strings.HasPrefix(resp, "SIP/2.0 "+code+" ") {
			t.Fatalf("failure %d on the address's own challenge: %s", i, resp)
		}
		if banned := r.b.pike.Banned(victim); banned != (i == 10) {
			t.Fatalf("after %d failures on its own challenges: banned %v", i, banned)
		}
	}
	want = map[string]uint64{"nonce": 20, "malformed": 9, "bad_uri": 7, "password": 2, "unknown_user": 2}
	if got := failureCounts(r.b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("failures %v, want %v", got, want)
	}
}

// TestForgedFailuresBanWithoutSourceCheck: with auth.check_source off a
// nonce is bound to no address and proves nothing of its sender, so every
// failed answer counts against its source address as before: ten forged
// ones ban it (and a wrong password on a nonce sent elsewhere is a
// password failure).
func TestForgedFailuresBanWithoutSourceCheck(t *testing.T) {
	r := newSIPRig(t, auth.Config{SkipSourceCheck: true})
	victim := netip.MustParseAddr("198.51.100.7")
	elsewhere, _ := nonceOf(t, r.register("203.0.113.66:5060", "", ""))
	madeUp := strings.Repeat("A", len(elsewhere))
	for i := 1; i <= 10; i++ {
		d := digest{nonce: madeUp, password: "guess"}
		if i%2 == 0 {
			d = digest{nonce: elsewhere, password: "guess", nc: fmt.Sprintf("%08x", i)}
		}
		if resp := r.send("198.51.100.7:5060", d.header()); !strings.HasPrefix(resp, "SIP/2.0 401 ") {
			t.Fatalf("answer %d: %s", i, resp)
		}
		if banned := r.b.pike.Banned(victim); banned != (i == 10) {
			t.Fatalf("after %d forged answers without the source check: banned %v", i, banned)
		}
	}
	if got, want := failureCounts(r.b), map[string]uint64{"nonce": 5, "password": 5}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("failures %v, want %v", got, want)
	}
}
