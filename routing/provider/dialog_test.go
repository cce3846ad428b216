package provider

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/modules/fraud"
	"switchboard/shards"
	"switchboard/store"
)

// withFraud builds the fraud module as the server does (profile 1, UTC)
// on a store of its own holding rules; it returns the module through f.
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

// TestForgedByeKeepsCall: with accounting and a fraud limit of one call
// at a time, alice calls bob and bob answers. Her BYE with our signed
// Route addressed to herself, or to bob's Contact through a proxy of
// hers, gets 403 and goes nowhere: the call keeps its dialog, no record
// is written, her place under the limit stays taken (her second call
// gets 403), and bob's phone never gets a BYE. Her BYE to bob's Contact
// then reaches his phone, ends the dialog with one record (reason bye, by
// the caller) and frees her place: her next call goes through. Before,
// the forged BYE did all that while bob's call went on, unbilled.
func TestForgedByeKeepsCall(t *testing.T) {
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
	inv := call()
	if !strings.HasPrefix(inv.data, "INVITE ") || inv.dst != phone {
		t.Fatalf("INVITE: %+v", inv)
	}
	if up := h.answer(phone, inv, 200, "bob1"); status(up.data) != "200 OK" {
		t.Fatalf("200 upstream: %+v", up)
	}
	if n := concurrent(f); n != 1 {
		t.Fatalf("alice has %d calls in progress, want 1", n)
	}
	dlg := h.dlg
	rr := headerValue(inv.data, "Record-Route")
	bye := func(ruri, route string, cseq int) string {
		return "BYE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + alicePhone + ";branch=z9hG4bK-fb" + strconv.Itoa(cseq) + "\r\nMax-Forwards: 70\r\n" +
			"Route: " + route + "\r\nFrom: " + headerValue(inv.data, "From") + "\r\nTo: <sip:bob@example.com>;tag=bob1\r\n" +
			"Call-ID: " + headerValue(inv.data, "Call-ID") + "\r\nCSeq: " + strconv.Itoa(cseq) + " BYE\r\nContent-Length: 0\r\n\r\n"
	}
	for i, forged := range []string{
		bye("sip:x@127.0.0.1:5062", rr, 2),                       // to herself
		bye("sip:bob@"+phone, rr+", <sip:127.0.0.1:5062;lr>", 3), // through a proxy of hers
	} {
		out := h.send(alicePhone, forged, func(s sentMsg) bool { return final(s) || strings.HasPrefix(s.data, "BYE ") })
		if out.dst != alicePhone || status(out.data) != "403 Forbidden (not the dialog's target)" {
			t.Fatalf("forged BYE %d answered %+v", i, out)
		}
		for _, s := range h.sentNow(0) {
			if strings.HasPrefix(s.data, "BYE ") {
				t.Fatalf("forged BYE %d relayed to %s", i, s.dst)
			}
		}
	}
	if l := dlg.List("", 0); len(l) != 1 || l[0].State != "confirmed" {
		t.Fatalf("dialogs after the forged BYEs: %+v", l)
	}
	time.Sleep(50 * time.Millisecond) // a record would be written by now
	h.records(false, 0)
	if n := concurrent(f); n != 1 {
		t.Fatalf("alice has %d calls in progress after the forged BYEs, want 1", n)
	}
	if s := call(); status(s.data) != "403 Forbidden" {
		t.Fatalf("alice's second call at once: %+v", s)
	}

	out := h.send(alicePhone, bye("sip:bob@"+phone, rr, 4), func(s sentMsg) bool { return strings.HasPrefix(s.data, "BYE ") })
	if out.dst != phone {
		t.Fatalf("BYE relayed to %s", out.dst)
	}
	if c := h.records(false, 1)[0]; c.EndReason != "bye" || c.EndedBy != "caller" {
		t.Fatalf("record %+v", c)
	}
	if l := dlg.List("", 0); len(l) != 0 {
		t.Fatalf("dialogs after the BYE: %+v", l)
	}
	if n := concurrent(f); n != 0 {
		t.Fatalf("alice has %d calls in progress after her BYE, want 0", n)
	}
	if s := call(); !strings.HasPrefix(s.data, "INVITE ") {
		t.Fatalf("alice's call after her BYE: %+v", s)
	}
}

// TestNATCallByes: with accounting and nathelper, alice behind NAT
// (Contact 10.0.0.5) calls bob registered behind NAT (Contact
// 192.168.1.10). Each party's target is the Contact the other was given
// (fix_nated_contact wrote the source address): bob's BYE to alice's
// private Contact and alice's to bob's get 403 and end nothing; alice's
// INFO to bob's Contact as relayed goes to his phone, and bob's BYE to
// hers reaches her phone and ends the call (one record, by the callee).
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
	for _, c := range []struct{ src, ruri string }{
		{bobPhone, "sip:x@10.0.0.5:5062"},         // alice's Contact as she sent it
		{alicePhone, "sip:bob@192.168.1.10:5062"}, // bob's
	} {
		if out := h.send(c.src, request(c.src, "BYE", c.ruri, 7), final); status(out.data) != "403 Forbidden (not the dialog's target)" {
			t.Fatalf("BYE from %s to %s: %+v", c.src, c.ruri, out)
		}
	}
	if l := h.dlg.List("", 0); len(l) != 1 || l[0].State != "confirmed" {
		t.Fatalf("dialogs after the misrouted BYEs: %+v", l)
	}
	if out := h.send(alicePhone, request(alicePhone, "INFO", "sip:bob@"+bobPhone, 8), func(s sentMsg) bool {
		return strings.HasPrefix(s.data, "INFO ") || final(s)
	}); out.dst != bobPhone || !strings.HasPrefix(out.data, "INFO ") {
		t.Fatalf("alice's INFO: %+v", out)
	}
	if out := h.send(bobPhone, request(bobPhone, "BYE", "sip:x@"+alicePhone, 9), func(s sentMsg) bool {
		return strings.HasPrefix(s.data, "BYE ") || final(s)
	}); out.dst != alicePhone || !strings.HasPrefix(out.data, "BYE ") {
		t.Fatalf("bob's BYE: %+v", out)
	}
	if c := h.records(false, 1)[0]; c.EndReason != "bye" || c.EndedBy != "callee" {
		t.Fatalf("record %+v", c)
	}
}
