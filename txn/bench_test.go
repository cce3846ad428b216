package txn

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
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

// BenchmarkRelayedCallUDP: a whole call (INVITE, 100, 200, ACK, BYE, 200)
// through the real transport and core on loopback, UAC and UAS being
// plain UDP sockets in the benchmark. Wall time per call: dominated by
// syscalls and goroutine wake-ups, one call at a time.
func BenchmarkRelayedCallUDP(b *testing.B) {
	p := startProxy(b, nil)
	uacC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer uacC.Close()
	uasC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer uasC.Close()
	proxyUDP := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.udpPort}
	uacPort := uacC.LocalAddr().(*net.UDPAddr).Port
	uasPort := uasC.LocalAddr().(*net.UDPAddr).Port
	ruri := "sip:bob@127.0.0.1:" + strconv.Itoa(uasPort)
	mk := func(method, branch, cseq, extra string) []byte {
		return []byte(fixCL(method + " " + ruri + " SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(uacPort) + ";branch=" + branch +
			"\nMax-Forwards: 70\nFrom: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>" + extra +
			"\nCall-ID: 00000000@bench\nCSeq: " + cseq + " " + method + "\n"))
	}
	inv := mk("INVITE", "z9hG4bK00000000i", "1", "")
	ack := mk("ACK", "z9hG4bK00000000a", "1", ";tag=uas")
	bye := mk("BYE", "z9hG4bK00000000b", "2", ";tag=uas")
	atI, atA, atB := counterAt(inv), counterAt(ack), counterAt(bye)
	buf := make([]byte, 65535)
	var m parser.Message
	out := make([]byte, 0, 4096)
	// read until a message whose first line starts with prefix arrives
	read := func(c net.PacketConn, prefix string) []byte {
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				b.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(string(buf[:n]), prefix) {
				return buf[:n]
			}
		}
	}
	answer := func(req []byte, code int) {
		if err := m.Parse(req); err != nil {
			b.Fatal(err)
		}
		out = parser.AppendResponse(out[:0], &m, code, nil, []byte("uas"))
		uasC.WriteTo(out, proxyUDP)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		setCounter(inv, atI, i)
		setCounter(ack, atA, i)
		setCounter(bye, atB, i)
		uacC.WriteTo(inv, proxyUDP)
		answer(read(uasC, "INVITE"), 200)
		read(uacC, "SIP/2.0 200")
		uacC.WriteTo(ack, proxyUDP)
		read(uasC, "ACK")
		uacC.WriteTo(bye, proxyUDP)
		answer(read(uasC, "BYE"), 200)
		read(uacC, "SIP/2.0 200")
	}
}

// BenchmarkRecordRoutedCall: a call with a signed Record-Route: INVITE
// (signed), 180, 200, then ACK and BYE from both sides verified and
// loose-routed, and the BYE's 200. Compare with BenchmarkInviteCall.
func BenchmarkRecordRoutedCall(b *testing.B) {
	c := newSignedCall(newLoop(b, nil))
	b.ReportAllocs()
	for i := -8000; i < b.N; i++ {
		if i == 0 {
			b.ResetTimer()
		}
		c.run()
		if i%16 == 0 {
			c.l.h.clock.Advance(100 * time.Millisecond)
		}
	}
}

// BenchmarkRouteSignature: signing a dialog and verifying a signature,
// the cost signed Record-Route adds per record-routed request and per
// loose-routed one.
func BenchmarkRouteSignature(b *testing.B) {
	h := newHarness(b, nil)
	var m parser.Message
	bye := strings.Replace(request("BYE", "z9hG4bKs", "sig-call@example.com", "sip:bob@127.0.0.1", ""), "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1", 1)
	if err := m.Parse([]byte(fixCL(bye))); err != nil {
		b.Fatal(err)
	}
	sig := h.core.sigs.appendSig(nil, m.CallID(), []byte("b1"))
	buf := make([]byte, 0, routeSigLen)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = h.core.sigs.appendSig(buf[:0], m.CallID(), m.FromTag())
		if !h.core.sigs.verify(sig, &m) {
			b.Fatal("signature did not verify")
		}
	}
}
