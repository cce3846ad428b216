package dialog

import (
	"context"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
)

// recordValid makes e's route ask ValidateDialog of every in-dialog
// request LooseRoute verifies, before MatchDialog, and returns its
// answers in order.
func (e *env) recordValid() *[]bool {
	var valid []bool
	e.Route = func(c *routing.Ctx) {
		if c.HasToTag() && c.LooseRoute() {
			valid = append(valid, e.d.ValidateDialog(c))
		}
		e.route(c)
	}
	return &valid
}

// natContact rewrites the host:port of the first Contact of m with ed to
// hostPort, as nathelper's fix_nated_contact writes the source address.
func natContact(t *testing.T, m *parser.Message, ed *parser.Editor, hostPort []byte) {
	t.Helper()
	var na parser.NameAddr
	if !m.Contact(&na) {
		t.Fatal("no Contact to rewrite")
	}
	u, err := parser.ParseURI(na.URI)
	if err != nil {
		t.Fatal(err)
	}
	start := cap(na.URI) - cap(u.Host)
	end := start + len(u.Host)
	if end < len(na.URI) && na.URI[end] == ':' {
		for end++; end < len(na.URI) && na.URI[end] >= '0' && na.URI[end] <= '9'; end++ {
		}
	}
	if !ed.Replace(na.URI[start:end], hostPort) {
		t.Fatal("Contact not rewritten")
	}
}

// TestMisroutedByeEndsNothing: a party's BYE with our signed Route whose
// Request-URI or next Route is not the other party's as the dialog knows
// it (the caller's BYE addressed to herself, to another host of hers, to
// the callee's user with a maddr of hers, past the callee's proxy or
// through another; the callee's to itself) is not valid
// (ValidateDialog false, the route answers it) and matches nothing: the
// dialog stays confirmed, nothing ended, no record, no CSeq recorded,
// switchboard_dialog_misrouted_total counts them. The callee's INFO
// addressed elsewhere likewise. A BYE to the callee's Contact written
// another way RFC 3261 §19.1.4 holds equal (an escaped user, the
// parameter's name in capitals) then ends the call.
func TestMisroutedByeEndsNothing(t *testing.T) {
	e := newEnv(t, nil)
	valid := e.recordValid()
	c := e.invite("misrouted-1")
	c.respond(0, 200, "b1")
	c.inDialog("ACK", true, "b1", 10)
	cseq := e.only(t).cseq
	toCallee := c.routeFrom(true)
	ours := toCallee[:len(toCallee)-1]
	for i, f := range []struct {
		name       string
		fromCaller bool
		ruri       string
		route      []string
	}{
		{"caller's BYE to herself", true, "sip:alice@" + callerAddr, nil},
		{"caller's BYE to a host of hers", true, "sip:bob@127.0.0.1:6666;transport=udp", nil},
		{"caller's BYE with a maddr of hers", true, "sip:bob@" + calleeAddr + ";transport=udp;maddr=127.0.0.66", nil},
		{"caller's BYE past the callee's proxy", true, "", ours},
		{"caller's BYE through another proxy", true, "", append(append([]string{}, ours...), "<sip:127.0.0.1:6666;lr>")},
		{"callee's BYE to itself", false, "sip:bob@" + calleeAddr, nil},
		{"callee's INFO to a host of its", false, "sip:alice@127.0.0.1:6666", nil},
	} {
		method := "BYE"
		if strings.Contains(f.name, "INFO") {
			method = "INFO"
		}
		c.inDialogTo(method, f.fromCaller, "b1", 20+i, f.ruri, f.route, "")
		if v, m := *valid, e.matched; v[len(v)-1] || m[len(m)-1] {
			t.Fatalf("%s: valid %v, matched %v", f.name, v, m)
		}
		e.wantCount(t, 0, 0, 1)
		if e.ended(ReasonBye) != 0 {
			t.Fatalf("%s ended the dialog", f.name)
		}
		if g := e.only(t); g.cseq != cseq {
			t.Fatalf("%s: CSeq recorded %v, was %v", f.name, g.cseq, cseq)
		}
		if n := e.d.misrouted.Get(); n != uint64(2*(i+1)) {
			t.Fatalf("%s: misrouted_total %d, want %d (ValidateDialog and MatchDialog)", f.name, n, 2*(i+1))
		}
	}
	c.inDialogTo("BYE", true, "b1", 30, "sip:%62ob@"+calleeAddr+";TRANSPORT=UDP", nil, "")
	if v := *valid; !v[len(v)-1] || !e.matched[len(e.matched)-1] || e.ended(ReasonBye) != 1 {
		t.Fatalf("the caller's BYE to the callee: valid %v, matched %v, ended %d", v, e.matched, e.ended(ReasonBye))
	}
	e.wantCount(t, 0, 0, 0)
}

// TestValidateTargetsAsRelayed: each party's target is its Contact as
// the other party was given it: the caller's as the INVITE was relayed
// after the route rewrote it (fix_nated_contact), the callee's as its 2xx
// went upstream after the reply route's. A request to the Contact a
// party sent, which the other never saw, is not valid (a private address
// behind NAT); one to the Contact as relayed is. A re-INVITE of the
// caller with a new Contact, rewritten in the relay, and the callee's 2xx
// with a new one, rewritten too, refresh both targets as relayed: the
// callee's BYE to the caller's former target is refused, to the new one
// ends the call.
func TestValidateTargetsAsRelayed(t *testing.T) {
	e := newEnv(t, nil)
	valid := e.recordValid()
	callerNAT, calleeNAT := "192.0.2.70:7070", "192.0.2.80:8080"
	e.beforeRelay = func(c *routing.Ctx) bool {
		natContact(t, c.Msg(), c.R.Editor(), c.R.Own([]byte(callerNAT)))
		return true
	}
	e.afterMatch = func(c *routing.Ctx) {
		if c.IsMethod(parser.MethodInvite) {
			natContact(t, c.Msg(), c.R.Editor(), c.R.Own([]byte(callerNAT)))
		}
	}
	e.Reply = func(c *routing.ReplyCtx) bool {
		if c.Msg().Has(parser.HdrContact) {
			natContact(t, c.Msg(), c.Editor(), c.Own([]byte(calleeNAT)))
		}
		return true
	}
	c := e.invite("relayed-1")
	if !strings.Contains(c.fwd, "Contact: <sip:alice@"+callerNAT+">") {
		t.Fatalf("INVITE relayed without the rewritten Contact:\n%s", c.fwd)
	}
	up := c.respond(0, 200, "b1")
	if len(up) == 0 || !strings.Contains(up[0].Data, "Contact: <sip:bob@"+calleeNAT+";transport=udp>") {
		t.Fatalf("200 relayed without the rewritten Contact: %v", up)
	}
	for i, f := range []struct {
		fromCaller bool
		ruri       string
		valid      bool
	}{
		{false, "sip:alice@" + callerAddr, false},                                // the Contact the caller sent
		{true, "sip:bob@" + calleeAddr + ";transport=udp", false},                // the Contact the callee sent
		{false, "sip:alice@" + callerNAT, true},                                  // as the callee has it
		{true, "sip:bob@" + calleeNAT + ";transport=udp", true},                  // as the caller has it
		{true, "sip:bob@" + strings.ToUpper(calleeNAT) + ";transport=UDP", true}, // the same, other case
	} {
		c.inDialogTo("INFO", f.fromCaller, "b1", 11+i, f.ruri, nil, "")
		if got := (*valid)[i]; got != f.valid || e.matched[i] != f.valid {
			t.Fatalf("INFO %d to %s: valid %v, matched %v, want %v", i, f.ruri, got, e.matched[i], f.valid)
		}
	}
	e.wantCount(t, 0, 0, 1)

	// The caller's re-INVITE with a new Contact; the callee answers from
	// a new one. Both are rewritten on their way.
	oldCaller := callerNAT
	callerNAT, calleeNAT = "192.0.2.71:7171", "192.0.2.81:8181"
	sent := c.inDialogTo("INVITE", true, "b1", 20, "sip:bob@192.0.2.80:8080;transport=udp", nil, "Contact: <sip:alice@10.9.9.9:5070>\r\n")
	var fwd string
	for _, s := range sent {
		if strings.HasPrefix(s.Data, "INVITE ") {
			fwd = s.Data
		}
	}
	var m parser.Message
	if err := m.Parse([]byte(fwd)); err != nil {
		t.Fatalf("re-INVITE not relayed: %v", err)
	}
	c.send(calleeAddr, string(parser.AppendResponseHeaders(nil, &m, 200, nil, nil, []byte("Contact: <sip:bob@10.8.8.8:5080>\r\n"))))
	g := e.only(t)
	if got := string(g.sentTarget(toCaller)); got != "sip:alice@"+callerNAT {
		t.Fatalf("caller's target after the refresh %q", got)
	}
	if got := string(g.sentTarget(toCallee)); got != "sip:bob@"+calleeNAT {
		t.Fatalf("callee's target after the refresh %q", got)
	}
	if got := string(g.get(g.target[toCallee])); got != "sip:bob@10.8.8.8:5080" {
		t.Fatalf("callee's Contact after the refresh %q (the proxy's BYE goes there)", got)
	}
	n := len(*valid)
	c.inDialogTo("BYE", false, "b1", 5, "sip:alice@"+oldCaller, nil, "")
	if (*valid)[n] || e.ended(ReasonBye) != 0 {
		t.Fatal("the callee's BYE to the caller's former target was valid")
	}
	c.inDialogTo("BYE", false, "b1", 6, "sip:alice@"+callerNAT, nil, "")
	if !(*valid)[n+1] || e.ended(ReasonBye) != 1 {
		t.Fatal("the callee's BYE to the caller's new target did not end the call")
	}
}

// TestSameURI: RFC 3261 §19.1.4's equal and unequal URIs, and where this
// comparison is more lenient (an absent port or transport is the
// scheme's default: the same destination).
func TestSameURI(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp", true},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5", true},
		{"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5", true},
		{"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com", true},
		{"sip:bob@[2001:DB8::1]:5080", "sip:bob@[2001:db8:0:0::1]:5080", true},
		{"sip:bob@192.0.2.4", "sip:bob@192.0.2.4:5060;transport=udp", true},
		{"sips:bob@192.0.2.4", "sips:bob@192.0.2.4:5061", true},
		{"SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP", false}, // user case
		{"sip:bob@biloxi.com", "sip:bob@biloxi.com:6000", false},
		{"sip:bob@biloxi.com", "sips:bob@biloxi.com", false},
		{"sip:bob@biloxi.com;transport=tcp", "sip:bob@biloxi.com", false},
		{"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off", false},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;maddr=192.0.2.66", false},
		{"sip:carol@chicago.com", "sip:carol@chicago.com;user=phone", false},
		{"sip:bob@[2001:db8::1]", "sip:bob@[2001:db8::2]", false},
		{"sip:bob@192.0.2.4", "sip:bob@host4.example.com", false},
		{"sip:bob@192.0.2.4", "sip:bob@192.0.2.4?subject=x", false},
		{"sip:bob:pw@192.0.2.4", "sip:bob@192.0.2.4", false},
		// A parameter given twice counts once, with its first value.
		{"sip:carol@chicago.com;x=1;x=2", "SIP:carol@chicago.com;x=1;x=2", true},
		{"sip:carol@chicago.com;x=1", "sip:carol@chicago.com;x=1;X=2", true},
		{"sip:carol@chicago.com;x=2;x=1", "sip:carol@chicago.com;x=1", false},
		{"sip:carol@chicago.com;x=1;y=2", "sip:carol@chicago.com;x=3;y=2", false},
	} {
		var a, b parser.URI
		if a.Parse([]byte(c.a)) != nil || b.Parse([]byte(c.b)) != nil {
			t.Fatalf("%s or %s does not parse", c.a, c.b)
		}
		if got := sameURI(&a, &b, true); got != c.same {
			t.Errorf("%s = %s: %v, want %v", c.a, c.b, got, c.same)
		}
		if got := sameURI(&b, &a, true); got != c.same {
			t.Errorf("%s = %s: %v, want %v", c.b, c.a, got, c.same)
		}
	}
}

// TestSameURIManyParameters: a Request-URI and a Route of 10,000
// parameters each (a party's BYE, 40 KB) are not compared parameter by
// parameter, each looked for among the other's, which took seconds of
// CPU: they are the same URI only byte for byte. 32 parameters are still
// compared as RFC 3261 §19.1.4 says.
func TestSameURIManyParameters(t *testing.T) {
	parse := func(s string) *parser.URI {
		var u parser.URI
		if err := u.Parse([]byte(s)); err != nil {
			t.Fatal(err)
		}
		return &u
	}
	many := "sip:bob@192.0.2.4" + strings.Repeat(";a", 10000)
	start := time.Now()
	if sameURI(parse(many), parse("sip:bob@192.0.2.4"+strings.Repeat(";b", 10000)), true) {
		t.Error("10,000 parameters, none in both: the same URI")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("10,000 parameters compared in %v", d)
	}
	if sameURI(parse(many), parse("SIP"+many[3:]), true) {
		t.Error("10,000 parameters spelt otherwise: the same URI")
	}
	if !sameURI(parse(many), parse(many), true) {
		t.Error("10,000 parameters byte for byte: not the same URI")
	}
	for _, n := range []int{31, 32} {
		params := "sip:bob@192.0.2.4" + strings.Repeat(";p", n)
		if !sameURI(parse(params), parse("SIP"+params[3:]), true) {
			t.Errorf("%d parameters spelt otherwise: not the same URI", n)
		}
	}
}

// TestValidateAfterRestart: the targets as relayed are stored with the
// dialog (store.Dialog CallerContactSent, CalleeContactSent) and
// restored: after a restart the caller's BYE to the callee's Contact as
// it sent it is still refused and the one to the Contact as relayed ends
// the call. A row without them (written before, or by the OpenSIPS
// schema) validates a party without a route set by its first hop: the
// callee's BYE to the caller's source address.
func TestValidateAfterRestart(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e1 := newEnvWith(t, persistSettings(), envOptions{store: st, secret: testSecret})
	const callerNAT, calleeNAT = "192.0.2.70:7070", "192.0.2.80:8080"
	e1.beforeRelay = func(c *routing.Ctx) bool {
		natContact(t, c.Msg(), c.R.Editor(), c.R.Own([]byte(callerNAT)))
		return true
	}
	e1.Reply = func(c *routing.ReplyCtx) bool {
		if c.Msg().Has(parser.HdrContact) {
			natContact(t, c.Msg(), c.Editor(), c.Own([]byte(calleeNAT)))
		}
		return true
	}
	c := e1.invite("restart-relayed")
	c.respond(0, 200, "b1")
	e1.mods.Stop()
	row := stored(t, st)["restart-relayed"]
	if row.CallerContactSent != "sip:alice@"+callerNAT || row.CalleeContactSent != "sip:bob@"+calleeNAT+";transport=udp" ||
		row.CallerContact != "sip:alice@"+callerAddr {
		t.Fatalf("stored %+v", row)
	}

	e2 := newEnvWith(t, persistSettings(), envOptions{store: st, clock: e1.clock, secret: testSecret})
	valid := e2.recordValid()
	c.e = e2
	c.inDialogTo("BYE", true, "b1", 11, "sip:bob@"+calleeAddr+";transport=udp", nil, "")
	if (*valid)[0] || e2.ended(ReasonBye) != 0 {
		t.Fatal("after the restart, the caller's BYE to the callee's Contact as sent was valid")
	}
	c.inDialogTo("BYE", true, "b1", 12, "sip:bob@"+calleeNAT+";transport=udp", nil, "")
	if !(*valid)[1] || e2.ended(ReasonBye) != 1 {
		t.Fatal("after the restart, the caller's BYE to the callee's Contact as relayed did not end the call")
	}

	// A row without the Contacts as relayed: a call whose caller, behind
	// NAT (Contact 10.1.1.1), has no proxy before us (no route set), so
	// its first hop is its source.
	e2.beforeRelay = e1.beforeRelay
	e2.Reply = e1.Reply
	inv := strings.Replace(allocInvite, "00000000", "restart1", -1)
	inv = strings.Replace(inv, "Contact: <sip:alice@"+callerAddr+">", "Contact: <sip:alice@10.1.1.1:5070>", 1)
	e2.Receive(callerAddr, inv)
	var fwd parser.Message
	sent := e2.Take()
	if len(sent) == 0 || fwd.Parse([]byte(sent[len(sent)-1].Data)) != nil {
		t.Fatalf("INVITE not relayed: %v", sent)
	}
	e2.Receive(calleeAddr, string(parser.AppendResponseHeaders(nil, &fwd, 200, nil, []byte("b2"),
		[]byte("Record-Route: "+string(fwd.Get(parser.HdrRecordRoute))+"\r\nContact: <sip:bob@"+calleeAddr+">\r\n"))))
	e2.mods.Stop()
	rows := stored(t, st)
	r := rows["crestart1@phone"]
	if r.CallerContactSent == "" {
		t.Fatalf("stored %+v", rows)
	}
	r.CallerContactSent, r.CalleeContactSent = "", ""
	if err := st.ApplyDialogs(context.Background(), []store.DialogOp{{Kind: store.DialogUpsert, Dialog: r}}); err != nil {
		t.Fatal(err)
	}
	e3 := newEnvWith(t, persistSettings(), envOptions{store: st, clock: e1.clock, secret: testSecret})
	valid = e3.recordValid()
	bye := func(ruri string, cseq int) {
		e3.Receive(calleeAddr, "BYE "+ruri+" SIP/2.0\r\nVia: SIP/2.0/UDP "+calleeAddr+";branch=z9hG4bK-rb"+itoa(cseq)+"\r\n"+
			"Max-Forwards: 70\r\nRoute: "+string(fwd.Get(parser.HdrRecordRoute))+"\r\nFrom: <sip:bob@example.com>;tag=b2\r\n"+
			"To: "+string(fwd.From().Raw)+"\r\nCall-ID: crestart1@phone\r\nCSeq: "+itoa(cseq)+" BYE\r\nContent-Length: 0\r\n\r\n")
	}
	bye("sip:alice@127.0.0.1:6666", 1)
	if (*valid)[0] || e3.ended(ReasonBye) != 0 {
		t.Fatal("a BYE to another address of the restored call was valid")
	}
	bye("sip:alice@"+callerAddr, 2)
	if !(*valid)[1] || e3.ended(ReasonBye) != 1 {
		t.Fatal("the callee's BYE to the caller's first hop did not end the restored call")
	}
}

// TestValidateWithoutContact: a callee whose 2xx has no Contact (RFC
// 3261 §12.1.1 wants one; a broken gateway) is reached at the
// Request-URI the INVITE was sent with: the caller's BYE addressed
// elsewhere is refused, the one to that URI ends the call.
func TestValidateWithoutContact(t *testing.T) {
	e := newEnv(t, nil)
	valid := e.recordValid()
	c := e.invite("nocontact-1")
	var m parser.Message
	if err := m.Parse([]byte(c.fwd)); err != nil {
		t.Fatal(err)
	}
	extra := "Record-Route: <sip:10.0.0.7;lr;callee-side>\r\n"
	for _, v := range c.rr {
		extra += "Record-Route: " + v + "\r\n"
	}
	e.Receive(calleeAddr, string(parser.AppendResponseHeaders(nil, &m, 200, nil, []byte("b1"), []byte(extra))))
	e.wantCount(t, 0, 0, 1)
	c.inDialogTo("BYE", true, "b1", 11, "sip:alice@"+callerAddr, nil, "")
	if (*valid)[0] || e.ended(ReasonBye) != 0 {
		t.Fatal("the caller's BYE to herself was valid")
	}
	c.inDialogTo("BYE", true, "b1", 12, "sip:bob@"+calleeAddr, nil, "")
	if !(*valid)[1] || e.ended(ReasonBye) != 1 {
		t.Fatal("the caller's BYE to where the INVITE went did not end the call")
	}
}

// contactParsed is contactSent's answer by the full parse alone.
func contactParsed(data []byte) []byte {
	var m parser.Message
	var na parser.NameAddr
	if m.Parse(data) == nil && m.Contact(&na) {
		return na.URI
	}
	return nil
}

var sentHead = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
	"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n"

// TestContactSentScan: the line scan gives the Contact URI the full parse
// gives, for the forms a relayed message carries (long and compact names,
// any case, a display name, parameters, a header after it, none, a body
// with a Contact-like line), and leaves the others to the parse: a folded
// line, two Contact lines, a list, a value that does not parse.
func TestContactSentScan(t *testing.T) {
	for _, c := range []struct {
		contact string // the Contact lines ("" none)
		scanned bool   // answered by the scan alone
	}{
		{"Contact: <sip:bob@192.0.2.1:5062;transport=tcp>;expires=60\r\n", true},
		{"m: sip:bob@[2001:db8::1]:5062\r\n", true},
		{"CONTACT :  \"Bob\" <sip:bob@192.0.2.1>\r\n", true},
		{"", true},
		{"Contact: <sip:bob@192.0.2.1>,\r\n <sip:bob@192.0.2.2>\r\n", false},
		{"Contact: <sip:bob@192.0.2.1>\r\nContact: <sip:bob@192.0.2.2>\r\n", false},
		{"Contact: <sip:bob@192.0.2.1>, <sip:bob@192.0.2.2>\r\n", false},
		{"Contact: <sip:bob@192.0.2.1\r\n", false},
	} {
		data := []byte(sentHead + c.contact + "Content-Type: text/plain\r\nContent-Length: 28\r\n\r\nContact: <sip:body@example>\r\n")
		uri, ok := scanContactURI(data)
		if ok != c.scanned {
			t.Errorf("%q: scanned %v, want %v", c.contact, ok, c.scanned)
		}
		want := contactParsed(data)
		if ok && string(uri) != string(want) {
			t.Errorf("%q: scan %q, parse %q", c.contact, uri, want)
		}
		if got := contactSent(data); string(got) != string(want) {
			t.Errorf("%q: contactSent %q, parse %q", c.contact, got, want)
		}
	}
}

// BenchmarkContactSent: the Contact of a relayed 2xx by the line scan
// (contactSent) and by the full parse it replaced.
func BenchmarkContactSent(b *testing.B) {
	data := []byte(sentHead + "Record-Route: <sip:127.0.0.1;lr;did=123>\r\nContact: <sip:bob@192.0.2.1:5062>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n")
	b.Run("scan", func(b *testing.B) {
		for range b.N {
			contactSent(data)
		}
	})
	b.Run("parse", func(b *testing.B) {
		m := new(parser.Message)
		var na parser.NameAddr
		for range b.N {
			if m.Parse(data) == nil {
				m.Contact(&na)
			}
		}
	})
}

// BenchmarkInDialogChecks: what a loose-routed in-dialog request of a
// confirmed call costs the module, ValidateDialog then MatchDialog, as
// the provider route set calls them; Request-URI and Route as the
// dialog's own requests carry them.
func BenchmarkInDialogChecks(b *testing.B) {
	e := newEnv(b, nil)
	c := e.invite("bench-checks")
	c.respond(0, 200, "b")
	ran := false
	e.Route = func(rc *routing.Ctx) {
		if !rc.LooseRoute() {
			b.Fatal("not loose-routed")
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if !e.d.ValidateDialog(rc) || !e.d.MatchDialog(rc) {
				b.Fatal("not valid")
			}
		}
		b.StopTimer()
		ran = true
		rc.Relay()
	}
	c.inDialog("INFO", true, "b", 11)
	if !ran {
		b.Fatal("the INFO was not routed")
	}
}

// TestGoesToCopyOfTarget: a Request-URI and Route copied byte for byte
// from the dialog's (the way every phone's ACK and BYE comes) take
// goesTo's short way; it answers what the comparison of the parsed URIs
// answers, and a copy of a target or route that does not parse as a URI
// goes nowhere, as before.
func TestGoesToCopyOfTarget(t *testing.T) {
	for _, f := range []struct {
		target, route, ruri, next string
		want                      bool
	}{
		{"sip:bob@192.0.2.1:5062", "", "sip:bob@192.0.2.1:5062", "", true},
		{"sip:bob@192.0.2.1:5062", "", "sip:bob@192.0.2.1:5062", "sip:bob@192.0.2.1:5062", true},
		{"sip:bob@192.0.2.1:5062", "", "sip:bob@192.0.2.1:5062", "sip:mallory@192.0.2.9", false},
		{"sip:bob@192.0.2.1:5062", "<sip:p1.example.com;lr>", "sip:bob@192.0.2.1:5062", "sip:p1.example.com;lr", true},
		{"sip:bob@192.0.2.1:5062", "<sip:p1.example.com;lr>", "sip:bob@192.0.2.1:5062", "sip:P1.example.com;lr", true},
		{"sip:bob@192.0.2.1:5062", "<sip:p1.example.com;lr>", "sip:bob@192.0.2.1:5062", "sip:p2.example.com;lr", false},
		{"sip:bob@192.0.2.1:5062", "<sip:p1.example.com;lr>", "sip:bob@192.0.2.1:5062", "sip:bob@192.0.2.1:5062", false},
		{"sip:bob@192.0.2.1:5062", "<sip:[bad;lr>", "sip:bob@192.0.2.1:5062", "sip:[bad;lr", false},
		{"sip:bob@[bad", "", "sip:bob@[bad", "", false},
		{"sip:bob@192.0.2.1:5062", "", "sip:BOB@192.0.2.1:5062", "", false}, // the user is case-sensitive
		{"sip:bob@host.example.com", "", "sip:bob@HOST.example.com", "", true},
	} {
		var g dlg
		g.hasCallee = true
		if !g.putTarget(toCallee, []byte(f.target), nil) || !g.put([]byte(f.route), &g.route[toCallee]) {
			t.Fatal("not stored")
		}
		ruri := []byte(f.ruri)
		next := []byte(f.next)
		if f.next == "" {
			next = ruri // no Route left: the next hop is the Request-URI itself
		}
		if got := g.goesTo(toCallee, ruri, next); got != f.want {
			t.Errorf("target %q route %q: request to %q next %q goes there %v, want %v", f.target, f.route, f.ruri, f.next, got, f.want)
		}
	}
}

// FuzzContactSent: for any message that parses (the proxy sends nothing
// else), contactSent (the line scan, the parse when the scan gives up)
// answers what the full parse answers.
// `go test -fuzz FuzzContactSent ./modules/dialog/` searches further.
func FuzzContactSent(f *testing.F) {
	for _, c := range []string{
		"Contact: <sip:bob@192.0.2.1:5062;transport=tcp>;expires=60\r\n",
		"m: sip:bob@[2001:db8::1]:5062\r\n",
		"CONTACT :  \"Bob\" <sip:bob@192.0.2.1>\r\n",
		"Contact: <sip:bob@192.0.2.1>,\r\n <sip:bob@192.0.2.2>\r\n",
		"Contact: \"a,b\" <sip:bob@192.0.2.1>\r\n",
		"Contact: *\r\n",
		"",
	} {
		f.Add([]byte(sentHead + c + "Content-Length: 0\r\n\r\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m parser.Message
		if m.Parse(data) != nil {
			return
		}
		got, want := contactSent(data), contactParsed(data)
		if string(got) != string(want) {
			t.Fatalf("%q: contactSent %q, the parse %q", data, got, want)
		}
	})
}
