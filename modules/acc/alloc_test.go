package acc

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/modules/internal/fieldtext"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/transport"
)

// drain gives every queued record back to the pool, as the writer does
// once it wrote them, and returns how many there were.
func (a *Acc) drain() int {
	n := 0
	for len(a.queue) > 0 {
		a.release(<-a.queue)
		n++
	}
	return n
}

// numberAll writes n as 8 digits over every "00000000" field of msg that
// follows one of the markers.
func numberAll(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=a", "Call-ID: c"} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}

const allocInvite = "INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-00000000;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a00000000\r\nTo: <sip:bob@example.com>\r\n" +
	"Call-ID: c00000000@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"

// callLoop returns a function that puts one whole call through the core
// with a dialog (and an extra pair) and the module's subscriber: INVITE,
// the callee's 200, the callee's BYE, which ends the dialog and queues
// the record. Messages are built in place: the loop itself allocates
// nothing.
func callLoop(tb testing.TB, e *env) func() {
	e.Keep = false
	account := []byte("1001")
	e.Route = func(c *routing.Ctx) {
		if c.HasToTag() {
			if c.LooseRoute() && e.d.MatchDialog(c) {
				c.Relay()
				return
			}
			c.ReplyStateless(404, "", nil)
			return
		}
		if c.IsMethod(parser.MethodInvite) && e.d.CreateDialog(c) && e.a.SetExtra(c, "account", account) {
			c.Relay()
			return
		}
		c.ReplyStateless(500, "", nil)
	}
	var relayed parser.Message
	fwd := make([]byte, 0, 4096)
	e.OnSend = func(dst netip.AddrPort, data []byte) {
		if bytes.HasPrefix(data, []byte("INVITE ")) {
			fwd = append(fwd[:0], data...)
		}
	}
	invite := []byte(allocInvite)
	resp := make([]byte, 0, 4096)
	extra := make([]byte, 0, 1024)
	bye := make([]byte, 0, 4096)
	l := e.Listener(transport.UDP, netip.Addr{})
	pkt := &transport.Packet{Listener: l, Proto: transport.UDP}
	caller := netip.MustParseAddrPort(callerAddr)
	callee := netip.MustParseAddrPort(calleeAddr)
	i := 0
	return func() {
		i++
		numberAll(invite, i)
		*pkt = transport.Packet{Data: invite, Src: caller, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		if relayed.Parse(fwd) != nil {
			tb.Fatal("no INVITE relayed")
		}
		rr := relayed.Get(parser.HdrRecordRoute)
		extra = append(append(append(extra[:0], "Record-Route: "...), rr...), "\r\nContact: <sip:bob@127.0.0.1:5080>\r\n"...)
		resp = parser.AppendResponseHeaders(resp[:0], &relayed, 200, nil, []byte("b1"), extra)
		*pkt = transport.Packet{Data: resp, Src: callee, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		bye = append(bye[:0], "BYE sip:alice@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-b"...)
		bye = append(bye, invite[bytes.Index(invite, []byte("z9hG4bK-"))+8:][:8]...)
		bye = append(bye, "\r\nMax-Forwards: 70\r\nRoute: "...)
		bye = append(bye, rr...)
		bye = append(bye, "\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: "...)
		bye = append(bye, relayed.From().Raw...)
		bye = append(bye, "\r\nCall-ID: "...)
		bye = append(bye, relayed.CallID()...)
		bye = append(bye, "\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"...)
		*pkt = transport.Packet{Data: bye, Src: callee, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		if i%500 == 0 {
			e.clock.Advance(10 * time.Second) // finished transactions go back to their pool
		}
	}
}

// TestCallAllocatesNothing: whole calls through the core with a dialog,
// an extra pair and the module's subscriber, whose record is copied and
// queued: no allocation once the record pool is warm. The writer does
// not run (its work, off the receive path, allocates).
func TestCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	s := DefaultSettings()
	s.QueueSize = 8192
	e := newEnv(t, s, false)
	call := callLoop(t, e)
	for range 5000 {
		call()
	}
	if n := e.a.drain(); n != 5000 {
		t.Fatalf("%d records queued for 5000 calls", n)
	}
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per call", n)
	}
	if n := e.a.drain(); n != 1001 {
		t.Fatalf("%d records queued for 1001 calls", n)
	}
}

// TestEventAllocatesNothing: the subscriber alone, an end event with
// the usual headers and two pairs: copied and queued without
// allocating.
func TestEventAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil, false)
	ev := benchEvent()
	for range 2000 {
		e.a.onEvent(ev)
	}
	e.a.drain()
	if n := testing.AllocsPerRun(1000, func() { e.a.onEvent(ev) }); n != 0 {
		t.Fatalf("%.2f allocations per event", n)
	}
}

// TestCDRAllocatesOnce: the writer makes a store record of a queued one
// with one allocation, the copy of its text (a record with extra values
// has their map besides).
func TestCDRAllocatesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil, false)
	e.a.onEvent(endEvent("a84b4c76e66710@pc33.example.com", `"Bob" <sip:bob@example.com>;tag=ft`, "sip:+4930123@example.com;tag=tt"))
	r := <-e.a.queue
	defer e.a.release(r)
	var text fieldtext.Fields
	r.cdr(&text) // the buffers' room
	if n := testing.AllocsPerRun(100, func() { r.cdr(&text) }); n != 1 {
		t.Fatalf("%v allocations a record, want 1", n)
	}
}
