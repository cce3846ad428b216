package parser

// CSeq is the parsed CSeq header: a sequence number below 2^32 and the
// method (RFC 3261 §20.16).
type CSeq struct {
	Num       uint32
	Method    Method
	MethodRaw []byte
}

// parseCSeq parses a CSeq value. known is the request's method (nil for a
// response) and km its Method: a CSeq method equal to it, already checked
// to be a token in the start line, needs no second scan or lookup.
func parseCSeq(v []byte, c *CSeq, known []byte, km Method) bool {
	// 1*DIGIT below 2^32, accumulated in the one pass that finds its end.
	i := 0
	var n uint64
	for i < len(v) && v[i]-'0' <= 9 {
		n = n*10 + uint64(v[i]-'0')
		if n > 1<<32-1 {
			return false
		}
		i++
	}
	if i == 0 {
		return false
	}
	j := skipLWS(v, i)
	if j == i {
		return false
	}
	c.Num = uint32(n)
	if len(known) > 0 && string(v[j:]) == string(known) {
		c.MethodRaw, c.Method = v[j:], km
		return true
	}
	k := skipToken(v, j)
	if k == j || k != len(v) {
		return false
	}
	c.MethodRaw = v[j:k]
	c.Method = LookupMethod(c.MethodRaw)
	return true
}

// TokenIter walks the comma-separated tokens of every line of a header
// (Require, Proxy-Require, Supported, Unsupported, Allow, Allow-Events,
// Accept...). Token is the current item, LWS trimmed; items with parameters
// (Accept: "application/sdp;level=1") are returned whole.
type TokenIter struct {
	valueIter
	Token []byte
}

// Tokens returns an iterator over the comma-separated items of header h.
func (m *Message) Tokens(h HeaderName) TokenIter {
	var it TokenIter
	it.init(m, h)
	return it
}

// Next moves to the next item. Empty items (",,") are skipped.
func (it *TokenIter) Next() bool {
	for {
		ve := it.advance()
		if ve < 0 {
			return false
		}
		b := it.m.st.buf
		i := skipLWS(b[:ve], it.pos)
		s := i
		inQ := false
		for i < ve && (inQ || b[i] != ',') {
			if b[i] == '"' {
				inQ = !inQ
			} else if b[i] == '\\' && inQ {
				i++
			}
			i++
		}
		if i > ve {
			i = ve
		}
		it.Token = trimLWS(b[s:i])
		it.Start = s
		it.End = s + len(it.Token)
		if i < ve {
			it.pos = i + 1
		} else {
			it.pos = ve
		}
		if len(it.Token) > 0 {
			return true
		}
	}
}

// HasToken reports whether header h lists tok (case-insensitive), e.g.
// m.HasToken(HdrSupported, "100rel").
func (m *Message) HasToken(h HeaderName, tok string) bool {
	it := m.Tokens(h)
	for it.Next() {
		if equalFoldString(it.Token, tok) {
			return true
		}
	}
	return false
}

// Expires returns the Expires header in seconds. ok is false when the
// header is absent or not a number below 2^32 (RFC 4475 §3.1.2.4: treat an
// overlarge value as absent and use the default).
func (m *Message) Expires() (secs uint32, ok bool) {
	v := m.Get(HdrExpires)
	if v == nil {
		return 0, false
	}
	n, ok := parseUint(v, 1<<32-1)
	return uint32(n), ok
}

// MinExpires returns the Min-Expires header like Expires.
func (m *Message) MinExpires() (uint32, bool) {
	v := m.Get(HdrMinExpires)
	if v == nil {
		return 0, false
	}
	n, ok := parseUint(v, 1<<32-1)
	return uint32(n), ok
}

// ContentType returns the Content-Type value (media type with parameters).
func (m *Message) ContentType() []byte { return m.Get(HdrContentType) }

// MediaType returns the Content-Type without parameters, e.g.
// "application/sdp".
func (m *Message) MediaType() []byte {
	v := m.Get(HdrContentType)
	for k, c := range v {
		if c == ';' {
			return trimLWS(v[:k])
		}
	}
	return v
}

// UserAgent returns the User-Agent value.
func (m *Message) UserAgent() []byte { return m.Get(HdrUserAgent) }

// Server returns the Server value.
func (m *Message) Server() []byte { return m.Get(HdrServer) }

// Event is the parsed Event header (RFC 6665): package, id and parameters.
type Event struct {
	Package []byte // "presence", "dialog", "message-summary"...
	ID      []byte
	Params  []byte
}

// Event parses the Event header. ok is false when it is absent or malformed.
func (m *Message) Event() (ev Event, ok bool) {
	v := m.Get(HdrEvent)
	if v == nil {
		return ev, false
	}
	i := skipToken(v, 0)
	if i == 0 {
		return ev, false
	}
	ev.Package = v[:i]
	params, n, okp := scanParams(v, i)
	if !okp || n != len(v) {
		return Event{}, false
	}
	ev.Params = params
	ev.ID, _ = lookupParam(params, "id")
	return ev, true
}

// Auth is a parsed credentials or challenge value: Authorization,
// Proxy-Authorization, WWW-Authenticate, Proxy-Authenticate (RFC 3261
// §20.7, RFC 2617, RFC 7616). Values are unquoted views; quoted-pairs are
// left as sent (digest values never need them in practice).
type Auth struct {
	Scheme    []byte // "Digest", or anything else as sent
	Params    []byte // the raw auth-params
	Username  []byte
	Realm     []byte
	Nonce     []byte
	URI       []byte
	Response  []byte
	Algorithm []byte
	CNonce    []byte
	Opaque    []byte
	QOP       []byte
	NC        []byte
	Domain    []byte
	Stale     []byte
}

// IsDigest reports whether the scheme is Digest.
func (a *Auth) IsDigest() bool { return eqFold(a.Scheme, "digest") }

// ParseAuth parses a credentials or challenge value into a.
func ParseAuth(v []byte, a *Auth) bool {
	*a = Auth{}
	v = trimLWS(v)
	i := skipToken(v, 0)
	if i == 0 {
		return false
	}
	a.Scheme = v[:i]
	j := skipLWS(v, i)
	if j == len(v) {
		return true
	}
	if j == i {
		return false
	}
	a.Params = v[j:]
	if !a.IsDigest() {
		// Unknown schemes (RFC 4475 §3.3.7) are forwarded untouched.
		return true
	}
	for j < len(v) {
		name, val, next, ok := scanParam(v, j)
		if !ok || val == nil {
			return false
		}
		val = Unquote(val)
		switch {
		case eqFold(name, "username"):
			a.Username = val
		case eqFold(name, "realm"):
			a.Realm = val
		case eqFold(name, "nonce"):
			a.Nonce = val
		case eqFold(name, "uri"):
			a.URI = val
		case eqFold(name, "response"):
			a.Response = val
		case eqFold(name, "algorithm"):
			a.Algorithm = val
		case eqFold(name, "cnonce"):
			a.CNonce = val
		case eqFold(name, "opaque"):
			a.Opaque = val
		case eqFold(name, "qop"):
			a.QOP = val
		case eqFold(name, "nc"):
			a.NC = val
		case eqFold(name, "domain"):
			a.Domain = val
		case eqFold(name, "stale"):
			a.Stale = val
		}
		j = skipLWS(v, next)
		if j < len(v) {
			if v[j] != ',' {
				return false
			}
			j = skipLWS(v, j+1)
		}
	}
	return true
}

// Auth parses the first header named h (one of the four authentication
// headers). ok is false when absent or malformed. For several credentials
// (one per realm) walk HeaderAt and call ParseAuth.
func (m *Message) Auth(h HeaderName, a *Auth) bool {
	v := m.Get(h)
	if v == nil {
		*a = Auth{}
		return false
	}
	return ParseAuth(v, a)
}

// Contact returns the first Contact value; ok is false when absent or
// malformed. Use NameAddrs(HdrContact) for all of them.
func (m *Message) Contact(na *NameAddr) bool {
	it := m.NameAddrs(HdrContact)
	if !it.Next() {
		return false
	}
	*na = it.NameAddr
	return true
}
