package provider

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/fraud"
	"switchboard/parser"
	"switchboard/shards"
	"switchboard/store"
)

// withFraud builds the fraud module as the server does (profile 1, UTC)
// on a store of its own holding rules; it returns the module through f.
// The dialog module it needs comes from the harness's accounting or
// from withTopohiding.
func withFraud(t *testing.T, f **fraud.Fraud, rules ...store.FraudRule) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if _, err := st.AddFraudRule(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		s := fraud.DefaultSettings()
		s.Timezone = "UTC"
		set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			map[string]any{"fraud": s}, "fraud")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { set.Stop(); st.Close() })
		*f = set.Get("fraud").(*fraud.Fraud)
		return map[string]any{"fraud": *f}
	}
}

// concurrent is alice's count of calls in progress.
func concurrent(f *fraud.Fraud) int32 {
	for _, s := range f.Stats("alice@example.com") {
		return s.ConcurrentCalls
	}
	return -1
}

// TestForgedByeEndsCallForBoth: with accounting and a fraud limit of
// two calls at a time, alice calls bob and bob answers. Her BYE with our
// signed Route addressed to herself is sent to bob's phone at his Contact
// (FixRouteDialog), which answers it: she gets his 200, the dialog ends
// with one record (reason bye, by the caller) and her place under the
// limit is free. Her next call's BYE to bob's Contact through a proxy of
// hers reaches his phone without that proxy's Route, and ends that call
// too. Before, the first ended the dialog, the record and the count while
// bob's call went on, unbilled; answered 403 since, a phone's quirk left
// bob's leg up and billed until the dialog's timeout. A call whose callee
// answered with a Contact the dialog cannot keep (over 1 KiB: its target
// not known) is the one case left: her BYE to herself gets 403 and ends
// nothing.
func TestForgedByeEndsCallForBoth(t *testing.T) {
	var f *fraud.Fraud
	withAccounting = true
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withFraud(t, &f,
		store.FraudRule{Profile: 1, Prefix: "", ConcurrentCalls: store.FraudLimit{Critical: 2}}))
	withAccounting = false
	const phone, alicePhone = "127.0.0.1:6000", "127.0.0.1:6100"
	r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	r = h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@"+phone+">\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	call := func() sentMsg {
		t.Helper()
		r := h.reply(alicePhone, req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", ""))
		return h.send(alicePhone, req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com",
			creds(r, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:bob@example.com")),
			func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "INVITE ") })
	}
	bye := func(inv sentMsg, ruri, route string, cseq int) string {
		// A branch of the call's own: another call's BYE with its
		// branch, when both Call-IDs share a shard, is that BYE's
		// retransmission (its 200 again).
		branch := "z9hG4bK-fb-" + headerValue(inv.data, "Call-ID") + "-" + strconv.Itoa(cseq)
		return "BYE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + alicePhone + ";branch=" + branch + "\r\nMax-Forwards: 70\r\n" +
			"Route: " + route + "\r\nFrom: " + headerValue(inv.data, "From") + "\r\nTo: <sip:bob@example.com>;tag=bob1\r\n" +
			"Call-ID: " + headerValue(inv.data, "Call-ID") + "\r\nCSeq: " + strconv.Itoa(cseq) + " BYE\r\nContent-Length: 0\r\n\r\n"
	}
	dlg := h.dlg
	for i, c := range []struct{ name, ruri, hers string }{
		{"to herself", "sip:x@127.0.0.1:5062", ""},
		{"through a proxy of hers", "sip:bob@" + phone, ", <sip:127.0.0.1:5062;lr>"},
	} {
		inv := call()
		if !strings.HasPrefix(inv.data, "INVITE ") || inv.dst != phone {
			t.Fatalf("INVITE %d: %+v", i, inv)
		}
		if up := h.answer(phone, inv, 200, "bob1"); status(up.data) != "200 OK" {
			t.Fatalf("200 upstream: %+v", up)
		}
		if n := concurrent(f); n != 1 {
			t.Fatalf("alice has %d calls in progress, want 1", n)
		}
		rr := headerValue(inv.data, "Record-Route")
		out := h.send(alicePhone, bye(inv, c.ruri, rr+c.hers, 2), func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "BYE ") })
		if out.dst != phone || !strings.HasPrefix(out.data, "BYE sip:bob@"+phone+" SIP/2.0\r\n") || headerValue(out.data, "Route") != "" {
			t.Fatalf("her BYE %s went to %s:\n%s", c.name, out.dst, out.data)
		}
		var m parser.Message
		if err := m.Parse([]byte(out.data)); err != nil {
			t.Fatal(err)
		}
		if up := h.send(phone, string(parser.AppendResponse(nil, &m, 200, nil, nil)), final); up.dst != alicePhone || status(up.data) != "200 OK" {
			t.Fatalf("bob's 200 to her BYE %s: %+v", c.name, up)
		}
		if c := h.records(false, i+1)[i]; c.EndReason != "bye" || c.EndedBy != "caller" {
			t.Fatalf("record %+v", c)
		}
		if l := dlg.List("", 0); len(l) != 0 {
			t.Fatalf("dialogs after her BYE %s: %+v", c.name, l)
		}
		if n := concurrent(f); n != 0 {
			t.Fatalf("alice has %d calls in progress after her BYE %s, want 0", n, c.name)
		}
	}

	// bob's phone answers with a Contact the dialog cannot keep.
	inv := call()
	var m parser.Message
	if err := m.Parse([]byte(inv.data)); err != nil {
		t.Fatal(err)
	}
	extra := "Record-Route: " + headerValue(inv.data, "Record-Route") + "\r\nContact: <sip:bob@" + phone + ";x=" + strings.Repeat("a", 1100) + ">\r\n"
	if up := h.send(phone, string(parser.AppendResponseHeaders(nil, &m, 200, nil, []byte("bob1"), []byte(extra))), final); status(up.data) != "200 OK" {
		t.Fatalf("200 upstream: %+v", up)
	}
	out := h.send(alicePhone, bye(inv, "sip:x@127.0.0.1:5062", headerValue(inv.data, "Record-Route"), 2),
		func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "BYE ") })
	if out.dst != alicePhone || status(out.data) != "403 Forbidden (not the dialog's target)" {
		t.Fatalf("her BYE to herself, bob's target not known, answered %+v", out)
	}
	if l := dlg.List("", 0); len(l) != 1 || l[0].State != "confirmed" {
		t.Fatalf("dialogs after the refused BYE: %+v", l)
	}
	if n := concurrent(f); n != 1 {
		t.Fatalf("alice has %d calls in progress after the refused BYE, want 1", n)
	}
}

// TestNATCallByes: with accounting and nathelper, alice behind NAT
// (Contact 10.0.0.5) calls bob registered behind NAT (Contact
// 192.168.1.10). Each party's target is the Contact the other was given
// (fix_nated_contact wrote the source address): bob's INFO to alice's
// private Contact and alice's to bob's are sent to the other's Contact as
// relayed, at its phone; alice's INFO to bob's Contact as relayed goes to
// his phone as it is, and bob's BYE to her private Contact reaches her
// phone at her Contact as relayed and ends the call (one record, by the
// callee).
func TestNATCallByes(t *testing.T) {
	nat := withNAT(t, true)
	withAccounting = true
	h := newHarnessWith(t, true, Options{}, nat)
	withAccounting = false
	const bobPhone, alicePhone = "127.0.0.1:6000", "127.0.0.1:6100"
	reg := behindNAT(req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", "Contact: <sip:bob@127.0.0.1:5062>\r\n"), "192.168.1.10:5062")
	r := h.send(bobPhone, reg, final)
	reg = behindNAT(req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@127.0.0.1:5062>\r\n"+creds(r.data, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")), "192.168.1.10:5062")
	if r = h.send(bobPhone, reg, final); status(r.data) != "200 OK" {
		t.Fatalf("REGISTER: %s", r.data)
	}
	r = h.send(alicePhone, behindNAT(req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", ""), "10.0.0.5:5062"), final)
	inv := h.send(alicePhone, behindNAT(req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com",
		creds(r.data, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:bob@example.com")), "10.0.0.5:5062"),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	if inv.dst != bobPhone || hdr(inv.data, "Contact") != "<sip:x@"+alicePhone+">" {
		t.Fatalf("INVITE to %s with Contact %q", inv.dst, hdr(inv.data, "Contact"))
	}
	ok := strings.Replace(respond(inv.data, 200), "Content-Length: 0", "Record-Route: "+hdr(inv.data, "Record-Route")+
		"\r\nContact: <sip:bob@192.168.1.10:5062>\r\nContent-Length: 0", 1)
	up := h.send(bobPhone, ok, func(s sentMsg) bool { return strings.HasPrefix(s.data, "SIP/2.0 200") })
	if hdr(up.data, "Contact") != "<sip:bob@"+bobPhone+">" {
		t.Fatalf("200 with Contact %q", hdr(up.data, "Contact"))
	}
	rr := hdr(inv.data, "Record-Route")
	aliceFrom, bobTo := hdr(inv.data, "From"), hdr(up.data, "To")
	request := func(src, method, ruri string, cseq int) string {
		from, to := aliceFrom, bobTo
		if src == bobPhone {
			from, to = bobTo, aliceFrom
		}
		return method + " " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + src + ";branch=z9hG4bK-nb" + strconv.Itoa(cseq) + ";rport\r\nMax-Forwards: 70\r\n" +
			"Route: " + rr + "\r\nFrom: " + from + "\r\nTo: " + to + "\r\nCall-ID: " + hdr(inv.data, "Call-ID") + "\r\n" +
			"CSeq: " + strconv.Itoa(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n"
	}
	for _, c := range []struct{ src, ruri, dst, fixed string }{
		{bobPhone, "sip:x@10.0.0.5:5062", alicePhone, "sip:x@" + alicePhone},       // alice's Contact as she sent it
		{alicePhone, "sip:bob@192.168.1.10:5062", bobPhone, "sip:bob@" + bobPhone}, // bob's
	} {
		out := h.send(c.src, request(c.src, "INFO", c.ruri, 7), func(s sentMsg) bool { return strings.HasPrefix(s.data, "INFO ") || final(s) })
		if out.dst != c.dst || !strings.HasPrefix(out.data, "INFO "+c.fixed+" SIP/2.0\r\n") {
			t.Fatalf("INFO from %s to %s: %+v", c.src, c.ruri, out)
		}
	}
	if l := h.dlg.List("", 0); len(l) != 1 || l[0].State != "confirmed" {
		t.Fatalf("dialogs after the misaddressed INFOs: %+v", l)
	}
	if out := h.send(alicePhone, request(alicePhone, "INFO", "sip:bob@"+bobPhone, 8), func(s sentMsg) bool {
		return strings.HasPrefix(s.data, "INFO ") || final(s)
	}); out.dst != bobPhone || !strings.HasPrefix(out.data, "INFO ") {
		t.Fatalf("alice's INFO: %+v", out)
	}
	if out := h.send(bobPhone, request(bobPhone, "BYE", "sip:x@10.0.0.5:5062", 9), func(s sentMsg) bool {
		return strings.HasPrefix(s.data, "BYE ") || final(s)
	}); out.dst != alicePhone || !strings.HasPrefix(out.data, "BYE sip:x@"+alicePhone+" SIP/2.0\r\n") {
		t.Fatalf("bob's BYE: %+v", out)
	}
	if c := h.records(false, 1)[0]; c.EndReason != "bye" || c.EndedBy != "callee" {
		t.Fatalf("record %+v", c)
	}
}

// TestFixedRequestGatewayChecked: with dialogs (accounting) and
// drouting, the gateway check runs on the request as FixRouteDialog sent
// it on. An outsider's INFO of his answered call to bob, addressed to the
// gateway, goes to bob's phone instead. When bob's phone answered with a
// Contact at the gateway, the outsider's INFO addressed to it is refused
// 403 (gateway), and one addressed elsewhere, fixed to that Contact, goes
// where the proxy's own BYE would, bob's phone (the Contact does not name
// the address his call was reached at), not to the gateway: no request
// of a call that is not a trunk's reaches a gateway, fixed or not. Alice's
// PSTN call (a trunk's: its Record-Route says so)
// answered, her INFO addressed to herself goes to the gateway.
func TestFixedRequestGatewayChecked(t *testing.T) {
	withAccounting = true
	h := newHarnessWith(t, true, Options{TrustedGroup: 1, DialplanID: -1}, withDrouting(t))
	withAccounting = false
	const bobPhone, outsider = "127.0.0.1:6000", "127.0.0.1:7000"
	if r := registerBob(t, h, bobPhone, "sip:bob@"+bobPhone); status(r) != "200 OK" {
		t.Fatal(r)
	}
	inv := h.send(outsider, req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", ""), isINVITE)
	if up := h.answer(bobPhone, inv, 200, "gw"); status(up.data) != "200 OK" {
		t.Fatalf("200 upstream: %+v", up)
	}
	if s := h.send(outsider, inDialogOf("INFO", "sip:+19005551234@"+gwAddr, inv.data), finalOrRequest); s.dst != bobPhone ||
		!strings.HasPrefix(s.data, "INFO sip:bob@"+bobPhone+" SIP/2.0\r\n") {
		t.Fatalf("the outsider's INFO addressed to the gateway: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}

	inv = h.send(outsider, req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", ""), isINVITE)
	var m parser.Message
	if err := m.Parse([]byte(inv.data)); err != nil {
		t.Fatal(err)
	}
	extra := "Record-Route: " + headerValue(inv.data, "Record-Route") + "\r\nContact: <sip:+19005551234@" + gwAddr + ">\r\n"
	if up := h.send(bobPhone, string(parser.AppendResponseHeaders(nil, &m, 200, nil, []byte("gw"), []byte(extra))), final); status(up.data) != "200 OK" {
		t.Fatalf("200 upstream: %+v", up)
	}
	if s := h.send(outsider, inDialogOf("INFO", "sip:+19005551234@"+gwAddr, inv.data), finalOrRequest); s.dst == gwAddr || status(s.data) != "403 Forbidden (gateway)" {
		t.Fatalf("the outsider's INFO to bob's Contact at the gateway: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
	if s := h.send(outsider, inDialogOf("INFO", "sip:x@"+outsider, inv.data), finalOrRequest); s.dst != bobPhone {
		t.Fatalf("the outsider's INFO addressed to himself, bob's Contact at the gateway: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}

	call := aliceDials(h, "sip:+4930123@example.com", "")
	if call.dst != gwAddr {
		t.Fatalf("alice's PSTN call went to %s", call.dst)
	}
	if up := h.send(gwAddr, respond(call.data, 200), final); status(up.data) != "200 Whatever" {
		t.Fatalf("the gateway's 200 upstream: %+v", up)
	}
	if l := h.dlg.List("", 0); len(l) != 3 {
		t.Fatalf("dialogs %+v", l)
	}
	if s := h.send("127.0.0.1:6100", inDialogOf("INFO", "sip:alice@127.0.0.1:6100", call.data), finalOrRequest); s.dst != gwAddr ||
		!strings.HasPrefix(s.data, "INFO "+strings.Fields(call.data)[1]+" SIP/2.0\r\n") {
		t.Fatalf("alice's INFO of her PSTN call addressed to herself: %s %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}
