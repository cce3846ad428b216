package parser

import "bytes"

// BodyPart finds the first part of a multipart body (RFC 2046 §5.1)
// whose Content-Type is mediaType: SDP beside ISUP in the INVITE of a
// SIP-I trunk (RFC 3204), or beside a PIDF-LO location (RFC 6442). ctype
// is the message's Content-Type value ("multipart/mixed;boundary=b1").
// It returns the part's content as offsets [start, end) of body; ok is
// false when ctype is not multipart with a boundary, or no part of the
// body (nested multiparts are not searched) is of that type. It
// allocates nothing.
func BodyPart(body, ctype []byte, mediaType string) (start, end int, ok bool) {
	boundary := multipartBoundary(ctype)
	if boundary == nil {
		return 0, 0, false
	}
	// Each part follows a delimiter line, "--boundary" at the start of
	// the body or after a CRLF, and ends at the CRLF before the next.
	pos := delimiterAt(body, boundary, 0)
	for pos >= 0 {
		after := pos + 2 + len(boundary)
		if bytes.HasPrefix(body[after:], []byte("--")) {
			return 0, 0, false // the close delimiter: no part after it
		}
		// Transport padding (spaces, tabs) and the line's CRLF.
		i := after
		for i < len(body) && (body[i] == ' ' || body[i] == '\t') {
			i++
		}
		if !bytes.HasPrefix(body[i:], []byte("\r\n")) {
			return 0, 0, false
		}
		headers := i + 2
		next := delimiterAt(body, boundary, headers)
		if next < 0 {
			return 0, 0, false // a part without its closing delimiter
		}
		contentEnd := next - 2 // the CRLF before the delimiter belongs to it
		if contentEnd < headers {
			pos = next // a delimiter right after the last: no part
			continue
		}
		if cs, ok := partContent(body[headers:contentEnd], mediaType); ok {
			return headers + cs, contentEnd, true
		}
		pos = next
	}
	return 0, 0, false
}

// multipartBoundary returns the boundary parameter of a multipart
// Content-Type value, nil when there is none.
func multipartBoundary(ctype []byte) []byte {
	semi := bytes.IndexByte(ctype, ';')
	if semi < 0 || !hasPrefixFold(trimLWS(ctype[:semi]), "multipart/") {
		return nil
	}
	for rest := ctype[semi+1:]; len(rest) > 0; {
		param := rest
		if k := bytes.IndexByte(rest, ';'); k >= 0 {
			param, rest = rest[:k], rest[k+1:]
		} else {
			rest = nil
		}
		name, value, found := bytes.Cut(param, []byte("="))
		if !found || !EqualFold(trimLWS(name), []byte("boundary")) {
			continue
		}
		value = trimLWS(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if len(value) == 0 || len(value) > 70 { // RFC 2046 §5.1.1
			return nil
		}
		return value
	}
	return nil
}

// delimiterAt returns the offset of the first delimiter line of boundary
// at or after from: "--boundary" at the body's start or after a CRLF.
func delimiterAt(body, boundary []byte, from int) int {
	for i := from; i < len(body); {
		k := bytes.Index(body[i:], []byte("--"))
		if k < 0 {
			return -1
		}
		p := i + k
		if (p == 0 || p >= 2 && body[p-2] == '\r' && body[p-1] == '\n') && bytes.HasPrefix(body[p+2:], boundary) {
			return p
		}
		i = p + 1
	}
	return -1
}

// partContent reads a part's header lines (up to the empty line) and
// returns where its content starts when its Content-Type is mediaType (a
// part without one is text/plain, RFC 2046 §5.1).
func partContent(part []byte, mediaType string) (int, bool) {
	match := false
	for i := 0; ; {
		eol := bytes.Index(part[i:], []byte("\r\n"))
		if eol < 0 {
			return 0, false
		}
		line := part[i : i+eol]
		i += eol + 2
		if len(line) == 0 {
			return i, match
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if found && EqualFold(trimLWS(name), []byte("Content-Type")) {
			if k := bytes.IndexByte(value, ';'); k >= 0 {
				value = value[:k]
			}
			match = EqualFold(trimLWS(value), []byte(mediaType))
		}
	}
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && EqualFold(b[:len(prefix)], []byte(prefix))
}
