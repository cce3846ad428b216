package shards

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// txn stands in for a transaction: state, a buffer it owns, and two timers.
type txn struct {
	state  int
	buf    []byte
	retx   Timer
	expire Timer
	fired  []uint8
}

func newTable(t testing.TB, cfg Config[txn]) *Table[txn] {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = NewManualClock(1_000_000)
	}
	tbl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Close)
	return tbl
}

func callID(i int) []byte {
	return fmt.Appendf(nil, "%08x-%04x@pbx%d.example.com", uint32(i*2654435761), i&0xffff, i%7)
}

func TestNewValidatesConfig(t *testing.T) {
	c := NewManualClock(0)
	for _, cfg := range []Config[txn]{
		{},
		{Clock: c, Shards: 3},
		{Clock: c, Shards: -4},
		{Clock: c, Shards: 1 << 17},
		{Clock: c, MaxBytes: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
	tbl, err := New(Config[txn]{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	n := tbl.NumShards()
	if n < DefaultShardsPerProc*runtime.GOMAXPROCS(0) || n&(n-1) != 0 {
		t.Errorf("default shards = %d for GOMAXPROCS %d", n, runtime.GOMAXPROCS(0))
	}
}

func TestInsertGetRemove(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 4})
	key := []byte("a84b4c76e66710@pc33.atlanta.com")
	h := Sum(key)
	s := tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	if s.Get(h, key) != nil {
		t.Fatal("Get on an empty table found something")
	}
	e, err := s.Insert(h, key)
	if err != nil {
		t.Fatal(err)
	}
	e.Value.state = 7
	key[0] = 'X' // the entry holds its own copy
	if string(e.Key()) != "a84b4c76e66710@pc33.atlanta.com" || e.Hash() != h || !e.Live() {
		t.Fatalf("entry key %q hash %x live %v", e.Key(), e.Hash(), e.Live())
	}
	key[0] = 'a'
	if got := s.Get(h, key); got != e {
		t.Fatalf("Get = %p, want %p", got, e)
	}
	if got, found, err := s.GetOrInsert(h, key); got != e || !found || err != nil {
		t.Fatalf("GetOrInsert = %p %v %v", got, found, err)
	}
	if s.Get(h, []byte("a84b4c76e66710@pc33.atlanta.co")) != nil {
		t.Fatal("Get matched a prefix")
	}
	if s.Find(h, func(e *Entry[txn]) bool { return e.Value.state == 7 }) != e {
		t.Fatal("Find did not match on the value")
	}
	if s.Find(h, func(e *Entry[txn]) bool { return e.Value.state == 8 }) != nil {
		t.Fatal("Find matched a false predicate")
	}
	s.Remove(e)
	if s.Get(h, key) != nil || e.Live() || s.Len() != 0 {
		t.Fatal("entry still present after Remove")
	}
	s.Remove(e) // no effect
	// The pooled entry comes back, reset.
	e2, _ := s.Insert(h, key)
	if e2 != e || e2.Value.state != 0 {
		t.Fatalf("reuse: got %p state %d, want %p state 0", e2, e2.Value.state, e)
	}
}

func TestSameHashDifferentKeys(t *testing.T) {
	// Forced collisions: entries with one hash are told apart by key, and
	// removing one leaves the others reachable.
	tbl := newTable(t, Config[txn]{Shards: 1, BucketsPerShard: 1})
	s := tbl.ShardAt(0)
	s.Lock()
	defer s.Unlock()
	var es []*Entry[txn]
	for i := 0; i < 50; i++ {
		e, err := s.Insert(42, fmt.Appendf(nil, "z9hG4bK-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	for i := 0; i < 50; i += 2 {
		s.Remove(es[i])
	}
	for i := 0; i < 50; i++ {
		got := s.Get(42, fmt.Appendf(nil, "z9hG4bK-%d", i))
		if (i%2 == 0) != (got == nil) || (got != nil && got != es[i]) {
			t.Fatalf("key %d: got %p", i, got)
		}
	}
}

func TestGrowKeepsEveryEntry(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 2, BucketsPerShard: 1})
	const n = 20_000
	for i := 0; i < n; i++ {
		k := callID(i)
		tbl.With(Sum(k), func(s *Shard[txn]) {
			e, err := s.Insert(Sum(k), k)
			if err != nil {
				t.Fatal(err)
			}
			e.Value.state = i
		})
	}
	for i := 0; i < n; i++ {
		k := callID(i)
		tbl.With(Sum(k), func(s *Shard[txn]) {
			if e := s.Get(Sum(k), k); e == nil || e.Value.state != i {
				t.Fatalf("key %d lost after growth", i)
			}
		})
	}
	if tbl.Len() != n {
		t.Fatalf("Len = %d", tbl.Len())
	}
}

func TestRangeMayRemove(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 4})
	for i := 0; i < 1000; i++ {
		k := callID(i)
		tbl.With(Sum(k), func(s *Shard[txn]) {
			e, _ := s.Insert(Sum(k), k)
			e.Value.state = i
		})
	}
	seen := 0
	tbl.Range(func(s *Shard[txn], e *Entry[txn]) bool {
		seen++
		if e.Value.state%2 == 1 {
			s.Remove(e)
		}
		return true
	})
	if seen != 1000 || tbl.Len() != 500 {
		t.Fatalf("seen %d, left %d", seen, tbl.Len())
	}
	seen = 0
	tbl.Range(func(s *Shard[txn], e *Entry[txn]) bool {
		if e.Value.state%2 == 1 {
			t.Fatal("removed entry listed")
		}
		seen++
		return seen < 10
	})
	if seen != 10 {
		t.Fatalf("Range did not stop: %d", seen)
	}
}

func TestKeyTooLong(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 1, MaxKeyLen: 16})
	s := tbl.ShardAt(0)
	s.Lock()
	defer s.Unlock()
	if _, err := s.Insert(1, make([]byte, 17)); !errors.Is(err, ErrKeyTooLong) {
		t.Fatalf("err = %v, want ErrKeyTooLong", err)
	}
	if _, err := s.Insert(1, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
}

func TestCapRefusesInsertAndAccount(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 4, MaxBytes: 64 << 10, BucketsPerShard: 16})
	perEntry := tbl.EntrySize() + keyCap(len(callID(0)))
	inserted := 0
	var full int
	for i := 0; i < 10_000; i++ {
		k := callID(i)
		tbl.With(Sum(k), func(s *Shard[txn]) {
			e, err := s.Insert(Sum(k), k)
			switch {
			case errors.Is(err, ErrFull):
				full++
			case err != nil:
				t.Fatal(err)
			default:
				inserted++
				if s.EntryBytes(e) != perEntry {
					t.Fatalf("EntryBytes = %d, want %d", s.EntryBytes(e), perEntry)
				}
				if s.Bytes() > s.Limit() {
					t.Fatalf("shard %d holds %d bytes over its limit %d", s.Index(), s.Bytes(), s.Limit())
				}
			}
		})
	}
	st := tbl.Stats()
	if full == 0 || st.Bytes > 64<<10 || uint64(full) != st.Rejected {
		t.Fatalf("inserted %d, refused %d, stats %+v", inserted, full, st)
	}
	// Each shard fills to within one entry (plus the doubling of its bucket
	// array, when that is what the next insert needs) of its share.
	var allowed int64
	for i := 0; i < tbl.NumShards(); i++ {
		allowed += perEntry + int64(len(tbl.ShardAt(i).buckets))*bucketSize
	}
	if slack := st.MaxBytes - st.Bytes; slack > allowed {
		t.Errorf("table refused inserts with %d of %d bytes free", slack, st.MaxBytes)
	}
	// Account past the cap is refused; freeing space lets it through.
	k := callID(0)
	h := Sum(k)
	s := tbl.Shard(h)
	s.Lock()
	e := s.Get(h, k)
	if e == nil {
		t.Fatal("first key missing")
	}
	if err := s.Account(e, int(s.Limit())); !errors.Is(err, ErrFull) {
		t.Fatalf("Account over the cap: %v", err)
	}
	if e.Extra() != 0 {
		t.Fatal("refused Account was recorded")
	}
	before := s.Bytes()
	var victims []*Entry[txn]
	s.Range(func(x *Entry[txn]) bool {
		if x != e && len(victims) < 10 {
			victims = append(victims, x)
		}
		return true
	})
	for _, x := range victims {
		s.Remove(x)
	}
	// Charge records bytes already held even past the cap, and then the
	// shard refuses new entries and increases until it is back under.
	base := s.Bytes()
	if s.Charge(e, int(s.Limit())) || e.Extra() != s.Limit() || s.Bytes() != base+s.Limit() {
		t.Fatalf("Charge over the cap: extra %d, bytes %d (before %d)", e.Extra(), s.Bytes(), base)
	}
	if _, err := s.Insert(Sum([]byte("new")), []byte("new")); !errors.Is(err, ErrFull) {
		t.Fatalf("Insert while charged over the cap: %v", err)
	}
	if err := s.Account(e, int(s.Limit())+1); !errors.Is(err, ErrFull) {
		t.Fatalf("Account over the cap: %v", err)
	}
	if !s.Charge(e, 0) || s.Bytes() != base {
		t.Fatalf("Charge back to 0: bytes %d, want %d", s.Bytes(), base)
	}
	if err := s.Account(e, 1500); err != nil {
		t.Fatalf("Account after freeing space: %v", err)
	}
	if s.Bytes() != before-10*perEntry+1500 {
		t.Fatalf("Bytes = %d, want %d", s.Bytes(), before-10*perEntry+1500)
	}
	if err := s.Account(e, 100); err != nil || s.Bytes() != before-10*perEntry+100 {
		t.Fatalf("shrinking Account: %v, bytes %d", err, s.Bytes())
	}
	s.Remove(e)
	s.Unlock()
	// Removing everything returns the accounted bytes to the bucket arrays.
	tbl.Range(func(s *Shard[txn], e *Entry[txn]) bool { s.Remove(e); return true })
	var buckets int64
	for i := 0; i < tbl.NumShards(); i++ {
		buckets += int64(len(tbl.ShardAt(i).buckets)) * bucketSize
	}
	if st := tbl.Stats(); st.Entries != 0 || st.Bytes != buckets {
		t.Fatalf("after removing all: %+v, bucket bytes %d", st, buckets)
	}
}

func TestResetKeepsBuffers(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 1, Reset: func(v *txn) {
		*v = txn{buf: v.buf[:0]}
	}})
	s := tbl.ShardAt(0)
	s.Lock()
	defer s.Unlock()
	e, _ := s.Insert(1, []byte("k"))
	e.Value.buf = append(e.Value.buf, make([]byte, 1500)...)
	e.Value.state = 3
	s.Remove(e)
	e2, _ := s.Insert(2, []byte("k2"))
	if e2 != e || cap(e2.Value.buf) < 1500 || len(e2.Value.buf) != 0 || e2.Value.state != 0 {
		t.Fatalf("reused entry: cap %d len %d state %d", cap(e2.Value.buf), len(e2.Value.buf), e2.Value.state)
	}
}

func TestFreeListBounded(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 1, FreePerShard: 5})
	s := tbl.ShardAt(0)
	s.Lock()
	defer s.Unlock()
	var es []*Entry[txn]
	for i := 0; i < 20; i++ {
		e, _ := s.Insert(uint64(i), []byte{byte(i)})
		es = append(es, e)
	}
	for _, e := range es {
		s.Remove(e)
	}
	if s.nfree != 5 {
		t.Fatalf("free list holds %d, want 5", s.nfree)
	}
}

func TestTimersThroughTable(t *testing.T) {
	clk := NewManualClock(10_000)
	var tbl *Table[txn]
	tbl = newTable(t, Config[txn]{Clock: clk, Shards: 2, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
		e.Value.fired = append(e.Value.fired, tm.Kind)
		switch tm.Kind {
		case 'A': // retransmit: restart
			s.StartTimer(e, &e.Value.retx, 'A', 500*time.Millisecond)
		case 'B': // transaction timeout: stop A, remove
			s.StopTimer(&e.Value.retx)
			e.Value.state = -1
			s.Remove(e)
		}
	}})
	k := []byte("call-1@example.com")
	h := Sum(k)
	var e *Entry[txn]
	tbl.With(h, func(s *Shard[txn]) {
		e, _ = s.Insert(h, k)
		s.StartTimer(e, &e.Value.retx, 'A', 500*time.Millisecond)
		s.StartTimer(e, &e.Value.expire, 'B', 32*time.Second)
		if e.Timers() != 2 || s.Timers() != 2 {
			t.Fatalf("timers: entry %d shard %d", e.Timers(), s.Timers())
		}
	})
	clk.Advance(499 * time.Millisecond)
	if len(e.Value.fired) != 0 {
		t.Fatal("fired early")
	}
	clk.Advance(time.Millisecond)
	if string(e.Value.fired) != "A" {
		t.Fatalf("fired %q after 500 ms", e.Value.fired)
	}
	clk.Advance(31*time.Second + 500*time.Millisecond)
	// 63 retransmissions at 500 ms intervals, then B; the entry is removed
	// and pooled with its Value reset.
	st := tbl.Stats()
	if st.Entries != 0 || st.Timers != 0 || st.Dead != 0 || st.Free != 1 || e.Value.state != 0 {
		t.Fatalf("after B: %+v, state %d", st, e.Value.state)
	}
}

func TestRemoveWithActiveTimers(t *testing.T) {
	clk := NewManualClock(0)
	calls := 0
	tbl := newTable(t, Config[txn]{Clock: clk, Shards: 1, OnTimer: func(*Shard[txn], *Entry[txn], *Timer) { calls++ }})
	s := tbl.ShardAt(0)
	s.Lock()
	e, _ := s.Insert(1, []byte("x"))
	s.StartTimer(e, &e.Value.retx, 1, 100*time.Millisecond)
	s.StartTimer(e, &e.Value.expire, 2, 200*time.Millisecond)
	bytes := s.Bytes()
	s.Remove(e)
	if e.Live() || s.Len() != 0 || s.dead != 1 || s.Bytes() != bytes {
		t.Fatalf("dead entry: live %v len %d dead %d bytes %d/%d", e.Live(), s.Len(), s.dead, s.Bytes(), bytes)
	}
	// A new insert must not get the dead entry.
	e2, _ := s.Insert(2, []byte("y"))
	if e2 == e {
		t.Fatal("dead entry reused while its timers run")
	}
	s.Unlock()
	clk.Advance(150 * time.Millisecond)
	s.Lock()
	if s.dead != 1 {
		t.Fatal("dead entry pooled with a timer still active")
	}
	if !s.StopTimer(&e.Value.expire) {
		t.Fatal("StopTimer on the dead entry's timer")
	}
	if s.dead != 0 || s.nfree != 1 || s.Bytes() != bytes {
		t.Fatalf("after last timer: dead %d free %d bytes %d", s.dead, s.nfree, s.Bytes())
	}
	s.Unlock()
	clk.Advance(time.Second)
	if calls != 0 {
		t.Fatalf("OnTimer called %d times for a removed entry", calls)
	}
}

func TestRealClockFiresTimers(t *testing.T) {
	clk := NewClock()
	done := make(chan int64, 1)
	tbl := newTable(t, Config[txn]{Clock: clk, Shards: 2, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
		done <- s.Now()
	}})
	if err := clk.Start(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer clk.Stop()
	if clk.Start(time.Millisecond) == nil {
		t.Fatal("second Start accepted")
	}
	var start int64
	tbl.With(7, func(s *Shard[txn]) {
		e, _ := s.Insert(7, []byte("k"))
		start = s.Now()
		s.StartTimer(e, &e.Value.retx, 1, 20*time.Millisecond)
	})
	select {
	case at := <-done:
		if at-start < 20 {
			t.Fatalf("fired after %d ms, want >= 20", at-start)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timer did not fire")
	}
	if d := time.Now().UnixMilli() - clk.Now(); d < -5 || d > 1000 {
		t.Errorf("coarse clock off by %d ms", d)
	}
}

// TestConcurrent runs writers, readers and a clock mover at once; with -race
// it checks the locking, and the final state checks nothing was lost.
func TestConcurrent(t *testing.T) {
	clk := NewManualClock(0)
	var fired sync.Map
	tbl := newTable(t, Config[txn]{Clock: clk, Shards: 8, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
		fired.Store(string(e.Key()), true)
		s.Remove(e)
	}})
	const workers, perWorker = 8, 3000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // time moves while the others work
		for {
			select {
			case <-stop:
				return
			default:
				clk.Advance(time.Millisecond)
				runtime.Gosched()
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < perWorker; i++ {
				k := callID(w*perWorker + i)
				h := Sum(k)
				s := tbl.Shard(h)
				s.Lock()
				e, err := s.Insert(h, k)
				if err != nil {
					s.Unlock()
					t.Error(err)
					return
				}
				e.Value.state = w
				if i%10 == 0 { // some entries end by timer
					s.StartTimer(e, &e.Value.expire, 1, time.Duration(1+rng.IntN(20))*time.Millisecond)
				}
				s.Unlock()
				// Look up someone else's recent key.
				o := callID(rng.IntN(workers)*perWorker + rng.IntN(i+1))
				tbl.With(Sum(o), func(s *Shard[txn]) {
					if e := s.Get(Sum(o), o); e != nil && string(e.Key()) != string(o) {
						t.Error("Get returned another key")
					}
				})
				// Remove every other own entry that no timer owns.
				if i%2 == 1 && i%10 != 0 {
					s.Lock()
					if e := s.Get(h, k); e == nil || e.Value.state != w {
						t.Errorf("own key %q lost", k)
					} else {
						s.Remove(e)
					}
					s.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	clk.Advance(time.Minute)
	want := 0
	for w := 0; w < workers; w++ {
		for i := 0; i < perWorker; i++ {
			k := callID(w*perWorker + i)
			present := false
			tbl.With(Sum(k), func(s *Shard[txn]) { present = s.Get(Sum(k), k) != nil })
			_, byTimer := fired.Load(string(k))
			switch {
			case i%10 == 0:
				if present || !byTimer {
					t.Fatalf("timed key %d/%d: present %v fired %v", w, i, present, byTimer)
				}
			case i%2 == 1:
				if present {
					t.Fatalf("removed key %d/%d present", w, i)
				}
			default:
				want++
				if !present {
					t.Fatalf("key %d/%d lost", w, i)
				}
			}
		}
	}
	if st := tbl.Stats(); st.Entries != want || st.Timers != 0 || st.Dead != 0 {
		t.Fatalf("stats %+v, want %d entries", st, want)
	}
}

// TestShardDistribution checks that realistic Call-IDs spread evenly over
// the shards (chi-squared) and that chains inside a shard stay short.
func TestShardDistribution(t *testing.T) {
	const shards, n = 64, 256_000
	tbl := newTable(t, Config[txn]{Shards: shards})
	counts := make([]int, shards)
	rng := rand.New(rand.NewPCG(7, 7))
	key := make([]byte, 0, 64)
	for i := 0; i < n; i++ {
		// Shapes seen in the wild: hex@host, UUIDs, counters with a prefix.
		switch i % 3 {
		case 0:
			key = fmt.Appendf(key[:0], "%016x@10.0.%d.%d", rng.Uint64(), i%256, i%7)
		case 1:
			key = fmt.Appendf(key[:0], "%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
		default:
			key = fmt.Appendf(key[:0], "call-%d", i)
		}
		h := Sum(key)
		s := tbl.Shard(h)
		counts[s.Index()]++
		s.Lock()
		s.Insert(h, key)
		s.Unlock()
	}
	exp := float64(n) / shards
	chi := 0.0
	for _, c := range counts {
		chi += (float64(c) - exp) * (float64(c) - exp) / exp
	}
	// 63 degrees of freedom: p = 0.001 at about 103.4.
	if chi > 103.4 {
		t.Errorf("chi-squared %.1f over %d shards: %v", chi, shards, counts)
	}
	// Probe lengths: at a load of at most one half, linear probing needs
	// about 1.5 probes per hit on average. Far more means the index bits
	// correlate with the shard bits (all of a shard's keys sharing a home).
	probes, entries := 0, 0
	for i := 0; i < shards; i++ {
		s := tbl.ShardAt(i)
		for j, b := range s.buckets {
			if b.e != nil {
				probes += int((uint64(j)-b.hash)&s.mask) + 1
				entries++
			}
		}
	}
	if avg := float64(probes) / float64(entries); entries != n || avg > 2 {
		t.Errorf("%d entries, %.2f probes per hit on average", entries, avg)
	}
}

func TestLongKeysAccounted(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 1})
	s := tbl.ShardAt(0)
	s.Lock()
	defer s.Unlock()
	short := []byte("z9hG4bK776asdhds")
	long := make([]byte, 200)
	for i := range long {
		long[i] = byte('a' + i%26)
	}
	e, _ := s.Insert(1, short)
	if s.EntryBytes(e) != tbl.EntrySize() {
		t.Fatalf("short key: EntryBytes %d, want EntrySize %d", s.EntryBytes(e), tbl.EntrySize())
	}
	before := s.Bytes()
	l, _ := s.Insert(2, long)
	if got := s.EntryBytes(l); got != tbl.EntrySize()+256 {
		t.Fatalf("200-byte key: EntryBytes %d, want %d", got, tbl.EntrySize()+256)
	}
	if s.Bytes() != before+tbl.EntrySize()+256 {
		t.Fatalf("Bytes grew by %d", s.Bytes()-before)
	}
	if s.Get(2, long) != l || s.Get(1, short) != e || s.Get(2, long[:199]) != nil {
		t.Fatal("lookup by long or short key failed")
	}
	s.Remove(l)
	s.Remove(e)
	if s.Bytes() != int64(len(s.buckets))*bucketSize {
		t.Fatalf("Bytes after removing both = %d", s.Bytes())
	}
}

func TestHandlerTimelineIndependentOfStepSize(t *testing.T) {
	run := func(step time.Duration) []int64 {
		clk := NewManualClock(0)
		var at []int64
		tbl := newTable(t, Config[txn]{Clock: clk, Shards: 1, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
			at = append(at, s.Now())
			if len(at) < 12 {
				s.StartTimer(e, tm, tm.Kind, time.Duration(len(at))*70*time.Millisecond)
			}
		}})
		s := tbl.ShardAt(0)
		s.Lock()
		e, _ := s.Insert(1, []byte("k"))
		s.StartTimer(e, &e.Value.retx, 1, 500*time.Millisecond)
		s.Unlock()
		for d := time.Duration(0); d < 10*time.Second; d += step {
			clk.Advance(step)
		}
		return at
	}
	small, big := run(time.Millisecond), run(10*time.Second)
	if len(small) != 12 || fmt.Sprint(small) != fmt.Sprint(big) {
		t.Fatalf("1 ms steps fired at %v, one jump at %v", small, big)
	}
	if small[0] != 500 || small[1] != 570 || small[11] != 500+70*66 {
		t.Fatalf("fired at %v", small)
	}
}

// TestIndexAgainstModel drives one shard's open-addressing index through
// random inserts, removes (with backward shifts across the wrap-around),
// lookups and removing Ranges, with hashes drawn from a few values so runs
// are long, and checks it against a map.
func TestIndexAgainstModel(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 5))
		tbl := newTable(t, Config[txn]{Shards: 1, BucketsPerShard: 4, FreePerShard: -1})
		s := tbl.ShardAt(0)
		s.Lock()
		model := map[string]*Entry[txn]{}
		hashOf := func(k string) uint64 {
			// Few distinct homes, half of them in the last cells whatever
			// the index size, so runs are long and wrap around.
			n := uint64(len(k)) + uint64(k[len(k)-1])
			if n%2 == 0 {
				return ^uint64(0) - n%5
			}
			return n % 5
		}
		for step := 0; step < 4000; step++ {
			k := fmt.Sprintf("k%d", rng.IntN(300))
			h := hashOf(k)
			switch op := rng.IntN(10); {
			case op < 5:
				e, found, err := s.GetOrInsert(h, []byte(k))
				if err != nil {
					t.Fatal(err)
				}
				if want, ok := model[k]; found != ok || (ok && want != e) {
					t.Fatalf("seed %d: GetOrInsert(%s) found %v, model %v", seed, k, found, ok)
				}
				model[k] = e
			case op < 8:
				e := s.Get(h, []byte(k))
				if e != model[k] {
					t.Fatalf("seed %d: Get(%s) = %p, model %p", seed, k, e, model[k])
				}
				if e != nil {
					s.Remove(e)
					delete(model, k)
				}
			case op < 9:
				seen := map[*Entry[txn]]int{}
				s.Range(func(e *Entry[txn]) bool {
					seen[e]++
					if rng.IntN(3) == 0 {
						delete(model, string(e.Key()))
						s.Remove(e)
					}
					return true
				})
				for e, n := range seen {
					if n != 1 {
						t.Fatalf("seed %d: Range visited %s %d times", seed, e.Key(), n)
					}
				}
				for mk, me := range model {
					if seen[me] != 1 {
						t.Fatalf("seed %d: Range did not visit %s", seed, mk)
					}
				}
			default:
				for mk, me := range model {
					if s.Get(hashOf(mk), []byte(mk)) != me {
						t.Fatalf("seed %d step %d: %s lost", seed, step, mk)
					}
				}
			}
			if s.Len() != len(model) {
				t.Fatalf("seed %d: Len %d, model %d", seed, s.Len(), len(model))
			}
		}
		s.Unlock()
	}
}

func TestRefDetectsReuse(t *testing.T) {
	tbl := newTable(t, Config[txn]{Shards: 1})
	s := tbl.ShardAt(0)
	s.Lock()
	defer s.Unlock()
	var zero Ref[txn]
	if zero.Entry() != nil || zero.Shard() != nil {
		t.Fatal("zero Ref resolves")
	}
	e, _ := s.Insert(1, []byte("a"))
	r := s.Ref(e)
	if r.Entry() != e || r.Shard() != s {
		t.Fatal("fresh Ref does not resolve")
	}
	s.StartTimer(e, &e.Value.retx, 1, time.Second)
	s.Remove(e) // dead, not yet pooled
	if r.Entry() != nil {
		t.Fatal("Ref resolves to a removed entry")
	}
	s.StopTimer(&e.Value.retx) // pooled now
	e2, _ := s.Insert(2, []byte("b"))
	if e2 != e {
		t.Fatal("expected the pooled entry back")
	}
	if r.Entry() != nil || s.Ref(e2).Entry() != e2 {
		t.Fatal("Ref to the old use resolves to the new one")
	}
}

func TestClockRules(t *testing.T) {
	m := NewManualClock(100)
	if m.Start(0) == nil {
		t.Fatal("Start on a manual clock accepted")
	}
	m.Set(50) // never backwards
	if m.Now() != 100 {
		t.Fatalf("Set backwards moved the clock to %d", m.Now())
	}
	m.Advance(1500 * time.Microsecond)
	if m.Now() != 101 {
		t.Fatalf("Advance(1.5ms) gave %d, want 101", m.Now())
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Advance on a real clock did not panic")
			}
		}()
		NewClock().Advance(time.Millisecond)
	}()
	r := NewClock()
	r.Stop() // not started: no effect
	if err := r.Start(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Stop()
	if err := r.Start(time.Millisecond); err != nil { // restartable
		t.Fatal(err)
	}
	r.Stop()
}

func TestCloseDetachesFromClock(t *testing.T) {
	clk := NewManualClock(0)
	fired := 0
	tbl, err := New(Config[txn]{Clock: clk, Shards: 1, OnTimer: func(*Shard[txn], *Entry[txn], *Timer) { fired++ }})
	if err != nil {
		t.Fatal(err)
	}
	other := newTable(t, Config[txn]{Clock: clk, Shards: 1})
	s := tbl.ShardAt(0)
	s.Lock()
	e, _ := s.Insert(1, []byte("k"))
	s.StartTimer(e, &e.Value.retx, 1, 10*time.Millisecond)
	s.StartTimer(e, &e.Value.expire, 1, 30*time.Millisecond)
	s.Unlock()
	clk.Advance(20 * time.Millisecond)
	tbl.Close()
	clk.Advance(20 * time.Millisecond)
	if fired != 1 {
		t.Fatalf("fired %d, want 1 (the timer due after Close must not fire)", fired)
	}
	if len(clk.tables) != 1 || clk.tables[0] != advancer(other) {
		t.Fatal("Close removed the wrong table")
	}
}

func TestIndexShrinksAfterSurge(t *testing.T) {
	clk := NewManualClock(0)
	tbl := newTable(t, Config[txn]{Clock: clk, Shards: 1, BucketsPerShard: 16})
	s := tbl.ShardAt(0)
	var es []*Entry[txn]
	s.Lock()
	for i := 0; i < 10_000; i++ {
		e, _ := s.Insert(Sum(callID(i)), callID(i))
		es = append(es, e)
	}
	peak := len(s.buckets)
	for _, e := range es[10:] {
		s.Remove(e)
	}
	s.Unlock()
	// One halving per shrink pass (every shrinkEvery ms).
	for i := 0; i < 20; i++ {
		clk.Advance(shrinkEvery * time.Millisecond)
	}
	s.Lock()
	defer s.Unlock()
	// Halving stops once 8 × entries reaches the size: 80 >= 64.
	if len(s.buckets) != 64 {
		t.Fatalf("index still %d cells (peak %d) for %d entries", len(s.buckets), peak, s.Len())
	}
	if s.Bytes() != int64(len(s.buckets))*bucketSize+10*tbl.EntrySize() {
		t.Fatalf("Bytes %d after shrink", s.Bytes())
	}
	for _, e := range es[:10] {
		if s.Get(e.Hash(), e.Key()) != e {
			t.Fatal("entry lost in shrink")
		}
	}
}

// TestIdleShardSkipped checks that a tick leaves a shard without due
// timers unlocked, and that timers started later (one earlier than the
// other, lowering the shard's due time) still fire at their millisecond.
func TestIdleShardSkipped(t *testing.T) {
	clk := NewManualClock(1_000_000)
	var fired []int64
	var tbl *Table[txn]
	tbl = newTable(t, Config[txn]{Clock: clk, Shards: 2, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
		fired = append(fired, s.Now())
	}})
	clk.Advance(time.Millisecond) // the first tick is a shrink pass over every shard
	s := tbl.ShardAt(0)
	s.Lock()
	done := make(chan struct{})
	go func() {
		clk.Advance(time.Millisecond)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.Unlock()
		<-done
		t.Fatal("a tick waited for the lock of a shard with no timers")
	}
	start := clk.Now()
	e, _ := s.Insert(Sum([]byte("a")), []byte("a"))
	s.StartTimer(e, &e.Value.expire, 1, 50*time.Millisecond)
	s.StartTimer(e, &e.Value.retx, 2, 20*time.Millisecond)
	s.Unlock()
	for i := 0; i < 60; i++ {
		clk.Advance(time.Millisecond)
	}
	if len(fired) != 2 || fired[0] != start+20 || fired[1] != start+50 {
		t.Fatalf("fired at %v, want [%d %d]", fired, start+20, start+50)
	}
}

// TestIdleClockNaps: a started clock whose tables have no timer due
// naps; Now then reads the real time, not the time of the last tick; a
// timer started during a nap, by a relative delay or an absolute
// deadline, fires on time, not at the end of the nap (up to a second
// later).
func TestIdleClockNaps(t *testing.T) {
	clk := NewClock()
	fired := make(chan int64, 4)
	tbl := newTable(t, Config[txn]{Clock: clk, Shards: 2, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
		fired <- time.Now().UnixMilli()
	}})
	if err := clk.Start(2 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer clk.Stop()
	napping := func() bool {
		deadline := time.Now().Add(2 * time.Second)
		for !clk.napping.Load() {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(time.Millisecond)
		}
		return true
	}
	if !napping() {
		t.Fatal("an idle clock did not nap")
	}
	time.Sleep(100 * time.Millisecond) // past several ticks it no longer takes
	if d := clk.Now() - time.Now().UnixMilli(); d < -3 || d > 3 {
		t.Fatalf("Now during a nap is %d ms off the real time", d)
	}
	for i, start := range []func(s *Shard[txn], e *Entry[txn]) int64{
		func(s *Shard[txn], e *Entry[txn]) int64 {
			s.StartTimer(e, &e.Value.retx, 1, 50*time.Millisecond)
			return time.Now().UnixMilli() + 50
		},
		func(s *Shard[txn], e *Entry[txn]) int64 {
			// An absolute deadline from the real time: nothing reads
			// the clock before the timer starts.
			when := time.Now().UnixMilli() + 50
			s.StartTimerAt(e, &e.Value.expire, 2, when)
			return when
		},
	} {
		if !napping() {
			t.Fatalf("case %d: the clock did not nap again", i)
		}
		var want int64
		k := []byte{byte('a' + i)}
		tbl.With(Sum(k), func(s *Shard[txn]) {
			e, _ := s.Insert(Sum(k), k)
			want = start(s, e)
		})
		select {
		case at := <-fired:
			if at < want-2 || at > want+100 {
				t.Fatalf("case %d: fired %d ms from its deadline (a nap lasts up to %s)", i, at-want, maxNap)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("case %d: the timer did not fire", i)
		}
	}
}

// TestPokeNudges: while messages arrive (Poke, every millisecond here) the
// ticker ticks when they nudge it, its own timer firing about once a
// Backstop only, and timers fire within about a tick of their deadlines;
// once the Pokes stop its timer ticks again, a timer at most a Backstop
// late. A timer restarted 5 ms after each firing stands for the traffic's
// timers: one is always due within a tick, so the clock never naps.
func TestPokeNudges(t *testing.T) {
	const tick = DefaultTick
	clk := NewClock()
	type firing struct{ due, at int64 }
	fired := make(chan firing, 1024)
	var due atomic.Int64
	tbl := newTable(t, Config[txn]{Clock: clk, Shards: 2, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {
		now := time.Now().UnixMilli()
		fired <- firing{due.Load(), now}
		due.Store(now + 5)
		s.StartTimer(e, tm, 1, 5*time.Millisecond)
	}})
	clk.Poke() // before Start: nothing to wake
	if len(clk.kick) != 0 {
		t.Fatal("Poke nudged a clock not started")
	}
	if err := clk.Start(tick); err != nil {
		t.Fatal(err)
	}
	defer clk.Stop()
	k := []byte("k")
	tbl.With(Sum(k), func(s *Shard[txn]) {
		e, _ := s.Insert(Sum(k), k)
		due.Store(time.Now().UnixMilli() + 5)
		s.StartTimer(e, &e.Value.retx, 1, 5*time.Millisecond)
	})
	// lateness drains the firings so far and returns the latest one.
	lateness := func() (worst int64, n int) {
		for {
			select {
			case f := <-fired:
				worst = max(worst, f.at-f.due)
				n++
			default:
				return worst, n
			}
		}
	}

	time.Sleep(100 * time.Millisecond) // the ticker's timer alone
	lateness()
	timed0, nudged0 := clk.timedTicks.Load(), clk.nudgedTicks.Load()
	stop := make(chan struct{})
	var pokes sync.WaitGroup
	pokes.Add(1)
	go func() {
		defer pokes.Done()
		for {
			select {
			case <-stop:
				return
			default:
				clk.Poke()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	const poking = 600 * time.Millisecond
	time.Sleep(poking)
	close(stop)
	pokes.Wait()
	timed, nudged := clk.timedTicks.Load()-timed0, clk.nudgedTicks.Load()-nudged0
	worst, n := lateness()
	// Without Pokes the timer would have ticked about 60 times.
	if max := int64(poking/Backstop) + 4; timed > max {
		t.Errorf("the ticker's timer ticked %d times in %s of Pokes, want at most %d", timed, poking, max)
	}
	if nudged < 30 || nudged > int64(poking/tick)+2 {
		t.Errorf("%d ticks nudged by Poke in %s (tick %s)", nudged, poking, tick)
	}
	if n < 40 || worst > 25 {
		t.Errorf("while poked: %d firings, the latest %d ms after its deadline", n, worst)
	}

	// The Pokes stopped: the ticker's timer takes over within a Backstop.
	timed1 := clk.timedTicks.Load()
	time.Sleep(200 * time.Millisecond)
	if d := clk.timedTicks.Load() - timed1; d < 10 {
		t.Errorf("the ticker's timer ticked %d times in 200 ms after the Pokes stopped", d)
	}
	if worst, n := lateness(); n < 10 || worst > Backstop.Milliseconds()+25 {
		t.Errorf("after the Pokes: %d firings, the latest %d ms after its deadline (Backstop %s)", n, worst, Backstop)
	}
}

// TestPokeStoresTime: a Poke that finds a tick due stores the time before
// it returns, though the ticker ticks later: the message it comes before
// reads a fresh clock. No ticker runs here (nextTick set by hand), so
// nothing else moves the clock.
func TestPokeStoresTime(t *testing.T) {
	clk := NewClock()
	time.Sleep(30 * time.Millisecond)
	if d := time.Now().UnixMilli() - clk.Now(); d < 20 {
		t.Fatalf("the clock moved without a tick (%d ms behind)", d)
	}
	clk.nextTick.Store(clk.elapsed()) // a tick is due
	clk.Poke()
	if d := time.Now().UnixMilli() - clk.Now(); d < -2 || d > 2 {
		t.Fatalf("after Poke the clock is %d ms behind the real time", d)
	}
	if len(clk.kick) != 1 {
		t.Fatal("Poke did not wake the ticker")
	}
}
