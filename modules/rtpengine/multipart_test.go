package rtpengine

import (
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
)

// TestMultipartOffer: an INVITE from a SIP-I trunk, its SDP beside ISUP
// in a multipart/mixed body: the SDP part is offered, and the relayed
// INVITE carries the same multipart body with rtpengine's SDP in that
// part and the ISUP part as it came; the 200's SDP is the answer.
func TestMultipartOffer(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	_, h := newEngine(t, s)
	isup := "--b1\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n\x01\x00\r\n"
	body := "--b1\r\nContent-Type: application/sdp\r\n\r\n" + offerSDP + "\r\n" + isup + "--b1--\r\n"
	inv := strings.Replace(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), "Content-Length: 0\r\n",
		"Content-Type: multipart/mixed;boundary=b1\r\nContent-Length: "+itoa(len(body))+"\r\n", 1)
	h.Receive("127.0.0.1:5070", inv+body)
	if c := waitCommand(t, peer, 1, "offer"); c["sdp"] != offerSDP {
		t.Fatalf("offered:\n%s", c["sdp"])
	}
	fwd := waitSent(t, h, "INVITE ").Data
	head, got, _ := strings.Cut(fwd, "\r\n\r\n")
	want := "--b1\r\nContent-Type: application/sdp\r\n\r\n"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "c=IN IP4 127.0.0.99\r\n") || !strings.HasSuffix(got, "\r\n"+isup+"--b1--\r\n") ||
		!strings.Contains(head, "Content-Type: multipart/mixed;boundary=b1") || !strings.HasSuffix(head, "\r\nContent-Length: "+itoa(len(got))) {
		t.Fatalf("relayed INVITE:\n%s", fwd)
	}
	h.Receive("127.0.0.1:5080", respond(fwd, "200", "OK", "b1", answerSDP))
	waitSent(t, h, "SIP/2.0 200 OK")
	if c := waitCommand(t, peer, 2, "answer"); c["sdp"] != answerSDP {
		t.Fatalf("answered:\n%s", c["sdp"])
	}
}
