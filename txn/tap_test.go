package txn

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// recTap records what the core shows a Tap.
type recTap struct {
	mu   sync.Mutex
	in   []tapIn
	sent []sentMsg
}

type tapIn struct {
	src    netip.AddrPort
	l      *transport.Listener
	data   string
	callID string // from the parse; "" when it did not parse
	parsed bool
}

func (r *recTap) Received(data []byte, src netip.AddrPort, l *transport.Listener, _ transport.Proto, m *parser.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := tapIn{src: src, l: l, data: string(data), parsed: m != nil}
	if m != nil {
		in.callID = string(m.CallID())
	}
	r.in = append(r.in, in)
}

func (r *recTap) Sent(l *transport.Listener, dst netip.AddrPort, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sentMsg{l: l, dst: dst, data: string(data)})
}

// TestTapSeesEveryMessage: a relayed call, a malformed request, a send
// refused by the allow-list and answers on a stream connection. The tap
// is shown every message handed to the core, parsed or not, and exactly
// the messages the sender accepted, with their listener, destination and
// bytes; nothing once it is removed.
func TestTapSeesEveryMessage(t *testing.T) {
	h, cs := newConnHarness(t)
	tap := &recTap{}
	h.core.SetTap(tap)
	var delivered []string
	deliver := func(src netip.AddrPort, msg string) {
		msg = fixCL(msg)
		delivered = append(delivered, msg)
		h.in(src, msg)
	}

	deliver(uacAddr, invite("z9hG4bKtap1", "tap@x"))
	out := h.snd.take()
	fwd := ""
	for _, m := range out {
		if m.dst == uasAddr {
			fwd = m.data
		}
	}
	if fwd == "" {
		t.Fatalf("INVITE not relayed:\n%s", describe(out))
	}
	sent := out
	deliver(uasAddr, respond(fwd, 180, "b1"))
	deliver(uasAddr, respond(fwd, 200, "b1"))
	deliver(uacAddr, strings.Replace(request("ACK", "z9hG4bKtap2", "tap@x", "sip:bob@127.0.0.1:5080", ""),
		"To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1", 1))
	deliver(uacAddr, "INVITE sip:bob@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbad\nCSeq: x\n\n")
	// Outside the allow-list: refused, so never on the wire.
	deliver(uacAddr, request("MESSAGE", "z9hG4bKtap3", "far@x", "sip:bob@192.0.2.1:5060", ""))
	sent = append(sent, h.snd.take()...)

	// A request over TCP answered on its connection (SendConn).
	h.rt.request = func(r *Request) { r.Reply(200, "") }
	opt := fixCL(strings.Replace(request("OPTIONS", "z9hG4bKtap4", "conn@x", "sip:127.0.0.1", ""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1))
	delivered = append(delivered, opt)
	h.inConn(uacAddr, 7, opt)
	onConn := cs.takeConn()
	if len(onConn) != 1 {
		t.Fatalf("%d answers on the connection, want 1", len(onConn))
	}

	tap.mu.Lock()
	in, tsent := tap.in, tap.sent
	tap.mu.Unlock()
	if len(in) != len(delivered) {
		t.Fatalf("tap saw %d received messages, want %d", len(in), len(delivered))
	}
	for i, m := range in {
		if m.data != delivered[i] {
			t.Errorf("received %d: tap saw\n%s\nwant\n%s", i, m.data, delivered[i])
		}
		wantSrc, wantL := uacAddr, h.udp
		if i == 1 || i == 2 {
			wantSrc = uasAddr
		}
		if i == len(in)-1 {
			wantL = h.tcp
		}
		if m.src != wantSrc || m.l != wantL {
			t.Errorf("received %d: from %v on %v, want %v on %v", i, m.src, m.l.Proto, wantSrc, wantL.Proto)
		}
		malformed := i == 4
		if m.parsed == malformed {
			t.Errorf("received %d: parsed %v, want %v", i, m.parsed, !malformed)
		}
		if !malformed && m.callID != header(m.data, "Call-ID") {
			t.Errorf("received %d: Call-ID %q", i, m.callID)
		}
	}

	// Every send the sender accepted, in order, then the one on the
	// connection; nothing for the refused MESSAGE (it was answered 500
	// upstream, and that answer is among the sends).
	want := append([]sentMsg(nil), sent...)
	want = append(want, sentMsg{l: h.tcp, dst: uacAddr, data: onConn[0].data})
	if len(tsent) != len(want) {
		t.Fatalf("tap saw %d sent messages, want %d:\n%s\nwant:\n%s", len(tsent), len(want), describe(tsent), describe(want))
	}
	for i := range want {
		if tsent[i].l != want[i].l || tsent[i].dst != want[i].dst || tsent[i].data != want[i].data {
			t.Errorf("sent %d: tap saw %v %s, want %v %s", i, tsent[i].dst, firstLines(tsent[i:i+1]), want[i].dst, firstLines(want[i:i+1]))
		}
	}
	for _, m := range tsent {
		if m.dst.Addr() == netip.MustParseAddr("192.0.2.1") {
			t.Errorf("a send refused by the allow-list reached the tap")
		}
	}

	h.core.SetTap(nil)
	deliver(uacAddr, request("OPTIONS", "z9hG4bKtap5", "off@x", "sip:bob@127.0.0.1:5080", ""))
	tap.mu.Lock()
	defer tap.mu.Unlock()
	if len(tap.in) != len(in) || len(tap.sent) != len(tsent) {
		t.Errorf("the removed tap still saw messages")
	}
}

// countTap counts and copies into a buffer it reuses, as a capture does.
type countTap struct {
	n   int
	buf []byte
}

func (c *countTap) Received(data []byte, _ netip.AddrPort, _ *transport.Listener, _ transport.Proto, _ *parser.Message) {
	c.n++
	c.buf = append(c.buf[:0], data...)
}

func (c *countTap) Sent(_ *transport.Listener, _ netip.AddrPort, data []byte) {
	c.n++
	c.buf = append(c.buf[:0], data...)
}

// TestTapNoAllocs: a record-routed call (INVITE, 180, 200, ACK, BYE, 200)
// shown to a tap allocates nothing in the core: the interface call boxes
// nothing. TestNoAllocs covers the core without a tap.
func TestTapNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := newLoop(t, nil)
	tap := &countTap{buf: make([]byte, 0, 4096)}
	l.h.core.SetTap(tap)
	c := newSignedCall(l)
	mustZero(t, "record-routed call shown to a tap", func() {
		c.run()
		l.h.clock.Advance(200 * time.Millisecond)
	})
	if tap.n < 600*12 {
		t.Fatalf("the tap saw %d messages for 600 calls, want at least 12 each", tap.n)
	}
}

// TestTapKeepsPacketOnStack: a caller's Packet on its own stack stays
// there, with a tap installed or not: the tap gets the packet's fields,
// not the *Packet (an interface call with the pointer made every caller's
// Packet escape: one allocation per message for a route set's harness).
func TestTapKeepsPacketOnStack(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	l := newLoop(t, nil)
	inv := []byte(fixCL(invite("z9hG4bKstack", "stack@x")))
	l.deliver(uacAddr, transport.UDP, inv)
	retrans := func() {
		p := transport.Packet{Data: inv, Src: uacAddr, Listener: l.h.udp, Proto: transport.UDP}
		l.h.core.HandleMessage(&p)
	}
	mustZero(t, "retransmission from a Packet on the stack", retrans)
	l.h.core.SetTap(&countTap{buf: make([]byte, 0, 4096)})
	mustZero(t, "the same with a tap", retrans)
}
