package txn

import (
	"fmt"
	"strings"
	"testing"

	"switchboard/parser"
)

// recWatcher records what a Watcher is told.
type recWatcher struct {
	seen []string
}

func (w *recWatcher) Sent(r *Request, b *Branch, code int, resp *parser.Message) {
	from := "local"
	if b != nil {
		from = fmt.Sprintf("branch %d", b.Index())
		if resp == nil || resp.StatusCode() != code {
			panic("relayed response does not match the code")
		}
	}
	tag := ""
	if resp != nil {
		tag = string(resp.ToTag())
	}
	w.seen = append(w.seen, fmt.Sprintf("%d %s %s canceled=%v v0=%d", code, from, tag, r.Canceled(), r.Value(0)))
}

// TestWatcherSeesWhatGoesUpstream: a Watcher set by the route sees every
// response that goes upstream (the relayed 180s of a fork and both 2xx,
// with their branch and To tag), not the 100 of our own nor the 486 of
// the other branch that never went upstream; a request without Watch
// reports nothing.
func TestWatcherSeesWhatGoesUpstream(t *testing.T) {
	h := newHarness(t, nil)
	w := &recWatcher{}
	h.rt.request = func(r *Request) {
		r.SetValue(0, 7)
		r.Watch(w)
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, invite("z9hG4bKw1", "w1@x"))
	msgs := h.snd.take()
	h.in(uasAddr, respond(msgs[1].data, 180, "b"))
	h.in(uas2Addr, respond(msgs[2].data, 183, "c"))
	h.in(uas2Addr, respond(msgs[2].data, 200, "c"))
	h.in(uasAddr, respond(msgs[1].data, 200, "b"))
	want := []string{"180 branch 0 b canceled=false v0=7", "183 branch 1 c canceled=false v0=7", "200 branch 1 c canceled=false v0=7", "200 branch 0 b canceled=false v0=7"}
	if strings.Join(w.seen, "|") != strings.Join(want, "|") {
		t.Fatalf("watcher saw %q, want %q", w.seen, want)
	}

	// A final of our own: the route's 486.
	w.seen = nil
	h.rt.request = func(r *Request) {
		r.Watch(w)
		r.Reply(486, "")
	}
	h.in(uacAddr, invite("z9hG4bKw2", "w2@x"))
	if strings.Join(w.seen, "|") != "486 local  canceled=false v0=0" {
		t.Fatalf("watcher saw %q", w.seen)
	}

	// CANCEL while ringing: the 487 relayed, seen as canceled.
	w.seen = nil
	h.rt.request = func(r *Request) {
		r.Watch(w)
		r.Relay()
	}
	inv := invite("z9hG4bKw3", "w3@x")
	h.snd.take()
	h.in(uacAddr, inv)
	fwd := h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.in(uacAddr, strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1))
	h.in(uasAddr, respond(fwd, 487, "b"))
	if strings.Join(w.seen, "|") != "180 branch 0 b canceled=false v0=0|487 branch 0 b canceled=true v0=0" {
		t.Fatalf("watcher saw %q", w.seen)
	}

	// No Watch: nothing.
	w.seen = nil
	h.rt.request = func(r *Request) { r.Relay() }
	h.snd.take()
	h.in(uacAddr, invite("z9hG4bKw4", "w4@x"))
	fwd = h.snd.take()[1].data
	h.in(uasAddr, respond(fwd, 200, "b"))
	if len(w.seen) != 0 {
		t.Fatalf("watcher of another request saw %q", w.seen)
	}
}
