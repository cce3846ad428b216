package dialog

import (
	"runtime"
	"testing"
	"time"
	"unsafe"

	"switchboard/routing"
	"switchboard/shards"
)

// TestMemoryPerDialog: 10,000 confirmed dialogs (the harness's calls:
// Call-ID, From and To with a display name, a Contact each side, a
// Record-Route of a proxy each side) cost at most 1 KiB each, as the
// table accounts them and as the heap grows once their transactions have
// ended. The figures are in README.md.
func TestMemoryPerDialog(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap")
	}
	e := newEnv(t, nil)
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
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i <= n; i++ {
		start(i)
		if i%1000 == 0 {
			e.clock.Advance(10 * time.Second) // the calls' transactions end
		}
	}
	e.clock.Advance(time.Minute)
	runtime.GC()
	runtime.ReadMemStats(&after)
	e.wantCount(t, 0, 0, n+1)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / n
	var acct int64
	for i := 0; i < e.d.tbl.NumShards(); i++ {
		s := e.d.tbl.ShardAt(i)
		s.Lock()
		acct += s.Bytes()
		s.Unlock()
	}
	perEntry := float64(acct) / float64(n+1)
	t.Logf("entry %d B (dlg value %d B); accounted %.0f B per dialog (entry, buffer, index); heap %.0f B per dialog",
		e.d.tbl.EntrySize(), unsafe.Sizeof(dlg{}), perEntry, heap)
	if perEntry > 1024 || heap > 1024 {
		t.Fatalf("a confirmed dialog costs %.0f B accounted, %.0f B of heap: over 1 KiB", perEntry, heap)
	}
	_ = shards.Sum
}
