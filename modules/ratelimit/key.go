package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"strings"

	"switchboard/routing"
)

// keyKind says what a pipe counts separately (the key setting).
type keyKind uint8

const (
	keyNone   keyKind = iota // one counter for the pipe
	keySource                // the source address (IPv6: its /ipv6_prefix)
	keyUser                  // the From user@domain
	keyDomain                // the From domain
	keyMethod                // the request method
	keyGiven                 // a key the route passed (Pipe.CheckKey)
)

var keyNames = [...]string{"none", "source", "user", "domain", "method", "given"}

func (k keyKind) String() string { return keyNames[k] }

func parseKey(s string) (keyKind, bool) {
	switch strings.ToLower(s) {
	case "", "none":
		return keyNone, true
	case "source":
		return keySource, true
	case "user":
		return keyUser, true
	case "domain":
		return keyDomain, true
	case "method":
		return keyMethod, true
	}
	return 0, false
}

// hasher hashes keys with a seed chosen at random when the pipe's table is
// made: an attacker who does not know it cannot choose keys that collide
// with another's (the table keeps hashes, not keys, so a collision would
// share a counter).
type hasher struct{ seed maphash.Seed }

func newHasher() hasher { return hasher{maphash.MakeSeed()} }

func (h hasher) bytes(b []byte) uint64 { return maphash.Bytes(h.seed, b) }

// addr hashes an address, IPv6 addresses by their first v6bits bits (an
// IPv6 host usually has a /64 to itself: counting each of its addresses
// apart would let it multiply its limit at will).
func (h hasher) addr(a netip.Addr, v6bits int) (uint64, [16]byte) {
	a = a.Unmap()
	if a.Is6() && v6bits < 128 {
		if p, err := a.Prefix(v6bits); err == nil {
			a = p.Addr()
		}
	}
	b := a.As16()
	return maphash.Bytes(h.seed, b[:]), b
}

// fold hashes b with ASCII letters lower-cased (domain names), 64 bytes
// at a time through a buffer on the stack.
func (h hasher) fold(b []byte) uint64 {
	var buf [64]byte
	var sum uint64
	for len(b) > 0 {
		n := copy(buf[:], b)
		for i := 0; i < n; i++ {
			if c := buf[i]; 'A' <= c && c <= 'Z' {
				buf[i] = c + 'a' - 'A'
			}
		}
		sum = mix(sum, maphash.Bytes(h.seed, buf[:n]))
		b = b[n:]
	}
	return sum
}

// mix combines two hashes in order.
func mix(a, b uint64) uint64 { return (a^0x9e3779b97f4a7c15)*0xbf58476d1ce4e5b9 ^ b }

// requestKey hashes the key of kind k of the request and keeps what shows
// it in e (only when the entry is new; show is called then).
func (p *pipeState) requestKey(c *routing.Ctx, k keyKind, v6bits int) uint64 {
	switch k {
	case keySource:
		h, _ := p.hash.addr(c.SrcIP(), v6bits)
		return h
	case keyUser:
		return mix(p.hash.bytes(c.FUser()), p.hash.fold(c.FDomain()))
	case keyDomain:
		return p.hash.fold(c.FDomain())
	case keyMethod:
		return p.hash.bytes(c.Msg().MethodBytes())
	}
	return 0
}

// show keeps the first keyShown bytes of the request's key in e, for
// listings.
func show(e *entry, c *routing.Ctx, k keyKind, v6bits int) {
	e.kind = k
	switch k {
	case keySource:
		a := c.SrcIP().Unmap()
		if a.Is6() && v6bits < 128 {
			if p, err := a.Prefix(v6bits); err == nil {
				a = p.Addr()
			}
		}
		b := a.As16()
		e.klen = uint8(copy(e.shown[:], b[:]))
		if a.Is4() {
			e.klen = 4 // marks an IPv4 address; shown[12:16] holds it
		}
	case keyUser:
		n := copy(e.shown[:], c.FUser())
		if n < keyShown {
			e.shown[n] = '@'
			n++
			n += copy(e.shown[n:], c.FDomain())
		}
		e.klen = uint8(n)
	case keyDomain:
		e.klen = uint8(copy(e.shown[:], c.FDomain()))
	case keyMethod:
		e.klen = uint8(copy(e.shown[:], c.Msg().MethodBytes()))
	}
}

// showGiven keeps a key the route passed.
func showGiven(e *entry, key []byte) {
	e.kind = keyGiven
	e.klen = uint8(copy(e.shown[:], key))
}

// String returns the key an entry shows.
func (e *entry) String(v6bits int) string {
	if e.kind == keySource {
		var b [16]byte
		copy(b[:], e.shown[:16])
		a := netip.AddrFrom16(b)
		if e.klen == 4 {
			return a.Unmap().String()
		}
		if v6bits < 128 {
			return netip.PrefixFrom(a, v6bits).String()
		}
		return a.String()
	}
	return string(e.shown[:e.klen])
}
