package parser

import (
	"net/netip"
	"testing"
)

// TestParseIP: IP literals as a Via sent-by or a URI host holds them,
// IPv6 ones whatever their first group (a letter first, fe80::1, or after
// a digit, 2a01:4f8::1: most of RIPE's 2a00::/12, every link-local and
// unique local address), with or without brackets; hostnames and
// malformed literals are not IPs.
func TestParseIP(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"[2001:db8::1]":        "2001:db8::1",
		"2001:db8::1":          "2001:db8::1",
		"[2a01:4f8::1]":        "2a01:4f8::1",
		"2a00:1450:4001::200e": "2a00:1450:4001::200e",
		"fe80::1":              "fe80::1",
		"[FD00::1]":            "fd00::1",
		"[::ffff:192.0.2.1]":   "::ffff:192.0.2.1",
		"::1":                  "::1",
		"example.com":          "",
		"a1.example.com":       "",
		"deadbeef":             "",
		"1.2.3":                "",
		"1.2.3.256":            "",
		"[2001:db8::1":         "",
		"":                     "",
		"[]":                   "",
		"[fe80::1%25eth0]":     "",
	} {
		a, ok := ParseIP([]byte(in))
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("ParseIP(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if a, _ := ParseIP([]byte("[2a01:4f8::1]")); a != netip.MustParseAddr("2a01:4f8::1") {
		t.Errorf("ParseIP: %v", a)
	}
}
