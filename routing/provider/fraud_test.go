package provider

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/auth"
	"switchboard/modules/fraud"
	"switchboard/modules/registrar"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// newFraudHarness is newHarness with the fraud module built as the server
// builds it (settings: profile 1, UTC) and the given rules in the store.
func newFraudHarness(t *testing.T, rules ...store.FraudRule) (*harness, *fraud.Fraud) {
	h := &harness{t: t}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	h.clock = shards.NewManualClock(1_700_000_000_000)
	ctx := context.Background()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain(ctx, "example.com")
	for _, u := range []string{"alice", "bob", "0900555"} {
		if err := st.AddSubscriber(ctx, store.Subscriber{Username: u, Domain: "example.com", Password: u + "-pw"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rules {
		if _, err := st.AddFraudRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := registrar.New(registrar.Config{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{Store: st, Clock: h.clock, Secret: []byte("0123456789abcdef"), Algorithms: []string{auth.MD5}})
	if err != nil {
		t.Fatal(err)
	}
	settings := fraud.DefaultSettings()
	settings.Timezone = "UTC"
	set, err := modules.Build(modules.Services{Store: st, Clock: h.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		map[string]any{"fraud": settings}, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	perms := trustedGateways(t, st, h.clock) // 127.0.0.2 (UDP) is a trusted gateway
	t.Cleanup(func() { set.Stop(); perms.Stop(); a.Close(); reg.Close(); st.Close() })
	f := set.Get("fraud").(*fraud.Fraud)
	env := &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"}),
		Modules: map[string]any{"registrar": reg, "auth": a, "fraud": f, "permissions": perms.Get("permissions"),
			"provider": Options{TrustedGroup: 1}}}
	rs, _ := routing.Lookup("provider")
	rt, err := routing.NewRouter(rs, env)
	if err != nil {
		t.Fatal(err)
	}
	h.core, err = txn.New(txn.Config{Sender: h, Listeners: h, Router: rt, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.core.Close)
	return h, f
}

// call places an authenticated INVITE from user to ruri and returns the
// final answer, or "relayed".
func (h *harness) call(user, ruri string) string {
	h.t.Helper()
	to := strings.TrimPrefix(ruri, "sip:")
	r := h.reply("127.0.0.1:6100", req("INVITE", ruri, user+"@example.com", to, ""))
	if status(r) != "407 Proxy Authentication Required" {
		h.t.Fatalf("INVITE without credentials: %s", r)
	}
	s := h.send("127.0.0.1:6100", req("INVITE", ruri, user+"@example.com", to,
		creds(r, "Proxy-Authorization", user, user+"-pw", "INVITE", ruri)),
		func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "INVITE ") })
	if strings.HasPrefix(s.data, "INVITE ") {
		return "relayed"
	}
	return status(s.data)
}

func TestFraudLimits(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "0900", CPM: store.FraudLimit{Warning: 2, Critical: 3}})
	// A subscriber of ours whose name is a premium number (say, a service
	// line), registered.
	r := h.reply("127.0.0.1:6200", req("REGISTER", "sip:example.com", "0900555@example.com", "0900555@example.com", ""))
	r = h.reply("127.0.0.1:6200", req("REGISTER", "sip:example.com", "0900555@example.com", "0900555@example.com",
		"Contact: <sip:0900555@127.0.0.1:6200>\r\n"+creds(r, "Authorization", "0900555", "0900555-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	// Calls to another domain (a gateway) and to a served one are checked
	// (the latter once the location lookup found the callee): the third
	// call to 0900 within a minute is refused.
	for i, c := range []struct{ user, ruri, want string }{
		{"alice", "sip:0900123@127.0.0.2:5090", "relayed"},
		{"alice", "sip:0900555@example.com", "relayed"}, // warning: goes on
		{"alice", "sip:0900456@127.0.0.2:5090", "403 Forbidden"},
		{"alice", "sip:0900555@example.com", "403 Forbidden"},
		{"alice", "sip:0800123@127.0.0.2:5090", "relayed"}, // no rule for 0800
		{"bob", "sip:0900123@127.0.0.2:5090", "relayed"},   // bob has his own count
	} {
		if got := h.call(c.user, c.ruri); got != c.want {
			t.Fatalf("call %d, %s to %s: %s, want %s", i, c.user, c.ruri, got, c.want)
		}
	}
	ev := f.Events("", "")
	if len(ev) != 3 || ev[0].Level != "critical" || ev[0].User != "alice@example.com" || ev[0].Number != "0900555" || ev[2].Level != "warning" {
		t.Fatalf("events %+v", ev)
	}
	// Calls from outside (unauthenticated, to a subscriber) are not
	// checked: the caller is no subscriber of ours. Three in a minute all
	// go through.
	for i := 0; i < 3; i++ {
		h.send("127.0.0.1:7000", req("INVITE", "sip:0900555@example.com", "someone@example.net", "0900555@example.com", ""),
			func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	}
	// Nor are a trusted gateway's, whose From names our domain: it was not
	// authenticated, and the number in its From is no subscriber's.
	for i := 0; i < 3; i++ {
		h.send("127.0.0.2:5060", req("INVITE", "sip:0900555@example.com", "+4930123@example.com", "0900555@example.com", ""),
			func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	}
	if n := len(f.Events("", "")); n != 3 {
		t.Fatalf("%d events after calls from outside", n)
	}
}

// TestReusedCallIDRefused: a subscriber's INVITE with the Call-ID and From
// tag of her call in progress, to another number (a second call made to
// look like the first), was relayed and counted as the first call, past
// concurrent_calls_critical; it is answered 482 Loop Detected.
func TestReusedCallIDRefused(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 3}})
	const phone = "127.0.0.1:6100"
	// invite sends an authenticated INVITE to ruri with the Call-ID and
	// From tag of ids (a message req made; "" for new ones) and returns
	// the INVITE and what the proxy did.
	idRE := regexp.MustCompile(`Call-ID: (c\d+)\r\n`)
	tagRE := regexp.MustCompile(`;tag=(f\d+)\r\n`)
	invite := func(ruri, ids string) (string, string) {
		t.Helper()
		to := strings.TrimPrefix(ruri, "sip:")
		same := func(m string) string {
			if ids == "" {
				return m
			}
			m = idRE.ReplaceAllString(m, "Call-ID: "+idRE.FindStringSubmatch(ids)[1]+"\r\n")
			return tagRE.ReplaceAllString(m, ";tag="+tagRE.FindStringSubmatch(ids)[1]+"\r\n")
		}
		r := h.reply(phone, same(req("INVITE", ruri, "alice@example.com", to, "")))
		if status(r) != "407 Proxy Authentication Required" {
			t.Fatalf("INVITE without credentials: %s", r)
		}
		m := same(req("INVITE", ruri, "alice@example.com", to, creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", ruri)))
		s := h.send(phone, m, func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "INVITE ") })
		if strings.HasPrefix(s.data, "INVITE ") {
			return m, "relayed"
		}
		return m, status(s.data)
	}
	first, got := invite("sip:0900100@127.0.0.2:5090", "")
	if got != "relayed" {
		t.Fatalf("the first call: %s", got)
	}
	for _, n := range []string{"101", "102", "103"} {
		if _, got := invite("sip:0900"+n+"@127.0.0.2:5090", first); got != "482 Loop Detected" {
			t.Fatalf("a call to 0900%s on the first one's Call-ID and From tag: %s, want 482 Loop Detected", n, got)
		}
	}
	if st := f.Stats("alice@example.com"); len(st) != 1 || st[0].ConcurrentCalls != 1 {
		t.Fatalf("counted %+v, want 1 call", st)
	}
}

// TestForgedSpiralRefused: bob, whose phone rings with alice's call,
// has her INVITE as it reached him, our Via in it with the branch it was
// relayed on. INVITEs of his own, authenticated as bob, to 0900 numbers,
// with her call's Call-ID and From tag and her INVITE's Vias under his
// own, were each taken for her INVITE coming back through the proxy (a
// spiral) and relayed uncounted: four of bob's calls past his
// concurrent_calls_critical 3, counted for no one. A spiral is the call's
// only when it has the call's caller: bob's are answered 482 Loop
// Detected, alice's call counted once, bob's none.
func TestForgedSpiralRefused(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "", ConcurrentCalls: store.FraudLimit{Critical: 10}},
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 3}})
	const bobPhone = "127.0.0.1:6200"
	if r := registerBob(t, h, bobPhone, "sip:bob@"+bobPhone); status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	ringing := aliceDials(h, "sip:bob@example.com", "").data
	if !strings.HasPrefix(ringing, "INVITE sip:bob@"+bobPhone) {
		t.Fatalf("alice's call to bob: %s", ringing)
	}
	callID := regexp.MustCompile(`Call-ID: (c\d+)\r\n`).FindStringSubmatch(ringing)[1]
	tag := regexp.MustCompile(`;tag=(f\d+)\r\n`).FindStringSubmatch(ringing)[1]
	var vias strings.Builder
	for _, line := range strings.Split(ringing, "\r\n") {
		if strings.HasPrefix(line, "Via:") {
			vias.WriteString(line + "\r\n")
		}
	}
	for n := 1; n <= 4; n++ {
		ruri := fmt.Sprintf("sip:0900%03d@127.0.0.2:5090", n)
		forged := func(creds string) string {
			m := req("INVITE", ruri, "bob@example.com", strings.TrimPrefix(ruri, "sip:"), "Contact: <sip:bob@"+bobPhone+">\r\n"+creds)
			m = regexp.MustCompile(`Call-ID: c\d+\r\n`).ReplaceAllString(m, "Call-ID: "+callID+"\r\n")
			m = regexp.MustCompile(`;tag=f\d+\r\n`).ReplaceAllString(m, ";tag="+tag+"\r\n")
			return strings.Replace(m, ";rport\r\n", ";rport\r\n"+vias.String(), 1)
		}
		r := h.reply(bobPhone, forged(""))
		if status(r) != "407 Proxy Authentication Required" {
			t.Fatalf("bob's INVITE %d without credentials: %s", n, r)
		}
		s := h.send(bobPhone, forged(creds(r, "Proxy-Authorization", "bob", "bob-pw", "INVITE", ruri)), finalOrRequest)
		if got := status(s.data); got != "482 Loop Detected" {
			t.Fatalf("bob's INVITE %d to %s on alice's Call-ID and From tag with her Vias: %q, want 482 Loop Detected",
				n, ruri, strings.SplitN(s.data, "\r\n", 2)[0])
		}
	}
	if st := f.Stats("alice@example.com"); len(st) != 1 || st[0].ConcurrentCalls != 1 {
		t.Fatalf("alice counted %+v, want her 1 call", st)
	}
	for _, st := range f.Stats("bob@example.com") {
		if st.ConcurrentCalls != 0 {
			t.Fatalf("bob counted %+v, want none", st)
		}
	}
}
