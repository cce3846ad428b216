package provider

import (
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/topohiding"
	"switchboard/shards"
)

// withTopohiding adds the dialog and topohiding modules, built as the
// server builds them, with s, to the modules of next.
func withTopohiding(t *testing.T, s *topohiding.Settings, next func(*shards.Clock) map[string]any) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		mods := next(clock)
		set, err := modules.Build(modules.Services{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			map[string]any{"topohiding": s}, "topohiding")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		mods["dialog"], mods["topohiding"] = set.Get("dialog"), set.Get("topohiding")
		mods["\x00topohiding set"] = set
		return mods
	}
}

// hidden reports whether a relayed request or response shows its
// receiver only the proxy: one Via (ours) for a request, no Record-Route,
// a Contact of ours with a token; and none of the marks of the other side.
func hidden(msg string, request bool, other ...string) bool {
	ok := true
	vias := 0
	for _, line := range strings.Split(msg, "\r\n") {
		name, v, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via":
			vias++
			if request && !strings.Contains(v, "127.0.0.1:5060") {
				ok = false
			}
		case "record-route":
			ok = false
		case "contact":
			if !strings.Contains(v, "<sip:127.0.0.1:5060;thinfo=") {
				ok = false
			}
		default:
			continue
		}
		for _, o := range other {
			if strings.Contains(line, o) {
				ok = false
			}
		}
	}
	if request && vias != 1 {
		ok = false
	}
	return ok
}

// TestTrunkCallsHidden: with topohiding.trunks, a subscriber's call to
// the PSTN and a gateway's call to a subscriber are hidden (each side sees
// the proxy's Via and Contact, no Record-Route), a call between
// subscribers is not; the gateway's BYE to the Contact it got reaches the
// caller at its own Contact; a token edited gets 403 and one of the call
// that ended 481. With the defaults (trunks off) nothing is hidden; with
// topohiding.calls every call is.
func TestTrunkCallsHidden(t *testing.T) {
	const alice, bob = "127.0.0.1:6100", "127.0.0.1:6000"
	isInvite := func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") }
	setup := func(s *topohiding.Settings) *harness {
		h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withTopohiding(t, s, withDrouting(t)))
		r := h.reply(bob, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
		r = h.reply(bob, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
			"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
		if status(r) != "200 OK" {
			t.Fatalf("REGISTER: %s", r)
		}
		return h
	}
	aliceCalls := func(h *harness, ruri string, want func(sentMsg) bool) sentMsg {
		t.Helper()
		to := strings.TrimPrefix(ruri, "sip:")
		r := h.reply(alice, req("INVITE", ruri, "alice@example.com", to, ""))
		return h.send(alice, req("INVITE", ruri, "alice@example.com", to,
			creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", ruri)), want)
	}
	withContact := func(resp string) string {
		return strings.Replace(resp, "Content-Length: 0", "Contact: <sip:gw@127.0.0.7:5070>\r\nContent-Length: 0", 1)
	}

	trunks := topohiding.DefaultSettings()
	trunks.Trunks = true
	h := setup(trunks)
	inv := aliceCalls(h, "sip:+4930123@example.com", isInvite)
	if inv.dst != "127.0.0.7:5070" || !hidden(inv.data, true, "127.0.0.1:5062", "127.0.0.1:6100") {
		t.Fatalf("the call to the PSTN is not hidden:\n%s", inv.data)
	}
	up := h.send("127.0.0.7:5070", withContact(respond(inv.data, 200)), func(s sentMsg) bool { return s.dst == alice && strings.HasPrefix(s.data, "SIP/2.0 200") })
	if !hidden(up.data, false, "127.0.0.7") {
		t.Fatalf("the gateway's 200 is not hidden:\n%s", up.data)
	}
	// The gateway hangs up: to the Contact it got, with the call's tags.
	tok := inv.data[strings.Index(inv.data, "thinfo=")+len("thinfo=") : strings.Index(inv.data, "thinfo=")+len("thinfo=")+33]
	var callID, fromTag string
	for _, line := range strings.Split(inv.data, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Call-ID: "); ok {
			callID = v
		}
		if v, ok := strings.CutPrefix(line, "From: "); ok {
			fromTag = v[strings.Index(v, "tag=")+4:]
		}
	}
	bye := func(token, callID string) string {
		seq++
		return "BYE sip:127.0.0.1:5060;thinfo=" + token + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.7:5070;branch=z9hG4bK-gwbye" + strconv.Itoa(seq) + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:+4930123@example.com>;tag=gw\r\nTo: <sip:alice@example.com>;tag=" + fromTag + "\r\n" +
			"Call-ID: " + callID + "\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
	}
	edited := tok[:32] + map[bool]string{true: "1", false: "0"}[tok[32] == '0']
	if r := h.reply("127.0.0.7:5070", bye(edited, callID)); status(r) != "403 Forbidden" {
		t.Errorf("a BYE with the token edited: %s", status(r))
	}
	b := h.send("127.0.0.7:5070", bye(tok, callID), func(s sentMsg) bool { return strings.HasPrefix(s.data, "BYE ") })
	if !strings.HasPrefix(b.data, "BYE sip:x@127.0.0.1:5062 ") || !hidden(b.data, true, "127.0.0.7") {
		t.Fatalf("the gateway's BYE reached alice as\n%s", b.data)
	}
	h.send(alice, respond(b.data, 200), func(s sentMsg) bool { return s.dst == "127.0.0.7:5070" && strings.HasPrefix(s.data, "SIP/2.0 200") })
	if r := h.reply("127.0.0.7:5070", bye(tok, callID)); status(r) != "481 Call/Transaction Does Not Exist" {
		t.Errorf("a BYE of the call that ended: %s", status(r))
	}

	// A gateway's call to bob is hidden; alice's call to bob is not.
	if inv := h.send("127.0.0.8:40000", req("INVITE", "sip:bob@example.com", "+4930999@example.com", "bob@example.com", ""), isInvite); inv.dst != bob ||
		!hidden(inv.data, true, "127.0.0.8") {
		t.Fatalf("the gateway's call to bob is not hidden:\n%s", inv.data)
	}
	if inv := aliceCalls(h, "sip:bob@example.com", isInvite); !strings.Contains(inv.data, "Record-Route: ") || strings.Contains(inv.data, "thinfo=") {
		t.Fatalf("alice's call to bob is hidden:\n%s", inv.data)
	}

	// The defaults: nothing hidden.
	h = setup(topohiding.DefaultSettings())
	if inv := aliceCalls(h, "sip:+4930123@example.com", isInvite); !strings.Contains(inv.data, "Record-Route: ") || strings.Contains(inv.data, "thinfo=") {
		t.Fatalf("the call to the PSTN is hidden by default:\n%s", inv.data)
	}
	// topohiding.calls: every call.
	all := topohiding.DefaultSettings()
	all.Calls = true
	h = setup(all)
	if inv := aliceCalls(h, "sip:bob@example.com", isInvite); !hidden(inv.data, true, "127.0.0.1:5062", "127.0.0.1:6100") {
		t.Fatalf("alice's call to bob is not hidden with topohiding.calls:\n%s", inv.data)
	}
}
