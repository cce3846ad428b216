package txn

import (
	"strings"
	"sync"
	"testing"

	"switchboard/parser"
)

// TestSuspendAck: an ACK of a 2xx (no transaction) kept by the route with
// SuspendAck is not forwarded when the hook returns; the next messages
// handled (which reuse the goroutine's buffers) do not change it; Resume
// from another goroutine forwards it with the edits made before (an R-URI
// and a header) and after (a new body). The hook could still read its
// own copy after suspending; a second Resume does nothing; a request with
// a transaction gets no handle (Suspend is for it).
func TestSuspendAck(t *testing.T) {
	h := newHarness(t, nil)
	var kept []*Request
	var hookRead string
	h.rt.request = func(r *Request) {
		if r.Method() != parser.MethodAck {
			if r.SuspendAck() != nil {
				t.Error("a request with a transaction got an ACK handle")
			}
			r.Relay()
			return
		}
		r.SetRequestURI([]byte("sip:bob@127.0.0.1:5090"))
		r.Editor().AddHeader("X-Kept", r.Own([]byte("before")))
		k := r.SuspendAck()
		if k == nil {
			t.Fatal("no handle for an ACK")
		}
		kept = append(kept, k)
		if r.SuspendAck() != nil {
			t.Error("an ACK suspended twice")
		}
		hookRead = string(r.Msg.CallID())
	}
	ack := fixCL("ACK sip:bob@127.0.0.1:5080 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack1\nMax-Forwards: 70\n" +
		"From: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>;tag=b1\nCall-ID: late1@x\nCSeq: 1 ACK\n" +
		"Content-Type: application/sdp\n\nv=0\nc=IN IP4 192.168.1.10\n")
	h.in(uacAddr, ack)
	if hookRead != "late1@x" {
		t.Fatalf("the hook read %q after suspending", hookRead)
	}
	if msgs := h.snd.take(); len(msgs) != 0 {
		t.Fatalf("sent while suspended:\n%s", describe(msgs))
	}
	// Other messages go through the same goroutine state meanwhile.
	h.in(uacAddr, invite("z9hG4bKother", "other@x"))
	h.in(uacAddr, strings.Replace(ack, "late1@x", "late2@x", 1))
	h.snd.take()
	if len(kept) != 2 {
		t.Fatalf("%d ACKs kept", len(kept))
	}
	for i, k := range kept {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := k.Resume(func(r *Request) {
				r.Editor().SetBody(r.Own([]byte("v=0\r\nc=IN IP4 127.0.0.99\r\n")), nil)
				if err := r.Relay(); err != nil {
					t.Error(err)
				}
			})
			if err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		msgs := h.snd.take()
		if len(msgs) != 1 {
			t.Fatalf("sent after Resume:\n%s", describe(msgs))
		}
		m := msgs[0]
		if m.dst.Port() != 5090 || !strings.HasPrefix(m.data, "ACK sip:bob@127.0.0.1:5090 SIP/2.0\r\n") ||
			header(m.data, "Call-ID") != []string{"late1@x", "late2@x"}[i] || header(m.data, "X-Kept") != "before" ||
			!strings.HasSuffix(m.data, "\r\n\r\nv=0\r\nc=IN IP4 127.0.0.99\r\n") || len(headers(m.data, "Via")) != 2 {
			t.Fatalf("forwarded ACK %d to %v:\n%s", i, m.dst, m.data)
		}
		if err := k.Resume(func(*Request) { t.Error("resumed twice") }); err != ErrNoTransaction {
			t.Fatalf("second Resume: %v", err)
		}
	}
}
