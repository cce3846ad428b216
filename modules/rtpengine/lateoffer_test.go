package rtpengine

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
)

// ackFor builds the ACK of a 2xx to inv (same Call-ID, From, CSeq
// number; the callee's To tag; a new branch) with body as its SDP.
func ackFor(inv, toTag, branch, body string) string {
	var b strings.Builder
	for i, l := range strings.Split(inv, "\r\n") {
		low := strings.ToLower(l)
		switch {
		case i == 0:
			b.WriteString("ACK " + strings.Fields(l)[1] + " SIP/2.0\r\n")
		case strings.HasPrefix(low, "via:"):
			b.WriteString("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=" + branch + ";rport\r\n")
		case strings.HasPrefix(low, "to:"):
			if !strings.Contains(l, ";tag=") {
				l += ";tag=" + toTag
			}
			b.WriteString(l + "\r\n")
		case strings.HasPrefix(low, "cseq:"):
			b.WriteString("CSeq: " + strings.Fields(l)[1] + " ACK\r\n")
		case strings.HasPrefix(low, "from:"), strings.HasPrefix(low, "call-id:"), strings.HasPrefix(low, "max-forwards:"):
			b.WriteString(l + "\r\n")
		}
	}
	b.WriteString("Content-Type: application/sdp\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

// TestLateOffer: rtpengine_manage for a call whose INVITE has no SDP. The
// INVITE goes on untouched (no command); the callee's 200 carries the
// offer, which rtpengine gets as an offer from the callee (from-tag the
// To tag, to-tag the caller's, received-from the callee) while the 200 is
// held, and the caller gets rtpengine's SDP; the caller's ACK carries the
// answer, which rtpengine gets as the answer (the same tags), and the ACK
// is forwarded with rtpengine's SDP. A re-INVITE without SDP does the
// same with the dialog's tags. An ACK whose answer rtpengine refuses is
// still forwarded, with its own SDP (the call is up: an ACK cannot be
// refused). The BYE deletes the session.
func TestLateOffer(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	_, h := newEngine(t, s)

	inv := routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "Contact: <sip:alice@192.168.1.10:5062>\r\n")
	h.Receive("127.0.0.1:5070", inv)
	fwd := waitSent(t, h, "INVITE ")
	if !strings.HasSuffix(fwd.Data, "Content-Length: 0\r\n\r\n") || len(peer.commands()) != 0 {
		t.Fatalf("INVITE without SDP relayed as\n%s\ncommands %v", fwd.Data, peer.commands())
	}
	fromTag := strings.TrimSpace(strings.SplitN(strings.SplitN(inv, ";tag=", 2)[1], "\r\n", 2)[0])

	h.Receive("127.0.0.1:5080", respond(fwd.Data, "200", "OK", "b1", answerSDP))
	up := waitSent(t, h, "SIP/2.0 200 OK")
	if !strings.HasSuffix(up.Data, "m=audio 40000 RTP/AVP 0\r\n") {
		t.Fatalf("200 upstream:\n%s", up.Data)
	}
	offer := waitCommand(t, peer, 1, "offer")
	if offer["from-tag"] != "b1" || offer["to-tag"] != fromTag || offer["sdp"] != answerSDP || offer["received-from"] != "l3:IP49:127.0.0.1e" {
		t.Fatalf("offer of the 200: %v (caller's tag %q)", offer, fromTag)
	}

	h.Receive("127.0.0.1:5070", ackFor(inv, "b1", "z9hG4bK.ack1", offerSDP))
	ack := waitSent(t, h, "ACK ")
	if !strings.HasSuffix(ack.Data, "c=IN IP4 127.0.0.99\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n") || strings.Count(ack.Data, "Via:") != 2 {
		t.Fatalf("ACK forwarded as\n%s", ack.Data)
	}
	answer := waitCommand(t, peer, 2, "answer")
	if answer["from-tag"] != "b1" || answer["to-tag"] != fromTag || answer["sdp"] != offerSDP || answer["call-id"] != offer["call-id"] {
		t.Fatalf("answer of the ACK: %v", answer)
	}

	// A re-INVITE without SDP: the 200's offer and the ACK's answer again.
	reinv := strings.Replace(strings.Replace(inv, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1), "CSeq: 1 INVITE", "CSeq: 2 INVITE", 1)
	reinv = strings.Replace(reinv, "branch=z9hG4bK.t", "branch=z9hG4bK.re", 1)
	h.Receive("127.0.0.1:5070", reinv)
	fwd = waitSent(t, h, "INVITE ")
	h.Receive("127.0.0.1:5080", respond(fwd.Data, "200", "OK", "b1", answerSDP))
	waitSent(t, h, "SIP/2.0 200 OK")
	if c := waitCommand(t, peer, 3, "offer"); c["from-tag"] != "b1" || c["to-tag"] != fromTag {
		t.Fatalf("re-INVITE's 200 offered as %v", c)
	}
	h.Receive("127.0.0.1:5070", strings.Replace(ackFor(reinv, "b1", "z9hG4bK.ack2", offerSDP), "CSeq: 1 ACK", "CSeq: 2 ACK", 1))
	if ack := waitSent(t, h, "ACK "); !strings.Contains(ack.Data, "m=audio 40002") {
		t.Fatalf("re-INVITE's ACK forwarded as\n%s", ack.Data)
	}
	waitCommand(t, peer, 4, "answer")

	// rtpengine refuses the ACK's answer: the ACK goes on with its SDP.
	h.Receive("127.0.0.1:5070", ackFor(inv, "b1", "z9hG4bK.ack3", offerSDP+"a=refuse-me\r\n"))
	if ack := waitSent(t, h, "ACK "); !strings.HasSuffix(ack.Data, "a=refuse-me\r\n") {
		t.Fatalf("refused answer: ACK forwarded as\n%s", ack.Data)
	}

	bye := strings.Replace(strings.Replace(strings.Replace(inv, "INVITE sip:", "BYE sip:", 1), "CSeq: 1 INVITE", "CSeq: 3 BYE", 1),
		"To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1)
	h.Receive("127.0.0.1:5070", strings.Replace(bye, "branch=z9hG4bK.t", "branch=z9hG4bK.bye", 1))
	waitSent(t, h, "BYE ")
	if c := waitCommand(t, peer, 6, "delete"); c["call-id"] != offer["call-id"] {
		t.Fatalf("delete %v", c)
	}
}

// TestHeldAcksBounded: an ACK has no transaction, so the ACKs kept while
// rtpengine answers are bounded on their own: past the bound an ACK with
// SDP goes on at once with its own SDP (counted), while the one kept is
// forwarded with rtpengine's once it answers.
func TestHeldAcksBounded(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	e, h := newEngine(t, s)
	e.maxHeldAcks = 1
	inv := routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "")
	peer.delay.Store(int64(300 * time.Millisecond))
	h.Receive("127.0.0.1:5070", ackFor(inv, "b1", "z9hG4bK.held1", offerSDP))
	h.Receive("127.0.0.1:5070", ackFor(inv, "b1", "z9hG4bK.held2", offerSDP))
	first := waitSent(t, h, "ACK ")
	if !strings.HasSuffix(first.Data, offerSDP) || e.acksNotHeld.Get() != 1 {
		t.Fatalf("the ACK past the bound: not held %d, forwarded as\n%s", e.acksNotHeld.Get(), first.Data)
	}
	second := waitSent(t, h, "ACK ")
	if !strings.Contains(second.Data, "m=audio 40002") {
		t.Fatalf("the ACK kept forwarded as\n%s", second.Data)
	}
	for deadline := time.Now().Add(3 * time.Second); e.heldAcks.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d ACKs still counted as held", e.heldAcks.Load())
		}
	}
}
