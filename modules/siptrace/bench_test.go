package siptrace

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/transport"
)

// BenchmarkRequestTraced: one OPTIONS through a real transaction core,
// answered 200 by the route (a transaction created and ended, two
// messages), with the module in each mode. The collector is a loopback
// socket that reads and forgets. Compare the modes as ratios within one
// run:
//
//   - off: no tap on the core (the cost of the module being compiled in:
//     one atomic load per message);
//   - all: both messages copied into the queue (the sender goroutine
//     encodes and sends them on the other core);
//   - route-untraced: mode route, the route does not call Trace: the tap
//     finds the Call-ID of the sent 200 in its bytes and looks the
//     transaction up;
//   - route-traced: the route calls Trace: both messages queued;
//   - sample-0: mode sample, a Call-ID not sampled.
func BenchmarkRequestTraced(b *testing.B) {
	for _, c := range []struct {
		name, mode string
		trace      bool
		rate       float64
	}{
		{"off", "off", false, 0.1},
		{"all", "all", false, 0.1},
		{"route-untraced", "route", false, 0.1},
		{"route-traced", "route", true, 0.1},
		{"sample-0", "sample", false, 1e-9},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := routetest.New(b, nil)
			h.Keep = false
			s := settings(c.mode, newSink(b))
			s.SampleRate = c.rate
			s.QueueSize = 1 << 16 // the sender keeps up on average; the queue takes bursts
			tm := start(b, s, h.Core())
			h.Route = func(ctx *routing.Ctx) {
				if c.trace {
					tm.st.Trace(ctx)
				}
				ctx.Reply(200, "")
			}
			msg := []byte(options("bench-00000000")) // Call-ID and branch numbered per request
			at := []int{}
			for i := 0; i+8 <= len(msg); i++ {
				if string(msg[i:i+8]) == "00000000" {
					at = append(at, i)
					i += 7
				}
			}
			pkt := &transport.Packet{Data: msg, Src: uac, Listener: h.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := i
				for _, p := range at {
					for k := 7; k >= 0; k-- {
						msg[p+k] = byte('0' + n%10)
						n /= 10
					}
					n = i
				}
				h.Handle(pkt)
				if i%64 == 0 {
					h.Clock.Advance(100 * time.Millisecond) // transactions end (timer J)
				}
			}
			b.StopTimer()
			if q := tm.st.q.Load(); q != nil && c.mode != "off" {
				b.ReportMetric(float64(tm.st.full.Load())/float64(b.N), "dropped/op")
			}
		})
	}
}

// BenchmarkAppendHEP3: encoding one 900-byte INVITE with password and
// Call-ID (the sender goroutine's work per packet, before the send).
func BenchmarkAppendHEP3(b *testing.B) {
	r := Record{
		Proto: transport.UDP, Src: uac, Dst: proxy, Sec: 1700000000, Usec: 1, NodeID: 1,
		Password: []byte("secret"), CallID: []byte("a84b4c76e66710@pc33.atlanta.example.com"),
		Payload: bytes.Repeat([]byte("x"), 900),
	}
	buf := make([]byte, 0, maxHEP)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = AppendHEP3(buf[:0], &r)
	}
}

// BenchmarkScanHeaders: finding Call-ID and CSeq in a sent INVITE's bytes
// (mode route and sample on messages sent; the correlation id).
func BenchmarkScanHeaders(b *testing.B) {
	msg := []byte("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n" +
		"Record-Route: <sip:192.0.2.10;lr;sig=0123456789abcdef>\r\n" +
		"Max-Forwards: 69\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n" +
		"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\n" +
		"Contact: <sip:alice@pc33.atlanta.example.com>\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		scanHeaders(msg)
	}
}
