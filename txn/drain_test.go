package txn

import "testing"

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
