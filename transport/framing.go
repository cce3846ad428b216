package transport

import (
	"bytes"
	"errors"
)

// Stream framing: on TCP and TLS a SIP message ends Content-Length bytes
// after the blank line that closes the headers (RFC 3261 §18.3), and
// Content-Length is mandatory. Messages may be preceded by CRLFs: RFC 5626
// §3.5.1 keep-alive pings (CRLFCRLF) and pongs (CRLF).

var (
	errNoContentLength  = errors.New("transport: stream message without Content-Length")
	errBadContentLength = errors.New("transport: malformed or conflicting Content-Length")
	errMessageTooLarge  = errors.New("transport: stream message larger than the maximum size")
)

var crlfcrlf = []byte("\r\n\r\n")

// skipKeepalives consumes the CRLFs in front of a message. It returns the
// bytes consumed and the number of CRLFCRLF pings among them. A lone CRLF
// is a pong and is dropped; CRLFs at the very end of b are left in place
// (need is true) because they may be the first half of a ping.
func skipKeepalives(b []byte) (consumed, pings int, need bool) {
	for {
		rest := b[consumed:]
		switch {
		case len(rest) == 0:
			return consumed, pings, false
		case rest[0] != '\r':
			return consumed, pings, false
		case len(rest) < 2:
			return consumed, pings, true
		case rest[1] != '\n':
			return consumed, pings, false
		case len(rest) < 4:
			// "\r\n" or "\r\n\r": wait, unless what follows is not CR.
			if len(rest) == 3 && rest[2] != '\r' {
				consumed += 2
				continue
			}
			return consumed, pings, true
		case rest[2] == '\r' && rest[3] == '\n':
			consumed += 4
			pings++
		default:
			consumed += 2
		}
	}
}

// frameMessage returns the length of the message at the start of b when it
// is complete, 0 when more bytes are needed, or an error when the message
// cannot be framed or exceeds max bytes. b must start at the message's
// first byte (keep-alives skipped).
func frameMessage(b []byte, max int) (int, error) {
	limit := len(b)
	if limit > max {
		limit = max
	}
	end := bytes.Index(b[:limit], crlfcrlf)
	if end < 0 {
		if len(b) >= max {
			return 0, errMessageTooLarge
		}
		return 0, nil
	}
	cl, err := contentLength(b[:end+2])
	if err != nil {
		return 0, err
	}
	total := end + 4 + cl
	if total > max || total < 0 {
		return 0, errMessageTooLarge
	}
	if len(b) < total {
		return 0, nil
	}
	return total, nil
}

// contentLength finds Content-Length (or its compact form "l") in the
// header block hdr (start line and headers, each ending in CRLF).
func contentLength(hdr []byte) (int, error) {
	cl := -1
	// Skip the start line.
	i := bytes.IndexByte(hdr, '\n')
	if i < 0 {
		return 0, errNoContentLength
	}
	for i++; i < len(hdr); {
		j := bytes.IndexByte(hdr[i:], '\n')
		if j < 0 {
			j = len(hdr) - i
		}
		line := hdr[i : i+j]
		i += j + 1
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue // continuation line
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := trimLWS(line[:colon])
		if !isContentLengthName(name) {
			continue
		}
		v, ok := parseDecimal(trimLWS(line[colon+1:]))
		if !ok || (cl >= 0 && cl != v) {
			return 0, errBadContentLength
		}
		cl = v
	}
	if cl < 0 {
		return 0, errNoContentLength
	}
	return cl, nil
}

func isContentLengthName(n []byte) bool {
	const full = "content-length"
	if len(n) == 1 {
		return n[0] == 'l' || n[0] == 'L'
	}
	if len(n) != len(full) {
		return false
	}
	for k := 0; k < len(n); k++ {
		if lowerASCII(n[k]) != full[k] {
			return false
		}
	}
	return true
}

func trimLWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// parseDecimal parses a non-negative decimal of at most 9 digits (the
// value is bounded by the maximum message size anyway).
func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
