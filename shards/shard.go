package shards

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Entry is one element of a table. The table owns it: it comes from the
// shard's pool on Insert and goes back on Remove, so a caller must not keep a
// pointer to it after removing it or after unlocking the shard unless the
// caller's own protocol guarantees the entry stays (for example, only the
// goroutine holding the lock or a timer of the entry removes it).
type Entry[V any] struct {
	// The fields a lookup reads come first and keys up to inlineKey bytes
	// live in the entry itself, so a hit usually costs the index cell and
	// one or two cache lines of the entry, with no separate key buffer.
	next   *Entry[V] // free list
	hash   uint64
	key    []byte // owned copy: inline[:n], or a heap buffer for long keys
	inline [inlineKey]byte
	extra  int64  // bytes reported with Account
	timers int32  // active timers owned by the entry
	gen    uint32 // bumped each time the entry returns to the pool
	state  uint8

	// Value is the caller's state. Timers embedded in it are started with
	// Shard.StartTimer.
	Value V
}

// inlineKey covers typical Call-IDs and branches (z9hG4bK plus 20-40 chars).
const inlineKey = 48

const (
	stateFree uint8 = iota
	stateLive
	stateDead // removed, waiting for its active timers to end
)

// Key returns the entry's key. The bytes belong to the entry.
func (e *Entry[V]) Key() []byte { return e.key }

// Hash returns the hash the entry was inserted with.
func (e *Entry[V]) Hash() uint64 { return e.hash }

// Live reports whether the entry is in the table (not removed).
func (e *Entry[V]) Live() bool { return e.state == stateLive }

// Timers returns the number of the entry's active timers.
func (e *Entry[V]) Timers() int { return int(e.timers) }

// Ref is a handle to an entry that is safe to keep after the shard is
// unlocked (across an asynchronous lookup, or from one transaction to
// another): it resolves to nil once the entry has been removed, even if the
// pooled entry has since been reused.
type Ref[V any] struct {
	s   *Shard[V]
	e   *Entry[V]
	gen uint32
}

// Ref returns a handle to e, a live entry of s.
func (s *Shard[V]) Ref(e *Entry[V]) Ref[V] { return Ref[V]{s: s, e: e, gen: e.gen} }

// Shard returns the shard to lock before calling Entry (nil for the zero Ref).
func (r Ref[V]) Shard() *Shard[V] { return r.s }

// Entry returns the entry if it is still the live entry the handle was made
// for, else nil. The shard must be locked.
func (r Ref[V]) Entry() *Entry[V] {
	if r.e == nil || r.e.gen != r.gen || r.e.state != stateLive {
		return nil
	}
	return r.e
}

// Extra returns the bytes last reported with Account.
func (e *Entry[V]) Extra() int64 { return e.extra }

func (e *Entry[V]) size(base int64) int64 { return base + e.keyHeap() + e.extra }

// keyHeap returns the bytes of a key buffer allocated outside the entry.
func (e *Entry[V]) keyHeap() int64 {
	if cap(e.key) > inlineKey { // heap buffers are larger than inline
		return int64(cap(e.key))
	}
	return 0
}

// Shard is one lock's worth of a table: an open-addressing index of entries
// keyed by (hash, key bytes), a pool of free entries and a timing wheel. Every
// method except Lock, Unlock and Index requires the lock to be held.
type Shard[V any] struct {
	mu         sync.Mutex
	t          *Table[V]
	buckets    []bucket[V] // open addressing, linear probing, at most half full
	mask       uint64
	minBuckets int
	count      int
	dead       int
	free       *Entry[V]
	nfree      int
	bytes      int64
	limit      int64
	rejected   uint64
	index      int
	firing     bool
	wheel      Wheel
	// due is a lower bound of the next time the wheel has work (a timer
	// to fire or a slot to cascade), math.MaxInt64 when it has none. The
	// ticker reads it without the lock and skips the shard until then, so
	// an idle shard costs a tick one atomic load rather than a lock.
	due atomic.Int64
	_   [64]byte // keep the next shard's lock off this shard's last cache line
}

// Lock locks the shard. Never hold two shard locks at once.
func (s *Shard[V]) Lock() { s.mu.Lock() }

// Unlock unlocks the shard.
func (s *Shard[V]) Unlock() { s.mu.Unlock() }

// Index returns the shard's position in the table.
func (s *Shard[V]) Index() int { return s.index }

// Now returns the time in milliseconds: the coarse clock, except inside
// OnTimer, where it is the deadline of the timer being fired. Like the
// other methods it needs the lock; Table.Now reads the clock without it. Timers started
// from a handler are thus scheduled from when they were due, and a manual
// clock moved in one big step replays the same timeline as many small ones.
func (s *Shard[V]) Now() int64 {
	if s.firing {
		return s.wheel.Now()
	}
	return s.t.clock.Now()
}

// bucket is one cell of a shard's index. The hash sits beside the pointer
// so probing compares hashes in the index's own cache lines and reads an
// entry only when its full hash matches: a miss usually touches one line.
type bucket[V any] struct {
	hash uint64
	e    *Entry[V]
}

// Get returns the live entry with hash h and key, or nil.
func (s *Shard[V]) Get(h uint64, key []byte) *Entry[V] {
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		b := &s.buckets[i]
		if b.e == nil {
			return nil
		}
		if b.hash == h && string(b.e.key) == string(key) {
			return b.e
		}
	}
}

// Find returns the first live entry with hash h for which match returns
// true, or nil. It serves lookups that compare more than the key bytes (for
// example RFC 2543 transaction matching on several header fields).
func (s *Shard[V]) Find(h uint64, match func(e *Entry[V]) bool) *Entry[V] {
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		b := &s.buckets[i]
		if b.e == nil {
			return nil
		}
		if b.hash == h && match(b.e) {
			return b.e
		}
	}
}

// Insert adds a new entry with hash h and a copy of key, and returns it with
// a reset Value. It does not look for an existing entry with the same key
// (use GetOrInsert for that). It fails with ErrKeyTooLong, or ErrFull when
// the entry would take the shard past its share of Config.MaxBytes.
func (s *Shard[V]) Insert(h uint64, key []byte) (*Entry[V], error) {
	if len(key) > s.t.maxKey {
		return nil, ErrKeyTooLong
	}
	if s.limit > 0 {
		need := s.t.entrySize + keyCap(len(key))
		if 2*(s.count+1) > len(s.buckets) { // this insert doubles the index
			need += int64(len(s.buckets)) * bucketSize
		}
		if s.bytes+need > s.limit {
			s.rejected++
			return nil, ErrFull
		}
	}
	e := s.free
	if e != nil {
		s.free = e.next
		s.nfree--
	} else {
		e = new(Entry[V])
	}
	if cap(e.key) < len(key) {
		if len(key) <= inlineKey {
			e.key = e.inline[:0]
		} else {
			e.key = make([]byte, 0, keyCap(len(key)))
		}
	}
	e.key = e.key[:len(key)]
	copy(e.key, key)
	e.hash = h
	e.state = stateLive
	s.bytes += e.size(s.t.entrySize)
	e.next = nil
	s.count++
	if 2*s.count > len(s.buckets) {
		s.grow()
	}
	s.place(h, e)
	return e, nil
}

// GetOrInsert returns the live entry with hash h and key if there is one
// (found true), or inserts one as Insert does.
func (s *Shard[V]) GetOrInsert(h uint64, key []byte) (e *Entry[V], found bool, err error) {
	if e = s.Get(h, key); e != nil {
		return e, true, nil
	}
	e, err = s.Insert(h, key)
	return e, false, err
}

// Remove takes e out of the table. If e has no active timers it is reset and
// returned to the pool at once; otherwise it is marked dead, its timers
// expire without calling OnTimer (or may be stopped), and it is pooled when
// the last one ends. Removing an entry that is not live does nothing.
func (s *Shard[V]) Remove(e *Entry[V]) {
	if e.state != stateLive {
		return
	}
	i := e.hash & s.mask
	for s.buckets[i].e != e {
		i = (i + 1) & s.mask
	}
	s.unplace(i)
	s.count--
	if e.timers > 0 {
		e.state = stateDead
		s.dead++
		return
	}
	s.release(e)
}

// Account records that e owns n bytes beyond its fixed size and key (for
// example the capacity of a message buffer it holds), so they count in
// Bytes and against the cap. It returns ErrFull, without recording, if an
// increase would pass the shard's share of the cap; the caller then usually
// removes the entry and refuses the work.
func (s *Shard[V]) Account(e *Entry[V], n int) error {
	d := int64(n) - e.extra
	if d > 0 && s.limit > 0 && s.bytes+d > s.limit {
		s.rejected++
		return ErrFull
	}
	s.bytes += d
	e.extra = int64(n)
	return nil
}

// Charge records that e owns n bytes beyond its fixed size and key, as
// Account does, but always: it is for bytes the entry holds already (its
// buffers grew while it was being served), which the figures must show
// even past the cap. It reports false when the shard is then over its
// share of Config.MaxBytes; Insert and Account refuse until enough is
// released, so the cap is enforced where new work is admitted.
func (s *Shard[V]) Charge(e *Entry[V], n int) bool {
	s.bytes += int64(n) - e.extra
	e.extra = int64(n)
	return s.limit == 0 || s.bytes <= s.limit
}

// Range calls fn for each live entry of the shard until fn returns false.
// fn may remove the entry it is given, but must not insert.
func (s *Shard[V]) Range(fn func(e *Entry[V]) bool) {
	// Start after an empty cell: a removal shifts later entries of the same
	// run back by one, never across an empty cell, so walking from one
	// visits every entry once provided the current cell is looked at again
	// when its entry was removed.
	n := uint64(len(s.buckets))
	start := uint64(0)
	for s.buckets[start].e != nil {
		start++
	}
	for k := uint64(1); k <= n; {
		i := (start + k) & s.mask
		e := s.buckets[i].e
		if e == nil {
			k++
			continue
		}
		if !fn(e) {
			return
		}
		if s.buckets[i].e == e {
			k++
		}
	}
}

// Len returns the number of live entries in the shard.
func (s *Shard[V]) Len() int { return s.count }

// Bytes returns the bytes accounted to the shard.
func (s *Shard[V]) Bytes() int64 { return s.bytes }

// Limit returns the shard's share of Config.MaxBytes (0: no cap).
func (s *Shard[V]) Limit() int64 { return s.limit }

// EntryBytes returns the bytes accounted for e: the fixed entry size, the
// key buffer's capacity and the extra bytes reported with Account.
func (s *Shard[V]) EntryBytes(e *Entry[V]) int64 { return e.size(s.t.entrySize) }

// StartTimer starts (or, if active, resets) timer t, which belongs to entry
// e, to expire d from now; d is rounded up to whole milliseconds. On expiry
// Config.OnTimer is called with the shard, e and t; t.Kind is set to kind
// so the handler knows which timer it is.
func (s *Shard[V]) StartTimer(e *Entry[V], t *Timer, kind uint8, d time.Duration) {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	s.StartTimerAt(e, t, kind, s.Now()+ms)
}

// StartTimerAt is StartTimer with an absolute deadline in milliseconds on
// the table's clock.
func (s *Shard[V]) StartTimerAt(e *Entry[V], t *Timer, kind uint8, when int64) {
	if t.active {
		if old := (*Entry[V])(t.owner); old != e {
			s.timerEnded(old)
			e.timers++
		}
	} else {
		e.timers++
	}
	t.owner = unsafe.Pointer(e)
	t.Kind = kind
	s.wheel.Start(t, when)
	if t.when < s.due.Load() {
		s.due.Store(t.when)
	}
	s.t.clock.timerStarted(t.when)
}

// StopTimer stops t. It reports whether t was active; false means it had
// already fired or been stopped.
func (s *Shard[V]) StopTimer(t *Timer) bool {
	if !s.wheel.Stop(t) {
		return false
	}
	s.timerEnded((*Entry[V])(t.owner))
	return true
}

// Timers returns the number of active timers in the shard.
func (s *Shard[V]) Timers() int { return s.wheel.Len() }

// fire is the wheel's expiry function; it runs with the lock held, inside
// Table.advance.
func (s *Shard[V]) fire(t *Timer) {
	e := (*Entry[V])(t.owner)
	if e.state == stateDead {
		s.timerEnded(e)
		return
	}
	e.timers--
	if s.t.onTimer != nil {
		s.firing = true
		s.t.onTimer(s, e, t)
		s.firing = false
	}
}

func (s *Shard[V]) timerEnded(e *Entry[V]) {
	e.timers--
	if e.timers == 0 && e.state == stateDead {
		s.dead--
		s.release(e)
	}
}

func (s *Shard[V]) release(e *Entry[V]) {
	s.bytes -= e.size(s.t.entrySize)
	if s.t.reset != nil {
		s.t.reset(&e.Value)
	} else {
		var zero V
		e.Value = zero
	}
	e.state = stateFree
	e.gen++
	e.extra = 0
	e.hash = 0
	e.key = e.key[:0]
	if s.nfree >= s.t.freeMax {
		e.next = nil
		return
	}
	e.next = s.free
	s.free = e
	s.nfree++
}

// place puts e with hash h in the first empty cell of its probe sequence.
func (s *Shard[V]) place(h uint64, e *Entry[V]) {
	i := h & s.mask
	for s.buckets[i].e != nil {
		i = (i + 1) & s.mask
	}
	s.buckets[i] = bucket[V]{hash: h, e: e}
}

// unplace empties cell i and shifts back the entries after it in the same
// run whose probe sequence passes through i (backward-shift deletion: no
// tombstones, so probes never lengthen over time).
func (s *Shard[V]) unplace(i uint64) {
	for {
		s.buckets[i] = bucket[V]{}
		j := i
		for {
			j = (j + 1) & s.mask
			if s.buckets[j].e == nil {
				return
			}
			home := s.buckets[j].hash & s.mask
			// The entry at j may move to i unless its home lies
			// cyclically in (i, j].
			if i <= j {
				if i < home && home <= j {
					continue
				}
			} else if i < home || home <= j {
				continue
			}
			break
		}
		s.buckets[i] = s.buckets[j]
		i = j
	}
}

// grow doubles the index. It allocates, but only while the shard's
// population reaches a new high.
func (s *Shard[V]) grow() { s.resize(2 * len(s.buckets)) }

// shrink halves an index that is less than one eighth full, so the memory
// of a past surge is given back. The clock's tick calls it (never Range's
// caller, which may be removing entries mid-walk), so the allocation is off
// the hot path.
func (s *Shard[V]) shrink() {
	if len(s.buckets) > s.minBuckets && 8*s.count < len(s.buckets) {
		s.resize(len(s.buckets) / 2)
	}
}

func (s *Shard[V]) resize(n int) {
	old := s.buckets
	s.buckets = make([]bucket[V], n)
	s.mask = uint64(n - 1)
	for _, b := range old {
		if b.e != nil {
			s.place(b.hash, b.e)
		}
	}
	s.bytes += int64(n-len(old)) * bucketSize
}

// keyCap returns the bytes a key of n bytes costs beyond the entry: none
// when it fits inline; otherwise a buffer rounded up so that a pooled entry
// usually fits the next long key without reallocating.
func keyCap(n int) int64 {
	if n <= inlineKey {
		return 0
	}
	return int64((n + 63) &^ 63)
}
