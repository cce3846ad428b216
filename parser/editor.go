package parser

// MaxEdits is how many splices one Editor holds for a route's edits.
// Every edit method returns false instead of recording an edit beyond it.
const MaxEdits = 48

// ReservedEdits are splices beyond MaxEdits that only the edits after
// UseReserve may take: the transaction layer's own (its Via, Route and
// Record-Route changes, the Via it takes off a response), which must
// not fail however many edits a route made. One more splice is kept for
// the Content-Length AppendTo writes, so that a message never goes out
// with the length of a body it no longer has.
const ReservedEdits = 16

type opKind uint8

const (
	opBytes    opKind = iota // a
	opLine                   // name ": " a CRLF
	opLineNum                // name ": " n CRLF
	opNum                    // n
	opParam                  // ";" name "=" a
	opParamNum               // ";" name "=" n, or "=" n when name is ""
)

// splice replaces buf[start:end] (an insertion when start == end).
type splice struct {
	start, end int
	seq        int
	kind       opKind
	name       string
	a          []byte
	n          int
}

// Editor records changes to a parsed Message as splices and writes the
// changed message in one pass with AppendTo. Offsets always refer to the
// message as parsed: edits do not see each other, so removing the top Via
// and then inserting one works in either order. Overlapping edits are not
// meaningful; an insertion inside a removed range is dropped.
//
// The Editor keeps references to the []byte values it is given until
// AppendTo; it copies nothing and allocates nothing.
type Editor struct {
	m         *Message
	ops       [MaxEdits + ReservedEdits + 1]splice
	n         int
	limit     int // MaxEdits, or MaxEdits + ReservedEdits after UseReserve
	bodySet   bool
	body      []byte
	clHandled bool
	drop      uint64 // header names whose lines AppendTo leaves out (DropHeaders)
}

// Reset starts a new set of edits on m, which must have parsed without
// error (edits on a partial index are not meaningful).
func (e *Editor) Reset(m *Message) {
	e.m = m
	e.n = 0
	e.limit = MaxEdits
	e.bodySet = false
	e.body = nil
	e.clHandled = false
	e.drop = 0
}

// Retarget keeps the edits recorded so far for m, a copy of the message
// being edited whose views point into the same bytes (a struct copy):
// the edits move with the message when its owner hands it on (an ACK
// kept for later, txn.Request.SuspendAck).
func (e *Editor) Retarget(m *Message) { e.m = m }

// Message returns the message being edited.
func (e *Editor) Message() *Message { return e.m }

// Room is how many more edits the editor takes (each edit method takes
// one, but for those that say otherwise).
func (e *Editor) Room() int { return e.limit - e.n }

// UseReserve lets the edits that follow take the ReservedEdits splices
// too, until the next Reset: for the transaction layer, before its own.
func (e *Editor) UseReserve() { e.limit = MaxEdits + ReservedEdits }

func (e *Editor) add(op splice) bool {
	if e.n >= e.limit {
		return false
	}
	op.seq = e.n
	e.ops[e.n] = op
	e.n++
	return true
}

// headersEnd is where a header appended at the end of the header section
// goes: the start of the empty line.
func (e *Editor) headersEnd() int { return e.m.st.blank }

// firstLine returns the start of the first header line named h, or -1.
func (e *Editor) firstLine(h HeaderName) int {
	if f := e.m.st.first[h]; f != 0 {
		return int(e.m.hdrs[f-1].start)
	}
	return -1
}

// topOfHeaders is where a header that must come first goes.
func (e *Editor) topOfHeaders() int {
	if e.m.st.nh > 0 {
		return int(e.m.hdrs[0].start)
	}
	return e.m.st.blank
}

// InsertVia adds "Via: value" above every other Via (RFC 3261 §16.6 step
// 8). value is the via-parm, e.g. "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...".
func (e *Editor) InsertVia(value []byte) bool {
	pos := e.firstLine(HdrVia)
	if pos < 0 {
		pos = e.topOfHeaders()
	}
	return e.add(splice{start: pos, end: pos, kind: opLine, name: "Via", a: value})
}

// removeFirstValue removes the first value of the first line named h: the
// whole line when it holds one value, else the value and its comma.
func (e *Editor) removeFirstValue(h HeaderName, raw []byte, valueEnd int) bool {
	f := e.m.st.first[h]
	if f == 0 || raw == nil {
		return false
	}
	// The first value is usually on the first line of the name, but lines
	// holding only empty values come before it ("Route:" then "Route: <a>").
	off := e.m.off(raw)
	var x *hdr
	for k := int(f - 1); k < e.m.st.nh; k++ {
		if y := &e.m.hdrs[k]; y.name == h && int(y.vs) <= off && off <= int(y.ve) {
			x = y
			break
		}
	}
	if x == nil {
		return false
	}
	b := e.m.st.buf
	n := skipLWS(b[:x.ve], valueEnd)
	if n >= int(x.ve) {
		return e.add(splice{start: int(x.start), end: int(x.end), kind: opBytes})
	}
	// n is at ','; remove up to the next value.
	next := skipLWS(b[:x.ve], n+1)
	return e.add(splice{start: int(x.vs), end: next, kind: opBytes})
}

// RemoveTopVia removes the first Via value (RFC 3261 §16.7 step 3 / §18.1.2).
func (e *Editor) RemoveTopVia() bool {
	v := &e.m.st.via
	return e.removeFirstValue(HdrVia, v.Raw, e.m.off(v.Raw)+len(v.Raw))
}

// SetViaReceived sets received=host on the top Via (replacing one that is
// there) and, when rport > 0 and the Via has an rport parameter, its value
// (RFC 3581). Either can be skipped with nil / 0.
func (e *Editor) SetViaReceived(received []byte, rport int) bool {
	v := &e.m.st.via
	if v.Raw == nil {
		return false
	}
	end := e.m.off(v.Raw) + len(v.Raw)
	// rport first: a bare rport at the end of the Via gets its value before
	// a received parameter appended at the same position.
	if rport > 0 && v.HasRPort {
		if v.RPort != nil {
			s := e.m.off(v.RPort)
			if !e.add(splice{start: s, end: s + len(v.RPort), kind: opNum, n: rport}) {
				return false
			}
		} else {
			// find the end of the bare "rport" name
			p := v.Params
			i := 0
			for i < len(p) {
				name, _, next, ok := scanParam(p, i)
				if !ok {
					return false
				}
				if eqFold(name, "rport") {
					s := e.m.off(name) + len(name)
					if !e.add(splice{start: s, end: s, kind: opParamNum, n: rport}) {
						return false
					}
					break
				}
				i = skipLWS(p, next)
				if i < len(p) && p[i] == ';' {
					i++
				}
			}
		}
	}
	if received != nil {
		if v.Received != nil {
			s := e.m.off(v.Received)
			if !e.add(splice{start: s, end: s + len(v.Received), kind: opBytes, a: received}) {
				return false
			}
		} else if !e.add(splice{start: end, end: end, kind: opParam, name: "received", a: received}) {
			return false
		}
	}
	return true
}

// AddViaRPort adds ";rport=N" to a top Via that has no rport parameter
// (OpenSIPS force_rport: the client behind NAT did not ask for it); false
// when the Via has one (SetViaReceived sets its value) or there is no Via.
func (e *Editor) AddViaRPort(rport int) bool {
	v := &e.m.st.via
	if v.Raw == nil || v.HasRPort || rport <= 0 {
		return false
	}
	end := e.m.off(v.Raw) + len(v.Raw)
	return e.add(splice{start: end, end: end, kind: opParamNum, name: "rport", n: rport})
}

// SetRequestURI replaces the Request-URI.
func (e *Editor) SetRequestURI(uri []byte) bool {
	if !e.m.st.request {
		return false
	}
	u := e.m.st.line1[1]
	s := e.m.off(u)
	return e.add(splice{start: s, end: s + len(u), kind: opBytes, a: uri})
}

// RemoveFirstRoute removes the first Route value, which may share its line
// with others (RFC 3261 §16.4 loose routing).
func (e *Editor) RemoveFirstRoute() bool {
	it := e.m.NameAddrs(HdrRoute)
	if !it.Next() {
		return false
	}
	return e.removeFirstValue(HdrRoute, it.NameAddr.Raw, it.End)
}

// InsertRecordRoute adds "Record-Route: value" above the existing ones
// (RFC 3261 §16.6 step 4). Call it twice for a proxy that changes
// transport or interface: the first call's value ends up on top.
func (e *Editor) InsertRecordRoute(value []byte) bool {
	pos := e.firstLine(HdrRecordRoute)
	if pos < 0 {
		pos = e.afterVias()
	}
	return e.add(splice{start: pos, end: pos, kind: opLine, name: "Record-Route", a: value})
}

// afterVias is the start of the first header line after the first run of
// Via lines (the top of the headers when the message does not start with Via).
func (e *Editor) afterVias() int {
	k := 0
	for k < e.m.st.nh && e.m.hdrs[k].name == HdrVia {
		k++
	}
	if k < e.m.st.nh {
		return int(e.m.hdrs[k].start)
	}
	return e.m.st.blank
}

// SetMaxForwards sets Max-Forwards to n, adding the header if absent.
func (e *Editor) SetMaxForwards(n int) bool {
	if n < 0 {
		n = 0
	}
	if f := e.m.st.first[HdrMaxForwards]; f != 0 {
		x := &e.m.hdrs[f-1]
		return e.add(splice{start: int(x.vs), end: int(x.ve), kind: opNum, n: n})
	}
	pos := e.afterVias()
	return e.add(splice{start: pos, end: pos, kind: opLineNum, name: "Max-Forwards", n: n})
}

// DecrementMaxForwards sets Max-Forwards to its value minus one, or to 70
// when absent (RFC 3261 §16.6 step 3). The caller has already answered 483
// for zero.
func (e *Editor) DecrementMaxForwards() bool {
	n, ok := e.m.MaxForwards()
	if !ok {
		return e.SetMaxForwards(70)
	}
	return e.SetMaxForwards(n - 1)
}

// SetHeaderValue replaces the whole value of the first header line named
// h (a known name) with value: a From or To rewritten, name-addr and
// parameters (uac_replace_from). False when there is no such header.
func (e *Editor) SetHeaderValue(h HeaderName, value []byte) bool {
	if h == HdrOther || h >= numHeaderNames {
		return false
	}
	f := e.m.st.first[h]
	if f == 0 {
		return false
	}
	x := &e.m.hdrs[f-1]
	return e.add(splice{start: int(x.vs), end: int(x.ve), kind: opBytes, a: value})
}

// Replace replaces the bytes of view, a view into the message's headers
// (a URI's host and port, a parameter's value), with value: the edit of
// one part of a header that no method names (fix_nated_contact rewrites a
// Contact URI's host:port this way). False when view is not inside the
// header section of the message being edited.
func (e *Editor) Replace(view, value []byte) bool {
	if len(view) == 0 {
		return false
	}
	m := e.m
	off := m.off(view)
	if off < m.st.start || off+len(view) > m.st.hdrEnd || &m.st.buf[off] != &view[0] {
		return false
	}
	return e.add(splice{start: off, end: off + len(view), kind: opBytes, a: value})
}

// SetCSeq replaces the sequence number of the CSeq header, keeping its
// method (a request re-sent with credentials, RFC 3261 §22.2; a response
// whose number is put back to the one its client sent).
func (e *Editor) SetCSeq(n uint32) bool {
	f := e.m.st.first[HdrCSeq]
	if f == 0 {
		return false
	}
	x := &e.m.hdrs[f-1]
	b := e.m.st.buf
	end := int(x.vs)
	for end < int(x.ve) && b[end]-'0' <= 9 {
		end++
	}
	if end == int(x.vs) {
		return false
	}
	return e.add(splice{start: int(x.vs), end: end, kind: opNum, n: int(n)})
}

// AddHeader appends "name: value" at the end of the header section.
func (e *Editor) AddHeader(name string, value []byte) bool {
	pos := e.headersEnd()
	return e.add(splice{start: pos, end: pos, kind: opLine, name: name, a: value})
}

// AddHeaderTop inserts "name: value" as the first header line.
func (e *Editor) AddHeaderTop(name string, value []byte) bool {
	pos := e.topOfHeaders()
	return e.add(splice{start: pos, end: pos, kind: opLine, name: name, a: value})
}

// RemoveHeaderAt removes header line i (as numbered by HeaderAt).
func (e *Editor) RemoveHeaderAt(i int) bool {
	if i < 0 || i >= e.m.st.nh {
		return false
	}
	x := &e.m.hdrs[i]
	if x.name == HdrContentLength {
		e.clHandled = true
	}
	return e.add(splice{start: int(x.start), end: int(x.end), kind: opBytes})
}

// RemoveHeaders removes every line of header h (a known name), as one
// edit (DropHeaders) but for Content-Length.
func (e *Editor) RemoveHeaders(h HeaderName) bool {
	if h != HdrContentLength {
		return e.DropHeaders(h)
	}
	ok := true
	for k := 0; k < e.m.st.nh; k++ {
		if e.m.hdrs[k].name == h && h != HdrOther {
			ok = e.RemoveHeaderAt(k) && ok
		}
	}
	return ok
}

// RemoveHeadersByName removes every line whose name equals name
// (case-insensitive; known names and compact forms resolved).
func (e *Editor) RemoveHeadersByName(name []byte) bool {
	h := LookupHeader(name)
	if h != HdrOther {
		return e.RemoveHeaders(h)
	}
	ok := true
	b := e.m.st.buf
	for k := 0; k < e.m.st.nh; k++ {
		x := &e.m.hdrs[k]
		if x.name == HdrOther && EqualFold(b[x.start:x.nameEnd], name) {
			ok = e.RemoveHeaderAt(k) && ok
		}
	}
	return ok
}

// DropHeaders leaves every line of header h (a known name other than
// Content-Length) out of the message AppendTo writes, however many lines
// there are, as one edit that never runs out (MaxEdits counts splices):
// a topology-hiding module takes out every Via, Record-Route or Contact
// of a party, which an attacker can send 60 lines of. Edits inside a
// dropped line are dropped with it; an insertion at its start stays, so
// InsertVia after DropHeaders(HdrVia) leaves that Via alone, and lines
// added with AddHeader are never dropped.
func (e *Editor) DropHeaders(h HeaderName) bool {
	if h == HdrOther || h >= numHeaderNames || h == HdrContentLength {
		return false
	}
	e.drop |= 1 << h
	return true
}

// ReplaceHeaders puts one line "Name: value" of header h (a known name
// other than Content-Length) in place of all its lines, where the first
// one was, or at the end of the header section when there was none
// (DropHeaders, then the line).
func (e *Editor) ReplaceHeaders(h HeaderName, value []byte) bool {
	if !e.DropHeaders(h) {
		return false
	}
	pos := e.firstLine(h)
	if pos < 0 {
		pos = e.headersEnd()
	}
	return e.add(splice{start: pos, end: pos, kind: opLine, name: h.String(), a: value})
}

// SetBody replaces the body and fixes Content-Length. A non-nil
// contentType replaces (or adds) Content-Type; an empty body with a nil
// contentType keeps Content-Type as it is.
func (e *Editor) SetBody(body, contentType []byte) bool {
	m := e.m
	if !e.add(splice{start: m.st.hdrEnd, end: m.st.end, kind: opBytes, a: body}) {
		return false
	}
	e.bodySet, e.body = true, body
	if contentType != nil {
		if f := m.st.first[HdrContentType]; f != 0 {
			x := &m.hdrs[f-1]
			if !e.add(splice{start: int(x.vs), end: int(x.ve), kind: opBytes, a: contentType}) {
				return false
			}
		} else if !e.add(splice{start: m.st.blank, end: m.st.blank, kind: opLine, name: "Content-Type", a: contentType}) {
			return false
		}
	}
	return true
}

// AppendTo appends the edited message to dst and returns it. A message
// without Content-Length gets one (RFC 3261 §18.3: required on streams);
// bytes after the body (UDP trailing octets) are not written. With enough
// capacity in dst it does not allocate.
func (e *Editor) AppendTo(dst []byte) []byte {
	m := e.m
	b := m.st.buf
	// Content-Length: replace the value(s) when the body changed, add one
	// when there is none.
	// The one splice this takes is always there: add stops at limit,
	// which leaves the last one of ops.
	n0, drop0 := e.n, e.drop
	if !e.clHandled {
		blen := m.st.end - m.st.hdrEnd
		if e.bodySet {
			blen = len(e.body)
		}
		switch {
		case !m.st.hasCL:
			e.ops[e.n] = splice{start: m.st.blank, end: m.st.blank, seq: e.n, kind: opLineNum, name: "Content-Length", n: blen}
			e.n++
		case !e.bodySet:
		case m.Count(HdrContentLength) == 1:
			x := &m.hdrs[m.st.first[HdrContentLength]-1]
			e.ops[e.n] = splice{start: int(x.vs), end: int(x.ve), seq: e.n, kind: opNum, n: blen}
			e.n++
		default:
			// Several lines (of one value): one in place of them all.
			e.drop |= 1 << HdrContentLength
			e.ops[e.n] = splice{start: m.st.blank, end: m.st.blank, seq: e.n, kind: opLineNum, name: "Content-Length", n: blen}
			e.n++
		}
	}
	ops := e.ops[:e.n]
	// insertion sort: few edits, no allocation
	for i := 1; i < len(ops); i++ {
		for j := i; j > 0 && opLess(&ops[j], &ops[j-1]); j-- {
			ops[j], ops[j-1] = ops[j-1], ops[j]
		}
	}
	pos := m.st.start
	if e.drop != 0 {
		dst, pos = e.appendDropping(dst, ops)
	} else {
		// appendOp written out: this loop runs for every message relayed.
		for k := range ops {
			op := &ops[k]
			if op.start < pos {
				continue // inside a removed range
			}
			dst = append(dst, b[pos:op.start]...)
			switch op.kind {
			case opBytes:
				dst = append(dst, op.a...)
			case opLine:
				dst = append(dst, op.name...)
				dst = append(dst, ": "...)
				dst = append(dst, op.a...)
				dst = append(dst, "\r\n"...)
			case opLineNum:
				dst = append(dst, op.name...)
				dst = append(dst, ": "...)
				dst = appendUint(dst, uint64(op.n))
				dst = append(dst, "\r\n"...)
			case opNum:
				dst = appendUint(dst, uint64(op.n))
			case opParam:
				dst = append(dst, ';')
				dst = append(dst, op.name...)
				dst = append(dst, '=')
				dst = append(dst, op.a...)
			case opParamNum:
				if op.name != "" {
					dst = append(dst, ';')
					dst = append(dst, op.name...)
				}
				dst = append(dst, '=')
				dst = appendUint(dst, uint64(op.n))
			}
			pos = op.end
		}
	}
	if pos < m.st.end {
		dst = append(dst, b[pos:m.st.end]...)
	}
	// Drop the Content-Length splice so AppendTo can be called again.
	// Sorting moved the splices, so rebuild by seq.
	e.drop = drop0
	if e.n != n0 {
		w := 0
		for k := 0; k < e.n; k++ {
			if e.ops[k].seq < n0 {
				e.ops[w] = e.ops[k]
				w++
			}
		}
		e.n = n0
	}
	return dst
}

// appendOp writes what splice op puts in place of the bytes it replaces.
func appendOp(dst []byte, op *splice) []byte {
	switch op.kind {
	case opBytes:
		dst = append(dst, op.a...)
	case opLine:
		dst = append(dst, op.name...)
		dst = append(dst, ": "...)
		dst = append(dst, op.a...)
		dst = append(dst, "\r\n"...)
	case opLineNum:
		dst = append(dst, op.name...)
		dst = append(dst, ": "...)
		dst = appendUint(dst, uint64(op.n))
		dst = append(dst, "\r\n"...)
	case opNum:
		dst = appendUint(dst, uint64(op.n))
	case opParam:
		dst = append(dst, ';')
		dst = append(dst, op.name...)
		dst = append(dst, '=')
		dst = append(dst, op.a...)
	case opParamNum:
		if op.name != "" {
			dst = append(dst, ';')
			dst = append(dst, op.name...)
		}
		dst = append(dst, '=')
		dst = appendUint(dst, uint64(op.n))
	}
	return dst
}

// appendDropping is AppendTo's pass with dropped header lines: the sorted
// splices and the dropped lines (removals, in message order) merged by
// position, the splices at a line's start first, as insertions come
// before removals at one position. It returns dst and the position
// reached in the message.
func (e *Editor) appendDropping(dst []byte, ops []splice) ([]byte, int) {
	m := e.m
	b := m.st.buf
	pos := m.st.start
	k := e.nextDropped(0)
	var line splice
	for i := 0; i < len(ops) || k < m.st.nh; {
		var op *splice
		if k >= m.st.nh || i < len(ops) && ops[i].start <= int(m.hdrs[k].start) {
			op = &ops[i]
			i++
		} else {
			x := &m.hdrs[k]
			line = splice{start: int(x.start), end: int(x.end), kind: opBytes}
			op = &line
			k = e.nextDropped(k + 1)
		}
		if op.start < pos {
			continue // inside a removed range
		}
		dst = appendOp(append(dst, b[pos:op.start]...), op)
		pos = op.end
	}
	return dst, pos
}

// nextDropped returns the index of the first dropped header line from k
// on, or the number of lines.
func (e *Editor) nextDropped(k int) int {
	for k < e.m.st.nh && e.drop&(1<<e.m.hdrs[k].name) == 0 {
		k++
	}
	return k
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
