package txn

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// hider is a Rewriter that does what a topology-hiding module does with
// the hook: the relayed request keeps only our Via and gets a Contact of
// ours naming the branch; a response upstream gets back the Vias of the
// request as received and a Contact of ours. It records what it was
// called with.
type hider struct {
	seen []string
	keep bool // record calls (off for allocation counts)
}

func (w *hider) RewriteRequest(r *Request, b *Branch, out *transport.Listener, ed *parser.Editor, buf []byte) []byte {
	idx := -1
	if b != nil {
		idx = b.Index()
	}
	if w.keep {
		w.seen = append(w.seen, "req "+strconv.Itoa(idx)+" "+string(r.Msg.MethodBytes())+" via "+out.AdvertisedHost)
	}
	ed.DropHeaders(parser.HdrVia)
	ed.DropHeaders(parser.HdrContact)
	n := len(buf)
	buf = append(buf, "<sip:"...)
	buf = append(buf, out.AdvertisedHost...)
	buf = append(buf, ":5060;b="...)
	buf = strconv.AppendInt(buf, int64(idx), 10)
	buf = append(buf, '>')
	ed.AddHeader("Contact", buf[n:])
	return buf
}

func (w *hider) RewriteResponse(r *Request, b *Branch, ed *parser.Editor, resp *parser.Message, buf []byte) []byte {
	if w.keep {
		w.seen = append(w.seen, "resp "+strconv.Itoa(b.Index())+" "+strconv.Itoa(resp.StatusCode()))
	}
	ed.DropHeaders(parser.HdrVia)
	n := len(buf)
	it := r.Msg.Vias()
	for it.Next() {
		if len(buf) > n {
			buf = append(buf, ", "...)
		}
		buf = append(buf, it.Via.Raw...)
	}
	ed.InsertVia(buf[n:])
	if resp.Has(parser.HdrContact) {
		ed.DropHeaders(parser.HdrContact)
		ed.AddHeader("Contact", []byte("<sip:127.0.0.1:5060;up>"))
	}
	return buf
}

// TestRewriterEditsRelayedMessages: a Rewriter set by the route edits the
// copy of the INVITE on each branch of a fork (its branch and listener
// given), after the core's edits (our Via alone is left, and no
// Record-Route once DropRecordRoute took RecordRoute back); every
// response relayed upstream (the 180, both 2xx, a 2xx retransmission, a
// relayed final) gets the caller's Via back and our Contact; the core's
// own 100 is not given to it; the 2xx ACK, forwarded statelessly, is
// rewritten too (branch nil) and goes to SetNextHop's address.
func TestRewriterEditsRelayedMessages(t *testing.T) {
	h := newHarness(t, nil)
	w := &hider{keep: true}
	h.rt.request = func(r *Request) {
		r.SetRewriter(w)
		if r.Method() == parser.MethodAck {
			if !r.SetNextHop([]byte("sip:127.0.0.1:5090;transport=udp")) {
				t.Error("SetNextHop refused a URI")
			}
			r.Relay()
			return
		}
		r.RecordRoute()
		r.DropRecordRoute()
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	inv := strings.Replace(invite("z9hG4bKrw1", "rw1@x"), "Max-Forwards: 70\n",
		"Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKinner\nRecord-Route: <sip:10.9.9.8;lr>\nMax-Forwards: 70\n", 1)
	h.in(uacAddr, inv)
	msgs := h.snd.take()
	if len(msgs) != 3 || !strings.HasPrefix(msgs[0].data, "SIP/2.0 100 ") {
		t.Fatalf("sent:\n%s", describe(msgs))
	}
	if v := headers(msgs[0].data, "Via"); len(v) != 2 || !strings.Contains(v[1], "10.9.9.9") {
		t.Fatalf("the core's 100 was edited: Vias %q", v)
	}
	for i, m := range msgs[1:] {
		vias, rr, ct := headers(m.data, "Via"), headers(m.data, "Record-Route"), headers(m.data, "Contact")
		if len(vias) != 1 || !strings.HasPrefix(vias[0], "SIP/2.0/UDP 127.0.0.1:5060;branch=") {
			t.Errorf("branch %d Vias %q", i, vias)
		}
		if len(rr) != 1 || rr[0] != "<sip:10.9.9.8;lr>" {
			t.Errorf("branch %d Record-Route %q: want the caller side's alone, none of ours", i, rr)
		}
		if len(ct) != 1 || ct[0] != "<sip:127.0.0.1:5060;b="+strconv.Itoa(i)+">" {
			t.Errorf("branch %d Contact %q", i, ct)
		}
	}
	b0, b1 := msgs[1].data, msgs[2].data
	upVias := []string{"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKrw1, SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKinner"}
	checkUp := func(what string, m sentMsg, contact string) {
		t.Helper()
		if m.dst != uacAddr {
			t.Errorf("%s went to %v", what, m.dst)
		}
		if v := headers(m.data, "Via"); strings.Join(v, "|") != strings.Join(upVias, "|") {
			t.Errorf("%s Vias %q", what, v)
		}
		if c := headers(m.data, "Contact"); strings.Join(c, "|") != contact {
			t.Errorf("%s Contact %q, want %q", what, c, contact)
		}
	}
	withContact := func(resp string) string {
		return strings.Replace(resp, "Content-Length:", "Contact: <sip:bob@10.0.0.5>\r\nContent-Length:", 1)
	}
	h.in(uasAddr, withContact(respond(b0, 180, "b")))
	up := h.snd.take()
	checkUp("180", up[0], "<sip:127.0.0.1:5060;up>")
	ok1 := withContact(respond(b1, 200, "c"))
	h.in(uas2Addr, ok1)
	up = h.snd.take()
	checkUp("200 of branch 1", up[0], "<sip:127.0.0.1:5060;up>")
	h.in(uas2Addr, ok1)
	up = h.snd.take()
	checkUp("retransmitted 200", up[0], "<sip:127.0.0.1:5060;up>")
	h.in(uasAddr, respond(b0, 200, "b"))
	up = h.snd.take()
	checkUp("200 of branch 0", up[0], "")

	ack := `ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKrw1ack
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>;tag=c
Call-ID: rw1@x
CSeq: 1 ACK
Contact: <sip:alice@127.0.0.1:5070>
`
	h.in(uacAddr, ack)
	sent := h.snd.take()
	if len(sent) != 1 || sent[0].dst != uas2Addr || !strings.HasPrefix(sent[0].data, "ACK sip:bob@127.0.0.1:5080 ") {
		t.Fatalf("ACK: sent\n%s", describe(sent))
	}
	if v, c := headers(sent[0].data, "Via"), headers(sent[0].data, "Contact"); len(v) != 1 || len(c) != 1 || c[0] != "<sip:127.0.0.1:5060;b=-1>" {
		t.Errorf("ACK Vias %q Contact %q", v, c)
	}

	// A relayed final: the best response goes up rewritten.
	h.rt.request = func(r *Request) {
		r.SetRewriter(w)
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKrw2", "rw2@x"))
	fwd := h.snd.take()
	h.in(uasAddr, respond(fwd[1].data, 486, "b"))
	up = h.snd.take()
	var resp sentMsg
	for _, m := range up {
		if strings.HasPrefix(m.data, "SIP/2.0 486 ") {
			resp = m
		}
	}
	if v := headers(resp.data, "Via"); len(v) != 1 || v[0] != "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKrw2" {
		t.Errorf("486 Vias %q:\n%s", v, describe(up))
	}

	want := []string{"req 0 INVITE via 127.0.0.1", "req 1 INVITE via 127.0.0.1", "resp 0 180", "resp 1 200", "resp 1 200", "resp 0 200",
		"req -1 ACK via 127.0.0.1", "req 0 INVITE via 127.0.0.1", "resp 0 486"}
	if strings.Join(w.seen, "|") != strings.Join(want, "|") {
		t.Errorf("rewriter calls:\n%q\nwant\n%q", w.seen, want)
	}
	if (&Request{st: &routeState{}}).SetNextHop([]byte("tel:+4930")) {
		t.Error("SetNextHop accepted a tel: URI")
	}
}

// TestSetNextHop: the Request-URI branch of a stateful request goes to
// SetNextHop's address, its Request-URI and Route unchanged.
func TestSetNextHop(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.SetNextHop([]byte("sip:127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKnh", "nh@x", "sip:bob@127.0.0.1:5080", "Route: <sip:127.0.0.1:5081;lr>"))
	sent := h.snd.take()
	if len(sent) != 1 || sent[0].dst != uas2Addr || !strings.HasPrefix(sent[0].data, "MESSAGE sip:bob@127.0.0.1:5080 ") ||
		header(sent[0].data, "Route") != "<sip:127.0.0.1:5081;lr>" {
		t.Fatalf("sent:\n%s\n%s", describe(sent), sent[0].data)
	}
}

// TestRewriterAllocatesNothing: whole calls through a Rewriter that edits
// every message (INVITE, 180, 200, ACK) allocate nothing.
func TestRewriterAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := newLoop(t, nil)
	w := &hider{}
	l.h.rt.request = func(r *Request) {
		r.SetRewriter(w)
		r.Relay()
	}
	call := []byte(fixCL(invite("z9hG4bK00000000", "00000000@x")))
	at := counterAt(call)
	ack := []byte(fixCL(`ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000a
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>;tag=uas1
Call-ID: 00000000@x
CSeq: 1 ACK
`))
	at2 := counterAt(ack)
	n := 0
	mustZero(t, "rewritten call: INVITE, 180, 200, ACK", func() {
		n++
		setCounter(call, at, n)
		setCounter(ack, at2, n)
		l.deliver(uacAddr, transport.UDP, call)
		l.deliver(uasAddr, transport.UDP, l.answer(180))
		l.deliver(uasAddr, transport.UDP, l.answer(200))
		l.deliver(uacAddr, transport.UDP, ack)
		l.h.clock.Advance(200 * time.Millisecond)
	})
	if !strings.Contains(string(l.snd.last), "Contact: <sip:127.0.0.1:5060;b=-1>") {
		t.Fatalf("the ACK was not rewritten:\n%s", l.snd.last)
	}
}
