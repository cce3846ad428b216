package txn

import (
	"fmt"
	"net/netip"
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

// sentWatcher records, for each response it is told of, the Contact of
// the response as it went upstream and of the request as its branch sent
// it.
type sentWatcher struct {
	up, down []string
}

func (w *sentWatcher) Sent(r *Request, b *Branch, code int, resp *parser.Message) {
	w.up = append(w.up, header(string(r.SentResponse()), "Contact"))
	if b != nil {
		w.down = append(w.down, header(string(b.Sent()), "Contact"))
	}
}

// TestWatcherSeesWhatWasSent: a Watcher reads the response as it went
// upstream (the reply route's fix_nated_contact-like edit of its Contact
// in it) and the request as its branch sent it (the request route's edit
// of the INVITE's Contact), what the parties address each other's
// requests to; a response of our own has no copy from downstream.
func TestWatcherSeesWhatWasSent(t *testing.T) {
	h := newHarness(t, nil)
	w := &sentWatcher{}
	var seen []netip.AddrPort
	h.rt.request = func(r *Request) {
		r.Watch(w)
		var na parser.NameAddr
		if r.Msg.Contact(&na) {
			u, _ := parser.ParseURI(na.URI)
			r.Editor().Replace(u.Host, r.Own([]byte("203.0.113.5")))
		}
		if r.Msg.CallID()[0] == 'l' {
			r.Reply(486, "")
			return
		}
		r.Relay()
	}
	h.rt.reply = fixContact(t, &seen)
	h.in(uacAddr, invite("z9hG4bKs1", "sent1@x"))
	fwd := h.snd.take()[1].data
	h.in(uasAddr, withContact(respond(fwd, 200, "b1"), "<sip:bob@192.168.1.10:5062;transport=udp>"))
	if len(w.up) != 1 || w.up[0] != "<sip:bob@127.0.0.1:5080;transport=udp>" {
		t.Fatalf("watcher saw the 200 upstream with Contact %q", w.up)
	}
	if len(w.down) != 1 || !strings.Contains(w.down[0], "@203.0.113.5") {
		t.Fatalf("watcher saw the INVITE sent with Contact %q", w.down)
	}
	w.up, w.down = nil, nil
	h.in(uacAddr, invite("z9hG4bKs2", "local2@x"))
	if len(w.up) != 1 || w.up[0] != "" || len(w.down) != 0 {
		t.Fatalf("watcher of our own 486 saw %q, %q", w.up, w.down)
	}
}
