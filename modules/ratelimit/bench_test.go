package ratelimit

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/routing"
)

// pipesForBench are one pipe of each kind, all on INVITE.
var pipesForBench = []PipeSettings{
	{Name: "unkeyed", Limit: 1 << 30, Methods: []string{"INVITE"}},
	{Name: "source", Limit: 1 << 30, Key: "source", Methods: []string{"INVITE"}},
	{Name: "user", Limit: 1 << 30, Key: "user", Methods: []string{"INVITE"}},
	{Name: "domain", Limit: 1 << 30, Key: "domain", Methods: []string{"INVITE"}},
	{Name: "red", Algorithm: "RED", Limit: 1 << 30, Key: "source", Methods: []string{"INVITE"}},
	{Name: "feedback", Algorithm: "FEEDBACK", Limit: 50, Methods: []string{"INVITE"}},
	{Name: "given", Limit: 1 << 30, Key: "user"},
	{Name: "tight", Limit: 1, Key: "source"}, // refuses: the dropping path
}

func TestCheckAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	f := build(t, 0, pipesForBench...)
	f.h.Keep = false
	f.h.InRoute(t, "127.0.0.3:5060", invite(), func(c *routing.Ctx) {
		// The first refusals log (a few lines a second); the clock
		// stands still, so the runs measured do not.
		for i := 0; i < logPerSecond+2; i++ {
			f.rl.Pipe("tight").Check(c)
		}
		key := []byte("alice@example.com")
		for _, p := range pipesForBench {
			pp := f.rl.Pipe(p.Name)
			if n := testing.AllocsPerRun(1000, func() { pp.Check(c) }); n != 0 {
				t.Errorf("Check(%s) allocated %.1f times", p.Name, n)
			}
			if n := testing.AllocsPerRun(1000, func() { pp.CheckKey(c, key) }); n != 0 {
				t.Errorf("CheckKey(%s) allocated %.1f times", p.Name, n)
			}
		}
		if n := testing.AllocsPerRun(1000, func() { f.rl.Limited(c) }); n != 0 {
			t.Errorf("Limited allocated %.1f times", n)
		}
		if n := testing.AllocsPerRun(1000, func() { f.rl.Check(c, "source", nil) }); n != 0 {
			t.Errorf("Check by name allocated %.1f times", n)
		}
	})
}

// TestConcurrentTaildrop: goroutines checking one pipe at once pass
// exactly the limit in a window, unkeyed (compare-and-swap) and keyed
// (shard lock).
func TestConcurrentTaildrop(t *testing.T) {
	f := build(t, 0,
		PipeSettings{Name: "unkeyed", Limit: 1000, Interval: time.Minute},
		PipeSettings{Name: "keyed", Limit: 1000, Interval: time.Minute, Key: "user"},
	)
	f.h.InRoute(t, "127.0.0.3:5060", invite(), func(c *routing.Ctx) {
		for _, name := range []string{"unkeyed", "keyed"} {
			p := f.rl.Pipe(name)
			var passed atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 500; i++ {
						if p.CheckKey(c, []byte("k")) {
							passed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if passed.Load() != 1000 {
				t.Errorf("%s: %d of 4000 passed, limit 1000", name, passed.Load())
			}
		}
	})
}

// BenchmarkCheck is one check of a pipe of each kind, inside a real route
// call, passing (the limit is high).
func BenchmarkCheck(b *testing.B) {
	f := build(b, 0, pipesForBench...)
	f.h.Keep = false
	f.h.InRoute(b, "127.0.0.3:5060", invite(), func(c *routing.Ctx) {
		for _, name := range []string{"unkeyed", "source", "user", "red", "feedback"} {
			p := f.rl.Pipe(name)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p.Check(c)
				}
			})
		}
		p := f.rl.Pipe("given")
		key := []byte("alice@example.com")
		b.Run("given-key", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.CheckKey(c, key)
			}
		})
		b.Run("by-name", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.rl.Check(c, "source", nil)
			}
		})
	})
}

// BenchmarkCheckParallel is checks from every core at once: one unkeyed
// pipe (one shared word), and a keyed pipe with distinct keys (spread over
// shards) and with one key (one shard lock).
func BenchmarkCheckParallel(b *testing.B) {
	f := build(b, 0, pipesForBench...)
	f.h.Keep = false
	f.h.InRoute(b, "127.0.0.3:5060", invite(), func(c *routing.Ctx) {
		b.Run("unkeyed", func(b *testing.B) {
			p := f.rl.Pipe("unkeyed")
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.Check(c)
				}
			})
		})
		p := f.rl.Pipe("given")
		var seq atomic.Int64
		b.Run("keyed-many", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				key := []byte("user" + strconv.FormatInt(seq.Add(1), 10) + "@example.com")
				i := 0
				for pb.Next() {
					key[4] = byte('a' + i%16) // 16 keys per goroutine
					i++
					p.CheckKey(c, key)
				}
			})
		})
		b.Run("keyed-one", func(b *testing.B) {
			key := []byte("alice@example.com")
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p.CheckKey(c, key)
				}
			})
		})
	})
}
