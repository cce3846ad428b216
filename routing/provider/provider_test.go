package provider

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

	"switchboard/modules"
	"switchboard/modules/acc"
	"switchboard/modules/auth"
	"switchboard/modules/dialog"
	"switchboard/modules/registrar"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// harness runs the provider route set with the real registrar and auth
// on a real SQLite store, inside a real transaction core whose socket is a
// recording double (nothing leaves the process).
type harness struct {
	t     *testing.T
	core  *txn.Core
	clock *shards.Clock
	l     transport.Listener
	ls    []*transport.Listener // [&l], made once as the transport keeps its own

	mu   sync.Mutex
	sent []sentMsg

	// With accounting (withAccounting): the dialog and acc modules, and
	// the store they write to.
	acc *acc.Acc
	dlg *dialog.Dialog
	st  *store.Store

	// With modules: the registrar.
	reg *registrar.Registrar
}

type sentMsg struct {
	dst  string
	data string
}

func (h *harness) Send(_ *transport.Listener, dst netip.AddrPort, data []byte) error {
	h.mu.Lock()
	h.sent = append(h.sent, sentMsg{dst.String(), string(data)})
	h.mu.Unlock()
	return nil
}
func (h *harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *harness) Listeners() []*transport.Listener                         { return h.ls }

// newHarness builds the route set; withModules false leaves Env.Modules
// empty (the placeholders' behaviour).
func newHarness(t *testing.T, withModules bool, opts Options) *harness {
	return newHarnessWith(t, withModules, opts, nil)
}

// newHarnessWith adds the modules extra builds on the harness's clock
// (scanner, ratelimit...).
func newHarnessWith(t *testing.T, withModules bool, opts Options, extra func(*shards.Clock) map[string]any) *harness {
	h := &harness{t: t}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	var accSet *modules.Set
	var sets []*modules.Set
	clock := shards.NewManualClock(1_700_000_000_000)
	h.clock = clock
	env := &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"})}
	if withModules {
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		st.AddDomain(ctx, "example.com")
		for _, u := range []string{"alice", "bob", "carol"} {
			if err := st.AddSubscriber(ctx, store.Subscriber{Username: u, Domain: "example.com", Password: u + "-pw"}); err != nil {
				t.Fatal(err)
			}
		}
		reg, err := registrar.New(registrar.Config{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		a, err := auth.New(auth.Config{Store: st, Clock: clock, Secret: []byte("0123456789abcdef"), Algorithms: []string{auth.MD5}})
		if err != nil {
			t.Fatal(err)
		}
		h.reg = reg
		perms := trustedGateways(t, st, clock)
		t.Cleanup(func() { a.Close(); reg.Close(); perms.Stop(); st.Close() })
		env.Modules = map[string]any{"registrar": reg, "auth": a, "permissions": perms.Get("permissions"), "provider": opts}
		if withAccounting {
			accSet = accounting(t, st, clock)
			h.acc, h.st = accSet.Get("acc").(*acc.Acc), st
			h.dlg = accSet.Get("dialog").(*dialog.Dialog)
			env.Modules["dialog"], env.Modules["acc"] = h.dlg, h.acc
		}
		if extra != nil {
			for name, m := range extra(clock) {
				if set, ok := m.(*modules.Set); ok {
					sets = append(sets, set) // modules that need the core (SetCore, Start)
					continue
				}
				env.Modules[name] = m
			}
		}
	}
	rs, err := routing.Lookup("provider")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := routing.NewRouter(rs, env)
	if err != nil {
		t.Fatal(err)
	}
	h.core, err = txn.New(txn.Config{Sender: h, Listeners: h, Router: rt, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.core.Close)
	if accSet != nil {
		sets = append(sets, accSet)
	}
	for _, set := range sets {
		set.SetCore(h.core)
		if err := set.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// send delivers msg from src and waits until something matching want (a
// prefix of a message, or of "dst data") was sent, which it returns.
func (h *harness) send(src, msg string, want func(sentMsg) bool) sentMsg {
	h.t.Helper()
	h.mu.Lock()
	h.sent = nil
	h.mu.Unlock()
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: transport.UDP})
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		for _, s := range h.sent {
			if want(s) {
				h.mu.Unlock()
				return s
			}
		}
		got := h.sent
		h.mu.Unlock()
		if time.Now().After(deadline) {
			h.t.Fatalf("nothing expected sent for\n%s\nsent: %+v", msg, got)
		}
		time.Sleep(time.Millisecond)
	}
}

func final(s sentMsg) bool {
	return strings.HasPrefix(s.data, "SIP/2.0 ") && !strings.HasPrefix(s.data, "SIP/2.0 1")
}

func (h *harness) reply(src, msg string) string {
	h.t.Helper()
	return h.send(src, msg, final).data
}

var seq int

func req(method, ruri, from, to, extra string) string {
	seq++
	if !strings.Contains(extra, "Contact:") {
		extra = "Contact: <sip:x@127.0.0.1:5062>\r\n" + extra
	}
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-p%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s>;tag=f%d\r\nTo: <sip:%s>\r\nCall-ID: c%d\r\nCSeq: %d %s\r\n%sContent-Length: 0\r\n\r\n",
		method, ruri, seq, from, seq, to, seq, seq, method, extra)
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

// creds answers the MD5 challenge in resp for user with nonce-count 1.
func creds(resp, header, user, password, method, uri string) string {
	nonce := nonceRE.FindStringSubmatch(resp)[1]
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	r := h(h(user+":example.com:"+password) + ":" + nonce + ":00000001:cn:auth:" + h(method+":"+uri))
	return fmt.Sprintf("%s: Digest username=\"%s\", realm=\"example.com\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5, cnonce=\"cn\", qop=auth, nc=00000001\r\n",
		header, user, nonce, uri, r)
}

func status(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	return strings.TrimPrefix(line, "SIP/2.0 ")
}

func TestProviderRoutes(t *testing.T) {
	h := newHarness(t, true, Options{})
	const phone = "127.0.0.1:6000"

	// REGISTER: challenged, then saved.
	r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	if status(r) != "401 Unauthorized" {
		t.Fatalf("REGISTER: %s", r)
	}
	r = h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" || !strings.Contains(r, "Contact: <sip:bob@127.0.0.1:6000>;expires=3600") {
		t.Fatalf("authenticated REGISTER: %s", r)
	}

	// A call from outside to bob needs no credentials and reaches his phone.
	inv := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "someone@example.net", "bob@example.com", ""),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	if inv.dst != phone || !strings.HasPrefix(inv.data, "INVITE sip:bob@127.0.0.1:6000 SIP/2.0") || !strings.Contains(inv.data, "Record-Route: ") {
		t.Fatalf("call to bob: %+v", inv)
	}
	// Not a subscriber, and a subscriber not registered: the same 480.
	if r := h.reply("127.0.0.1:7000", req("INVITE", "sip:dave@example.com", "someone@example.net", "dave@example.com", "")); status(r) != "480 Temporarily Unavailable" {
		t.Fatalf("non-subscriber: %s", r)
	}
	if r := h.reply("127.0.0.1:7000", req("INVITE", "sip:carol@example.com", "someone@example.net", "carol@example.com", "")); status(r) != "480 Temporarily Unavailable" {
		t.Fatalf("unregistered: %s", r)
	}

	// From a local subscriber: 407 first, then relayed.
	r = h.reply("127.0.0.1:6100", req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", ""))
	if status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("local caller without credentials: %s", r)
	}
	inv = h.send("127.0.0.1:6100", req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com",
		creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:bob@example.com")),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	if inv.dst != phone {
		t.Fatalf("authenticated call: %+v", inv)
	}
	// alice's credentials with bob in From: 403.
	r = h.reply("127.0.0.1:6100", req("INVITE", "sip:carol@example.com", "bob@example.com", "carol@example.com", ""))
	r = h.reply("127.0.0.1:6100", req("INVITE", "sip:carol@example.com", "bob@example.com", "carol@example.com",
		creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:carol@example.com")))
	if status(r) != "403 Forbidden" {
		t.Fatalf("credentials of another user: %s", r)
	}

	// Another domain: refused from outside, relayed for an authenticated
	// local subscriber.
	if r := h.reply("127.0.0.1:7000", req("MESSAGE", "sip:x@127.0.0.2:5090", "someone@example.net", "x@127.0.0.2", "")); status(r) != "403 Relay Forbidden" {
		t.Fatalf("relay for outsiders: %s", r)
	}
	r = h.reply("127.0.0.1:6100", req("MESSAGE", "sip:x@127.0.0.2:5090", "alice@example.com", "x@127.0.0.2", ""))
	if status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("relay without credentials: %s", r)
	}
	msg := h.send("127.0.0.1:6100", req("MESSAGE", "sip:x@127.0.0.2:5090", "alice@example.com", "x@127.0.0.2",
		creds(r, "Proxy-Authorization", "alice", "alice-pw", "MESSAGE", "sip:x@127.0.0.2:5090")),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "MESSAGE ") })
	if msg.dst != "127.0.0.2:5090" {
		t.Fatalf("relay to another domain: %+v", msg)
	}
}

func TestRegisterWithoutAuth(t *testing.T) {
	h := newHarness(t, true, Options{RegisterWithoutAuth: true})
	r := h.reply("127.0.0.1:6000", req("REGISTER", "sip:example.com", "anyone@example.com", "anyone@example.com", "Contact: <sip:anyone@127.0.0.1:6000>\r\n"))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER without auth: %s", r)
	}
	// Calls from local users still authenticate.
	r = h.reply("127.0.0.1:6100", req("INVITE", "sip:anyone@example.com", "alice@example.com", "anyone@example.com", ""))
	if status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("call: %s", r)
	}
}

func TestWithoutModules(t *testing.T) {
	h := newHarness(t, false, Options{})
	for _, c := range []struct{ msg, want string }{
		{req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""), "501 Registrar Not Configured"},
		{req("INVITE", "sip:bob@example.com", "someone@example.net", "bob@example.com", ""), "480 Temporarily Unavailable"},
		{req("INVITE", "sip:x@127.0.0.2", "alice@example.com", "x@127.0.0.2", ""), "403 Authentication Not Configured"},
		{req("OPTIONS", "sip:127.0.0.1", "someone@example.net", "127.0.0.1", ""), "200 OK"},
	} {
		if r := h.reply("127.0.0.1:7000", c.msg); status(r) != c.want {
			t.Errorf("%s: %s", strings.SplitN(c.msg, "\r\n", 2)[0], status(r))
		}
	}
}

// sentNow returns what was sent since the last send or sentNow, after
// letting the timers run for d (retransmissions, if any).
func (h *harness) sentNow(d time.Duration) []sentMsg {
	h.clock.Advance(d)
	time.Sleep(20 * time.Millisecond)
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.sent
	h.sent = nil
	return out
}

// TestUnknownUsersLookLikeUnregistered: a scanner probing extensions gets
// the same answer, headers and all but the tags, for a subscriber who is
// not registered and for a name that is no subscriber; with
// RevealUnknownUsers the latter gets 404.
func TestUnknownUsersLookLikeUnregistered(t *testing.T) {
	h := newHarness(t, true, Options{})
	strip := func(r string) string {
		r = regexp.MustCompile(`(?m)^(To|From|Call-ID|CSeq|Via):.*\r\n`).ReplaceAllString(r, "")
		return r
	}
	for _, method := range []string{"INVITE", "OPTIONS", "MESSAGE"} {
		known := h.reply("127.0.0.1:7000", req(method, "sip:carol@example.com", "scanner@example.net", "carol@example.com", ""))
		unknown := h.reply("127.0.0.1:7000", req(method, "sip:nobody@example.com", "scanner@example.net", "nobody@example.com", ""))
		if strip(known) != strip(unknown) || status(known) != "480 Temporarily Unavailable" {
			t.Errorf("%s: unregistered subscriber %q, unknown name %q", method, known, unknown)
		}
	}
	h = newHarness(t, true, Options{RevealUnknownUsers: true})
	if r := h.reply("127.0.0.1:7000", req("INVITE", "sip:nobody@example.com", "scanner@example.net", "nobody@example.com", "")); status(r) != "404 Not Found" {
		t.Fatalf("RevealUnknownUsers: %s", r)
	}
	if r := h.reply("127.0.0.1:7000", req("INVITE", "sip:carol@example.com", "scanner@example.net", "carol@example.com", "")); status(r) != "480 Temporarily Unavailable" {
		t.Fatalf("RevealUnknownUsers, unregistered: %s", r)
	}
}

// TestRefusalsAreSingleAndStateless: a refused request gets one response
// and nothing more (no 100 Trying ahead, no retransmission of the final
// response while waiting for an ACK that a spoofed source never sends).
func TestRefusalsAreSingleAndStateless(t *testing.T) {
	h := newHarness(t, true, Options{})
	for _, c := range []struct{ name, msg, want string }{
		{"unknown user", req("INVITE", "sip:nobody@example.com", "someone@example.net", "nobody@example.com", ""), "480 Temporarily Unavailable"},
		{"relay", req("INVITE", "sip:x@127.0.0.2:5090", "someone@example.net", "x@127.0.0.2", ""), "403 Relay Forbidden"},
		{"preload elsewhere", req("INVITE", "sip:bob@example.com", "someone@example.net", "bob@example.com", "Route: <sip:127.0.0.3;lr>\r\n"), "403 Preload Route denied"},
		{"challenge", req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", ""), "407 Proxy Authentication Required"},
	} {
		h.reply("127.0.0.1:7000", c.msg)
		msgs := h.sentNow(0)
		msgs = append(msgs, h.sentNow(40*time.Second)...)
		if len(msgs) != 1 || status(msgs[0].data) != c.want {
			t.Errorf("%s: sent %d messages %+v, want one %s", c.name, len(msgs), msgs, c.want)
		}
	}
}

// TestOutboundProxyPreload: a phone configured with an outbound proxy
// preloads "Route: <sip:proxy;lr>" on REGISTER and INVITE; the proxy
// removes its own Route and handles the request as any other.
func TestOutboundProxyPreload(t *testing.T) {
	h := newHarness(t, true, Options{})
	const phone = "127.0.0.1:6000"
	route := "Route: <sip:127.0.0.1;lr>\r\n"
	r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", route))
	if status(r) != "401 Unauthorized" {
		t.Fatalf("REGISTER: %s", r)
	}
	r = h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		route+"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER with credentials: %s", r)
	}
	r = h.reply("127.0.0.1:6100", req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", route))
	if status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("INVITE: %s", r)
	}
	inv := h.send("127.0.0.1:6100", req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com",
		route+creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:bob@example.com")),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	if inv.dst != phone || strings.Contains(inv.data, "\r\nRoute:") {
		t.Fatalf("INVITE relayed to %s with our Route left in:\n%s", inv.dst, inv.data)
	}
	// OPTIONS keep-alive to the proxy through the outbound proxy setting.
	if r := h.reply(phone, req("OPTIONS", "sip:127.0.0.1", "bob@example.com", "127.0.0.1", route)); status(r) != "200 OK" {
		t.Fatalf("OPTIONS: %s", r)
	}
}

// TestInDialogNeedsOurSignedRoute: the attacks of an open relay. An
// in-dialog request is relayed only along the Record-Route the proxy
// signed for that dialog; a made-up Route, a Route copied from another
// call, or none at all gets 403 or 404 and nothing is sent to the address
// the attacker chose.
func TestInDialogNeedsOurSignedRoute(t *testing.T) {
	h := newHarness(t, true, Options{})
	const phone = "127.0.0.1:6000"
	r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	inv := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "someone@example.net", "bob@example.com", ""),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	rr := regexp.MustCompile(`Record-Route: (<[^>]+>)`).FindStringSubmatch(inv.data)[1]
	callID := regexp.MustCompile(`Call-ID: (\S+)`).FindStringSubmatch(inv.data)[1]
	fromTag := regexp.MustCompile(`From: <[^>]+>;tag=(\S+)`).FindStringSubmatch(inv.data)[1]

	inDialog := func(method, ruri, callID, route string) string {
		m := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-d%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:bob@example.com>;tag=b1\r\nTo: <sip:someone@example.net>;tag=%s\r\nCall-ID: %s\r\nCSeq: 2 %s\r\n",
			method, ruri, seq, fromTag, callID, method)
		seq++
		if route != "" {
			m += "Route: " + route + "\r\n"
		}
		return m + "Content-Length: 0\r\n\r\n"
	}
	// bob hangs up along the recorded route: relayed to the caller,
	// without the credentials for our realm his phone added.
	byeMsg := strings.Replace(inDialog("BYE", "sip:someone@127.0.0.1:7000", callID, rr), "Content-Length: 0",
		`Proxy-Authorization: Digest username="bob", realm="example.com", nonce="n", uri="sip:someone@127.0.0.1:7000", response="00"`+"\r\nContent-Length: 0", 1)
	bye := h.send(phone, byeMsg, func(s sentMsg) bool { return strings.HasPrefix(s.data, "BYE ") })
	if bye.dst != "127.0.0.1:7000" || strings.Contains(bye.data, "Proxy-Authorization") {
		t.Fatalf("BYE sent to %s:\n%s", bye.dst, bye.data)
	}
	const target = "127.0.0.1:25099"
	for _, c := range []struct{ name, msg, want string }{
		{"recorded Route reused for another Call-ID", inDialog("INVITE", "sip:+19005551234@"+target, "other-call", rr), "403 Forbidden Route"},
		{"Route to us, made up", inDialog("INVITE", "sip:+19005551234@"+target, callID, "<sip:127.0.0.1:5060;lr>"), "404 Not here"},
		{"Route to us, made-up signature", inDialog("BYE", "sip:x@"+target, callID, "<sip:127.0.0.1:5060;lr;sig=0123456789abcdef>"), "403 Forbidden Route"},
		{"Route to the target", inDialog("INVITE", "sip:+19005551234@"+target, callID, "<sip:"+target+";lr>"), "403 Forbidden Route"},
		{"no Route, TCP target (SSRF)", inDialog("MESSAGE", "sip:x@127.0.0.1:25555;transport=tcp", "ssrf", ""), "404 Not here"},
	} {
		r := h.reply("127.0.0.1:7777", c.msg)
		if status(r) != c.want {
			t.Errorf("%s: %s, want %s", c.name, status(r), c.want)
		}
		for _, m := range h.sentNow(0) {
			if m.dst != "127.0.0.1:7777" {
				t.Errorf("%s: something sent to %s:\n%s", c.name, m.dst, m.data)
			}
		}
	}
}
