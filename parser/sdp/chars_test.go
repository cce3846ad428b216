package sdp

import (
	"bytes"
	"net/netip"
	"testing"
)

// checkAddr compares ParseAddr with net/netip on b.
func checkAddr(t *testing.T, b []byte) {
	t.Helper()
	if bytes.IndexByte(b, '%') >= 0 {
		return // zones: netip takes them, SDP has none
	}
	got, ok := ParseAddr(b)
	want, err := netip.ParseAddr(string(b))
	if ok != (err == nil) || got != want {
		t.Fatalf("ParseAddr(%q) = %v %v, netip: %v %v", b, got, ok, want, err)
	}
	if validIPv4(b) != (ok && got.Is4()) || validIPv6(b) != (ok && !got.Is4()) {
		t.Fatalf("validIPv4/validIPv6(%q) disagree with ParseAddr", b)
	}
}

func TestParseAddr(t *testing.T) {
	for _, s := range []string{
		"192.0.2.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04",
		"1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ", "1.2.3.-4", "1234.1.1.1",
		"::", "::1", "1::", "2001:db8::1", "2001:DB8:0:0:8:800:200C:417A", "fe80::1:2:3:4:5:6", "1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "1::2::3", ":::", ":1::", "1:",
		"12345::", "::ffff:192.0.2.1", "::192.0.2.1", "1:2:3:4:5:6:192.0.2.1", "1:2:3:4:5:6:7:192.0.2.1",
		"::ffff:192.0.2", "::ffff:01.2.3.4", "2001:db8::g", "2001:db8:::1", "", ":", "a", "host.example.com",
		"0000:0000:0000:0000:0000:0000:255.255.255.255", "00000::",
	} {
		checkAddr(t, []byte(s))
	}
	c := Connection{Address: []byte("2001:db8::7")}
	if a, ok := c.Addr(); !ok || a != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("Connection.Addr = %v %v", a, ok)
	}
	c.Address = []byte("media.example.com")
	if _, ok := c.Addr(); ok {
		t.Error("a name parsed as an address")
	}
	assertNoAllocs(t, "ParseAddr", func() {
		a, _ := ParseAddr([]byte("2001:db8::ffff:192.0.2.1"))
		sink += int(a.BitLen())
	})
}

func TestValidFQDN(t *testing.T) {
	for s, want := range map[string]bool{
		"media.example.com": true, "host_1.local": true, "6f8b2c1e-3d4a.local": true, "a": true,
		"1.2.3.4": false, "": false, ".example.com": false, "-x": false, "ex ample": false, "x/y": false, "é": false,
	} {
		if validFQDN([]byte(s)) != want {
			t.Errorf("validFQDN(%q) = %v", s, !want)
		}
	}
}
