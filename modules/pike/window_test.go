package pike

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

func v4(s string) Key { return KeyOf(netip.MustParseAddr(s), 64) }

// The sliding window: the previous fixed window counts for the part of it
// still inside the last `window` milliseconds.
func TestSlidingWindowArithmetic(t *testing.T) {
	c := NewCounters(1024, 4, time.Second)
	k := v4("192.0.2.1")
	const base = 1_700_000_000_000 // a multiple of 1000: windows start here
	steps := []struct {
		at   int64 // ms after base
		hits int
		want uint32 // rate after the hits
	}{
		{0, 10, 10},   // window 0: cur 10
		{999, 1, 11},  // still window 0
		{1000, 1, 12}, // window 1 starts: prev 11 × 1000/1000 + cur 1
		{1500, 1, 7},  // prev 11 × 500/1000 = 5, + cur 2
		{1999, 0, 2},  // prev 11 × 1/1000 = 0, + cur 2
		{2250, 4, 5},  // window 2: prev 2 × 750/1000 = 1, + cur 4
		{4100, 1, 1},  // two windows later: nothing carried over
		{4100, 0, 1},
	}
	for _, s := range steps {
		now := base + s.at
		var r uint32
		for i := 0; i < s.hits; i++ {
			r = c.Hit(k, now)
		}
		if got := c.Rate(k, now); got != s.want || (s.hits > 0 && r != s.want) {
			t.Fatalf("at +%dms after %d hits: Rate %d, Hit returned %d, want %d", s.at, s.hits, got, r, s.want)
		}
	}
	if got := c.Rate(k, base+6000); got != 0 {
		t.Fatalf("rate %d long after the last hit", got)
	}
	if got := c.Rate(v4("192.0.2.2"), base); got != 0 {
		t.Fatalf("rate %d for a source never counted", got)
	}
}

// A steady sender at exactly the limit stays at it: the interpolation
// neither doubles a rate across a window boundary nor loses it.
func TestSlidingWindowSteadyRate(t *testing.T) {
	c := NewCounters(1024, 4, 2*time.Second)
	k := v4("192.0.2.9")
	now := int64(1_700_000_000_000)
	var peak uint32
	for i := 0; i < 600; i++ { // 15 per second for 40 s: 30 per window
		peak = max(peak, c.Hit(k, now))
		now += 1000 / 15
	}
	if peak < 29 || peak > 31 {
		t.Fatalf("peak rate %d for a steady 30 per window", peak)
	}
}

// A million spoofed sources, each sending once, go through a 4096-slot
// table: it allocates nothing, its memory does not change, and a real
// flooder interleaved with them keeps its count. (A source at rate 1 is
// as good as any spoofed one and lasts about 8 newcomers in its bucket:
// a flooder is established once it sends faster than that turnover, here
// one request per 100 spoofed ones against one per ~250.)
func TestCountersBoundedUnderSpoofedFlood(t *testing.T) {
	c := NewCounters(4096, 8, 2*time.Second)
	if c.Slots() != 4096 {
		t.Fatalf("slots %d", c.Slots())
	}
	flooder := v4("198.51.100.7")
	now := int64(1_700_000_000_000)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var r uint32
	const spoofed = 1_000_000
	for i := 0; i < spoofed; i++ {
		c.Hit(Key{Hi: 0, Lo: 0xffff<<32 | uint64(0x0a000000+i)}, now) // 10.x.y.z, each once
		if i%100 == 0 {
			r = c.Hit(flooder, now)
		}
		if i%1000 == 0 {
			now++ // 1 ms per 1000 requests: all inside one window
		}
	}
	runtime.ReadMemStats(&ms1)
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > 256<<10 {
		t.Fatalf("heap grew by %d bytes over a million sources", grew)
	}
	if ms1.Mallocs-ms0.Mallocs > 100 {
		t.Fatalf("%d allocations over a million sources", ms1.Mallocs-ms0.Mallocs)
	}
	if r != spoofed/100 || c.Rate(flooder, now) != spoofed/100 {
		t.Fatalf("flooder's rate %d (Rate %d), want %d: it was displaced by spoofed sources", r, c.Rate(flooder, now), spoofed/100)
	}
	st := c.Stats(now)
	if st.Counting > st.Slots || st.Hits != spoofed+spoofed/100 {
		t.Fatalf("stats %+v", st)
	}
	// Every slot holds a spoofed source with a count: each newcomer
	// displaced one still counting.
	if st.Evictions < spoofed-uint64(st.Slots)*2 {
		t.Fatalf("evictions %d", st.Evictions)
	}
}

// A count cannot be evicted by keys chosen to share its bucket: the
// table's hash is seeded at random. With the unseeded xxhash it used, 8
// addresses computed offline to collide with a cracker's, each spoofing
// more failures than it had, displaced its count in authban's table (the
// lowest rate goes) and its guesses started again from zero, for ever.
func TestCountNotEvictedByCraftedCollisions(t *testing.T) {
	c := NewCounters(1024, 8, 10*time.Minute)
	now := int64(1_700_000_000_000)
	cracker := v4("198.51.100.7")
	for i := 0; i < 9; i++ {
		c.Hit(cracker, now)
	}
	unseeded := func(k Key) uint64 {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], k.Hi)
		binary.LittleEndian.PutUint64(b[8:], k.Lo)
		return xxhash.Sum64(b[:])
	}
	h := unseeded(cracker)
	n := 0
	for i := uint32(1); n < ways; i++ {
		k := KeyOf(netip.AddrFrom4([4]byte{203, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
		if u := unseeded(k); u&c.shardMask != h&c.shardMask || (u>>32)&c.bucketMask != (h>>32)&c.bucketMask {
			continue
		}
		n++
		for j := 0; j < 10; j++ {
			c.Hit(k, now)
		}
	}
	if r := c.Rate(cracker, now); r != 9 {
		t.Fatalf("the cracker's count is %d after 8 crafted colliding keys, want 9", r)
	}
}

// IPv6 sources count by prefix; IPv4 and its mapped form are one source.
func TestIPv6PrefixGrouping(t *testing.T) {
	a := netip.MustParseAddr("2001:db8:1:2::1")
	same := netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:fffe")
	next := netip.MustParseAddr("2001:db8:1:3::1")
	if KeyOf(a, 64) != KeyOf(same, 64) || KeyOf(a, 64) == KeyOf(next, 64) {
		t.Fatal("/64 grouping wrong")
	}
	if KeyOf(a, 48) != KeyOf(next, 48) || KeyOf(a, 128) == KeyOf(same, 128) {
		t.Fatal("/48 or /128 grouping wrong")
	}
	if KeyOf(a, 56) == KeyOf(netip.MustParseAddr("2001:db8:1:102::1"), 56) || KeyOf(a, 56) != KeyOf(netip.MustParseAddr("2001:db8:1:ff::1"), 56) {
		t.Fatal("/56 grouping wrong")
	}
	if KeyOf(a, 100) != KeyOf(netip.MustParseAddr("2001:db8:1:2::fff:ffff"), 100) || KeyOf(a, 100) == KeyOf(netip.MustParseAddr("2001:db8:1:2::1000:0"), 100) {
		t.Fatal("/100 grouping wrong")
	}
	if got := KeyOf(same, 64).String(64); got != "2001:db8:1:2::/64" {
		t.Fatalf("String %q", got)
	}
	v4a := netip.MustParseAddr("192.0.2.1")
	if KeyOf(v4a, 64) != KeyOf(netip.MustParseAddr("::ffff:192.0.2.1"), 64) || !KeyOf(v4a, 64).Is4() || KeyOf(v4a, 64).String(64) != "192.0.2.1" {
		t.Fatal("IPv4 key wrong")
	}
	if KeyOf(v4a, 64) == KeyOf(netip.MustParseAddr("192.0.2.2"), 64) {
		t.Fatal("IPv4 addresses grouped")
	}
}
