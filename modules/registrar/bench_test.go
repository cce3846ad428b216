package registrar

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
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

// refresher builds REGISTER refreshes whose branch and CSeq end in eight
// digits rewritten in place, so each message is a new transaction with a
// higher CSeq, for users user0..user(n-1).
type refresher struct {
	msgs [][]byte
	offs [][2]int
	seq  int
}

func newRefresher(n int) *refresher {
	r := &refresher{}
	for i := 0; i < n; i++ {
		u := "user" + itoa(i)
		m := "REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-r" + itoa(i) + "-00000000;rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:" + u + "@example.com>;tag=f" + itoa(i) + "\r\n" +
			"To: <sip:" + u + "@example.com>\r\n" +
			"Call-ID: p" + u + "\r\n" +
			"CSeq: 00000000 REGISTER\r\n" +
			"Contact: <sip:" + u + "@127.0.0.1:5062>\r\n" +
			"Content-Length: 0\r\n\r\n"
		b := strings.Index(m, "-00000000;") + 1
		c := strings.Index(m, "CSeq: ") + 6
		r.msgs = append(r.msgs, []byte(m))
		r.offs = append(r.offs, [2]int{b, c})
	}
	r.seq = 2
	return r
}

// next sends the next refresh; every 1000 it lets the clock end the
// finished transactions so their entries are reused.
func (r *refresher) next(h *harness) {
	i := r.seq % len(r.msgs)
	n := r.seq/len(r.msgs) + 2
	m := r.msgs[i]
	for _, off := range r.offs[i] {
		v := n
		for j := off + 7; j >= off; j-- {
			m[j] = byte('0' + v%10)
			v /= 10
		}
	}
	h.core.HandleMessage(&transport.Packet{Data: m, Src: netip.MustParseAddrPort("127.0.0.1:5062"), Listener: &h.l, Proto: transport.UDP})
	r.seq++
	if r.seq%1000 == 0 {
		h.clock.Advance(40 * time.Second)
	}
}

// TestSaveRefreshAllocatesNothing: a whole REGISTER refresh (parse,
// transaction, Save, the 200 with the Contact list) allocates nothing once
// buffers are warm, when no store writer is attached. (With a writer, the
// store.Binding handed to it costs its string fields.)
func TestSaveRefreshAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h := newHarness(t, Config{})
	h.keep = false
	r := newRefresher(500)
	for i := 0; i < 5000; i++ {
		r.next(h)
	}
	if n := testing.AllocsPerRun(2000, func() { r.next(h) }); n != 0 {
		t.Fatalf("a REGISTER refresh allocated %.2f times", n)
	}
	if st := h.reg.Stats(); st.Bindings != 500 || st.Refused != 0 || st.Saved < 7000 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkSave is a whole REGISTER refresh without authentication and
// without a store writer: parse, transaction, Save of one contact among
// 10,000 AORs, and the 200.
func BenchmarkSave(b *testing.B) {
	h := newHarness(b, Config{})
	h.keep = false
	r := newRefresher(10000)
	for i := 0; i < 10000; i++ {
		r.next(h)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.next(h)
	}
}

// BenchmarkSaveStored is BenchmarkSave with the write-behind to a real
// SQLite store attached: the enqueue is cheap, but the store.Binding handed
// to the writer costs its string fields. The writer's own goroutine commits
// in batches.
func BenchmarkSaveStored(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w := st.NewLocationWriter(store.WriterOptions{})
	defer w.Close()
	h := newHarness(b, Config{Writer: w})
	h.keep = false
	r := newRefresher(10000)
	for i := 0; i < 10000; i++ {
		r.next(h)
	}
	w.Flush()
	b.ReportAllocs()
	for b.Loop() {
		r.next(h)
	}
	b.StopTimer()
	w.Flush()
	b.ReportMetric(float64(h.reg.Stats().WriteDrops), "drops")
}
