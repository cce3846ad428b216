package provider

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/dialplan"
	"switchboard/modules/drouting"
	"switchboard/shards"
	"switchboard/store"
)

// withDrouting builds the drouting module, as the server does, on a store
// of its own with two gateways (127.0.0.7:5070 and 127.0.0.8:5070, the
// second with the prefix 00 after stripping the '+') and the rules of
// group 0: +49 to both, +1 to the first, +44 to a gateway that is disabled.
func withDrouting(t *testing.T) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		ctx := context.Background()
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(st.AddDRGateways(ctx, []store.DRGateway{
			{GWID: "gw1", Address: "127.0.0.7:5070"},
			{GWID: "gw2", Address: "127.0.0.8:5070", Strip: 1, PriPrefix: "00"},
			{GWID: "off", Address: "127.0.0.9:5070", State: 1},
		}, false))
		must(st.AddDRRules(ctx, []store.DRRule{
			{Groups: "0", Prefix: "+49", GWList: "gw1,gw2"},
			{Groups: "0", Prefix: "+1", GWList: "gw1"},
			{Groups: "0", Prefix: "+44", GWList: "off"},
		}, false))
		s := drouting.DefaultSettings()
		s.Timezone = "UTC"
		set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			map[string]any{"drouting": s}, "drouting")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		return map[string]any{"drouting": set.Get("drouting")}
	}
}

// TestCallsToThePSTN: an authenticated subscriber's call to a number that
// is no subscriber goes to the gateway of the longest matching prefix,
// and on a 503 to the next one; a subscriber who is not registered still
// gets 480; a number no rule matches gets the 480 of an unknown user; a
// rule whose gateways are all disabled, 503. Calls from outside and from
// a gateway never go out to the PSTN; a gateway's call to a subscriber
// needs no credentials (is_from_gw).
func TestCallsToThePSTN(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withDrouting(t))
	const alice = "127.0.0.1:6100"
	isInvite := func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") }
	// call sends alice's INVITE to ruri, answering the 407, and returns
	// what was sent that matches want.
	call := func(ruri string, want func(sentMsg) bool) sentMsg {
		t.Helper()
		to := strings.TrimPrefix(ruri, "sip:")
		r := h.reply(alice, req("INVITE", ruri, "alice@example.com", to, ""))
		if status(r) != "407 Proxy Authentication Required" {
			t.Fatalf("%s without credentials: %s", ruri, r)
		}
		return h.send(alice, req("INVITE", ruri, "alice@example.com", to,
			creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", ruri)), want)
	}

	inv := call("sip:+4930123@example.com", isInvite)
	if inv.dst != "127.0.0.7:5070" || !strings.HasPrefix(inv.data, "INVITE sip:+4930123@127.0.0.7:5070 SIP/2.0\r\n") ||
		!strings.Contains(inv.data, "Record-Route: ") || strings.Contains(inv.data, "Proxy-Authorization") {
		t.Fatalf("call to +4930123: %+v", inv)
	}
	// gw1 answers 503: the call moves to gw2, with its strip and prefix.
	h.mu.Lock()
	h.sent = nil
	h.mu.Unlock()
	next := h.send("127.0.0.7:5070", respond(inv.data, 503), isInvite)
	if next.dst != "127.0.0.8:5070" || !strings.HasPrefix(next.data, "INVITE sip:004930123@127.0.0.8:5070 SIP/2.0\r\n") {
		t.Fatalf("after gw1's 503: %+v", next)
	}
	up := h.send("127.0.0.8:5070", respond(next.data, 200), func(s sentMsg) bool { return s.dst == alice && strings.HasPrefix(s.data, "SIP/2.0 200") })
	if up.data == "" {
		t.Fatal("no 200 to alice")
	}

	for _, c := range []struct{ ruri, want string }{
		{"sip:carol@example.com", "480 Temporarily Unavailable"}, // a subscriber, not registered
		{"sip:+3312345@example.com", "480 Temporarily Unavailable"},
		{"sip:dave@example.com", "480 Temporarily Unavailable"},
		{"sip:+44207@example.com", "503 No Gateway Available"},
	} {
		if r := call(c.ruri, final); status(r.data) != c.want {
			t.Errorf("%s: %s, want %s", c.ruri, status(r.data), c.want)
		}
	}

	// From outside, and from a gateway: no PSTN.
	for _, src := range []string{"127.0.0.1:7000", "127.0.0.7:5070"} {
		r := h.reply(src, req("INVITE", "sip:+12025550100@example.com", "+4930999@example.net", "+12025550100@example.com", ""))
		if status(r) != "480 Temporarily Unavailable" {
			t.Errorf("from %s: %s", src, status(r))
		}
	}
	// A gateway's call to a registered subscriber, with a number at our
	// domain in From: no challenge (is_from_gw), delivered.
	r := h.reply("127.0.0.1:6000", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	r = h.reply("127.0.0.1:6000", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	if inv := h.send("127.0.0.8:40000", req("INVITE", "sip:bob@example.com", "+4930999@example.com", "bob@example.com", ""), isInvite); inv.dst != "127.0.0.1:6000" {
		t.Fatalf("gateway's call to bob: %+v", inv)
	}
	// The same From from an address that is no gateway is challenged.
	if r := h.reply("127.0.0.6:5070", req("INVITE", "sip:bob@example.com", "+4930999@example.com", "bob@example.com", "")); status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("not a gateway: %s", status(r))
	}
}

// respond builds the gateway's answer to a relayed request.
func respond(relayed string, code int) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " Whatever\r\n")
	for _, line := range strings.Split(relayed, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=gw\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// withDialplan adds the dialplan module, built as the server builds it,
// with dialplan 1: national numbers (0 then the area code) to E.164.
func withDialplan(t *testing.T, next func(*shards.Clock) map[string]any) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		mods := next(clock)
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.AddDialplanRule(context.Background(), store.DialplanRule{DPID: 1, MatchOp: store.DialplanPrefix, MatchExp: "0", ReplExp: `+49\2`}); err != nil {
			t.Fatal(err)
		}
		set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			map[string]any{"dialplan": dialplan.DefaultSettings()}, "dialplan")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		mods["dialplan"] = set.Get("dialplan")
		return mods
	}
}

// TestPSTNNumbersNormalised: with provider.dialplan_id, the number an
// authenticated subscriber dials is translated before the lookup and the
// rules (030123 is +4930123, routed by the +49 rule, sent as such); a
// name no rule translates is delivered as before; without dialplan_id (-1)
// nothing is translated.
func TestPSTNNumbersNormalised(t *testing.T) {
	isInvite := func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") }
	call := func(h *harness, ruri string, want func(sentMsg) bool) sentMsg {
		t.Helper()
		to := strings.TrimPrefix(ruri, "sip:")
		r := h.reply("127.0.0.1:6100", req("INVITE", ruri, "alice@example.com", to, ""))
		return h.send("127.0.0.1:6100", req("INVITE", ruri, "alice@example.com", to,
			creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", ruri)), want)
	}
	h := newHarnessWith(t, true, Options{TrustedGroup: 1, DialplanID: 1}, withDialplan(t, withDrouting(t)))
	if inv := call(h, "sip:030123@example.com", isInvite); inv.dst != "127.0.0.7:5070" ||
		!strings.HasPrefix(inv.data, "INVITE sip:+4930123@127.0.0.7:5070 SIP/2.0\r\n") {
		t.Fatalf("030123 with dialplan 1: %+v", inv)
	}
	if r := call(h, "sip:carol@example.com", final); status(r.data) != "480 Temporarily Unavailable" {
		t.Fatalf("carol: %s", status(r.data))
	}
	h = newHarnessWith(t, true, Options{TrustedGroup: 1, DialplanID: -1}, withDialplan(t, withDrouting(t)))
	if r := call(h, "sip:030123@example.com", final); status(r.data) != "480 Temporarily Unavailable" {
		t.Fatalf("030123 without a dialplan: %s", status(r.data))
	}
}
