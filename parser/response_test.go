package parser

import (
	"net/netip"
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

// TestResponseReceivedRPort: a response built for a request whose source is
// known carries received and rport on its top Via, as a relayed response
// would (RFC 3261 §18.2.1, RFC 3581), so a client behind NAT learns its
// public address from a 401 or a registrar's 200 too; the other Vias are
// copied as they are.
func TestResponseReceivedRPort(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.7:40123")
	cases := []struct {
		name, via string
		force     bool
		want      string
	}{
		{"bare rport", "SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK1",
			false, "SIP/2.0/UDP 192.168.1.10:5060;rport=40123;branch=z9hG4bK1;received=203.0.113.7"},
		{"rport last", "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK1;rport",
			false, "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK1;rport=40123;received=203.0.113.7"},
		{"no rport, other host", "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK1",
			false, "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK1;received=203.0.113.7"},
		{"no rport, same host", "SIP/2.0/UDP 203.0.113.7:5070;branch=z9hG4bK1",
			false, "SIP/2.0/UDP 203.0.113.7:5070;branch=z9hG4bK1"},
		{"same host with rport", "SIP/2.0/UDP 203.0.113.7;rport;branch=z9hG4bK1",
			false, "SIP/2.0/UDP 203.0.113.7;rport=40123;branch=z9hG4bK1;received=203.0.113.7"},
		{"hostname", "SIP/2.0/TCP phone.example.com;branch=z9hG4bK1",
			false, "SIP/2.0/TCP phone.example.com;branch=z9hG4bK1;received=203.0.113.7"},
		{"forged received and rport values replaced", "SIP/2.0/UDP 192.168.1.10;received=198.51.100.1;rport=9;branch=z9hG4bK1",
			false, "SIP/2.0/UDP 192.168.1.10;received=203.0.113.7;rport=40123;branch=z9hG4bK1"},
		{"force_rport", "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK1",
			true, "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK1;rport=40123;received=203.0.113.7"},
		{"several via-parms on the line", "SIP/2.0/UDP 192.168.1.10;rport;branch=z9hG4bK1 , SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2",
			false, "SIP/2.0/UDP 192.168.1.10;rport=40123;branch=z9hG4bK1;received=203.0.113.7 , SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2"},
	}
	for _, c := range cases {
		in := "REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: " + c.via + "\r\n" +
			"Via: SIP/2.0/UDP 192.168.1.11;rport;branch=z9hG4bK0\r\n" +
			"From: <sip:a@example.com>;tag=f\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
		m := parseOrDie(t, []byte(in))
		m.SetSource(src, c.force)
		out := AppendResponse(nil, m, 401, nil, nil)
		r := parseOrDie(t, out)
		got := vias(r)
		want := strings.Split(c.want, " , ")
		if got[0] != want[0] || (len(want) == 2 && got[1] != want[1]) {
			t.Errorf("%s: top Via %q, want %q\n%s", c.name, got, c.want, out)
		}
		if last := got[len(got)-1]; last != "SIP/2.0/UDP 192.168.1.11;rport;branch=z9hG4bK0" {
			t.Errorf("%s: second Via line changed: %q", c.name, last)
		}
		// Without a source nothing changes, and Parse forgets the source.
		m = parseOrDie(t, []byte(in))
		if got := vias(parseOrDie(t, AppendResponse(nil, m, 401, nil, nil)))[0]; got != strings.Split(c.via, " , ")[0] {
			t.Errorf("%s: without a source %q", c.name, got)
		}
	}
}

func TestResponseReceivedAllocs(t *testing.T) {
	in := []byte("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10;rport;branch=z9hG4bK1\r\n" +
		"From: <sip:a@example.com>;tag=f\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
	var m Message
	if err := m.Parse(in); err != nil {
		t.Fatal(err)
	}
	m.SetSource(netip.MustParseAddrPort("[2001:db8::1]:5062"), false)
	buf := make([]byte, 0, 1024)
	assertNoAllocs(t, "AppendResponse with received and rport", func() { buf = AppendResponse(buf[:0], &m, 401, nil, nil) })
	if !strings.Contains(string(buf), ";rport=5062;branch=z9hG4bK1;received=2001:db8::1\r\n") {
		t.Errorf("IPv6 source:\n%s", buf)
	}
}
