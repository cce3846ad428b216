// Package parser turns SIP messages (RFC 3261) into indexed views of the
// bytes they arrived in, without allocating, and writes edited copies of
// them in one pass. See README.md for the API and the figures.
package parser

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// MaxHeaders is the largest number of header lines a message may have.
// Parse fails with KindTooManyHeaders beyond it; the fixed array keeps a
// Message free of heap allocations.
const MaxHeaders = 64

// DefaultMaxSize is the size limit used when Message.MaxSize is 0: the
// largest UDP datagram.
const DefaultMaxSize = 65535

// maxOffset bounds MaxSize so offsets fit the int32 fields of the index.
const maxOffset = 1<<31 - 1

// hdr is one header line: offsets into Message.buf.
type hdr struct {
	name    HeaderName
	start   int32 // first byte of the name
	nameEnd int32
	vs, ve  int32 // value, LWS trimmed, folding CRLFs kept inside
	end     int32 // first byte of the next line
}

// Message is a parsed SIP request or response. Every []byte it returns is a
// view into the buffer given to Parse and is valid until the next Parse or
// Reset; the caller must not modify that buffer meanwhile. A Message is
// reused across parses and never allocates. It is not safe for concurrent
// use: iterators and Validate record their errors in it.
type Message struct {
	// MaxSize limits the size of a message; 0 means DefaultMaxSize. It is
	// kept across Reset.
	MaxSize int

	st   state
	hdrs [MaxHeaders]hdr
}

// state is everything Reset clears (the header array is only overwritten).
type state struct {
	buf     []byte
	start   int // first byte of the start line (after leading CRLFs)
	hdrEnd  int // first byte of the body
	blank   int // first byte of the empty line that ends the headers
	end     int // end of the message (end of body)
	request bool
	method  Method
	status  int
	line1   [3][]byte // request: method, URI, version; response: version, code, reason
	nh      int
	first   [numHeaderNames]uint8 // index+1 of the first header of each name
	count   [numHeaderNames]uint8 // saturating count per name
	clen    int
	hasCL   bool
	maxFwd  int
	hasMF   bool
	ruri    URI
	via     Via
	viaEnd  int // offset after the top Via value (before "," or line end)
	from    NameAddr
	to      NameAddr
	callID  []byte
	cseq    CSeq
	err     Error
	src     netip.AddrPort // SetSource: for received/rport in responses
	srcPort bool           // SetSource: rport forced (force_rport)
}

// SetSource records the address a request came from, after Parse (which
// clears it). The responses AppendResponse builds for the request then carry
// on their top Via what the server transport adds on receipt (RFC 3261
// §18.2.1, RFC 3581): received=<source address> when the sent-by is not
// that address (or the Via asks for rport), and the source port in an rport
// parameter the Via carries, or adds one with forceRPort (OpenSIPS and
// Kamailio force_rport). A client behind NAT learns its public address from
// them, as it does from the responses a proxy relays.
func (m *Message) SetSource(src netip.AddrPort, forceRPort bool) {
	m.st.src, m.st.srcPort = src, forceRPort
}

// Reset clears the message so it holds nothing. Parse calls it.
func (m *Message) Reset() {
	m.st = state{}
}

func (m *Message) fail(k ErrorKind, off int, h HeaderName) *Error {
	m.st.err = Error{Kind: k, Offset: off, Header: h, Code: 400}
	if k == KindTooLarge || k == KindTooManyHeaders {
		m.st.err.Code = 513
	}
	return &m.st.err
}

func (m *Message) failHdr(k ErrorKind, x *hdr) *Error {
	e := m.fail(k, int(x.start), x.name)
	if x.name == HdrOther {
		e.Name = m.st.buf[x.start:x.nameEnd]
	}
	return e
}

// Parse parses one message from b (for UDP: one datagram). It never keeps
// a reference to b beyond the Message and never allocates.
//
// Octets after the body that Content-Length announces are ignored (RFC 3261
// §18.3); without Content-Length the body is the rest of b. The error, if
// any, is an *Error. When the start line and the header lines could be
// split (every kind except KindTooLarge, KindTooManyHeaders,
// KindNoHeaderEnd and an unrecognisable start line), the header index is
// complete, so a request can still be answered with AppendResponse.
func (m *Message) Parse(b []byte) error {
	m.st = state{buf: b}
	st := &m.st
	max := m.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	if max > maxOffset {
		max = maxOffset
	}
	if len(b) > max {
		return m.fail(KindTooLarge, max, HdrOther)
	}
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	st.start = i
	nl := bytes.IndexByte(b[i:], '\n')
	if nl < 0 {
		return m.fail(KindNoHeaderEnd, len(b), HdrOther)
	}
	le := i + nl
	if le > i && b[le-1] == '\r' {
		le--
	}
	var deferred *Error
	if e := m.parseStartLine(b[i:le], i); e != nil {
		if st.line1[0] == nil {
			return e
		}
		deferred = e
	}
	i += nl + 1

	// Header lines: name [SP/HT] ":" value. A line continues while the next
	// one starts with SP or HT. The common case (a name of 1-23 bytes
	// followed directly by the colon) needs no search for the name: the
	// colon is found eight bytes at a time and the name is looked up from
	// the words already loaded.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	const colons = 0x3a3a3a3a3a3a3a3a
	nh := 0
	for {
		if i >= len(b) {
			st.nh = nh
			return m.fail(KindNoHeaderEnd, i, HdrOther)
		}
		if c0 := b[i]; c0 == '\r' || c0 == '\n' {
			if c0 == '\n' {
				st.blank = i
				i++
				break
			}
			if i+1 < len(b) && b[i+1] == '\n' {
				st.blank = i
				i += 2
				break
			}
		}
		if nh == MaxHeaders {
			st.nh = nh
			return m.fail(KindTooManyHeaders, i, HdrOther)
		}
		c, nameEnd, name := -1, 0, HdrOther
		if i+16 <= len(b) {
			w := b[i : i+16 : i+16]
			w0 := binary.LittleEndian.Uint64(w[0:8])
			x := w0 ^ colons
			if t := (x - ones) &^ x & highs; t != 0 {
				n := bits.TrailingZeros64(t) >> 3
				if n > 1 && w[n-1] != ' ' && w[n-1] != '\t' {
					c, nameEnd, name = i+n, i+n, matchShort(n, w0)
				} else if n == 1 && w[0] > ' ' {
					c, nameEnd = i+1, i+1
					if l := w0 | 0x20; byte(l) >= 'a' && byte(l) <= 'z' {
						name = compactNames[byte(l)-'a']
					}
				}
			} else {
				w1 := binary.LittleEndian.Uint64(w[8:16])
				x = w1 ^ colons
				if t := (x - ones) &^ x & highs; t != 0 {
					n := 8 + bits.TrailingZeros64(t)>>3
					if w[n-1] != ' ' && w[n-1] != '\t' {
						c, nameEnd, name = i+n, i+n, matchMid(n, w0, w1)
					}
				} else if i+24 <= len(b) {
					w2 := binary.LittleEndian.Uint64(b[i+16 : i+24])
					x = w2 ^ colons
					if t := (x - ones) &^ x & highs; t != 0 {
						n := 16 + bits.TrailingZeros64(t)>>3
						if b[i+n-1] != ' ' && b[i+n-1] != '\t' {
							c, nameEnd, name = i+n, i+n, matchName(n, w0, w1, w2)
						}
					}
				}
			}
		}
		if c < 0 {
			// Short buffer, long name, SP before the colon, no colon.
			c, nameEnd, name = scanName(b, i)
		}
		j := c + 1
		if c < 0 {
			j = i
		}
		for {
			n := bytes.IndexByte(b[j:], '\n')
			if n < 0 {
				st.nh = nh
				return m.fail(KindNoHeaderEnd, len(b), HdrOther)
			}
			j += n
			j++ // past the LF
			if j >= len(b) || (b[j] != ' ' && b[j] != '\t') {
				break
			}
		}
		// A known name was matched byte for byte; an unknown one must be a
		// token, which also rules out a colon found on a later line.
		if c < 0 || (name == HdrOther && (nameEnd == i || skipToken(b, i) != nameEnd)) {
			if deferred == nil {
				x := hdr{start: int32(i), nameEnd: int32(skipToken(b, i))}
				deferred = m.failHdr(KindBadHeader, &x)
			}
			i = j
			continue
		}
		vs, ve := c+1, j-1 // j-1 is the LF
		if v := b[vs:ve]; len(v) >= 3 && v[0] == ' ' && v[1] > ' ' && v[len(v)-1] == '\r' && v[len(v)-2] > ' ' {
			// The usual ": value\r\n": one SP, nothing to trim (LWS
			// bytes are all <= SP).
			vs++
			ve--
		} else {
			if b[ve-1] == '\r' && ve > vs {
				ve--
			}
			if vs < ve && b[vs] == ' ' {
				vs++
			}
			if vs < ve && lwsTab[b[vs]] {
				vs = skipLWS(b[:ve], vs)
			}
			for ve > vs && lwsTab[b[ve-1]] {
				ve--
			}
		}
		x := &m.hdrs[nh]
		x.name, x.start, x.nameEnd, x.vs, x.ve, x.end = name, int32(i), int32(nameEnd), int32(vs), int32(ve), int32(j)
		nh++
		if st.first[name] == 0 {
			st.first[name] = uint8(nh)
		}
		if st.count[name] < 255 {
			st.count[name]++
		}
		i = j
	}
	st.nh = nh
	st.hdrEnd = i

	// Framing: Content-Length decides where the body ends.
	if e := m.frameBody(); e != nil {
		return e
	}
	if deferred != nil {
		return deferred
	}
	return m.parseCore()
}

// frameBody sets the body from Content-Length (all values must agree).
func (m *Message) frameBody() *Error {
	st := &m.st
	if c := st.count[HdrContentLength]; c == 1 {
		x := &m.hdrs[st.first[HdrContentLength]-1]
		n, ok := parseUint(st.buf[x.vs:x.ve], 1<<31-1)
		if !ok {
			return m.failHdr(KindBadContentLength, x)
		}
		st.clen, st.hasCL = int(n), true
		if st.clen > len(st.buf)-st.hdrEnd {
			return m.fail(KindShortBody, len(st.buf), HdrContentLength)
		}
		st.end = st.hdrEnd + st.clen
	} else if c > 1 {
		for k := 0; k < st.nh; k++ {
			x := &m.hdrs[k]
			if x.name != HdrContentLength {
				continue
			}
			n, ok := parseUint(st.buf[x.vs:x.ve], 1<<31-1)
			if !ok || (st.hasCL && int(n) != st.clen) {
				return m.failHdr(KindBadContentLength, x)
			}
			st.clen, st.hasCL = int(n), true
		}
		if st.clen > len(st.buf)-st.hdrEnd {
			return m.fail(KindShortBody, len(st.buf), HdrContentLength)
		}
		st.end = st.hdrEnd + st.clen
	} else {
		st.end = len(st.buf)
	}
	return nil
}

func isSIPVersion(v []byte) bool {
	if string(v) == "SIP/2.0" {
		return true
	}
	if len(v) < 7 || !eqFold(v[:4], "sip/") {
		return false
	}
	v = v[4:]
	dot := bytes.IndexByte(v, '.')
	if dot <= 0 || dot == len(v)-1 {
		return false
	}
	for k, c := range v {
		if k != dot && !digitTab[c] {
			return false
		}
	}
	return true
}

func (m *Message) parseStartLine(line []byte, off int) *Error {
	st := &m.st
	if len(line) >= 4 && eqFold(line[:4], "sip/") {
		// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
		var sp int
		var code, reason []byte
		if len(line) >= 12 && string(line[:8]) == "SIP/2.0 " && line[11] == ' ' {
			// the usual spelling; the code's digits are checked below
			sp, code, reason = 7, line[8:11], line[12:]
		} else {
			sp = bytes.IndexByte(line, ' ')
			if sp < 0 || !isSIPVersion(line[:sp]) {
				return m.fail(KindBadStartLine, off, HdrOther)
			}
			code = line[sp+1:]
			if sp2 := bytes.IndexByte(code, ' '); sp2 >= 0 {
				code, reason = code[:sp2], code[sp2+1:]
			} else {
				reason = code[len(code):]
			}
		}
		n, ok := parseUint(code, 999)
		if !ok || len(code) != 3 || n < 100 || n > 699 {
			return m.fail(KindBadStartLine, off+sp+1, HdrOther)
		}
		for _, c := range reason {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return m.fail(KindBadStartLine, off, HdrOther)
			}
		}
		st.line1 = [3][]byte{line[:sp], code, reason}
		st.status = int(n)
		return nil
	}
	// Request-Line = Method SP Request-URI SP SIP-Version
	// The method is a token ended by the first SP.
	sp1 := skipToken(line, 0)
	if sp1 == 0 || sp1 >= len(line) || line[sp1] != ' ' {
		return m.fail(KindBadStartLine, off, HdrOther)
	}
	st.request = true
	st.method = LookupMethod(line[:sp1])
	// The last SP; the usual version needs no search and no check.
	sp2, version := len(line)-8, true
	if sp2 <= sp1 || string(line[sp2:]) != " SIP/2.0" {
		sp2, version = bytes.LastIndexByte(line, ' '), false
	}
	st.line1 = [3][]byte{line[:sp1], line[sp1+1 : max(sp1+1, sp2)], line[sp2+1:]}
	if sp2 == sp1 {
		return m.fail(KindBadStartLine, off+sp1, HdrOther)
	}
	if !version && !isSIPVersion(st.line1[2]) {
		return m.fail(KindBadStartLine, off+sp2+1, HdrOther)
	}
	uri := st.line1[1]
	if st.ruri.parse(uri) != nil {
		// Extra SP (RFC 4475 §3.1.2.8-9) breaks the Request-Line itself.
		if len(uri) == 0 || bytes.IndexByte(uri, ' ') >= 0 || bytes.IndexByte(uri, '\t') >= 0 {
			return m.fail(KindBadStartLine, off+sp1+1, HdrOther)
		}
		return m.fail(KindBadRequestURI, off+sp1+1, HdrOther)
	}
	if (st.ruri.Scheme == SchemeSIP || st.ruri.Scheme == SchemeSIPS) && st.ruri.Headers != nil {
		// RFC 3261 §19.1.1: headers are not allowed in a Request-URI.
		return m.fail(KindBadRequestURI, off+sp1+1, HdrOther)
	}
	return nil
}

// firstHdr returns the first header named h, nil if absent.
func (m *Message) firstHdr(h HeaderName) *hdr {
	if f := m.st.first[h]; f != 0 {
		return &m.hdrs[f-1]
	}
	return nil
}

// duplicate fails with KindDuplicateHeader on the second header named h,
// if there is one.
func (m *Message) duplicate(h HeaderName) *Error {
	if m.st.count[h] < 2 {
		return nil
	}
	for k := int(m.st.first[h]); k < m.st.nh; k++ {
		if m.hdrs[k].name == h {
			return m.failHdr(KindDuplicateHeader, &m.hdrs[k])
		}
	}
	return nil
}

// parseCore parses the headers every message needs on the hot path: the
// top Via, From, To, Call-ID, CSeq and Max-Forwards, then checks that the
// mandatory ones are present and that CSeq matches the method.
func (m *Message) parseCore() error {
	st := &m.st
	b := st.buf
	if f := st.first[HdrVia]; f != 0 {
		x := &m.hdrs[f-1]
		n, ok := parseVia(b[:x.ve], int(x.vs), &st.via)
		if !ok {
			return m.failHdr(KindBadHeader, x)
		}
		st.viaEnd = n
	}
	// Duplicates of the single-valued headers are rare: one test for all,
	// then each is looked for in the order its errors are reported.
	dup := st.count[HdrFrom]|st.count[HdrTo]|st.count[HdrCallID]|st.count[HdrCSeq]|st.count[HdrMaxForwards] > 1
	if dup {
		if e := m.duplicate(HdrFrom); e != nil {
			return e
		}
	}
	if x := m.firstHdr(HdrFrom); x != nil {
		n, ok := parseNameAddr(b[:x.ve], int(x.vs), &st.from)
		if !ok || n != int(x.ve) {
			return m.failHdr(KindBadHeader, x)
		}
	}
	if dup {
		if e := m.duplicate(HdrTo); e != nil {
			return e
		}
	}
	if x := m.firstHdr(HdrTo); x != nil {
		n, ok := parseNameAddr(b[:x.ve], int(x.vs), &st.to)
		if !ok || n != int(x.ve) {
			return m.failHdr(KindBadHeader, x)
		}
	}
	if dup {
		if e := m.duplicate(HdrCallID); e != nil {
			return e
		}
	}
	if x := m.firstHdr(HdrCallID); x != nil {
		// Only emptiness is checked here; Validate checks the characters.
		// The Call-ID is an opaque key for the transaction layer.
		st.callID = b[x.vs:x.ve]
		if x.vs == x.ve {
			return m.failHdr(KindBadHeader, x)
		}
	}
	if dup {
		if e := m.duplicate(HdrCSeq); e != nil {
			return e
		}
	}
	if x := m.firstHdr(HdrCSeq); x != nil {
		var known []byte
		if st.request {
			known = st.line1[0]
		}
		if !parseCSeq(b[x.vs:x.ve], &st.cseq, known, st.method) {
			return m.failHdr(KindBadHeader, x)
		}
	}
	if dup {
		if e := m.duplicate(HdrMaxForwards); e != nil {
			return e
		}
	}
	if x := m.firstHdr(HdrMaxForwards); x != nil {
		n, ok := parseUint(b[x.vs:x.ve], 255)
		if !ok {
			return m.failHdr(KindBadHeader, x)
		}
		st.maxFwd, st.hasMF = int(n), true
	}
	if st.first[HdrTo] == 0 || st.first[HdrFrom] == 0 || st.first[HdrCallID] == 0 ||
		st.first[HdrCSeq] == 0 || st.first[HdrVia] == 0 {
		for _, h := range [5]HeaderName{HdrTo, HdrFrom, HdrCallID, HdrCSeq, HdrVia} {
			if st.first[h] == 0 {
				return m.fail(KindMissingHeader, st.hdrEnd, h)
			}
		}
	}
	if st.request && string(st.cseq.MethodRaw) != string(st.line1[0]) {
		e := m.failHdr(KindCSeqMismatch, &m.hdrs[st.first[HdrCSeq]-1])
		if st.method == MethodOther {
			e.Code = 501
		}
		return e
	}
	return nil
}

func validCallID(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	at := false
	for k, c := range v {
		if c == '@' {
			if at || k == 0 || k == len(v)-1 {
				return false
			}
			at = true
			continue
		}
		if !wordTab[c] {
			return false
		}
	}
	return true
}

// Bytes returns the message as parsed: from the start line to the end of
// the body (leading CRLFs and trailing datagram octets excluded).
func (m *Message) Bytes() []byte {
	if m.st.end < m.st.start {
		return nil // Parse failed before framing
	}
	return m.st.buf[m.st.start:m.st.end]
}

// Buffer returns the whole buffer given to Parse.
func (m *Message) Buffer() []byte { return m.st.buf }

// IsRequest reports whether the message is a request.
func (m *Message) IsRequest() bool { return m.st.request }

// Method returns the request method (MethodOther for unknown methods and
// for responses; see CSeq for a response's method).
func (m *Message) Method() Method { return m.st.method }

// MethodBytes returns the request method as sent.
func (m *Message) MethodBytes() []byte {
	if !m.st.request {
		return nil
	}
	return m.st.line1[0]
}

// RequestURI returns the Request-URI as sent.
func (m *Message) RequestURI() []byte {
	if !m.st.request {
		return nil
	}
	return m.st.line1[1]
}

// RURI returns the parsed Request-URI (Scheme is SchemeOther for schemes
// other than sip, sips and tel). The pointer is into m: read only.
func (m *Message) RURI() *URI { return &m.st.ruri }

// Version returns the SIP-Version of the start line, e.g. "SIP/2.0".
func (m *Message) Version() []byte {
	if m.st.request {
		return m.st.line1[2]
	}
	return m.st.line1[0]
}

// StatusCode returns the status code of a response, 0 for a request.
func (m *Message) StatusCode() int { return m.st.status }

// Reason returns the reason phrase of a response (possibly empty).
func (m *Message) Reason() []byte {
	if m.st.request {
		return nil
	}
	return m.st.line1[2]
}

// Body returns the body (empty if none).
func (m *Message) Body() []byte {
	if m.st.end < m.st.hdrEnd {
		return nil // Parse failed before framing
	}
	return m.st.buf[m.st.hdrEnd:m.st.end]
}

// ContentLength returns the Content-Length value and whether the header
// was present.
func (m *Message) ContentLength() (int, bool) { return m.st.clen, m.st.hasCL }

// CallID returns the Call-ID value.
func (m *Message) CallID() []byte { return m.st.callID }

// CSeq returns the parsed CSeq.
func (m *Message) CSeq() CSeq { return m.st.cseq }

// MaxForwards returns the Max-Forwards value and whether it was present.
func (m *Message) MaxForwards() (int, bool) { return m.st.maxFwd, m.st.hasMF }

// TopVia returns the first Via value. The pointer is into m: read only.
func (m *Message) TopVia() *Via { return &m.st.via }

// From returns the parsed From header. The pointer is into m: read only.
func (m *Message) From() *NameAddr { return &m.st.from }

// To returns the parsed To header. The pointer is into m: read only.
func (m *Message) To() *NameAddr { return &m.st.to }

// FromTag returns the From tag, nil if there is none (RFC 2543 peers).
func (m *Message) FromTag() []byte { return m.st.from.Tag }

// ToTag returns the To tag, nil if there is none.
func (m *Message) ToTag() []byte { return m.st.to.Tag }

// NumHeaders returns the number of header lines.
func (m *Message) NumHeaders() int { return m.st.nh }

// Header is one header line of a message, as returned by HeaderAt.
type Header struct {
	Name    HeaderName
	RawName []byte // as sent: "v", "VIA", "X-Foo"
	Value   []byte // LWS-trimmed; folded lines keep their CRLF + LWS inside
	Line    []byte // the whole line including its CRLF
}

// HeaderAt returns header line i (0 <= i < NumHeaders) in message order.
func (m *Message) HeaderAt(i int) Header {
	x := &m.hdrs[i]
	b := m.st.buf
	return Header{Name: x.name, RawName: b[x.start:x.nameEnd], Value: b[x.vs:x.ve], Line: b[x.start:x.end]}
}

// Get returns the value of the first header named h, nil if absent. For
// HdrOther use GetByName.
func (m *Message) Get(h HeaderName) []byte {
	if h == HdrOther || h >= numHeaderNames {
		return nil
	}
	f := m.st.first[h]
	if f == 0 {
		return nil
	}
	x := &m.hdrs[f-1]
	return m.st.buf[x.vs:x.ve]
}

// Has reports whether a header named h is present.
func (m *Message) Has(h HeaderName) bool { return h < numHeaderNames && m.st.first[h] != 0 }

// Count returns how many header lines are named h.
func (m *Message) Count(h HeaderName) int {
	if h >= numHeaderNames {
		return 0
	}
	return int(m.st.count[h])
}

// GetByName returns the value of the first header whose name equals name
// (case-insensitive, compact forms resolved), nil if absent.
func (m *Message) GetByName(name []byte) []byte {
	h := LookupHeader(name)
	if h != HdrOther {
		return m.Get(h)
	}
	for k := 0; k < m.st.nh; k++ {
		x := &m.hdrs[k]
		if x.name == HdrOther && EqualFold(m.st.buf[x.start:x.nameEnd], name) {
			return m.st.buf[x.vs:x.ve]
		}
	}
	return nil
}

// indexColon returns the index of the first ':' at or after i, -1 if none.
// Header names are short, so it tests eight bytes at a time rather than
// paying for a bytes.IndexByte call per line.
func indexColon(b []byte, i int) int {
	const ones, highs, colons = 0x0101010101010101, 0x8080808080808080, 0x3a3a3a3a3a3a3a3a
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:]) ^ colons
		if t := (x - ones) &^ x & highs; t != 0 {
			return i + bits.TrailingZeros64(t)/8
		}
		i += 8
	}
	if k := bytes.IndexByte(b[i:], ':'); k >= 0 {
		return i + k
	}
	return -1
}

// off returns the offset in the parse buffer of a view taken from it.
func (m *Message) off(v []byte) int { return cap(m.st.buf) - cap(v) }
