// Package shards holds Switchboard's state tables: a generic hash table split
// into a power-of-two number of shards, each with its own lock, its own
// hashed timing wheel, its own pool of entries and its own share of a memory
// cap. The shard is chosen from the high bits of a 64-bit xxhash (of the
// Call-ID for transactions and dialogs, of the address of record for
// registrations); nothing on the hot path takes a global lock or touches a
// global map.
package shards

import (
	"errors"
	"math"
	"runtime"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Errors returned by Insert and Account.
var (
	// ErrFull means the shard's share of Config.MaxBytes is used up. The
	// caller refuses the work (503 with Retry-After for a new transaction)
	// rather than let memory grow without bound.
	ErrFull = errors.New("shards: table full")
	// ErrKeyTooLong means the key is longer than Config.MaxKeyLen.
	ErrKeyTooLong = errors.New("shards: key too long")
)

// Defaults for zero Config fields.
const (
	DefaultShardsPerProc   = 8
	DefaultMaxKeyLen       = 1024
	DefaultBucketsPerShard = 64
	DefaultFreePerShard    = 1024
)

// Sum returns the xxhash of key, the hash used to pick shards and buckets.
func Sum(key []byte) uint64 { return xxhash.Sum64(key) }

// SumString is Sum for a string, without converting it.
func SumString(s string) uint64 { return xxhash.Sum64String(s) }

// Config configures a Table. Only Clock is required.
type Config[V any] struct {
	// Clock supplies the coarse time and advances the shards' timing wheels.
	Clock *Clock
	// Shards is the number of shards, a power of two. Zero means
	// DefaultShardsPerProc × GOMAXPROCS rounded up to a power of two.
	Shards int
	// MaxBytes caps the memory the table accounts for (entries, their keys,
	// the extra bytes reported with Account, and bucket arrays). Each shard
	// gets MaxBytes/Shards so the check needs no shared counter; with xxhash
	// the shards fill evenly, so the table refuses inserts at close to
	// MaxBytes overall. Zero means no cap.
	MaxBytes int64
	// MaxKeyLen bounds key length (bytes); zero means DefaultMaxKeyLen.
	MaxKeyLen int
	// BucketsPerShard is the initial (and smallest) size of each shard's
	// index, rounded up to a power of two; the index doubles when it would
	// be more than half full and halves, on a clock tick, when less than one
	// eighth full. Zero means DefaultBucketsPerShard.
	BucketsPerShard int
	// FreePerShard bounds each shard's list of free entries kept for reuse.
	// Zero means DefaultFreePerShard; negative keeps none.
	FreePerShard int
	// OnTimer is called, with the shard locked, when a timer started through
	// Shard.StartTimer expires. It may change or remove the entry and start
	// timers on this shard; it must not block, lock another shard or move a
	// manual clock.
	OnTimer func(s *Shard[V], e *Entry[V], t *Timer)
	// Reset, if set, prepares a removed entry's Value for reuse: clear
	// references, keep buffer capacity (b = b[:0]) so the next owner does
	// not allocate. Without it the Value is zeroed.
	Reset func(v *V)
}

// Table is a sharded hash table of *Entry[V] with per-shard timing wheels.
type Table[V any] struct {
	shards     []Shard[V]
	shift      uint // shard index = hash >> shift
	clock      *Clock
	entrySize  int64
	maxKey     int
	freeMax    int
	onTimer    func(*Shard[V], *Entry[V], *Timer)
	reset      func(*V)
	nextShrink int64 // ticker only: next time advance visits every shard
}

// New creates a table and registers it with cfg.Clock, whose ticks will
// advance its timers until Close.
func New[V any](cfg Config[V]) (*Table[V], error) {
	if cfg.Clock == nil {
		return nil, errors.New("shards: Config.Clock is required")
	}
	n := cfg.Shards
	if n == 0 {
		n = nextPow2(DefaultShardsPerProc * runtime.GOMAXPROCS(0))
	}
	if n < 1 || n&(n-1) != 0 || n > 1<<16 {
		return nil, errors.New("shards: Config.Shards must be a power of two between 1 and 65536")
	}
	if cfg.MaxBytes < 0 || cfg.MaxKeyLen < 0 || cfg.BucketsPerShard < 0 {
		return nil, errors.New("shards: negative MaxBytes, MaxKeyLen or BucketsPerShard")
	}
	t := &Table[V]{
		shards:    make([]Shard[V], n),
		shift:     uint(64 - log2(n)),
		clock:     cfg.Clock,
		entrySize: int64(unsafe.Sizeof(Entry[V]{})),
		maxKey:    cfg.MaxKeyLen,
		freeMax:   cfg.FreePerShard,
		onTimer:   cfg.OnTimer,
		reset:     cfg.Reset,
	}
	if t.maxKey == 0 {
		t.maxKey = DefaultMaxKeyLen
	}
	if t.freeMax == 0 {
		t.freeMax = DefaultFreePerShard
	}
	buckets := cfg.BucketsPerShard
	if buckets == 0 {
		buckets = DefaultBucketsPerShard
	}
	buckets = nextPow2(buckets)
	var limit int64
	if cfg.MaxBytes > 0 {
		limit = (cfg.MaxBytes + int64(n) - 1) / int64(n)
	}
	now := cfg.Clock.Now()
	for i := range t.shards {
		s := &t.shards[i]
		s.t = t
		s.index = i
		s.limit = limit
		s.buckets = make([]bucket[V], buckets)
		s.minBuckets = buckets
		s.mask = uint64(buckets - 1)
		s.bytes = int64(buckets) * bucketSize
		s.wheel.Init(now, s.fire)
		s.due.Store(math.MaxInt64)
	}
	cfg.Clock.register(t)
	return t, nil
}

// Close detaches the table from its clock: its timers stop being advanced.
func (t *Table[V]) Close() { t.clock.unregister(t) }

// Shard returns the shard for hash h (from Sum of the Call-ID, or a hash the
// caller already has). It uses the high bits of h; buckets inside a shard
// use the low bits, so the same hash can serve both.
func (t *Table[V]) Shard(h uint64) *Shard[V] { return &t.shards[h>>t.shift] }

// ShardFor returns the shard for key, hashing it with Sum.
func (t *Table[V]) ShardFor(key []byte) *Shard[V] { return t.Shard(Sum(key)) }

// With runs fn with the shard for h locked.
func (t *Table[V]) With(h uint64, fn func(s *Shard[V])) {
	s := t.Shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// NumShards returns the number of shards.
func (t *Table[V]) NumShards() int { return len(t.shards) }

// ShardAt returns shard i, 0 <= i < NumShards, for listings and expiry scans.
func (t *Table[V]) ShardAt(i int) *Shard[V] { return &t.shards[i] }

// Clock returns the table's clock.
func (t *Table[V]) Clock() *Clock { return t.clock }

// Now returns the coarse time in milliseconds.
func (t *Table[V]) Now() int64 { return t.clock.Now() }

// EntrySize returns the fixed size of one entry in bytes (unsafe.Sizeof of
// Entry[V], including the Value and its embedded timers); Entry.Bytes adds
// the key buffer and the extra bytes reported with Account.
func (t *Table[V]) EntrySize() int64 { return t.entrySize }

// Range calls fn for every live entry, locking one shard at a time, until fn
// returns false. fn runs with the entry's shard locked and may remove e (but
// not insert).
func (t *Table[V]) Range(fn func(s *Shard[V], e *Entry[V]) bool) {
	for i := range t.shards {
		s := &t.shards[i]
		more := true
		s.mu.Lock()
		s.Range(func(e *Entry[V]) bool {
			more = fn(s, e)
			return more
		})
		s.mu.Unlock()
		if !more {
			return
		}
	}
}

// Stats is a snapshot of a table's size and activity.
type Stats struct {
	Shards    int
	Entries   int   // live entries
	Dead      int   // removed entries waiting for their timers to end
	Free      int   // pooled entries ready for reuse
	Timers    int   // active timers
	Bytes     int64 // accounted bytes, the figure MaxBytes caps
	MaxBytes  int64 // the cap (0: none)
	Rejected  uint64
	EntrySize int64 // fixed bytes per entry
	MaxShard  int   // entries in the fullest shard
}

// Stats locks each shard in turn and sums its counters.
func (t *Table[V]) Stats() Stats {
	st := Stats{Shards: len(t.shards), EntrySize: t.entrySize}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Entries += s.count
		st.Dead += s.dead
		st.Free += s.nfree
		st.Timers += s.wheel.Len()
		st.Bytes += s.bytes
		st.MaxBytes += s.limit
		st.Rejected += s.rejected
		st.MaxShard = max(st.MaxShard, s.count)
		s.mu.Unlock()
	}
	return st
}

// Len returns the number of live entries.
func (t *Table[V]) Len() int { return t.Stats().Entries }

// Bytes returns the accounted bytes.
func (t *Table[V]) Bytes() int64 { return t.Stats().Bytes }

// shrinkEvery is how often the ticker visits every shard, due or not, to
// give back the index memory of a past surge.
const shrinkEvery = 1000 // ms

// advance runs on the clock's ticker (with the clock's lock held). A shard
// is locked only when its wheel has work due or a shrink pass is on. It
// returns the earliest time a shard has work next.
func (t *Table[V]) advance(now int64) int64 {
	visitAll := now >= t.nextShrink
	if visitAll {
		t.nextShrink = now + shrinkEvery
	}
	next := int64(math.MaxInt64)
	for i := range t.shards {
		s := &t.shards[i]
		if due := s.due.Load(); !visitAll && now < due {
			next = min(next, due)
			continue
		}
		s.mu.Lock()
		s.wheel.Advance(now)
		due, ok := s.wheel.NextEvent()
		if !ok {
			due = math.MaxInt64
		}
		s.due.Store(due)
		next = min(next, due)
		if visitAll {
			s.shrink()
		}
		s.mu.Unlock()
	}
	return next
}

// nextDue returns the earliest due of the shards, read without their locks.
func (t *Table[V]) nextDue() int64 {
	next := int64(math.MaxInt64)
	for i := range t.shards {
		next = min(next, t.shards[i].due.Load())
	}
	return next
}

// bucketSize is the bytes of one index cell (a hash and a pointer).
const bucketSize = int64(unsafe.Sizeof(bucket[struct{}]{}))

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func log2(n int) int {
	l := 0
	for 1<<l < n {
		l++
	}
	return l
}
