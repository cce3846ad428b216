package parser

import (
	"bytes"
	"errors"
)

// Scheme is the URI scheme of a parsed URI.
type Scheme uint8

const (
	SchemeOther Scheme = iota
	SchemeSIP
	SchemeSIPS
	SchemeTel
)

func (s Scheme) String() string {
	switch s {
	case SchemeSIP:
		return "sip"
	case SchemeSIPS:
		return "sips"
	case SchemeTel:
		return "tel"
	}
	return "other"
}

// ErrBadURI is returned by ParseURI for a malformed URI.
var ErrBadURI = errors.New("sip: malformed URI")

// ErrBadEscape is returned by Unescape for a "%" not followed by two hex digits.
var ErrBadEscape = errors.New("sip: malformed %-escape")

// URI is a parsed sip:, sips: or tel: URI (RFC 3261 §19.1, RFC 3966). Every
// field is a view into the bytes given to Parse; escapes are not decoded
// (use Unescape). For other schemes only Scheme, SchemeRaw and Raw are set.
type URI struct {
	Scheme    Scheme
	Raw       []byte // the whole URI
	SchemeRaw []byte // "sip", "SIPS", "tel", "soap.beep", ...
	User      []byte // user part; for tel: the number
	Password  []byte
	Host      []byte // IPv6 references keep their brackets: "[2001:db8::1]"
	Port      int    // 0 when absent
	Params    []byte // uri-parameters without the leading ";", e.g. "lr;transport=tcp"
	Headers   []byte // headers without the leading "?"
}

// ParseURI parses b into a URI.
func ParseURI(b []byte) (URI, error) {
	var u URI
	err := u.Parse(b)
	return u, err
}

// Parse parses b into u, overwriting it.
func (u *URI) Parse(b []byte) error {
	*u = URI{}
	return u.parse(b)
}

// parse is Parse for a zero u.
func (u *URI) parse(b []byte) error {
	u.Raw = b
	if len(b) > 4 && string(b[:4]) == "sip:" {
		u.SchemeRaw, u.Scheme = b[:3], SchemeSIP
		return u.parseSIP(b[4:])
	}
	colon := bytes.IndexByte(b, ':')
	if colon <= 0 {
		return ErrBadURI
	}
	u.SchemeRaw = b[:colon]
	if !validScheme(u.SchemeRaw) {
		return ErrBadURI
	}
	rest := b[colon+1:]
	switch {
	case eqFold(u.SchemeRaw, "sip"):
		u.Scheme = SchemeSIP
	case eqFold(u.SchemeRaw, "sips"):
		u.Scheme = SchemeSIPS
	case eqFold(u.SchemeRaw, "tel"):
		u.Scheme = SchemeTel
		return u.parseTel(rest)
	default:
		if len(rest) == 0 {
			return ErrBadURI
		}
		for _, c := range rest {
			if !uriTab[c] {
				return ErrBadURI
			}
		}
		return nil
	}
	return u.parseSIP(rest)
}

func validScheme(s []byte) bool {
	c := s[0] | 0x20
	if c < 'a' || c > 'z' {
		return false
	}
	for _, c := range s[1:] {
		if !(tokenTab[c] && c != '!' && c != '%' && c != '*' && c != '_' && c != '`' && c != '\'' && c != '~') {
			return false
		}
	}
	return true
}

func (u *URI) parseSIP(r []byte) error {
	i := 0
	if at := bytes.IndexByte(r, '@'); at >= 0 {
		ui := r[:at]
		if len(ui) == 0 {
			return ErrBadURI
		}
		if span(&uriTab, ui, 0) != len(ui) {
			return ErrBadURI
		}
		if c := bytes.IndexByte(ui, ':'); c >= 0 {
			u.User, u.Password = ui[:c], ui[c+1:]
		} else {
			u.User = ui
		}
		if len(u.User) == 0 {
			return ErrBadURI
		}
		i = at + 1
	}
	h, port, n, ok := parseHostPort(r, i, false)
	if !ok {
		return ErrBadURI
	}
	u.Host, u.Port = h, port
	i = n
	if i < len(r) && r[i] == ';' {
		start := i + 1
		for i < len(r) && r[i] != '?' {
			if !uriTab[r[i]] {
				return ErrBadURI
			}
			i++
		}
		u.Params = r[start:i]
	}
	if i < len(r) && r[i] == '?' {
		for _, c := range r[i+1:] {
			if !uriTab[c] {
				return ErrBadURI
			}
		}
		u.Headers = r[i+1:]
		i = len(r)
	}
	if i != len(r) {
		return ErrBadURI
	}
	return nil
}

func (u *URI) parseTel(r []byte) error {
	i := 0
	for i < len(r) && r[i] != ';' {
		if !uriTab[r[i]] || r[i] == '?' {
			return ErrBadURI
		}
		i++
	}
	if i == 0 {
		return ErrBadURI
	}
	u.User = r[:i]
	if i < len(r) {
		for _, c := range r[i+1:] {
			if !uriTab[c] {
				return ErrBadURI
			}
		}
		u.Params = r[i+1:]
	}
	return nil
}

// parseHostPort parses host [":" port] at b[i:]. With lws set, SWS is allowed
// around the colon (Via sent-by). It returns the host, the port (0 if
// absent) and the index after them.
func parseHostPort(b []byte, i int, lws bool) (host []byte, port int, next int, ok bool) {
	start := i
	if i < len(b) && b[i] == '[' {
		end := bytes.IndexByte(b[i:], ']')
		if end < 0 {
			return nil, 0, i, false
		}
		end += i
		if !validIPv6(b[i+1 : end]) {
			return nil, 0, i, false
		}
		i = end + 1
	} else {
		i = span(&hostTab, b, i)
		if i == start {
			return nil, 0, i, false
		}
	}
	host = b[start:i]
	j := i
	if lws {
		j = skipLWS(b, i)
	}
	if j < len(b) && b[j] == ':' {
		j++
		if lws {
			j = skipLWS(b, j)
		}
		ps, p := j, 0
		for uint(j) < uint(len(b)) {
			d := b[j] - '0' // bytes below '0' wrap around above 9
			if d > 9 {
				break
			}
			if p = p*10 + int(d); p > 65535 {
				return nil, 0, j, false
			}
			j++
		}
		if j == ps {
			return nil, 0, j, false
		}
		return host, p, j, true
	}
	return host, 0, i, true
}

// validIPv6 checks an IPv6 address (RFC 4291 text form, as RFC 5118 fixes
// the RFC 3261 grammar): at most eight 16-bit groups, at most one "::", an
// optional trailing dotted IPv4 address counting as two groups.
func validIPv6(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	groups, double := 0, false
	i := 0
	if b[0] == ':' {
		if b[1] != ':' {
			return false
		}
		double = true
		i = 2
		if i == len(b) {
			return true
		}
	}
	for i < len(b) {
		// one group, or an IPv4 tail
		j := i
		for j < len(b) && isHex(b[j]) {
			j++
		}
		if j < len(b) && b[j] == '.' {
			if !validIPv4(b[i:]) {
				return false
			}
			groups += 2
			i = len(b)
			break
		}
		if j == i || j-i > 4 {
			return false
		}
		groups++
		i = j
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if double {
				return false
			}
			double = true
			i++
			if i == len(b) {
				break
			}
		} else if i == len(b) {
			return false // trailing single colon
		}
	}
	if double {
		return groups < 8
	}
	return groups == 8
}

func validIPv4(b []byte) bool {
	parts := 0
	i := 0
	for {
		j := i
		for j < len(b) && digitTab[b[j]] {
			j++
		}
		if j == i || j-i > 3 {
			return false
		}
		if _, ok := parseUint(b[i:j], 255); !ok {
			return false
		}
		parts++
		if j == len(b) {
			break
		}
		if b[j] != '.' {
			return false
		}
		i = j + 1
	}
	return parts == 4
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'f')
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// Param returns the value of the URI parameter name (case-insensitive) and
// whether it is present. A parameter without "=" has a nil value.
func (u *URI) Param(name string) ([]byte, bool) {
	return lookupParam(u.Params, name)
}

// LR reports whether the URI carries the lr parameter (loose routing).
func (u *URI) LR() bool {
	_, ok := lookupParam(u.Params, "lr")
	return ok
}

// Transport returns the transport parameter, nil if absent.
func (u *URI) Transport() []byte {
	v, _ := lookupParam(u.Params, "transport")
	return v
}

// MAddr returns the maddr parameter, nil if absent.
func (u *URI) MAddr() []byte {
	v, _ := lookupParam(u.Params, "maddr")
	return v
}

// Unescape appends src with %HH escapes decoded to dst. It decodes one level
// only: "%2541" becomes "%41", never "A" (RFC 4475 §3.1.1.3).
func Unescape(dst, src []byte) ([]byte, error) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '%' {
			dst = append(dst, c)
			continue
		}
		d, ok := DecodeEscape(src, i)
		if !ok {
			return dst, ErrBadEscape
		}
		dst = append(dst, d)
		i += 2
	}
	return dst, nil
}

// DecodeEscape returns the character that the escape "%HH" at b[i] stands
// for (RFC 3261 §25.1), and false when b[i:] does not start with "%" and
// two hex digits. Modules that compare or match URI parts with escapes
// decoded use it one character at a time, without a copy.
func DecodeEscape(b []byte, i int) (byte, bool) {
	if i+2 >= len(b) || b[i] != '%' || !isHex(b[i+1]) || !isHex(b[i+2]) {
		return 0, false
	}
	return unhex(b[i+1])<<4 | unhex(b[i+2]), true
}
