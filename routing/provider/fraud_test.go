package provider

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/auth"
	"switchboard/modules/dialog"
	"switchboard/modules/fraud"
	"switchboard/modules/registrar"
	"switchboard/modules/topohiding"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// newFraudHarness is newHarness with the fraud module built as the server
// builds it (settings: profile 1, UTC) and the given rules in the store.
func newFraudHarness(t *testing.T, rules ...store.FraudRule) (*harness, *fraud.Fraud) {
	return newFraudHarnessWith(t, nil, rules...)
}

// newFraudHarnessWith is newFraudHarness with the dialog module's
// settings (nil: its defaults).
func newFraudHarnessWith(t *testing.T, dlgSettings *dialog.Settings, rules ...store.FraudRule) (*harness, *fraud.Fraud) {
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
	// The dialog module too, as the server has it (with its defaults):
	// the fraud limits count concurrent calls by their dialogs.
	mods := map[string]any{"fraud": settings}
	if dlgSettings != nil {
		mods["dialog"] = dlgSettings
	}
	set, err := modules.Build(modules.Services{Store: st, Clock: h.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		mods, "fraud", "dialog")
	if err != nil {
		t.Fatal(err)
	}
	perms := trustedGateways(t, st, h.clock) // 127.0.0.2 (UDP) is a trusted gateway
	t.Cleanup(func() { set.Stop(); perms.Stop(); a.Close(); reg.Close(); st.Close() })
	f := set.Get("fraud").(*fraud.Fraud)
	h.dlg = set.Get("dialog").(*dialog.Dialog)
	env := &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"}),
		Modules: map[string]any{"registrar": reg, "auth": a, "fraud": f, "dialog": h.dlg, "permissions": perms.Get("permissions"),
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
	set.SetCore(h.core)
	if err := set.Start(); err != nil {
		t.Fatal(err)
	}
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

// concurrentOf is user's count of calls in progress under the rule of
// prefix.
func concurrentOf(f *fraud.Fraud, user, prefix string) int32 {
	for _, s := range f.Stats(user) {
		if s.Prefix == prefix {
			return s.ConcurrentCalls
		}
	}
	return 0
}

// respondWith is the callee's response to a relayed INVITE with its To
// tag, our Record-Route and its Contact.
func respondWith(t *testing.T, inv sentMsg, code int, tag, contact string) string {
	t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(inv.data)); err != nil {
		t.Fatal(err)
	}
	extra := "Record-Route: " + headerValue(inv.data, "Record-Route") + "\r\nContact: <" + contact + ">\r\n"
	return string(parser.AppendResponseHeaders(nil, &m, code, nil, []byte(tag), []byte(extra)))
}

// byeOf is a BYE on the Route of the call of INVITE inv (our signed
// Record-Route), addressed to ruri, with the From and To given (the
// call's Call-ID), sent from src.
func byeOf(inv sentMsg, src, ruri, from, to string) string {
	seq++
	return fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-bye%d\r\nMax-Forwards: 70\r\n"+
		"Route: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d BYE\r\nContent-Length: 0\r\n\r\n",
		ruri, src, seq, headerValue(inv.data, "Record-Route"), from, to, headerValue(inv.data, "Call-ID"), 100+seq)
}

// TestForgedByeKeepsConcurrentCount: with the fraud limits alone (no
// accounting, topology hiding or session timers) calls had no dialog,
// and any BYE on a call's signed Route freed its place under
// concurrent_calls_critical, wherever it went: alice, with a limit of 3
// (two calls up, the third refused), sent for each of her answered calls
// a BYE with its Call-ID and her From tag, another To tag, addressed to
// herself, and for a call still ringing a BYE with the callee's early To
// tag: both calls stayed up with her count at 0, and she could have any
// number up. Her calls now get dialogs: a BYE frees the place only when
// it ends the call's dialog, so both forged BYEs are relayed as
// addressed, to her, end nothing, and her third call gets 403. Her BYE
// with the call's own tags addressed to herself goes to the callee at
// its Contact (FixRouteDialog) and ends the call for both, freeing its
// place, as does the callee's BYE of the other call.
func TestForgedByeKeepsConcurrentCount(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 3}})
	const alicePhone, aliceContact, gw = "127.0.0.1:6100", "sip:x@127.0.0.1:5062", "127.0.0.2:5090"
	const alice = "alice@example.com"
	dial := func(n string) sentMsg {
		t.Helper()
		return aliceDials(h, "sip:0900"+n+"@"+gw, "")
	}
	isBye := func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "BYE ") }
	callee := func(inv sentMsg, tag string) string {
		return "<" + strings.Fields(inv.data)[1] + ">;tag=" + tag
	}

	// An answered call, and a BYE with another To tag addressed to her.
	inv1 := dial("100")
	if inv1.dst != gw || !isINVITE(inv1) {
		t.Fatalf("call 1: %s %q", inv1.dst, strings.SplitN(inv1.data, "\r\n", 2)[0])
	}
	if up := h.send(gw, respondWith(t, inv1, 200, "gw1", "sip:0900100@"+gw), final); status(up.data) != "200 OK" {
		t.Fatalf("call 1's 200 upstream: %+v", up)
	}
	s := h.send(alicePhone, byeOf(inv1, alicePhone, aliceContact, headerValue(inv1.data, "From"), callee(inv1, "other")), isBye)
	if s.dst != "127.0.0.1:5062" || !strings.HasPrefix(s.data, "BYE "+aliceContact+" ") {
		t.Fatalf("her BYE of call 1 with another To tag, addressed to herself: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	// A call ringing, and her BYE with the callee's early tag addressed
	// to her; then it is answered.
	inv2 := dial("101")
	if inv2.dst != gw || !isINVITE(inv2) {
		t.Fatalf("call 2: %s %q", inv2.dst, strings.SplitN(inv2.data, "\r\n", 2)[0])
	}
	h.send(gw, respondWith(t, inv2, 180, "gw2", "sip:0900101@"+gw), func(s sentMsg) bool { return strings.HasPrefix(s.data, "SIP/2.0 180") })
	s = h.send(alicePhone, byeOf(inv2, alicePhone, aliceContact, headerValue(inv2.data, "From"), callee(inv2, "gw2")), isBye)
	if s.dst != "127.0.0.1:5062" || !strings.HasPrefix(s.data, "BYE "+aliceContact+" ") {
		t.Fatalf("her early BYE of call 2 addressed to herself: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if up := h.send(gw, respondWith(t, inv2, 200, "gw2", "sip:0900101@"+gw), final); status(up.data) != "200 OK" {
		t.Fatalf("call 2's 200 upstream: %+v", up)
	}
	if n := concurrentOf(f, alice, "0900"); n != 2 {
		t.Fatalf("alice has %d calls in progress after the forged BYEs, want 2", n)
	}
	if s := dial("102"); status(s.data) != "403 Forbidden" {
		t.Fatalf("her third call, two up: %s %q, want 403 Forbidden", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}

	// Her BYE of call 1 with its tags, addressed to herself: to the
	// callee's Contact, and the call ends.
	s = h.send(alicePhone, byeOf(inv1, alicePhone, aliceContact, headerValue(inv1.data, "From"), callee(inv1, "gw1")), isBye)
	if s.dst != gw || !strings.HasPrefix(s.data, "BYE sip:0900100@"+gw+" ") {
		t.Fatalf("her BYE of call 1 addressed to herself: %s %q, want it at the callee", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if n := concurrentOf(f, alice, "0900"); n != 1 {
		t.Fatalf("alice has %d calls in progress after call 1's BYE, want 1", n)
	}
	inv4 := dial("103")
	if !isINVITE(inv4) {
		t.Fatalf("her call after call 1 ended: %q", strings.SplitN(inv4.data, "\r\n", 2)[0])
	}
	// The callee hangs up call 2.
	s = h.send(gw, byeOf(inv2, gw, aliceContact, callee(inv2, "gw2"), headerValue(inv2.data, "From")), isBye)
	if s.dst != "127.0.0.1:5062" || !strings.HasPrefix(s.data, "BYE ") {
		t.Fatalf("the callee's BYE of call 2: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if n := concurrentOf(f, alice, "0900"); n != 1 {
		t.Fatalf("alice has %d calls in progress after the callee's BYE, want 1 (call 4 ringing)", n)
	}
}

// TestHiddenEarlyByeKeepsConcurrentCount: with topohiding.calls, a
// hidden call's requests come to the proxy's Contact, and any BYE
// topology hiding matched freed the caller's place under
// concurrent_calls_critical: alice's BYE while bob's phone rang, with its
// early To tag, was relayed to bob's phone and freed it, and bob's
// phone, answering anyway, had her call up uncounted. A BYE now frees it
// only when it ends the call's dialog: her early BYE reaches bob and ends
// nothing, her next call gets 403 while this one is up, and her BYE of
// the answered call frees the place.
func TestHiddenEarlyByeKeepsConcurrentCount(t *testing.T) {
	var f *fraud.Fraud
	all := topohiding.DefaultSettings()
	all.Calls = true
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withTopohiding(t, all, withFraud(t, &f,
		store.FraudRule{Profile: 1, Prefix: "", ConcurrentCalls: store.FraudLimit{Critical: 2}})))
	const bobPhone, alicePhone = "127.0.0.1:6000", "127.0.0.1:6100"
	if r := registerBob(t, h, bobPhone, "sip:bob@"+bobPhone); status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	isBye := func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "BYE ") }
	inv := aliceDials(h, "sip:bob@example.com", "")
	if inv.dst != bobPhone || !hidden(inv.data, true, alicePhone) {
		t.Fatalf("alice's call to bob: %s\n%s", inv.dst, inv.data)
	}
	ringing := h.send(bobPhone, respondWith(t, inv, 180, "b1", "sip:bob@"+bobPhone), func(s sentMsg) bool { return strings.HasPrefix(s.data, "SIP/2.0 180") })
	contact := strings.Trim(hdr(ringing.data, "Contact"), "<>")
	from, to := hdr(ringing.data, "From"), hdr(ringing.data, "To")
	if !strings.Contains(contact, "thinfo=") || !strings.Contains(to, "tag=b1") {
		t.Fatalf("the 180 to alice: %s", ringing.data)
	}
	bye := func() string {
		seq++
		return "BYE " + contact + " SIP/2.0\r\nVia: SIP/2.0/UDP " + alicePhone + ";branch=z9hG4bK-hb" + strconv.Itoa(seq) + "\r\nMax-Forwards: 70\r\n" +
			"From: " + from + "\r\nTo: " + to + "\r\nCall-ID: " + hdr(ringing.data, "Call-ID") + "\r\nCSeq: " + strconv.Itoa(100+seq) + " BYE\r\nContent-Length: 0\r\n\r\n"
	}
	if s := h.send(alicePhone, bye(), isBye); s.dst != bobPhone || !strings.HasPrefix(s.data, "BYE sip:bob@"+bobPhone+" ") {
		t.Fatalf("alice's early BYE: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if n := concurrent(f); n != 1 {
		t.Fatalf("alice has %d calls in progress after her early BYE, want 1", n)
	}
	if up := h.send(bobPhone, respondWith(t, inv, 200, "b1", "sip:bob@"+bobPhone), final); status(up.data) != "200 OK" {
		t.Fatalf("bob's 200 upstream: %+v", up)
	}
	if s := aliceDials(h, "sip:bob@example.com", ""); status(s.data) != "403 Forbidden" {
		t.Fatalf("alice's second call, one up: %s %q, want 403 Forbidden", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if s := h.send(alicePhone, bye(), isBye); s.dst != bobPhone || !strings.HasPrefix(s.data, "BYE ") {
		t.Fatalf("alice's BYE: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if n := concurrent(f); n != 0 {
		t.Fatalf("alice has %d calls in progress after her BYE of the answered call, want 0", n)
	}
	if s := aliceDials(h, "sip:bob@example.com", ""); !isINVITE(s) {
		t.Fatalf("alice's call once the first ended: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}

// oneCallAtATime is the fraud harness with a rule allowing alice one
// call to 0900 at a time (concurrent_calls_critical 2: the second call
// in progress is refused) and dialogs timed out after a minute. up
// places a call of hers, answered, and checks that her next call gets
// 403 meanwhile; free checks that no dialog is left and her place is
// free.
func oneCallAtATime(t *testing.T) (h *harness, up func(tag string) sentMsg, free func(after string)) {
	ds := dialog.DefaultSettings()
	ds.DefaultTimeout = time.Minute
	h, f := newFraudHarnessWith(t, ds,
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 2}})
	const gw, alice = "127.0.0.2:5090", "alice@example.com"
	n := 100
	up = func(tag string) sentMsg {
		t.Helper()
		n++
		inv := aliceDials(h, fmt.Sprintf("sip:0900%d@%s", n, gw), "")
		if inv.dst != gw || !isINVITE(inv) {
			t.Fatalf("call %s: %s %q", tag, inv.dst, strings.SplitN(inv.data, "\r\n", 2)[0])
		}
		if s := h.send(gw, respondWith(t, inv, 200, tag, fmt.Sprintf("sip:0900%d@%s", n, gw)), final); status(s.data) != "200 OK" {
			t.Fatalf("call %s's 200 upstream: %+v", tag, s)
		}
		if c := concurrentOf(f, alice, "0900"); c != 1 {
			t.Fatalf("alice has %d calls in progress with call %s up, want 1", c, tag)
		}
		if s := aliceDials(h, "sip:0900999@"+gw, ""); status(s.data) != "403 Forbidden" {
			t.Fatalf("a call while call %s is up: %s %q, want 403 Forbidden", tag, s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
		}
		return inv
	}
	free = func(after string) {
		t.Helper()
		if l := h.dlg.List("", 0); len(l) != 0 {
			t.Fatalf("dialogs after %s: %+v", after, l)
		}
		if c := concurrentOf(f, alice, "0900"); c != 0 {
			t.Fatalf("alice has %d calls in progress after %s, want 0", c, after)
		}
	}
	return h, up, free
}

// isProxyBye is a BYE of the proxy's own (a dialog's timeout, dialog.end).
func isProxyBye(s sentMsg) bool {
	return strings.HasPrefix(s.data, "BYE ") && strings.Contains(s.data, "dialog ended by the proxy")
}

// sentSoon waits until n messages want matches were sent since the last
// send: the dialog module sends its BYEs and CANCELs from a goroutine of
// its own.
func (h *harness) sentSoon(n int, want func(sentMsg) bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		h.mu.Lock()
		for _, s := range h.sent {
			if want(s) {
				got++
			}
		}
		sent := h.sent
		h.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d of %d messages sent; sent: %+v", got, n, sent)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDialogTimeoutFreesConcurrentCount: a call counted under
// concurrent_calls_critical has a dialog, and only a BYE that ended it
// freed its place. A dialog the proxy ends at its timeout
// (dialog.default_timeout, a route's SetTimeout: a prepaid limit) is
// ended with the proxy's own BYEs: no BYE of the parties passes through
// the route, and the caller's place stayed counted until
// fraud.call_timeout (4 h): alice, allowed one call at a time, was
// refused every call for hours after her call was cut. The dialog's end,
// whatever ended it, now frees the place: her next call is relayed.
func TestDialogTimeoutFreesConcurrentCount(t *testing.T) {
	h, up, free := oneCallAtATime(t)
	up("t1")
	h.clock.Advance(61 * time.Second)
	h.sentSoon(2, isProxyBye) // a BYE each way
	free("the dialog's timeout")
	up("t2")
}

// TestDialogEndFreesConcurrentCount: a call ended from the management
// API (dialog.end, switchboard dialog end) frees its caller's place, as
// its timeout does.
func TestDialogEndFreesConcurrentCount(t *testing.T) {
	h, up, free := oneCallAtATime(t)
	up("m1")
	l := h.dlg.List("", 0)
	if len(l) != 1 {
		t.Fatalf("dialogs: %+v", l)
	}
	if _, err := h.dlg.End(l[0].ID); err != nil {
		t.Fatal(err)
	}
	h.sentSoon(2, isProxyBye)
	free("dialog.end")
	up("m2")
}

// TestByeFreesConcurrentCountOnce: the callee's BYE ends the dialog,
// which frees the place once: the next call counts 1 (its own) and the
// one after it gets 403; its BYE frees it in turn.
func TestByeFreesConcurrentCountOnce(t *testing.T) {
	h, up, free := oneCallAtATime(t)
	const gw = "127.0.0.2:5090"
	for _, tag := range []string{"b1", "b2", "b3"} {
		inv := up(tag) // the call before ended: counted 1, the next gets 403
		s := h.send(gw, byeOf(inv, gw, "sip:x@127.0.0.1:5062", "<"+strings.Fields(inv.data)[1]+">;tag="+tag, headerValue(inv.data, "From")),
			func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "BYE ") })
		if s.dst != "127.0.0.1:5062" || !strings.HasPrefix(s.data, "BYE ") {
			t.Fatalf("the callee's BYE of call %s: %s %q", tag, s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
		}
		free("the callee's BYE of call " + tag)
	}
}

// TestUnansweredCallFreedOnce: a call that is never answered is freed
// by its INVITE's failure and its early dialog ends with it: once, both
// when the callee refuses it (486) and when the dialog's timeout cancels
// it while it rings. The next call counts 1, its own, and the one after
// it gets 403.
func TestUnansweredCallFreedOnce(t *testing.T) {
	h, up, free := oneCallAtATime(t)
	const gw = "127.0.0.2:5090"
	ringing := func(n string) sentMsg {
		t.Helper()
		inv := aliceDials(h, "sip:0900"+n+"@"+gw, "")
		if inv.dst != gw || !isINVITE(inv) {
			t.Fatalf("call %s: %s %q", n, inv.dst, strings.SplitN(inv.data, "\r\n", 2)[0])
		}
		h.send(gw, respondWith(t, inv, 180, "r"+n, "sip:0900"+n+"@"+gw), func(s sentMsg) bool { return strings.HasPrefix(s.data, "SIP/2.0 180") })
		return inv
	}
	inv := ringing("200")
	if s := h.send(gw, respondWith(t, inv, 486, "r200", "sip:0900200@"+gw), final); status(s.data) != "486 Busy Here" {
		t.Fatalf("the 486 upstream: %+v", s)
	}
	free("the callee's 486")
	up("u1")
	h.clock.Advance(61 * time.Second) // u1's dialog times out too: a BYE each way
	h.sentSoon(2, isProxyBye)
	free("u1's timeout")

	inv = ringing("201")
	h.clock.Advance(61 * time.Second)
	h.sentSoon(1, func(s sentMsg) bool { return s.dst == gw && strings.HasPrefix(s.data, "CANCEL ") })
	free("the ringing dialog's timeout")
	if s := h.send(gw, respondWith(t, inv, 487, "r201", "sip:0900201@"+gw), final); status(s.data) != "487 Request Terminated" {
		t.Fatalf("the 487 upstream: %+v", s)
	}
	free("the 487")
	up("u2")
}

// TestForgedByeWithoutDialogKeepsCount: a call counted under a
// concurrent limit is freed by its dialog's end alone. A BYE on the
// signed Route of another call of alice's with the same Call-ID (to a
// number without a rule: no dialog, its Route without a dialog id),
// carrying the counted call's From tag and the other call's as To tag,
// verifies (the signature covers the Call-ID and either tag), names no
// dialog, and was taken for the BYE of a call without one: it freed the
// counted call's place while that call went on. It frees nothing now:
// alice's next call still gets 403.
func TestForgedByeWithoutDialogKeepsCount(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 2}})
	const gw, alicePhone = "127.0.0.2:5090", "127.0.0.1:6100"
	const alice = "alice@example.com"
	inv := aliceDials(h, "sip:0900100@"+gw, "")
	if inv.dst != gw || !isINVITE(inv) || !strings.Contains(headerValue(inv.data, "Record-Route"), ";did=") {
		t.Fatalf("the counted call: %s %q", inv.dst, inv.data)
	}
	if s := h.send(gw, respondWith(t, inv, 200, "gw1", "sip:0900100@"+gw), final); status(s.data) != "200 OK" {
		t.Fatalf("its 200 upstream: %+v", s)
	}
	// Another call on the same Call-ID, with a From tag of its own, to
	// 0800: no rule, no dialog.
	callID := headerValue(inv.data, "Call-ID")
	sameCallID := func(m string) string {
		return regexp.MustCompile(`Call-ID: c\d+\r\n`).ReplaceAllString(m, "Call-ID: "+callID+"\r\n")
	}
	r := h.reply(alicePhone, sameCallID(req("INVITE", "sip:0800100@"+gw, alice, "0800100@"+gw, "")))
	other := h.send(alicePhone, sameCallID(req("INVITE", "sip:0800100@"+gw, alice, "0800100@"+gw,
		creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:0800100@"+gw))), finalOrRequest)
	if !isINVITE(other) || strings.Contains(headerValue(other.data, "Record-Route"), ";did=") {
		t.Fatalf("the call to 0800: %q", other.data)
	}
	otherTag := regexp.MustCompile(`;tag=(f\d+)`).FindStringSubmatch(headerValue(other.data, "From"))[1]
	forged := byeOf(other, alicePhone, "sip:0800100@"+gw, headerValue(inv.data, "From"), "<sip:0800100@"+gw+">;tag="+otherTag)
	if s := h.send(alicePhone, forged, finalOrRequest); !strings.HasPrefix(s.data, "BYE ") {
		t.Fatalf("the forged BYE: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if c := concurrentOf(f, alice, "0900"); c != 1 {
		t.Fatalf("alice has %d calls in progress after the forged BYE, want 1", c)
	}
	if s := aliceDials(h, "sip:0900101@"+gw, ""); status(s.data) != "403 Forbidden" {
		t.Fatalf("her next call, the counted one up: %s %q, want 403 Forbidden", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}

// TestUnkeptAnswerKeepsCount: a 2xx the dialog cannot keep (a To tag
// over 1 KiB) ends the dialog at once while the call goes on; that end
// is not the call's, and its place stays counted (until
// fraud.call_timeout): a callee answering so cannot have the caller's
// calls go uncounted.
func TestUnkeptAnswerKeepsCount(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 2}})
	const gw = "127.0.0.2:5090"
	inv := aliceDials(h, "sip:0900100@"+gw, "")
	if inv.dst != gw || !isINVITE(inv) {
		t.Fatalf("the call: %s %q", inv.dst, strings.SplitN(inv.data, "\r\n", 2)[0])
	}
	if s := h.send(gw, respondWith(t, inv, 200, strings.Repeat("g", 1100), "sip:0900100@"+gw), final); status(s.data) != "200 OK" {
		t.Fatalf("its 200 upstream: %+v", s)
	}
	if l := h.dlg.List("", 0); len(l) != 0 {
		t.Fatalf("dialogs after the unkept 2xx: %+v", l)
	}
	if c := concurrentOf(f, "alice@example.com", "0900"); c != 1 {
		t.Fatalf("alice has %d calls in progress, want 1", c)
	}
	if s := aliceDials(h, "sip:0900101@"+gw, ""); status(s.data) != "403 Forbidden" {
		t.Fatalf("her next call: %s %q, want 403 Forbidden", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}

// TestByeAsCalleeEndsCallAtCallee: alice's BYE of her answered call with
// the tags swapped, as the callee would send it (From with the callee's
// tag, To with hers), sent from her own phone and addressed to herself.
// To the dialog it is the callee's BYE to the caller, going to the
// caller's target: it ended the dialog and freed her place under
// concurrent_calls_critical, while the gateway got no BYE and the call
// went on there, billed by the carrier, with her count at 0 and the
// call's record written as ended. A BYE that ends a dialog but does not
// come from the address of the side it claims (the callee's: the gateway
// the call was relayed to) now has the proxy send its own BYE to that
// side: the call ends at the gateway too, and the place it frees is that
// of a call that ended. The gateway's own BYE gets no second one.
func TestByeAsCalleeEndsCallAtCallee(t *testing.T) {
	h, f := newFraudHarness(t,
		store.FraudRule{Profile: 1, Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 2}})
	const alicePhone, aliceContact, gw = "127.0.0.1:6100", "sip:x@127.0.0.1:5062", "127.0.0.2:5090"
	const alice = "alice@example.com"
	call := func(n string) (inv sentMsg, calleeSide string) {
		t.Helper()
		inv = aliceDials(h, "sip:0900"+n+"@"+gw, "")
		if inv.dst != gw || !isINVITE(inv) {
			t.Fatalf("her call: %s %q", inv.dst, strings.SplitN(inv.data, "\r\n", 2)[0])
		}
		if up := h.send(gw, respondWith(t, inv, 200, "gw"+n, "sip:0900"+n+"@"+gw), final); status(up.data) != "200 OK" {
			t.Fatalf("the 200 upstream: %+v", up)
		}
		return inv, "<" + strings.Fields(inv.data)[1] + ">;tag=gw" + n
	}
	byeAtGateway := func(s sentMsg) bool { return s.dst == gw && strings.HasPrefix(s.data, "BYE ") }

	inv, calleeSide := call("100")
	s := h.send(alicePhone, byeOf(inv, alicePhone, aliceContact, calleeSide, headerValue(inv.data, "From")), byeAtGateway)
	if !strings.HasPrefix(s.data, "BYE sip:0900100@"+gw+" ") || !strings.Contains(s.data, "tag=gw100") {
		t.Fatalf("the BYE to the gateway after hers posing as the callee:\n%s", s.data)
	}
	if n := concurrentOf(f, alice, "0900"); n != 0 {
		t.Fatalf("alice has %d calls in progress once the call ended at both ends, want 0", n)
	}

	// The gateway's own BYE of another call: relayed to her, and the
	// gateway gets nothing more.
	inv, calleeSide = call("101")
	s = h.send(gw, byeOf(inv, gw, aliceContact, calleeSide, headerValue(inv.data, "From")), func(s sentMsg) bool { return strings.HasPrefix(s.data, "BYE ") })
	if s.dst != "127.0.0.1:5062" {
		t.Fatalf("the gateway's BYE: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	time.Sleep(100 * time.Millisecond)
	h.mu.Lock()
	for _, m := range h.sent {
		if byeAtGateway(m) {
			t.Errorf("a BYE went back to the gateway after its own:\n%s", m.data)
		}
	}
	h.mu.Unlock()
	if n := concurrentOf(f, alice, "0900"); n != 0 {
		t.Fatalf("alice has %d calls in progress after the gateway's BYE, want 0", n)
	}
}
