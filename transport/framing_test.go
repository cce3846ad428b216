package transport

import (
	"strings"
	"testing"
)

func TestFrameMessage(t *testing.T) {
	body := "v=0\r\n"
	cases := []struct {
		in   string
		max  int
		want int
		err  bool
	}{
		{"INVITE sip:a SIP/2.0\r\nContent-Length: 5\r\n\r\n" + body, 1000, 48, false},
		{"INVITE sip:a SIP/2.0\r\nl:5\r\n\r\n" + body + "NEXT", 1000, 34, false},
		{"INVITE sip:a SIP/2.0\r\nCONTENT-length \t: 5 \r\n\r\n" + body, 1000, 51, false},
		{"INVITE sip:a SIP/2.0\r\nL: 0\r\n\r\n", 1000, 30, false},
		{"INVITE sip:a SIP/2.0\r\nContent-Length: 5\r\n\r\nv=", 1000, 0, false},
		{"INVITE sip:a SIP/2.0\r\nContent-Length: 5\r\n", 1000, 0, false},
		{"INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\n", 1000, 0, true},
		{"INVITE sip:a SIP/2.0\r\nX-Content-Length: 3\r\n\r\n", 1000, 0, true},
		// A folded header line that mentions the name is not the header.
		{"INVITE sip:a SIP/2.0\r\nSubject: a\r\n l: 3\r\nl: 0\r\n\r\n", 1000, 49, false},
		{"INVITE sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n", 1000, 0, true},
		{"INVITE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", 1000, 0, true},
		{"INVITE sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab", 1000, 0, true},
		{"INVITE sip:a SIP/2.0\r\nContent-Length: 9999999999\r\n\r\n", 1000, 0, true},
		{"INVITE sip:a SIP/2.0\r\nContent-Length: 100\r\n\r\n", 100, 0, true},
		{"INVITE sip:a SIP/2.0\r\nVia: " + strings.Repeat("x", 100), 100, 0, true},
		{"INVITE sip:a SIP/2.0\r\nVia: " + strings.Repeat("x", 50), 100, 0, false},
	}
	for _, c := range cases {
		skip, n, err := frameMessage([]byte(c.in), c.max)
		if skip != 0 || n != c.want || (err != nil) != c.err {
			t.Errorf("%q: got %d+%d, %v; want %d, error %v", c.in, skip, n, err, c.want, c.err)
		}
	}
}

func TestSkipKeepalives(t *testing.T) {
	cases := []struct {
		in             string
		consumed, ping int
		need           bool
	}{
		{"", 0, 0, false},
		{"INVITE", 0, 0, false},
		{"\r\n\r\n", 4, 1, false},
		{"\r\n\r\n\r\n\r\nINVITE", 8, 2, false},
		{"\r\nINVITE", 2, 0, false},
		{"\r\n", 0, 0, true},
		{"\r\n\r", 0, 0, true},
		{"\r", 0, 0, true},
		{"\r\n\r\n\r\n", 4, 1, true},
		{"\r\nI", 2, 0, false},
		{"\rX", 1, 0, false},            // a stray CR dropped
		{"\n\nBYE", 2, 0, false},        // stray LFs dropped
		{"\n\r\r\r\n\r\n", 7, 1, false}, // junk, then a ping
		{"\n\r\r", 2, 0, true},          // junk, then maybe a ping's start
	}
	for _, c := range cases {
		n, p, need := skipKeepalives([]byte(c.in))
		if n != c.consumed || p != c.ping || need != c.need {
			t.Errorf("%q: got %d %d %v, want %d %d %v", c.in, n, p, need, c.consumed, c.ping, c.need)
		}
	}
}

func BenchmarkFrameMessage(b *testing.B) {
	msg := []byte("INVITE sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n" +
		"Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\n" +
		"From: Alice <sip:alice@example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\n" +
		"Contact: <sip:alice@192.0.2.1>\r\nContent-Type: application/sdp\r\n" +
		"Content-Length: 4\r\n\r\nv=0\n")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, n, err := frameMessage(msg, 65535); n != len(msg) || err != nil {
			b.Fatal(n, err)
		}
	}
}
