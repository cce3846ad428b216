package provider

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/fraud"
	"switchboard/shards"
	"switchboard/store"
)

// What a subscriber or an outsider gets when they try to reach the PSTN
// gateways other than through the drouting rules, or to pass as someone
// else at the carrier: the toll-fraud paths of a provider's route set.

const gwAddr = "127.0.0.7:5070" // gw1 of withDrouting

func isINVITE(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") }
func finalOrRequest(s sentMsg) bool {
	return final(s) || !strings.HasPrefix(s.data, "SIP/")
}

// registerBob registers bob's contact, authenticated; it returns the
// final response.
func registerBob(t *testing.T, h *harness, src, contact string) string {
	t.Helper()
	r := h.reply(src, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	return h.reply(src, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <"+contact+">\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
}

// aliceDials sends alice's INVITE to ruri, authenticated.
func aliceDials(h *harness, ruri, extra string) sentMsg {
	to := strings.TrimPrefix(ruri, "sip:")
	r := h.reply("127.0.0.1:6100", req("INVITE", ruri, "alice@example.com", to, extra))
	if !strings.HasPrefix(status(r), "407") {
		return sentMsg{data: r} // refused before the challenge
	}
	return h.send("127.0.0.1:6100", req("INVITE", ruri, "alice@example.com", to,
		extra+creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", ruri)), finalOrRequest)
}

// inDialogOf is a request inside the dialog of INVITE inv (its
// Record-Route as the Route set), addressed to ruri.
func inDialogOf(method, ruri, inv string) string {
	seq++
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-%s%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: %s\r\nTo: %s;tag=gw\r\nCall-ID: %s\r\nCSeq: 9 %s\r\nRoute: %s\r\nContent-Length: 0\r\n\r\n",
		method, ruri, method, seq, headerValue(inv, "From"), headerValue(inv, "To"), headerValue(inv, "Call-ID"), method, headerValue(inv, "Record-Route"))
}

// TestContactAtGatewayRefused: a subscriber cannot register a Contact at
// a gateway's address (any port): every call to them, an outsider's
// too, would go to the gateway that trusts us as its trunk.
func TestContactAtGatewayRefused(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withDrouting(t))
	for _, contact := range []string{"sip:+19005551234@" + gwAddr, "sip:+19005551234@127.0.0.7:5999", "sip:x@192.0.2.1;maddr=127.0.0.7"} {
		if r := registerBob(t, h, "127.0.0.1:5062", contact); status(r) != "403 Forbidden (contact at a gateway)" {
			t.Errorf("REGISTER of %s: %s", contact, status(r))
		}
	}
	if s := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", ""), finalOrRequest); s.dst == gwAddr {
		t.Fatalf("an outsider's call to bob went to the gateway:\n%s", s.data)
	}
}

// TestPathAtGatewayRefused: a subscriber's REGISTER with a Path whose
// first hop is a gateway's address (a Path a phone writes itself: only
// an edge proxy should) sent every call to the subscriber, an outsider's
// unauthenticated call too, to that gateway, which trusts us as its
// trunk: a number of his choosing in the Contact, called on our account.
// It gets the 403 a Contact at a gateway gets; a Path to another address
// is stored as before.
func TestPathAtGatewayRefused(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withDrouting(t))
	for _, path := range []string{"<sip:192.0.2.1;lr>, <sip:" + gwAddr + ";lr>", "<sip:edge.example.net;lr;maddr=127.0.0.7>",
		"<sip:127.0.0.7:5999;lr>", "<sip:" + gwAddr + ";lr>"} {
		r := h.reply("127.0.0.1:5062", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
		r = h.reply("127.0.0.1:5062", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
			"Contact: <sip:+19005551234@192.0.2.50>\r\nPath: "+path+"\r\nSupported: path\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
		if status(r) != "403 Forbidden (contact at a gateway)" {
			t.Errorf("REGISTER with Path %s: %s", path, status(r))
		}
	}
	if s := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", ""), finalOrRequest); s.dst == gwAddr {
		t.Fatalf("an outsider's call to bob went to the gateway:\n%s", s.data)
	}
	r := h.reply("127.0.0.1:5062", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	r = h.reply("127.0.0.1:5062", req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@192.0.2.50>\r\nPath: <sip:127.0.0.30:5060;lr>\r\nSupported: path\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER with a Path to an edge proxy: %s", r)
	}
}

// TestDirectToGatewayRefused: a subscriber's request to a gateway's
// address as if to another domain is refused: calls to the PSTN go by
// the drouting rules (a prefix no rule has, a gateway switched off).
func TestDirectToGatewayRefused(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withDrouting(t))
	for _, ruri := range []string{"sip:+3312345@" + gwAddr, "sip:+44207@127.0.0.9:5070", "sip:+3312345@127.0.0.7:5999"} {
		if s := aliceDials(h, ruri, ""); isINVITE(s) || status(s.data) != "403 Forbidden (gateway)" {
			t.Errorf("%s: %s %q", ruri, s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
		}
	}
}

// TestInDialogToGatewayRefused: an outsider who called bob has our
// signed Record-Route of that call; a request "inside" it addressed to
// the gateway, by its Request-URI or by a Route after ours, is refused:
// only a trunk call's Record-Route lets in-dialog requests reach a
// gateway. The BYE of a real trunk call does.
func TestInDialogToGatewayRefused(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1, DialplanID: -1}, withDrouting(t))
	if r := registerBob(t, h, "127.0.0.1:6000", "sip:bob@127.0.0.1:6000"); status(r) != "200 OK" {
		t.Fatal(r)
	}
	inv := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", ""), isINVITE)
	for _, m := range []string{"INVITE", "MESSAGE", "BYE"} {
		if s := h.send("127.0.0.1:7000", inDialogOf(m, "sip:+19005551234@"+gwAddr, inv.data), finalOrRequest); s.dst == gwAddr || status(s.data) != "403 Forbidden (gateway)" {
			t.Errorf("an outsider's %s to the gateway: %s %q", m, s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
		}
	}
	viaRoute := strings.Replace(inDialogOf("MESSAGE", "sip:bob@127.0.0.1:6000", inv.data), "\r\nRoute: "+headerValue(inv.data, "Record-Route"),
		"\r\nRoute: "+headerValue(inv.data, "Record-Route")+", <sip:"+gwAddr+";lr>", 1)
	if s := h.send("127.0.0.1:7000", viaRoute, finalOrRequest); s.dst == gwAddr {
		t.Errorf("a MESSAGE routed to the gateway by a Route after ours went there")
	}
	call := aliceDials(h, "sip:+4930123@example.com", "")
	if call.dst != gwAddr {
		t.Fatalf("alice's PSTN call went to %s", call.dst)
	}
	if s := h.send("127.0.0.1:6100", inDialogOf("BYE", "sip:+4930123@"+gwAddr, call.data), finalOrRequest); s.dst != gwAddr {
		t.Fatalf("the BYE of a trunk call: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}

// TestIdentityScreened: identities a subscriber or an outsider asserts
// (P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID) are taken
// off their requests: a subscriber's PSTN call does not reach the carrier
// asserting another number, an outsider's call does not reach bob's phone
// as alice's.
func TestIdentityScreened(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withDrouting(t))
	id := "<sip:+4930999999@example.com>"
	s := aliceDials(h, "sip:+4930123@example.com", "P-Asserted-Identity: "+id+"\r\nP-Preferred-Identity: "+id+"\r\nRemote-Party-ID: "+id+";screen=yes\r\n")
	if s.dst != gwAddr {
		t.Fatalf("alice's call went to %s", s.dst)
	}
	for _, hdr := range []string{"P-Asserted-Identity", "P-Preferred-Identity", "Remote-Party-ID"} {
		if strings.Contains(s.data, hdr+":") {
			t.Errorf("alice's PSTN call carries her %s", hdr)
		}
	}
	if r := registerBob(t, h, "127.0.0.1:6000", "sip:bob@127.0.0.1:6000"); status(r) != "200 OK" {
		t.Fatal(r)
	}
	in := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", "P-Asserted-Identity: <sip:alice@example.com>\r\n"), isINVITE)
	if strings.Contains(in.data, "P-Asserted-Identity") {
		t.Error("an outsider's P-Asserted-Identity reached bob")
	}
}

// TestFraudSeesTheRoutedNumber: the fraud limits check the number as the
// dial plan made it, the number the drouting rules and the carrier see: a
// rule for +49900 holds when the caller dials 0900.
func TestFraudSeesTheRoutedNumber(t *testing.T) {
	rule := store.FraudRule{Profile: 1, Prefix: "+49900", CPM: store.FraudLimit{Critical: 1}}
	h := newHarnessWith(t, true, Options{TrustedGroup: 1, DialplanID: 1}, withFraudRule(t, withDialplan(t, withDrouting(t)), rule))
	if s := aliceDials(h, "sip:+49900123@example.com", ""); status(s.data) != "403 Forbidden" {
		t.Fatalf("+49900123: %q", strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if s := aliceDials(h, "sip:0900123@example.com", ""); isINVITE(s) {
		t.Errorf("0900123 went to %s as %s", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}

// withFraudRule adds the fraud module (profile 1, UTC) with rule in a
// store of its own to the modules next builds.
func withFraudRule(t *testing.T, next func(*shards.Clock) map[string]any, rule store.FraudRule) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		mods := next(clock)
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.AddFraudRule(context.Background(), rule); err != nil {
			t.Fatal(err)
		}
		s := fraud.DefaultSettings()
		s.Timezone = "UTC"
		only := []string{"fraud"}
		if mods["dialog"] == nil {
			only = append(only, "dialog") // the fraud limits need it
		}
		set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, map[string]any{"fraud": s}, only...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		mods["fraud"] = set.Get("fraud")
		if d := set.Get("dialog"); d != nil {
			mods["dialog"], mods["\x00fraud set"] = d, set
		}
		return mods
	}
}
