package registrar

import (
	"context"
	"strings"
	"testing"
	"time"

	"switchboard/shards"
	"switchboard/store"
)

// TestCSeqOrder: RFC 3261 §10.3 step 7. A REGISTER with the Call-ID of a
// binding and a lower CSeq fails with 400 and changes nothing; so does the
// same CSeq in another request (another branch); a retransmission (same
// CSeq and branch) gets the 200 again and changes nothing.
func TestCSeqOrder(t *testing.T) {
	h := newHarness(t, Config{})
	first := register("olga", "c1", 5, "Contact: <sip:olga@127.0.0.1:5062>;expires=300\r\n")
	if r := h.request("127.0.0.1:5062", first); statusOf(r) != "200 OK" {
		t.Fatal(r)
	}
	h.clock.Advance(10 * time.Second) // the first REGISTER's stateless transaction ends
	before := h.reg.List("olga@example.com")

	for name, msg := range map[string]string{
		"lower CSeq, removing":         register("olga", "c1", 4, "Contact: <sip:olga@127.0.0.1:5062>;expires=0\r\n"),
		"lower CSeq, refreshing":       register("olga", "c1", 1, "Contact: <sip:olga@127.0.0.1:5062>;expires=3600\r\n"),
		"same CSeq, another request":   register("olga", "c1", 5, "Contact: <sip:olga@127.0.0.1:5062>;expires=0\r\n"),
		"lower CSeq among new ones":    register("olga", "c1", 4, "Contact: <sip:olga@127.0.0.1:5063>\r\nContact: <sip:olga@127.0.0.1:5062>\r\n"),
		"lower CSeq, wildcard":         register("olga", "c1", 3, "Contact: *\r\nExpires: 0\r\n"),
		"same CSeq, wildcard, new req": register("olga", "c1", 5, "Contact: *\r\nExpires: 0\r\n"),
	} {
		if r := h.request("127.0.0.1:5062", msg); statusOf(r) != "400 Out of Order CSeq" {
			t.Errorf("%s: %s", name, statusOf(r))
		}
		if l := h.reg.List("olga@example.com"); len(l) != 1 || l[0] != before[0] {
			t.Fatalf("%s changed the bindings: %+v", name, l)
		}
	}

	// The retransmission: 200 with the binding and its remaining expiry
	// (290 s: not refreshed by the retransmission).
	r := h.request("127.0.0.1:5062", first)
	if got := contacts(r); statusOf(r) != "200 OK" || len(got) != 1 || got[0] != "<sip:olga@127.0.0.1:5062>;expires=290" {
		t.Fatalf("retransmission: %s", r)
	}
	if l := h.reg.List("olga@example.com"); len(l) != 1 || l[0] != before[0] {
		t.Fatalf("the retransmission changed the binding: %+v", l)
	}

	// A higher CSeq applies; another Call-ID applies whatever its CSeq.
	if r := h.request("127.0.0.1:5062", register("olga", "c1", 6, "Contact: <sip:olga@127.0.0.1:5062>;expires=600\r\n")); !strings.HasSuffix(contacts(r)[0], ";expires=600") {
		t.Fatalf("higher CSeq: %s", r)
	}
	if r := h.request("127.0.0.1:5062", register("olga", "c2", 1, "Contact: *\r\nExpires: 0\r\n")); statusOf(r) != "200 OK" || len(h.reg.List("")) != 0 {
		t.Fatalf("* from another Call-ID: %s", r)
	}
}

// TestCSeqOrderAfterLoad: a binding loaded from the store has no branch;
// the same CSeq is taken for a retransmission (200, no change), a lower one
// still fails.
func TestCSeqOrderAfterLoad(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := st.NewLocationWriter(store.WriterOptions{})
	h := newHarness(t, Config{Writer: w})
	h.request("127.0.0.1:5062", register("pia", "c1", 7, "Contact: <sip:pia@127.0.0.1:5062>\r\n"))
	w.Close()

	h2 := newHarness(t, Config{})
	h2.clock.Set(h.clock.Now())
	if n, err := h2.reg.Load(context.Background(), st); n != 1 || err != nil {
		t.Fatalf("Load: %d %v", n, err)
	}
	if r := h2.request("127.0.0.1:5062", register("pia", "c1", 7, "Contact: <sip:pia@127.0.0.1:5062>;expires=0\r\n")); statusOf(r) != "200 OK" || len(h2.reg.List("")) != 1 {
		t.Fatalf("same CSeq after a restart: %s", r)
	}
	if r := h2.request("127.0.0.1:5062", register("pia", "c1", 6, "Contact: <sip:pia@127.0.0.1:5062>;expires=0\r\n")); statusOf(r) != "400 Out of Order CSeq" {
		t.Fatalf("lower CSeq after a restart: %s", r)
	}
}

// TestRemovedBindingsRemembered: once a REGISTER removed a binding, its
// Call-ID and CSeq are kept as a tombstone for goneFor. The old REGISTER
// that made the binding can come back within that time: REGISTER is
// answered statelessly, so the auth module accepts its bytes from the
// same source as a retransmission (a late UDP duplicate, or an attacker
// replaying it from the spoofed source). Before, with the binding gone,
// nothing showed it was older than the removal and it was applied again:
// the phone that had unregistered was registered again, at an address it
// may have left. Now it gets 400 Out of Order CSeq, a duplicate of the
// removal changes nothing (not even a binding made since by another
// Call-ID), and other Call-IDs and higher CSeqs are not held up.
func TestRemovedBindingsRemembered(t *testing.T) {
	h := newHarness(t, Config{})
	src := "127.0.0.1:5062"
	registered := func() bool { return h.reg.Registered([]byte("quinn@example.com")) }
	send := func(msg, want string) string {
		t.Helper()
		h.clock.Advance(5 * time.Second) // past the stateless transaction of the last copy
		r := h.request(src, msg)
		if statusOf(r) != want {
			t.Fatalf("want %s, got:\n%s\nfor:\n%s", want, r, msg)
		}
		return r
	}

	for name, removal := range map[string]string{
		"expires=0": "Contact: <sip:quinn@127.0.0.1:5062>;expires=0\r\n",
		"*":         "Contact: *\r\nExpires: 0\r\n",
	} {
		callID := "q-" + name
		first := register("quinn", callID, 1, "Contact: <sip:quinn@127.0.0.1:5062>\r\n")
		send(first, "200 OK")
		second := register("quinn", callID, 2, removal)
		send(second, "200 OK")
		if registered() {
			t.Fatalf("%s: still registered", name)
		}
		send(first, "400 Out of Order CSeq")
		if registered() {
			t.Fatalf("%s: the REGISTER before the removal brought the binding back", name)
		}
		if r := send(second, "200 OK"); len(contacts(r)) != 0 {
			t.Fatalf("%s: the removal again: %s", name, r)
		}
		// The phone registers again, on another Call-ID (restarted): a
		// duplicate of its removal leaves the new binding alone.
		send(register("quinn", callID+"-new", 1, "Contact: <sip:quinn@127.0.0.1:5064>\r\n"), "200 OK")
		if r := send(second, "200 OK"); len(contacts(r)) != 1 || !registered() {
			t.Fatalf("%s: the old removal again, after a new registration: %s", name, r)
		}
		// And on the first Call-ID with a higher CSeq.
		send(register("quinn", callID, 3, "Contact: <sip:quinn@127.0.0.1:5062>\r\n"), "200 OK")
		send(register("quinn", "q-clear", 1, "Contact: *\r\nExpires: 0\r\n"), "200 OK")
	}

	// A binding taken over by another Call-ID (the same instance from a
	// new contact): the old Call-ID's REGISTER cannot take it back.
	inst := `;+sip.instance="<urn:uuid:00000000-0000-0000-0000-00000000000a>";reg-id=1`
	old := register("quinn", "q-inst-1", 7, "Contact: <sip:quinn@127.0.0.1:5062>"+inst+"\r\n")
	send(old, "200 OK")
	send(register("quinn", "q-inst-2", 1, "Contact: <sip:quinn@127.0.0.1:5066>"+inst+"\r\n"), "200 OK")
	send(old, "200 OK") // its retransmission: the same answer, no change
	if l := h.reg.List("quinn@example.com"); len(l) != 1 || l[0].Contact != "sip:quinn@127.0.0.1:5066" {
		t.Fatalf("the old instance's REGISTER took the binding back: %+v", l)
	}
	send(register("quinn", "q-inst-1", 6, "Contact: <sip:quinn@127.0.0.1:5062>"+inst+"\r\n"), "400 Out of Order CSeq")

	// The management API's removal is remembered too.
	send(register("quinn", "q-clear", 2, "Contact: *\r\nExpires: 0\r\n"), "200 OK")
	mine := register("quinn", "q-mgmt", 1, "Contact: <sip:quinn@127.0.0.1:5062>\r\n")
	send(mine, "200 OK")
	if n, err := h.reg.Delete("quinn@example.com", ""); n != 1 || err != nil {
		t.Fatalf("Delete: %d %v", n, err)
	}
	if send(mine, "200 OK"); registered() {
		t.Fatal("a retransmission brought back the binding the management API removed")
	}

	// goneFor later the tombstones are gone, and the record they kept.
	if st := h.reg.Stats(); st.AORs != 0 || st.Bindings != 0 || st.Tombstones == 0 {
		t.Fatalf("stats %+v", st)
	}
	h.clock.Advance(goneFor * time.Millisecond)
	if st, n := h.reg.Stats(), h.records(); st.Tombstones != 0 || n != 0 {
		t.Fatalf("after %d ms: %d records, stats %+v", goneFor, n, st)
	}
}

// records counts the table's entries, bindings or not.
func (h *harness) records() int {
	n := 0
	h.reg.tbl.Range(func(*shards.Shard[record], *shards.Entry[record]) bool { n++; return true })
	return n
}

// TestTombstonesBounded: a subscriber registering and unregistering over
// and over (each time on a new Call-ID) keeps at most MaxContacts+1
// tombstones, the newest, counted in the memory the AOR holds; the
// oldest go first.
func TestTombstonesBounded(t *testing.T) {
	h := newHarness(t, Config{MaxContacts: 2})
	src := "127.0.0.1:5062"
	var firsts []string
	for i := 0; i < 20; i++ {
		callID := "b" + itoa(i)
		first := register("rita", callID, 1, "Contact: <sip:rita@127.0.0.1:5062>\r\n")
		firsts = append(firsts, first)
		for _, m := range []string{first, register("rita", callID, 2, "Contact: *\r\nExpires: 0\r\n")} {
			if r := h.request(src, m); statusOf(r) != "200 OK" {
				t.Fatal(r)
			}
		}
		h.clock.Advance(100 * time.Millisecond)
		if st := h.reg.Stats(); st.Tombstones > 3 {
			t.Fatalf("after %d cycles: %d tombstones", i+1, st.Tombstones)
		}
	}
	var held int64
	h.reg.tbl.Range(func(s *shards.Shard[record], e *shards.Entry[record]) bool {
		held = e.Extra()
		if want := int64(e.Value.bytes()); held != want || cap(e.Value.gone) > 4 {
			t.Fatalf("accounted %d bytes, holds %d (%d tombstones, room for %d)", held, want, len(e.Value.gone), cap(e.Value.gone))
		}
		return true
	})
	h.clock.Advance(10 * time.Second) // the stateless transactions end
	if r := h.request(src, firsts[19]); statusOf(r) != "400 Out of Order CSeq" {
		t.Fatalf("the newest tombstone: %s", r)
	}
	if r := h.request(src, firsts[0]); statusOf(r) != "200 OK" {
		t.Fatalf("the oldest, replaced: %s", r)
	}
}
