package parser

import "bytes"

// NameAddr is a name-addr or addr-spec with header parameters: From, To,
// Contact, Route, Record-Route, Path, Refer-To, P-Asserted-Identity...
// (RFC 3261 §20). URI is the URI text without "<" ">"; parse it with
// ParseURI. DisplayName is raw: quotes kept, escapes unresolved.
type NameAddr struct {
	Raw         []byte
	DisplayName []byte
	URI         []byte
	Params      []byte // header parameters without the first ";"
	Tag         []byte
	Star        bool // Contact: *
	Bracketed   bool // the URI was inside "<" ">"
}

// Param returns a header parameter by name (case-insensitive).
func (n *NameAddr) Param(name string) ([]byte, bool) { return lookupParam(n.Params, name) }

// ParseURI parses the URI of the name-addr.
func (n *NameAddr) ParseURI() (URI, error) { return ParseURI(n.URI) }

// Expires returns the Contact expires parameter.
func (n *NameAddr) Expires() (uint32, bool) {
	v, ok := n.Param("expires")
	if !ok {
		return 0, false
	}
	x, ok := parseUint(v, 1<<32-1)
	return uint32(x), ok
}

// Q returns the Contact q parameter in thousandths (q=0.5 is 500), -1 when
// absent or malformed.
func (n *NameAddr) Q() int {
	v, ok := n.Param("q")
	if !ok || len(v) == 0 {
		return -1
	}
	q := 0
	switch v[0] {
	case '0':
	case '1':
		q = 1000
	default:
		return -1
	}
	v = v[1:]
	if len(v) == 0 {
		return q
	}
	if v[0] != '.' || len(v) > 4 {
		return -1
	}
	scale := 100
	for _, c := range v[1:] {
		if !digitTab[c] {
			return -1
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return -1
	}
	return q
}

// Instance returns the +sip.instance parameter without its quotes.
func (n *NameAddr) Instance() []byte {
	v, _ := n.Param("+sip.instance")
	return Unquote(v)
}

// RegID returns the reg-id parameter (RFC 5626), -1 when absent.
func (n *NameAddr) RegID() int {
	v, ok := n.Param("reg-id")
	if !ok {
		return -1
	}
	x, ok := parseUint(v, 1<<31-1)
	if !ok {
		return -1
	}
	return int(x)
}

// ParseNameAddr parses b as one header value of the From, To or Contact
// kind (a name-addr or addr-spec with parameters), e.g. the From a dialog
// kept: `"Alice" <sip:alice@example.com>;tag=1`. The fields are views into
// b. False when b is not exactly one such value.
func ParseNameAddr(b []byte) (NameAddr, bool) {
	var na NameAddr
	n, ok := parseNameAddr(b, 0, &na)
	if !ok || skipLWS(b, n) != len(b) {
		return NameAddr{}, false
	}
	return na, true
}

// parseNameAddr parses one value at b[i:] into na, which must be zero; b ends where the header value
// ends. It returns the index after the value (at "," or len(b), LWS
// skipped).
func parseNameAddr(b []byte, i int, na *NameAddr) (int, bool) {
	i = skipLWS(b, i)
	start := i
	if i >= len(b) {
		return i, false
	}
	switch {
	case b[i] == '*':
		na.Star = true
		i++
	case b[i] == '"' || b[i] == '<':
		if b[i] == '"' {
			q := skipQuoted(b, i)
			if q < 0 {
				return i, false
			}
			na.DisplayName = b[i:q]
			i = skipLWS(b, q)
			if i >= len(b) || b[i] != '<' {
				return i, false
			}
		}
		n, ok := parseAngle(b, i, na)
		if !ok {
			return n, false
		}
		i = n
	default:
		// Either display-name tokens followed by "<", or an addr-spec whose
		// scheme is followed by ":".
		t := skipToken(b, i)
		if t == i {
			return i, false
		}
		if t < len(b) && b[t] == ':' {
			us := i
			for i < len(b) && uriTab[b[i]] && b[i] != ';' && b[i] != ',' {
				if b[i] == '?' {
					// RFC 3261 §20: an addr-spec with "?" must use name-addr.
					return i, false
				}
				i++
			}
			na.URI = b[us:i]
			break
		}
		ds := i
		de := t
		i = skipLWS(b, t)
		for i < len(b) && b[i] != '<' {
			t = skipToken(b, i)
			if t == i {
				return i, false
			}
			de = t
			i = skipLWS(b, t)
		}
		if i >= len(b) {
			return i, false
		}
		na.DisplayName = b[ds:de]
		n, ok := parseAngle(b, i, na)
		if !ok {
			return n, false
		}
		i = n
	}
	end := i
	i = skipLWS(b, i)
	ps := -1
	for i < len(b) && b[i] == ';' {
		ns, ne, vs, next, okp := paramAt(b, i+1)
		if !okp {
			return next, false
		}
		if ps < 0 {
			ps = ns
		}
		if nameAt(b, ns, ne, wordTag, 3) {
			if vs < 0 {
				return next, false
			}
			na.Tag = b[vs:next]
		}
		end = next
		i = skipLWS(b, next)
	}
	if ps >= 0 {
		na.Params = b[ps:end]
	}
	if i < len(b) && b[i] != ',' {
		return i, false
	}
	na.Raw = b[start:end]
	return i, true
}

// parseAngle takes the URI between "<" and ">". Parse only checks that the
// URI is not empty and has no LWS at its ends (RFC 4475 §3.1.2.14);
// Validate checks its characters.
func parseAngle(b []byte, i int, na *NameAddr) (int, bool) {
	i++ // '<'
	k := bytes.IndexByte(b[i:], '>')
	if k <= 0 || lwsTab[b[i]] || lwsTab[b[i+k-1]] {
		return i, false
	}
	na.URI = b[i : i+k]
	na.Bracketed = true
	return i + k + 1, true
}

// NameAddrIter iterates over the values of every header line with one name
// (Contact, Route, Record-Route, Path...), in message order.
type NameAddrIter struct {
	valueIter
	NameAddr NameAddr
}

// NameAddrs returns an iterator over every value of header h.
//
//	it := m.NameAddrs(parser.HdrRoute)
//	for it.Next() { use(&it.NameAddr) }
func (m *Message) NameAddrs(h HeaderName) NameAddrIter {
	var it NameAddrIter
	it.init(m, h)
	return it
}

// Next parses the next value into it.NameAddr.
func (it *NameAddrIter) Next() bool {
	if it.err != nil {
		return false
	}
	ve := it.advance()
	if ve < 0 {
		return false
	}
	b := it.m.st.buf
	it.NameAddr = NameAddr{}
	n, ok := parseNameAddr(b[:ve], it.pos, &it.NameAddr)
	if !ok {
		it.err = it.m.failHdr(KindBadHeader, &it.m.hdrs[it.h])
		return false
	}
	it.Start = it.m.off(it.NameAddr.Raw)
	it.finish(b, n, ve)
	return it.err == nil
}
