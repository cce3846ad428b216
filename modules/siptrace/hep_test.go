package siptrace

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"switchboard/transport"
)

// unhex reads hex digits, ignoring spaces, newlines and // comments.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "//")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendHEP3HandWorked: an OPTIONS from 192.0.2.1:5060 to
// 198.51.100.2:5080 over UDP, encoded by hand from the HEP3 rev 12 chunk
// table, byte by byte.
func TestAppendHEP3HandWorked(t *testing.T) {
	payload := "OPTIONS sip:x SIP/2.0\r\n\r\n" // 25 bytes
	r := Record{
		Proto:    transport.UDP,
		Src:      netip.MustParseAddrPort("192.0.2.1:5060"),
		Dst:      netip.MustParseAddrPort("198.51.100.2:5080"),
		Sec:      1600000000, // 0x5f5e1000
		Usec:     123456,     // 0x0001e240
		NodeID:   2001,       // 0x000007d1
		Password: []byte("pw"),
		CallID:   []byte("ab@c"),
		Payload:  []byte(payload),
	}
	want := unhex(t, `
		48455033 008e            // "HEP3", total length 142
		0000 0001 0007 02        // IP family: IPv4
		0000 0002 0007 11        // IP protocol: UDP (17)
		0000 0003 000a c0000201  // source IPv4 192.0.2.1
		0000 0004 000a c6336402  // destination IPv4 198.51.100.2
		0000 0007 0008 13c4      // source port 5060
		0000 0008 0008 13d8      // destination port 5080
		0000 0009 000a 5f5e1000  // seconds
		0000 000a 000a 0001e240  // microseconds
		0000 000b 0007 01        // protocol type: SIP
		0000 000c 000a 000007d1  // capture agent id 2001
		0000 000e 0008 7077      // auth key "pw"
		0000 0011 000a 61624063  // correlation id "ab@c"
		0000 000f 001f           // payload, 6 + 25
	`)
	want = append(want, payload...)
	got, err := AppendHEP3([]byte("xx"), &r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:2]) != "xx" || !bytes.Equal(got[2:], want) {
		t.Fatalf("encoded\n%s\nwant\n%s", hex.Dump(got[2:]), hex.Dump(want))
	}
	var back Record
	if err := ParseHEP3(got[2:], &back); err != nil {
		t.Fatal(err)
	}
	if back.Src != r.Src || back.Dst != r.Dst || back.Proto != r.Proto || back.Sec != r.Sec || back.Usec != r.Usec ||
		back.NodeID != r.NodeID || string(back.Password) != "pw" || string(back.CallID) != "ab@c" || string(back.Payload) != payload {
		t.Fatalf("decoded %+v", back)
	}
}

// TestAppendHEP3IPv6TCP: a TLS message between IPv6 addresses goes as
// family 10, IP protocol TCP, 16-byte addresses; no password and no
// Call-ID leave their chunks out; an IPv4-mapped address with an IPv6 one
// is sent as IPv6.
func TestAppendHEP3IPv6TCP(t *testing.T) {
	r := Record{
		Proto:   transport.TLS,
		Src:     netip.MustParseAddrPort("[2001:db8::1]:5061"),
		Dst:     netip.MustParseAddrPort("[::ffff:192.0.2.9]:40000"),
		Payload: []byte("SIP/2.0 200 OK\r\n\r\n"),
	}
	got, err := AppendHEP3(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	if want := 6 + 7 + 7 + 22 + 22 + 8 + 8 + 10 + 10 + 7 + 10 + 6 + len(r.Payload); len(got) != want || int(got[4])<<8|int(got[5]) != want {
		t.Fatalf("length %d (header %d), want %d", len(got), int(got[4])<<8|int(got[5]), want)
	}
	if !bytes.Contains(got, unhex(t, "0000 0001 0007 0a 0000 0002 0007 06 0000 0005 0016 20010db8000000000000000000000001")) {
		t.Fatalf("family, protocol or source address wrong:\n%s", hex.Dump(got))
	}
	if !bytes.Contains(got, unhex(t, "0000 0006 0016 00000000000000000000ffffc0000209")) {
		t.Fatalf("destination address wrong:\n%s", hex.Dump(got))
	}
	if bytes.Contains(got, unhex(t, "0000 000e")) || bytes.Contains(got, unhex(t, "0000 0011")) {
		t.Fatalf("empty password or Call-ID sent as a chunk:\n%s", hex.Dump(got))
	}
	var back Record
	if err := ParseHEP3(got, &back); err != nil {
		t.Fatal(err)
	}
	if back.Proto != transport.TCP || back.Src != r.Src || back.Dst.Port() != 40000 {
		t.Fatalf("decoded %+v", back)
	}
}

// TestAppendHEP3TooLarge: a record past the 16-bit length is refused and
// dst is left as it was.
func TestAppendHEP3TooLarge(t *testing.T) {
	// IPv4 without password and Call-ID: 99 bytes of header and chunks.
	r := Record{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: make([]byte, 65535-99+1)}
	dst := []byte("keep")
	out, err := AppendHEP3(dst, &r)
	if err != ErrTooLarge || string(out) != "keep" {
		t.Fatalf("err %v, dst %q", err, out[:min(len(out), 8)])
	}
	r.Payload = r.Payload[:65535-99]
	if out, err := AppendHEP3(nil, &r); err != nil || len(out) != 65535 {
		t.Fatalf("the largest payload that fits: %d bytes, %v", len(out), err)
	}
}

// TestAppendHEP3NoAllocs: encoding into a buffer with room allocates
// nothing.
func TestAppendHEP3NoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	r := Record{
		Proto: transport.UDP, Src: netip.MustParseAddrPort("192.0.2.1:5060"), Dst: netip.MustParseAddrPort("[2001:db8::2]:5060"),
		Password: []byte("secret"), CallID: []byte("abc@host"), Payload: bytes.Repeat([]byte("x"), 1200),
	}
	buf := make([]byte, 0, maxHEP)
	if n := testing.AllocsPerRun(1000, func() { buf, _ = AppendHEP3(buf[:0], &r) }); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

func TestParseHEP3Rejects(t *testing.T) {
	good, _ := AppendHEP3(nil, &Record{Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"), Payload: []byte("x")})
	var r Record
	for name, b := range map[string][]byte{
		"empty":          nil,
		"not HEP3":       append([]byte("HEP2"), good[4:]...),
		"length too big": append(append([]byte(nil), good[:4]...), append([]byte{0xff, 0xff}, good[6:]...)...),
		"cut chunk":      append(append([]byte(nil), good[:4]...), append([]byte{0, 9}, good[6:9]...)...),
	} {
		if ParseHEP3(b, &r) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
