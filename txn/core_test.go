package txn

import (
	"strings"
	"testing"
	"time"
)

func TestInviteCall(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.RecordRoute()
		if err := r.Relay(); err != nil {
			t.Errorf("relay: %v", err)
		}
	}
	h.in(uacAddr, invite("z9hG4bKuac1", "call1@x"))
	msgs := h.snd.take()
	got := firstLines(msgs)
	if len(got) != 2 || got[0] != "127.0.0.1:5070 SIP/2.0 100 Trying" || got[1] != "127.0.0.1:5080 INVITE sip:bob@127.0.0.1:5080 SIP/2.0" {
		t.Fatalf("sent:\n%s", describe(msgs))
	}
	fwd := msgs[1].data
	if vias := headers(fwd, "Via"); len(vias) != 2 || !strings.HasPrefix(vias[0], "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK") {
		t.Fatalf("vias %q", vias)
	}
	if header(fwd, "Max-Forwards") != "69" || header(fwd, "Record-Route") != "<sip:127.0.0.1:5060;lr;sig="+h.sig("call1@x", "a1")+">" {
		t.Fatalf("forwarded:\n%s", fwd)
	}
	// retransmission: 100 again, nothing forwarded
	h.in(uacAddr, invite("z9hG4bKuac1", "call1@x"))
	if got := firstLines(h.snd.take()); len(got) != 1 || got[0] != "127.0.0.1:5070 SIP/2.0 100 Trying" {
		t.Fatalf("retransmission answered with %q", got)
	}
	// 180 and 200 go upstream without our Via
	h.in(uasAddr, respond(fwd, 180, "b1"))
	h.in(uasAddr, respond(fwd, 200, "b1"))
	msgs = h.snd.take()
	got = firstLines(msgs)
	if len(got) != 2 || got[0] != "127.0.0.1:5070 SIP/2.0 180 Ringing" || got[1] != "127.0.0.1:5070 SIP/2.0 200 OK" {
		t.Fatalf("upstream:\n%s", describe(msgs))
	}
	if vias := headers(msgs[1].data, "Via"); len(vias) != 1 || !strings.Contains(vias[0], "z9hG4bKuac1") {
		t.Fatalf("200 vias %q", vias)
	}
	// a retransmitted 200 is forwarded too
	h.in(uasAddr, respond(fwd, 200, "b1"))
	if got := firstLines(h.snd.take()); len(got) != 1 || got[0] != "127.0.0.1:5070 SIP/2.0 200 OK" {
		t.Fatalf("200 retransmission: %q", got)
	}
	// timers: no retransmission of the INVITE after the final
	h.advance(10 * time.Second)
	if got := h.snd.take(); len(got) != 0 {
		t.Fatalf("after 200: %s", describe(got))
	}
	h.advance(time.Minute)
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}
}
