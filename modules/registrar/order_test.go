package registrar

import (
	"context"
	"strings"
	"testing"
	"time"

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
