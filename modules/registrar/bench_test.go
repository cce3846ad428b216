package registrar

import (
	"strings"
	"testing"

	"switchboard/routing"
)

// populate registers n users with one contact each, and alice with three
// on two q levels.
func populate(h *harness, n int) {
	for i := 0; i < n; i++ {
		u := "user" + itoa(i)
		h.receive("127.0.0.1:5062", register(u, "p"+u, 1, "Contact: <sip:"+u+"@127.0.0.1:5062>\r\n"))
	}
	h.receive("127.0.0.1:40000", register("alice", "a1", 1, "Contact: <sip:alice@192.0.2.1:5060>\r\n"))
	h.receive("127.0.0.1:5064", register("alice", "a2", 1, "Contact: <sip:alice@127.0.0.1:5064>\r\n"))
	h.receive("127.0.0.1:5065", register("alice", "a3", 1, "Contact: <sip:alice@127.0.0.1:5065>;q=0.5\r\n"))
	h.take()
}

// inRouteOf runs fn inside the request route of one INVITE to user, with
// the real routing.Ctx, and fails if it did not run.
func inRouteOf(t testing.TB, h *harness, user string, fn func(c *routing.Ctx)) {
	ran := false
	h.inRoute = func(c *routing.Ctx) {
		ran = true
		fn(c)
		c.Reply(500, "")
	}
	h.receive("127.0.0.1:5080", invite(user))
	h.inRoute = nil
	if !ran {
		t.Fatal("route did not run")
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h := newHarness(t, Config{})
	h.keep = false
	populate(h, 1000)
	for _, user := range []string{"user500", "alice", "nobody"} {
		inRouteOf(t, h, user, func(c *routing.Ctx) {
			want := user != "nobody"
			if got := h.reg.Lookup(c); got != want {
				t.Fatalf("Lookup(%s) = %v", user, got)
			}
			if n := testing.AllocsPerRun(1000, func() { h.reg.Lookup(c) }); n != 0 {
				t.Errorf("Lookup(%s) allocated %.1f times", user, n)
			}
		})
	}
}

// BenchmarkLookup is one lookup of a user among 10,000 registered, inside a
// real route call (the R-URI rewrite and destination included).
func BenchmarkLookup(b *testing.B) {
	for _, tc := range []struct{ name, user string }{{"one-contact", "user5000"}, {"three-contacts", "alice"}, {"miss", "nobody"}} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarness(b, Config{})
			h.keep = false
			populate(h, 10000)
			inRouteOf(b, h, tc.user, func(c *routing.Ctx) {
				b.ReportAllocs()
				for b.Loop() {
					h.reg.Lookup(c)
				}
			})
		})
	}
}

// BenchmarkSave is a whole REGISTER refresh without authentication:
// parsing, the transaction, Save (one contact, refreshed) and the 200.
func BenchmarkSave(b *testing.B) {
	h := newHarness(b, Config{})
	h.keep = false
	populate(h, 10000)
	msgs := make([]string, 1024)
	for i := range msgs {
		u := "user" + itoa(i)
		msgs[i] = register(u, "bench-"+u, 0, "Contact: <sip:"+u+"@127.0.0.1:5062>\r\n")
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// A new CSeq and branch each time, in place: "CSeq: 0 " grows.
		m := msgs[i%len(msgs)]
		n := i/len(msgs) + 2
		m = strings.Replace(m, "CSeq: 0 REGISTER", "CSeq: "+itoa(n)+" REGISTER", 1)
		m = strings.Replace(m, "branch=z9hG4bK-reg", "branch=z9hG4bK-"+itoa(n)+"-", 1)
		h.receive("127.0.0.1:5062", m)
		i++
		if i%1000 == 0 {
			h.clock.Advance(40 * 1e9) // let finished transactions go
		}
	}
}
