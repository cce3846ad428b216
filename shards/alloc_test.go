package shards

import (
	"testing"
	"time"
)

// The hot path must not allocate: these fail if lookups, inserts and removes
// of pooled entries, or timer operations, start to.

func warmTable(t *testing.T, n int) (*Table[txn], [][]byte) {
	tbl := newTable(t, Config[txn]{Shards: 8, OnTimer: func(s *Shard[txn], e *Entry[txn], tm *Timer) {}})
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = callID(i)
		h := Sum(keys[i])
		tbl.With(h, func(s *Shard[txn]) { s.Insert(h, keys[i]) })
	}
	return tbl, keys
}

func TestAllocsLookup(t *testing.T) {
	tbl, keys := warmTable(t, 1000)
	miss := []byte("no-such-call@example.com")
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		k := keys[i%len(keys)]
		i++
		h := Sum(k)
		s := tbl.Shard(h)
		s.Lock()
		if s.Get(h, k) == nil {
			t.Fatal("miss on a present key")
		}
		if s.Find(h, func(e *Entry[txn]) bool { return string(e.Key()) == string(k) }) == nil {
			t.Fatal("Find missed")
		}
		s.Unlock()
		hm := Sum(miss)
		tbl.With(hm, func(s *Shard[txn]) {
			if s.Get(hm, miss) != nil {
				t.Fatal("hit on an absent key")
			}
		})
	})
	if n != 0 {
		t.Fatalf("lookup allocates %.1f times", n)
	}
}

func TestAllocsInsertRemove(t *testing.T) {
	tbl, keys := warmTable(t, 1000)
	fresh := make([][]byte, 1000)
	for i := range fresh {
		fresh[i] = callID(1_000_000 + i)
	}
	op := func(k []byte) {
		h := Sum(k)
		s := tbl.Shard(h)
		s.Lock()
		e, err := s.Insert(h, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Account(e, 1500); err != nil {
			t.Fatal(err)
		}
		s.Charge(e, 3000)
		s.Remove(e)
		s.Unlock()
	}
	for _, k := range fresh { // warm-up fills the pools
		op(k)
	}
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		op(fresh[i%len(fresh)])
		i++
	})
	if n != 0 {
		t.Fatalf("insert+remove allocates %.1f times", n)
	}
	_ = keys
}

func TestAllocsTimers(t *testing.T) {
	tbl, keys := warmTable(t, 64)
	clk := tbl.Clock()
	entries := make([]*Entry[txn], len(keys))
	for i, k := range keys {
		h := Sum(k)
		tbl.With(h, func(s *Shard[txn]) { entries[i] = s.Get(h, k) })
	}
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		e := entries[i%len(entries)]
		i++
		s := tbl.Shard(e.Hash())
		s.Lock()
		s.StartTimer(e, &e.Value.retx, 'A', 500*time.Millisecond)         // start
		s.StartTimer(e, &e.Value.expire, 'B', 32*time.Second)             // start, higher level
		s.StartTimer(e, &e.Value.retx, 'A', time.Second)                  // reset
		if !s.StopTimer(&e.Value.expire) || !s.StopTimer(&e.Value.retx) { // stop
			t.Fatal("stop")
		}
		s.StartTimer(e, &e.Value.retx, 'A', time.Duration(i%50)*time.Millisecond)
		s.Unlock()
	})
	if n != 0 {
		t.Fatalf("timer start/reset/stop allocates %.1f times", n)
	}
	// Firing, cascading and the handler call allocate nothing either.
	n = testing.AllocsPerRun(100, func() {
		for _, e := range entries {
			s := tbl.Shard(e.Hash())
			s.Lock()
			s.StartTimer(e, &e.Value.retx, 'A', 70*time.Millisecond)
			s.Unlock()
		}
		clk.Advance(100 * time.Millisecond)
	})
	if n != 0 {
		t.Fatalf("advancing and firing allocates %.1f times", n)
	}
}
