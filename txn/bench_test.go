package txn

import (
	"testing"
	"time"

	"switchboard/transport"
)

// In-process benchmarks: the real core with a sender that keeps only the
// last message (no socket). Compare them as ratios within one run.

func benchCall(b *testing.B, l *loop) {
	call := []byte(fixCL(invite("z9hG4bK00000000", "00000000@x")))
	at := counterAt(call)
	ack := []byte(fixCL(`ACK sip:bob@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000a
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>;tag=uas1
Call-ID: 00000000@x
CSeq: 1 ACK
`))
	at2 := counterAt(ack)
	b.ReportAllocs()
	for i := -8000; i < b.N; i++ {
		if i == 0 {
			b.ResetTimer() // after warm-up: the population of live calls is steady
		}
		setCounter(call, at, i+8000)
		setCounter(ack, at2, i+8000)
		l.deliver(uacAddr, transport.UDP, call)
		l.deliver(uasAddr, transport.UDP, l.answer(180))
		l.deliver(uasAddr, transport.UDP, l.answer(200))
		l.deliver(uacAddr, transport.UDP, ack)
		if i%16 == 0 {
			l.h.clock.Advance(100 * time.Millisecond)
		}
	}
}

// BenchmarkInviteCall: INVITE (100 Trying, relay), 180 and 200 forwarded,
// 2xx ACK relayed statelessly; the manual clock moves so transactions end.
func BenchmarkInviteCall(b *testing.B) {
	benchCall(b, newLoop(b, nil))
}

// BenchmarkNonInviteCycle: create a server transaction, relay, match the
// 200, forward it and remove the transaction (TCP: no timers J/K).
func BenchmarkNonInviteCycle(b *testing.B) {
	l := newLoop(b, nil)
	msg := []byte(fixCL(request("MESSAGE", "z9hG4bKcyc", "cyc@x", "sip:bob@127.0.0.1:5080;transport=tcp", "")))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.deliver(uacAddr, transport.TCP, msg)
		l.deliver(uasAddr, transport.TCP, l.answer(200))
	}
}

// BenchmarkRetransmission: a retransmitted INVITE matched and answered
// with the stored 100.
func BenchmarkRetransmission(b *testing.B) {
	l := newLoop(b, nil)
	inv := []byte(fixCL(invite("z9hG4bKretr", "retr@x")))
	l.deliver(uacAddr, transport.UDP, inv)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.deliver(uacAddr, transport.UDP, inv)
	}
}

// BenchmarkResponseMatch: a 180 matched to its branch and forwarded.
func BenchmarkResponseMatch(b *testing.B) {
	l := newLoop(b, nil)
	l.deliver(uacAddr, transport.UDP, []byte(fixCL(invite("z9hG4bKresp", "resp@x"))))
	ringing := append([]byte(nil), l.answer(180)...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.deliver(uasAddr, transport.UDP, ringing)
	}
}
