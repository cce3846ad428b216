package sdp

import "bytes"

// attrKind is an attribute name the package knows.
type attrKind uint8

const (
	attrOther attrKind = iota
	// the four directions, in Direction order
	attrSendRecv
	attrSendOnly
	attrRecvOnly
	attrInactive
	attrRTCP
	attrRTCPMux
	attrRTPMap
	attrFmtp
	attrCandidate
	attrRemoteCandidates
	attrEndOfCandidates
	attrICEUfrag
	attrICEPwd
	attrICELite
	attrICEOptions
	attrICEMismatch
	attrCrypto
	attrFingerprint
	attrSetup
	attrMid
)

func lookupAttr(name []byte) attrKind {
	switch string(name) {
	case "sendrecv":
		return attrSendRecv
	case "sendonly":
		return attrSendOnly
	case "recvonly":
		return attrRecvOnly
	case "inactive":
		return attrInactive
	case "rtcp":
		return attrRTCP
	case "rtcp-mux":
		return attrRTCPMux
	case "rtpmap":
		return attrRTPMap
	case "fmtp":
		return attrFmtp
	case "candidate":
		return attrCandidate
	case "remote-candidates":
		return attrRemoteCandidates
	case "end-of-candidates":
		return attrEndOfCandidates
	case "ice-ufrag":
		return attrICEUfrag
	case "ice-pwd":
		return attrICEPwd
	case "ice-lite":
		return attrICELite
	case "ice-options":
		return attrICEOptions
	case "ice-mismatch":
		return attrICEMismatch
	case "crypto":
		return attrCrypto
	case "fingerprint":
		return attrFingerprint
	case "setup":
		return attrSetup
	case "mid":
		return attrMid
	}
	return attrOther
}

// isICE reports the attributes RFC 8839 defines, which a relay that
// terminates ICE (or a peer that does not speak it) removes.
func (k attrKind) isICE() bool { return k >= attrCandidate && k <= attrICEMismatch }

// attrName returns the name of an a= line.
func (s *Session) attrName(x *line) []byte {
	b := s.st.buf
	end := x.ve
	if x.vs < x.ve || (x.vs > x.start+2 && b[x.vs-1] == ':') {
		end = x.vs - 1
	}
	return b[x.start+2 : end]
}

// hasValue reports whether an a= line has a ":" (a value attribute, the
// value possibly empty) rather than being a property attribute.
func (s *Session) hasValue(x *line) bool {
	return x.vs > x.start+2 && s.st.buf[x.vs-1] == ':'
}

// ---- session level ----

// Bytes returns the body as parsed.
func (s *Session) Bytes() []byte { return s.st.buf }

// Origin returns the o= line.
func (s *Session) Origin() *Origin { return &s.st.origin }

// Name returns the s= value.
func (s *Session) Name() []byte { return s.st.name }

// Timing returns the first t= line.
func (s *Session) Timing() Timing { return s.st.timing }

// Connection returns the session-level c= line; ok is false when there is
// none.
func (s *Session) Connection() (c Connection, ok bool) {
	return s.st.sess.conn, s.st.sess.connLine >= 0
}

// Direction returns the session-level direction attribute, SendRecv when
// there is none (RFC 3264 §5.1).
func (s *Session) Direction() Direction {
	if d := s.st.sess.dir; d != DirNone {
		return d
	}
	return SendRecv
}

// NumMedia returns the number of m= sections.
func (s *Session) NumMedia() int { return s.st.nm }

// Media returns media section i (0 <= i < NumMedia()).
func (s *Session) Media(i int) *Media { return &s.media[i] }

// NumLines returns the number of lines of the body.
func (s *Session) NumLines() int { return s.st.nl }

// Attr returns the value of the first session-level attribute name; ok is
// false when there is none. A property attribute (no ":") has a nil value.
func (s *Session) Attr(name string) (value []byte, ok bool) { return s.attr(&s.st.sess, name) }

// HasAttr reports whether the session level has attribute name.
func (s *Session) HasAttr(name string) bool {
	_, ok := s.Attr(name)
	return ok
}

// Attrs iterates over the session-level attributes.
func (s *Session) Attrs() AttrIter { return s.iter(&s.st.sess, attrOther, true) }

// Bandwidth returns the session-level b= value of type typ (e.g. "AS").
func (s *Session) Bandwidth(typ string) (uint64, bool) { return s.bandwidth(&s.st.sess, typ) }

// Lines iterates over every line of the body.
func (s *Session) Lines() LineIter { return LineIter{s: s, i: -1, end: s.st.nl} }

// ---- media level ----

// Index returns the position of the section among the m= sections.
func (m *Media) Index() int { return m.idx }

// Line returns the line number of the m= line.
func (m *Media) Line() int { return m.sec.first + 1 }

// Disabled reports a port of 0: a stream rejected, disabled or bundled
// without a port of its own (RFC 3264 §6, RFC 8843).
func (m *Media) Disabled() bool { return m.Port == 0 }

// Connection returns the connection that applies to the section: its own
// c= line, else the session-level one; ok is false when neither exists
// (only for a section with port 0).
func (m *Media) Connection() (c Connection, ok bool) {
	if m.sec.connLine >= 0 {
		return m.sec.conn, true
	}
	return m.s.Connection()
}

// HasConnection reports whether the section has a c= line of its own.
func (m *Media) HasConnection() bool { return m.sec.connLine >= 0 }

// Direction returns the direction that applies to the section: its own
// attribute, else the session-level one, else SendRecv.
func (m *Media) Direction() Direction {
	if m.sec.dir != DirNone {
		return m.sec.dir
	}
	return m.s.Direction()
}

// RTCP returns the section's a=rtcp attribute; ok is false when there is none.
func (m *Media) RTCP() (r RTCP, ok bool) { return m.sec.rtcp, m.sec.rtcpLine >= 0 }

// RTCPMux reports a=rtcp-mux (RFC 5761).
func (m *Media) RTCPMux() bool { return m.sec.mux }

// Attr returns the value of the first attribute name of the section.
func (m *Media) Attr(name string) (value []byte, ok bool) { return m.s.attr(&m.sec, name) }

// HasAttr reports whether the section has attribute name.
func (m *Media) HasAttr(name string) bool {
	_, ok := m.Attr(name)
	return ok
}

// Attrs iterates over the section's attributes.
func (m *Media) Attrs() AttrIter { return m.s.iter(&m.sec, attrOther, true) }

// Bandwidth returns the section's b= value of type typ.
func (m *Media) Bandwidth(typ string) (uint64, bool) { return m.s.bandwidth(&m.sec, typ) }

// FormatIter iterates over the formats of the m= line.
func (m *Media) FormatIter() FormatIter { return FormatIter{rest: m.Formats} }

// ICEUfrag returns a=ice-ufrag of the section, else of the session level.
func (m *Media) ICEUfrag() []byte { return m.inherited(attrICEUfrag) }

// ICEPwd returns a=ice-pwd of the section, else of the session level.
func (m *Media) ICEPwd() []byte { return m.inherited(attrICEPwd) }

// Setup returns a=setup (RFC 4145: active, passive, actpass, holdconn) of
// the section, else of the session level.
func (m *Media) Setup() []byte { return m.inherited(attrSetup) }

// Mid returns a=mid (RFC 5888), nil when absent.
func (m *Media) Mid() []byte {
	v, _ := m.s.attrKind(&m.sec, attrMid)
	return v
}

// Fingerprint returns the first a=fingerprint (RFC 8122) of the section,
// else of the session level; ok is false when there is none or it is
// malformed.
func (m *Media) Fingerprint() (f Fingerprint, ok bool) {
	v, ok := m.s.attrKind(&m.sec, attrFingerprint)
	if !ok {
		if v, ok = m.s.attrKind(&m.s.st.sess, attrFingerprint); !ok {
			return f, false
		}
	}
	return f, parseFingerprint(v, &f)
}

// Candidates iterates over the section's a=candidate lines (RFC 8839).
func (m *Media) Candidates() CandidateIter {
	return CandidateIter{it: m.s.iter(&m.sec, attrCandidate, false)}
}

// RTPMaps iterates over the section's a=rtpmap lines.
func (m *Media) RTPMaps() RTPMapIter { return RTPMapIter{it: m.s.iter(&m.sec, attrRTPMap, false)} }

// RTPMap returns the a=rtpmap of payload type pt; ok is false when there
// is none (static payload types need none) or it is malformed.
func (m *Media) RTPMap(pt int) (r RTPMap, ok bool) {
	it := m.RTPMaps()
	for it.Next() {
		if it.RTPMap.Payload == pt {
			return it.RTPMap, true
		}
	}
	return r, false
}

// Fmtps iterates over the section's a=fmtp lines.
func (m *Media) Fmtps() FmtpIter { return FmtpIter{it: m.s.iter(&m.sec, attrFmtp, false)} }

// Fmtp returns the parameters of a=fmtp for format f.
func (m *Media) Fmtp(f string) (params []byte, ok bool) {
	it := m.Fmtps()
	for it.Next() {
		if string(it.Fmtp.Format) == f {
			return it.Fmtp.Params, true
		}
	}
	return nil, false
}

// Cryptos iterates over the section's a=crypto lines (RFC 4568).
func (m *Media) Cryptos() CryptoIter { return CryptoIter{it: m.s.iter(&m.sec, attrCrypto, false)} }

func (m *Media) inherited(k attrKind) []byte {
	if v, ok := m.s.attrKind(&m.sec, k); ok {
		return v
	}
	v, _ := m.s.attrKind(&m.s.st.sess, k)
	return v
}

// ---- shared lookups ----

func (s *Session) value(x *line) []byte {
	if !s.hasValue(x) {
		return nil
	}
	return s.st.buf[x.vs:x.ve]
}

func (s *Session) attr(sec *section, name string) ([]byte, bool) {
	for k := sec.first; k < sec.end; k++ {
		if x := &s.lines[k]; x.typ == 'a' && string(s.attrName(x)) == name {
			return s.value(x), true
		}
	}
	return nil, false
}

func (s *Session) attrKind(sec *section, kind attrKind) ([]byte, bool) {
	for k := sec.first; k < sec.end; k++ {
		if x := &s.lines[k]; x.typ == 'a' && x.attr == kind {
			return s.value(x), true
		}
	}
	return nil, false
}

func (s *Session) bandwidth(sec *section, typ string) (uint64, bool) {
	for k := sec.first; k < sec.end; k++ {
		if x := &s.lines[k]; x.typ == 'b' {
			t, n, _ := parseBandwidth(s.st.buf[x.vs:x.ve])
			if string(t) == typ {
				return n, true
			}
		}
	}
	return 0, false
}

func (s *Session) iter(sec *section, kind attrKind, any bool) AttrIter {
	return AttrIter{s: s, i: sec.first - 1, end: sec.end, kind: kind, any: any}
}

// ---- iterators ----

// Attr is one attribute line.
type Attr struct {
	Name  []byte
	Value []byte // nil for a property attribute (no ":")
	Line  int    // line number in the body
}

// AttrIter iterates over attribute lines:
// for it := m.Attrs(); it.Next(); { it.Attr.Name ... }.
type AttrIter struct {
	s    *Session
	i    int
	end  int
	kind attrKind
	any  bool
	Attr Attr
}

// Next moves to the next attribute; false at the end.
func (it *AttrIter) Next() bool {
	for it.i++; it.i < it.end; it.i++ {
		x := &it.s.lines[it.i]
		if x.typ == 'a' && (it.any || x.attr == it.kind) {
			it.Attr = Attr{Name: it.s.attrName(x), Value: it.s.value(x), Line: it.i + 1}
			return true
		}
	}
	return false
}

func (it *AttrIter) line() *line { return &it.s.lines[it.i] }

// Line is one line of the body: its type letter and value (for an a=
// line, the whole "name:value").
type Line struct {
	Type  byte
	Value []byte
	Line  int
}

// LineIter iterates over every line of the body.
type LineIter struct {
	s      *Session
	i, end int
	Line   Line
}

// Next moves to the next line; false at the end.
func (it *LineIter) Next() bool {
	it.i++
	if it.i >= it.end {
		return false
	}
	x := &it.s.lines[it.i]
	it.Line = Line{Type: x.typ, Value: it.s.st.buf[x.start+2 : x.ve], Line: it.i + 1}
	return true
}

// FormatIter iterates over the formats of an m= line.
type FormatIter struct {
	rest   []byte
	Format []byte
}

// Next moves to the next format; false at the end.
func (it *FormatIter) Next() bool {
	s, e := field(it.rest, 0)
	if s == e {
		return false
	}
	it.Format, it.rest = it.rest[s:e], it.rest[e:]
	return true
}

// Candidate is an a=candidate line (RFC 8839 §5.1):
// "foundation component transport priority address port typ type
// [raddr addr] [rport port] *(name value)".
type Candidate struct {
	Foundation []byte
	Component  int
	Transport  []byte // UDP, TCP (any case)
	Priority   uint32
	Address    []byte // IPv4, IPv6 or a name (mDNS: "<uuid>.local")
	Port       int
	Type       []byte // host, srflx, prflx, relay
	RelAddr    []byte // raddr, nil when absent
	RelPort    int    // rport, -1 when absent
	Ext        []byte // what follows: "generation 0 network-id 1", "tcptype active"
	Line       int
}

// CandidateIter iterates over a=candidate lines. A malformed one stops
// the iteration; Err then says which.
type CandidateIter struct {
	it        AttrIter
	err       bool
	Candidate Candidate
}

// Next parses the next candidate; false at the end or on a malformed one.
func (c *CandidateIter) Next() bool {
	if c.err || !c.it.Next() {
		return false
	}
	if k := parseCandidate(c.it.Attr.Value, &c.Candidate); k != KindNone {
		c.err = true
		c.it.s.failAttr(k, c.it.line(), c.it.i)
		return false
	}
	c.Candidate.Line = c.it.Attr.Line
	return true
}

// Err returns the error that stopped the iteration, nil if none.
func (c *CandidateIter) Err() error {
	if c.err {
		return &c.it.s.st.err
	}
	return nil
}

func parseCandidate(v []byte, c *Candidate) ErrorKind {
	var f [8][]byte
	i := 0
	for k := range f {
		s, e := field(v, i)
		if s == e {
			return KindBadAttribute
		}
		f[k], i = v[s:e], e
	}
	*c = Candidate{Foundation: f[0], Transport: f[2], Address: f[4], Type: f[7], RelPort: -1}
	comp, ok1 := parseUint(f[1], 256)
	prio, ok2 := parseUint(f[3], 1<<32-1)
	if !ok1 || comp == 0 || len(f[1]) > 3 || !ok2 || len(f[3]) > 10 ||
		len(f[0]) > 32 || !all(&iceTab, f[0]) || !all(&tokenTab, f[2]) ||
		string(f[6]) != "typ" || !all(&tokenTab, f[7]) || !validCandidateAddr(f[4]) {
		return KindBadAttribute
	}
	c.Component, c.Priority = int(comp), uint32(prio)
	p, ok := parsePort(f[5])
	if !ok {
		return KindBadPort
	}
	c.Port = p
	// raddr and rport, in this order, each optional; then extensions.
	s, e := field(v, i)
	if string(v[s:e]) == "raddr" {
		as, ae := field(v, e)
		if !validCandidateAddr(v[as:ae]) {
			return KindBadAttribute
		}
		c.RelAddr = v[as:ae]
		s, e = field(v, ae)
	}
	if string(v[s:e]) == "rport" {
		ps, pe := field(v, e)
		rp, ok := parsePort(v[ps:pe])
		if !ok {
			return KindBadPort
		}
		c.RelPort = rp
		s, e = field(v, pe)
	}
	if s != e {
		end := len(v)
		for end > s && v[end-1] == ' ' {
			end--
		}
		c.Ext = v[s:end]
	}
	return KindNone
}

func validCandidateAddr(a []byte) bool {
	return validIPv4(a) || validIPv6(a) || validFQDN(a)
}

// RTPMap is an a=rtpmap line: "payload encoding/clock[/params]".
type RTPMap struct {
	Payload   int
	Encoding  []byte // PCMU, opus, telephone-event, H264, ...
	ClockRate int
	Params    []byte // encoding parameters (audio: channels), nil when absent
	Line      int
}

// RTPMapIter iterates over a=rtpmap lines; a malformed one stops it (Err).
type RTPMapIter struct {
	it     AttrIter
	err    bool
	RTPMap RTPMap
}

// Next parses the next rtpmap; false at the end or on a malformed one.
func (r *RTPMapIter) Next() bool {
	if r.err || !r.it.Next() {
		return false
	}
	if !parseRTPMap(r.it.Attr.Value, &r.RTPMap) {
		r.err = true
		r.it.s.failAttr(KindBadAttribute, r.it.line(), r.it.i)
		return false
	}
	r.RTPMap.Line = r.it.Attr.Line
	return true
}

// Err returns the error that stopped the iteration, nil if none.
func (r *RTPMapIter) Err() error {
	if r.err {
		return &r.it.s.st.err
	}
	return nil
}

func parseRTPMap(v []byte, r *RTPMap) bool {
	ps, pe := field(v, 0)
	es, ee := field(v, pe)
	if s, e := field(v, ee); s != e {
		return false
	}
	pt, ok := parseUint(v[ps:pe], 127)
	if !ok {
		return false
	}
	enc := v[es:ee]
	sl := bytes.IndexByte(enc, '/')
	if sl <= 0 {
		return false
	}
	*r = RTPMap{Payload: int(pt), Encoding: enc[:sl]}
	rate := enc[sl+1:]
	if sl2 := bytes.IndexByte(rate, '/'); sl2 >= 0 {
		r.Params = rate[sl2+1:]
		rate = rate[:sl2]
		if !all(&tokenTab, r.Params) {
			return false
		}
	}
	n, ok := parseUint(rate, 1<<31-1)
	r.ClockRate = int(n)
	return ok && n > 0 && all(&tokenTab, r.Encoding)
}

// Fmtp is an a=fmtp line: "format parameters".
type Fmtp struct {
	Format []byte
	Params []byte
	Line   int
}

// FmtpIter iterates over a=fmtp lines; a malformed one stops it (Err).
type FmtpIter struct {
	it   AttrIter
	err  bool
	Fmtp Fmtp
}

// Next parses the next fmtp; false at the end or on a malformed one.
func (f *FmtpIter) Next() bool {
	if f.err || !f.it.Next() {
		return false
	}
	if !parseFmtp(f.it.Attr.Value, &f.Fmtp) {
		f.err = true
		f.it.s.failAttr(KindBadAttribute, f.it.line(), f.it.i)
		return false
	}
	f.Fmtp.Line = f.it.Attr.Line
	return true
}

// Err returns the error that stopped the iteration, nil if none.
func (f *FmtpIter) Err() error {
	if f.err {
		return &f.it.s.st.err
	}
	return nil
}

func parseFmtp(v []byte, f *Fmtp) bool {
	fs, fe := field(v, 0)
	if fs == fe {
		return false
	}
	ps := fe
	for ps < len(v) && v[ps] == ' ' {
		ps++
	}
	*f = Fmtp{Format: v[fs:fe], Params: v[ps:]}
	return true
}

// Crypto is an a=crypto line (RFC 4568): "tag suite key-params
// [session-params]".
type Crypto struct {
	Tag           uint32
	Suite         []byte // AES_CM_128_HMAC_SHA1_80, AEAD_AES_256_GCM, ...
	KeyParams     []byte // "inline:<key||salt>[|lifetime][|MKI:length]", several separated by ";"
	SessionParams []byte // nil when absent
	Line          int
}

// CryptoIter iterates over a=crypto lines; a malformed one stops it (Err).
type CryptoIter struct {
	it     AttrIter
	err    bool
	Crypto Crypto
}

// Next parses the next crypto line; false at the end or on a malformed one.
func (c *CryptoIter) Next() bool {
	if c.err || !c.it.Next() {
		return false
	}
	if !parseCrypto(c.it.Attr.Value, &c.Crypto) {
		c.err = true
		c.it.s.failAttr(KindBadAttribute, c.it.line(), c.it.i)
		return false
	}
	c.Crypto.Line = c.it.Attr.Line
	return true
}

// Err returns the error that stopped the iteration, nil if none.
func (c *CryptoIter) Err() error {
	if c.err {
		return &c.it.s.st.err
	}
	return nil
}

func parseCrypto(v []byte, c *Crypto) bool {
	ts, te := field(v, 0)
	ss, se := field(v, te)
	ks, ke := field(v, se)
	tag, ok := parseUint(v[ts:te], 999999999)
	if !ok || len(v[ts:te]) > 9 || !all(&tokenTab, v[ss:se]) || ks == ke {
		return false
	}
	*c = Crypto{Tag: uint32(tag), Suite: v[ss:se], KeyParams: v[ks:ke]}
	if s, _ := field(v, ke); s < len(v) {
		end := len(v)
		for end > s && v[end-1] == ' ' {
			end--
		}
		c.SessionParams = v[s:end]
	}
	return true
}

// Fingerprint is an a=fingerprint line (RFC 8122): "hash-func fingerprint".
type Fingerprint struct {
	Hash  []byte // sha-256, SHA-1, ...
	Value []byte // upper-case hex pairs separated by ":"
}

func parseFingerprint(v []byte, f *Fingerprint) bool {
	hs, he := field(v, 0)
	vs, ve := field(v, he)
	if s, e := field(v, ve); s != e || !all(&tokenTab, v[hs:he]) || !validHexPairs(v[vs:ve]) {
		return false
	}
	*f = Fingerprint{Hash: v[hs:he], Value: v[vs:ve]}
	return true
}

// validHexPairs accepts "AB:CD:..." (either case).
func validHexPairs(b []byte) bool {
	if len(b) < 2 || len(b)%3 != 2 {
		return false
	}
	for k, c := range b {
		if k%3 == 2 {
			if c != ':' {
				return false
			}
		} else if !hexTab[c] {
			return false
		}
	}
	return true
}

// Validate parses every attribute with a grammar the package knows
// (rtpmap, fmtp, candidate, crypto, fingerprint, setup, mid, ice-ufrag,
// ice-pwd) and returns the first error, nil if all are well formed. Parse
// checks only what the structure and the editor need.
func (s *Session) Validate() error {
	var (
		c  Candidate
		r  RTPMap
		f  Fmtp
		cr Crypto
		fp Fingerprint
	)
	for n := 0; n < s.st.nl; n++ {
		x := &s.lines[n]
		if x.typ != 'a' || x.attr == attrOther {
			continue
		}
		v := s.st.buf[x.vs:x.ve]
		k := KindNone
		switch x.attr {
		case attrCandidate:
			k = parseCandidate(v, &c)
		case attrRTPMap:
			k = okKind(parseRTPMap(v, &r))
		case attrFmtp:
			k = okKind(parseFmtp(v, &f))
		case attrCrypto:
			k = okKind(parseCrypto(v, &cr))
		case attrFingerprint:
			k = okKind(parseFingerprint(v, &fp))
		case attrSetup:
			switch string(v) {
			case "active", "passive", "actpass", "holdconn":
			default:
				k = KindBadAttribute
			}
		case attrMid:
			k = okKind(all(&tokenTab, v))
		case attrICEUfrag:
			k = okKind(all(&iceTab, v) && len(v) >= 4 && len(v) <= 256)
		case attrICEPwd:
			k = okKind(all(&iceTab, v) && len(v) >= 22 && len(v) <= 256)
		}
		if k != KindNone {
			return s.failAttr(k, x, n)
		}
	}
	return nil
}

func okKind(ok bool) ErrorKind {
	if ok {
		return KindNone
	}
	return KindBadAttribute
}
