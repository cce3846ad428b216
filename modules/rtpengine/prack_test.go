package rtpengine

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
)

// Offers and answers with reliable provisional responses (RFC 3262 §5,
// RFC 6337 §2.1): the SDP of a PRACK answers the offer of the reliable
// provisional it acknowledges when that one carried an offer (the INVITE
// had none); otherwise it is a new offer, answered in the 2xx to the
// PRACK. An UPDATE's SDP is an offer, answered in its 2xx.

// A second offer of the caller's and the callee's answer to it.
const prackOfferSDP = "v=0\r\no=alice 1 2 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 6002 RTP/AVP 8\r\n"
const prackAnswerSDP = "v=0\r\no=bob 1 2 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 7002 RTP/AVP 8\r\n"

// inDialog builds a request of the caller's in the (early) dialog of inv
// (built by routetest.Request, without a body): method, CSeq n, the
// callee's tag, a branch of its own, extra header lines, and body as its
// SDP ("": none).
func inDialog(inv, method string, n int, toTag, extra, body string) string {
	r := replaceAll(inv, "INVITE sip:", method+" sip:", "CSeq: 1 INVITE", "CSeq: "+itoa(n)+" "+method,
		"To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag="+toTag,
		"branch=z9hG4bK.t", "branch=z9hG4bK."+strings.ToLower(method)+itoa(n)+"-",
		"Content-Length: 0\r\n", extra+"Content-Length: 0\r\n")
	if body != "" {
		r = withSDP(r, body)
	}
	return r
}

// reliable makes a provisional response reliable (RFC 3262): Require:
// 100rel and RSeq rseq.
func reliable(resp string, rseq int) string {
	return strings.Replace(resp, "Contact:", "Require: 100rel\r\nRSeq: "+itoa(rseq)+"\r\nContact:", 1)
}

func wantCommand(t *testing.T, c map[string]string, what, cmd, from, to, sdp string) {
	t.Helper()
	if c["command"] != cmd || c["from-tag"] != from || c["to-tag"] != to || c["sdp"] != sdp {
		t.Fatalf("%s: %s from-tag %q to-tag %q sdp %q, want %s from-tag %q to-tag %q sdp %q",
			what, c["command"], c["from-tag"], c["to-tag"], c["sdp"], cmd, from, to, sdp)
	}
}

func wantBody(t *testing.T, what string, s routetest.Sent, port string) {
	t.Helper()
	if !strings.HasSuffix(s.Data, "c=IN IP4 127.0.0.99\r\nt=0 0\r\nm=audio "+port+" RTP/AVP 0\r\n") {
		t.Fatalf("%s relayed without rtpengine's SDP (port %s):\n%s", what, port, s.Data)
	}
}

// TestPrackCarriesNewOffer: the INVITE offers, the callee's reliable 183
// answers; the caller's PRACK then carries a new offer. rtpengine gets it
// as an offer from the caller (from-tag the caller's, to-tag the
// callee's) and the PRACK goes on with rtpengine's SDP; the 200 to the
// PRACK carries the callee's answer, which rtpengine gets as the answer
// (the same tags) while the 200 is held, and the caller gets rtpengine's
// SDP.
func TestPrackCarriesNewOffer(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	_, h := newEngine(t, s)

	base := routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "Supported: 100rel\r\n")
	h.Receive("127.0.0.1:5070", withSDP(base, offerSDP))
	fwd := waitSent(t, h, "INVITE ")
	caller := waitCommand(t, peer, 1, "offer")["from-tag"]

	h.Receive("127.0.0.1:5080", reliable(respond(fwd.Data, "183", "Session Progress", "b1", answerSDP), 1))
	wantBody(t, "183", waitSent(t, h, "SIP/2.0 183"), "40002")
	wantCommand(t, waitCommand(t, peer, 2, "answer"), "183's answer", "answer", caller, "b1", answerSDP)

	h.Receive("127.0.0.1:5070", inDialog(base, "PRACK", 2, "b1", "RAck: 1 1 INVITE\r\n", prackOfferSDP))
	prack := waitSent(t, h, "PRACK ")
	wantBody(t, "PRACK", prack, "40000")
	wantCommand(t, waitCommand(t, peer, 3, "offer"), "PRACK's offer", "offer", caller, "b1", prackOfferSDP)

	h.Receive("127.0.0.1:5080", respond(prack.Data, "200", "OK", "b1", prackAnswerSDP))
	up := waitSent(t, h, "SIP/2.0 200 OK")
	if !strings.Contains(up.Data, "CSeq: 2 PRACK") {
		t.Fatalf("not the PRACK's 200:\n%s", up.Data)
	}
	wantBody(t, "200 to the PRACK", up, "40002")
	wantCommand(t, waitCommand(t, peer, 4, "answer"), "PRACK 200's answer", "answer", caller, "b1", prackAnswerSDP)

}

// TestPrackAnswersProvisionalOffer: the INVITE has no SDP; the callee's
// first reliable 183 carries the offer (rtpengine: an offer from the
// callee), and the caller's PRACK of it the answer (rtpengine: the answer,
// the same tags). A later reliable 180 carries no SDP, and the caller's
// PRACK of it carries an offer: an offer from the caller, answered in the
// PRACK's 200. A PRACK naming the 183 again (a made-up one, or one of a
// retransmission of the 183) answers nothing: its SDP is an offer too.
func TestPrackAnswersProvisionalOffer(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	_, h := newEngine(t, s)

	base := routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "Supported: 100rel\r\n")
	h.Receive("127.0.0.1:5070", base)
	fwd := waitSent(t, h, "INVITE ")
	caller := strings.TrimSpace(strings.SplitN(strings.SplitN(base, ";tag=", 2)[1], "\r\n", 2)[0])

	r183 := reliable(respond(fwd.Data, "183", "Session Progress", "b1", answerSDP), 7)
	h.Receive("127.0.0.1:5080", r183)
	wantBody(t, "183", waitSent(t, h, "SIP/2.0 183"), "40000")
	wantCommand(t, waitCommand(t, peer, 1, "offer"), "183's offer", "offer", "b1", caller, answerSDP)

	h.Receive("127.0.0.1:5070", inDialog(base, "PRACK", 2, "b1", "RAck: 7 1 INVITE\r\n", offerSDP))
	prack := waitSent(t, h, "PRACK ")
	wantBody(t, "PRACK of the 183", prack, "40002")
	wantCommand(t, waitCommand(t, peer, 2, "answer"), "PRACK's answer", "answer", "b1", caller, offerSDP)
	h.Receive("127.0.0.1:5080", respond(prack.Data, "200", "OK", "b1", ""))
	waitSent(t, h, "SIP/2.0 200 OK")

	// The 183 again, from the callee's retransmission timer: it is
	// offered to rtpengine again, as before, but it reopens nothing.
	h.Receive("127.0.0.1:5080", r183)
	waitSent(t, h, "SIP/2.0 183")
	waitCommand(t, peer, 3, "offer")

	h.Receive("127.0.0.1:5080", reliable(respond(fwd.Data, "180", "Ringing", "b1", ""), 8))
	waitSent(t, h, "SIP/2.0 180")
	h.Receive("127.0.0.1:5070", inDialog(base, "PRACK", 3, "b1", "RAck: 8 1 INVITE\r\n", prackOfferSDP))
	prack = waitSent(t, h, "PRACK ")
	wantBody(t, "PRACK of the 180", prack, "40000")
	wantCommand(t, waitCommand(t, peer, 4, "offer"), "PRACK's offer", "offer", caller, "b1", prackOfferSDP)
	h.Receive("127.0.0.1:5080", respond(prack.Data, "200", "OK", "b1", prackAnswerSDP))
	wantBody(t, "200 to the PRACK", waitSent(t, h, "SIP/2.0 200 OK"), "40002")
	wantCommand(t, waitCommand(t, peer, 5, "answer"), "PRACK 200's answer", "answer", caller, "b1", prackAnswerSDP)

	h.Receive("127.0.0.1:5070", inDialog(base, "PRACK", 4, "b1", "RAck: 7 1 INVITE\r\n", offerSDP))
	wantBody(t, "second PRACK of the 183", waitSent(t, h, "PRACK "), "40000")
	wantCommand(t, waitCommand(t, peer, 6, "offer"), "second PRACK of the 183", "offer", caller, "b1", offerSDP)
}

// TestUpdateOfferAnsweredIn2xx: in a call, the caller's UPDATE carries an
// offer (rtpengine: an offer, from-tag the caller's) and the UPDATE goes
// on with rtpengine's SDP; its 200 carries the answer, which rtpengine
// gets while the 200 is held, and the caller gets rtpengine's SDP. The
// callee's UPDATE the same way round: from-tag the callee's.
func TestUpdateOfferAnsweredIn2xx(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	_, h := newEngine(t, s)

	base := routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "")
	h.Receive("127.0.0.1:5070", withSDP(base, offerSDP))
	fwd := waitSent(t, h, "INVITE ")
	caller := waitCommand(t, peer, 1, "offer")["from-tag"]
	h.Receive("127.0.0.1:5080", respond(fwd.Data, "200", "OK", "b1", answerSDP))
	waitSent(t, h, "SIP/2.0 200 OK")
	waitCommand(t, peer, 2, "answer")

	h.Receive("127.0.0.1:5070", inDialog(base, "UPDATE", 2, "b1", "", prackOfferSDP))
	update := waitSent(t, h, "UPDATE ")
	wantBody(t, "UPDATE", update, "40000")
	wantCommand(t, waitCommand(t, peer, 3, "offer"), "UPDATE's offer", "offer", caller, "b1", prackOfferSDP)
	h.Receive("127.0.0.1:5080", respond(update.Data, "200", "OK", "b1", prackAnswerSDP))
	up := waitSent(t, h, "SIP/2.0 200 OK")
	if !strings.Contains(up.Data, "CSeq: 2 UPDATE") {
		t.Fatalf("not the UPDATE's 200:\n%s", up.Data)
	}
	wantBody(t, "200 to the UPDATE", up, "40002")
	wantCommand(t, waitCommand(t, peer, 4, "answer"), "UPDATE 200's answer", "answer", caller, "b1", prackAnswerSDP)

	// The callee's UPDATE, to the caller's contact.
	callee := replaceAll(inDialog(base, "UPDATE", 1, "b1", "", ""), "UPDATE sip:bob@127.0.0.1:5080", "UPDATE sip:alice@127.0.0.1:5070",
		"From: <sip:alice@example.com>;tag="+caller, "From: <sip:bob@example.com>;tag=b1",
		"To: <sip:bob@example.com>;tag=b1", "To: <sip:alice@example.com>;tag="+caller,
		"Via: SIP/2.0/UDP 127.0.0.1:5070", "Via: SIP/2.0/UDP 127.0.0.1:5080")
	h.Receive("127.0.0.1:5080", withSDP(callee, answerSDP))
	update = waitSent(t, h, "UPDATE ")
	wantBody(t, "callee's UPDATE", update, "40000")
	wantCommand(t, waitCommand(t, peer, 5, "offer"), "callee's UPDATE's offer", "offer", "b1", caller, answerSDP)
	h.Receive("127.0.0.1:5070", respond(update.Data, "200", "OK", caller, offerSDP))
	wantBody(t, "200 to the callee's UPDATE", waitSent(t, h, "SIP/2.0 200 OK"), "40002")
	wantCommand(t, waitCommand(t, peer, 6, "answer"), "callee's UPDATE 200's answer", "answer", "b1", caller, offerSDP)
}

// TestParseRAck: RAck as RFC 3262 §7.2 writes it, and forged ones, which
// answer nothing (the PRACK's SDP is then an offer).
func TestParseRAck(t *testing.T) {
	for in, want := range map[string][2]uint32{"1 1 INVITE": {1, 1}, " 7\t314159  INVITE ": {7, 314159}, "4294967295 4294967295 INVITE": {1<<32 - 1, 1<<32 - 1}} {
		r, c, m, ok := parseRAck([]byte(in))
		if !ok || r != want[0] || c != want[1] || string(m) != "INVITE" {
			t.Errorf("%q: %d %d %q %v", in, r, c, m, ok)
		}
	}
	for _, in := range []string{"", "1 1", "1 1 INVITE x", "x 1 INVITE", "1 -1 INVITE", "4294967296 1 INVITE", "01234567890 1 INVITE", "1,1 INVITE"} {
		if _, _, _, ok := parseRAck([]byte(in)); ok {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestProvisionalOffersBounded: a callee answering one INVITE with reliable
// 1xx of ever new To tags fills the table to maxProvisionalOffers and no
// further, the newest kept; one past the TTL is forgotten.
func TestProvisionalOffersBounded(t *testing.T) {
	var p provisionalOffers
	now := time.Now().UnixMilli()
	for i := 0; i <= maxProvisionalOffers; i++ {
		p.remember(offerKey([]byte("c"), []byte("a"), []byte(itoa(i+1))), 1, 1, now)
	}
	if len(p.m) != maxProvisionalOffers {
		t.Fatalf("%d offers kept", len(p.m))
	}
	if _, ok := p.m[offerKey([]byte("c"), []byte("a"), []byte(itoa(maxProvisionalOffers+1)))]; !ok {
		t.Fatal("the newest offer was not kept")
	}
	old := offerKey([]byte("c"), []byte("a"), []byte("old"))
	p.remember(old, 1, 1, now-provisionalOfferTTL.Milliseconds()) // in place of another
	p.sweep()
	if _, ok := p.m[old]; ok || len(p.m) != maxProvisionalOffers-1 {
		t.Fatalf("expired offer kept (%d)", len(p.m))
	}
}

// TestProvisionalOffersSizeBounded: an offer is remembered in a fixed
// size whatever its Call-ID and tags. The key was their copy: a caller
// with 60 KB Call-IDs to a callee answering reliable 183s with SDP under
// ever new To tags had the table keep up to 65,536 of them, gigabytes.
func TestProvisionalOffersSizeBounded(t *testing.T) {
	var p provisionalOffers
	callID := []byte(strings.Repeat("c", 32<<10))
	now := time.Now().UnixMilli()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 1024
	for i := 0; i < n; i++ {
		p.remember(offerKey(callID, []byte("a"), []byte(itoa(i+1))), 1, 1, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Fatalf("%d offers with 32 KB Call-IDs kept %d MB", n, grown>>20)
	}
	if len(p.m) != n {
		t.Fatalf("%d offers kept, want %d", len(p.m), n)
	}
	runtime.KeepAlive(&p)
}

// TestProvisionalOffersFullIsCheap: once the table is full of offers
// neither expired nor answered (a callee sending reliable 183s with SDP
// under ever new To tags keeps it so), each new offer scanned all 65,536
// under the table's lock, which every PRACK and reliable 1xx takes: 2,000
// reliable 183s cost seconds of CPU. A full table is scanned at most once
// a second; in between a new offer takes the place of any one.
func TestProvisionalOffersFullIsCheap(t *testing.T) {
	var p provisionalOffers
	now := time.Now().UnixMilli()
	for i := 0; i < maxProvisionalOffers; i++ {
		p.remember(offerKey([]byte("c"), []byte("a"), []byte(itoa(i+1))), 1, 1, now)
	}
	start := time.Now()
	for i := 0; i < 2000; i++ {
		p.remember(offerKey([]byte("d"), []byte("a"), []byte(itoa(i+1))), 1, 1, now)
	}
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Fatalf("2,000 offers into a full table took %v", took)
	}
	if len(p.m) != maxProvisionalOffers {
		t.Fatalf("%d offers kept", len(p.m))
	}
	if _, ok := p.m[offerKey([]byte("d"), []byte("a"), []byte(itoa(2000)))]; !ok {
		t.Fatal("the newest offer was not kept")
	}
}
