package pike

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

// Counters counts events per key over a sliding window, in a table whose
// size is fixed when it is made: no key, however many an attacker makes
// up, adds memory.
//
// The window slides by interpolation (the "sliding window counter"): each
// key keeps the count of the current fixed window and of the one before,
// and the rate at time t is
//
//	cur + prev × (window − (t − start of the current window)) / window
//
// i.e. the previous window's events are assumed spread evenly and only the
// part still inside [t − window, t] counts. Two integers per key, no ring
// of timestamps, and a burst that straddles two fixed windows is still
// seen whole. Windows are aligned on multiples of the window length.
//
// The table is split into shards (a power of two, each with its own lock),
// each shard into buckets of `ways` slots; a key lives only in the bucket
// its hash picks, under a seed chosen at random when the table is made
// (so that nobody can choose keys that share a bucket). Eviction: a key
// that finds its bucket full takes the slot with nothing left in the
// window, or else the slot with the lowest current rate (its count
// restarts from zero). So a spoofed-source flood, whose made-up sources
// each send a request or two, only ever displaces other low-rate entries:
// a source sending fast keeps its slot against any number of slow ones,
// and being displaced only ever lowers a count. Everything is in one
// slice allocated at construction; Hit allocates nothing.
type Counters struct {
	shards     []counterShard
	shardMask  uint64
	bucketMask uint64
	seed       maphash.Seed // of the bucket hash, random
	window     int64        // ms
}

// ways is the bucket size of both tables: a key's slot is one of these.
const ways = 8

type counterShard struct {
	mu     sync.Mutex
	slots  []counterSlot
	hits   uint64 // keys counted
	evicts uint64 // slots taken from a key still counting
	_      [64 - 8 - 24 - 16]byte
}

type counterSlot struct {
	key  Key
	win  int64 // number of the window cur counts, plus 1; 0: free
	cur  uint32
	prev uint32
}

// NewCounters makes a table of at least slots entries (rounded up so that
// every shard has a power-of-two number of buckets of 8), in shards
// shards (rounded up to a power of two), counting over window.
func NewCounters(slots, shards int, window time.Duration) *Counters {
	shards = pow2(max(shards, 1))
	perShard := pow2(max((slots+shards-1)/shards, ways))
	buckets := perShard / ways
	t := &Counters{
		shards:     make([]counterShard, shards),
		shardMask:  uint64(shards - 1),
		bucketMask: uint64(buckets - 1),
		seed:       maphash.MakeSeed(),
		window:     max(window.Milliseconds(), 1),
	}
	all := make([]counterSlot, shards*perShard)
	for i := range t.shards {
		t.shards[i].slots = all[i*perShard : (i+1)*perShard : (i+1)*perShard]
	}
	return t
}

// Slots is the table's size.
func (t *Counters) Slots() int { return len(t.shards) * len(t.shards[0].slots) }

// Window is the counting window.
func (t *Counters) Window() time.Duration { return time.Duration(t.window) * time.Millisecond }

func (t *Counters) locate(k Key) (*counterShard, []counterSlot) {
	h := k.hash(t.seed)
	sh := &t.shards[h&t.shardMask]
	b := int((h>>32)&t.bucketMask) * ways
	return sh, sh.slots[b : b+ways : b+ways]
}

// Hit counts one event for k at now (ms) and returns k's rate over the
// window, this event included.
func (t *Counters) Hit(k Key, now int64) uint32 {
	w := now/t.window + 1
	into := now % t.window
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	s := t.slotFor(sh, bucket, k, w, into)
	switch s.win {
	case w:
	case w - 1:
		s.prev, s.cur = s.cur, 0
	default:
		s.prev, s.cur = 0, 0
	}
	s.win = w
	if s.cur < ^uint32(0) {
		s.cur++
	}
	r := s.rate(w, into, t.window)
	sh.hits++
	sh.mu.Unlock()
	return r
}

// Rate returns k's rate at now without counting anything.
func (t *Counters) Rate(k Key, now int64) uint32 {
	w := now/t.window + 1
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range bucket {
		if s := &bucket[i]; s.win != 0 && s.key == k {
			return s.rate(w, now%t.window, t.window)
		}
	}
	return 0
}

// Forget drops k's count.
func (t *Counters) Forget(k Key) {
	sh, bucket := t.locate(k)
	sh.mu.Lock()
	for i := range bucket {
		if s := &bucket[i]; s.win != 0 && s.key == k {
			*s = counterSlot{}
		}
	}
	sh.mu.Unlock()
}

// slotFor returns k's slot in bucket, or the slot it takes over (cleared,
// keyed k).
func (t *Counters) slotFor(sh *counterShard, bucket []counterSlot, k Key, w, into int64) *counterSlot {
	for i := range bucket {
		if s := &bucket[i]; s.win != 0 && s.key == k {
			return s
		}
	}
	var victim *counterSlot
	var low uint32
	for i := range bucket {
		s := &bucket[i]
		r := s.rate(w, into, t.window)
		if victim == nil || r < low {
			victim, low = s, r
		}
	}
	if low > 0 {
		sh.evicts++
	}
	*victim = counterSlot{key: k}
	return victim
}

// rate is the slot's interpolated count in window w, into ms after its
// start (0 for a free slot or one whose counts are older than a window).
func (s *counterSlot) rate(w, into, window int64) uint32 {
	var cur, prev uint32
	switch s.win {
	case w:
		cur, prev = s.cur, s.prev
	case w - 1:
		prev = s.cur
	default:
		return 0
	}
	r := uint64(cur) + uint64(prev)*uint64(window-into)/uint64(window)
	return uint32(min(r, uint64(^uint32(0))))
}

// CounterStats are a table's figures.
type CounterStats struct {
	Slots     int    // size of the table
	Counting  int    // keys with a rate above zero now
	Hits      uint64 // events counted
	Evictions uint64 // keys displaced while they still had a rate
}

// Stats walks the table (every shard lock in turn): for metrics scrapes.
func (t *Counters) Stats(now int64) CounterStats {
	st := CounterStats{Slots: t.Slots()}
	w, into := now/t.window+1, now%t.window
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			if sh.slots[j].rate(w, into, t.window) > 0 {
				st.Counting++
			}
		}
		st.Hits += sh.hits
		st.Evictions += sh.evicts
		sh.mu.Unlock()
	}
	return st
}

// Each calls f for every key with a rate above zero at now (for listings;
// f must not use the table).
func (t *Counters) Each(now int64, f func(k Key, rate uint32)) {
	w, into := now/t.window+1, now%t.window
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			s := &sh.slots[j]
			if r := s.rate(w, into, t.window); r > 0 {
				f(s.key, r)
			}
		}
		sh.mu.Unlock()
	}
}

func pow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}
