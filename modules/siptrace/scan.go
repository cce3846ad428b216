package siptrace

import "bytes"

// scanHeaders finds the Call-ID (or its compact form i) and the CSeq
// number in a raw SIP message without parsing it: for the messages the
// core sends, which reach the tap as bytes, and for the correlation id
// the sender goroutine puts in each packet. It reads header lines up to
// the blank line; a message without Call-ID gives nil. A line whose name
// cannot be either costs one IndexByte. A value folded over several lines
// (RFC 3261 §7.3.1) is read whole, as the parser reads it: a relayed
// message keeps its sender's line folding.
func scanHeaders(msg []byte) (callID []byte, cseq uint32) {
	p := lineEnd(msg, 0) // after the start line
	if p < 0 {
		return nil, 0
	}
	haveCSeq := false
	for p < len(msg) {
		start := p
		end, next := lineAt(msg, p)
		p = next
		if end == start {
			break // end of the headers
		}
		line := msg[start:end]
		if c := line[0] | 0x20; c != 'c' && c != 'i' {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := trimSpace(line[:colon])
		isCallID := callID == nil && (equalFold(name, "call-id") || equalFold(name, "i"))
		isCSeq := !haveCSeq && equalFold(name, "cseq")
		if !isCallID && !isCSeq {
			continue
		}
		// The value runs on over the lines that start with a space or a
		// tab, their line ends inside it.
		for p < len(msg) && (msg[p] == ' ' || msg[p] == '\t') {
			end, p = lineAt(msg, p)
		}
		value := trimLWS(msg[start+colon+1 : end])
		if isCallID {
			callID = value
		} else {
			cseq, haveCSeq = leadingUint(value), true
		}
		if callID != nil && haveCSeq {
			break
		}
	}
	return callID, cseq
}

// lineEnd is the index after the LF ending the line at p, -1 when there
// is none.
func lineEnd(msg []byte, p int) int {
	nl := bytes.IndexByte(msg[p:], '\n')
	if nl < 0 {
		return -1
	}
	return p + nl + 1
}

// lineAt returns where the line at p ends (before its CR LF or LF) and
// where the next one starts.
func lineAt(msg []byte, p int) (end, next int) {
	if next = lineEnd(msg, p); next < 0 {
		end, next = len(msg), len(msg)
	} else {
		end = next - 1
	}
	if end > p && msg[end-1] == '\r' {
		end--
	}
	return end, next
}

// trimLWS removes spaces, tabs, CRs and LFs at both ends: a folded
// value's line ends before and after its text.
func trimLWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for n := len(b); n > 0 && (b[n-1] == ' ' || b[n-1] == '\t' || b[n-1] == '\r' || b[n-1] == '\n'); n = len(b) {
		b = b[:n-1]
	}
	return b
}

// trimSpace removes spaces and tabs at both ends.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares an ASCII header name with a lower-case one.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func leadingUint(b []byte) uint32 {
	var n uint32
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint32(c-'0')
	}
	return n
}
