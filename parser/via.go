package parser

import "encoding/binary"

// Via is one via-parm (RFC 3261 §20.42). Host keeps IPv6 brackets; Port is
// 0 when absent. Received may be an IPv4 address or an IPv6 address with or
// without brackets (RFC 5118 §4.5).
type Via struct {
	Raw       []byte // the whole via-parm
	Protocol  []byte // "SIP"
	Version   []byte // "2.0"
	Transport []byte // "UDP", "TCP", "TLS", "SCTP", "WS", ... as sent
	Host      []byte
	Port      int
	Params    []byte // all via-params without the first ";"
	Branch    []byte
	Received  []byte
	RPort     []byte // value of rport, nil when it has none
	HasRPort  bool   // rport present, with or without a value (RFC 3581)
	MAddr     []byte
	TTL       []byte
}

// MagicCookie starts every RFC 3261 branch.
const MagicCookie = "z9hG4bK"

// RFC3261Branch reports whether the branch starts with the magic cookie and
// has something after it; when false, transactions are matched the RFC 2543
// way (RFC 3261 §17.2.3). A bare "z9hG4bK" (RFC 4475 §3.2.1) is false.
func (v *Via) RFC3261Branch() bool {
	return len(v.Branch) > len(MagicCookie) && string(v.Branch[:len(MagicCookie)]) == MagicCookie
}

// parseVia parses one via-parm at b[i:] into v, which must be zero. b ends
// where the header value ends. It returns the index after the value (at ","
// or len(b)).
func parseVia(b []byte, i int, v *Via) (int, bool) {
	i = skipLWS(b, i)
	start := i
	var parts [3][]byte
	p := 0
	// "SIP/2.0/" as one word; 0x202020 folds the case of the three letters.
	if len(b)-i > 8 && binary.LittleEndian.Uint64(b[i:])|0x202020 == 0x2f302e322f706973 {
		// the common spelling, without LWS around the slashes
		parts[0], parts[1] = b[i:i+3], b[i+4:i+7]
		i += 8
		p = 2
		s := i
		i = skipToken(b, i)
		if i == s {
			return i, false
		}
		parts[2] = b[s:i]
		p = 3
	}
	for ; p < 3; p++ {
		if p > 0 {
			i = skipLWS(b, i)
			if i >= len(b) || b[i] != '/' {
				return i, false
			}
			i = skipLWS(b, i+1)
		}
		s := i
		i = skipToken(b, i)
		if i == s {
			return i, false
		}
		parts[p] = b[s:i]
	}
	v.Protocol, v.Version, v.Transport = parts[0], parts[1], parts[2]
	// sent-by needs LWS before it
	j := skipLWS(b, i)
	if j == i {
		return i, false
	}
	host, port, n, ok := parseHostPort(b, j, true)
	if !ok {
		return n, false
	}
	v.Host, v.Port = host, port
	end := n
	i = skipLWS(b, n)
	ps := -1
	for i < len(b) && b[i] == ';' {
		ns, ne, vs, next, okp := paramAt(b, i+1)
		if !okp {
			return next, false
		}
		if ps < 0 {
			ps = ns
		}
		var val []byte // nil when the parameter has no value
		if vs >= 0 {
			val = b[vs:next]
		}
		switch ne - ns {
		case 6:
			if nameAt(b, ns, ne, wordBranch, 6) {
				if val == nil {
					return next, false
				}
				v.Branch = val
			}
		case 8:
			if nameAt(b, ns, ne, wordReceived, 8) {
				if val == nil {
					return next, false
				}
				v.Received = val
			}
		case 5:
			if nameAt(b, ns, ne, wordRport, 5) {
				v.HasRPort = true
				if val != nil {
					if _, okr := parseUint(val, 65535); !okr {
						return next, false
					}
				}
				v.RPort = val
			} else if nameAt(b, ns, ne, wordMaddr, 5) {
				v.MAddr = val
			}
		case 3:
			if nameAt(b, ns, ne, wordTTL, 3) {
				if _, okt := parseUint(val, 255); !okt {
					return next, false
				}
				v.TTL = val
			}
		}
		end = next
		i = skipLWS(b, next)
	}
	if ps >= 0 {
		v.Params = b[ps:end]
	}
	if i < len(b) && b[i] != ',' {
		return i, false
	}
	v.Raw = b[start:end]
	return i, true
}

// Param returns a via-param by name (case-insensitive).
func (v *Via) Param(name string) ([]byte, bool) { return lookupParam(v.Params, name) }

// ValueIter walks the comma-separated values of every header line with one
// name, in message order: Via, Contact, Route, Record-Route, Path, Allow,
// Supported, ... Start and End are the offsets of the current value in the
// parse buffer.
type valueIter struct {
	m     *Message
	name  HeaderName
	h     int // index of the current header line
	pos   int // offset of the next value, 0 = start of the line's value
	Start int
	End   int
	err   error
}

func (it *valueIter) init(m *Message, h HeaderName) {
	*it = valueIter{m: m, name: h, h: -1}
	if f := m.st.first[h]; f != 0 {
		it.h = int(f) - 1
		it.pos = int(m.hdrs[it.h].vs)
	}
}

// advance finds the header line holding the next value; it returns the
// line's value end, or -1 when done.
func (it *valueIter) advance() int {
	for it.h >= 0 && it.h < it.m.st.nh {
		x := &it.m.hdrs[it.h]
		if x.name == it.name {
			if it.pos < int(x.vs) {
				it.pos = int(x.vs)
			}
			if it.pos < int(x.ve) {
				return int(x.ve)
			}
		}
		it.h++
		it.pos = 0
	}
	return -1
}

// finish records where a value parse stopped: after "," continue on the
// same line, else on the next line.
func (it *valueIter) finish(b []byte, n int, ve int) {
	it.End = n
	n = skipLWS(b[:ve], n)
	if n < ve && b[n] == ',' {
		it.pos = n + 1
		if skipLWS(b[:ve], it.pos) >= ve {
			it.err = it.m.failHdr(KindBadHeader, &it.m.hdrs[it.h]) // trailing comma
		}
	} else {
		it.pos = ve
	}
}

// ViaIter iterates over all Via values of a message, across lines.
type ViaIter struct {
	valueIter
	Via Via
}

// Vias returns an iterator over every Via value, top first.
//
//	it := m.Vias()
//	for it.Next() { use(&it.Via) }
//	if it.Err() != nil { ... }
func (m *Message) Vias() ViaIter {
	var it ViaIter
	it.init(m, HdrVia)
	return it
}

// Next parses the next Via value into it.Via.
func (it *ViaIter) Next() bool {
	if it.err != nil {
		return false
	}
	ve := it.advance()
	if ve < 0 {
		return false
	}
	b := it.m.st.buf
	it.Via = Via{}
	n, ok := parseVia(b[:ve], it.pos, &it.Via)
	if !ok {
		it.err = it.m.failHdr(KindBadHeader, &it.m.hdrs[it.h])
		return false
	}
	it.Start = it.m.off(it.Via.Raw)
	it.finish(b, n, ve)
	return it.err == nil
}

// Err returns the error that stopped the iteration, if any.
func (it *valueIter) Err() error { return it.err }
