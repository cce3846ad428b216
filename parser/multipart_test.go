package parser

import (
	"strings"
	"testing"
)

const sdpPart = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"

func TestBodyPart(t *testing.T) {
	isup := "--b1\r\nContent-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\r\n"
	for _, c := range []struct {
		name, ctype, body string
		want              string // the part found; "" none
	}{
		{"sdp first", "multipart/mixed;boundary=b1",
			"--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart + "\r\n" + isup + "--b1--\r\n", sdpPart},
		{"sdp second, quoted boundary, preamble", `Multipart/Mixed; boundary="b1"`,
			"preamble\r\n" + isup + "--b1\r\ncontent-type:Application/SDP ; x=1\r\n\r\n" + sdpPart + "\r\n--b1--", sdpPart},
		{"padding after the delimiter", "multipart/mixed;boundary=b1",
			"--b1 \t\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart + "\r\n--b1--\r\n", sdpPart},
		{"empty part first", "multipart/mixed;boundary=b1",
			"--b1\r\n--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart + "\r\n--b1--\r\n", sdpPart},
		{"no sdp part", "multipart/mixed;boundary=b1", isup + "--b1--\r\n", ""},
		{"not closed", "multipart/mixed;boundary=b1", "--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart, ""},
		{"after the close delimiter", "multipart/mixed;boundary=b1",
			isup + "--b1--\r\n--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart + "\r\n--b1--\r\n", ""},
		{"boundary inside content does not end it", "multipart/mixed;boundary=b1",
			"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0 --b1\r\n--b1--\r\n", "v=0 --b1"},
		{"not multipart", "application/sdp", sdpPart, ""},
		{"no boundary", "multipart/mixed", "--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart + "\r\n--b1--", ""},
		{"boundary too long", "multipart/mixed;boundary=" + strings.Repeat("b", 71), "", ""},
	} {
		start, end, ok := BodyPart([]byte(c.body), []byte(c.ctype), "application/sdp")
		got := ""
		if ok {
			got = c.body[start:end]
		}
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: %v %q, want %q", c.name, ok, got, c.want)
		}
	}
}

func TestBodyPartAllocatesNothing(t *testing.T) {
	body := []byte("--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpPart + "\r\n--b1--\r\n")
	ctype := []byte("multipart/mixed;boundary=b1")
	if n := testing.AllocsPerRun(100, func() { BodyPart(body, ctype, "application/sdp") }); n != 0 {
		t.Fatalf("%.0f allocations", n)
	}
}

func FuzzBodyPart(f *testing.F) {
	f.Add([]byte("--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b1--\r\n"), []byte("multipart/mixed;boundary=b1"))
	f.Add([]byte("--b1\r\n--b1\r\n\r\n--b1--"), []byte(`multipart/mixed; boundary="b1"`))
	f.Fuzz(func(t *testing.T, body, ctype []byte) {
		start, end, ok := BodyPart(body, ctype, "application/sdp")
		if ok && (start < 0 || end < start || end > len(body)) {
			t.Fatalf("part [%d, %d) of a %d-byte body", start, end, len(body))
		}
	})
}
