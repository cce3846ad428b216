package provider

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/shards"
	"switchboard/store"
)

// withAccounting makes newHarness build the dialog and acc modules too,
// as the server does with their defaults (acc.store on).
var withAccounting bool

// accounting builds the dialog and acc modules on st; the harness hands
// them the core and starts them.
func accounting(t *testing.T, st *store.Store, clock *shards.Clock) *modules.Set {
	t.Helper()
	set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, "acc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop) // before the store closes
	return set
}

// records waits for n records in acc (or missed_calls) and returns them.
func (h *harness) records(missed bool, n int) []store.CDR {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, err := h.st.ListCDRs(context.Background(), store.CDRFilter{Missed: missed, Oldest: true})
		if err != nil {
			h.t.Fatal(err)
		}
		if len(cs) >= n || time.Now().After(deadline) {
			if len(cs) != n {
				h.t.Fatalf("%d records (missed %v), want %d: %+v", len(cs), missed, n, cs)
			}
			return cs
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// answer sends the phone's response to a relayed INVITE and returns what
// went upstream.
func (h *harness) answer(phone string, inv sentMsg, code int, tag string) sentMsg {
	h.t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(inv.data)); err != nil {
		h.t.Fatal(err)
	}
	extra := "Record-Route: " + headerValue(inv.data, "Record-Route") + "\r\nContact: <sip:bob@" + phone + ">\r\n"
	return h.send(phone, string(parser.AppendResponseHeaders(nil, &m, code, nil, []byte(tag), []byte(extra))), final)
}

func headerValue(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestAccountedCalls: with the acc module on, the provider's calls to
// subscribers get a dialog: an answered call ended by the caller's BYE
// is one record in acc; a call bob's phone refuses (486) is a missed
// call, in missed_calls only; a call to a subscriber who is not
// registered is refused before any dialog (480) and leaves no record.
func TestAccountedCalls(t *testing.T) {
	withAccounting = true
	h := newHarness(t, true, Options{})
	withAccounting = false
	const phone, caller = "127.0.0.1:6000", "127.0.0.1:7000"
	r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
	r = h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@"+phone+">\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
	if status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}

	t0 := h.clock.Now()
	invite := req("INVITE", "sip:bob@example.com", "someone@example.net", "bob@example.com", "")
	inv := h.send(caller, invite, func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	rr := headerValue(inv.data, "Record-Route")
	if !strings.Contains(rr, ";did=") {
		t.Fatalf("relayed INVITE without a dialog id in its Record-Route: %q", rr)
	}
	h.clock.Advance(time.Second)
	if up := h.answer(phone, inv, 200, "bob1"); status(up.data) != "200 OK" || up.dst != caller {
		t.Fatalf("200 upstream: %+v", up)
	}
	h.clock.Advance(3 * time.Second)
	from := headerValue(invite, "From")
	bye := "BYE sip:bob@" + phone + " SIP/2.0\r\nVia: SIP/2.0/UDP " + caller + ";branch=z9hG4bK-accbye\r\nMax-Forwards: 70\r\n" +
		"Route: " + rr + "\r\nFrom: " + from + "\r\nTo: <sip:bob@example.com>;tag=bob1\r\n" +
		"Call-ID: " + headerValue(invite, "Call-ID") + "\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	if out := h.send(caller, bye, func(s sentMsg) bool { return strings.HasPrefix(s.data, "BYE ") }); out.dst != phone {
		t.Fatalf("BYE relayed to %s", out.dst)
	}
	c := h.records(false, 1)[0]
	if c.CallID != headerValue(invite, "Call-ID") || c.FromUser != "someone" || c.ToUser != "bob" || c.Caller != caller ||
		c.Start != t0 || c.Answer != t0+1000 || c.End != t0+4000 || c.Duration != 3000 || c.Code != 200 ||
		c.EndReason != "bye" || c.EndedBy != "caller" {
		t.Fatalf("record %+v", c)
	}

	inv = h.send(caller, req("INVITE", "sip:bob@example.com", "someone@example.net", "bob@example.com", ""),
		func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	if up := h.answer(phone, inv, 486, "bob2"); status(up.data) != "486 Busy Here" {
		t.Fatalf("486 upstream: %+v", up)
	}
	m := h.records(true, 1)[0]
	if m.Code != 486 || m.EndedBy != "callee" || m.ToUser != "bob" || m.Answer != 0 {
		t.Fatalf("missed call %+v", m)
	}

	if r := h.reply(caller, req("INVITE", "sip:carol@example.com", "someone@example.net", "carol@example.com", "")); status(r) != "480 Temporarily Unavailable" {
		t.Fatalf("call to carol: %s", r)
	}
	time.Sleep(50 * time.Millisecond)
	h.records(false, 1)
	h.records(true, 1)
}

// TestProviderTestsWithAccounting: the provider's tests pass as well
// with the dialog and acc modules on (every INVITE relayed has a dialog,
// in-dialog requests are matched).
func TestProviderTestsWithAccounting(t *testing.T) {
	withAccounting = true
	t.Cleanup(func() { withAccounting = false })
	for name, test := range map[string]func(*testing.T){
		"ProviderRoutes":                   TestProviderRoutes,
		"RegisterWithoutAuth":              TestRegisterWithoutAuth,
		"UnknownUsersLookLikeUnregistered": TestUnknownUsersLookLikeUnregistered,
		"RefusalsAreSingleAndStateless":    TestRefusalsAreSingleAndStateless,
		"OutboundProxyPreload":             TestOutboundProxyPreload,
		"InDialogNeedsOurSignedRoute":      TestInDialogNeedsOurSignedRoute,
		"CallsToThePSTN":                   TestCallsToThePSTN,
		"PSTNNumbersNormalised":            TestPSTNNumbersNormalised,
		"TrustedGateways":                  TestTrustedGateways,
		"FraudLimits":                      TestFraudLimits,
		"Aliases":                          TestAliases,
		"PikeCheckedFirst":                 TestPikeCheckedFirst,
		"ScannerDroppedFirst":              TestScannerDroppedFirst,
		"RateLimitedInitialRequests":       TestRateLimitedInitialRequests,
	} {
		t.Run(name, test)
	}
}

// TestForgedSpiralAccounted: bob, whose phone rings with alice's call,
// has her INVITE as it reached him, our Via in it with the branch it was
// relayed on. His own INVITE, authenticated as bob, to a 0900 number,
// with her Call-ID and From tag and her INVITE's Vias under his own, was
// taken for her INVITE coming back through the proxy (a spiral): relayed
// with her dialog's id and no dialog of its own, it was answered, talked
// and hung up with no record. A spiral is the dialog's only when it has
// its INVITE's From URI (which ProxyAuthorize binds to the authenticated
// user) and CSeq: bob's call gets a dialog of its own and its record
// (from bob, to 0900001, ended by his BYE); alice's call still rings.
func TestForgedSpiralAccounted(t *testing.T) {
	withAccounting = true
	h := newHarness(t, true, Options{})
	withAccounting = false
	const bobPhone, premium = "127.0.0.1:6200", "127.0.0.2:5090"
	if r := registerBob(t, h, bobPhone, "sip:bob@"+bobPhone); status(r) != "200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	ringing := aliceDials(h, "sip:bob@example.com", "").data
	if !strings.HasPrefix(ringing, "INVITE sip:bob@"+bobPhone) {
		t.Fatalf("alice's call to bob: %s", ringing)
	}
	callID := headerValue(ringing, "Call-ID")
	tag := regexp.MustCompile(`;tag=(f\d+)\r\n`).FindStringSubmatch(ringing)[1]
	aliceRR := headerValue(ringing, "Record-Route")
	var vias strings.Builder
	for _, line := range strings.Split(ringing, "\r\n") {
		if strings.HasPrefix(line, "Via:") {
			vias.WriteString(line + "\r\n")
		}
	}
	const ruri = "sip:0900001@" + premium
	forged := func(creds string) string {
		m := req("INVITE", ruri, "bob@example.com", "0900001@"+premium, "Contact: <sip:bob@"+bobPhone+">\r\n"+creds)
		m = regexp.MustCompile(`Call-ID: c\d+\r\n`).ReplaceAllString(m, "Call-ID: "+callID+"\r\n")
		m = regexp.MustCompile(`;tag=f\d+\r\n`).ReplaceAllString(m, ";tag="+tag+"\r\n")
		return strings.Replace(m, ";rport\r\n", ";rport\r\n"+vias.String(), 1)
	}
	r := h.reply(bobPhone, forged(""))
	if status(r) != "407 Proxy Authentication Required" {
		t.Fatalf("bob's INVITE without credentials: %s", r)
	}
	invite := forged(creds(r, "Proxy-Authorization", "bob", "bob-pw", "INVITE", ruri))
	inv := h.send(bobPhone, invite, finalOrRequest)
	if !strings.HasPrefix(inv.data, "INVITE "+ruri) || inv.dst != premium {
		t.Fatalf("bob's INVITE on alice's Call-ID and From tag with her Vias: %+v", inv)
	}
	rr := headerValue(inv.data, "Record-Route")
	if did := regexp.MustCompile(`;did=(\w+)`).FindStringSubmatch(rr); did == nil || strings.Contains(aliceRR, ";did="+did[1]) {
		t.Fatalf("bob's call relayed with Record-Route %q, alice's %q: want a dialog id of its own", rr, aliceRR)
	}
	if l := h.dlg.List("", 0); len(l) != 2 {
		t.Fatalf("%d dialogs, want alice's and bob's: %+v", len(l), l)
	}
	if up := h.answer(premium, inv, 200, "x1"); status(up.data) != "200 OK" || up.dst != bobPhone {
		t.Fatalf("200 upstream: %+v", up)
	}
	h.clock.Advance(3 * time.Second)
	bye := "BYE sip:bob@" + premium + " SIP/2.0\r\nVia: SIP/2.0/UDP " + bobPhone + ";branch=z9hG4bK-forgedbye\r\nMax-Forwards: 70\r\n" +
		"Route: " + rr + "\r\nFrom: " + headerValue(invite, "From") + "\r\nTo: " + headerValue(invite, "To") + ";tag=x1\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	if out := h.send(bobPhone, bye, func(s sentMsg) bool { return strings.HasPrefix(s.data, "BYE ") }); out.dst != premium {
		t.Fatalf("BYE relayed to %s", out.dst)
	}
	c := h.records(false, 1)[0]
	if c.CallID != callID || c.FromUser != "bob" || c.ToUser != "0900001" || c.Code != 200 || c.Duration != 3000 ||
		c.EndReason != "bye" || c.EndedBy != "caller" {
		t.Fatalf("record %+v, want bob's call to 0900001, 3 s, ended by his BYE", c)
	}
	if l := h.dlg.List("", 0); len(l) != 1 || l[0].State == "confirmed" || !strings.Contains(l[0].From, "alice@") {
		t.Fatalf("dialogs %+v, want alice's, still ringing", l)
	}
}
