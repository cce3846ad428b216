package transport

import "switchboard/parser"

// Stream framing: on TCP and TLS a SIP message ends Content-Length bytes
// after the blank line that closes the headers (RFC 3261 §18.3), and
// Content-Length is mandatory. Messages may be preceded by CRLFs: RFC 5626
// §3.5.1 keep-alive pings (CRLFCRLF) and pongs (CRLF).

// skipKeepalives consumes the CRs and LFs in front of a message. It
// returns the bytes consumed and the number of CRLFCRLF pings among them.
// A lone CRLF is a pong and is dropped, and so is a stray LF or a CR not
// followed by LF (kept, a peer sending only those would grow the read
// buffer for ever); CRLFs at the very end of b are left in place (need is
// true) because they may be the first half of a ping. Where the bytes are
// cut between reads changes nothing (FuzzStreamConsume).
func skipKeepalives(b []byte) (consumed, pings int, need bool) {
	for {
		rest := b[consumed:]
		switch {
		case len(rest) == 0:
			return consumed, pings, false
		case rest[0] == '\n':
			consumed++ // a stray LF
			continue
		case rest[0] != '\r':
			return consumed, pings, false
		case len(rest) < 2:
			return consumed, pings, true
		case rest[1] != '\n':
			consumed++ // a CR not followed by LF
			continue
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

// frameMessage finds the message at the start of b (keep-alives already
// consumed by skipKeepalives) with the parser's framing function: skip
// bytes to drop (stray bare LFs), then a message of n bytes; n is 0 when
// more bytes are needed. An error means the stream cannot be framed and
// the connection must be closed.
func frameMessage(b []byte, max int) (skip, n int, err error) {
	return parser.FrameLength(b, max)
}
