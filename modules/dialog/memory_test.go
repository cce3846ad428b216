package dialog

import (
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/routing"
	"switchboard/store"
)

// TestMemoryPerDialog: 10,000 confirmed dialogs (the harness's calls:
// Call-ID, From and To with a display name, a Contact each side, a
// Record-Route of a proxy each side) cost at most 1 KiB each, as the
// table accounts them and as the heap grows once their transactions have
// ended; with dialog.persist too, written every 1000 answers (the heap
// then holds the writer's lists, whose size follows the changes between
// two writes, not the dialogs held). The figures are in README.md.
func TestMemoryPerDialog(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap")
	}
	for _, persist := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "persist"}[persist], func(t *testing.T) {
			var o envOptions
			s := DefaultSettings()
			if persist {
				st, err := store.Open(t.TempDir(), store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				o.store, s.WriteInterval = st, 10*time.Minute
			}
			memoryPerDialog(t, newEnvWith(t, s, o), persist)
		})
	}
}

func memoryPerDialog(t *testing.T, e *env, persist bool) {
	const n = 10_000
	start := func(i int) {
		c := e.invite("mem-" + itoa(i) + "-a84b4c76e66710@pc33.example.com")
		c.respond(0, 200, "b"+itoa(i))
	}
	// The same number of calls at a time first, without dialogs: the
	// transaction table's pools reach the size this load needs, and are
	// not counted.
	e.Route = func(c *routing.Ctx) { c.RecordRoute(); c.Relay() }
	for i := 0; i < 1000; i++ {
		c := e.invite("warm-" + itoa(i) + "-a84b4c76e66710@pc33.example.com")
		c.respond(0, 200, "b"+itoa(i))
	}
	e.clock.Advance(time.Minute)
	e.Route = e.route
	start(0)
	if persist {
		e.d.flush() // the store's first pages and statements
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i <= n; i++ {
		start(i)
		if i%1000 == 0 {
			e.clock.Advance(10 * time.Second) // the calls' transactions end
			if persist {
				e.d.flush() // a write every 1000 answers, as write_interval does
			}
		}
	}
	e.clock.Advance(time.Minute)
	if persist {
		if w := e.d.store.writes.Get(); w != n+1 {
			t.Fatalf("%d dialogs written, want %d", w, n+1)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	e.wantCount(t, 0, 0, n+1)
	// Signed: objects of earlier tests freed by the collection can make
	// the difference negative (unsigned, it wrapped to 10^18 B a dialog).
	kept := int64(0)
	if persist {
		// The writer's batch, kept from one flush to the next (room for
		// the ~1,000 rows a flush carries), is the writer's, not a
		// dialog's.
		kept = int64(cap(e.d.w.ops))*int64(unsafe.Sizeof(store.DialogOp{})) + int64(cap(e.d.w.from))*int64(unsafe.Sizeof(pendOp{}))
	}
	heap := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)-kept) / n
	var acct int64
	for i := 0; i < e.d.tbl.NumShards(); i++ {
		s := e.d.tbl.ShardAt(i)
		s.Lock()
		acct += s.Bytes()
		s.Unlock()
	}
	perEntry := float64(acct) / float64(n+1)
	t.Logf("entry %d B (dlg value %d B); accounted %.0f B per dialog (entry, buffer, index); heap %.0f B per dialog (the writer's kept batch, %d KiB, left out)",
		e.d.tbl.EntrySize(), unsafe.Sizeof(dlg{}), perEntry, heap, kept>>10)
	if perEntry > 1024 || heap > 1024 {
		t.Fatalf("a confirmed dialog costs %.0f B accounted, %.0f B of heap: over 1 KiB", perEntry, heap)
	}
}

// TestRestoreTenThousand: 10,000 confirmed dialogs written to a store
// (one flush) and restored by a new module on it (the restart's share of
// the dialogs): all of them back, the time each step took and the heap
// per restored dialog logged (README.md's figures: go test -run
// TestRestoreTenThousand -v ./modules/dialog/).
func TestRestoreTenThousand(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("figures: 10,000 calls, the heap")
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := DefaultSettings()
	s.WriteInterval = 10 * time.Minute
	e := newEnvWith(t, s, envOptions{store: st})
	const n = 10_000
	for i := 0; i < n; i++ {
		c := e.invite("restore-" + itoa(i) + "-a84b4c76e66710@pc33.example.com")
		c.respond(0, 200, "b"+itoa(i))
		if i%1000 == 999 {
			e.clock.Advance(10 * time.Second) // the calls' transactions end
		}
	}
	t0 := time.Now()
	e.d.flush()
	write := time.Since(t0)
	e.mods.Stop()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 = time.Now()
	set, err := modules.Build(modules.Services{Clock: e.clock, Metrics: metrics.NewSet(), Shards: 4, Store: st}, map[string]any{"dialog": s}, "dialog")
	if err != nil {
		t.Fatal(err)
	}
	load := time.Since(t0)
	t.Cleanup(set.Stop)
	runtime.GC()
	runtime.ReadMemStats(&after)
	d := set.Get("dialog").(*Dialog)
	if d.confirmed.Load() != n || d.store.restored.Get() != n {
		t.Fatalf("%d dialogs restored of %d", d.confirmed.Load(), n)
	}
	runtime.KeepAlive(set)
	t.Logf("%d dialogs: written in %v (one transaction), restored in %v; heap %.0f B per restored dialog",
		n, write.Round(time.Millisecond), load.Round(time.Millisecond), float64(after.HeapAlloc-before.HeapAlloc)/n)
}
