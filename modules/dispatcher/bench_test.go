package dispatcher

import (
	"fmt"
	"net/netip"
	"testing"

	"switchboard/routing"
	"switchboard/store"
)

// benchSet loads set 1 with n destinations of weights 1-4 and priorities
// 0-2 straight into the module (n rows through SQLite would only measure
// SQLite).
func benchSet(p *proxy, n int) {
	rows := make([]store.DispatcherDest, n)
	for i := range rows {
		rows[i] = store.DispatcherDest{ID: int64(i + 1), SetID: 1, Destination: fmt.Sprintf("sip:127.0.%d.%d:5060", i/200, i%200+1),
			Weight: i%4 + 1, Priority: i % 3}
	}
	p.d.reloadMu.Lock()
	p.d.build(rows)
	p.d.reloadMu.Unlock()
}

// BenchmarkSelectDst is SelectDst per algorithm on sets of 4 and 32
// destinations, inside the request route of one INVITE (so least_calls
// and every other algorithm also count the call: the lease goes to the
// call table, replacing the one of the previous run).
func BenchmarkSelectDst(b *testing.B) {
	for _, n := range []int{4, 32} {
		p := newProxy(b, envOptions{})
		p.Keep = false
		benchSet(p, n)
		for a := Algorithm(0); a < numAlgorithms; a++ {
			b.Run(fmt.Sprintf("%s/%d", a, n), func(b *testing.B) {
				b.ReportAllocs()
				p.InRoute(b, "127.0.0.1:5080", benchInvite(), func(c *routing.Ctx) {
					for b.Loop() {
						if !p.d.SelectDst(c, 1, a) {
							b.Fatal("nothing selected")
						}
					}
				})
			})
		}
	}
}

// BenchmarkSelectDstUniform is the hashes on 32 destinations of equal
// weight, where rendezvous hashing compares integers and takes no
// logarithm.
func BenchmarkSelectDstUniform(b *testing.B) {
	p := newProxy(b, envOptions{})
	p.Keep = false
	benchSet(p, 32)
	p.d.reloadMu.Lock()
	rows := make([]store.DispatcherDest, 32)
	for i := range rows {
		rows[i] = store.DispatcherDest{ID: int64(i + 1), SetID: 1, Destination: fmt.Sprintf("sip:127.0.0.%d:5060", i+1), Weight: 1}
	}
	p.d.build(rows)
	p.d.reloadMu.Unlock()
	for _, a := range []Algorithm{CallID, FromUser, RURI} {
		b.Run(a.String(), func(b *testing.B) {
			b.ReportAllocs()
			p.InRoute(b, "127.0.0.1:5080", benchInvite(), func(c *routing.Ctx) {
				for b.Loop() {
					p.d.SelectDst(c, 1, a)
				}
			})
		})
	}
}

// BenchmarkSelectDstOptions is SelectDst for a request that is not an
// initial INVITE: the choice alone, nothing counted.
func BenchmarkSelectDstOptions(b *testing.B) {
	p := newProxy(b, envOptions{})
	p.Keep = false
	benchSet(p, 4)
	for _, a := range []Algorithm{CallID, RoundRobin, Weight} {
		b.Run(a.String(), func(b *testing.B) {
			b.ReportAllocs()
			p.InRoute(b, "127.0.0.1:5080", options(0), func(c *routing.Ctx) {
				for b.Loop() {
					p.d.SelectDst(c, 1, a)
				}
			})
		})
	}
}

func BenchmarkIsInList(b *testing.B) {
	p := newProxy(b, envOptions{})
	p.Keep = false
	benchSet(p, 1000)
	hit := netip.MustParseAddrPort("127.0.2.100:5060")
	miss := netip.MustParseAddrPort("192.0.2.1:5060")
	p.InRoute(b, "127.0.0.1:5080", options(0), func(c *routing.Ctx) {
		b.Run("hit", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.d.IsInList(c, hit, 1)
			}
		})
		b.Run("miss", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.d.IsInList(c, miss, -1)
			}
		})
	})
}

// BenchmarkBuild is building the snapshot of 10,000 destinations in 100
// sets (the reload without the SQLite read).
func BenchmarkBuild(b *testing.B) {
	e := newEnv(b, envOptions{})
	rows := make([]store.DispatcherDest, 10_000)
	for i := range rows {
		rows[i] = store.DispatcherDest{ID: int64(i + 1), SetID: i % 100, Destination: fmt.Sprintf("sip:10.%d.%d.%d:5060", i/65536, i/256%256, i%256),
			Weight: i%10 + 1, Priority: i % 5}
	}
	b.ReportAllocs()
	for b.Loop() {
		e.d.reloadMu.Lock()
		e.d.build(rows)
		e.d.reloadMu.Unlock()
	}
}

// benchInvite is a new INVITE each time (the same one again would be a
// retransmission, which no route sees).
func benchInvite() string {
	seq++
	return fmt.Sprintf("INVITE sip:room7@media.example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-bench%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.com>;tag=b%d\r\nTo: <sip:room7@media.example.com>\r\n"+
		"Call-ID: bench%d@phone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", seq, seq, seq)
}
