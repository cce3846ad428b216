package parser

import (
	"strings"
	"testing"
)

func TestAppendResponse(t *testing.T) {
	in := "INVITE sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p2.example.com;branch=z9hG4bK2\r\n" +
		"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3;received=192.0.2.9\r\n" +
		"Max-Forwards: 69\r\n" +
		"f: \"A\" <sip:alice@example.com>;tag=ft\r\n" +
		"t: <sip:bob@example.com>\r\n" +
		"i: resp-1\r\n" +
		"CSeq: 7 INVITE\r\n" +
		"Timestamp: 54\r\n" +
		"Content-Length: 0\r\n\r\n"
	m := parseOrDie(t, []byte(in))
	out := AppendResponse(make([]byte, 0, 1024), m, 180, nil, []byte("tt"))
	r := parseOrDie(t, out)
	if r.StatusCode() != 180 || string(r.Reason()) != "Ringing" {
		t.Errorf("status line %d %q", r.StatusCode(), r.Reason())
	}
	if got := strings.Join(vias(r), "|"); got != "SIP/2.0/UDP p1.example.com;branch=z9hG4bK1|SIP/2.0/UDP p2.example.com;branch=z9hG4bK2|SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3;received=192.0.2.9" {
		t.Errorf("vias %s", got)
	}
	if string(r.FromTag()) != "ft" || string(r.ToTag()) != "tt" || string(r.CallID()) != "resp-1" || r.CSeq().Num != 7 || r.CSeq().Method != MethodInvite {
		t.Errorf("headers:\n%s", out)
	}
	if r.Has(HdrTimestamp) || r.Has(HdrMaxForwards) {
		t.Errorf("copied too much:\n%s", out)
	}
	if n, ok := r.ContentLength(); !ok || n != 0 {
		t.Error("Content-Length")
	}
	// a To that has a tag keeps it; 100 copies Timestamp; extra headers
	in2 := strings.Replace(in, "t: <sip:bob@example.com>", "t: <sip:bob@example.com>;tag=old", 1)
	m = parseOrDie(t, []byte(in2))
	out = AppendResponseHeaders(nil, m, 100, []byte("Trying"), []byte("new"), []byte("Server: sb\r\n"))
	r = parseOrDie(t, out)
	if string(r.ToTag()) != "old" || string(r.Get(HdrTimestamp)) != "54" || string(r.Server()) != "sb" {
		t.Errorf("100:\n%s", out)
	}
	if StatusText(483) != "Too Many Hops" || StatusText(799) != "" {
		t.Error("StatusText")
	}
}
