package parser

import (
	"bytes"
	"net/netip"
	"unsafe"
)

// ParseIP parses an IP literal (IPv6 with or without brackets), as a Via
// sent-by or a URI host holds it, without allocating; ok is false for a
// hostname.
func ParseIP(b []byte) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	if b[0] == '[' {
		if len(b) < 3 || b[len(b)-1] != ']' {
			return netip.Addr{}, false
		}
		b = b[1 : len(b)-1]
	}
	// A colon anywhere makes it IPv6, whose first group may hold a letter
	// (fe80::1, 2a01:4f8::1): deciding on the characters before the
	// first colon took those for hostnames.
	if bytes.IndexByte(b, ':') < 0 {
		for _, ch := range b {
			if (ch < '0' || ch > '9') && ch != '.' {
				return netip.Addr{}, false
			}
		}
		var a [4]byte
		k, n, digits := 0, 0, 0
		for _, ch := range b {
			if ch == '.' {
				if digits == 0 || k == 3 {
					return netip.Addr{}, false
				}
				a[k] = byte(n)
				k, n, digits = k+1, 0, 0
				continue
			}
			n = n*10 + int(ch-'0')
			digits++
			if n > 255 || digits > 3 {
				return netip.Addr{}, false
			}
		}
		if k != 3 || digits == 0 {
			return netip.Addr{}, false
		}
		a[3] = byte(n)
		return netip.AddrFrom4(a), true
	}
	for _, ch := range b {
		if !(ch == ':' || ch == '.' || ch >= '0' && ch <= '9' || ch|0x20 >= 'a' && ch|0x20 <= 'f') {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a, true
}
