package shards

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchKeys entries (about 16 MB with their keys) do not fit in cache, as in
// a loaded proxy; hotKeys do.
const (
	benchKeys = 1 << 16
	hotKeys   = 1 << 10
)

func benchTable(b *testing.B) (*Table[txn], [][]byte) {
	tbl, err := New(Config[txn]{Clock: NewManualClock(0), OnTimer: func(*Shard[txn], *Entry[txn], *Timer) {}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tbl.Close)
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = callID(i)
		h := Sum(keys[i])
		s := tbl.Shard(h)
		s.Lock()
		s.Insert(h, keys[i])
		s.Unlock()
	}
	return tbl, keys
}

// BenchmarkGetHit looks up present keys from one goroutine, in the table and
// in the baseline (a Go map behind one mutex), cycling over 64k keys (out of
// cache) or 1k keys (in cache).
func BenchmarkGetHit(b *testing.B) {
	b.Run("shards-64k", func(b *testing.B) { benchGetHit(b, benchKeys) })
	b.Run("mutexmap-64k", func(b *testing.B) { benchGetHitMutexMap(b, benchKeys) })
	b.Run("shards-1k", func(b *testing.B) { benchGetHit(b, hotKeys) })
	b.Run("mutexmap-1k", func(b *testing.B) { benchGetHitMutexMap(b, hotKeys) })
}

func benchGetHitMutexMap(b *testing.B, n int) {
	_, keys := benchTable(b)
	mm := newMutexMap(keys)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i&(n-1)]
		i++
		mm.mu.Lock()
		v := mm.m[string(k)]
		ok := v != nil && v.state >= 0
		mm.mu.Unlock()
		if !ok {
			b.Fatal("miss")
		}
	}
}

func benchGetHit(b *testing.B, n int) {
	tbl, keys := benchTable(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i&(n-1)]
		i++
		h := Sum(k)
		s := tbl.Shard(h)
		s.Lock()
		e := s.Get(h, k)
		ok := e != nil && e.Value.state >= 0
		s.Unlock()
		if !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkGetMiss(b *testing.B) {
	tbl, _ := benchTable(b)
	miss := make([][]byte, benchKeys)
	for i := range miss {
		miss[i] = callID(benchKeys + i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := miss[i&(benchKeys-1)]
		i++
		h := Sum(k)
		s := tbl.Shard(h)
		s.Lock()
		if s.Get(h, k) != nil {
			b.Fatal("hit")
		}
		s.Unlock()
	}
}

func BenchmarkInsertRemove(b *testing.B) {
	tbl, _ := benchTable(b)
	fresh := make([][]byte, 1024)
	for i := range fresh {
		fresh[i] = callID(benchKeys + i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := fresh[i&1023]
		i++
		h := Sum(k)
		s := tbl.Shard(h)
		s.Lock()
		e, err := s.Insert(h, k)
		if err != nil {
			b.Fatal(err)
		}
		s.Remove(e)
		s.Unlock()
	}
}

func BenchmarkTimerStartStop(b *testing.B) {
	tbl, keys := benchTable(b)
	h := Sum(keys[0])
	s := tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, keys[0])
	// Keep other timers in the wheel so slots are not trivially empty.
	var others [1000]Timer
	for i := range others {
		s.StartTimer(e, &others[i], 0, time.Duration(i)*37*time.Millisecond)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		s.StartTimer(e, &e.Value.retx, 'A', time.Duration(i&4095)*time.Millisecond)
		s.StopTimer(&e.Value.retx)
	}
}

// BenchmarkTimerFire measures a full timer life: start, cascade as the
// wheel turns, fire into the handler. The manual clock moves 1 ms per op
// with about 500 timers pending at any time.
func BenchmarkTimerFire(b *testing.B) {
	clk := NewManualClock(0)
	var fired int
	tbl, err := New(Config[txn]{Clock: clk, Shards: 1, OnTimer: func(s *Shard[txn], e *Entry[txn], t *Timer) {
		fired++
		s.StartTimer(e, t, t.Kind, 500*time.Millisecond)
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer tbl.Close()
	s := tbl.ShardAt(0)
	s.Lock()
	e, _ := s.Insert(1, []byte("k"))
	timers := make([]Timer, 500)
	for i := range timers {
		s.StartTimer(e, &timers[i], 0, time.Duration(i)*time.Millisecond)
	}
	s.Unlock()
	b.ReportAllocs()
	for b.Loop() {
		clk.Advance(time.Millisecond)
	}
	b.ReportMetric(float64(fired)/float64(b.N), "fired/op")
}

// The parallel benchmarks compare the sharded table with the simplest
// alternative, one map behind one mutex, in the same run: their ns/op ratio
// is the figure that matters, not either absolute time.

type mutexMap struct {
	mu sync.Mutex
	m  map[string]*txn
}

func newMutexMap(keys [][]byte) *mutexMap {
	mm := &mutexMap{m: make(map[string]*txn, len(keys))}
	for _, k := range keys {
		mm.m[string(k)] = new(txn)
	}
	return mm
}

func BenchmarkParallelGet(b *testing.B) {
	b.Run("shards", func(b *testing.B) {
		tbl, keys := benchTable(b)
		var seed atomic.Uint32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seed.Add(7919))
			for pb.Next() {
				k := keys[i&(benchKeys-1)]
				i++
				h := Sum(k)
				s := tbl.Shard(h)
				s.Lock()
				e := s.Get(h, k)
				ok := e != nil && e.Value.state >= 0
				s.Unlock()
				if !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
	b.Run("mutexmap", func(b *testing.B) {
		_, keys := benchTable(b)
		mm := newMutexMap(keys)
		var seed atomic.Uint32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seed.Add(7919))
			for pb.Next() {
				k := keys[i&(benchKeys-1)]
				i++
				mm.mu.Lock()
				v := mm.m[string(k)]
				ok := v != nil && v.state >= 0
				mm.mu.Unlock()
				if !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
}

// BenchmarkParallelMixed is closer to a proxy's use: per op a lookup, and
// one op in four also inserts and removes a transaction.
func BenchmarkParallelMixed(b *testing.B) {
	b.Run("shards", func(b *testing.B) {
		tbl, keys := benchTable(b)
		var seed atomic.Uint32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := int(seed.Add(1))
			own := make([][]byte, 256)
			for j := range own {
				own[j] = callID(1<<20*w + j)
			}
			i := w * 7919
			for pb.Next() {
				k := keys[i&(benchKeys-1)]
				i++
				h := Sum(k)
				s := tbl.Shard(h)
				s.Lock()
				if e := s.Get(h, k); e != nil {
					e.Value.state++
				}
				s.Unlock()
				if i&3 == 0 {
					k := own[i&255]
					h := Sum(k)
					s := tbl.Shard(h)
					s.Lock()
					e, err := s.Insert(h, k)
					if err == nil {
						s.Remove(e)
					}
					s.Unlock()
				}
			}
		})
	})
	b.Run("mutexmap", func(b *testing.B) {
		_, keys := benchTable(b)
		mm := newMutexMap(keys)
		var seed atomic.Uint32
		pool := sync.Pool{New: func() any { return new(txn) }}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			w := int(seed.Add(1))
			own := make([]string, 256)
			for j := range own {
				own[j] = string(callID(1<<20*w + j))
			}
			i := w * 7919
			for pb.Next() {
				k := keys[i&(benchKeys-1)]
				i++
				mm.mu.Lock()
				if v := mm.m[string(k)]; v != nil {
					v.state++
				}
				mm.mu.Unlock()
				if i&3 == 0 {
					k := own[i&255]
					v := pool.Get().(*txn)
					mm.mu.Lock()
					mm.m[k] = v
					delete(mm.m, k)
					mm.mu.Unlock()
					pool.Put(v)
				}
			}
		})
	})
}

// BenchmarkParallelUpdate holds the lock for a match-and-update like a
// transaction absorbing a retransmission: find the entry and copy a
// 512-byte response into a buffer it owns. A single mutex serialises that
// work across cores; shards let it run in parallel.
func BenchmarkParallelUpdate(b *testing.B) {
	payload := make([]byte, 512)
	b.Run("shards", func(b *testing.B) {
		tbl, keys := benchTable(b)
		tbl.Range(func(s *Shard[txn], e *Entry[txn]) bool {
			e.Value.buf = make([]byte, 0, len(payload))
			return true
		})
		var seed atomic.Uint32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seed.Add(7919))
			for pb.Next() {
				k := keys[i&(hotKeys-1)]
				i++
				h := Sum(k)
				s := tbl.Shard(h)
				s.Lock()
				if e := s.Get(h, k); e != nil {
					e.Value.buf = append(e.Value.buf[:0], payload...)
				}
				s.Unlock()
			}
		})
	})
	b.Run("mutexmap", func(b *testing.B) {
		_, keys := benchTable(b)
		mm := newMutexMap(keys)
		for _, v := range mm.m {
			v.buf = make([]byte, 0, len(payload))
		}
		var seed atomic.Uint32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seed.Add(7919))
			for pb.Next() {
				k := keys[i&(hotKeys-1)]
				i++
				mm.mu.Lock()
				if v := mm.m[string(k)]; v != nil {
					v.buf = append(v.buf[:0], payload...)
				}
				mm.mu.Unlock()
			}
		})
	})
}

// BenchmarkClockNow: the coarse time on the hot path, from a ticking
// clock (a load or two) and from a napping one (the monotonic clock read
// and stored: what each read costs while nothing is due).
func BenchmarkClockNow(b *testing.B) {
	for _, napping := range []bool{false, true} {
		b.Run(map[bool]string{false: "ticking", true: "napping"}[napping], func(b *testing.B) {
			c := NewClock()
			c.napping.Store(napping)
			var sum int64
			for b.Loop() {
				sum += c.Now()
			}
			if sum == 0 {
				b.Fatal("no time")
			}
		})
	}
}
