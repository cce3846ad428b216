package parser

// Checks a server makes before it processes a request, in the order of RFC
// 3261 §16.3 (proxy) and §8.2 (UAS). Parse already covers 400 (and 501 for
// a CSeq mismatch on an unknown method); these cover the rest.

// Verdict is the response to send instead of processing a request; Code 0
// means go on.
type Verdict struct {
	Code   int
	Reason string
	// Unsupported is the value for the Unsupported header of a 420: the
	// tokens appended to the caller's buffer.
	Unsupported []byte
}

// VersionOK reports whether the start line says SIP/2.0 (else 505).
func (m *Message) VersionOK() bool {
	v := m.Version()
	return len(v) == 7 && eqFold(v[:4], "sip/") && string(v[4:]) == "2.0"
}

// SchemeOK reports whether the Request-URI scheme is sip, sips or tel
// (else 416 Unsupported URI Scheme).
func (m *Message) SchemeOK() bool { return m.st.ruri.Scheme != SchemeOther }

// AppendUnsupported appends to dst, comma-separated, each token of header h
// (Require or Proxy-Require) that is not in supported (case-insensitive).
// Nothing appended means every extension is supported.
func (m *Message) AppendUnsupported(dst []byte, h HeaderName, supported []string) []byte {
	it := m.Tokens(h)
	first := true
next:
	for it.Next() {
		for _, s := range supported {
			if equalFoldString(it.Token, s) {
				continue next
			}
		}
		if !first {
			dst = append(dst, ", "...)
		}
		first = false
		dst = append(dst, it.Token...)
	}
	return dst
}

// ProxyVerdict runs the proxy request checks of RFC 3261 §16.3 that need
// no configuration beyond the supported option tags: version (505), URI
// scheme (416), Max-Forwards of zero (483; OPTIONS too, a proxy that wants
// to answer OPTIONS itself checks before), Proxy-Require (420). buf
// receives the Unsupported list of a 420.
func (m *Message) ProxyVerdict(supported []string, buf []byte) Verdict {
	if !m.st.request {
		return Verdict{}
	}
	if !m.VersionOK() {
		return Verdict{Code: 505, Reason: "Version Not Supported"}
	}
	if !m.SchemeOK() {
		return Verdict{Code: 416, Reason: "Unsupported URI Scheme"}
	}
	if n, ok := m.MaxForwards(); ok && n == 0 {
		return Verdict{Code: 483, Reason: "Too Many Hops"}
	}
	if u := m.AppendUnsupported(buf[:0], HdrProxyRequire, supported); len(u) > 0 {
		return Verdict{Code: 420, Reason: "Bad Extension", Unsupported: u}
	}
	return Verdict{}
}

// UASVerdict runs the UAS request checks of RFC 3261 §8.2: version (505),
// URI scheme (416), method (501 unless known or listed in methods),
// Require (420; not for ACK and CANCEL, RFC 3261 §8.2.2.3).
func (m *Message) UASVerdict(supported []string, methods []string, buf []byte) Verdict {
	if !m.st.request {
		return Verdict{}
	}
	if !m.VersionOK() {
		return Verdict{Code: 505, Reason: "Version Not Supported"}
	}
	if !m.SchemeOK() {
		return Verdict{Code: 416, Reason: "Unsupported URI Scheme"}
	}
	if m.st.method == MethodOther {
		known := false
		for _, s := range methods {
			if string(m.MethodBytes()) == s {
				known = true
				break
			}
		}
		if !known {
			return Verdict{Code: 501, Reason: "Not Implemented"}
		}
	}
	if m.st.method != MethodAck && m.st.method != MethodCancel {
		if u := m.AppendUnsupported(buf[:0], HdrRequire, supported); len(u) > 0 {
			return Verdict{Code: 420, Reason: "Bad Extension", Unsupported: u}
		}
	}
	return Verdict{}
}

// Validate parses every remaining header whose grammar the parser knows
// (every Via, Contact, Route, Record-Route, Path, the authentication
// headers, Expires, Event) and returns the first error. Parse checks only
// what the hot path needs; a registrar or a strict UAS calls Validate.
func (m *Message) Validate() error {
	for _, h := range [2]HeaderName{HdrFrom, HdrTo} {
		if f := m.st.first[h]; f != 0 {
			na := &m.st.from
			if h == HdrTo {
				na = &m.st.to
			}
			if !validURI(na.URI) {
				return m.failHdr(KindBadHeader, &m.hdrs[f-1])
			}
		}
	}
	if f := m.st.first[HdrCallID]; f != 0 && !validCallID(m.st.callID) {
		return m.failHdr(KindBadHeader, &m.hdrs[f-1])
	}
	vi := m.Vias()
	for vi.Next() {
	}
	if vi.Err() != nil {
		return vi.Err()
	}
	for _, h := range [...]HeaderName{HdrContact, HdrRoute, HdrRecordRoute, HdrPath,
		HdrServiceRoute, HdrReferTo, HdrReferredBy, HdrPAssertedIdentity, HdrPPreferredIdentity} {
		it := m.NameAddrs(h)
		n := 0
		for it.Next() {
			n++
			if it.NameAddr.Star && (h != HdrContact || n > 1) {
				return m.failHdr(KindBadHeader, &m.hdrs[it.h])
			}
			if !it.NameAddr.Star && !validURI(it.NameAddr.URI) {
				return m.failHdr(KindBadHeader, &m.hdrs[it.h])
			}
		}
		if it.Err() != nil {
			return it.Err()
		}
	}
	for k := 0; k < m.st.nh; k++ {
		x := &m.hdrs[k]
		v := m.st.buf[x.vs:x.ve]
		ok := true
		switch x.name {
		case HdrExpires, HdrMinExpires:
			_, ok = parseUint(v, 1<<32-1)
		case HdrAuthorization, HdrProxyAuthorization, HdrWWWAuthenticate, HdrProxyAuthenticate:
			var a Auth
			ok = ParseAuth(v, &a)
		case HdrEvent:
			_, ok = m.Event()
		}
		if !ok {
			return m.failHdr(KindBadHeader, x)
		}
	}
	return nil
}

func validURI(b []byte) bool {
	var u URI
	return u.Parse(b) == nil
}
