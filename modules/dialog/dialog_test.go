package dialog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

// TestLifecycle: an INVITE gets our Record-Route with the dialog id
// covered by the signature; a 180 with a To tag makes the dialog early, a
// 200 confirms it; a re-INVITE and its ACK match it and record the CSeq;
// a BYE from the callee ends it (by callee), after which a second BYE
// matches nothing.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	c := e.invite("life-1")
	if len(c.rr) != 2 || !strings.Contains(c.rr[0], ";did=") || !strings.Contains(c.rr[0], ";sig=") ||
		strings.Index(c.rr[0], ";did=") > strings.Index(c.rr[0], ";sig=") {
		t.Fatalf("relayed INVITE's Record-Route %q: want ours with did before sig", c.rr)
	}
	e.wantCount(t, 1, 0, 0)
	c.respond(0, 180, "btag")
	e.wantCount(t, 0, 1, 0)
	out := c.respond(0, 200, "btag")
	if len(out) != 1 || firstLine(out[0].Data) != "SIP/2.0 200 OK" {
		t.Fatalf("200 not relayed: %v", out)
	}
	e.wantCount(t, 0, 0, 1)
	l := e.d.List("", 0)
	if len(l) != 1 || l[0].State != "confirmed" || l[0].ToTag != "btag" || l[0].Callee != "udp:"+calleeAddr || l[0].Caller != "udp:"+callerAddr {
		t.Fatalf("listing %+v", l)
	}

	c.inDialog("ACK", true, "btag", 10)
	c.inDialog("INVITE", true, "btag", 11)
	c.inDialog("BYE", false, "btag", 5)
	if strings.Join(boolStrings(e.matched), ",") != "true,true,true" {
		t.Fatalf("MatchDialog said %v for ACK, re-INVITE, BYE", e.matched)
	}
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonBye) != 1 {
		t.Fatal("end by BYE not counted")
	}
	c.inDialog("BYE", true, "btag", 12)
	if e.matched[len(e.matched)-1] {
		t.Fatal("a BYE after the end matched a dialog")
	}
}

func boolStrings(b []bool) []string {
	out := make([]string, len(b))
	for i, v := range b {
		if v {
			out[i] = "true"
		} else {
			out[i] = "false"
		}
	}
	return out
}

// TestForkedEarlyDialogs: two branches ring with their own To tags (two
// early dialogs of one dialog); the 2xx of one confirms it, and a request
// with the other early tag then matches nothing.
func TestForkedEarlyDialogs(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) bool {
		c.AppendBranch([]byte("sip:bob@" + callee2))
		return true
	}
	c := e.invite("fork-1")
	if len(c.fwds) != 2 {
		t.Fatalf("%d branches", len(c.fwds))
	}
	c.respond(0, 180, "b1")
	c.respond(1, 183, "b2")
	g := e.only(t)
	if g.nearly != 2 || g.state != stEarly {
		t.Fatalf("early tags %d state %d", g.nearly, g.state)
	}
	c.respond(1, 200, "b2")
	e.wantCount(t, 0, 0, 1)
	// The other fork's 2xx (it answered before the CANCEL) confirms nothing else.
	c.respond(0, 200, "b1")
	e.wantCount(t, 0, 0, 1)
	c.inDialog("BYE", true, "b1", 11)
	if e.matched[0] {
		t.Fatal("BYE with the other fork's tag matched the dialog")
	}
	c.inDialog("BYE", true, "b2", 12)
	if !e.matched[1] || e.d.tbl.Len() != 0 {
		t.Fatal("BYE of the answered fork did not end the dialog")
	}
}

// oneCallEach are settings with a limit of one call per caller
// (ApplyProfiles, from_user).
func oneCallEach() *Settings {
	s := DefaultSettings()
	s.Profiles = []ProfileSettings{{Name: "caller", WithValue: true, Value: "from_user", Limit: 1}}
	return s
}

// limitCalls makes e's route apply the profiles after CreateDialog, as
// the calls route set does, answering 486 at a limit.
func limitCalls(e *env) {
	e.beforeRelay = func(c *routing.Ctx) bool {
		if ok, _ := e.d.ApplyProfiles(c); !ok {
			c.Reply(486, "Too Many Calls")
			return false
		}
		return true
	}
}

// TestEarlyByeEndsNothing: a BYE in the early state, the caller's with
// the To tag of a 180 (its Request-URI is the caller's choice: it need
// not reach the callee) or a forked callee's, is matched and relayed but
// ends nothing, as in Kamailio and OpenSIPS. It used to end the whole
// dialog: the call answered next had no dialog, no record, no timeout,
// and its caller's place under a limit of one call was free for another.
func TestEarlyByeEndsNothing(t *testing.T) {
	e := newEnv(t, oneCallEach())
	got := subscribe(e)
	limitCalls(e)
	e.afterMatch = func(c *routing.Ctx) {
		if c.Value(SlotDialog) != 0 {
			t.Error("a BYE's route may change the dialog")
		}
	}
	routeFork := e.beforeRelay
	e.beforeRelay = func(c *routing.Ctx) bool {
		c.AppendBranch([]byte("sip:bob@" + callee2))
		return routeFork(c)
	}
	c := e.invite("early-bye")
	c.respond(0, 180, "b1")
	c.respond(1, 180, "b2")
	if out := c.inDialog("BYE", true, "b1", 11); len(out) != 1 || !strings.HasPrefix(out[0].Data, "BYE ") {
		t.Fatalf("the caller's BYE of an early dialog not relayed: %v", out)
	}
	if out := c.inDialog("BYE", false, "b2", 1); len(out) != 1 || !strings.HasPrefix(out[0].Data, "BYE ") {
		t.Fatalf("the forked callee's BYE not relayed: %v", out)
	}
	if strings.Join(boolStrings(e.matched), ",") != "true,true" {
		t.Fatalf("MatchDialog said %v for the two early BYEs", e.matched)
	}
	e.wantCount(t, 0, 1, 0)
	if g := e.only(t); g.nearly != 2 || e.ended(ReasonBye) != 0 || e.d.ProfileSize("caller", []byte("alice")) != 1 {
		t.Fatalf("after the early BYEs: early tags %d, ended by bye %d, alice's calls %d",
			g.nearly, e.ended(ReasonBye), e.d.ProfileSize("caller", []byte("alice")))
	}
	// Another call of alice is still over her limit.
	if other := e.invite("early-bye-2"); len(other.fwds) != 0 {
		t.Fatal("a second call of alice relayed while her first rings")
	}
	c.respond(0, 200, "b1")
	e.wantCount(t, 0, 0, 1)
	if n := e.d.ProfileSize("caller", []byte("alice")); n != 1 {
		t.Fatalf("the answered call is in alice's profile %d times", n)
	}
	c.inDialog("BYE", true, "b1", 12)
	e.wantCount(t, 0, 0, 0)
	ev := endedEvent(t, *got, "early-bye")
	if ev.reason != ReasonBye || ev.by != Caller || ev.answr == 0 || ev.code != 200 {
		t.Fatalf("the call's end: %+v", ev)
	}
	if e.d.ProfileSize("caller", []byte("alice")) != 0 {
		t.Fatal("alice's place not released by the BYE of the answered call")
	}
}

// TestSpiralAndSecondCall: the INVITE's second pass through the proxy
// (a spiral: our Via with the first pass's branch below the Via of the
// proxy that sent it back, the Request-URI changed) makes no second
// dialog, and its Record-Route carries the first pass's id, after the
// caller's PRACK of the first fork's 180 too (the dialog's record of her
// CSeq moved on: a spiral has the INVITE's, as its transaction has it).
// Another INVITE of the caller with the same Call-ID and From tag is a call of
// its own: it was taken for a spiral and relayed without a dialog, past
// a limit of one call; now it gets a dialog, counted (486 at the limit)
// and, under no limit, confirmed and ended on its own.
func TestSpiralAndSecondCall(t *testing.T) {
	e := newEnv(t, oneCallEach())
	limitCalls(e)
	c := e.invite("spiral-1")
	c.respond(0, 180, "b1")
	c.inDialog("PRACK", true, "b1", 11)
	if len(e.matched) != 1 || !e.matched[0] || e.only(t).cseq[toCaller] != 11 {
		t.Fatalf("the caller's PRACK: matched %v", e.matched)
	}
	const proxy = "127.0.0.1:5099"
	spiral := strings.NewReplacer("INVITE sip:bob@"+calleeAddr, "INVITE sip:carol@"+callee2,
		"\r\nVia: ", "\r\nVia: SIP/2.0/UDP "+proxy+";branch=z9hG4bKproxy\r\nVia: ").Replace(c.fwd)
	var second string
	for _, m := range c.send(proxy, spiral) {
		if strings.HasPrefix(m.Data, "INVITE sip:carol@") {
			second = m.Data
		}
	}
	if second == "" {
		t.Fatal("the spiral's second pass not relayed")
	}
	if rr := headerValues(second, "Record-Route"); len(rr) != 3 || param(rr[0], "did") != param(c.rr[0], "did") {
		t.Fatalf("second pass's Record-Route %q: want ours with the first pass's id %s", rr, param(c.rr[0], "did"))
	}
	if n := e.d.tbl.Len(); n != 1 || e.d.ProfileSize("caller", []byte("alice")) != 1 {
		t.Fatalf("after the spiral: %d dialogs, alice counted %d times", n, e.d.ProfileSize("caller", []byte("alice")))
	}

	again := strings.NewReplacer("INVITE sip:bob@"+calleeAddr, "INVITE sip:carol@"+callee2,
		"branch=z9hG4bK", "branch=z9hG4bKagain", "CSeq: 10", "CSeq: 20").Replace(c.invite)
	out := c.send(callerAddr, again)
	if len(out) != 1 || firstLine(out[0].Data) != "SIP/2.0 486 Too Many Calls" {
		t.Fatalf("alice's second call with the Call-ID and From tag of her first: %v", out)
	}
	if e.d.tbl.Len() != 1 || e.ended(ReasonFailed) != 1 || e.d.ProfileSize("caller", []byte("alice")) != 1 {
		t.Fatalf("after the second call's 486: %d dialogs, %d failed, alice counted %d times",
			e.d.tbl.Len(), e.ended(ReasonFailed), e.d.ProfileSize("caller", []byte("alice")))
	}

	// Under no limit: a dialog of its own, with its own id.
	e = newEnv(t, nil)
	c = e.invite("second-1")
	c.respond(0, 180, "b1")
	c2 := &call{e: e, callID: c.callID, invite: strings.NewReplacer("branch=z9hG4bK", "branch=z9hG4bKagain",
		"CSeq: 10", "CSeq: 20").Replace(c.invite), cseq: 20}
	for _, m := range c2.send(callerAddr, c2.invite) {
		if strings.HasPrefix(m.Data, "INVITE ") {
			c2.fwds = append(c2.fwds, m.Data)
		}
	}
	if len(c2.fwds) != 1 {
		t.Fatal("the second call not relayed")
	}
	c2.fwd, c2.rr = c2.fwds[0], headerValues(c2.fwds[0], "Record-Route")
	if param(c2.rr[0], "did") == param(c.rr[0], "did") {
		t.Fatal("the second call got the first one's dialog id")
	}
	e.wantCount(t, 1, 1, 0)
	c2.respond(0, 200, "b2")
	c.respond(0, 200, "b1")
	e.wantCount(t, 0, 0, 2)
	c2.inDialog("BYE", true, "b2", 21)
	e.wantCount(t, 0, 0, 1)
	c.inDialog("BYE", false, "b1", 1)
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonBye) != 2 {
		t.Fatalf("ended by BYE: %d, want 2", e.ended(ReasonBye))
	}
}

// forgedSpiral is an INVITE the callee of call c sends from src to ruri
// as from (a From URI) with CSeq cseq: c's Call-ID and From tag, and
// below its own Via every Via of c's INVITE as the proxy relayed it,
// ours with the branch the call went out on. What a spiral of c would
// carry, made up by a party that saw c's INVITE.
func forgedSpiral(c *call, src, ruri, from string, cseq int, branch string) string {
	var vias strings.Builder
	for _, line := range strings.Split(c.fwd, "\r\n") {
		if strings.HasPrefix(line, "Via:") {
			vias.WriteString(line + "\r\n")
		}
	}
	return "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + src + ";branch=z9hG4bK" + branch + "\r\n" + vias.String() +
		"Max-Forwards: 70\r\n" +
		"From: " + from + ";tag=atag-" + strings.ReplaceAll(c.callID, "@", "-") + "\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: " + c.callID + "\r\n" +
		"CSeq: " + itoa(cseq) + " INVITE\r\n" +
		"Contact: <sip:bob@" + src + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// TestForgedSpiralOfAnotherCaller: bob's phone, ringing with alice's
// call, has our Via in her INVITE with the branch it went out on. His
// own INVITEs (as bob, to 0900 numbers) with her Call-ID and From tag and
// her INVITE's Vias under his own were each taken for her INVITE coming
// back through the proxy (txn PassedThrough alone): no dialog, so no
// record, no place in bob's profiles (past his limit of one call), no
// timeout, and answered they changed nothing of hers. A spiral is the
// dialog's only when it has its INVITE's From URI and CSeq number: bob's
// first INVITE gets a dialog of its own, counted for bob, confirmed and
// ended by its own 200 and BYE while alice's still rings; his second
// gets 486 at his limit; alice's From with another CSeq is a call of
// hers (486 at her limit). Her From with her CSeq passes as her spiral:
// only a route that does not authenticate From lets another party send
// that (the provider's ProxyAuthorize does).
func TestForgedSpiralOfAnotherCaller(t *testing.T) {
	e := newEnv(t, oneCallEach())
	got := subscribe(e)
	limitCalls(e)
	c := e.invite("forged-1")
	c.respond(0, 180, "b1")
	did := param(c.rr[0], "did")

	inv := forgedSpiral(c, calleeAddr, "sip:0900123@"+callee2, "<sip:bob@example.com>", 1, "bob1")
	var fwd string
	for _, m := range c.send(calleeAddr, inv) {
		if strings.HasPrefix(m.Data, "INVITE ") {
			fwd = m.Data
		}
	}
	rr := headerValues(fwd, "Record-Route")
	if len(rr) != 1 || param(rr[0], "did") == "" || param(rr[0], "did") == did {
		t.Fatalf("bob's INVITE with alice's Call-ID, From tag and Vias: relayed with Record-Route %q, want a dialog id of its own (alice's %s)", rr, did)
	}
	if n, bob := e.d.tbl.Len(), e.d.ProfileSize("caller", []byte("bob")); n != 2 || bob != 1 {
		t.Fatalf("after bob's INVITE: %d dialogs, bob counted %d times; want 2 and 1", n, bob)
	}
	if out := c.send(calleeAddr, forgedSpiral(c, calleeAddr, "sip:0900124@"+callee2, "<sip:bob@example.com>", 2, "bob2")); len(out) != 1 ||
		firstLine(out[0].Data) != "SIP/2.0 486 Too Many Calls" {
		t.Fatalf("bob's second INVITE on alice's Call-ID and From tag: %v, want 486 at his limit", out)
	}

	// Answered, bob's call is his dialog's: confirmed, ended by its BYE;
	// alice's still rings.
	b := &call{e: e, callID: c.callID, invite: inv, fwd: fwd, fwds: []string{fwd}, rr: rr, cseq: 1}
	if out := b.respond(0, 200, "x1"); len(out) != 1 || firstLine(out[0].Data) != "SIP/2.0 200 OK" {
		t.Fatalf("the 200 of bob's call: %v", out)
	}
	e.wantCount(t, 0, 1, 1)
	b.inDialog("BYE", true, "x1", 2)
	e.wantCount(t, 0, 1, 0)
	var ends []recorded
	for _, ev := range *got {
		if ev.kind == EventEnded {
			ends = append(ends, ev)
		}
	}
	if len(ends) != 2 || ends[0].reason != ReasonFailed || ends[0].code != 486 ||
		ends[1].reason != ReasonBye || ends[1].toTag != "x1" || ends[1].answr == 0 {
		t.Fatalf("ended: %+v, want bob's second call's (486) and his first (its BYE, answered)", ends)
	}

	// alice's From with another CSeq: another call of hers.
	if out := c.send(calleeAddr, forgedSpiral(c, calleeAddr, "sip:0900125@"+callee2, "\"Alice\" <sip:alice@example.com>", 11, "bob3")); len(out) != 1 ||
		firstLine(out[0].Data) != "SIP/2.0 486 Too Many Calls" {
		t.Fatalf("alice's From, CSeq 11, on her call's Call-ID and From tag: %v, want 486 at her limit", out)
	}
	// Her From and her CSeq: what her spiral carries.
	var spiral string
	for _, m := range c.send(calleeAddr, forgedSpiral(c, calleeAddr, "sip:0900126@"+callee2, "\"Alice\" <sip:alice@example.com>", 10, "bob4")) {
		if strings.HasPrefix(m.Data, "INVITE ") {
			spiral = m.Data
		}
	}
	if rr := headerValues(spiral, "Record-Route"); len(rr) != 1 || param(rr[0], "did") != did {
		t.Fatalf("alice's From and CSeq with her call's Via: Record-Route %q, want her dialog's id %s", rr, did)
	}
	e.wantCount(t, 0, 1, 0)
}

// TestUnkeptAnswer: a 2xx the dialog cannot keep, without a To tag or
// with one over 1 KiB, or the route's own, ends the dialog at once
// (failed, by the proxy), its profile place released, and is counted.
// It left a confirmed dialog that nothing could match (the BYE of the
// call found none) or no dialog at all, which only its 12 h timeout
// ended: the caller's place under a limit of one call held, and the
// record billing 12 h.
func TestUnkeptAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		tag  string
		own  bool
	}{{"no To tag", "", false}, {"To tag of 1100 bytes", strings.Repeat("x", 1100), false}, {"the route's own 200", "", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, oneCallEach())
			got := subscribe(e)
			limitCalls(e)
			if tc.own {
				limit, answered := e.beforeRelay, false
				e.beforeRelay = func(c *routing.Ctx) bool {
					if !limit(c) {
						return false
					}
					if answered {
						return true
					}
					answered = true
					c.Reply(200, "")
					return false
				}
			}
			c := e.invite("unkept")
			if !tc.own {
				if out := c.respond(0, 200, tc.tag); len(out) != 1 || firstLine(out[0].Data) != "SIP/2.0 200 OK" {
					t.Fatalf("the 200 not relayed: %v", out)
				}
			}
			e.wantCount(t, 0, 0, 0)
			ev := endedEvent(t, *got, "unkept")
			if ev.reason != ReasonFailed || ev.by != Proxy || ev.code != 200 || ev.answr != 0 {
				t.Fatalf("end event %+v: want failed by the proxy, code 200, not answered", ev)
			}
			if n := e.d.ProfileSize("caller", []byte("alice")); n != 0 || e.d.unkeptAnswers.Get() != 1 {
				t.Fatalf("alice counted %d times, unkept answers %d", n, e.d.unkeptAnswers.Get())
			}
			if next := e.invite("unkept-2"); len(next.fwds) != 1 {
				t.Fatal("alice's next call refused: her place is still held")
			}
		})
	}
}

// only returns the one dialog in the table.
func (e *env) only(t *testing.T) *dlg {
	t.Helper()
	if e.d.tbl.Len() != 1 {
		t.Fatalf("%d dialogs, want 1", e.d.tbl.Len())
	}
	var g *dlg
	for i := 0; i < e.d.tbl.NumShards(); i++ {
		s := e.d.tbl.ShardAt(i)
		s.Lock()
		s.Range(func(en *shards.Entry[dlg]) bool { g = &en.Value; return false })
		s.Unlock()
	}
	return g
}

// TestFailedAndCanceled: a 486 ends the early dialog (failed), a CANCEL
// ends the ringing one (canceled), and a route that refuses the INVITE
// itself after CreateDialog ends it too.
func TestFailedAndCanceled(t *testing.T) {
	e := newEnv(t, nil)
	c := e.invite("fail-1")
	c.respond(0, 180, "b")
	c.respond(0, 486, "b")
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonFailed) != 1 {
		t.Fatal("486 not counted as failed")
	}

	c = e.invite("cancel-1")
	c.respond(0, 180, "b")
	cancel := strings.Replace(strings.Replace(c.invite, "INVITE sip", "CANCEL sip", 1), "10 INVITE", "10 CANCEL", 1)
	c.send(callerAddr, cancel)
	e.wantCount(t, 0, 1, 0) // until the 487 goes upstream
	c.respond(0, 487, "b")
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonCanceled) != 1 {
		t.Fatal("CANCEL not counted")
	}

	e.beforeRelay = func(c *routing.Ctx) bool {
		c.Reply(403, "")
		return false
	}
	e.invite("refused-1")
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonFailed) != 2 {
		t.Fatal("the route's 403 did not end the dialog")
	}
}

// TestForgedDialogID: the dialog id is covered by the Record-Route's
// signature. A request of call B that carries call A's Route (copied
// whole), or call B's Route with call A's id written in, is forged: it is
// not loose-routed, MatchDialog finds nothing, and call A's dialog stays.
// A request with the dialog's own Route but a To tag that is not the
// dialog's is not matched either.
func TestForgedDialogID(t *testing.T) {
	e := newEnv(t, nil)
	a := e.invite("forge-a")
	a.respond(0, 200, "ta")
	b := e.invite("forge-b")
	b.respond(0, 200, "tb")
	e.wantCount(t, 0, 0, 2)
	idA := param(a.rr[0], "did")
	idB := param(b.rr[0], "did")
	if idA == "" || idA == idB {
		t.Fatalf("ids %q %q", idA, idB)
	}

	// Call B's BYE with call A's Route copied whole.
	copied := *b
	copied.rr = a.rr
	copied.inDialog("BYE", true, "tb", 11)
	// Call B's BYE with its own Route but call A's id.
	edited := *b
	edited.rr = []string{strings.Replace(b.rr[0], "did="+idB, "did="+idA, 1), b.rr[1]}
	edited.inDialog("BYE", true, "tb", 11)
	// Call B's BYE without the id.
	stripped := *b
	stripped.rr = []string{strings.Replace(b.rr[0], ";did="+idB, "", 1), b.rr[1]}
	stripped.inDialog("BYE", true, "tb", 11)
	for i, k := range e.kinds {
		if k != routing.RouteForged {
			t.Fatalf("request %d: route kind %v, want forged", i, k)
		}
	}
	if len(e.matched) != 0 {
		t.Fatalf("MatchDialog ran on forged routes: %v", e.matched)
	}
	e.wantCount(t, 0, 0, 2)

	// Call A's own Route with the To tag of another call: the signature
	// holds (it is the From tag's) but the dialog's tags do not.
	a.inDialog("BYE", true, "tb", 11)
	if e.matched[0] {
		t.Fatal("BYE with a foreign To tag matched call A")
	}
	if e.d.mismatched.Get() != 1 {
		t.Fatal("mismatch not counted")
	}
	e.wantCount(t, 0, 0, 2)
}

// param returns ;name=value's value in a Record-Route value.
func param(v, name string) string {
	_, rest, ok := strings.Cut(v, ";"+name+"=")
	if !ok {
		return ""
	}
	end := strings.IndexAny(rest, ";>")
	if end < 0 {
		return rest
	}
	return rest[:end]
}

// TestTimeoutByeBothWays: a dialog whose route set a 2 s timeout is
// ended 2 s after the answer with a BYE to each side: to the caller's
// source with the caller's Contact as Request-URI, the route set of the
// INVITE below us, From/To swapped with the callee's tag, the CSeq after
// the callee's last; to the callee's address with its Contact, the
// Record-Route above ours, the caller's From and the callee's To, the
// CSeq after the caller's last re-INVITE.
func TestTimeoutByeBothWays(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) bool {
		if !e.d.SetTimeout(c, 2*time.Second) {
			t.Error("SetTimeout refused")
		}
		return true
	}
	c := e.invite("to-1")
	e.clock.Advance(5 * time.Second) // ringing does not count
	c.respond(0, 200, "btag")
	c.inDialog("INVITE", true, "btag", 12)
	e.clock.Advance(1999 * time.Millisecond)
	if e.d.tbl.Len() != 1 {
		t.Fatal("dialog ended before its timeout")
	}
	e.Take()
	e.clock.Advance(time.Millisecond)
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonTimeout) != 1 {
		t.Fatal("timeout not counted")
	}
	sent := e.waitSent(t, 2)
	var toCallerMsg, toCalleeMsg string
	for _, s := range sent {
		switch s.Dst.String() {
		case callerAddr:
			toCallerMsg = s.Data
		case calleeAddr:
			toCalleeMsg = s.Data
		}
	}
	want := map[string][2]string{
		"":        {"BYE sip:alice@" + callerAddr + " SIP/2.0", "BYE sip:bob@" + calleeAddr + ";transport=udp SIP/2.0"},
		"Route":   {"<sip:10.0.0.9;lr;caller-side>", "<sip:10.0.0.7;lr;callee-side>"},
		"From":    {"<sip:bob@example.com>;tag=btag", "\"Alice\" <sip:alice@example.com>;tag=atag-to-1"},
		"To":      {"\"Alice\" <sip:alice@example.com>;tag=atag-to-1", "<sip:bob@example.com>;tag=btag"},
		"CSeq":    {"1 BYE", "13 BYE"},
		"Call-ID": {"to-1", "to-1"},
	}
	for h, w := range want {
		for i, msg := range []string{toCallerMsg, toCalleeMsg} {
			got := firstLine(msg)
			if h != "" {
				got = header(msg, h)
			}
			if got != w[i] {
				t.Errorf("BYE %d %s: %q, want %q\n%s", i, h, got, w[i], msg)
			}
		}
	}
	if e.d.byeSent.Get() != 2 {
		t.Fatalf("byes sent %d", e.d.byeSent.Get())
	}
}

// TestCSeqPastLimit: CSeq numbers of 2^31 and above (RFC 3261 §8.1.1.5:
// a CSeq is below 2^31) are relayed and not recorded, so the proxy's BYE
// at the timeout is still one above the last valid number each side got:
// an INFO numbered 4294967295 made the BYE to the callee wrap to CSeq 0,
// which it answers 500 (out of order), and the call went on after its
// record said it ended. A 2xx numbered so moves no offset of the callee's
// numbering, and an INVITE numbered so gets no dialog.
func TestCSeqPastLimit(t *testing.T) {
	e := newEnv(t, nil)
	e.beforeRelay = func(c *routing.Ctx) bool { return e.d.SetTimeout(c, 2*time.Second) }
	c := e.invite("cseq-limit")
	c.fwds[0] = strings.Replace(c.fwds[0], "CSeq: 10 INVITE", "CSeq: 4294967295 INVITE", 1)
	c.respond(0, 200, "b")
	c.inDialog("INFO", true, "b", 12)
	for _, n := range []int{4294967295, 2147483648} {
		if out := c.inDialog("INFO", true, "b", n); len(out) != 1 || !strings.HasPrefix(out[0].Data, "INFO ") {
			t.Fatalf("the caller's INFO numbered %d not relayed: %v", n, out)
		}
		if out := c.inDialog("INFO", false, "b", n); len(out) != 1 || !strings.HasPrefix(out[0].Data, "INFO ") {
			t.Fatalf("the callee's INFO numbered %d not relayed: %v", n, out)
		}
	}
	c.inDialog("INFO", false, "b", 3)
	e.Take()
	e.clock.Advance(2 * time.Second)
	for _, s := range e.waitFor(t, 2, isMethod("BYE")) {
		want := map[string]string{calleeAddr: "13 BYE", callerAddr: "4 BYE"}[s.Dst.String()]
		if got := header(s.Data, "CSeq"); got != want {
			t.Errorf("BYE to %s: CSeq %q, want %q", s.Dst, got, want)
		}
	}

	bad := strings.Replace(e.invite("cseq-ok").invite, "CSeq: 10 INVITE", "CSeq: 2147483648 INVITE", 1)
	bad = strings.ReplaceAll(bad, "cseq-ok", "cseq-bad")
	if out := c.send(callerAddr, bad); len(out) != 1 || firstLine(out[0].Data) != "SIP/2.0 503 No Dialog" {
		t.Fatalf("INVITE numbered 2^31: %v", out)
	}
	if e.d.refused.Get() != 1 {
		t.Fatal("the INVITE numbered 2^31 not counted as refused")
	}
}

// TestRouteFunctionsInDialog: the route of any in-dialog request the
// dialog matched may change it, not only a re-INVITE's (OpenSIPS's
// $DLG_timeout and $dlg_val after match_dialog): an INFO from the callee
// sets a 2 s timeout, a value and a flag, and the call ends 2 s later
// with them. A forged INFO (the callee's tag swapped for another) matches
// nothing and its route changes nothing; a BYE's route finds the dialog
// ended.
func TestRouteFunctionsInDialog(t *testing.T) {
	e := newEnv(t, nil)
	got := subscribe(e)
	var results []bool
	change := func(c *routing.Ctx) {
		results = append(results, e.d.SetTimeout(c, 2*time.Second), e.d.SetValue(c, "note", []byte("mid-call")),
			e.d.SetFlag(c, 1<<4))
	}
	e.afterMatch = change
	c := e.invite("rf-1")
	c.respond(0, 200, "btag")
	c.inDialog("INFO", false, "btag", 3)
	if s := strings.Join(boolStrings(results), ","); s != "true,true,true" {
		t.Fatalf("SetTimeout, SetValue, SetFlag from the INFO's route: %s", s)
	}

	// Forged: MatchDialog says no, and the same calls from the route
	// (which a careless route might make anyway) are refused.
	results = results[:0]
	e.afterMatch = nil
	e.Route = func(c *routing.Ctx) {
		if c.LooseRoute() && e.d.MatchDialog(c) {
			t.Error("an INFO with another To tag matched the dialog")
		}
		change(c)
		c.ReplyStateless(481, "", nil)
	}
	c.inDialog("INFO", false, "forged", 4)
	if s := strings.Join(boolStrings(results), ","); s != "false,false,false" {
		t.Fatalf("from a forged INFO's route: %s", s)
	}

	e.clock.Advance(1999 * time.Millisecond)
	if e.d.tbl.Len() != 1 {
		t.Fatal("dialog ended before the timeout the INFO set")
	}
	e.clock.Advance(time.Millisecond)
	if e.ended(ReasonTimeout) != 1 {
		t.Fatal("the INFO's timeout did not end the call")
	}
	if r := endedEvent(t, *got, "rf-1"); r.values != "note=mid-call" || r.flags != 1<<4 || r.reason != ReasonTimeout {
		t.Fatalf("ended with values %q, flags %#x, reason %v", r.values, r.flags, r.reason)
	}

	// A BYE's route: the dialog it ended takes no more changes.
	e.Route = e.route
	e.afterMatch = change
	results = results[:0]
	c = e.invite("rf-2")
	c.respond(0, 200, "btag")
	c.inDialog("BYE", true, "btag", 11)
	if s := strings.Join(boolStrings(results), ","); s != "false,false,false" {
		t.Fatalf("from the BYE's route: %s", s)
	}
}

// TestDefaultTimeoutAndUnanswered: without SetTimeout the dialog ends
// default_timeout after the answer; a dialog whose INVITE the route
// dropped (no answer ever goes upstream) is gone default_timeout after
// its start, without BYE.
func TestDefaultTimeoutAndUnanswered(t *testing.T) {
	s := DefaultSettings()
	s.DefaultTimeout = 10 * time.Second
	e := newEnv(t, s)
	c := e.invite("def-1")
	c.respond(0, 200, "b")
	e.clock.Advance(9 * time.Second)
	e.wantCount(t, 0, 0, 1)
	e.clock.Advance(time.Second)
	e.wantCount(t, 0, 0, 0)
	e.waitSent(t, 2)

	e.beforeRelay = func(c *routing.Ctx) bool { c.Drop(); return false }
	e.invite("dropped-1")
	e.wantCount(t, 1, 0, 0)
	e.clock.Advance(10 * time.Second)
	e.wantCount(t, 0, 0, 0)
	time.Sleep(20 * time.Millisecond)
	if got := e.Take(); len(got) != 0 {
		t.Fatalf("sent for an unanswered dialog: %v", got)
	}
}

// TestEndFromManagement: dialog.end ends a confirmed dialog with a BYE
// each way; an unanswered one is refused, an unknown id not found.
func TestEndFromManagement(t *testing.T) {
	e := newEnv(t, nil)
	r := e.invite("ring-1")
	r.respond(0, 180, "b")
	if _, err := e.d.End(e.d.List("", 0)[0].ID); err != nil {
		t.Fatalf("ending an early dialog: %v", err)
	}
	sent := e.waitSent(t, 1)
	if !strings.HasPrefix(sent[0].Data, "CANCEL sip:bob@") || sent[0].Dst.String() != calleeAddr {
		t.Fatalf("ending an early dialog sent %q to %s, want its INVITE's CANCEL", firstLine(sent[0].Data), sent[0].Dst)
	}
	if out := r.respond(0, 487, "b"); len(out) < 1 || firstLine(out[len(out)-1].Data) != "SIP/2.0 487 Request Terminated" {
		t.Fatalf("after the callee's 487: %v", out)
	}
	e.wantCount(t, 0, 0, 0)

	c := e.invite("end-1")
	c.respond(0, 180, "b")
	id := e.d.List("", 0)[0].ID
	c.respond(0, 200, "b")
	if l := e.d.List("alice", 0); len(l) != 1 {
		t.Fatalf("list by user alice: %v", l)
	}
	if l := e.d.List("carol", 0); len(l) != 0 {
		t.Fatalf("list by user carol: %v", l)
	}
	if _, err := e.d.End(id); err != nil {
		t.Fatal(err)
	}
	e.waitSent(t, 2)
	if e.ended(ReasonEnded) != 2 || e.d.tbl.Len() != 0 {
		t.Fatal("not ended")
	}
	if _, err := e.d.End(id); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("ending it again: %v", err)
	}
	if _, err := e.d.End("xyz"); err == nil {
		t.Fatal("a malformed id accepted")
	}
}

// TestSettingsChecked: bad keys are named.
func TestSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Settings)
		want string
	}{
		{func(s *Settings) { s.DefaultTimeout = 0 }, "default_timeout"},
		{func(s *Settings) { s.MaxDialogs = 0 }, "max_dialogs"},
		{func(s *Settings) { s.Profiles = []ProfileSettings{{Name: "a b"}} }, "profiles[0].name"},
		{func(s *Settings) { s.Profiles = []ProfileSettings{{Name: "a"}, {Name: "a"}} }, "profiles[1].name"},
	} {
		s := DefaultSettings()
		tc.mod(s)
		err := checkSettings(s)
		var ke *modules.KeyError
		if err == nil || !asKeyError(err, &ke) || ke.Key != tc.want {
			t.Errorf("%+v: %v, want an error naming %s", s, err, tc.want)
		}
	}
}

func asKeyError(err error, ke **modules.KeyError) bool {
	k, ok := err.(*modules.KeyError)
	*ke = k
	return ok
}

// TestTableFull: past max_dialogs CreateDialog refuses and counts.
func TestTableFull(t *testing.T) {
	s := DefaultSettings()
	s.MaxDialogs = 1
	e := newEnv(t, s)
	e.invite("full-1")
	c := e.invite("full-2")
	if c.fwd != "" && e.d.refused.Get() == 0 {
		t.Fatal("no refusal")
	}
	// 4 shards, one dialog each at most: fill every shard.
	for i := 0; i < 40; i++ {
		e.invite("full-x" + itoa(i))
	}
	if n := e.d.tbl.Len(); n > e.d.tbl.NumShards() {
		t.Fatalf("%d dialogs held with max_dialogs 1 over %d shards", n, e.d.tbl.NumShards())
	}
	if e.d.refused.Get() == 0 {
		t.Fatal("refusals not counted")
	}
}

// TestReload: default_timeout applies to dialogs created after the
// reload; max_dialogs, profiles and persist take effect at the next start:
// CheckReload names them as needing a restart (no refusal), and Reload
// applies the other keys and keeps their values in force, written back
// into the settings.
func TestReload(t *testing.T) {
	e := newEnv(t, nil)
	s := DefaultSettings()
	s.DefaultTimeout = 3 * time.Second
	if err := e.d.Reload(s); err != nil {
		t.Fatal(err)
	}
	c := e.invite("reload-1")
	c.respond(0, 200, "b")
	e.clock.Advance(3 * time.Second)
	e.wantCount(t, 0, 0, 0)
	s.MaxDialogs++
	wantRestart(t, e.d.CheckReload(s), "max_dialogs")
	if err := e.d.Reload(s); err != nil || s.MaxDialogs != e.d.maxDialogs {
		t.Fatalf("max_dialogs changed: %v, settings left with %d, want the %d in force", err, s.MaxDialogs, e.d.maxDialogs)
	}
	s = DefaultSettings()
	s.Profiles = []ProfileSettings{{Name: "x"}}
	wantRestart(t, e.d.CheckReload(s), "profiles")
	if err := e.d.Reload(s); err != nil || len(s.Profiles) != 0 || len(e.d.profiles) != 0 {
		t.Fatalf("profiles changed: %v, settings left with %v", err, s.Profiles)
	}
	// The other keys of a reload that changes persist are applied.
	s = DefaultSettings()
	s.DefaultTimeout, s.Persist = time.Minute, false
	wantRestart(t, e.d.CheckReload(s), "persist")
	if s.Persist {
		t.Error("CheckReload changed the settings it checked")
	}
	if err := e.d.Reload(s); err != nil || !s.Persist || !e.d.persist {
		t.Fatalf("persist changed: %v, settings say persist %v, want the true in force", err, s.Persist)
	}
	if got := e.d.timeout.Load(); got != 60_000 {
		t.Errorf("default_timeout is %d ms after the reload, want 60000", got)
	}
	if err := e.d.CheckReload(s); err != nil {
		t.Errorf("the settings as kept still differ from those in force: %v", err)
	}
}

// wantRestart fails unless err names exactly key as needing a restart.
func wantRestart(t *testing.T, err error, key string) {
	t.Helper()
	var ke *modules.KeyError
	if !errors.As(err, &ke) || !ke.Restart || ke.Key != key {
		t.Errorf("CheckReload: %v, want %s named as needing a restart", err, key)
	}
}

// TestDrain: with drain_timeout 0 a drain leaves the calls up; with
// 300ms, a call hung up during the drain ends by its BYE, the one still
// up after 300 ms is ended by the proxy with a BYE to each side (reason
// drain), and Drain returns once both BYEs are answered. A drain whose
// context ends (a second signal) returns at once, ending nothing.
func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	a := e.invite("drain-a")
	a.respond(0, 200, "ta")
	b := e.invite("drain-b")
	b.respond(0, 200, "tb")
	e.d.Drain(context.Background())
	e.wantCount(t, 0, 0, 2)

	e.d.drainTimeout.Store(10_000)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	t0 := time.Now()
	e.d.Drain(ctx)
	if time.Since(t0) > 2*time.Second {
		t.Fatalf("a canceled drain took %v", time.Since(t0))
	}
	e.wantCount(t, 0, 0, 2)

	e.d.drainTimeout.Store(300)
	done := make(chan time.Duration)
	t0 = time.Now()
	go func() { e.d.Drain(context.Background()); done <- time.Since(t0) }()
	time.Sleep(100 * time.Millisecond)
	b.inDialog("BYE", false, "tb", 1)
	e.wantCount(t, 0, 0, 1)
	sent := e.waitSent(t, 2)
	if since := time.Since(t0); since < 300*time.Millisecond {
		t.Fatalf("calls ended %v into a drain of 300ms", since)
	}
	for _, s := range sent {
		if !strings.HasPrefix(s.Data, "BYE ") || header(s.Data, "Call-ID") != "drain-a" {
			t.Fatalf("sent during the drain: %q", firstLine(s.Data))
		}
	}
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonDrain) != 1 || e.ended(ReasonBye) != 1 {
		t.Fatalf("ended by drain %d, by bye %d", e.ended(ReasonDrain), e.ended(ReasonBye))
	}
	select {
	case <-done:
		t.Fatal("Drain returned before its BYEs were answered")
	case <-time.After(100 * time.Millisecond):
	}
	for _, s := range sent {
		var m parser.Message
		if err := m.Parse([]byte(s.Data)); err != nil {
			t.Fatal(err)
		}
		e.Receive(s.Dst.String(), string(parser.AppendResponse(nil, &m, 200, nil, nil)))
	}
	select {
	case took := <-done:
		t.Logf("drain took %v", took)
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return once its BYEs were answered")
	}
}

// TestByeAfterRewrite: a route rewrote the relayed INVITE's From and To
// (uac_replace_from/to) and gave it the next CSeq (as uac_auth re-sends
// it); the callee's 2xx echoes what it got. The proxy's BYE to the callee
// carries the From and To the callee has (with the tags) and the CSeq in
// the callee's numbering, also after a restart from the store; the one to
// the caller the caller's own.
func TestByeAfterRewrite(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := DefaultSettings()
	s.WriteInterval = 10 * time.Minute
	e := newEnvWith(t, s, envOptions{store: st, secret: testSecret})
	const trunkFrom = `"Trunk" <sip:+4930100@carrier.example>;tag=atag-rw-1`
	e.beforeRelay = func(c *routing.Ctx) bool {
		ed := c.R.Editor()
		ed.SetHeaderValue(parser.HdrFrom, c.R.Own([]byte(trunkFrom)))
		ed.SetHeaderValue(parser.HdrTo, c.R.Own([]byte("<sip:+4930200@carrier.example>")))
		ed.SetCSeq(11)
		return true
	}
	c := e.invite("rw-1")
	if header(c.fwd, "From") != trunkFrom || header(c.fwd, "CSeq") != "11 INVITE" {
		t.Fatalf("relayed INVITE: From %q CSeq %q", header(c.fwd, "From"), header(c.fwd, "CSeq"))
	}
	out := c.respond(0, 200, "btag")
	if len(out) != 1 || header(out[0].Data, "From") != `"Alice" <sip:alice@example.com>;tag=atag-rw-1` || header(out[0].Data, "CSeq") != "10 INVITE" {
		t.Fatalf("200 to the caller not restored: %v", out)
	}
	c.inDialog("INFO", true, "btag", 12) // the caller's next, 13 for the callee
	wantByes := func(e *env) {
		t.Helper()
		byes := map[string]string{}
		for _, m := range e.waitSent(t, 2) {
			byes[m.Dst.String()] = m.Data
		}
		for _, w := range []struct{ dst, from, to, cseq string }{
			{calleeAddr, trunkFrom, "<sip:+4930200@carrier.example>;tag=btag", "14 BYE"},
			{callerAddr, "<sip:bob@example.com>;tag=btag", `"Alice" <sip:alice@example.com>;tag=atag-rw-1`, "1 BYE"},
		} {
			m := byes[w.dst]
			if header(m, "From") != w.from || header(m, "To") != w.to || header(m, "CSeq") != w.cseq {
				t.Errorf("BYE to %s: From %q To %q CSeq %q, want %q %q %q", w.dst, header(m, "From"), header(m, "To"), header(m, "CSeq"), w.from, w.to, w.cseq)
			}
		}
	}
	e.d.flush()
	e.mods.Stop()
	e2 := newEnvWith(t, s, envOptions{store: st, clock: e.clock, secret: testSecret})
	e2.Take()
	if _, err := e2.d.End(e2.d.List("", 0)[0].ID); err != nil {
		t.Fatal(err)
	}
	wantByes(e2)

	// The same without a restart.
	e3 := newEnv(t, nil)
	e3.beforeRelay = e.beforeRelay
	c = e3.invite("rw-1")
	c.respond(0, 200, "btag")
	c.inDialog("INFO", true, "btag", 12)
	e3.Take()
	if _, err := e3.d.End(e3.d.List("", 0)[0].ID); err != nil {
		t.Fatal(err)
	}
	wantByes(e3)
}

// TestEarlyTimeoutCancels: a dialog still ringing at its timeout (here
// default_timeout 10s, below timer C) is ended by the proxy with a CANCEL
// of its INVITE: the callee gets the CANCEL, the caller the 487 once the
// callee answers it; ringing 9.999 s ends nothing.
func TestEarlyTimeoutCancels(t *testing.T) {
	s := DefaultSettings()
	s.DefaultTimeout = 10 * time.Second
	e := newEnv(t, s)
	c := e.invite("early-to")
	c.respond(0, 180, "b")
	e.clock.Advance(9999 * time.Millisecond)
	e.wantCount(t, 0, 1, 0)
	e.Take()
	e.clock.Advance(time.Millisecond)
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonTimeout) != 1 {
		t.Fatal("early timeout not counted")
	}
	sent := e.waitSent(t, 1)
	if !strings.HasPrefix(sent[0].Data, "CANCEL sip:bob@"+calleeAddr) || sent[0].Dst.String() != calleeAddr ||
		header(sent[0].Data, "CSeq") != "10 CANCEL" {
		t.Fatalf("at the early timeout: %q to %s", sent[0].Data, sent[0].Dst)
	}
	out := c.respond(0, 487, "b")
	got := ""
	for _, m := range out {
		if m.Dst.String() == callerAddr {
			got = firstLine(m.Data)
		}
	}
	if got != "SIP/2.0 487 Request Terminated" {
		t.Fatalf("the caller got %q, want the 487", got)
	}
	if e.d.cancels.Get() != 1 {
		t.Fatalf("cancels %d", e.d.cancels.Get())
	}
}

// TestDialogEnded: what DialogEnded tells a route that counts calls of
// its own (the provider's fraud limits) after MatchDialog: a BYE while
// the call rings is matched and ends nothing; one with another To tag
// is not matched and ends nothing; the answered call's BYE ends it; a
// BYE after that names a dialog that ended, unmatched; the BYE of a
// call relayed without a dialog names none.
func TestDialogEnded(t *testing.T) {
	e := newEnv(t, nil)
	type answer struct{ matched, hasDialog, ended bool }
	var got []answer
	withDialog := true
	e.Route = func(c *routing.Ctx) {
		if !c.HasToTag() {
			if withDialog {
				if !e.d.CreateDialog(c) {
					t.Fatal("no dialog")
				}
			} else {
				c.RecordRoute()
			}
			c.Relay()
			return
		}
		if !c.LooseRoute() {
			t.Errorf("%s not loose-routed", c.Msg().Method())
			return
		}
		matched := e.d.MatchDialog(c)
		hasDialog, ended := e.d.DialogEnded(c)
		got = append(got, answer{matched, hasDialog, ended})
		c.Relay()
	}
	c := e.invite("ended-1")
	c.respond(0, 180, "b1")
	c.inDialog("BYE", true, "b1", 11)
	c.respond(0, 200, "b1")
	c.inDialog("BYE", true, "other", 12)
	c.inDialog("BYE", true, "b1", 13)
	c.inDialog("BYE", false, "b1", 14)
	withDialog = false
	c = e.invite("ended-2")
	c.respond(0, 200, "b2")
	c.inDialog("BYE", true, "b2", 11)
	want := []answer{
		{true, true, false},   // early BYE
		{false, true, false},  // another To tag
		{true, true, true},    // the answered call's BYE
		{false, true, true},   // after the end
		{false, false, false}, // a call without a dialog
	}
	if len(got) != len(want) {
		t.Fatalf("%d in-dialog requests routed, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestByeFromElsewhere: a BYE of the callee's side (the tags swapped)
// that does not come from the callee's address (where the INVITE was
// relayed) but from another one, as the caller sends it posing as the
// callee, addressed to herself: it goes to the caller's target, ends the
// dialog, and the proxy sends its own BYE to the callee as well. Before,
// the callee never had a BYE and the call went on there while the dialog
// was over (its record written, its places in profiles freed, its
// timeout gone). The callee's own BYE from its address gets no second
// one, nor the caller's from hers.
func TestByeFromElsewhere(t *testing.T) {
	e := newEnv(t, nil)
	c := e.invite("elsewhere-1")
	c.respond(0, 200, "b1")
	c.inDialog("ACK", true, "b1", 10)
	forged := *c
	forged.src = "127.0.0.7:5070" // not the callee's 127.0.0.1
	sent := forged.inDialog("BYE", false, "b1", 1)
	if e.ended(ReasonBye) != 1 {
		t.Fatalf("ended by a BYE: %d", e.ended(ReasonBye))
	}
	if len(sent) < 2 { // the proxy's BYE goes out from the module's goroutine
		sent = append(sent, e.waitSent(t, 2-len(sent))...)
	}
	toCaller, toCallee := 0, 0
	for _, m := range sent {
		switch {
		case strings.HasPrefix(m.Data, "BYE sip:alice@"):
			toCaller++
		case strings.HasPrefix(m.Data, "BYE sip:bob@") && m.Dst.String() == calleeAddr &&
			header(m.Data, "Call-ID") == "elsewhere-1" && strings.Contains(header(m.Data, "To"), "tag=b1"):
			toCallee++
		}
	}
	if toCaller != 1 || toCallee != 1 {
		t.Fatalf("sent %d BYEs to the caller (hers, relayed) and %d to the callee (the proxy's), want 1 and 1: %v", toCaller, toCallee, sent)
	}
	if got := e.d.byeElsewhere.Get(); got != 1 {
		t.Fatalf("switchboard_dialog_byes_from_elsewhere_total %d", got)
	}

	for i, fromCaller := range []bool{false, true} {
		id := "elsewhere-own-" + itoa(i+2)
		c := e.invite(id)
		c.respond(0, 200, "b2")
		c.inDialog("ACK", true, "b2", 10)
		if sent := c.inDialog("BYE", fromCaller, "b2", 11); len(sent) != 1 {
			t.Fatalf("%s: the party's own BYE: %v", id, sent)
		}
		time.Sleep(50 * time.Millisecond)
		if more := e.Take(); len(more) != 0 {
			t.Fatalf("%s: sent after the party's own BYE: %v", id, more)
		}
	}
	if got := e.d.byeElsewhere.Get(); got != 1 {
		t.Fatalf("switchboard_dialog_byes_from_elsewhere_total %d after the parties' own BYEs", got)
	}
}
