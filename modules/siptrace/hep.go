package siptrace

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"switchboard/transport"
)

// HEP version 3 (the Homer Encapsulation Protocol, HEP3 rev 12): a packet
// is "HEP3", its total length (uint16, network order), then chunks, each
// a vendor id (0: generic), a chunk type and the chunk's total length
// (all uint16, the 6-byte chunk header included), then the value.
const (
	chunkFamily    = 0x0001 // uint8: 2 IPv4, 10 IPv6
	chunkIPProto   = 0x0002 // uint8: 17 UDP, 6 TCP
	chunkSrcIPv4   = 0x0003
	chunkDstIPv4   = 0x0004
	chunkSrcIPv6   = 0x0005
	chunkDstIPv6   = 0x0006
	chunkSrcPort   = 0x0007 // uint16
	chunkDstPort   = 0x0008
	chunkTimeSec   = 0x0009 // uint32: Unix seconds
	chunkTimeUsec  = 0x000a // uint32: microseconds within the second
	chunkProtoType = 0x000b // uint8: 1 SIP
	chunkCaptureID = 0x000c // uint32: the capture agent (node) id
	chunkAuthKey   = 0x000e // string: the capture password
	chunkPayload   = 0x000f // the captured message
	chunkCorrID    = 0x0011 // string: correlation id (the Call-ID)

	familyIPv4   = 2
	familyIPv6   = 10
	protoUDP     = 17
	protoTCP     = 6
	protoTypeSIP = 1
	// ProtoTypeLog is HEP's protocol type 100: a log line, tied to a call
	// by the correlation id.
	ProtoTypeLog = 100

	chunkHeader = 6
	hepHeader   = 6
	// maxHEP is the largest packet the uint16 length can describe.
	maxHEP = 0xffff
)

// Record is one captured message as HEP describes it.
type Record struct {
	Proto    transport.Proto // UDP, or a stream (TCP, TLS, WS: IP protocol TCP)
	Src, Dst netip.AddrPort
	Sec      uint32 // capture time: Unix seconds
	Usec     uint32 // and microseconds
	NodeID   uint32 // capture agent id (siptrace.node_id)
	Password []byte // capture password (siptrace.password); empty: no chunk
	CallID   []byte // correlation id; empty: no chunk
	Payload  []byte // the SIP message as on the wire, or a log line
	// Type is the protocol type: 0 or 1 SIP, ProtoTypeLog a log line.
	Type uint8
}

// ErrTooLarge is returned when a record does not fit in one HEP packet.
var ErrTooLarge = errors.New("siptrace: message too large for a HEP packet")

// EncodedLen is the length of r's HEP3 packet (more than 65535: it does
// not fit in one).
func EncodedLen(r *Record) int {
	return encodedLen(r, r.Src.Addr().Unmap().Is6() || r.Dst.Addr().Unmap().Is6())
}

// AppendHEP3 appends r encoded as one HEP3 packet to dst. It allocates
// nothing when dst has room (the sender reuses one buffer). IPv4-mapped
// addresses are sent as IPv4; when one address is IPv6 both go as IPv6.
func AppendHEP3(dst []byte, r *Record) ([]byte, error) {
	src, dstA := r.Src.Addr().Unmap(), r.Dst.Addr().Unmap()
	v6 := src.Is6() || dstA.Is6()
	n := encodedLen(r, v6)
	if n > maxHEP {
		return dst, ErrTooLarge
	}
	start := len(dst)
	dst = append(dst, 'H', 'E', 'P', '3', byte(n>>8), byte(n))
	if v6 {
		dst = appendU8(dst, chunkFamily, familyIPv6)
	} else {
		dst = appendU8(dst, chunkFamily, familyIPv4)
	}
	if r.Proto.Stream() {
		dst = appendU8(dst, chunkIPProto, protoTCP)
	} else {
		dst = appendU8(dst, chunkIPProto, protoUDP)
	}
	if v6 {
		s, d := src.As16(), dstA.As16()
		dst = appendChunk(dst, chunkSrcIPv6, s[:])
		dst = appendChunk(dst, chunkDstIPv6, d[:])
	} else {
		s, d := src.As4(), dstA.As4()
		dst = appendChunk(dst, chunkSrcIPv4, s[:])
		dst = appendChunk(dst, chunkDstIPv4, d[:])
	}
	dst = appendU16(dst, chunkSrcPort, r.Src.Port())
	dst = appendU16(dst, chunkDstPort, r.Dst.Port())
	dst = appendU32(dst, chunkTimeSec, r.Sec)
	dst = appendU32(dst, chunkTimeUsec, r.Usec)
	typ := r.Type
	if typ == 0 {
		typ = protoTypeSIP
	}
	dst = appendU8(dst, chunkProtoType, typ)
	dst = appendU32(dst, chunkCaptureID, r.NodeID)
	if len(r.Password) > 0 {
		dst = appendChunk(dst, chunkAuthKey, r.Password)
	}
	if len(r.CallID) > 0 {
		dst = appendChunk(dst, chunkCorrID, r.CallID)
	}
	dst = appendChunk(dst, chunkPayload, r.Payload)
	if len(dst)-start != n {
		panic("siptrace: HEP length mismatch") // encodedLen and the chunks disagree
	}
	return dst, nil
}

// encodedLen is the packet's total length.
func encodedLen(r *Record, v6 bool) int {
	n := hepHeader + 3*(chunkHeader+1) + 2*(chunkHeader+2) + 3*(chunkHeader+4) + chunkHeader + len(r.Payload)
	if v6 {
		n += 2 * (chunkHeader + 16)
	} else {
		n += 2 * (chunkHeader + 4)
	}
	if len(r.Password) > 0 {
		n += chunkHeader + len(r.Password)
	}
	if len(r.CallID) > 0 {
		n += chunkHeader + len(r.CallID)
	}
	return n
}

func appendChunkHeader(dst []byte, typ, valueLen int) []byte {
	l := chunkHeader + valueLen
	return append(dst, 0, 0, byte(typ>>8), byte(typ), byte(l>>8), byte(l))
}

func appendChunk(dst []byte, typ int, v []byte) []byte {
	return append(appendChunkHeader(dst, typ, len(v)), v...)
}

func appendU8(dst []byte, typ int, v uint8) []byte {
	return append(appendChunkHeader(dst, typ, 1), v)
}

func appendU16(dst []byte, typ int, v uint16) []byte {
	return binary.BigEndian.AppendUint16(appendChunkHeader(dst, typ, 2), v)
}

func appendU32(dst []byte, typ int, v uint32) []byte {
	return binary.BigEndian.AppendUint32(appendChunkHeader(dst, typ, 4), v)
}

// ParseHEP3 decodes one HEP3 packet into r; r's byte slices are views
// into b. For tests and tools (a collector in a test, checking what was
// sent): it accepts the generic chunks Switchboard sends and skips
// others.
func ParseHEP3(b []byte, r *Record) error {
	if len(b) < hepHeader || string(b[:4]) != "HEP3" {
		return errors.New("siptrace: not a HEP3 packet")
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	if n < hepHeader || n > len(b) {
		return errors.New("siptrace: HEP3 length beyond the data")
	}
	*r = Record{}
	var family uint8
	var src, dst []byte
	var sport, dport uint16
	for p := hepHeader; p < n; {
		if n-p < chunkHeader {
			return errors.New("siptrace: truncated HEP3 chunk header")
		}
		vendor := binary.BigEndian.Uint16(b[p:])
		typ := binary.BigEndian.Uint16(b[p+2:])
		l := int(binary.BigEndian.Uint16(b[p+4:]))
		if l < chunkHeader || p+l > n {
			return errors.New("siptrace: bad HEP3 chunk length")
		}
		v := b[p+chunkHeader : p+l]
		p += l
		if vendor != 0 {
			continue
		}
		switch typ {
		case chunkFamily:
			if len(v) == 1 {
				family = v[0]
			}
		case chunkIPProto:
			if len(v) == 1 && v[0] == protoTCP {
				r.Proto = transport.TCP
			} else {
				r.Proto = transport.UDP
			}
		case chunkSrcIPv4, chunkSrcIPv6:
			src = v
		case chunkDstIPv4, chunkDstIPv6:
			dst = v
		case chunkSrcPort:
			if len(v) == 2 {
				sport = binary.BigEndian.Uint16(v)
			}
		case chunkDstPort:
			if len(v) == 2 {
				dport = binary.BigEndian.Uint16(v)
			}
		case chunkTimeSec:
			if len(v) == 4 {
				r.Sec = binary.BigEndian.Uint32(v)
			}
		case chunkTimeUsec:
			if len(v) == 4 {
				r.Usec = binary.BigEndian.Uint32(v)
			}
		case chunkProtoType:
			if len(v) == 1 {
				r.Type = v[0]
			}
		case chunkCaptureID:
			if len(v) == 4 {
				r.NodeID = binary.BigEndian.Uint32(v)
			}
		case chunkAuthKey:
			r.Password = v
		case chunkCorrID:
			r.CallID = v
		case chunkPayload:
			r.Payload = v
		}
	}
	sa, ok1 := netip.AddrFromSlice(src)
	da, ok2 := netip.AddrFromSlice(dst)
	if !ok1 || !ok2 || (family == familyIPv4) != sa.Is4() {
		return errors.New("siptrace: HEP3 addresses missing or of the wrong family")
	}
	r.Src, r.Dst = netip.AddrPortFrom(sa, sport), netip.AddrPortFrom(da, dport)
	return nil
}
