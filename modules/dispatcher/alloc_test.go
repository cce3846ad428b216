package dispatcher

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

func TestSelectAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	s := DefaultSettings()
	s.ProbeInterval = 0
	s.ProbeFailures = 100
	p := newProxy(t, envOptions{settings: s})
	var rows []store.DispatcherDest
	for i := 0; i < 8; i++ {
		d := dst(1, 5071+i)
		d.Weight, d.Priority = i+1, i%3
		rows = append(rows, d)
	}
	p.add(rows...)
	// An INVITE: SelectDst also counts the call (the tracker's table).
	invite := "INVITE sip:room7@Media.Example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-alloc1;rport\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:room7@media.example.com>\r\n" +
		"Call-ID: alloc1@phone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	src := netip.MustParseAddrPort("127.0.0.1:5071")
	p.InRoute(t, src.String(), invite, func(c *routing.Ctx) {
		for a := Algorithm(0); a < numAlgorithms; a++ {
			ok := true
			allocs := testing.AllocsPerRun(500, func() { ok = p.d.SelectDst(c, 1, a) && ok })
			if allocs != 0 || !ok {
				t.Errorf("%s: %v allocations per SelectDst (selected: %v)", a, allocs, ok)
			}
		}
		in := false
		if allocs := testing.AllocsPerRun(500, func() { in = p.d.IsInList(c, netip.AddrPort{}, 1) }); allocs != 0 || !in {
			t.Errorf("IsInList: %v allocations (found: %v)", allocs, in)
		}
		if allocs := testing.AllocsPerRun(500, func() { p.d.Attrs(c) }); allocs != 0 {
			t.Errorf("Attrs: %v allocations", allocs)
		}
		// Fewer than probe_failures: counted, nothing changes state.
		if allocs := testing.AllocsPerRun(50, func() { p.d.MarkDst(c, Probing) }); allocs != 0 {
			t.Errorf("MarkDst: %v allocations", allocs)
		}
	})
}

func TestNextDstAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071), dst(1, 5072), dst(1, 5073))
	call := p.invite("alice", "sip:conf@example.com")
	var allocs float64
	p.Failure = func(c *routing.FailureCtx) {
		first := c.Value(SlotSet)
		allocs = testing.AllocsPerRun(200, func() {
			c.SetValue(SlotSet, first) // the first fail-over, again and again
			if !p.d.NextDst(c) {
				t.Error("no next destination")
			}
		})
		p.d.CallFailed(c.Ctx)
	}
	call.answer(503)
	if allocs != 0 {
		t.Errorf("%v allocations per NextDst", allocs)
	}
}

// A whole INVITE through the core: parse, transaction, SelectDst with
// least_calls counting it (a lease tracked in the call table), the route
// refusing it after all (CallFailed releases the lease), the stateless
// answer.
func TestCountedCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	p := newProxy(t, envOptions{})
	p.Keep = false
	p.add(dst(1, 5071), dst(1, 5072))
	selected := false
	p.Route = func(c *routing.Ctx) {
		selected = p.d.SelectDst(c, 1, LeastCalls)
		p.d.CallFailed(c)
		c.ReplyStateless(480, "Temporarily Unavailable", nil)
	}
	msg := []byte("INVITE sip:conf@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-00000000;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=00000000\r\nTo: <sip:conf@example.com>\r\n" +
		"Call-ID: 00000000@phone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	pkt := &transport.Packet{Src: phone, Listener: p.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	i := 0
	send := func() {
		numberMessage(msg, i)
		pkt.Data = msg
		p.Handle(pkt)
		if i%1000 == 999 {
			p.Clock.Advance(time.Minute)
		}
		i++
	}
	for i < 3000 {
		send()
	}
	allocs := testing.AllocsPerRun(2000, send)
	if allocs != 0 || !selected || p.d.calls.Len() != 0 {
		t.Errorf("%v allocations per counted INVITE (selected %v, tracked %d)", allocs, selected, p.d.calls.Len())
	}
}

// numberMessage writes n as 8 digits over every "00000000"-sized number
// field of msg.
func numberMessage(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=", "Call-ID: "} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}
