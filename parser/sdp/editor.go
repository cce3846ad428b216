package sdp

import (
	"bytes"
	"strconv"
)

// MaxEdits is how many splices one Editor holds (removals of adjacent
// lines share one). Every edit method returns false instead of recording
// an edit beyond it.
const MaxEdits = 64

type opKind uint8

const (
	opBytes    opKind = iota // a
	opNum                    // n
	opAddr                   // a SP b (addrtype, address)
	opAttr                   // "a=" name [":" a] EOL
	opAttrBody               // name [":" a], replacing what follows "a="
	opConn                   // "c=IN " a SP b EOL
	opRTCPAddr               // " IN " a SP b
	opRTCPLine               // "a=rtcp:" n [" IN " a SP b] EOL
)

// splice replaces buf[start:end] (an insertion when start == end).
type splice struct {
	start, end int32
	seq        int32
	kind       opKind
	name       string
	a, b       []byte
	n          int
}

// Editor records changes to a parsed Session as splices and writes the
// changed body in one pass with AppendTo; what is not edited is copied
// byte for byte. Offsets always refer to the body as parsed: edits do not
// see each other (two edits of the same line are not meaningful, and an
// edit inside a removed line is dropped).
//
// Sections are numbered as in Session.Media, SessionLevel for the session
// level. New lines take the line ending of the body's first line. The
// Editor keeps references to the []byte values it is given until
// AppendTo; it copies nothing and allocates nothing. Values are written
// as given; the methods refuse (return false) a value holding CR, LF or
// NUL and an attribute name that is not a token.
type Editor struct {
	s   *Session
	ops [MaxEdits]splice
	n   int
}

// Reset starts a new set of edits on s, which must have parsed without error.
func (e *Editor) Reset(s *Session) {
	e.s = s
	e.n = 0
}

// Session returns the session being edited.
func (e *Editor) Session() *Session { return e.s }

func (e *Editor) add(op splice) bool {
	if op.kind == opBytes && op.a == nil && e.n > 0 {
		// Removals of adjacent lines (every candidate of a section) share
		// a splice, unless a line is to be inserted between them.
		if p := &e.ops[e.n-1]; p.kind == opBytes && p.a == nil && p.end == op.start && p.start < p.end && !e.insertsAt(op.start) {
			p.end = op.end
			return true
		}
	}
	if e.n == MaxEdits {
		return false
	}
	op.seq = int32(e.n)
	e.ops[e.n] = op
	e.n++
	return true
}

func (e *Editor) insertsAt(pos int32) bool {
	for k := 0; k < e.n; k++ {
		if e.ops[k].start == pos && e.ops[k].end == pos {
			return true
		}
	}
	return false
}

// sec returns section i, nil when out of range.
func (e *Editor) sec(i int) *section {
	if i == SessionLevel {
		return &e.s.st.sess
	}
	if i < 0 || i >= e.s.st.nm {
		return nil
	}
	return &e.s.media[i].sec
}

// next returns where the line after line n starts (the end of the body's
// last line, its line ending included, for the last).
func (e *Editor) next(n int) int {
	if n+1 < e.s.st.nl {
		return int(e.s.lines[n+1].start)
	}
	return e.s.st.tail
}

// sectionEnd is where a line added to a section goes: after its last line.
func (e *Editor) sectionEnd(sec *section) int {
	if sec.end == 0 {
		return 0
	}
	return e.next(sec.end - 1)
}

func (e *Editor) remove(n int) bool {
	return e.add(splice{start: e.s.lines[n].start, end: int32(e.next(n))})
}

// clean reports whether a value may be written into a line.
func clean(v []byte) bool {
	for _, c := range v {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func cleanName(name string) bool {
	for k := 0; k < len(name); k++ {
		if !tokenTab[name[k]] {
			return false
		}
	}
	return len(name) > 0
}

// SetOriginAddress replaces the address type and address of o= (nathelper's
// fix_nated_sdp flag 8, rtpengine's replace-origin).
func (e *Editor) SetOriginAddress(addrType, addr []byte) bool {
	o := &e.s.st.origin
	if !e.s.st.hasOrigin || !clean(addrType) || !clean(addr) {
		return false
	}
	st := e.s.off(o.AddrType)
	return e.add(splice{start: int32(st), end: int32(e.s.off(o.Address) + len(o.Address)), kind: opAddr, a: addrType, b: addr})
}

// SetConnection sets the c= of section i to "IN addrType addr": the whole
// connection address is replaced (a multicast TTL or count goes with it).
// A section without a c= line gets one, in its place after m= (or after
// s=, i=, u=, e=, p= at session level).
func (e *Editor) SetConnection(i int, addrType, addr []byte) bool {
	sec := e.sec(i)
	if sec == nil || !clean(addrType) || !clean(addr) {
		return false
	}
	if sec.connLine >= 0 {
		return e.replaceConn(sec, addrType, addr)
	}
	pos := e.connPlace(sec, i != SessionLevel)
	return e.add(splice{start: int32(pos), end: int32(pos), kind: opConn, a: addrType, b: addr})
}

// connPlace is where a c= line goes in a section that has none, in the
// RFC 8866 order (v o s i u e p c b t r z k a; m i c b k a): before the
// first line that follows c=, else at the end.
func (e *Editor) connPlace(sec *section, media bool) int {
	k := sec.first
	if media {
		k++ // past m=
	}
	for ; k < sec.end; k++ {
		switch x := &e.s.lines[k]; x.typ {
		case 'b', 't', 'r', 'z', 'k', 'a':
			return int(x.start)
		}
	}
	return e.sectionEnd(sec)
}

func (e *Editor) replaceConn(sec *section, addrType, addr []byte) bool {
	c := &sec.conn
	x := &e.s.lines[sec.connLine]
	st := e.s.off(c.AddrType)
	return e.add(splice{start: int32(st), end: x.ve, kind: opAddr, a: addrType, b: addr})
}

// SetConnections replaces the address of every c= line of the body,
// session level and media (nathelper's fix_nated_sdp flag 2). It returns
// false when there is none or the edits do not fit.
func (e *Editor) SetConnections(addrType, addr []byte) bool {
	if !clean(addrType) || !clean(addr) {
		return false
	}
	found := false
	for i := SessionLevel; i < e.s.st.nm; i++ {
		if sec := e.sec(i); sec.connLine >= 0 {
			if !e.replaceConn(sec, addrType, addr) {
				return false
			}
			found = true
		}
	}
	return found
}

// SetPort replaces the port of media section i (a port count is kept).
func (e *Editor) SetPort(i, port int) bool {
	if i < 0 || i >= e.s.st.nm || port < 0 || port > 65535 {
		return false
	}
	x := &e.s.lines[e.s.media[i].sec.first]
	b := e.s.st.buf[:x.ve]
	_, te := field(b, int(x.vs))
	ps, pe := field(b, te)
	if sl := bytes.IndexByte(b[ps:pe], '/'); sl >= 0 {
		pe = ps + sl
	}
	return e.add(splice{start: int32(ps), end: int32(pe), kind: opNum, n: port})
}

// SetRTCP sets the a=rtcp attribute of media section i (RFC 3605): its
// port unless port < 0, and its address unless addr is nil (added when
// the attribute had none). Without an a=rtcp line, one is added when
// port >= 0.
func (e *Editor) SetRTCP(i, port int, addrType, addr []byte) bool {
	if i < 0 || i >= e.s.st.nm || port > 65535 || !clean(addrType) || !clean(addr) {
		return false
	}
	sec := &e.s.media[i].sec
	if sec.rtcpLine < 0 {
		if port < 0 {
			return false
		}
		pos := e.sectionEnd(sec)
		return e.add(splice{start: int32(pos), end: int32(pos), kind: opRTCPLine, n: port, a: addrType, b: addr})
	}
	x := &e.s.lines[sec.rtcpLine]
	b := e.s.st.buf[:x.ve]
	ps, pe := field(b, int(x.vs))
	if port >= 0 && !e.add(splice{start: int32(ps), end: int32(pe), kind: opNum, n: port}) {
		return false
	}
	if addr == nil {
		return true
	}
	if r := &sec.rtcp; r.Address != nil {
		return e.add(splice{start: int32(e.s.off(r.AddrType)), end: x.ve, kind: opAddr, a: addrType, b: addr})
	}
	return e.add(splice{start: int32(pe), end: x.ve, kind: opRTCPAddr, a: addrType, b: addr})
}

// RemoveAttribute removes every a=name line of section i. It returns
// false when i is out of range or the edits do not fit (true when there
// was nothing to remove).
func (e *Editor) RemoveAttribute(i int, name string) bool {
	sec := e.sec(i)
	if sec == nil {
		return false
	}
	for k := sec.first; k < sec.end; k++ {
		if x := &e.s.lines[k]; x.typ == 'a' && string(e.s.attrName(x)) == name && !e.remove(k) {
			return false
		}
	}
	return true
}

// RemoveCandidates removes the a=candidate, a=remote-candidates and
// a=end-of-candidates lines of section i.
func (e *Editor) RemoveCandidates(i int) bool {
	sec := e.sec(i)
	if sec == nil {
		return false
	}
	for k := sec.first; k < sec.end; k++ {
		x := &e.s.lines[k]
		switch x.attr {
		case attrCandidate, attrRemoteCandidates, attrEndOfCandidates:
			if x.typ == 'a' && !e.remove(k) {
				return false
			}
		}
	}
	return true
}

// RemoveICE removes every ICE attribute of the body (candidate,
// remote-candidates, end-of-candidates, ice-ufrag, ice-pwd, ice-lite,
// ice-options, ice-mismatch), session level and media: rtpengine's
// ICE=remove.
func (e *Editor) RemoveICE() bool {
	for k := 0; k < e.s.st.nl; k++ {
		if x := &e.s.lines[k]; x.typ == 'a' && x.attr.isICE() && !e.remove(k) {
			return false
		}
	}
	return true
}

// SetDirection sets the direction attribute of section i: the first
// direction line is rewritten and any other removed, or a line is added.
// DirNone removes them all.
func (e *Editor) SetDirection(i int, d Direction) bool {
	sec := e.sec(i)
	if sec == nil || d > Inactive {
		return false
	}
	done := d == DirNone
	for k := sec.first; k < sec.end; k++ {
		x := &e.s.lines[k]
		if x.typ != 'a' || x.attr < attrSendRecv || x.attr > attrInactive {
			continue
		}
		var ok bool
		if done {
			ok = e.remove(k)
		} else {
			ok = e.add(splice{start: x.start + 2, end: x.ve, kind: opAttrBody, name: d.String()})
			done = true
		}
		if !ok {
			return false
		}
	}
	if done {
		return true
	}
	return e.AddAttribute(i, d.String(), nil)
}

// AddAttribute appends "a=name:value" to section i ("a=name" when value
// is nil), after its last line.
func (e *Editor) AddAttribute(i int, name string, value []byte) bool {
	sec := e.sec(i)
	if sec == nil || !cleanName(name) || !clean(value) {
		return false
	}
	pos := e.sectionEnd(sec)
	return e.add(splice{start: int32(pos), end: int32(pos), kind: opAttr, name: name, a: value})
}

// SetAttribute rewrites the first a=name line of section i to
// "a=name:value" ("a=name" when value is nil) and removes any other, or
// adds the line when there is none.
func (e *Editor) SetAttribute(i int, name string, value []byte) bool {
	sec := e.sec(i)
	if sec == nil || !cleanName(name) || !clean(value) {
		return false
	}
	done := false
	for k := sec.first; k < sec.end; k++ {
		x := &e.s.lines[k]
		if x.typ != 'a' || string(e.s.attrName(x)) != name {
			continue
		}
		var ok bool
		if done {
			ok = e.remove(k)
		} else {
			ok = e.add(splice{start: x.start + 2, end: x.ve, kind: opAttrBody, name: name, a: value})
			done = true
		}
		if !ok {
			return false
		}
	}
	if done {
		return true
	}
	return e.AddAttribute(i, name, value)
}

// AppendTo appends the edited body to dst and returns it. With no edits
// the body is copied unchanged. With enough capacity in dst it does not
// allocate. It may be called again; the edits stay recorded until Reset.
func (e *Editor) AppendTo(dst []byte) []byte {
	s := e.s
	b := s.st.buf
	ops := e.ops[:e.n]
	// insertion sort: few edits, mostly recorded in order, no allocation
	for i := 1; i < len(ops); i++ {
		for j := i; j > 0 && opLess(&ops[j], &ops[j-1]); j-- {
			ops[j], ops[j-1] = ops[j-1], ops[j]
		}
	}
	eol := "\n"
	if s.st.crlf {
		eol = "\r\n"
	}
	base := len(dst)
	pos := 0
	for k := range ops {
		op := &ops[k]
		start := int(op.start)
		if start < pos {
			continue // inside a removed or replaced range
		}
		dst = append(dst, b[pos:start]...)
		if op.kind.addsLine() && len(dst) > base && dst[len(dst)-1] != '\n' {
			// after a last line without a line ending (only an LF
			// after a bare CR)
			if dst[len(dst)-1] == '\r' {
				dst = append(dst, '\n')
			} else {
				dst = append(dst, eol...)
			}
		}
		dst = op.write(dst, eol)
		pos = int(op.end)
	}
	return append(dst, b[pos:]...)
}

func (k opKind) addsLine() bool { return k == opAttr || k == opConn || k == opRTCPLine }

func (op *splice) write(dst []byte, eol string) []byte {
	switch op.kind {
	case opBytes:
		dst = append(dst, op.a...)
	case opNum:
		dst = strconv.AppendInt(dst, int64(op.n), 10)
	case opAddr:
		dst = append(dst, op.a...)
		dst = append(dst, ' ')
		dst = append(dst, op.b...)
	case opAttr:
		dst = append(dst, "a="...)
		dst = appendAttrBody(dst, op)
		dst = append(dst, eol...)
	case opAttrBody:
		dst = appendAttrBody(dst, op)
	case opConn:
		dst = append(dst, "c=IN "...)
		dst = append(dst, op.a...)
		dst = append(dst, ' ')
		dst = append(dst, op.b...)
		dst = append(dst, eol...)
	case opRTCPAddr:
		dst = append(dst, " IN "...)
		dst = append(dst, op.a...)
		dst = append(dst, ' ')
		dst = append(dst, op.b...)
	case opRTCPLine:
		dst = append(dst, "a=rtcp:"...)
		dst = strconv.AppendInt(dst, int64(op.n), 10)
		if op.b != nil {
			dst = append(dst, " IN "...)
			dst = append(dst, op.a...)
			dst = append(dst, ' ')
			dst = append(dst, op.b...)
		}
		dst = append(dst, eol...)
	}
	return dst
}

func appendAttrBody(dst []byte, op *splice) []byte {
	dst = append(dst, op.name...)
	if op.a != nil {
		dst = append(dst, ':')
		dst = append(dst, op.a...)
	}
	return dst
}

// opLess orders splices by position; at one position insertions come
// before replacements, then call order.
func opLess(a, b *splice) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	ai, bi := a.start == a.end, b.start == b.end
	if ai != bi {
		return ai
	}
	return a.seq < b.seq
}
