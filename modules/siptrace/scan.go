package siptrace

import "bytes"

// scanHeaders finds the Call-ID (or its compact form i) and the CSeq
// number in a raw SIP message without parsing it: for the messages the
// core sends, which reach the tap as bytes, and for the correlation id
// the sender goroutine puts in each packet. It reads header lines up to
// the blank line; a message without Call-ID gives nil. A line whose name
// cannot be either costs one IndexByte.
func scanHeaders(msg []byte) (callID []byte, cseq uint32) {
	nl := bytes.IndexByte(msg, '\n')
	if nl < 0 {
		return nil, 0
	}
	rest := msg[nl+1:] // after the start line
	haveCSeq := false
	for len(rest) > 0 {
		var line []byte
		if nl := bytes.IndexByte(rest, '\n'); nl >= 0 {
			line, rest = rest[:nl], rest[nl+1:]
		} else {
			line, rest = rest, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			break // end of the headers
		}
		if c := line[0] | 0x20; c != 'c' && c != 'i' {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name, value := trimSpace(line[:colon]), trimSpace(line[colon+1:])
		switch {
		case callID == nil && (equalFold(name, "call-id") || equalFold(name, "i")):
			callID = value
		case !haveCSeq && equalFold(name, "cseq"):
			cseq, haveCSeq = leadingUint(value), true
		}
		if callID != nil && haveCSeq {
			break
		}
	}
	return callID, cseq
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
