package txn

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
)

// TestHoldResponse: a reply route holds a 183 and a 200 (a media relay's
// answer is asked for off the receive path): nothing goes upstream until
// Release, which sends each with the edits made then (a new body) and the
// core's own (our Via removed); the 2xx still ends its branch at once. A
// 2xx retransmission held and released goes up again. A non-2xx final
// cannot be held, nor anything outside a Reply hook, and a release after
// the transaction ended reports ErrNoTransaction.
func TestHoldResponse(t *testing.T) {
	h := newHarness(t, nil)
	var held []*HeldResponse
	var holdErr []error
	h.rt.request = func(r *Request) {
		if _, err := r.HoldResponse(); err != ErrNotHeld {
			t.Errorf("a request route held a response: %v", err)
		}
		r.Relay()
	}
	h.rt.reply = func(r *Request, b *Branch, m *parser.Message) bool {
		hr, err := r.HoldResponse()
		if err != nil {
			holdErr = append(holdErr, err)
			return true
		}
		held = append(held, hr)
		return true
	}
	h.in(uacAddr, invite("z9hG4bKh1", "hold1@x"))
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 183, "b1"))
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent while held:\n%s", describe(msgs))
	}
	if len(held) != 2 || held[0].Code() != 183 || held[1].Code() != 200 || held[1].Source() != uasAddr {
		t.Fatalf("held %d", len(held))
	}
	if held[0].Retransmission() || held[1].Retransmission() {
		t.Fatal("a first response held as a retransmission")
	}
	body := func(b string) func(m *parser.Message, ed *parser.Editor) {
		return func(m *parser.Message, ed *parser.Editor) {
			if !ed.SetBody([]byte(b), []byte("application/sdp")) {
				t.Error("SetBody refused")
			}
		}
	}
	if err := held[0].Release(body("v=0\r\nc=IN IP4 127.0.0.9\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := held[1].Release(body("v=0\r\nc=IN IP4 127.0.0.10\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 183 Session Progress", toUAC+"SIP/2.0 200 OK")
	for i, want := range []string{"127.0.0.9", "127.0.0.10"} {
		m := msgs[i].data
		if !strings.HasSuffix(m, "c=IN IP4 "+want+"\r\n") || header(m, "Content-Type") != "application/sdp" {
			t.Errorf("response %d relayed as\n%s", i, m)
		}
		if v := headers(m, "Via"); len(v) != 1 || !strings.Contains(v[0], "z9hG4bKh1") {
			t.Errorf("response %d Vias %q", i, v)
		}
	}
	// The retransmitted 200 is held again and goes up when released.
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if msgs := h.snd.take(); len(msgs) != 0 || len(held) != 3 {
		t.Fatalf("retransmission not held:\n%s", describe(msgs))
	}
	if !held[2].Retransmission() {
		t.Fatal("the repeated 200 is not a retransmission")
	}
	if err := held[2].Release(nil); err != nil {
		t.Fatal(err)
	}
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")

	// A 486 cannot be held: it goes upstream as usual. A 180 held before
	// it and released after the transaction ended is refused.
	h.in(uacAddr, invite("z9hG4bKh2", "hold2@x"))
	fwd = h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b2"))
	h.in(uasAddr, respond(fwd, 486, "b2"))
	if len(holdErr) != 1 || holdErr[0] != ErrNotHeld {
		t.Fatalf("hold of a 486: %v", holdErr)
	}
	msgs = h.snd.take()
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 486 Busy Here")
	h.in(uacAddr, strings.Replace(strings.Replace(invite("z9hG4bKh2", "hold2@x"), "INVITE sip", "ACK sip", 1), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1))
	h.advance(time.Minute)
	if err := held[3].Release(nil); err != ErrNoTransaction {
		t.Fatalf("release after the end: %v", err)
	}
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent after the end:\n%s", describe(msgs))
	}
}

// TestHoldNonInviteResponse: the 2xx to an UPDATE (or a PRACK), which
// carries the answer to the offer the request made, is held as an
// INVITE's is, and goes upstream with the edits made at its release; the
// server transaction waits for it. A non-INVITE's provisional (never
// relayed) and its non-2xx final cannot be held.
func TestHoldNonInviteResponse(t *testing.T) {
	h := newHarness(t, nil)
	var held []*HeldResponse
	var holdErr []error
	h.rt.request = func(r *Request) { r.Relay() }
	h.rt.reply = func(r *Request, b *Branch, m *parser.Message) bool {
		hr, err := r.HoldResponse()
		if err != nil {
			holdErr = append(holdErr, err)
			return true
		}
		held = append(held, hr)
		return true
	}
	forwarded := func() string {
		t.Helper()
		for _, m := range h.snd.take() {
			if strings.HasPrefix(m.data, "UPDATE ") {
				return m.data
			}
		}
		t.Fatal("UPDATE not relayed")
		return ""
	}
	h.in(uacAddr, request("UPDATE", "z9hG4bKu1", "holdu1@x", "sip:bob@127.0.0.1:5080", ""))
	fwd := forwarded()
	h.in(uasAddr, respond(fwd, 180, "b1"))
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent while held:\n%s", describe(msgs))
	}
	if len(held) != 1 || held[0].Code() != 200 || len(holdErr) != 1 || holdErr[0] != ErrNotHeld {
		t.Fatalf("held %d, refused %v", len(held), holdErr)
	}
	// The UAC's retransmission meanwhile is absorbed: nothing relayed.
	h.in(uacAddr, request("UPDATE", "z9hG4bKu1", "holdu1@x", "sip:bob@127.0.0.1:5080", ""))
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("retransmission while held:\n%s", describe(msgs))
	}
	err := held[0].Release(func(m *parser.Message, ed *parser.Editor) {
		ed.SetBody([]byte("v=0\r\nc=IN IP4 127.0.0.11\r\n"), []byte("application/sdp"))
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 200 OK")
	if m := msgs[0].data; !strings.HasSuffix(m, "c=IN IP4 127.0.0.11\r\n") || len(headers(m, "Via")) != 1 {
		t.Fatalf("200 relayed as\n%s", m)
	}

	h.in(uacAddr, request("UPDATE", "z9hG4bKu2", "holdu2@x", "sip:bob@127.0.0.1:5080", ""))
	h.in(uasAddr, respond(forwarded(), 491, "b2"))
	if len(holdErr) != 2 || holdErr[1] != ErrNotHeld {
		t.Fatalf("hold of a 491: %v", holdErr)
	}
	h.only(h.snd.take(), toUAC+"SIP/2.0 491 Request Pending")
}

// TestHeldResponseDeadline: a reply route holds the 200 of an INVITE and
// never releases it (a lost callback, a module's error path). Until 64·T1
// after the hold nothing goes upstream; then the transaction gives the
// response up itself: the caller gets 500 (not the 2xx nobody approved,
// whose callee has stopped retransmitting it by then), it is counted in
// Stats.HeldExpired and logged once with the Call-ID, and the
// transaction ends by its own timers once the 500 is ACKed. A 2xx
// retransmission after the deadline is not relayed after the 500, held or
// not; a late Release is refused (ErrHoldExpired, nothing sent), and one
// after the pooled entry went to another transaction of the same Call-ID
// is refused too (ErrNoTransaction) and sends nothing for that one.
func TestHeldResponseDeadline(t *testing.T) {
	var out bytes.Buffer
	h := newHarness(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&out, nil)) })
	var held []*HeldResponse
	holdOnly := 2 // the first two 2xx are held, later ones pass
	h.rt.reply = func(r *Request, b *Branch, m *parser.Message) bool {
		if m.StatusCode() < 200 || len(held) >= holdOnly {
			return true
		}
		hr, err := r.HoldResponse()
		if err != nil {
			t.Errorf("hold: %v", err)
			return true
		}
		held = append(held, hr)
		return true
	}
	inv := invite("z9hG4bKdl1", "hold-dl@x")
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b1"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing")
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if len(held) != 1 {
		t.Fatalf("held %d responses", len(held))
	}
	h.advance(64*DefaultT1 - time.Millisecond)
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent before the deadline:\n%s", describe(msgs))
	}
	if st := h.core.Stats(); st.Transactions != 1 || st.HeldExpired != 0 {
		t.Fatalf("before the deadline: %+v", st)
	}
	h.advance(time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	if st := h.core.Stats(); st.HeldExpired != 1 {
		t.Fatalf("HeldExpired %d, want 1", st.HeldExpired)
	}
	if n := strings.Count(out.String(), "held response not released"); n != 1 || !strings.Contains(out.String(), "call_id=hold-dl@x") {
		t.Fatalf("%d warnings:\n%s", n, out.String())
	}

	// The UAS's last retransmission, held again and released, then one
	// not held: neither goes up after the 500.
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if len(held) != 2 || !held[1].Retransmission() {
		t.Fatalf("retransmission not held: %d", len(held))
	}
	if err := held[1].Release(nil); err != ErrHoldExpired {
		t.Fatalf("release of a retransmission after the deadline: %v", err)
	}
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("a 2xx relayed after the 500:\n%s", describe(msgs))
	}
	if err := held[0].Release(nil); err != ErrHoldExpired {
		t.Fatalf("late release: %v", err)
	}
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent by a late release:\n%s", describe(msgs))
	}

	ack := strings.Replace(strings.Replace(inv, "INVITE sip", "ACK sip", 1), "CSeq: 1 INVITE", "CSeq: 1 ACK", 1)
	h.in(uacAddr, ack)
	h.advance(time.Minute)
	if st := h.core.Stats(); st.Transactions != 0 {
		t.Fatalf("%d transactions left after the deadline", st.Transactions)
	}
	if n := strings.Count(out.String(), "held response not released"); n != 1 {
		t.Fatalf("%d warnings, want one:\n%s", n, out.String())
	}

	// The entry is reused by the next transaction of the Call-ID (same
	// shard): the old handle resolves to nothing and sends nothing.
	h.in(uacAddr, invite("z9hG4bKdl2", "hold-dl@x"))
	h.snd.take()
	if err := held[0].Release(nil); err != ErrNoTransaction {
		t.Fatalf("release into a reused entry: %v", err)
	}
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent into another transaction:\n%s", describe(msgs))
	}
}

// TestHeldNonInviteDeadline: an UPDATE's 200 held and never released is
// given up at the same deadline as an INVITE's, although a non-INVITE
// keeps timer G for its late 100 (RFC 4320 §4.1), pending when the 2xx
// came: the UAC gets 500 at 64·T1, and the transaction ends.
func TestHeldNonInviteDeadline(t *testing.T) {
	h := newHarness(t, nil)
	var held []*HeldResponse
	h.rt.request = func(r *Request) { r.Relay() }
	h.rt.reply = func(r *Request, b *Branch, m *parser.Message) bool {
		if hr, err := r.HoldResponse(); err == nil {
			held = append(held, hr)
		}
		return true
	}
	h.in(uacAddr, request("UPDATE", "z9hG4bKud1", "hold-ud@x", "sip:bob@127.0.0.1:5080", ""))
	var fwd string
	for _, m := range h.snd.take() {
		if strings.HasPrefix(m.data, "UPDATE ") {
			fwd = m.data
		}
	}
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if len(held) != 1 {
		t.Fatalf("held %d responses", len(held))
	}
	h.advance(64*DefaultT1 - time.Millisecond)
	for _, m := range h.snd.take() {
		if strings.Contains(m.data, "SIP/2.0 200") || strings.Contains(m.data, "SIP/2.0 500") {
			t.Fatalf("before the deadline:\n%s", m.data)
		}
	}
	h.advance(time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 500 Server Internal Error")
	if err := held[0].Release(nil); err != ErrHoldExpired {
		t.Fatalf("late release: %v", err)
	}
	h.advance(time.Minute)
	if st := h.core.Stats(); st.Transactions != 0 || st.HeldExpired != 1 {
		t.Fatalf("after the deadline: %+v", st)
	}
}
