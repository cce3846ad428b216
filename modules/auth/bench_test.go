package auth

import (
	"net/netip"
	"testing"

	"switchboard/routing"
	"switchboard/transport"
)

// warm registers alice once so her credentials are cached, and returns a
// challenge to answer.
func warm(t testing.TB, h *harness, alg string) (*ua, challenge) {
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), alg)
	if r := h.request(u.msg(u.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	h.a.cache.Wait()
	return u, ch
}

func TestCachedAuthorizeAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, alg := range []string{"MD5", "SHA-256"} {
		h := newHarness(t, Config{})
		u, ch := warm(t, h, alg)
		var got Result
		next := Next(func(c *routing.Ctx, res Result) { got = res })
		ran := false
		h.inRoute = func(c *routing.Ctx) {
			ran = true
			h.a.WWWAuthorize(c, next)
			if got != Authorized {
				t.Errorf("%s: first check %v", alg, got)
			}
			// Repeats are replays (stale) but run the whole check.
			if n := testing.AllocsPerRun(500, func() { h.a.WWWAuthorize(c, next) }); n != 0 {
				t.Errorf("%s: a cached check allocated %.1f times", alg, n)
			}
			if n := testing.AllocsPerRun(500, func() { h.a.WWWChallenge(c, false) }); n != 0 {
				t.Errorf("%s: a challenge allocated %.1f times", alg, n)
			}
			if n := testing.AllocsPerRun(500, func() { ConsumeCredentials(c) }); n != 0 {
				t.Errorf("%s: ConsumeCredentials allocated %.1f times", alg, n)
			}
			c.Reply(500, "")
		}
		h.request(u.msg(u.answer(ch, 2, "secret")))
		if !ran {
			t.Fatal("route did not run")
		}
	}
}

// BenchmarkRegister is a whole authenticated REGISTER refresh from a
// cached subscriber: parse, transaction, digest check (nonce signature,
// nonce count, response), Save of one contact and the 200. The client's
// digest for each message is computed outside the timed part.
func BenchmarkRegister(b *testing.B) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		b.Run(alg, func(b *testing.B) {
			h := newHarness(b, Config{NonceLifetime: 24 * 3600e9})
			u, ch := warm(b, h, alg)
			h.keep = false
			src := netip.MustParseAddrPort("127.0.0.1:5062")
			const chunk = 1000
			msgs := make([][]byte, chunk)
			nc := 2
			fill := func() {
				for i := range msgs {
					msgs[i] = []byte(u.msg(u.answer(ch, nc, "secret")))
					nc++
				}
			}
			before := h.a.Stats().Authorized
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%chunk == 0 {
					b.StopTimer()
					fill()
					h.clock.Advance(40e9) // end the finished transactions
					b.StartTimer()
				}
				h.core.HandleMessage(&transport.Packet{Data: msgs[i%chunk], Src: src, Listener: &h.l, Proto: transport.UDP})
			}
			b.StopTimer()
			if got := h.a.Stats().Authorized - before; got != uint64(b.N) {
				b.Fatalf("%d of %d authorized", got, b.N)
			}
		})
	}
}
