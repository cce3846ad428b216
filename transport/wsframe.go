package transport

import (
	"encoding/binary"
	"errors"
)

// WebSocket frames (RFC 6455 §5). The codec works on the connection's read
// buffer: a frame header is decoded in place and its payload unmasked in
// place, so that a SIP message that fits in one frame (what browsers send)
// reaches the handler as a view into that buffer, without a copy.
//
//	 0               1               2               3
//	|F|R|R|R| opcode|M| payload len |  extended payload length ...  |
//	|I|S|S|S|  (4)  |A|     (7)     |     (16 or 64 bits)           |
//	|N|V|V|V|       |S|             |                               |
//	 ... masking key (32 bits, when MASK is set) ... payload ...

// WebSocket opcodes.
const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA
)

// WebSocket close status codes (RFC 6455 §7.4.1).
const (
	wsCloseNormal      = 1000
	wsCloseGoingAway   = 1001
	wsCloseProtocol    = 1002
	wsCloseUnsupported = 1003
	wsCloseNoStatus    = 1005 // never sent: a close frame without a code
	wsCloseInvalidData = 1007
	wsCloseTooBig      = 1009
)

// wsHeader is one decoded frame header.
type wsHeader struct {
	fin    bool
	opcode byte
	masked bool
	key    [4]byte
	length int // payload length
}

// wsFrameError is a frame the codec refuses; code is the close status to
// answer with.
type wsFrameError struct {
	code uint16
	msg  string
}

func (e *wsFrameError) Error() string { return "websocket: " + e.msg }

// The errors are values, built once: decoding allocates nothing, even for
// a peer that sends garbage.
var (
	errWSReserved     = &wsFrameError{wsCloseProtocol, "reserved bits set (no extension was negotiated)"}
	errWSOpcode       = &wsFrameError{wsCloseProtocol, "unknown opcode"}
	errWSUnmasked     = &wsFrameError{wsCloseProtocol, "client frame not masked"}
	errWSControlLen   = &wsFrameError{wsCloseProtocol, "control frame payload over 125 bytes"}
	errWSControlFrag  = &wsFrameError{wsCloseProtocol, "fragmented control frame"}
	errWSLengthForm   = &wsFrameError{wsCloseProtocol, "payload length not in its shortest form"}
	errWSFrameTooBig  = &wsFrameError{wsCloseTooBig, "frame larger than the frame size limit"}
	errWSMsgTooBig    = &wsFrameError{wsCloseTooBig, "message larger than the message size limit"}
	errWSContinuation = &wsFrameError{wsCloseProtocol, "continuation frame without a message to continue"}
	errWSInterleaved  = &wsFrameError{wsCloseProtocol, "new data frame before the fragmented message ended"}
	errWSCloseLen     = &wsFrameError{wsCloseProtocol, "close frame with a 1-byte payload"}
	errWSCloseCode    = &wsFrameError{wsCloseProtocol, "close frame with a code an endpoint may not send"}
	errWSText         = &wsFrameError{wsCloseInvalidData, "text message that is not UTF-8"}
)

// wsDecodeHeader decodes the frame header at the start of b. n is the
// header's length (payload starts at b[n]); n == 0 with a nil error means
// b holds less than a whole header. Frames from a client must be masked
// (RFC 6455 §5.1) when requireMask is set; payloads larger than maxFrame
// are refused before any of them is read.
func wsDecodeHeader(b []byte, requireMask bool, maxFrame int) (h wsHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.fin = b0&0x80 != 0
	if b0&0x70 != 0 {
		return h, 0, errWSReserved
	}
	h.opcode = b0 & 0x0F
	h.masked = b1&0x80 != 0
	switch h.opcode {
	case wsOpContinuation, wsOpText, wsOpBinary:
	case wsOpClose, wsOpPing, wsOpPong:
		if !h.fin {
			return h, 0, errWSControlFrag
		}
		if b1&0x7F > 125 {
			return h, 0, errWSControlLen
		}
	default:
		return h, 0, errWSOpcode
	}
	if requireMask && !h.masked {
		return h, 0, errWSUnmasked
	}
	n = 2
	var length uint64
	switch l := b1 & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:4]))
		if length < 126 {
			return h, 0, errWSLengthForm
		}
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:10])
		if length <= 0xFFFF {
			return h, 0, errWSLengthForm
		}
		// A length with the most significant bit set (not allowed) is
		// over any frame limit below.
		n = 10
	default:
		length = uint64(l)
	}
	if length > uint64(maxFrame) {
		return h, 0, errWSFrameTooBig
	}
	h.length = int(length)
	if h.masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		copy(h.key[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// wsUnmask XORs b with the masking key in place; pos is the offset of b[0]
// within the frame's payload (the key cycles every 4 bytes).
func wsUnmask(b []byte, key [4]byte, pos int) {
	// Eight bytes at a time: the key repeated twice, rotated to pos.
	var k8 [8]byte
	for i := range k8 {
		k8[i] = key[(pos+i)&3]
	}
	kw := binary.LittleEndian.Uint64(k8[:])
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^kw)
	}
	for ; i < len(b); i++ {
		b[i] ^= k8[i&7]
	}
}

// wsAppendHeader appends the header of an unmasked (server) frame with
// FIN set, opcode op and a payload of n bytes.
func wsAppendHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n <= 125:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// wsAppendClose appends a close frame with status code and reason.
func wsAppendClose(dst []byte, code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	dst = wsAppendHeader(dst, wsOpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// wsCloseCode reads the status code of a close frame's (unmasked) payload:
// wsCloseNoStatus when it has none.
func wsCloseCode(p []byte) (uint16, error) {
	switch len(p) {
	case 0:
		return wsCloseNoStatus, nil
	case 1:
		return 0, errWSCloseLen
	}
	// RFC 6455 §7.4: 1000–1003, 1007–1014 and 3000–4999 may be sent;
	// 1004–1006 and 1015 are reserved, the rest undefined.
	switch code := binary.BigEndian.Uint16(p); {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return code, nil
	}
	return 0, errWSCloseCode
}

// wsReader reassembles WebSocket messages from a byte stream: whole
// frames are handed over as views into the caller's buffer (unmasked in
// place); a fragmented message is collected in msg (one copy, needed
// because control frames may come between its fragments).
type wsReader struct {
	requireMask bool
	maxFrame    int
	maxMessage  int

	inMsg bool   // a fragmented message is being collected
	msgOp byte   // its opcode (text or binary)
	msg   []byte // its payload so far
}

// wsEvent is what one call to next found.
type wsEvent struct {
	op      byte   // wsOpText/wsOpBinary (a whole message), or a control opcode
	payload []byte // unmasked; a view into the buffer or into wsReader.msg
}

var errWSNeedMore = errors.New("websocket: need more bytes")

// next decodes the frames at the start of b until it has a whole message
// or a control frame, and returns it with the bytes used. With
// errWSNeedMore, used bytes (whole continuation frames already collected)
// may be dropped and the rest must be kept for the next call. The payload
// is valid until the buffer or the next call changes it.
func (r *wsReader) next(b []byte) (ev wsEvent, used int, err error) {
	for {
		h, n, err := wsDecodeHeader(b[used:], r.requireMask, r.maxFrame)
		if err != nil {
			return ev, used, err
		}
		if n == 0 || len(b)-used-n < h.length {
			return ev, used, errWSNeedMore
		}
		payload := b[used+n : used+n+h.length]
		if h.masked {
			wsUnmask(payload, h.key, 0)
		}
		used += n + h.length
		switch h.opcode {
		case wsOpClose, wsOpPing, wsOpPong:
			return wsEvent{op: h.opcode, payload: payload}, used, nil
		case wsOpContinuation:
			if !r.inMsg {
				return ev, used, errWSContinuation
			}
			if len(r.msg)+len(payload) > r.maxMessage {
				return ev, used, errWSMsgTooBig
			}
			r.msg = append(r.msg, payload...)
			if h.fin {
				r.inMsg = false
				return wsEvent{op: r.msgOp, payload: r.msg}, used, nil
			}
		default: // text, binary
			if r.inMsg {
				return ev, used, errWSInterleaved
			}
			if len(payload) > r.maxMessage {
				return ev, used, errWSMsgTooBig
			}
			if h.fin {
				return wsEvent{op: h.opcode, payload: payload}, used, nil
			}
			r.inMsg, r.msgOp = true, h.opcode
			r.msg = append(r.msg[:0], payload...)
		}
	}
}
