package auth

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// harness runs Auth inside a real transaction core and router, with a real
// SQLite store in a temporary directory; the socket is a recording double.
type harness struct {
	t     testing.TB
	a     *Auth
	st    *store.Store
	reg   *registrar.Registrar
	core  *txn.Core
	clock *shards.Clock
	l     transport.Listener
	ls    []*transport.Listener // [&l], made once as the transport keeps its own

	mu   sync.Mutex
	sent []string
	keep bool

	inRoute func(c *routing.Ctx)
	next    Next
	tmp     string
}

func (h *harness) dir() string { return h.tmp }

func (h *harness) Send(_ *transport.Listener, _ netip.AddrPort, data []byte) error {
	if h.keep {
		h.mu.Lock()
		h.sent = append(h.sent, string(data))
		h.mu.Unlock()
	}
	return nil
}
func (h *harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *harness) Listeners() []*transport.Listener                         { return h.ls }

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: shards.NewManualClock(1_700_000_000_000), keep: true}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	dir := t.TempDir()
	h.tmp = dir
	var err error
	h.st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must(t, h.st.AddDomain(ctx, "example.com"))
	must(t, h.st.AddSubscriber(ctx, store.Subscriber{Username: "alice", Domain: "example.com", Password: "secret"}))
	must(t, h.st.AddSubscriber(ctx, store.Subscriber{Username: "bob", Domain: "example.com", Password: "hunter2"}))
	cfg.Store, cfg.Clock = h.st, h.clock
	if cfg.Secret == nil {
		cfg.Secret = []byte("0123456789abcdef0123456789abcdef")
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	h.a, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.reg, err = registrar.New(registrar.Config{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	// The route: REGISTER is authorized then saved; anything else is
	// proxy-authorized then answered 200 (a stand-in for relaying).
	h.next = func(c *routing.Ctx, res Result) {
		switch res {
		case Authorized:
			if c.IsMethod(parser.MethodRegister) {
				h.reg.Save(c)
			} else {
				c.Reply(200, "Authorized")
			}
		case Forbidden:
			c.Reply(403, "")
		case Unavailable:
			c.Reply(500, "")
		default:
			h.a.Challenge(c, Options{Proxy: !c.IsMethod(parser.MethodRegister)}, res == StaleNonce)
		}
	}
	routes := &routing.Routes{Request: func(c *routing.Ctx) {
		if h.inRoute != nil {
			h.inRoute(c)
			return
		}
		h.a.Authorize(c, Options{Proxy: !c.IsMethod(parser.MethodRegister)}, h.next)
	}}
	rs := routing.RouteSet{Name: "auth-test", New: func(*routing.Env) (*routing.Routes, error) { return routes, nil }}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com"})})
	if err != nil {
		t.Fatal(err)
	}
	h.core, err = txn.New(txn.Config{Sender: h, Listeners: h, Router: rt, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.a.Close()
		h.core.Close()
		h.reg.Close()
		h.st.Close()
	})
	return h
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// request sends msg and waits for the final response, which comes from a
// worker goroutine when the credentials were not cached.
func (h *harness) request(msg string) string {
	h.t.Helper()
	return h.requestFrom("127.0.0.1:5062", msg)
}

// requestFrom is request with the packet coming from src.
func (h *harness) requestFrom(src, msg string) string {
	h.t.Helper()
	return h.requestProto(src, transport.UDP, msg)
}

// requestProto is requestFrom over proto (for a stream, src is the
// connection's peer).
func (h *harness) requestProto(src string, proto transport.Proto, msg string) string {
	h.t.Helper()
	h.mu.Lock()
	h.sent = nil
	h.mu.Unlock()
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: proto})
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		for _, s := range h.sent {
			if strings.HasPrefix(s, "SIP/2.0 ") && !strings.HasPrefix(s, "SIP/2.0 1") {
				h.mu.Unlock()
				return s
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			h.t.Fatalf("no final response to:\n%s", msg)
		}
		time.Sleep(time.Millisecond)
	}
}

// ua is a digest client written from RFC 7616 independently of the code
// under test.
type ua struct {
	user, password, method, to string
	seq                        int
	nc                         int
	// ruri replaces the Request-URI sent, duri the uri the digest is
	// computed for (both default to the AOR's URI, or the domain for
	// REGISTER).
	ruri, duri string
	// noName sends username="" in the credentials.
	noName bool
}

// target is the URI the request is for.
func (u *ua) target() string {
	if u.method == "REGISTER" {
		return "sip:example.com"
	}
	to := u.to
	if to == "" {
		to = u.user
	}
	return "sip:" + to + "@example.com"
}

var branchSeq int

// cseq returns a CSeq above any used so far, for a new ua on a Call-ID
// already registered.
func (h *harness) cseq() int { return 1000 + branchSeq }

func (u *ua) msg(auth string) string {
	u.seq++
	branchSeq++
	to := u.to
	if to == "" {
		to = u.user
	}
	ruri := u.target()
	if u.ruri != "" {
		ruri = u.ruri
	}
	m := u.method + " " + ruri + " SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-a%d;rport\r\n", branchSeq) +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + u.user + "@example.com>;tag=t" + u.user + "\r\n" +
		"To: <sip:" + to + "@example.com>\r\n" +
		"Call-ID: call-" + u.user + "-" + u.method + "\r\n" +
		fmt.Sprintf("CSeq: %d %s\r\n", u.seq, u.method) +
		"Contact: <sip:" + u.user + "@127.0.0.1:5062>\r\n"
	if auth != "" {
		m += auth + "\r\n"
	}
	return m + "Content-Length: 0\r\n\r\n"
}

var challengeRE = regexp.MustCompile(`(WWW|Proxy)-Authenticate: Digest realm="([^"]*)", nonce="([^"]*)", qop="auth", algorithm=([A-Z0-9-]+)(, stale=true)?\r\n`)

type challenge struct {
	header, realm, nonce, alg string
	stale                     bool
}

func challenges(resp string) []challenge {
	var out []challenge
	for _, m := range challengeRE.FindAllStringSubmatch(resp, -1) {
		out = append(out, challenge{m[1], m[2], m[3], m[4], m[5] != ""})
	}
	return out
}

func hexHash(alg, s string) string {
	if alg == "SHA-256" {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// answer builds the credentials header answering ch with nonce-count nc.
func (u *ua) answer(ch challenge, nc int, password string) string {
	uri := u.target()
	if u.duri != "" {
		uri = u.duri
	}
	ha1 := hexHash(ch.alg, u.user+":"+ch.realm+":"+password)
	ha2 := hexHash(ch.alg, u.method+":"+uri)
	ncs := fmt.Sprintf("%08x", nc)
	cnonce := "c0ffee"
	resp := hexHash(ch.alg, ha1+":"+ch.nonce+":"+ncs+":"+cnonce+":auth:"+ha2)
	name := "Authorization"
	if ch.header == "Proxy" {
		name = "Proxy-Authorization"
	}
	user := u.user
	if u.noName {
		user = ""
	}
	return fmt.Sprintf(`%s: Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, cnonce="%s", qop=auth, nc=%s`,
		name, user, ch.realm, ch.nonce, uri, resp, ch.alg, cnonce, ncs)
}

func status(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	return strings.TrimPrefix(line, "SIP/2.0 ")
}

// pick returns the challenge for alg.
func pick(t testing.TB, resp, alg string) challenge {
	t.Helper()
	for _, c := range challenges(resp) {
		if c.alg == alg {
			return c
		}
	}
	t.Fatalf("no %s challenge in:\n%s", alg, resp)
	return challenge{}
}
