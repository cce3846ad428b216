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

func newSIPRig(t *testing.T) *sipRig {
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
	a, err := auth.New(auth.Config{Store: st, Clock: clock, Secret: []byte("0123456789abcdef0123456789abcdef"), Algorithms: []string{auth.MD5}})
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
	r.seq++
	m := "REGISTER sip:example.com SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-s%d;rport\r\n", src, r.seq) +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:alice@example.com>\r\n" +
		fmt.Sprintf("Call-ID: spoof-%d\r\nCSeq: %d REGISTER\r\nContact: <sip:alice@%s>\r\n", r.seq, r.seq, src)
	if nonce != "" {
		h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
		ha1 := h("alice:example.com:" + password)
		resp := h(ha1 + ":" + nonce + ":00000001:cn:auth:" + h("REGISTER:sip:example.com"))
		m += `Authorization: Digest username="alice", realm="example.com", nonce="` + nonce +
			`", uri="sip:example.com", response="` + resp + `", algorithm=MD5, cnonce="cn", qop=auth, nc=00000001` + "\r\n"
	}
	m += "Content-Length: 0\r\n\r\n"
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
// "nonce" failure against its forged address (banning that address
// after max_failures, as pike's flood ban does) and never against the
// account, which stays unlocked: alice's phone registers. Five real
// addresses, each answering its own challenge wrongly, still lock her.
func TestSpoofedFailuresLockNoAccount(t *testing.T) {
	r := newSIPRig(t)
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
	// The forged address answering ten times is banned, as pike bans a
	// spoofed flood's address; the account is not locked.
	for i := 0; i < 9; i++ {
		r.register("198.51.100.1:5060", nonce, "guess")
	}
	if !r.b.pike.Banned(netip.MustParseAddr("198.51.100.1")) || r.b.pike.Banned(netip.MustParseAddr("198.51.100.2")) {
		t.Fatal("the forged address answering max_failures times is not banned alone")
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
