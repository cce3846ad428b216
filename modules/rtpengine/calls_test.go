package rtpengine

import (
	"strconv"
	"testing"
	"time"

	"switchboard/modules/rtpengine/ng"
)

// TestCallTable: a call's instance is remembered, refreshed, forgotten at
// the delete and after the timeout; past max the new calls are not
// remembered; looking a call up allocates nothing.
func TestCallTable(t *testing.T) {
	a, _ := ng.ParseInstance("udp:127.0.0.1:2223")
	b, _ := ng.ParseInstance("udp:127.0.0.1:2224")
	ct := newCallTable(64) // one per shard
	ct.put([]byte("c1"), a)
	ct.put([]byte("c1"), b)
	if ct.get([]byte("c1")) != b || ct.len() != 1 {
		t.Fatalf("get %v, len %d", ct.get([]byte("c1")), ct.len())
	}
	for i := 0; i < 200; i++ {
		ct.put([]byte("call-"+strconv.Itoa(i)), a)
	}
	if n := ct.len(); n > 64 {
		t.Fatalf("%d calls remembered, max 64", n)
	}
	ct.del([]byte("c1"))
	if ct.get([]byte("c1")) != nil {
		t.Fatal("deleted call still remembered")
	}
	id := []byte("call-1")
	if n := testing.AllocsPerRun(100, func() { ct.get(id) }); n != 0 {
		t.Fatalf("get allocates %v", n)
	}
	ct.sweep(time.Now().Add(time.Second).UnixMilli())
	if ct.len() != 0 {
		t.Fatalf("%d left after the sweep", ct.len())
	}
	none := newCallTable(0)
	none.put([]byte("c"), a)
	if none.get([]byte("c")) != nil {
		t.Fatal("max_calls 0 remembered a call")
	}
}

func BenchmarkCallTable(b *testing.B) {
	in, _ := ng.ParseInstance("udp:127.0.0.1:2223")
	ct := newCallTable(1_000_000)
	ids := make([][]byte, 10_000)
	for i := range ids {
		ids[i] = []byte("bench-" + strconv.Itoa(i) + "@192.0.2.1")
		ct.put(ids[i], in)
	}
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ct.get(ids[i%len(ids)])
		}
	})
	b.Run("put+del", func(b *testing.B) {
		b.ReportAllocs()
		id := []byte("new-call@192.0.2.1")
		for i := 0; i < b.N; i++ {
			ct.put(id, in)
			ct.del(id)
		}
	})
}
