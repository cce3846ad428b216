package ratelimit

import (
	"math/bits"
	"sync"
)

// keyShown is how much of a key a table entry keeps for listings (the
// identity of a key is its hash).
const keyShown = 32

// entry is the state of one key: its counts in the current window and the
// one before (RED spreads the previous window's load over the current
// one). Fixed size, so that a new key takes a slot and allocates nothing.
type entry struct {
	hash  uint64
	win   int64  // window index the counts belong to
	cur   uint32 // requests in window win
	prev  uint32 // requests in window win-1
	shown [keyShown]byte
	klen  uint8
	kind  keyKind // how to show the key
}

// table holds the per-key state of a keyed pipe: a bounded number of keys
// in shards, each with its own lock, chosen by the top bits of the key's
// hash. Within a shard, an open-addressing index (linear probing, at most
// half full) points into a dense array of entries.
//
// When a shard is full, a new key takes the place of the least recently
// seen of the next evictScan entries after a clock hand. An entry last
// seen before the previous window holds no state that any decision reads,
// so evicting it changes nothing; an entry still active is evicted only
// when more than max_keys keys were seen within two windows, and that key
// then starts again from zero.
type table struct {
	shards []shard
	shift  uint // 64 - log2(len(shards))
}

const evictScan = 8

type shard struct {
	mu      sync.Mutex
	index   []int32 // entry index + 1; 0 is empty
	mask    uint64
	entries []entry
	n       int
	hand    int
	// The pipe's totals in this shard (summed for metrics).
	win             int64
	cur, prev       uint64
	passed, dropped uint64
	evicted         uint64
	_               [64]byte // keep the next shard's lock off this cache line
}

// newTable makes a table for maxKeys keys over about nshards shards (a
// power of two, fewer when that would leave shards of under 16 keys).
func newTable(maxKeys, nshards int) *table {
	n := 1
	for n*2 <= nshards && maxKeys/(n*2) >= 16 {
		n *= 2
	}
	per := (maxKeys + n - 1) / n
	size := 1 << bits.Len(uint(2*per-1)) // at least twice per, a power of two
	t := &table{shards: make([]shard, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
	for i := range t.shards {
		s := &t.shards[i]
		s.index = make([]int32, size)
		s.mask = uint64(size - 1)
		s.entries = make([]entry, per)
	}
	return t
}

func (t *table) shard(h uint64) *shard {
	if len(t.shards) == 1 {
		return &t.shards[0]
	}
	return &t.shards[h>>t.shift]
}

// find returns the index slot holding hash h, or the empty slot where it
// would go.
func (s *shard) find(h uint64) (slot uint64, found bool) {
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		e := s.index[i]
		if e == 0 {
			return i, false
		}
		if s.entries[e-1].hash == h {
			return i, true
		}
	}
}

// get returns the entry of hash h, adding it (evicting another when the
// shard is full) if it is not there. The shard must be locked.
func (s *shard) get(h uint64) (e *entry, added bool) {
	slot, ok := s.find(h)
	if ok {
		return &s.entries[s.index[slot]-1], false
	}
	var k int
	if s.n < len(s.entries) {
		k = s.n
		s.n++
	} else {
		k = s.victim()
		s.remove(s.entries[k].hash)
		s.evicted++
		slot, _ = s.find(h) // the removal may have moved slots
	}
	s.index[slot] = int32(k + 1)
	s.entries[k] = entry{hash: h}
	return &s.entries[k], true
}

// victim picks the least recently seen of evictScan entries from the hand.
func (s *shard) victim() int {
	best := s.hand
	for i := 0; i < evictScan; i++ {
		k := (s.hand + i) % len(s.entries)
		if s.entries[k].win < s.entries[best].win {
			best = k
		}
	}
	s.hand = (best + 1) % len(s.entries)
	return best
}

// remove deletes hash h from the index (backward-shift deletion, so that
// probing never needs tombstones); its entry slot is reused by the caller.
func (s *shard) remove(h uint64) {
	i, ok := s.find(h)
	if !ok {
		return
	}
	j := i
	for {
		j = (j + 1) & s.mask
		e := s.index[j]
		if e == 0 {
			break
		}
		home := s.entries[e-1].hash & s.mask
		// The entry at j stays if its home is cyclically in (i, j].
		if (i <= j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
			continue
		}
		s.index[i] = e
		i = j
	}
	s.index[i] = 0
}

// count adds one request of window w to an entry and returns the entry's
// counts for the window and the one before.
func (e *entry) count(w int64) (cur, prev uint32) {
	if e.win != w {
		if e.win == w-1 {
			e.prev = e.cur
		} else {
			e.prev = 0
		}
		e.win, e.cur = w, 0
	}
	if e.cur < ^uint32(0) {
		e.cur++
	}
	return e.cur, e.prev
}

// tally counts one request of window w in the shard's totals.
func (s *shard) tally(w int64, pass bool) {
	if s.win != w {
		if s.win == w-1 {
			s.prev = s.cur
		} else {
			s.prev = 0
		}
		s.win, s.cur = w, 0
	}
	s.cur++
	if pass {
		s.passed++
	} else {
		s.dropped++
	}
}

// totals sums the shards: requests passed and dropped since start, keys
// held, keys evicted, and requests in the last complete window before w.
func (t *table) totals(w int64) (passed, dropped, keys, evicted, last uint64) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		passed += s.passed
		dropped += s.dropped
		keys += uint64(s.n)
		evicted += s.evicted
		switch s.win {
		case w:
			last += s.prev
		case w - 1:
			last += s.cur
		}
		s.mu.Unlock()
	}
	return
}
