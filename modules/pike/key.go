package pike

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"strconv"
)

// Key is a source as the tables count and ban it: an IPv4 address (as its
// IPv4-mapped IPv6 form), or an IPv6 address masked to its prefix (/64 by
// default), since one host on IPv6 holds a whole /64 and could otherwise
// send each request from a new address.
type Key struct{ Hi, Lo uint64 }

// KeyOf returns a's key with IPv6 addresses grouped by their first v6bits
// bits (1..128).
func KeyOf(a netip.Addr, v6bits int) Key {
	a = a.Unmap()
	b := a.As16()
	k := Key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	if a.Is4() {
		return k
	}
	switch {
	case v6bits <= 0:
		k = Key{}
	case v6bits < 64:
		k.Hi &^= ^uint64(0) >> v6bits
		k.Lo = 0
	case v6bits == 64:
		k.Lo = 0
	case v6bits < 128:
		k.Lo &^= ^uint64(0) >> (v6bits - 64)
	}
	return k
}

// Is4 reports whether k is an IPv4 address.
func (k Key) Is4() bool { return k.Hi == 0 && k.Lo>>32 == 0xffff }

// Addr returns the address (the first of the prefix for IPv6).
func (k Key) Addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.Hi)
	binary.BigEndian.PutUint64(b[8:], k.Lo)
	return netip.AddrFrom16(b).Unmap()
}

// String shows an IPv4 address as itself and an IPv6 key as its prefix
// ("2001:db8:1:2::/64"); v6bits is the prefix length it was made with.
func (k Key) String(v6bits int) string {
	a := k.Addr()
	if a.Is4() || v6bits >= 128 {
		return a.String()
	}
	return a.String() + "/" + strconv.Itoa(v6bits)
}

// hash spreads keys over a table's shards and buckets: maphash of the 16
// bytes under the table's seed, chosen at random when the table is made.
// A key lives only in the bucket its hash picks, and a full bucket evicts
// (the ban ending soonest, the lowest rate): with a hash anyone can
// compute (it was an unseeded xxhash) an attacker could find offline 8
// addresses in a banned address's bucket and, spoofing them over UDP,
// flood from each until the ban was evicted (248 packets lifted any ban).
func (k Key) hash(seed maphash.Seed) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], k.Hi)
	binary.LittleEndian.PutUint64(b[8:], k.Lo)
	return maphash.Bytes(seed, b[:])
}
