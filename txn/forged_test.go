package txn

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/transport"
)

// Responses an attacker forges from anywhere, knowing what every relayed
// request shows: our branch prefix and the shape of our branches.

// TestForgedStaleAttemptNoACK: a final response to an INVITE whose branch
// names another attempt (one digit changed) from an address the branch
// never tried is dropped and counted: the ACK of a given-up attempt,
// which carries the request's whole Route set, goes only to a target the
// branch tried (a 284-byte forged 486 made a 7,782-byte ACK to its
// spoofed source).
func TestForgedStaleAttemptNoACK(t *testing.T) {
	h := newHarness(t, nil)
	rt := "Route: <sip:127.0.0.1:5080;lr>"
	for i := 0; i < 100; i++ {
		rt += ", <sip:hop" + itoa(i) + ".example.invalid;lr;padpadpadpadpadpadpadpadpadpadpadpadpadpad>"
	}
	h.in(uacAddr, request("INVITE", "z9hG4bKamp1", "amp1@x", "sip:bob@127.0.0.1:5080", rt))
	out := h.snd.take()[1].data
	br := topBranch(out)
	victim := netip.MustParseAddrPort("127.0.0.99:7777")
	for _, digit := range []string{"7", "0", "1"} {
		h.in(victim, strings.Replace(respond(out, 486, "x"), br, br[:len(br)-1]+digit, 1))
		for _, m := range h.snd.take() {
			if m.dst == victim {
				t.Fatalf("attempt digit %s: a forged 486 sent %d bytes to its source: %q", digit, len(m.data), firstLines([]sentMsg{m}))
			}
		}
	}
	if n := h.core.Stats().ForgedResponses; n < 2 {
		t.Fatalf("ForgedResponses %d", n)
	}
}

// TestForgedLocalResponse: a response to one of the proxy's own requests
// (a gateway probe) from another address than the probe went to, or with
// another Call-ID or CSeq, does not end it; the genuine one does.
func TestForgedLocalResponse(t *testing.T) {
	h := newHarness(t, nil)
	res := newLocalResult()
	h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Message: options("127.0.0.1:5080")}, res.cb)
	sent := h.snd.take()[0].data
	br := topBranch(sent)
	if !strings.HasPrefix(br, h.core.BranchPrefix()+"L") || strings.HasSuffix(br, "0000000000000001") {
		t.Fatalf("local branch %q", br)
	}
	genuine := respond(sent, 503, "")
	for _, forged := range []struct {
		src netip.AddrPort
		msg string
	}{
		{netip.MustParseAddrPort("127.0.0.66:9999"), genuine},
		{uasAddr, strings.Replace(genuine, "Call-ID: ", "Call-ID: x", 1)},
		{uasAddr, strings.Replace(genuine, "CSeq: 1 ", "CSeq: 2 ", 1)},
	} {
		h.in(forged.src, forged.msg)
		select {
		case <-res.done:
			t.Fatalf("the probe to %v ended by a forged response from %v: %d", uasAddr, forged.src, res.code)
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.in(uasAddr, genuine)
	select {
	case <-res.done:
		if res.code != 503 {
			t.Fatalf("outcome %d", res.code)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the genuine response did not end the probe")
	}
	if n := h.core.Stats().ForgedResponses; n != 3 {
		t.Fatalf("ForgedResponses %d", n)
	}
}
