package sst

import "switchboard/parser"

// Interval is a Session-Expires or Min-SE header as RFC 4028 §4 and §5
// write them: delta-seconds, then parameters.
type Interval struct {
	// Present: the message has the header.
	Present bool
	// Seconds is the delta-seconds, at most 2^32-1 (a larger number is
	// taken as that, RFC 3261 §20.19's rule for Expires).
	Seconds uint32
	// Refresher is Session-Expires' refresher parameter: "uac", "uas" or
	// empty.
	Refresher []byte
	// Digits is the delta-seconds as written (a view into the message),
	// for an edit that changes the number and keeps the parameters.
	Digits []byte
}

// SessionExpires reads the Session-Expires header (compact form x). ok is
// false when it is malformed: not delta-seconds, a refresher other than
// uac or uas, a parameter that is not a token, more than one value, or
// more than one header line (a forged or broken message; which one would
// count is anyone's guess). An absent header is ok, not Present. It
// allocates nothing.
func SessionExpires(m *parser.Message) (Interval, bool) {
	return interval(m, parser.HdrSessionExpires)
}

// MinSE reads the Min-SE header the same way.
func MinSE(m *parser.Message) (Interval, bool) {
	return interval(m, parser.HdrMinSE)
}

func interval(m *parser.Message, h parser.HeaderName) (Interval, bool) {
	var iv Interval
	switch m.Count(h) {
	case 0:
		return iv, true
	case 1:
	default:
		return iv, false
	}
	v := m.Get(h)
	i := 0
	var n uint64
	for i < len(v) && v[i]-'0' <= 9 {
		if n = n*10 + uint64(v[i]-'0'); n > 1<<32-1 {
			n = 1<<32 - 1
		}
		i++
	}
	if i == 0 || i > 20 {
		return iv, false
	}
	iv.Present, iv.Seconds, iv.Digits = true, uint32(n), v[:i]
	for i = skipLWS(v, i); i < len(v); {
		if v[i] != ';' {
			return iv, false
		}
		i = skipLWS(v, i+1)
		s := i
		for i < len(v) && isToken(v[i]) {
			i++
		}
		name := v[s:i]
		if len(name) == 0 {
			return iv, false
		}
		i = skipLWS(v, i)
		var value []byte
		if i < len(v) && v[i] == '=' {
			i = skipLWS(v, i+1)
			s = i
			for i < len(v) && isToken(v[i]) {
				i++
			}
			if value = v[s:i]; len(value) == 0 {
				return iv, false
			}
			i = skipLWS(v, i)
		}
		if h == parser.HdrSessionExpires && equalFold(name, "refresher") {
			if !equalFold(value, "uac") && !equalFold(value, "uas") {
				return iv, false
			}
			iv.Refresher = value
		}
	}
	return iv, true
}

func skipLWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n') {
		i++
	}
	return i
}

// isToken reports whether c may be in an RFC 3261 token.
func isToken(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
