package txn

import (
	"strings"
	"testing"
	"time"

	"switchboard/shards"
)

// bigInvite is an INVITE of about size bytes, most of it body (the shape
// of a flood that fills memory without touching the parser's limits).
func bigInvite(branch, callID string, size int) string {
	return invite(branch, callID) + strings.Repeat("a=x-pad:0123456789abcdef0123456789abcdef0123456789abcdef\n", size/56)
}

// A pooled transaction drops the buffers a large message grew and keeps
// everyday ones, so one 58 KB INVITE does not pin 58 KB in a free entry.
func TestResetTrimsOversizedBuffers(t *testing.T) {
	big := func() []byte { return make([]byte, 100, 58<<10) }
	small := func() []byte { return make([]byte, 100, 2<<10) }
	var tx txn
	tx.buf, tx.buf2, tx.resp, tx.uris, tx.rs.ruri = big(), small(), big(), small(), big()
	b0 := &tx.br0
	b0.host, b0.uri, b0.out, b0.resp, b0.cancel, b0.ack = small(), small(), big(), big(), small(), big()
	tx.nbr = 1
	b1 := tx.newBranch()
	b1.out, b1.resp = big(), small()
	resetTxn(&tx)
	caps := func(name string, b []byte, want int) {
		t.Helper()
		if cap(b) != want || len(b) != 0 {
			t.Errorf("%s: len %d cap %d after reset, want 0 and %d", name, len(b), cap(b), want)
		}
	}
	caps("buf", tx.buf, 0)
	caps("buf2", tx.buf2, 2<<10)
	caps("resp", tx.resp, 0)
	caps("uris", tx.uris, 2<<10)
	caps("ruri", tx.rs.ruri, 0)
	caps("br0.host", tx.br0.host, 2<<10)
	caps("br0.uri", tx.br0.uri, 2<<10)
	caps("br0.out", tx.br0.out, 0)
	caps("br0.resp", tx.br0.resp, 0)
	caps("br0.cancel", tx.br0.cancel, 2<<10)
	caps("br0.ack", tx.br0.ack, 0)
	// The extra branch went back to its pool trimmed as well.
	caps("br1.out", b1.out, 0)
	caps("br1.resp", b1.resp, 2<<10)
	if len(tx.more) != 0 || tx.nbr != 0 {
		t.Fatalf("branches left: %d, more %d", tx.nbr, len(tx.more))
	}
}

// After a large INVITE's transaction ended, the next transaction that
// reuses its pooled entry holds (and is accounted for) everyday buffers
// only.
func TestLargeRequestNotPinnedInPool(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Shards = 1 })
	h.in(uacAddr, bigInvite("z9hG4bKbig", "big@x", 58<<10))
	msgs := h.snd.take()
	if len(msgs) != 2 || len(msgs[1].data) < 58<<10 {
		t.Fatalf("big INVITE not relayed:\n%s", describe(msgs))
	}
	h.in(uasAddr, respond(msgs[1].data, 486, "b"))
	h.advance(40 * time.Second) // timers G, H, D: the transaction ends
	h.snd.take()
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}
	h.in(uacAddr, invite("z9hG4bKsmall", "small@x"))
	if msgs := h.snd.take(); len(msgs) != 2 {
		t.Fatalf("small INVITE not relayed:\n%s", describe(msgs))
	}
	tbl := h.core.Table()
	tbl.Range(func(s *shards.Shard[txn], e *shards.Entry[txn]) bool {
		held := e.Value.owned()
		if held > 4*maxPooledBuf {
			t.Errorf("the small INVITE's transaction holds %d bytes of buffers", held)
		}
		if got := s.EntryBytes(e) - tbl.EntrySize(); got != int64(held) {
			t.Errorf("accounted %d bytes beyond the entry, holds %d", got, held)
		}
		return true
	})
}

// With a cap, the table's figure is what the transactions hold (their
// buffers' capacities, the relayed copies included), it stays under the
// cap, and new requests past it get 503 with Retry-After.
func TestMemoryCapCountsWhatIsHeld(t *testing.T) {
	const maxBytes = 1 << 20
	h := newHarness(t, func(c *Config) { c.Shards = 2; c.MaxBytes = maxBytes })
	refused := 0
	for i := 0; i < 40; i++ {
		h.in(uacAddr, bigInvite("z9hG4bKflood"+itoa(i), "flood"+itoa(i)+"@x", 58<<10))
		for _, m := range h.snd.take() {
			if strings.HasPrefix(m.data, "SIP/2.0 503") {
				if header(m.data, "Retry-After") != "5" {
					t.Fatalf("503 without Retry-After:\n%s", m.data)
				}
				refused++
			}
		}
		tbl := h.core.Table()
		var held int64
		tbl.Range(func(s *shards.Shard[txn], e *shards.Entry[txn]) bool {
			if got := s.EntryBytes(e) - tbl.EntrySize(); got != int64(e.Value.owned()) {
				t.Fatalf("INVITE %d: a transaction accounted at %d bytes holds %d", i, got, e.Value.owned())
			}
			held += int64(e.Value.owned())
			return true
		})
		st := h.core.Stats()
		if st.Bytes > maxBytes {
			t.Fatalf("INVITE %d: %d bytes accounted, over the cap of %d", i, st.Bytes, maxBytes)
		}
		if st.Bytes < held {
			t.Fatalf("INVITE %d: %d bytes accounted, %d held in buffers", i, st.Bytes, held)
		}
	}
	st := h.core.Stats()
	if refused == 0 || uint64(refused) != st.Full || st.Transactions == 0 || refused+st.Transactions != 40 {
		t.Fatalf("503s %d, stats %+v", refused, st)
	}
}

// The room reserved at admission for a request's relayed copy stays while
// its route waits (Suspend, 100 Trying sent), so requests admitted
// meanwhile cannot take it and the relay after the wait stays under the
// cap.
func TestReservationKeptWhileSuspended(t *testing.T) {
	const maxBytes = 256 << 10 // one shard: room for one held 58 KB INVITE and its reservation
	h := newHarness(t, func(c *Config) { c.Shards = 1; c.MaxBytes = maxBytes })
	var held []*Request
	h.rt.request = func(r *Request) { held = append(held, r.Suspend()) }
	refused := 0
	for i := 0; i < 3; i++ {
		h.in(uacAddr, bigInvite("z9hG4bKsusp"+itoa(i), "susp"+itoa(i)+"@x", 58<<10))
		for _, m := range h.snd.take() {
			if strings.HasPrefix(m.data, "SIP/2.0 503") {
				refused++
			}
		}
	}
	if len(held) != 1 || refused != 2 {
		t.Fatalf("%d requests waiting, %d refused; want 1 and 2", len(held), refused)
	}
	for _, r := range held {
		if err := r.Relay(); err != nil {
			t.Fatal(err)
		}
	}
	st := h.core.Stats()
	if st.Bytes > maxBytes {
		t.Fatalf("%d bytes accounted after the relay, over the cap of %d", st.Bytes, maxBytes)
	}
	tbl := h.core.Table()
	tbl.Range(func(s *shards.Shard[txn], e *shards.Entry[txn]) bool {
		if got := s.EntryBytes(e) - tbl.EntrySize(); got != int64(e.Value.owned()) {
			t.Errorf("relayed transaction accounted at %d bytes, holds %d", got, e.Value.owned())
		}
		return true
	})
}
