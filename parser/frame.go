package parser

import "bytes"

// FrameLength finds the first whole message in b, the bytes read so far
// from a stream (TCP, TLS). skip is the number of leading CRLF octets to
// drop (RFC 5626 keep-alives); n is the length of the message after them,
// 0 when more bytes are needed. maxSize bounds the message (0 means
// DefaultMaxSize): a header section or message over it fails with
// KindTooLarge. A message without a valid Content-Length fails with
// KindMissingContentLength or KindBadContentLength; on a stream both mean
// the connection must be closed (RFC 3261 §18.3).
//
// FrameLength returns a *Error it allocates only on failure, which ends
// the connection.
func FrameLength(b []byte, maxSize int) (skip, n int, err error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	for skip < len(b) && (b[skip] == '\r' || b[skip] == '\n') {
		skip++
	}
	b = b[skip:]
	if len(b) == 0 {
		return skip, 0, nil
	}
	// End of the header section: CRLFCRLF, or LFLF from lenient peers.
	hend := -1
	i := 0
	for {
		k := bytes.IndexByte(b[i:], '\n')
		if k < 0 {
			break
		}
		i += k + 1
		if i < len(b) && b[i] == '\n' {
			hend = i + 1
			break
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			hend = i + 2
			break
		}
		if i+1 >= len(b) {
			break
		}
	}
	if hend < 0 {
		if len(b) > maxSize {
			return skip, 0, &Error{Kind: KindTooLarge, Offset: skip + maxSize, Code: 513}
		}
		return skip, 0, nil
	}
	clen, found := -1, false
	// Walk header lines (the first line is the start line).
	ls := bytes.IndexByte(b, '\n') + 1
	for ls < hend {
		le := ls + bytes.IndexByte(b[ls:hend], '\n') + 1
		for le < hend && (b[le] == ' ' || b[le] == '\t') {
			le += bytes.IndexByte(b[le:hend], '\n') + 1
		}
		ne := skipToken(b, ls)
		name := b[ls:ne]
		if len(name) == 1 && name[0]|0x20 == 'l' || len(name) == 14 && eqFold(name, "content-length") {
			k := ne
			for k < le && (b[k] == ' ' || b[k] == '\t') {
				k++
			}
			if k >= le || b[k] != ':' {
				return skip, 0, &Error{Kind: KindBadContentLength, Offset: skip + ls, Header: HdrContentLength, Code: 400}
			}
			v, ok := parseUint(trimLWS(b[k+1:le]), 1<<31-1)
			if !ok || (found && int(v) != clen) {
				return skip, 0, &Error{Kind: KindBadContentLength, Offset: skip + ls, Header: HdrContentLength, Code: 400}
			}
			if int(v) > maxSize {
				return skip, 0, &Error{Kind: KindTooLarge, Offset: skip + ls, Header: HdrContentLength, Code: 513}
			}
			clen, found = int(v), true
		}
		ls = le
	}
	if !found {
		return skip, 0, &Error{Kind: KindMissingContentLength, Offset: skip + hend, Header: HdrContentLength, Code: 400}
	}
	total := hend + clen
	if total > maxSize {
		return skip, 0, &Error{Kind: KindTooLarge, Offset: skip + maxSize, Code: 513}
	}
	if len(b) < total {
		return skip, 0, nil
	}
	return skip, total, nil
}
