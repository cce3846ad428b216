package topohiding

import (
	"strings"
	"testing"

	"switchboard/modules/dialog"
	"switchboard/parser"
	"switchboard/routing"
)

// The parties of a call without proxies of their own: a caller behind
// NAT (its Contact a private address, its packets from the NAT's public
// one) and a callee reached at calleeAddr whose Contact names an address
// of its own network (a contact registered behind NAT).
const (
	natPublic  = "127.0.0.9:40000" // where the caller's packets come from
	natCallerC = "<sip:alice-ua@192.168.1.10:5062>"
)

// directCall sends an INVITE from behind NAT, with no Record-Route, and
// answers it 200 from calleeAddr with Contact calleeCT and no
// Record-Route either.
func directCall(e *env, callID string) *call {
	e.t.Helper()
	c := &call{e: e, callID: callID, fromTag: "atag-" + callID, cseq: 10, callerSrc: natPublic}
	c.invite = "INVITE sip:bob@" + calleeAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKua-" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=" + c.fromTag + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 10 INVITE\r\n" +
		"Contact: " + natCallerC + "\r\n" +
		"Content-Length: 0\r\n\r\n"
	for _, s := range c.send(natPublic, c.invite) {
		if strings.HasPrefix(s.Data, "INVITE ") {
			c.fwds = append(c.fwds, s.Data)
			c.calleeCT = header(s.Data, "Contact")
		}
	}
	if len(c.fwds) != 1 {
		e.t.Fatalf("INVITE relayed %d times", len(c.fwds))
	}
	var m parser.Message
	if err := m.Parse([]byte(c.fwds[0])); err != nil {
		e.t.Fatal(err)
	}
	resp := string(parser.AppendResponseHeaders(nil, &m, 200, nil, []byte("b1"), []byte("Contact: "+calleeCT+"\r\n")))
	ok := only(e.t, c.send(calleeAddr, resp), "SIP/2.0 200 ")
	c.callerCT, c.calleeTag = header(ok.Data, "Contact"), "b1"
	return c
}

// TestNATPartiesReachedAtFirstHop: with dialog.FlagCallerNAT the callee's
// requests reach the caller at the address its INVITE came from, not at
// its private Contact; with FlagCalleeNAT the caller's reach the callee
// where the INVITE went. Without the flags each goes to the Contact, as
// before. The Request-URI is the Contact either way.
func TestNATPartiesReachedAtFirstHop(t *testing.T) {
	for _, tc := range []struct {
		name               string
		flags              uint32
		toCaller, toCallee string
	}{
		{"no flags", 0, "192.168.1.10:5062", "10.0.0.5:5060"},
		{"caller behind NAT", dialog.FlagCallerNAT, natPublic, "10.0.0.5:5060"},
		{"both behind NAT", dialog.FlagCallerNAT | dialog.FlagCalleeNAT, natPublic, calleeAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.beforeRelay = func(c *routing.Ctx) {
				if tc.flags != 0 && !e.d.SetFlag(c, tc.flags) {
					t.Fatal("SetFlag: no dialog")
				}
			}
			c := directCall(e, "nat-"+strings.ReplaceAll(tc.name, " ", "-"))
			ack := only(t, c.fromCaller("ACK", "", "", ""), "ACK ")
			if ack.Dst.String() != tc.toCallee || !strings.HasPrefix(ack.Data, "ACK sip:bob@10.0.0.5:5060 ") {
				t.Errorf("the caller's ACK went to %v:\n%s", ack.Dst, ack.Data)
			}
			info := only(t, c.fromCallee("INFO", ""), "INFO ")
			if info.Dst.String() != tc.toCaller || !strings.HasPrefix(info.Data, "INFO sip:alice-ua@192.168.1.10:5062 ") {
				t.Errorf("the callee's INFO went to %v:\n%s", info.Dst, info.Data)
			}
			bye := only(t, c.fromCaller("BYE", "", "", ""), "BYE ")
			if bye.Dst.String() != tc.toCallee {
				t.Errorf("the caller's BYE went to %v", bye.Dst)
			}
		})
	}
}

// TestNATFlagWithRouteSet: a party with a route set is reached along it,
// whatever its NAT flag says: the first proxy of its side knows the way.
func TestNATFlagWithRouteSet(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) { e.d.SetFlag(c, dialog.FlagCallerNAT|dialog.FlagCalleeNAT) }
	c := e.invite("nat-rs")
	c.respond(0, 200, "b1", calleeCT)
	if ack := only(t, c.fromCaller("ACK", "", "", ""), "ACK "); ack.Dst.String() != p2Addr {
		t.Errorf("the caller's ACK went to %v, not along the callee's route set (%s)", ack.Dst, p2Addr)
	}
	if bye := only(t, c.fromCallee("BYE", ""), "BYE "); bye.Dst.String() != p1Addr {
		t.Errorf("the callee's BYE went to %v, not along the caller's route set (%s)", bye.Dst, p1Addr)
	}
}

// TestCSeqOffsetFollowsChallenge: the INVITE reached the callee one CSeq
// up (what uac_auth does when a trunk challenges it; here the route
// edits the relayed copy's CSeq). The caller's later requests, and their
// ACKs, reach the callee in its numbering; the responses reach the caller
// in its own. The callee's requests keep their numbers.
func TestCSeqOffsetFollowsChallenge(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) { c.R.Editor().SetCSeq(11) }
	c := e.invite("cseq-1")
	if got := header(c.fwds[0], "CSeq"); got != "11 INVITE" {
		t.Fatalf("the relayed INVITE has CSeq %q", got)
	}
	c.respond(0, 200, "b1", calleeCT)
	if got := header(c.up[len(c.up)-1], "CSeq"); got != "10 INVITE" {
		t.Fatalf("the caller got its 200 with CSeq %q", got)
	}
	if ack := only(t, c.fromCaller("ACK", "", "", ""), "ACK "); header(ack.Data, "CSeq") != "11 ACK" {
		t.Errorf("the ACK reached the callee with CSeq %q, want 11 ACK", header(ack.Data, "CSeq"))
	}
	info := only(t, c.fromCaller("INFO", "", "", ""), "INFO ")
	if got, want := header(info.Data, "CSeq"), itoa(c.cseq+1)+" INFO"; got != want {
		t.Errorf("the INFO (the caller's CSeq %d) reached the callee with CSeq %q, want %q", c.cseq, got, want)
	}
	up := only(t, c.answer(calleeAddr, info.Data, 200, ""), "SIP/2.0 200 ")
	if got, want := header(up.Data, "CSeq"), itoa(c.cseq)+" INFO"; got != want {
		t.Errorf("the caller got the 200 to its INFO with CSeq %q, want its own %q", got, want)
	}
	bye := only(t, c.fromCallee("BYE", ""), "BYE ")
	if got := header(bye.Data, "CSeq"); got != "1 BYE" {
		t.Errorf("the callee's BYE reached the caller with CSeq %q, want 1 BYE", got)
	}
}

// TestPRACKAfterChallenge: the INVITE reached the callee one CSeq up and
// the callee's 183 is early: the caller's PRACK reaches the callee in its
// numbering, its RAck naming the INVITE as the callee knows it.
func TestPRACKAfterChallenge(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) { c.R.Editor().SetCSeq(11) }
	c := e.invite("prack-1")
	c.respond(0, 183, "b1", calleeCT)
	prack := only(t, c.fromCaller("PRACK", header(c.up[len(c.up)-1], "Contact"), "b1", "RAck: 1 10 INVITE\r\n"), "PRACK ")
	if cs, ra := header(prack.Data, "CSeq"), header(prack.Data, "RAck"); cs != itoa(c.cseq+1)+" PRACK" || ra != "1 11 INVITE" {
		t.Fatalf("the PRACK (the caller's CSeq %d) reached the callee with CSeq %q, RAck %q", c.cseq, cs, ra)
	}
}
