package dialog

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
)

// fetchRoute makes n's in-dialog requests name dialog id from the callee
// (as topology hiding's token does) and go to the other party:
// MatchDialogID, and on a miss FetchDialogID with this route as the
// continuation; 481 when neither finds the dialog. It records whether
// each run of the route was a resumed one.
type fetchRoute struct {
	id      uint64
	resumed []bool
}

func (f *fetchRoute) install(n *sharedNode) {
	inner := n.Route
	var route func(c *routing.Ctx)
	route = func(c *routing.Ctx) {
		if !c.HasToTag() {
			inner(c)
			return
		}
		f.resumed = append(f.resumed, c.R.Suspended())
		var buf [2048]byte
		peer, ok := n.d.MatchDialogID(c, f.id, Callee, buf[:0])
		if !ok {
			if n.d.FetchDialogID(c, f.id, Callee, route) {
				return
			}
			c.ReplyStateless(481, "Call/Transaction Does Not Exist", nil)
			return
		}
		c.SetRU(peer.Target)
		c.R.Editor().DropHeaders(parser.HdrRoute)
		c.Relay()
	}
	n.Route = route
}

// sharedPair starts a redis-server and two nodes sharing their dialogs
// on it, A and B.
func sharedPair(t *testing.T) (*redisServer, *sharedNode, *sharedNode) {
	rs := startRedis(t)
	now := time.Now().UnixMilli()
	return rs, newSharedNode(t, rs, "a", now, nil), newSharedNode(t, rs, "b", now, nil)
}

func sentTo(dst string, prefix string) func(routetest.Sent) bool {
	return func(s routetest.Sent) bool { return s.Dst.String() == dst && strings.HasPrefix(s.Data, prefix) }
}

// resumedSend waits for the message a resumed request sends: among what
// sending the request returned (the read may be done and the request
// resumed before that), or sent after.
func resumedSend(t *testing.T, n *sharedNode, first []routetest.Sent, keep func(routetest.Sent) bool) routetest.Sent {
	t.Helper()
	for _, s := range first {
		if keep(s) {
			return s
		}
	}
	return n.waitFor(t, 1, keep)[0]
}

// TestShareFetchDialogID: a call set up through node A, whose callee's
// requests name the dialog by id (topology hiding) and land on node B.
// B holds no dialog: FetchDialogID suspends the INFO, reads the dialog
// from Redis and resumes it, and the INFO goes to the caller's Contact;
// the BYE after it matches B's copy at once, is relayed the same way,
// and ends the call once (B's record, A drops its dialog). A request for
// a dialog Redis does not hold (another id), and one with the callee's
// tag changed, are read once and answered 481; the route runs twice for
// each, never a third time.
func TestShareFetchDialogID(t *testing.T) {
	_, a, b := sharedPair(t)
	c := a.answered(t, "fetch-1")
	l := a.d.List("", 0)
	if len(l) != 1 {
		t.Fatalf("A lists %d dialogs", len(l))
	}
	id, err := strconv.ParseUint(l[0].ID, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	f := &fetchRoute{id: id}
	f.install(b)
	tag := "btag-fetch-1"

	info := resumedSend(t, b, c.on(b).inDialog("INFO", false, tag, 3), sentTo(callerAddr, "INFO sip:alice@"+callerAddr))
	if header(info.Data, "Route") != "" {
		t.Errorf("relayed INFO kept a Route: %q", header(info.Data, "Route"))
	}
	if got := fmtBools(f.resumed); got != "false,true" {
		t.Fatalf("route runs for the INFO (resumed?): %s, want false,true", got)
	}
	if got := b.counter(`switchboard_dialog_redis_reads_total{result="found"}`); got != 1 {
		t.Fatalf("reads found %d, want 1", got)
	}

	// The BYE: the copy is here now, no second read.
	f.resumed = f.resumed[:0]
	bye := false
	for _, s := range c.on(b).inDialog("BYE", false, tag, 4) { // relayed at once: no read
		bye = bye || sentTo(callerAddr, "BYE sip:alice@"+callerAddr)(s)
	}
	if !bye {
		t.Fatal("the BYE was not relayed to the caller at once")
	}
	if got := fmtBools(f.resumed); got != "false" {
		t.Fatalf("route runs for the BYE: %s, want one", got)
	}
	waitUntil(t, "B's record of the call", func() bool { return len(b.ev.list()) == 1 })
	waitUntil(t, "A's dialog dropped", func() bool { return a.d.tbl.Len() == 0 })
	if ev := b.ev.list()[0]; string(ev.CallID) != "fetch-1" || ev.By != Callee || ev.Reason != ReasonBye {
		t.Fatalf("B's end: %+v", ev)
	}
	if len(a.ev.list()) != 0 {
		t.Fatalf("A told its subscribers too: %+v", a.ev.list())
	}

	// Another call's requests with what Redis does not hold.
	c2 := a.answered(t, "fetch-2")
	l = a.d.List("", 0)
	if len(l) != 1 {
		t.Fatalf("A lists %d dialogs", len(l))
	}
	id2, _ := strconv.ParseUint(l[0].ID, 16, 64)
	for i, tc := range []struct {
		name string
		id   uint64
		tag  string
	}{
		{"an id Redis does not hold", id2 + 1000, "btag-fetch-2"},
		{"the callee's tag changed", id2, "forged-tag"},
	} {
		f.id = tc.id
		f.resumed = f.resumed[:0]
		resumedSend(t, b, c2.on(b).inDialog("INFO", false, tc.tag, 5+i), sentTo(calleeAddr, "SIP/2.0 481"))
		if got := fmtBools(f.resumed); got != "false,true" {
			t.Errorf("%s: route runs %s, want false,true", tc.name, got)
		}
	}
	if a.d.tbl.Len() != 1 {
		t.Fatalf("A's second call: %d dialogs, want it up", a.d.tbl.Len())
	}
}

func fmtBools(b []bool) string { return strings.Join(boolStrings(b), ",") }

// TestShareFetchRedisDown: with Redis stopped, a request that needs
// another node's dialog is answered 481 within the read's timeout rather
// than left waiting: refused at once once B knows Redis is down, or
// queued before it knew, its read failing, and resumed.
func TestShareFetchRedisDown(t *testing.T) {
	rs, a, b := sharedPair(t)
	c := a.answered(t, "fetch-down")
	id, _ := strconv.ParseUint(a.d.List("", 0)[0].ID, 16, 64)
	f := &fetchRoute{id: id}
	f.install(b)
	rs.Stop()
	for i, cseq := range []int{3, 4} { // the first may find B still thinking Redis is up
		f.resumed = f.resumed[:0]
		start := time.Now()
		resumedSend(t, b, c.on(b).inDialog("INFO", false, "btag-fetch-down", cseq), sentTo(calleeAddr, "SIP/2.0 481"))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("INFO %d: 481 after %v", i, took)
		}
		if len(f.resumed) > 2 {
			t.Errorf("INFO %d: route ran %d times", i, len(f.resumed))
		}
	}
	if got := b.counter(`switchboard_dialog_redis_reads_total{result="found"}`); got != 0 {
		t.Fatalf("reads found %d with Redis stopped", got)
	}
}

// TestShareTargetRefreshElsewhere: a call of node A whose callee moves
// (a re-INVITE with a new Contact) through node B. B's copy takes the
// new target from the answered re-INVITE and writes it to Redis (te);
// when A ends the call (dialog.end), its claim returns it and A's BYE to
// the callee goes to the new Contact, not the one A saw in the 2xx. The
// caller's target, refreshed by no one, stays.
func TestShareTargetRefreshElsewhere(t *testing.T) {
	rs, a, b := sharedPair(t)
	c := a.answered(t, "moved-x")
	const moved = "sip:bob@127.0.0.1:5099;transport=udp"
	tag := "btag-moved-x"
	var ours []string
	for _, v := range c.rr {
		if !strings.Contains(v, "caller-side") {
			ours = append(ours, v)
		}
	}
	route := strings.Join(append(ours, "<sip:10.0.0.9;lr;caller-side>"), ", ")
	from := "<sip:bob@example.com>;tag=" + tag
	to := "\"Alice\" <sip:alice@example.com>;tag=atag-moved-x"
	reinvite := "INVITE sip:alice@" + callerAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + calleeAddr + ";branch=z9hG4bKmoved7\r\n" +
		"Max-Forwards: 70\r\n" +
		"Route: " + route + "\r\n" +
		"From: " + from + "\r\nTo: " + to + "\r\n" +
		"Call-ID: moved-x\r\nCSeq: 7 INVITE\r\n" +
		"Contact: <" + moved + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	var relayed string
	for _, s := range c.on(b).send(calleeAddr, reinvite) {
		if strings.HasPrefix(s.Data, "INVITE ") {
			relayed = s.Data
		}
	}
	if relayed == "" {
		t.Fatal("B did not relay the re-INVITE")
	}
	waitUntil(t, "B's copy", func() bool { return b.d.remote.Load() == 1 })
	// The caller's 200 to the relayed re-INVITE, through B.
	var vias string
	for _, v := range headerValues(relayed, "Via") {
		vias += "Via: " + v + "\r\n"
	}
	ok := "SIP/2.0 200 OK\r\n" + vias +
		"From: " + from + "\r\nTo: " + to + "\r\n" +
		"Call-ID: moved-x\r\nCSeq: 7 INVITE\r\n" +
		"Contact: <sip:alice@" + callerAddr + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	c.on(b).send(callerAddr, ok)
	waitUntil(t, "the callee's new target in Redis", func() bool {
		keys, _ := rs.Client().Keys(context.Background(), "switchboard:dlg:{*").Result()
		return len(keys) == 1 && strings.HasSuffix(rs.Client().HGet(context.Background(), keys[0], "te").Val(), " "+moved)
	})
	if v := rs.Client(); true {
		keys, _ := v.Keys(context.Background(), "switchboard:dlg:{*").Result()
		if tc := v.HGet(context.Background(), keys[0], "tc").Val(); tc != "" {
			t.Fatalf("the caller's target refreshed in Redis: %q (its Contact did not change)", tc)
		}
	}

	a.Take()
	if _, err := a.d.End(a.d.List("", 0)[0].ID); err != nil {
		t.Fatal(err)
	}
	sent := a.waitFor(t, 2, func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, "BYE ") })
	var toCallee, toCaller string
	for _, s := range sent {
		switch {
		case strings.HasPrefix(s.Data, "BYE sip:bob@"):
			toCallee = firstLine(s.Data)
		case strings.HasPrefix(s.Data, "BYE sip:alice@"):
			toCaller = firstLine(s.Data)
		}
	}
	if toCallee != "BYE "+moved+" SIP/2.0" {
		t.Fatalf("A's BYE to the callee: %q, want to %s", toCallee, moved)
	}
	if toCaller != "BYE sip:alice@"+callerAddr+" SIP/2.0" {
		t.Fatalf("A's BYE to the caller: %q", toCaller)
	}
}
