package txn

import (
	"strings"
	"testing"
	"time"
)

// TestCancelByProxy: Core.Cancel on the Ref of a ringing INVITE sends a
// CANCEL down the branch and, once the branch answers 487, the 487 to the
// client, as the client's own CANCEL would. A second Cancel, a Cancel after the final response, on
// the zero Ref, on a Ref whose transaction ended and was reused, and on a
// non-INVITE's do nothing.
func TestCancelByProxy(t *testing.T) {
	h := newHarness(t, nil)
	var refs []Ref
	h.rt.request = func(r *Request) {
		refs = append(refs, r.Ref())
		r.Relay()
	}
	inv := invite("z9hG4bKpc1", "pc1@x")
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.snd.take()
	if !h.core.Cancel(refs[0]) {
		t.Fatal("Cancel of a ringing INVITE refused")
	}
	msgs := h.snd.take()
	h.only(msgs, toUAS+"CANCEL sip:bob@127.0.0.1:5080 SIP/2.0")
	if h.core.Cancel(refs[0]) {
		t.Fatal("a second Cancel accepted")
	}
	h.in(uasAddr, respond(msgs[0].data, 200, "b"))
	h.in(uasAddr, respond(fwd, 487, "b"))
	h.only(h.snd.take(), toUAS+"ACK sip:bob@127.0.0.1:5080 SIP/2.0", toUAC+"SIP/2.0 487 Request Terminated")
	if h.core.Cancel(refs[0]) || h.core.Cancel(Ref{}) {
		t.Fatal("Cancel after the final response, or of the zero Ref, accepted")
	}

	// Answered: nothing to cancel.
	inv2 := invite("z9hG4bKpc2", "pc2@x")
	h.in(uacAddr, inv2)
	fwd2 := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd2, 200, "b"))
	h.snd.take()
	if h.core.Cancel(refs[1]) {
		t.Fatal("Cancel of an answered INVITE accepted")
	}

	// The transactions end and their entries are reused by new ones: the
	// old Refs name nothing.
	h.clock.Advance(time.Minute)
	for i := 0; i < 8; i++ {
		h.in(uacAddr, invite("z9hG4bKpr"+string(rune('a'+i)), "pr@x"))
	}
	h.snd.take()
	if h.core.Cancel(refs[0]) || h.core.Cancel(refs[1]) {
		t.Fatal("a stale Ref canceled another transaction")
	}
	opts := strings.Replace(strings.Replace(invite("z9hG4bKpo", "po@x"), "INVITE sip", "OPTIONS sip", 1), "1 INVITE", "1 OPTIONS", 1)
	h.in(uacAddr, opts)
	h.snd.take()
	if h.core.Cancel(refs[len(refs)-1]) {
		t.Fatal("Cancel of an OPTIONS accepted")
	}
}
