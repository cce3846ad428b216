package txn

import (
	"testing"
	"time"

	"switchboard/transport"
)

// FuzzHandleMessage feeds arbitrary datagrams, as requests from a UAC and
// responses from a UAS, to a core whose route relays everything (the
// sender records nothing and the allow-list holds only loopback): nothing
// may panic. Without -fuzz it runs the seeds and checks that every
// transaction ended once the timers ran.
//
//	go test -run '^$' -fuzz FuzzHandleMessage -fuzztime 30s ./txn/
func FuzzHandleMessage(f *testing.F) {
	seeds := []string{
		invite("z9hG4bKf1", "f1@x"),
		request("MESSAGE", "z9hG4bKf2", "f2@x", "sip:bob@127.0.0.1:5080", "Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5090;lr>"),
		request("CANCEL", "z9hG4bKf1", "f1@x", "sip:bob@127.0.0.1:5080", ""),
		request("ACK", "z9hG4bKf1", "f1@x", "sip:bob@127.0.0.1:5080", ""),
		request("BYE", "old", "f3@x", "sip:127.0.0.1:5060;lr", "Route: <sip:127.0.0.1:5080>"),
		"SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabcdef000000000000000000000000000000000\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf1\nFrom: <sip:a@b>;tag=1\nTo: <sip:b@c>;tag=2\nCall-ID: f1@x\nCSeq: 1 INVITE\n",
	}
	for _, s := range seeds {
		f.Add([]byte(fixCL(s)), false)
		f.Add([]byte(fixCL(s)), true)
	}
	h := newHarness(f, nil)
	h.snd.keep = false
	h.rt.request = func(r *Request) {
		r.LooseRoute()
		r.RecordRoute()
		if r.Relay() != nil {
			r.Reply(500, "")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, fromUAS bool) {
		src := uacAddr
		if fromUAS {
			src = uasAddr
		}
		p := transport.Packet{Data: data, Src: src, Listener: h.udp, Proto: transport.UDP}
		h.core.HandleMessage(&p)
		h.clock.Advance(5 * time.Second)
	})
	h.clock.Advance(10 * time.Minute)
	if n := h.core.Stats().Transactions; n != 0 {
		f.Fatalf("%d transactions left after the timers", n)
	}
}
