package sdp

import "net/netip"

// Character classes as 256-entry tables, one load and one test per byte.
var (
	tokenTab [256]bool // RFC 8866 token: visible ASCII except "(),/:;<=>?@[\]{}" and '"'
	hostTab  [256]bool // IPv4, IPv6 and FQDN characters: alphanum "-" "." ":" "_"
	iceTab   [256]bool // RFC 8839 ice-char: alphanum "+" "/"
	hexTab   [256]bool
	digitTab [256]bool
)

func init() {
	for c := 0; c < 256; c++ {
		alnum := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		digitTab[c] = c >= '0' && c <= '9'
		hexTab[c] = digitTab[c] || (c|0x20 >= 'a' && c|0x20 <= 'f')
		hostTab[c] = alnum
		iceTab[c] = alnum
		tokenTab[c] = alnum
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		tokenTab[c] = true
	}
	for _, c := range []byte("-.:_") {
		hostTab[c] = true
	}
	iceTab['+'] = true
	iceTab['/'] = true
}

// all reports whether b is non-empty and every byte of it is in tab.
func all(tab *[256]bool, b []byte) bool {
	for _, c := range b {
		if !tab[c] {
			return false
		}
	}
	return len(b) > 0
}

// field returns the bounds of the next space-separated field of b at or
// after i: [s, e), e == s at the end. RFC 8866 separates fields with one
// SP; runs of SP are accepted here, since devices in the wild send them
// and a view does not care.
func field(b []byte, i int) (s, e int) {
	for i < len(b) && b[i] == ' ' {
		i++
	}
	s = i
	for i < len(b) && b[i] != ' ' {
		i++
	}
	return s, i
}

// parseUint parses a run of decimal digits no larger than max (at most
// 1<<63, so a run of 19 digits cannot overflow and a longer one is too
// large).
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	return n, n <= max
}

// parsePort parses a port number: 1 to 5 digits, at most 65535.
func parsePort(b []byte) (int, bool) {
	if len(b) > 5 {
		return 0, false
	}
	n, ok := parseUint(b, 65535)
	return int(n), ok
}

func validIPv4(b []byte) bool {
	_, ok := parseIPv4(b)
	return ok
}

// parseIPv4 parses a dotted quad: four decimal octets up to 255 without
// leading zeros (RFC 8866 IP4-address; net/netip agrees).
func parseIPv4(b []byte) (ip [4]byte, ok bool) {
	if len(b) < 7 || len(b) > 15 {
		return ip, false
	}
	k, v, digits := 0, 0, 0
	for _, c := range b {
		if c == '.' {
			if digits == 0 || k == 3 {
				return ip, false
			}
			ip[k] = byte(v)
			k++
			v, digits = 0, 0
			continue
		}
		d := int(c) - '0'
		if d < 0 || d > 9 || digits == 3 || (digits == 1 && v == 0) {
			return ip, false
		}
		v = v*10 + d
		digits++
		if v > 255 {
			return ip, false
		}
	}
	if k != 3 || digits == 0 {
		return ip, false
	}
	ip[3] = byte(v)
	return ip, true
}

func validIPv6(b []byte) bool {
	var ip [16]byte
	return parseIPv6(b, &ip)
}

// parseIPv6 parses the RFC 4291 text form into ip, which must be zero:
// groups of 1-4 hex digits, one "::" for one or more zero groups, an
// IPv4 tail. Zones are not part of SDP.
func parseIPv6(b []byte, ip *[16]byte) bool {
	if len(b) < 2 || len(b) > 45 {
		return false
	}
	i, k, ellipsis := 0, 0, -1
	if b[0] == ':' {
		if b[1] != ':' {
			return false
		}
		ellipsis, i = 0, 2
	}
	for i < len(b) {
		j, v := i, 0
		for j < len(b) && j-i < 4 && hexTab[b[j]] {
			v = v<<4 | int(unhex(b[j]))
			j++
		}
		if j < len(b) && b[j] == '.' {
			// an IPv4 tail ends the address
			a, ok := parseIPv4(b[i:])
			if !ok || k > 12 {
				return false
			}
			copy(ip[k:], a[:])
			k += 4
			break
		}
		if j == i || k == 16 || (j < len(b) && hexTab[b[j]]) {
			return false
		}
		ip[k], ip[k+1] = byte(v>>8), byte(v)
		k += 2
		i = j
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if ellipsis >= 0 {
				return false
			}
			ellipsis = k
			i++
		} else if i == len(b) {
			return false // a trailing single colon
		}
	}
	if ellipsis < 0 {
		return k == 16
	}
	if k == 16 {
		return false // "::" stands for at least one group
	}
	n := k - ellipsis
	copy(ip[16-n:], ip[ellipsis:k])
	clear(ip[ellipsis : 16-n])
	return true
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// ParseAddr parses an IPv4 or IPv6 address (a view such as
// Connection.Address or Candidate.Address) without allocating; ok is
// false for a name or anything else. An IPv4-mapped IPv6 address stays
// IPv6, as with netip.ParseAddr.
func ParseAddr(b []byte) (addr netip.Addr, ok bool) {
	if ip4, ok := parseIPv4(b); ok {
		return netip.AddrFrom4(ip4), true
	}
	var ip [16]byte
	if !parseIPv6(b, &ip) {
		return addr, false
	}
	return netip.AddrFrom16(ip), true
}

// validFQDN accepts a host name: labels of alphanumerics, "-" and "_"
// separated by dots. It is deliberately loose (SDP from the wild carries
// names like "host_1.local"); it rules out everything that is neither an
// address nor a name.
func validFQDN(b []byte) bool {
	if len(b) == 0 || len(b) > 255 || b[0] == '.' || b[0] == '-' {
		return false
	}
	letter := false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9', c == '.', c == '-':
		case (c|0x20 >= 'a' && c|0x20 <= 'z') || c == '_':
			letter = true
		default:
			return false
		}
	}
	// all digits and dots is a broken IPv4 address, not a name
	return letter
}

// validAddress checks a unicast address for an address type: IP4 takes
// an IPv4 address or a name, IP6 an IPv6 address or a name; other types
// (RFC 8866 extn-addr) take any run of host characters.
func validAddress(addrType, a []byte) bool {
	switch string(addrType) {
	case "IP4":
		return validIPv4(a) || validFQDN(a)
	case "IP6":
		return validIPv6(a) || validFQDN(a)
	}
	return all(&hostTab, a)
}
