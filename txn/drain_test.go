package txn

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPendingCountsOnlyTransactionsAtWork(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKp1", "p1@x", "sip:bob@127.0.0.1:5080", ""))
	h.in(uacAddr, invite("z9hG4bKp2", "p2@x"))
	msgs := h.snd.take()
	var msgFwd, invFwd string
	for _, m := range msgs {
		switch {
		case m.dst == uasAddr && header(m.data, "CSeq") == "1 MESSAGE":
			msgFwd = m.data
		case m.dst == uasAddr && header(m.data, "CSeq") == "1 INVITE":
			invFwd = m.data
		}
	}
	if msgFwd == "" || invFwd == "" {
		t.Fatalf("requests not relayed:\n%s", describe(msgs))
	}
	if n := h.core.Pending(); n != 2 {
		t.Fatalf("Pending = %d with two requests relayed, want 2", n)
	}
	h.in(uasAddr, respond(invFwd, 180, "b"))
	if n := h.core.Pending(); n != 2 {
		t.Fatalf("Pending = %d after a provisional, want 2", n)
	}
	h.in(uasAddr, respond(msgFwd, 200, "b"))
	h.in(uasAddr, respond(invFwd, 200, "b"))
	if n := h.core.Pending(); n != 0 {
		t.Fatalf("Pending = %d after both final responses, want 0", n)
	}
	if n := h.core.Stats().Transactions; n == 0 {
		t.Fatal("finished transactions should linger to absorb retransmissions")
	}
}

func TestResumeRunsLockedAndCarriesEdits(t *testing.T) {
	h := newHarness(t, nil)
	done := make(chan error)
	h.rt.request = func(r *Request) {
		r.Editor().AddHeader("X-Before", []byte("1"))
		held := r.Suspend()
		go func() {
			done <- held.Resume(func(r *Request) {
				if string(r.Msg.CallID()) != "rs@x" {
					t.Errorf("resumed on the wrong message: %q", r.Msg.CallID())
				}
				r.Editor().AddHeader("X-After", []byte("2"))
				if err := r.Relay(); err != nil {
					t.Error(err)
				}
			})
		}()
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKrs", "rs@x", "sip:bob@127.0.0.1:5080", ""))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
	if header(msgs[0].data, "X-Before") != "1" || header(msgs[0].data, "X-After") != "2" {
		t.Fatalf("edits lost:\n%s", msgs[0].data)
	}
}

// A continuation that comes after the transaction timed out and its entry
// was reused must not run on the new transaction.
func TestResumeAfterTimeoutDoesNotRun(t *testing.T) {
	h := newHarness(t, nil)
	var held *Request
	h.rt.request = func(r *Request) { held = r.Suspend() }
	h.in(uacAddr, request("MESSAGE", "z9hG4bKro1", "ro1@x", "sip:bob@127.0.0.1:5080", ""))
	h.advance(32 * time.Second) // 408
	h.advance(32 * time.Second) // gone
	h.rt.request = func(r *Request) { r.Reply(200, "") }
	h.in(uacAddr, request("MESSAGE", "z9hG4bKro2", "ro1@x", "sip:bob@127.0.0.1:5080", "")) // likely reuses the entry
	h.snd.take()
	ran := false
	if err := held.Resume(func(*Request) { ran = true }); err != ErrNoTransaction || ran {
		t.Fatalf("Resume after the end: err %v, ran %v", err, ran)
	}
}

func TestReplyStatelessEndsTheTransaction(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		if err := r.ReplyStateless(200, "", []byte("Contact: <sip:a@127.0.0.1>;expires=60\r\n")); err != nil {
			t.Error(err)
		}
	}
	reg := request("REGISTER", "z9hG4bKsl1", "sl1@x", "sip:127.0.0.1", "")
	h.in(uacAddr, reg)
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.advance(20 * time.Millisecond) // one tick, not 64·T1
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions after a stateless reply", n)
	}
	// A retransmission is routed (and answered) again.
	h.in(uacAddr, reg)
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// TestLocalRepliesCarryReceived: the responses the core builds itself (a
// stateless 401, a stateful reply, a reply after force_rport) carry
// received and rport on the top Via as relayed responses do, so a phone
// behind NAT learns its public address from its registrar's answers.
func TestLocalRepliesCarryReceived(t *testing.T) {
	nated := netip.MustParseAddrPort("127.0.0.9:40123")
	via := func(msg string) string {
		for _, l := range strings.Split(msg, "\r\n") {
			if strings.HasPrefix(l, "Via: ") {
				return l
			}
		}
		return ""
	}
	cases := []struct {
		name  string
		rport string
		route func(r *Request)
		want  string
	}{
		{"stateless 401, rport", ";rport", func(r *Request) { r.ReplyStateless(401, "Unauthorized", nil) },
			"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKrc1;rport=40123;received=127.0.0.9"},
		{"stateful 486, no rport", "", func(r *Request) { r.Reply(486, "") },
			"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKrc1;received=127.0.0.9"},
		{"force_rport", "", func(r *Request) { r.ForceRPort(); r.ReplyStateless(403, "", nil) },
			"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKrc1;rport=40123;received=127.0.0.9"},
	}
	for i, c := range cases {
		h := newHarness(t, nil)
		h.rt.request = c.route
		msg := strings.Replace(request("REGISTER", "z9hG4bKrc1", fmt.Sprintf("rc%d@x", i), "sip:127.0.0.1", ""),
			"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKrc1", "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKrc1"+c.rport, 1)
		h.in(nated, msg)
		sent := h.snd.take()
		if len(sent) != 1 {
			t.Fatalf("%s: sent %d messages", c.name, len(sent))
		}
		if got := via(sent[0].data); got != c.want {
			t.Errorf("%s: %q, want %q\n%s", c.name, got, c.want, sent[0].data)
		}
	}
}
