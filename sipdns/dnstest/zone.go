// Package dnstest is a small authoritative DNS server on loopback for
// tests of RFC 3263 resolution: it answers from a table of records over
// UDP and TCP on one port and logs the questions it was asked. It writes
// its answers and reads its questions on its own, without package sipdns,
// so the resolver's wire format is checked against an independent
// implementation.
package dnstest

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Record types.
const (
	TypeA     uint16 = 1
	TypeCNAME uint16 = 5
	TypeSOA   uint16 = 6
	TypeAAAA  uint16 = 28
	TypeSRV   uint16 = 33
	TypeNAPTR uint16 = 35
)

const rcodeNXDomain = 3

// Zone answers from a table of records: NXDOMAIN for names it has nothing
// for, no data otherwise, with an SOA in the authority section of negative
// answers when SetSOAMin was called. Addr is its "127.0.0.1:port".
type Zone struct {
	Addr string

	mu       sync.Mutex
	rrs      map[string][]RR // "name/type"
	extra    map[string][]RR // additional section for "name/type"
	soaMin   uint32
	truncate Truncation
	queries  []string
}

// RR is one record: owner name, type, TTL and RDATA in wire format.
type RR struct {
	Name string
	Type uint16
	TTL  uint32
	Data []byte
}

func zkey(name string, typ uint16) string { return strings.ToLower(name) + "/" + TypeName(typ) }

// TypeName is the mnemonic of a record type, as the query log shows it.
func TypeName(t uint16) string {
	switch t {
	case TypeA:
		return "A"
	case TypeAAAA:
		return "AAAA"
	case TypeSRV:
		return "SRV"
	case TypeNAPTR:
		return "NAPTR"
	case TypeCNAME:
		return "CNAME"
	}
	return "T" + strconv.Itoa(int(t))
}

// WireName encodes name as uncompressed labels.
func WireName(name string) []byte {
	var b []byte
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }

// A is an A record, or an AAAA record for an IPv6 address.
func A(name string, ttl uint32, ip string) RR {
	a := netip.MustParseAddr(ip)
	if a.Is4() {
		b := a.As4()
		return RR{name, TypeA, ttl, b[:]}
	}
	b := a.As16()
	return RR{name, TypeAAAA, ttl, b[:]}
}

// SRV is an SRV record (RFC 2782).
func SRV(name string, ttl uint32, prio, weight, port int, target string) RR {
	d := append(append(append(u16(prio), u16(weight)...), u16(port)...), WireName(target)...)
	return RR{name, TypeSRV, ttl, d}
}

// NAPTR is a NAPTR record (RFC 3403) with an empty regexp.
func NAPTR(name string, ttl uint32, order, pref int, flags, svc, repl string) RR {
	d := append(u16(order), u16(pref)...)
	for _, s := range []string{flags, svc, ""} {
		d = append(d, byte(len(s)))
		d = append(d, s...)
	}
	return RR{name, TypeNAPTR, ttl, append(d, WireName(repl)...)}
}

// CNAME is a CNAME record.
func CNAME(name string, ttl uint32, target string) RR {
	return RR{name, TypeCNAME, ttl, WireName(target)}
}

// New returns a zone that answers nothing yet, for Answer only (no
// sockets).
func New(rrs ...RR) *Zone {
	z := &Zone{rrs: map[string][]RR{}, extra: map[string][]RR{}}
	z.Add(rrs...)
	return z
}

// NewZone starts a zone serving rrs on a loopback port (UDP and TCP), closed
// when the test ends.
func NewZone(t testing.TB, rrs ...RR) *Zone {
	t.Helper()
	z := New(rrs...)
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	z.Addr = pc.LocalAddr().String()
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := z.Answer(buf[:n], true); resp != nil {
				pc.WriteTo(resp, src)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [2]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				q := make([]byte, int(hdr[0])<<8|int(hdr[1]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := z.Answer(q, false)
				c.Write(append(u16(len(resp)), resp...))
			}()
		}
	}()
	return z
}

// Add adds records to the zone.
func (z *Zone) Add(rrs ...RR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, rr := range rrs {
		k := zkey(rr.Name, rr.Type)
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

// AddExtra puts rrs in the additional section of answers to name/typ.
func (z *Zone) AddExtra(name string, typ uint16, rrs ...RR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.extra[zkey(name, typ)] = append(z.extra[zkey(name, typ)], rrs...)
}

// Reset replaces every record of the zone with rrs.
func (z *Zone) Reset(rrs ...RR) {
	z.mu.Lock()
	z.rrs = map[string][]RR{}
	z.extra = map[string][]RR{}
	z.mu.Unlock()
	z.Add(rrs...)
}

// SetSOAMin makes negative answers carry an SOA with this minimum (0:
// no SOA).
func (z *Zone) SetSOAMin(min uint32) {
	z.mu.Lock()
	z.soaMin = min
	z.mu.Unlock()
}

// Truncation is how the zone truncates its UDP answers.
type Truncation int

const (
	NoTruncation Truncation = iota
	// TruncateEmpty: TC set, no records (what most servers send).
	TruncateEmpty
	// TruncateCut: TC set, the whole answer cut inside its first record,
	// the counts left as they were.
	TruncateCut
)

// SetTruncate makes every UDP answer truncated, so the client must ask
// again over TCP.
func (z *Zone) SetTruncate(t Truncation) {
	z.mu.Lock()
	z.truncate = t
	z.mu.Unlock()
}

// Log returns the questions asked since the last call, as
// "name/TYPE/udp" or "name/TYPE/tcp".
func (z *Zone) Log() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	q := z.queries
	z.queries = nil
	return q
}

// Answer returns the zone's answer to the query q (nil when q does not
// parse), as sent over UDP or TCP.
func (z *Zone) Answer(q []byte, udp bool) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	i++
	if i+4 > len(q) {
		return nil
	}
	qname := strings.Join(labels, ".")
	qtype := uint16(q[i])<<8 | uint16(q[i+1])
	qend := i + 4

	z.mu.Lock()
	defer z.mu.Unlock()
	proto := "tcp"
	if udp {
		proto = "udp"
	}
	z.queries = append(z.queries, zkey(qname, qtype)+"/"+proto)
	ans := z.rrs[zkey(qname, qtype)]
	if len(ans) == 0 {
		ans = z.rrs[zkey(qname, TypeCNAME)]
	}
	for _, rr := range ans {
		if rr.Type == TypeCNAME {
			// Like a recursive server: the chain and what it ends in.
			end := z.rrs[zkey(strings.TrimSuffix(decodeName(rr.Data), "."), qtype)]
			ans = append(append([]RR(nil), ans...), end...)
			break
		}
	}
	extra := z.extra[zkey(qname, qtype)]
	exists := false
	for k := range z.rrs {
		if strings.HasPrefix(k, strings.ToLower(qname)+"/") {
			exists = true
		}
	}
	resp := append([]byte(nil), q[:qend]...)
	resp[2], resp[3] = 0x84, 0x00 // response, authoritative, NOERROR
	resp[4], resp[5] = 0, 1
	if udp && z.truncate == TruncateEmpty {
		resp[2] |= 0x02
		ans, extra = nil, nil
		exists = true
	}
	var auth []RR
	if len(ans) == 0 && z.soaMin > 0 {
		soa := append(append(WireName("ns.test"), WireName("hostmaster.test")...), 0, 0, 0, 1, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0, 60)
		soa = append(soa, byte(z.soaMin>>24), byte(z.soaMin>>16), byte(z.soaMin>>8), byte(z.soaMin))
		auth = []RR{{"test", TypeSOA, 3600, soa}}
	}
	if !exists {
		resp[3] = rcodeNXDomain
	}
	put := func(rrs []RR) {
		for _, rr := range rrs {
			if strings.EqualFold(rr.Name, qname) {
				resp = append(resp, 0xc0, 12) // compressed owner: the question
			} else {
				resp = append(resp, WireName(rr.Name)...)
			}
			resp = append(resp, u16(int(rr.Type))...)
			resp = append(resp, 0, 1)
			resp = append(resp, byte(rr.TTL>>24), byte(rr.TTL>>16), byte(rr.TTL>>8), byte(rr.TTL))
			resp = append(resp, u16(len(rr.Data))...)
			resp = append(resp, rr.Data...)
		}
	}
	resp = append(resp[:6], append(append(append(u16(len(ans)), u16(len(auth))...), u16(len(extra))...), resp[12:]...)...)
	put(ans)
	put(auth)
	put(extra)
	if udp && z.truncate == TruncateCut && len(ans) > 0 {
		resp[2] |= 0x02
		resp = resp[:qend+5] // inside the first answer record
	}
	return resp
}

func decodeName(b []byte) string {
	var parts []string
	for len(b) > 0 && b[0] != 0 {
		parts = append(parts, string(b[1:1+b[0]]))
		b = b[1+b[0]:]
	}
	return strings.Join(parts, ".")
}
