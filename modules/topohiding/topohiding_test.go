package topohiding

import (
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/store"
)

// checkHidden fails when msg reveals any of marks, or carries more Vias
// than want or a Record-Route other than rr.
func checkHidden(t *testing.T, what, msg string, marks []string, vias []string, rr []string) {
	t.Helper()
	if l := reveals(msg, marks); l != "" {
		t.Errorf("%s reveals the other side: %q\n%s", what, l, msg)
	}
	if got := headerValues(msg, "Via"); strings.Join(got, "|") != strings.Join(vias, "|") {
		t.Errorf("%s Vias %q, want %q", what, got, vias)
	}
	if got := headerValues(msg, "Record-Route"); strings.Join(got, "|") != strings.Join(rr, "|") {
		t.Errorf("%s Record-Route %q, want %q", what, got, rr)
	}
}

// ourVia: the Via of ours a relayed request carries, alone.
func ourVia(t *testing.T, what, msg string) {
	t.Helper()
	v := headerValues(msg, "Via")
	if len(v) != 1 || !strings.HasPrefix(v[0], "SIP/2.0/UDP "+proxyHost+";branch=z9hG4bK") {
		t.Errorf("%s Vias %q: want ours alone", what, v)
	}
}

// ourContact: a Contact of the proxy's for party side ('c' or 'e').
func ourContact(t *testing.T, what, contact string, side byte) {
	t.Helper()
	pre := "<sip:" + proxyHost + ";thinfo=" + string(side)
	if !strings.HasPrefix(contact, pre) || len(contact) != len(pre)+tokenLen-1+1 {
		t.Errorf("%s Contact %q: want the proxy's with a token for %c", what, contact, side)
	}
}

// TestHiddenCall: a call through the proxy with topology hiding, the
// caller behind a record-routing proxy of its side (two Vias, a
// Record-Route, a private Contact), the callee behind one of its own.
// The callee side never sees a Via, Record-Route or Contact of the
// caller side, nor the caller side the callee side's, in either
// direction: the INVITE, its 180 and 200, the ACK, a re-INVITE from the
// caller that moves both Contacts (and its 2xx and ACK, which follow the
// new ones), an UPDATE from the callee with its 200, a re-INVITE from the
// callee that moves both again (its ACK, and the caller's next request,
// follow), an INFO from the caller, and the callee's BYE with its 200. Each in-dialog request goes
// to the other party's real Contact along its real route set. After the
// BYE the token names no dialog: 481.
func TestHiddenCall(t *testing.T) {
	e := newEnv(t, nil)
	c := e.invite("hide-1")
	if len(c.fwds) != 1 || len(c.up) != 1 || !strings.HasPrefix(c.up[0], "SIP/2.0 100 ") {
		t.Fatalf("INVITE: relayed %d, answered %q", len(c.fwds), c.up)
	}
	inv := c.fwds[0]
	ourVia(t, "INVITE", inv)
	checkHidden(t, "INVITE", inv, callerSide, headerValues(inv, "Via"), nil)
	ourContact(t, "INVITE", c.calleeCT, 'e')
	callerVias := []string{"SIP/2.0/UDP " + p1Addr + ";branch=z9hG4bKp1-hide-1",
		"SIP/2.0/UDP " + callerUA + ";branch=z9hG4bKua-hide-1;rport=5062;received=192.168.1.10"}

	c.respond(0, 180, "b1", calleeCT)
	ringing := c.up[len(c.up)-1]
	checkHidden(t, "180", ringing, calleeSide, callerVias, []string{p1RR})
	ourContact(t, "180", header(ringing, "Contact"), 'c')
	c.respond(0, 200, "b1", calleeCT)
	ok := c.up[len(c.up)-1]
	if !strings.HasPrefix(ok, "SIP/2.0 200 ") {
		t.Fatalf("no 200 upstream: %q", ok)
	}
	checkHidden(t, "200", ok, calleeSide, callerVias, []string{p1RR})
	ourContact(t, "200", c.callerCT, 'c')
	if !strings.Contains(ok, "Server: bob-ua") {
		t.Error("a header other than Via, Record-Route and Contact was lost")
	}

	// The caller's ACK: to the callee's Contact along its route set.
	ack := only(t, c.fromCaller("ACK", "", "", ""), "ACK ")
	if ack.Dst.String() != p2Addr || !strings.HasPrefix(ack.Data, "ACK sip:bob@10.0.0.5:5060 SIP/2.0\r\n") || header(ack.Data, "Route") != p2RR {
		t.Fatalf("ACK to %v:\n%s", ack.Dst, ack.Data)
	}
	ourVia(t, "ACK", ack.Data)
	checkHidden(t, "ACK", ack.Data, callerSide, headerValues(ack.Data, "Via"), nil)

	// A re-INVITE from the caller with a new Contact; the callee answers
	// from a new one.
	sent := c.fromCaller("INVITE", "", "", "Contact: <sip:alice-ua@192.168.1.11:5062>\r\n")
	reinv := only(t, sent, "INVITE ")
	if reinv.Dst.String() != p2Addr || !strings.HasPrefix(reinv.Data, "INVITE sip:bob@10.0.0.5:5060 ") {
		t.Fatalf("re-INVITE to %v:\n%s", reinv.Dst, reinv.Data)
	}
	ourVia(t, "re-INVITE", reinv.Data)
	checkHidden(t, "re-INVITE", reinv.Data, callerSide, headerValues(reinv.Data, "Via"), nil)
	if ct := header(reinv.Data, "Contact"); ct != c.calleeCT {
		t.Errorf("re-INVITE Contact %q, want the proxy's %q", ct, c.calleeCT)
	}
	up := only(t, c.answer(calleeAddr, reinv.Data, 200, "Contact: <sip:bob@10.0.0.6:5060>\r\nRecord-Route: "+p2RR+"\r\n"), "SIP/2.0 200 ")
	reinvVias := []string{"SIP/2.0/UDP " + p1Addr + ";branch=z9hG4bKp1-INVITE12hide-1", "SIP/2.0/UDP " + callerUA + ";branch=z9hG4bKua-INVITE12hide-1"}
	checkHidden(t, "200 to the re-INVITE", up.Data, calleeSide, reinvVias, nil)
	if up.Dst.String() != p1Addr || header(up.Data, "Contact") != c.callerCT {
		t.Errorf("200 to the re-INVITE went to %v with Contact %q", up.Dst, header(up.Data, "Contact"))
	}
	ack = only(t, c.fromCaller("ACK", "", "", ""), "ACK ")
	if !strings.HasPrefix(ack.Data, "ACK sip:bob@10.0.0.6:5060 ") {
		t.Errorf("the ACK of the re-INVITE does not go to the callee's new Contact:\n%s", ack.Data)
	}

	// An UPDATE from the callee: to the caller's new Contact along the
	// caller side's route set.
	upd := only(t, c.fromCallee("UPDATE", "Contact: <sip:bob@10.0.0.6:5060>\r\n"), "UPDATE ")
	if upd.Dst.String() != p1Addr || !strings.HasPrefix(upd.Data, "UPDATE sip:alice-ua@192.168.1.11:5062 SIP/2.0\r\n") ||
		header(upd.Data, "Route") != p1RR {
		t.Fatalf("UPDATE to %v:\n%s", upd.Dst, upd.Data)
	}
	ourVia(t, "UPDATE", upd.Data)
	checkHidden(t, "UPDATE", upd.Data, calleeSide, headerValues(upd.Data, "Via"), nil)
	if ct := header(upd.Data, "Contact"); ct != c.callerCT {
		t.Errorf("UPDATE Contact %q, want the proxy's %q", ct, c.callerCT)
	}
	up = only(t, c.answer(p1Addr, upd.Data, 200, "Contact: <sip:alice-ua@192.168.1.11:5062>\r\n"), "SIP/2.0 200 ")
	updVias := []string{"SIP/2.0/UDP " + p2Addr + ";branch=z9hG4bKp2-UPDATE1hide-1", "SIP/2.0/UDP " + calleeAddr + ";branch=z9hG4bKbob-UPDATE1hide-1"}
	checkHidden(t, "200 to the UPDATE", up.Data, callerSide, updVias, nil)
	if up.Dst.String() != p2Addr || header(up.Data, "Contact") != c.calleeCT {
		t.Errorf("200 to the UPDATE went to %v with Contact %q", up.Dst, header(up.Data, "Contact"))
	}

	// A re-INVITE from the callee with a new Contact, answered by the
	// caller from a new one: the callee's ACK goes to the caller's new
	// Contact, the caller's next request to the callee's.
	reinv = only(t, c.fromCallee("INVITE", "Contact: <sip:bob@10.0.0.7:5060>\r\n"), "INVITE ")
	if !strings.HasPrefix(reinv.Data, "INVITE sip:alice-ua@192.168.1.11:5062 ") || header(reinv.Data, "Contact") != c.callerCT {
		t.Fatalf("the callee's re-INVITE:\n%s", reinv.Data)
	}
	checkHidden(t, "the callee's re-INVITE", reinv.Data, calleeSide, headerValues(reinv.Data, "Via"), nil)
	up = only(t, c.answer(p1Addr, reinv.Data, 200, "Contact: <sip:alice-ua@192.168.1.12:5062>\r\n"), "SIP/2.0 200 ")
	checkHidden(t, "200 to the callee's re-INVITE", up.Data, callerSide, headerValues(up.Data, "Via"), nil)
	if header(up.Data, "Contact") != c.calleeCT {
		t.Errorf("200 to the callee's re-INVITE: Contact %q", header(up.Data, "Contact"))
	}
	c.ccseq-- // the ACK has the INVITE's CSeq
	ack = only(t, c.fromCallee("ACK", ""), "ACK ")
	if !strings.HasPrefix(ack.Data, "ACK sip:alice-ua@192.168.1.12:5062 ") {
		t.Errorf("the callee's ACK does not go to the caller's new Contact:\n%s", ack.Data)
	}

	// An INFO from the caller, to the callee's new Contact.
	info := only(t, c.fromCaller("INFO", "", "", ""), "INFO ")
	if !strings.HasPrefix(info.Data, "INFO sip:bob@10.0.0.7:5060 ") {
		t.Errorf("INFO not to the callee's new Contact:\n%s", info.Data)
	}
	checkHidden(t, "INFO", info.Data, callerSide, headerValues(info.Data, "Via"), nil)
	up = only(t, c.answer(calleeAddr, info.Data, 200, ""), "SIP/2.0 200 ")
	checkHidden(t, "200 to the INFO", up.Data, calleeSide, headerValues(up.Data, "Via"), nil)

	// The callee hangs up.
	bye := only(t, c.fromCallee("BYE", ""), "BYE ")
	if bye.Dst.String() != p1Addr || !strings.HasPrefix(bye.Data, "BYE sip:alice-ua@192.168.1.12:5062 ") {
		t.Fatalf("BYE to %v:\n%s", bye.Dst, bye.Data)
	}
	checkHidden(t, "BYE", bye.Data, calleeSide, headerValues(bye.Data, "Via"), nil)
	up = only(t, c.answer(p1Addr, bye.Data, 200, ""), "SIP/2.0 200 ")
	checkHidden(t, "200 to the BYE", up.Data, callerSide, []string{"SIP/2.0/UDP " + p2Addr + ";branch=z9hG4bKp2-BYE3hide-1",
		"SIP/2.0/UDP " + calleeAddr + ";branch=z9hG4bKbob-BYE3hide-1"}, nil)
	if n := e.d.List("", 10); len(n) != 0 {
		t.Fatalf("the BYE left %d dialogs", len(n))
	}
	if r := only(t, c.fromCallee("BYE", ""), "SIP/2.0 "); !strings.HasPrefix(r.Data, "SIP/2.0 481 ") {
		t.Fatalf("BYE after the end: %q", r.Data)
	}
	if got := e.set; got == nil {
		t.Fatal("no metrics")
	}
	if e.th.hidden.Get() != 1 || e.th.matched.Get() != 8 || e.th.unmatched.Get() != 1 || e.th.forged.Get() != 0 {
		t.Errorf("calls %d requests %d unmatched %d forged %d", e.th.hidden.Get(), e.th.matched.Get(), e.th.unmatched.Get(), e.th.forged.Get())
	}
}

// TestSettingsChecked: bad keys are named.
func TestSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		s   Settings
		key string
	}{
		{Settings{Param: ""}, "param"},
		{Settings{Param: "th info"}, "param"},
		{Settings{Param: "transport"}, "param"},
		{Settings{Param: "thinfo", ContactUser: "a@b"}, "contact_user"},
	} {
		err := checkSettings(&tc.s)
		ke, ok := err.(*modules.KeyError)
		if !ok || ke.Key != tc.key {
			t.Errorf("%+v: %v, want an error naming %s", tc.s, err, tc.key)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Errorf("defaults: %v", err)
	}
	_ = routetest.Request
}

// withToken returns the proxy Contact ct with its token replaced by tok.
func withToken(ct, tok string) string {
	i := strings.Index(ct, "thinfo=")
	return ct[:i+len("thinfo=")] + tok + ">"
}

func tokenOf(ct string) string {
	i := strings.Index(ct, "thinfo=")
	return strings.TrimSuffix(ct[i+len("thinfo="):], ">")
}

// TestForgedAndReplayedTokens: what a token that is not this call's own
// gets. Two calls are up. A BYE of call B sent to call A's Contact (A's
// token, B's Call-ID and tags: a token replayed from another call), A's
// token with its MAC edited, or with call B's dialog id written in: 403,
// nothing relayed, counted as forged, both calls up. A's token for the
// callee used by A's caller (its tags): 481 (the dialog is not the
// requester's from that side), counted as unmatched. A's token on a
// request outside a dialog: 403. An ACK with a forged token: dropped
// without an answer. After A's BYE, a new BYE with A's token: 481.
func TestForgedAndReplayedTokens(t *testing.T) {
	e := newEnv(t, nil)
	a := e.invite("forge-a")
	a.respond(0, 200, "ba", calleeCT)
	b := e.invite("forge-b")
	b.respond(0, 200, "bb", calleeCT)
	if len(e.d.List("", 10)) != 2 {
		t.Fatal("two calls are not up")
	}
	refused := func(what string, sent []routetest.Sent, code string) {
		t.Helper()
		for _, s := range sent {
			if !strings.HasPrefix(s.Data, "SIP/2.0 ") {
				t.Errorf("%s: something was relayed to %v:\n%s", what, s.Dst, s.Data)
			}
		}
		if r := only(t, sent, "SIP/2.0 "); !strings.HasPrefix(r.Data, "SIP/2.0 "+code+" ") {
			t.Errorf("%s: answered %q, want %s", what, strings.SplitN(r.Data, "\r\n", 2)[0], code)
		}
	}
	tokA := tokenOf(a.callerCT)
	refused("B's BYE to A's Contact", b.fromCaller("BYE", a.callerCT, "", ""), "403")
	mac := []byte(tokA)
	mac[len(mac)-1] ^= 1
	refused("A's token, MAC edited", a.fromCaller("BYE", withToken(a.callerCT, string(mac)), "", ""), "403")
	idB := tokenOf(b.callerCT)[1 : 1+idHex]
	refused("A's token with B's id", a.fromCaller("BYE", withToken(a.callerCT, "c"+idB+tokA[1+idHex:]), "", ""), "403")
	refused("A's token, side changed", a.fromCaller("BYE", withToken(a.callerCT, "e"+tokA[1:]), "", ""), "403")
	refused("A's token cut short", a.fromCaller("BYE", withToken(a.callerCT, tokA[:20]), "", ""), "403")
	if e.th.forged.Get() != 5 {
		t.Errorf("forged counted %d, want 5", e.th.forged.Get())
	}
	refused("A's callee token used by A's caller", a.fromCaller("BYE", a.calleeCT, "", ""), "481")
	if e.th.unmatched.Get() != 1 {
		t.Errorf("unmatched counted %d, want 1", e.th.unmatched.Get())
	}
	initial := strings.Replace(strings.Replace(a.invite, "INVITE sip:bob@"+calleeAddr, "INVITE "+uri(a.callerCT), 1), "z9hG4bKp1-", "z9hG4bKp1-x", 1)
	refused("A's token on a request outside a dialog", a.send(p1Addr, initial), "403")
	if sent := b.fromCaller("ACK", a.callerCT, "", ""); len(sent) != 0 {
		t.Errorf("a forged ACK got %d messages out", len(sent))
	}
	if len(e.d.List("", 10)) != 2 {
		t.Fatal("a refused request ended a call")
	}
	bye := a.fromCaller("BYE", "", "", "")
	only(t, bye, "BYE ")
	if len(e.d.List("", 10)) != 1 {
		t.Fatal("A's BYE did not end A")
	}
	// The token replayed once the call ended (a retransmission of the same
	// BYE would be absorbed by its transaction: a new one).
	refused("A's token after the BYE", a.fromCaller("BYE", "", "", ""), "481")
}

// TestForkedCallHidden: a call forked to two branches that both ring,
// each with its own Contact: the caller gets each 18x with the proxy's
// Contact and none of the branches'; a PRACK inside each early dialog
// reaches the branch whose To tag it carries; the 200 of one branch, and
// the late 200 of the other, go up hidden; the ACK goes to the branch
// that answered first.
func TestForkedCallHidden(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) { c.AppendBranch([]byte("sip:bob@" + callee2)) }
	c := e.invite("fork-1")
	if len(c.fwds) != 2 {
		t.Fatalf("%d branches", len(c.fwds))
	}
	for i, f := range c.fwds {
		ourVia(t, "INVITE branch "+itoa(i), f)
		checkHidden(t, "INVITE branch "+itoa(i), f, callerSide, headerValues(f, "Via"), nil)
	}
	c.respond(0, 180, "b1", "<sip:bob@10.0.0.5:5060>")
	c.respond(1, 183, "b2", "<sip:bob@10.0.0.6:5090>")
	for _, up := range c.up[1:] {
		checkHidden(t, "18x", up, calleeSide, headerValues(up, "Via"), []string{p1RR})
		ourContact(t, "18x", header(up, "Contact"), 'c')
	}
	ct := header(c.up[1], "Contact")
	pr := only(t, c.fromCaller("PRACK", ct, "b2", ""), "PRACK ")
	if !strings.HasPrefix(pr.Data, "PRACK sip:bob@10.0.0.6:5090 ") || pr.Dst.String() != p2Addr {
		t.Fatalf("PRACK of the second branch to %v:\n%s", pr.Dst, pr.Data)
	}
	checkHidden(t, "PRACK", pr.Data, callerSide, headerValues(pr.Data, "Via"), nil)
	pr = only(t, c.fromCaller("PRACK", ct, "b1", ""), "PRACK ")
	if !strings.HasPrefix(pr.Data, "PRACK sip:bob@10.0.0.5:5060 ") {
		t.Fatalf("PRACK of the first branch:\n%s", pr.Data)
	}
	c.respond(1, 200, "b2", "<sip:bob@10.0.0.6:5090>")
	c.respond(0, 200, "b1", "<sip:bob@10.0.0.5:5060>")
	oks := 0
	for _, up := range c.up {
		if strings.HasPrefix(up, "SIP/2.0 200 ") {
			oks++
			checkHidden(t, "200", up, calleeSide, headerValues(up, "Via"), []string{p1RR})
		}
	}
	if oks != 2 {
		t.Fatalf("%d 2xx went up, want both", oks)
	}
	ack := only(t, c.fromCaller("ACK", "", "", ""), "ACK ")
	if !strings.HasPrefix(ack.Data, "ACK sip:bob@10.0.0.6:5090 ") {
		t.Fatalf("ACK:\n%s", ack.Data)
	}
}

// TestRouteURI: the next hop of a route set is the URI of its first
// value, whatever a display name holds.
func TestRouteURI(t *testing.T) {
	for in, want := range map[string]string{
		"<sip:10.0.0.7;lr>, <sip:10.0.0.8;lr>":            "sip:10.0.0.7;lr",
		`"a, <b>" <sip:p.example.net;lr;x=1>, <sip:q;lr>`: "sip:p.example.net;lr;x=1",
		"sip:bare.example.net;lr":                         "",
		"":                                                "",
		"<sip:unclosed;lr":                                "",
	} {
		if got := string(routeURI([]byte(in))); got != want {
			t.Errorf("routeURI(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHiddenCallSurvivesRestart: a hidden call answered before the
// modules stop (the dialog written to a real SQLite store) goes on after
// new modules on a new core load it, with the same data directory (the
// token key): the caller's INFO and the callee's BYE, to the Contacts
// they got before, reach the other party's real Contact along its route
// set, hidden; the BYE ends the restored dialog.
func TestHiddenCallSurvivesRestart(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o := envOptions{store: st, dataDir: t.TempDir()}
	e1 := newEnvWith(t, nil, o)
	c := e1.invite("restart-1")
	c.respond(0, 200, "b1", calleeCT)
	only(t, c.fromCaller("ACK", "", "", ""), "ACK ")
	e1.mods.Stop() // writes the dialog

	e2 := newEnvWith(t, nil, o)
	if n := len(e2.d.List("", 10)); n != 1 {
		t.Fatalf("%d dialogs restored, want 1", n)
	}
	c.e = e2
	info := only(t, c.fromCaller("INFO", "", "", ""), "INFO ")
	if info.Dst.String() != p2Addr || !strings.HasPrefix(info.Data, "INFO sip:bob@10.0.0.5:5060 ") || header(info.Data, "Route") != p2RR {
		t.Fatalf("INFO after the restart to %v:\n%s", info.Dst, info.Data)
	}
	ourVia(t, "INFO", info.Data)
	checkHidden(t, "INFO", info.Data, callerSide, headerValues(info.Data, "Via"), nil)
	bye := only(t, c.fromCallee("BYE", ""), "BYE ")
	if bye.Dst.String() != p1Addr || !strings.HasPrefix(bye.Data, "BYE sip:alice-ua@"+callerUA+" ") || header(bye.Data, "Route") != p1RR {
		t.Fatalf("BYE after the restart to %v:\n%s", bye.Dst, bye.Data)
	}
	checkHidden(t, "BYE", bye.Data, calleeSide, headerValues(bye.Data, "Via"), nil)
	if n := len(e2.d.List("", 10)); n != 0 {
		t.Fatalf("the BYE left %d dialogs", n)
	}
}

// TestReloadKeepsSettings: every key takes effect at the next start (a new
// param would stop the calls in progress from matching): a reload that
// changes param and calls is not refused, CheckReload names both as
// needing a restart, and Reload keeps the values in force, in the
// settings handed over too.
func TestReloadKeepsSettings(t *testing.T) {
	e := newEnv(t, nil)
	s := DefaultSettings()
	s.Param, s.Calls = "other", !s.Calls
	err := e.th.CheckReload(s)
	var keys []string
	for _, one := range err.(interface{ Unwrap() []error }).Unwrap() {
		if ke, ok := one.(*modules.KeyError); ok && ke.Restart {
			keys = append(keys, ke.Key)
		}
	}
	if strings.Join(keys, ",") != "param,calls" {
		t.Fatalf("CheckReload: %v, want param and calls named as needing a restart", err)
	}
	if err := e.th.Reload(s); err != nil {
		t.Fatal(err)
	}
	if d := DefaultSettings(); *s != *d || e.th.param != d.Param || e.th.calls != d.Calls {
		t.Errorf("after the reload the settings say %+v, param %q in force; want the defaults kept", s, e.th.param)
	}
}
