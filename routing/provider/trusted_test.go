package provider

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/permissions"
	"switchboard/shards"
	"switchboard/store"
)

// trustedGateways builds the permissions module on st, as the server
// does, with the harness's address table: two gateways in group 1 (one
// allowed only calls from German numbers), one source in group 2.
func trustedGateways(t *testing.T, st *store.Store, clock *shards.Clock) *modules.Set {
	t.Helper()
	err := st.AddAddresses(context.Background(), []store.Address{
		{Group: 1, IP: "127.0.0.2", Proto: "udp", ContextInfo: "gateway A"},
		{Group: 1, IP: "127.0.0.4", Pattern: `^sip:\+49[0-9]+@`},
		{Group: 2, IP: "127.0.0.5"},
	})
	if err != nil {
		t.Fatal(err)
	}
	set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		nil, "permissions")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.Get("permissions").(*permissions.Permissions); !ok {
		t.Fatal("no permissions module")
	}
	return set
}

// TestTrustedGateways: with provider.trusted_group, a call from a source
// of that group to a local user is delivered without a challenge, even
// with a From of our domain; the trust is the source address's (a forged
// From or Via from elsewhere is challenged), covers only calls to served
// domains (not REGISTER, not relaying elsewhere), and honours the entry's
// pattern.
func TestTrustedGateways(t *testing.T) {
	h := newHarness(t, true, Options{TrustedGroup: 1})
	const phone = "127.0.0.1:6000"
	r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	r = h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	isInvite := func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") }
	call := func(from string) string { return req("INVITE", "sip:bob@example.com", from, "bob@example.com", "") }

	// The gateway's call with a number at our domain in From: relayed.
	inv := h.send("127.0.0.2:5060", call("+4930123456@example.com"), isInvite)
	if inv.dst != phone || !strings.HasPrefix(inv.data, "INVITE sip:bob@127.0.0.1:6000 ") {
		t.Fatalf("trusted call: %+v", inv)
	}
	// A pattern narrows what the second gateway may send.
	if inv := h.send("127.0.0.4:5060", call("+4930123456@example.com"), isInvite); inv.dst != phone {
		t.Fatalf("call matching the pattern: %+v", inv)
	}
	if r := h.reply("127.0.0.4:5060", call("+12025550100@example.com")); status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("call outside the pattern: %s", r)
	}

	// Not trusted: another address, a forged Via or From naming the
	// gateway, a source of another group.
	for _, c := range []struct{ name, src, msg string }{
		{"other address", "127.0.0.3:5060", call("+4930123456@example.com")},
		{"Via of the gateway", "127.0.0.3:5060", strings.Replace(call("+4930123456@example.com"), "Via: SIP/2.0/UDP 127.0.0.1:5062", "Via: SIP/2.0/UDP 127.0.0.2:5060", 1)},
		{"From of the gateway", "127.0.0.3:5060", call("gw@example.com")},
		{"group 2", "127.0.0.5:5060", call("+4930123456@example.com")},
	} {
		if r := h.reply(c.src, c.msg); status(r) != "407 Proxy Authentication Required" {
			t.Errorf("%s: %s, want 407", c.name, status(r))
		}
	}

	// The trust stops at our users: REGISTER is authenticated, relaying to
	// another domain is refused or challenged as for anyone.
	if r := h.reply("127.0.0.2:5060", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", "")); status(r) != "401 Unauthorized" {
		t.Errorf("gateway REGISTER: %s", r)
	}
	if r := h.reply("127.0.0.2:5060", req("INVITE", "sip:x@127.0.0.9:5090", "+4930123456@example.com", "x@127.0.0.9", "")); status(r) != "407 Proxy Authentication Required" {
		t.Errorf("gateway to another domain, local From: %s", r)
	}
	if r := h.reply("127.0.0.2:5060", req("INVITE", "sip:x@127.0.0.9:5090", "+4930123456@gw.example.net", "x@127.0.0.9", "")); status(r) != "403 Relay Forbidden" {
		t.Errorf("gateway to another domain: %s", r)
	}

	// The group is a setting: 2 trusts 127.0.0.5 and no longer
	// 127.0.0.2; 0 trusts no one.
	h2 := newHarness(t, true, Options{TrustedGroup: 2})
	if r := h2.reply("127.0.0.2:5060", call("+4930123456@example.com")); status(r) != "407 Proxy Authentication Required" {
		t.Errorf("trusted_group 2, gateway of group 1: %s", r)
	}
	if r := h2.reply("127.0.0.5:5060", call("+4930123456@example.com")); status(r) != "480 Temporarily Unavailable" {
		t.Errorf("trusted_group 2, source of group 2: %s (want the 480 of an unregistered bob in this harness)", r)
	}
	h0 := newHarness(t, true, Options{})
	if r := h0.reply("127.0.0.2:5060", call("+4930123456@example.com")); status(r) != "407 Proxy Authentication Required" {
		t.Errorf("trusted_group 0: %s", r)
	}
}

// TestSpoofedTrustedGateway: what a UDP packet with a trusted gateway's
// source address gets, sent by someone else (a network without ingress
// filtering): its INVITE reaches any subscriber unchallenged, with the
// P-Asserted-Identity it wrote (a bank's number, say) and its own Contact,
// as the gateway's would; its REGISTER is challenged and its calls to the
// PSTN or another domain are refused, as anyone's. The answers go to the
// gateway's address (the packet's source), not to the forger's Via. The
// defence is an entry for TCP or TLS (modules/permissions README).
func TestSpoofedTrustedGateway(t *testing.T) {
	h := newHarness(t, true, Options{TrustedGroup: 1})
	const phone, gateway = "127.0.0.1:6000", "127.0.0.2:5060"
	if r := registerBob(t, h, phone, "sip:bob@"+phone); status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	forged := strings.Replace(req("INVITE", "sip:bob@example.com", "+18005550100@example.com", "bob@example.com",
		"Contact: <sip:x@127.0.0.66:5060>\r\nP-Asserted-Identity: <sip:+18005550100@bank.example>\r\n"),
		"Via: SIP/2.0/UDP 127.0.0.1:5062", "Via: SIP/2.0/UDP 127.0.0.66:5060", 1)
	inv := h.send(gateway, forged, func(s sentMsg) bool { return isINVITE(s) || final(s) })
	if inv.dst != phone || headerValue(inv.data, "P-Asserted-Identity") != "<sip:+18005550100@bank.example>" {
		t.Fatalf("the forged INVITE got %s:\n%s", inv.dst, inv.data)
	}
	ringing := h.send(phone, strings.Replace(respond(inv.data, 180), "Content-Length:", "Contact: <sip:bob@"+phone+">\r\nContent-Length:", 1),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "SIP/2.0 180") })
	if ringing.dst != gateway {
		t.Errorf("the 180 went to %s, want the gateway's address", ringing.dst)
	}
	if r := h.reply(gateway, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", "")); status(r) != "401 Unauthorized" {
		t.Errorf("forged REGISTER: %s", r)
	}
	if r := h.reply(gateway, req("INVITE", "sip:x@127.0.0.9:5090", "+4930123456@gw.example.net", "x@127.0.0.9", "")); status(r) != "403 Relay Forbidden" {
		t.Errorf("forged call to another domain: %s", r)
	}
}
