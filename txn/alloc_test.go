package txn

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// lastSender keeps only the last message sent, in a buffer it reuses, so
// measuring allocations measures the core.
type lastSender struct {
	*recSender
	last    []byte // the last request sent
	lastAny []byte
	dst     netip.AddrPort
	n       int
}

func (s *lastSender) Send(l *transport.Listener, dst netip.AddrPort, data []byte) error {
	if len(data) > 4 && string(data[:4]) != "SIP/" {
		s.last = append(s.last[:0], data...)
	}
	s.lastAny = append(s.lastAny[:0], data...)
	s.dst = dst
	s.n++
	return nil
}

// SendTagged keeps the tagged branch requests (streams) the same way.
func (s *lastSender) SendTagged(l *transport.Listener, dst netip.AddrPort, data []byte, _ transport.Tag) error {
	return s.Send(l, dst, data)
}

// SendConn keeps responses sent on a stream connection the same way.
func (s *lastSender) SendConn(_ transport.ConnID, data []byte) error {
	s.lastAny = append(s.lastAny[:0], data...)
	s.n++
	return nil
}

// loop drives the core with prebuilt packets and builds responses to what
// it sent without allocating.
type loop struct {
	h    *harness
	snd  *lastSender
	pkt  transport.Packet
	sent parser.Message
	resp []byte
}

func newLoop(tb testing.TB, mod func(*Config)) *loop {
	h := newHarness(tb, mod)
	ls := &lastSender{recSender: h.snd, last: make([]byte, 0, 4096), lastAny: make([]byte, 0, 4096)}
	h.core.send, h.core.conns = ls, ls
	return &loop{h: h, snd: ls, resp: make([]byte, 0, 4096)}
}

func (l *loop) deliver(src netip.AddrPort, proto transport.Proto, data []byte) {
	l.pkt = transport.Packet{Data: data, Src: src, Listener: l.h.udp, Proto: proto}
	if proto == transport.TCP {
		l.pkt.Listener, l.pkt.Conn = l.h.tcp, 1
	}
	l.h.core.HandleMessage(&l.pkt)
}

// answer builds a response to the last message sent.
func (l *loop) answer(code int) []byte {
	if err := l.sent.Parse(l.snd.last); err != nil {
		panic(err)
	}
	l.resp = parser.AppendResponse(l.resp[:0], &l.sent, code, nil, []byte("uas1"))
	return l.resp
}

// setCounter writes n as 8 digits at the first "00000000" of each message.
func setCounter(b []byte, at []int, n int) {
	for _, i := range at {
		v := n
		for k := 7; k >= 0; k-- {
			b[i+k] = byte('0' + v%10)
			v /= 10
		}
	}
}

func counterAt(b []byte) []int {
	var at []int
	for i := 0; i+8 <= len(b); i++ {
		if string(b[i:i+8]) == "00000000" {
			at = append(at, i)
			i += 7
		}
	}
	return at
}

func mustZero(t *testing.T, name string, f func()) {
	t.Helper()
	for i := 0; i < 400; i++ { // warm pools and buffers
		f()
	}
	if n := testing.AllocsPerRun(200, f); n != 0 {
		t.Errorf("%s: %v allocations per run, want 0", name, n)
	}
}

func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := newLoop(t, nil)
	inv := []byte(fixCL(invite("z9hG4bKalloc", "alloc@x")))
	l.deliver(uacAddr, transport.UDP, inv)
	fwd := append([]byte(nil), l.snd.last...)
	l.sent.Parse(fwd)
	ringing := append([]byte(nil), parser.AppendResponse(nil, &l.sent, 180, nil, []byte("b"))...)
	busy := append([]byte(nil), parser.AppendResponse(nil, &l.sent, 486, nil, []byte("b"))...)
	cancel := []byte(fixCL(request("CANCEL", "z9hG4bKalloc", "alloc@x", "sip:bob@127.0.0.1:5080", "")))

	mustZero(t, "INVITE retransmission", func() { l.deliver(uacAddr, transport.UDP, inv) })
	mustZero(t, "provisional response forwarded", func() { l.deliver(uasAddr, transport.UDP, ringing) })
	mustZero(t, "CANCEL", func() { l.deliver(uacAddr, transport.UDP, cancel) })
	l.deliver(uasAddr, transport.UDP, busy)
	mustZero(t, "final response retransmission (ACKed again)", func() { l.deliver(uasAddr, transport.UDP, busy) })
	ack := []byte(fixCL(request("ACK", "z9hG4bKalloc", "alloc@x", "sip:bob@127.0.0.1:5080", "")))
	mustZero(t, "ACK for a non-2xx response", func() { l.deliver(uacAddr, transport.UDP, ack) })

	// Create, relay and complete transactions (TCP: no timers J/K, so each
	// cycle ends with the transaction back in the pool).
	msg := []byte(fixCL(request("MESSAGE", "z9hG4bKcyc", "cyc@x", "sip:bob@127.0.0.1:5080;transport=tcp", "")))
	before := l.h.core.Stats().Transactions
	mustZero(t, "create + relay + 200 + remove", func() {
		l.deliver(uacAddr, transport.TCP, msg)
		l.deliver(uasAddr, transport.TCP, l.answer(200))
	})
	if n := l.h.core.Stats().Transactions; n != before {
		t.Fatalf("%d transactions left, want %d", n, before)
	}

	// A whole INVITE call over UDP with fresh Call-IDs, and the 2xx ACK
	// relayed statelessly.
	call := []byte(fixCL(invite("z9hG4bK00000000", "00000000@x")))
	at := counterAt(call)
	ack2 := []byte(fixCL(`ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000a
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>;tag=uas1
Call-ID: 00000000@x
CSeq: 1 ACK
`))
	at2 := counterAt(ack2)
	n := 0
	before = l.h.core.Stats().Transactions
	mustZero(t, "INVITE call: create, relay, 180, 200, ACK", func() {
		n++
		setCounter(call, at, n)
		setCounter(ack2, at2, n)
		l.deliver(uacAddr, transport.UDP, call)
		l.deliver(uasAddr, transport.UDP, l.answer(180))
		l.deliver(uasAddr, transport.UDP, l.answer(200))
		l.deliver(uacAddr, transport.UDP, ack2)
		// Time passes: timers L and M (32 s) end older calls, whose
		// entries and buffers the next calls reuse.
		l.h.clock.Advance(200 * time.Millisecond)
	})
	if st := l.h.core.Stats(); st.Transactions > before+200 {
		t.Fatalf("%d transactions live: calls are not ending", st.Transactions)
	}
}

// recordRouted makes the harness's router record-route initial requests
// and loose-route in-dialog ones (403 when LooseRoute is false), as a
// provider's route set does.
func recordRouted(h *harness) {
	h.rt.request = func(r *Request) {
		if r.HasToTag() {
			if !r.LooseRoute() {
				r.Reply(403, "Forbidden Route")
				return
			}
		} else {
			r.RecordRoute()
		}
		r.Relay()
	}
}

// signedCall is a record-routed call: the INVITE, the callee's 180 and
// 200, the caller's ACK and the callee's BYE along the signed route, and
// the BYE's 200. Each run gets a new Call-ID and signs it anew.
type signedCall struct {
	l             *loop
	inv, ack, bye []byte
	atInv, atAck  []int
	atBye         []int
	sigAck, sigBy []int
	sig, tag      []byte
	n             int
}

func newSignedCall(l *loop) *signedCall {
	recordRouted(l.h)
	route := "Route: <sip:127.0.0.1:5060;lr;sig=ssssssssssssssss>\n"
	c := &signedCall{l: l, sig: make([]byte, 0, routeSigLen), tag: []byte("a1")}
	c.inv = []byte(fixCL(invite("z9hG4bK00000000", "00000000@x")))
	c.ack = []byte(fixCL("ACK sip:bob@127.0.0.1:5080 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000a\nMax-Forwards: 70\n" +
		route + "From: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>;tag=uas1\nCall-ID: 00000000@x\nCSeq: 1 ACK\n"))
	c.bye = []byte(fixCL("BYE sip:alice@127.0.0.1:5070 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK00000000b\nMax-Forwards: 70\n" +
		route + "From: <sip:bob@127.0.0.1>;tag=uas1\nTo: <sip:alice@127.0.0.1>;tag=a1\nCall-ID: 00000000@x\nCSeq: 1 BYE\n"))
	c.atInv, c.atAck, c.atBye = counterAt(c.inv), counterAt(c.ack), counterAt(c.bye)
	c.sigAck = []int{strings.Index(string(c.ack), "ssssssssssssssss")}
	c.sigBy = []int{strings.Index(string(c.bye), "ssssssssssssssss")}
	return c
}

func (c *signedCall) run() {
	c.n++
	setCounter(c.inv, c.atInv, c.n)
	setCounter(c.ack, c.atAck, c.n)
	setCounter(c.bye, c.atBye, c.n)
	c.sig = c.l.h.core.sigs.appendSig(c.sig[:0], c.inv[c.atInv[len(c.atInv)-1]:c.atInv[len(c.atInv)-1]+10], c.tag)
	copy(c.ack[c.sigAck[0]:], c.sig)
	copy(c.bye[c.sigBy[0]:], c.sig)
	l := c.l
	l.deliver(uacAddr, transport.UDP, c.inv)
	l.deliver(uasAddr, transport.UDP, l.answer(180))
	l.deliver(uasAddr, transport.UDP, l.answer(200))
	l.deliver(uacAddr, transport.UDP, c.ack)
	l.deliver(uasAddr, transport.UDP, c.bye)
	l.deliver(uacAddr, transport.UDP, l.answer(200))
}

// TestSignedRouteAllocatesNothing: signing our Record-Route and checking
// the signature of in-dialog requests stay allocation-free.
func TestSignedRouteAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := newLoop(t, nil)
	c := newSignedCall(l)
	c.run()
	if !strings.HasPrefix(string(l.snd.last), "BYE sip:alice@127.0.0.1:5070 ") {
		t.Fatalf("the BYE was not relayed; last sent:\n%s", l.snd.lastAny)
	}
	mustZero(t, "record-routed call with ACK and BYE along the signed route", func() {
		c.run()
		l.h.clock.Advance(200 * time.Millisecond)
	})
}
