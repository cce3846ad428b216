package txn

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/shards"
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

// TestUnsolicitedResponseNotRelayed: a response with our Via on top and a
// branch we never made, its next Via naming any address, port and
// transport (here a TCP service on loopback, its body a command for it),
// is dropped and counted; so is a late response other than an INVITE's
// 2xx with a branch of our stateful shape.
func TestUnsolicitedResponseNotRelayed(t *testing.T) {
	h := newHarness(t, nil)
	for _, branch := range []string{"z9hG4bKnotours", h.core.BranchPrefix() + "00000000s0000000000000000",
		h.core.BranchPrefix() + "0000000000000000000000000000000000"} {
		h.in(netip.MustParseAddrPort("127.0.0.66:9999"), "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch="+branch+"\n"+
			"Via: SIP/2.0/TCP 127.0.0.1:6379;branch=z9hG4bKx\nFrom: <sip:a@b>;tag=1\nTo: <sip:b@c>;tag=2\nCall-ID: s@x\nCSeq: 1 MESSAGE\n\nCONFIG SET dir /tmp\r\n")
		for _, m := range h.snd.take() {
			t.Errorf("branch %s: unsolicited response relayed to %v over %v:\n%s", branch, m.dst, m.l.Proto, m.data)
		}
	}
	// The third is a late non-INVITE response of our shape: dropped as
	// RFC 4320 says, not counted as forged.
	if n := h.core.Stats().ForgedResponses; n != 2 {
		t.Fatalf("ForgedResponses %d", n)
	}
}

// TestStatelessForwardResponseRelayed: the response to a request the
// route forwarded statelessly carries the branch whose MAC verifies: it
// is relayed to the sender; the same response with the branch's last
// digit changed is not.
func TestStatelessForwardResponseRelayed(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) { r.Forward() }
	h.in(uacAddr, request("OPTIONS", "z9hG4bKsf1", "sf1@x", "sip:bob@127.0.0.1:5080", ""))
	fwd := h.snd.take()[0].data
	br := topBranch(fwd)
	last := byte('0')
	if br[len(br)-1] == '0' {
		last = '1'
	}
	h.in(uasAddr, strings.Replace(respond(fwd, 200, "b"), br, br[:len(br)-1]+string(last), 1))
	h.only(h.snd.take())
	h.in(uasAddr, respond(fwd, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// TestLegacyTransactionsKeyedByCallID: two calls from an RFC 2543 UA (no
// magic cookie, no From tag) to one Request-URI with CSeq 1 are two
// transactions: the second is relayed, not answered as the first's
// retransmission, and its CANCEL cancels it, not the first.
func TestLegacyTransactionsKeyedByCallID(t *testing.T) {
	h := newHarness(t, nil)
	legacy := func(method, callID string) string {
		return method + " sip:bob@127.0.0.1:5080 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070\nMax-Forwards: 70\n" +
			"From: <sip:alice@127.0.0.1>\nTo: <sip:bob@127.0.0.1>\nCall-ID: " + callID + "\nCSeq: 1 " + method + "\n\n"
	}
	a, b := "legacy-a@x", ""
	for i := 0; b == ""; i++ {
		if id := "legacy-b" + itoa(i) + "@x"; h.core.tbl.Shard(shards.Sum([]byte(id))) == h.core.tbl.Shard(shards.Sum([]byte(a))) {
			b = id
		}
	}
	h.in(uacAddr, legacy("INVITE", a))
	h.in(uasAddr, respond(h.snd.take()[1].data, 180, "ra"))
	h.snd.take()
	h.in(uacAddr, legacy("INVITE", b))
	msgs := h.snd.take()
	if len(h.expectTo(msgs, uasAddr)) != 1 {
		t.Fatalf("the INVITE of call %s was not relayed:\n%s", b, describe(msgs))
	}
	h.in(uacAddr, legacy("CANCEL", b))
	for _, m := range h.expectTo(h.snd.take(), uasAddr) {
		if string(m.CallID()) != b {
			t.Fatalf("the CANCEL of call %s canceled call %s", b, m.CallID())
		}
	}
}

// TestForgedReceivedMaddr: a Via whose sent-by is the request's source
// but which carries a received or maddr of the sender's choosing does
// not steer the responses of a stateless forward: they go to the source.
func TestForgedReceivedMaddr(t *testing.T) {
	for _, param := range []string{";received=127.0.0.99", ";maddr=127.0.0.99"} {
		h := newHarness(t, nil)
		h.rt.request = func(r *Request) { r.Forward() }
		h.in(uacAddr, request("OPTIONS", "z9hG4bKr1"+param, "r1@x", "sip:bob@127.0.0.1:5080", ""))
		h.in(uasAddr, respond(h.snd.take()[0].data, 200, "b"))
		if got := h.snd.take(); len(got) != 1 || got[0].dst != uacAddr {
			t.Errorf("%s: the request came from %v, its 200 went to %s", param, uacAddr, describe(got))
		}
	}
}

// TestSpoofedOwnSourceMadeUpStatelessBranch: a request from our own
// address whose top Via is ours with a branch of our stateless shape but
// no valid MAC is not taken for one we forwarded: never answered to
// ourselves.
func TestSpoofedOwnSourceMadeUpStatelessBranch(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) { r.Reply(404, "") }
	fake := h.core.BranchPrefix() + "00000000s0000000000000000"
	h.in(proxyAddr, strings.Replace(invite("z9hG4bKsp9", "sp9@x"), "127.0.0.1:5070;branch=z9hG4bKsp9", "127.0.0.1:5060;branch="+fake+";rport", 1))
	for _, m := range h.snd.take() {
		if m.dst == proxyAddr {
			t.Fatalf("a request spoofed from our own address was answered to ourselves: %q", firstLines([]sentMsg{m}))
		}
	}
}
