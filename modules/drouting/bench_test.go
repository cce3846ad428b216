package drouting

import (
	"fmt"
	"math/rand"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

var benchSizes = []struct {
	name string
	n    int
}{{"10k", 10_000}, {"1M", 1_000_000}}

// heapAfterGC is the live heap, measured after two collections.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMatch is the longest-prefix match of a number against n rules
// of one group (the trie walk and the time check), numbers a rule's
// prefix and 4 more digits. It reports the rule set's live heap
// (heap-MB, measured) and its own estimate per prefix (B/prefix).
func BenchmarkMatch(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			e := newEnv(b, envOptions{})
			prefixes := randomPrefixes(1, size.n)
			before := heapAfterGC()
			rs := buildSet(e.d, prefixes)
			heap := heapAfterGC() - before
			rnd := rand.New(rand.NewSource(2))
			numbers := make([][]byte, 4096)
			for i := range numbers {
				numbers[i] = []byte(prefixes[rnd.Intn(len(prefixes))] + fmt.Sprint(1000+rnd.Intn(9000)))
			}
			b.ReportAllocs()
			b.ResetTimer()
			hits := 0
			for i := 0; i < b.N; i++ {
				if rs.match(0, numbers[i&4095], 600, 1) != nil {
					hits++
				}
			}
			b.StopTimer()
			if hits != b.N {
				b.Fatalf("%d of %d matched", hits, b.N)
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
			b.ReportMetric(float64(rs.bytes())/float64(size.n), "B/prefix")
			runtime.KeepAlive(rs)
		})
	}
}

// BenchmarkBuild is the in-memory part of a reload of n rules: checking
// each row, the tries built, the set swapped (what LoadTable does after
// reading the rows from the store).
func BenchmarkBuild(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			e := newEnv(b, envOptions{})
			prefixes := randomPrefixes(1, size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.d.rules.Store(buildSet(e.d, prefixes))
			}
		})
	}
}

// BenchmarkReloadFromStore is a whole reload of n rules: read from SQLite
// row by row, checked, built, swapped. The table is filled once, outside
// the timing, with one rule-import transaction.
func BenchmarkReloadFromStore(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			e := newEnv(b, envOptions{})
			rows := make([]store.DRRule, 0, size.n)
			for _, p := range randomPrefixes(1, size.n) {
				rows = append(rows, store.DRRule{Groups: "0", Prefix: p, GWList: "gw1,#cr"})
			}
			start := time.Now()
			if err := e.st.AddDRRules(ctx, rows, true); err != nil {
				b.Fatal(err)
			}
			b.Logf("%d rules imported in %s", size.n, time.Since(start).Round(time.Millisecond))
			rows = nil
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := e.d.LoadTable(ctx, store.DRRulesTable); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := len(e.d.rules.Load().rules); n != size.n {
				b.Fatalf("%d rules loaded", n)
			}
		})
	}
}

// BenchmarkRelay is a whole INVITE through the core and the router, the
// gateway's 200 and the ACK-less end of the transaction: "plain" sets the
// destination itself (a route that hard-codes its gateway), "drouting"
// finds it with DoRouting among 10,000 rules. The difference is what
// dynamic routing costs a call.
func BenchmarkRelay(b *testing.B) {
	for _, mode := range []string{"plain", "drouting"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, envOptions{})
			e.Keep = false
			e.gws(gwRow("gw1", 1))
			rows := make([]store.DRRule, 0, 10_000)
			for _, p := range randomPrefixes(3, 9_999) {
				rows = append(rows, store.DRRule{Groups: "0", Prefix: p, GWList: "gw1"})
			}
			rows = append(rows, store.DRRule{Groups: "0", Prefix: "+4930", GWList: "gw1"})
			e.rules(rows...)
			if mode == "plain" {
				e.Route = func(c *routing.Ctx) {
					c.SetDestination(transport.UDP, gwAddr(1))
					c.Relay()
				}
			}
			e.capture(true)
			invite := []byte(allocInvite)
			resp := make([]byte, 0, 2048)
			pkt := &transport.Packet{Listener: e.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
			i := 0
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				numberMessage(invite, i)
				*pkt = transport.Packet{Data: invite, Src: phone, Listener: pkt.Listener, Proto: transport.UDP}
				e.Handle(pkt)
				if err := e.respMsg.Parse(e.lastInvite); err != nil {
					b.Fatal(err)
				}
				resp = parser.AppendResponse(resp[:0], &e.respMsg, 200, nil, []byte("gw"))
				*pkt = transport.Packet{Data: resp, Src: e.lastDst, Listener: pkt.Listener, Proto: transport.UDP}
				e.Handle(pkt)
				if i%1000 == 999 {
					e.clock.Advance(time.Minute)
				}
				i = (i + 1) % 100_000_000
			}
		})
	}
}
