package sipdns

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
)

// The DNS wire format (RFC 1035 §4, RFC 2782 SRV, RFC 3403 NAPTR, RFC 6891
// EDNS0), only as much as next-hop resolution needs: one question out,
// A, AAAA, CNAME, SRV, NAPTR and SOA records in. Every length is checked
// against the message: a malformed answer is an error, never a panic.

// Record types and classes.
const (
	typeA     uint16 = 1
	typeCNAME uint16 = 5
	typeSOA   uint16 = 6
	typeAAAA  uint16 = 28
	typeSRV   uint16 = 33
	typeNAPTR uint16 = 35
	typeOPT   uint16 = 41
	classIN   uint16 = 1
)

// Response codes.
const (
	rcodeOK       = 0
	rcodeNXDomain = 3
)

// ednsSize is the UDP payload size advertised in the OPT record: the
// DNS flag day 2020 value, which avoids IP fragmentation.
const ednsSize = 1232

var (
	errDNSShort    = errors.New("sipdns: DNS message truncated")
	errDNSName     = errors.New("sipdns: bad DNS name")
	errDNSMismatch = errors.New("sipdns: DNS answer does not match the question")
)

// dnsRR is one resource record of an answer, decoded.
type dnsRR struct {
	name  string // lower case, no trailing dot
	typ   uint16
	ttl   uint32
	addr  netip.Addr // A, AAAA
	host  string     // CNAME target, SRV target, NAPTR replacement
	prio  uint16     // SRV priority, NAPTR order
	wt    uint16     // SRV weight, NAPTR preference
	port  uint16     // SRV
	flags string     // NAPTR
	svc   string     // NAPTR services
	min   uint32     // SOA minimum
}

// dnsMsg is a decoded answer: the response code, the truncation flag and
// the records of the answer, authority and additional sections.
type dnsMsg struct {
	rcode int
	tc    bool
	ans   []dnsRR
	auth  []dnsRR
	extra []dnsRR
}

// appendQuery writes a recursive query for name/qtype with an EDNS0 OPT
// record.
func appendQuery(dst []byte, id uint16, name string, qtype uint16) ([]byte, error) {
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = append(dst, 0x01, 0x00) // RD
	dst = append(dst, 0, 1, 0, 0, 0, 0, 0, 1)
	var err error
	if dst, err = appendName(dst, name); err != nil {
		return nil, err
	}
	dst = binary.BigEndian.AppendUint16(dst, qtype)
	dst = binary.BigEndian.AppendUint16(dst, classIN)
	// OPT: root owner, type 41, class = UDP size, TTL 0, no options.
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, typeOPT)
	dst = binary.BigEndian.AppendUint16(dst, ednsSize)
	return append(dst, 0, 0, 0, 0, 0, 0), nil
}

// appendName writes name as labels. A trailing dot is allowed; empty
// labels, labels over 63 bytes and names over 255 bytes are not.
func appendName(dst []byte, name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return nil, errDNSName
	}
	for name != "" {
		label, rest, _ := strings.Cut(name, ".")
		if len(label) == 0 || len(label) > 63 {
			return nil, errDNSName
		}
		dst = append(dst, byte(len(label)))
		dst = append(dst, label...)
		name = rest
	}
	return append(dst, 0), nil
}

// readName decodes the (possibly compressed) name at off. It returns the
// name in lower case without the trailing dot and the offset after it in
// the record (after the first pointer when compressed).
func readName(msg []byte, off int) (string, int, error) {
	var b []byte
	end := -1
	for jumps := 0; ; {
		if off >= len(msg) {
			return "", 0, errDNSShort
		}
		l := int(msg[off])
		switch {
		case l == 0:
			if end < 0 {
				end = off + 1
			}
			if len(b) > 255 {
				return "", 0, errDNSName
			}
			return strings.ToLower(string(b)), end, nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(msg) {
				return "", 0, errDNSShort
			}
			if end < 0 {
				end = off + 2
			}
			if jumps++; jumps > 32 {
				return "", 0, errDNSName // a pointer loop
			}
			off = (l&0x3f)<<8 | int(msg[off+1])
		case l&0xc0 != 0:
			return "", 0, errDNSName // extended label types are not used
		default:
			if off+1+l > len(msg) {
				return "", 0, errDNSShort
			}
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, msg[off+1:off+1+l]...)
			if len(b) > 255 {
				return "", 0, errDNSName
			}
			off += 1 + l
		}
	}
}

// readString decodes a <character-string> (NAPTR flags, services, regexp).
func readString(msg []byte, off, end int) (string, int, error) {
	if off >= end {
		return "", 0, errDNSShort
	}
	l := int(msg[off])
	if off+1+l > end {
		return "", 0, errDNSShort
	}
	return string(msg[off+1 : off+1+l]), off + 1 + l, nil
}

// parseAnswer decodes a response to the question (name, qtype) sent with
// id. Records of types other than the ones above are skipped.
func parseAnswer(msg []byte, id uint16, name string, qtype uint16) (*dnsMsg, error) {
	if len(msg) < 12 {
		return nil, errDNSShort
	}
	if binary.BigEndian.Uint16(msg) != id || msg[2]&0x80 == 0 {
		return nil, errDNSMismatch
	}
	m := &dnsMsg{rcode: int(msg[3] & 0x0f), tc: msg[2]&0x02 != 0}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	counts := [3]int{int(binary.BigEndian.Uint16(msg[6:])), int(binary.BigEndian.Uint16(msg[8:])), int(binary.BigEndian.Uint16(msg[10:]))}
	off := 12
	if qd != 1 {
		return nil, errDNSMismatch
	}
	qn, off, err := readName(msg, off)
	if err != nil {
		return nil, err
	}
	if off+4 > len(msg) {
		return nil, errDNSShort
	}
	if qn != strings.ToLower(strings.TrimSuffix(name, ".")) || binary.BigEndian.Uint16(msg[off:]) != qtype {
		return nil, errDNSMismatch
	}
	off += 4
	if m.tc {
		return m, nil // the caller asks again over TCP
	}
	for sec := 0; sec < 3; sec++ {
		for i := 0; i < counts[sec]; i++ {
			var rr dnsRR
			var keep bool
			if off, keep, err = readRR(msg, off, &rr); err != nil {
				return nil, err
			}
			if !keep {
				continue
			}
			switch sec {
			case 0:
				m.ans = append(m.ans, rr)
			case 1:
				m.auth = append(m.auth, rr)
			default:
				m.extra = append(m.extra, rr)
			}
		}
	}
	return m, nil
}

// readRR decodes the record at off; keep is false for a type not used.
func readRR(msg []byte, off int, rr *dnsRR) (next int, keep bool, err error) {
	if rr.name, off, err = readName(msg, off); err != nil {
		return 0, false, err
	}
	if off+10 > len(msg) {
		return 0, false, errDNSShort
	}
	rr.typ = binary.BigEndian.Uint16(msg[off:])
	class := binary.BigEndian.Uint16(msg[off+2:])
	rr.ttl = binary.BigEndian.Uint32(msg[off+4:])
	if rr.ttl > 1<<31-1 {
		rr.ttl = 0 // RFC 2181 §8: treat as zero
	}
	n := int(binary.BigEndian.Uint16(msg[off+8:]))
	off += 10
	end := off + n
	if end > len(msg) {
		return 0, false, errDNSShort
	}
	if class != classIN {
		return end, false, nil
	}
	d := msg[off:end]
	switch rr.typ {
	case typeA:
		if n != 4 {
			return 0, false, errDNSShort
		}
		rr.addr = netip.AddrFrom4([4]byte(d))
	case typeAAAA:
		if n != 16 {
			return 0, false, errDNSShort
		}
		rr.addr = netip.AddrFrom16([16]byte(d))
	case typeCNAME:
		if rr.host, _, err = readName(msg, off); err != nil {
			return 0, false, err
		}
	case typeSRV:
		if n < 7 {
			return 0, false, errDNSShort
		}
		rr.prio = binary.BigEndian.Uint16(d)
		rr.wt = binary.BigEndian.Uint16(d[2:])
		rr.port = binary.BigEndian.Uint16(d[4:])
		if rr.host, _, err = readName(msg[:end], off+6); err != nil {
			return 0, false, err
		}
	case typeNAPTR:
		if n < 7 {
			return 0, false, errDNSShort
		}
		rr.prio = binary.BigEndian.Uint16(d)
		rr.wt = binary.BigEndian.Uint16(d[2:])
		p := off + 4
		if rr.flags, p, err = readString(msg, p, end); err != nil {
			return 0, false, err
		}
		if rr.svc, p, err = readString(msg, p, end); err != nil {
			return 0, false, err
		}
		if _, p, err = readString(msg, p, end); err != nil { // regexp: not used for SIP
			return 0, false, err
		}
		if rr.host, _, err = readName(msg[:end], p); err != nil {
			return 0, false, err
		}
	case typeSOA:
		p := off
		for i := 0; i < 2; i++ { // MNAME, RNAME
			if _, p, err = readName(msg, p); err != nil {
				return 0, false, err
			}
		}
		if p+20 > end {
			return 0, false, errDNSShort
		}
		rr.min = binary.BigEndian.Uint32(msg[p+16:])
	default:
		return end, false, nil
	}
	return end, true, nil
}
