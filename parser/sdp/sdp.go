// Package sdp turns SDP bodies (RFC 8866, formerly RFC 4566) into indexed
// views of the bytes they arrived in, without allocating, and writes
// edited copies of them in one pass: what a proxy needs to fix the
// addresses of a phone behind NAT or to hand a body to a media relay. It
// follows package parser: a Session holds the body and fixed arrays of
// offsets, every field it returns is a view into the body, and an Editor
// records splices that AppendTo writes. See README.md.
package sdp

import (
	"bytes"
	"net/netip"
)

const (
	// MaxMedia is the largest number of m= sections of a body.
	MaxMedia = 16
	// MaxLines is the largest number of lines of a body, all sections
	// together. One index serves every section: a WebRTC video section
	// alone carries over a hundred a= lines, so a bound per section that
	// fits sixteen sections in a fixed array would reject it.
	MaxLines = 512
	// MaxLineLength is the longest line accepted, its line ending not
	// counted.
	MaxLineLength = 4096
	// DefaultMaxSize is the size limit used when Session.MaxSize is 0.
	DefaultMaxSize = 65535
	// SessionLevel is the section index of the session-level lines (the
	// lines before the first m=) in the methods that take one; media
	// sections are 0 to NumMedia()-1.
	SessionLevel = -1
)

// maxOffset keeps offsets within the int32 fields of the line index.
const maxOffset = 1<<31 - 1

// line is one line of the body: offsets into Session.st.buf.
type line struct {
	start int32 // the type letter
	vs    int32 // the value: after "x=", or after "name:" for an attribute
	ve    int32 // end of the value, before CR LF or LF
	typ   byte
	attr  attrKind // a= lines: the known attribute, attrOther
}

// section is what the parser indexes of the session level and of each
// media section.
type section struct {
	first, end int // lines[first:end]; a media section starts at its m=
	conn       Connection
	connLine   int // index of the c= line, -1 when none
	dir        Direction
	rtcp       RTCP
	rtcpLine   int // index of the a=rtcp line, -1 when none
	mux        bool
}

func newSection(first int) section {
	return section{first: first, connLine: -1, rtcpLine: -1}
}

// Session is a parsed session description. Every []byte it returns is a
// view into the body given to Parse and is valid until the next Parse;
// the caller must not modify the body meanwhile. A Session is reused
// across parses and never allocates; it is not safe for concurrent use
// (the iterators and Validate record their errors in it) and must not be
// copied after Parse (its Media point back at it).
type Session struct {
	// MaxSize limits the size of a body; 0 means DefaultMaxSize.
	MaxSize int

	st    state
	media [MaxMedia]Media
	lines [MaxLines]line
}

// state is everything Parse clears; the arrays are only overwritten.
type state struct {
	buf       []byte
	tail      int // end of the last line, its line ending included
	nl, nm    int // lines, media sections
	origin    Origin
	hasOrigin bool
	name      []byte
	hasName   bool
	timing    Timing
	ntiming   int
	sess      section
	crlf      bool // the first line ends in CR LF: new lines get the same
	err       Error
}

// Origin is the o= line: "username sess-id sess-version nettype addrtype
// unicast-address".
type Origin struct {
	Username, SessID, SessVersion, NetType, AddrType, Address []byte
}

// Connection is a c= line: "nettype addrtype address[/ttl][/count]".
// Address is the address alone; TTL (IPv4 multicast) and Count (the
// number of multicast addresses) are 0 when absent.
type Connection struct {
	NetType, AddrType, Address []byte
	TTL, Count                 int
}

// Addr returns the address as a netip.Addr; ok is false for a name.
func (c *Connection) Addr() (netip.Addr, bool) { return ParseAddr(c.Address) }

// Timing is the first t= line ("start stop", NTP seconds; 0 0 is a
// session without bounds).
type Timing struct {
	Start, Stop uint64
}

// RTCP is an a=rtcp attribute (RFC 3605): the port and, when given, the
// address RTCP goes to. Address is nil when the attribute has only a port.
type RTCP struct {
	Port                       int
	NetType, AddrType, Address []byte
}

// Direction is the media direction attribute (RFC 3264 §5.1).
type Direction uint8

const (
	DirNone  Direction = iota // no direction attribute
	SendRecv                  // a=sendrecv, the default
	SendOnly                  // a=sendonly
	RecvOnly                  // a=recvonly
	Inactive                  // a=inactive
)

var dirNames = [...]string{"", "sendrecv", "sendonly", "recvonly", "inactive"}

// String returns the attribute name, "" for DirNone.
func (d Direction) String() string {
	if int(d) < len(dirNames) {
		return dirNames[d]
	}
	return ""
}

// Media is one m= section. Type, Proto and Formats are views into the body.
type Media struct {
	Type     []byte // audio, video, application, image, ...
	Port     int    // 0 for a disabled or bundled-only stream
	NumPorts int    // the "/2" of "49170/2"; 0 when absent
	Proto    []byte // RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, udptl, ...
	Formats  []byte // the format list as written: "0 8 101"

	sec section
	s   *Session
	idx int
}

// Parse parses one SDP body. It never allocates and keeps no reference
// to b beyond the Session. The error, if any, is an *Error that says what
// is wrong and on which line.
//
// Lines end in CR LF or LF (mixed is accepted); the last line may lack
// its line ending, and line endings may follow it (they are kept). An
// empty line anywhere else, a line that is not "<letter>=<value>", or a
// line over MaxLineLength is an error. v= must come first; o=, s= and t=
// are required at session level; every media section with a port needs a
// c= of its own or at session level. Beyond that the order of lines is
// not checked: devices in the wild misorder them and nothing here
// depends on it. After an error the Session holds nothing to rely on
// beyond the Error.
func (s *Session) Parse(b []byte) error {
	s.st = state{buf: b, sess: newSection(0)}
	st := &s.st
	max := s.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	if max > maxOffset {
		max = maxOffset
	}
	if len(b) > max {
		return s.fail(KindTooLarge, 0, max, 0)
	}
	sec := &st.sess
	i := 0
	for i < len(b) {
		ve, next := len(b), len(b)
		if nl := bytes.IndexByte(b[i:], '\n'); nl >= 0 {
			ve, next = i+nl, i+nl+1
		}
		n := st.nl
		if ve > i && b[ve-1] == '\r' {
			ve--
			st.crlf = st.crlf || n == 0
		}
		if ve == i {
			// An empty line: only the line endings that close the body.
			if onlyLineEnds(b[i:]) {
				break
			}
			return s.fail(KindBadLine, n+1, i, 0)
		}
		typ := b[i]
		if ve-i < 2 || b[i+1] != '=' || typ < 'a' || typ > 'z' {
			return s.fail(KindBadLine, n+1, i, 0)
		}
		if ve-i > MaxLineLength {
			return s.fail(KindLineTooLong, n+1, i, typ)
		}
		if n == MaxLines {
			return s.fail(KindTooManyLines, n+1, i, typ)
		}
		if n == 0 && typ != 'v' {
			return s.fail(KindMissingVersion, 1, i, typ)
		}
		x := &s.lines[n]
		*x = line{start: int32(i), vs: int32(i + 2), ve: int32(ve), typ: typ}
		st.nl++
		if typ == 'm' {
			if st.nm == MaxMedia {
				return s.fail(KindTooManyMedia, n+1, i, typ)
			}
			sec.end = n
			m := &s.media[st.nm]
			*m = Media{sec: newSection(n), s: s, idx: st.nm}
			st.nm++
			sec = &m.sec
			if e := s.parseMedia(m, x, n); e != nil {
				return e
			}
		} else if e := s.parseLine(x, n, sec); e != nil {
			return e
		}
		i = next
		st.tail = next
	}
	sec.end = st.nl
	return s.finish()
}

// onlyLineEnds reports whether b holds nothing but CR and LF.
func onlyLineEnds(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// parseLine checks and indexes one line other than m=.
func (s *Session) parseLine(x *line, n int, sec *section) *Error {
	st := &s.st
	b := st.buf
	val := b[x.vs:x.ve]
	media := sec != &st.sess
	switch x.typ {
	case 'v':
		if n != 0 {
			return s.failLine(KindDuplicateLine, x, n)
		}
		if string(val) != "0" {
			return s.failLine(KindBadVersion, x, n)
		}
	case 'o':
		if media {
			return s.failLine(KindMisplacedLine, x, n)
		}
		if st.hasOrigin {
			return s.failLine(KindDuplicateLine, x, n)
		}
		if !parseOrigin(val, &st.origin) {
			return s.failLine(KindBadOrigin, x, n)
		}
		st.hasOrigin = true
	case 's':
		if media {
			return s.failLine(KindMisplacedLine, x, n)
		}
		if st.hasName {
			return s.failLine(KindDuplicateLine, x, n)
		}
		st.name, st.hasName = val, true
	case 't':
		if media {
			return s.failLine(KindMisplacedLine, x, n)
		}
		var t Timing
		if !parseTiming(val, &t) {
			return s.failLine(KindBadTiming, x, n)
		}
		if st.ntiming == 0 {
			st.timing = t
		}
		st.ntiming++
	case 'u', 'e', 'p', 'r', 'z':
		if media {
			return s.failLine(KindMisplacedLine, x, n)
		}
	case 'c':
		if sec.connLine >= 0 {
			return s.failLine(KindDuplicateLine, x, n)
		}
		if !parseConnection(val, &sec.conn) {
			return s.failLine(KindBadConnection, x, n)
		}
		sec.connLine = n
	case 'b':
		if _, _, ok := parseBandwidth(val); !ok {
			return s.failLine(KindBadBandwidth, x, n)
		}
	case 'a':
		return s.parseAttr(x, n, sec)
	}
	// i=, k= and letters RFC 8866 does not define are kept as they are.
	return nil
}

// parseAttr indexes an a= line: its name, and the attributes the parser
// keeps per section (direction, rtcp, rtcp-mux).
func (s *Session) parseAttr(x *line, n int, sec *section) *Error {
	b := s.st.buf
	val := b[x.vs:x.ve]
	// The name is a token up to ":" or the end of the line.
	k := 0
	for k < len(val) && tokenTab[val[k]] {
		k++
	}
	name := val[:k]
	switch {
	case k == len(val):
		x.vs = x.ve
	case val[k] == ':':
		x.vs += int32(k + 1)
	default:
		k = 0 // a byte that is neither a token byte nor ":"
	}
	if k == 0 {
		e := s.failLine(KindBadAttribute, x, n)
		if c := bytes.IndexByte(val, ':'); c > 0 {
			e.Attr = val[:c]
		} else if c < 0 && len(val) > 0 {
			e.Attr = val
		}
		return e
	}
	x.attr = lookupAttr(name)
	switch x.attr {
	case attrSendRecv, attrSendOnly, attrRecvOnly, attrInactive:
		d := Direction(x.attr-attrSendRecv) + SendRecv
		if sec.dir != DirNone && sec.dir != d {
			// two different directions: the section means nothing
			return s.failAttr(KindBadAttribute, x, n)
		}
		sec.dir = d
	case attrRTCP:
		if sec.rtcpLine >= 0 {
			return s.failAttr(KindBadAttribute, x, n)
		}
		if k := parseRTCP(b[x.vs:x.ve], &sec.rtcp); k != KindNone {
			return s.failAttr(k, x, n)
		}
		sec.rtcpLine = n
	case attrRTCPMux:
		sec.mux = true
	}
	return nil
}

// parseMedia parses "m=<media> <port>[/<number of ports>] <proto> <fmt> ...".
func (s *Session) parseMedia(m *Media, x *line, n int) *Error {
	b := s.st.buf
	v := b[:x.ve]
	ts, te := field(v, int(x.vs))
	if !all(&tokenTab, v[ts:te]) {
		return s.failLine(KindBadMedia, x, n)
	}
	m.Type = v[ts:te]
	ps, pe := field(v, te)
	port := v[ps:pe]
	if sl := bytes.IndexByte(port, '/'); sl >= 0 {
		c, ok := parseUint(port[sl+1:], 65535)
		if !ok || c == 0 {
			return s.fail(KindBadMedia, n+1, ps+sl+1, 'm')
		}
		m.NumPorts = int(c)
		port = port[:sl]
	}
	p, ok := parsePort(port)
	if !ok {
		return s.fail(KindBadPort, n+1, ps, 'm')
	}
	m.Port = p
	rs, re := field(v, pe)
	if !validProto(v[rs:re]) {
		return s.fail(KindBadMedia, n+1, rs, 'm')
	}
	m.Proto = v[rs:re]
	fs, fe := field(v, re)
	if fs == fe {
		if p != 0 {
			// RFC 8866 §5.14: at least one format; a rejected stream
			// without one is accepted (seen from gateways).
			return s.fail(KindBadMedia, n+1, fs, 'm')
		}
	}
	for fe = len(v); fe > fs && v[fe-1] == ' '; fe-- {
	}
	m.Formats = v[fs:fe]
	return nil
}

// validProto accepts tokens separated by "/": RTP/AVP, UDP/TLS/RTP/SAVPF, udptl.
func validProto(p []byte) bool {
	if len(p) == 0 || p[0] == '/' || p[len(p)-1] == '/' {
		return false
	}
	for _, c := range p {
		if !tokenTab[c] && c != '/' {
			return false
		}
	}
	return true
}

// finish checks what needs the whole body: the required lines and a
// connection for every media section with a port.
func (s *Session) finish() error {
	st := &s.st
	switch {
	case st.nl == 0:
		return s.fail(KindMissingVersion, 1, 0, 0)
	case !st.hasOrigin:
		return s.fail(KindMissingOrigin, 0, 0, 0)
	case !st.hasName:
		return s.fail(KindMissingName, 0, 0, 0)
	case st.ntiming == 0:
		return s.fail(KindMissingTiming, 0, 0, 0)
	}
	if st.sess.connLine < 0 {
		for k := 0; k < st.nm; k++ {
			m := &s.media[k]
			if m.sec.connLine < 0 && m.Port != 0 {
				return s.failLine(KindMissingConnection, &s.lines[m.sec.first], m.sec.first)
			}
		}
	}
	return nil
}

func (s *Session) fail(k ErrorKind, lineNo, off int, typ byte) *Error {
	s.st.err = Error{Kind: k, Line: lineNo, Offset: off, Type: typ}
	return &s.st.err
}

// failLine fails on line index n (its number is n+1: only the line
// endings that close the body may be empty, so lines are never skipped).
func (s *Session) failLine(k ErrorKind, x *line, n int) *Error {
	return s.fail(k, n+1, int(x.start), x.typ)
}

// failAttr fails on an a= line, naming the attribute.
func (s *Session) failAttr(k ErrorKind, x *line, n int) *Error {
	e := s.failLine(k, x, n)
	e.Attr = s.attrName(x)
	return e
}

// off returns the offset of a view into the body.
func (s *Session) off(v []byte) int { return cap(s.st.buf) - cap(v) }

// parseOrigin splits the six fields of o=.
func parseOrigin(v []byte, o *Origin) bool {
	var f [6][]byte
	i := 0
	for k := range f {
		s, e := field(v, i)
		if s == e {
			return false
		}
		f[k], i = v[s:e], e
	}
	if s, e := field(v, i); s != e {
		return false
	}
	if !all(&tokenTab, f[3]) || !all(&tokenTab, f[4]) || !validAddress(f[4], f[5]) {
		return false
	}
	*o = Origin{Username: f[0], SessID: f[1], SessVersion: f[2], NetType: f[3], AddrType: f[4], Address: f[5]}
	return true
}

// parseConnection parses "nettype addrtype address[/ttl][/count]". IPv4
// multicast carries a TTL and optionally a count, IPv6 only a count
// (RFC 8866 §5.7).
func parseConnection(v []byte, c *Connection) bool {
	ns, ne := field(v, 0)
	as, ae := field(v, ne)
	cs, ce := field(v, ae)
	if s, e := field(v, ce); s != e || !all(&tokenTab, v[ns:ne]) || !all(&tokenTab, v[as:ae]) {
		return false
	}
	*c = Connection{NetType: v[ns:ne], AddrType: v[as:ae]}
	addr := v[cs:ce]
	var suffix []byte
	if sl := bytes.IndexByte(addr, '/'); sl >= 0 {
		addr, suffix = addr[:sl], addr[sl+1:]
	}
	if !validAddress(c.AddrType, addr) {
		return false
	}
	c.Address = addr
	if suffix == nil {
		return true
	}
	first, second := suffix, []byte(nil)
	if sl := bytes.IndexByte(suffix, '/'); sl >= 0 {
		first, second = suffix[:sl], suffix[sl+1:]
	}
	switch string(c.AddrType) {
	case "IP4":
		ttl, ok := parseUint(first, 255)
		if !ok {
			return false
		}
		c.TTL = int(ttl)
		if second != nil {
			n, ok := parseUint(second, 65535)
			if !ok || n == 0 {
				return false
			}
			c.Count = int(n)
		}
	case "IP6":
		n, ok := parseUint(first, 65535)
		if !ok || n == 0 || second != nil {
			return false
		}
		c.Count = int(n)
	default:
		return false
	}
	return true
}

// parseTiming parses "start stop".
func parseTiming(v []byte, t *Timing) bool {
	ss, se := field(v, 0)
	es, ee := field(v, se)
	if s, e := field(v, ee); s != e {
		return false
	}
	a, ok1 := parseUint(v[ss:se], 1<<63)
	z, ok2 := parseUint(v[es:ee], 1<<63)
	t.Start, t.Stop = a, z
	return ok1 && ok2
}

// parseBandwidth parses "bwtype:bandwidth" (kilobits per second for AS
// and CT, bits per second for TIAS).
func parseBandwidth(v []byte) (typ []byte, n uint64, ok bool) {
	c := bytes.IndexByte(v, ':')
	if c < 0 || !all(&tokenTab, v[:c]) {
		return nil, 0, false
	}
	n, ok = parseUint(v[c+1:], 1<<63)
	return v[:c], n, ok
}

// parseRTCP parses "port [nettype addrtype address]" (RFC 3605).
func parseRTCP(v []byte, r *RTCP) ErrorKind {
	ps, pe := field(v, 0)
	p, ok := parsePort(v[ps:pe])
	if !ok {
		return KindBadPort
	}
	*r = RTCP{Port: p}
	ns, ne := field(v, pe)
	if ns == ne {
		return KindNone
	}
	as, ae := field(v, ne)
	cs, ce := field(v, ae)
	if s, e := field(v, ce); s != e || !all(&tokenTab, v[ns:ne]) || !all(&tokenTab, v[as:ae]) ||
		!validAddress(v[as:ae], v[cs:ce]) {
		return KindBadAttribute
	}
	r.NetType, r.AddrType, r.Address = v[ns:ne], v[as:ae], v[cs:ce]
	return KindNone
}
