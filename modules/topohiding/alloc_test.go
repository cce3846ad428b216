package topohiding

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/modules/dialog"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/transport"
)

// numberAll writes n as 8 digits over the "00000000" after each marker.
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
	"Max-Forwards: 70\r\nRecord-Route: <sip:127.0.0.1:5070;lr>\r\n" +
	"From: <sip:alice@example.com>;tag=a00000000\r\nTo: <sip:bob@example.com>\r\n" +
	"Call-ID: c00000000@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.10:5062>\r\nContent-Length: 0\r\n\r\n"

// hiddenCallLoop returns a function that puts one whole call through
// the core: the INVITE (CreateDialog, and TopologyHiding with hide), the
// callee's 200, the caller's ACK and the callee's BYE to the Contact each
// got (Match; without hide along our Record-Route: LooseRoute and
// MatchDialog), the BYE's 200. Messages are built in place: the loop
// itself allocates nothing.
func hiddenCallLoop(tb testing.TB, e *env, hide bool) func() {
	e.Keep = false
	e.Route = func(c *routing.Ctx) {
		if c.HasToTag() {
			if hide && e.th.Match(c) == Matched || !hide && c.LooseRoute() && e.d.MatchDialog(c) {
				c.Relay()
				return
			}
			tb.Fatal("in-dialog request not matched")
		}
		if e.d.CreateDialog(c) && (!hide || e.th.TopologyHiding(c)) {
			if e.natFlags != 0 {
				e.d.SetFlag(c, e.natFlags)
			}
			c.Relay()
			return
		}
		tb.Fatal("INVITE without a dialog")
	}
	fwd := make([]byte, 0, 4096)    // the INVITE as the callee got it
	okUp := make([]byte, 0, 4096)   // the 200 as the caller got it
	byeFwd := make([]byte, 0, 4096) // the BYE as the caller got it
	e.OnSend = func(dst netip.AddrPort, data []byte) {
		switch {
		case bytes.HasPrefix(data, []byte("INVITE ")):
			fwd = append(fwd[:0], data...)
		case bytes.HasPrefix(data, []byte("BYE ")):
			byeFwd = append(byeFwd[:0], data...)
		case bytes.HasPrefix(data, []byte("SIP/2.0 200 ")) && bytes.Contains(data, []byte(" INVITE\r\n")):
			okUp = append(okUp[:0], data...)
		}
	}
	invite := []byte(allocInvite)
	var relayed, up, bye parser.Message
	var na parser.NameAddr
	resp := make([]byte, 0, 4096)
	req := make([]byte, 0, 4096)
	extra := make([]byte, 0, 1024)
	l := e.Listener(transport.UDP, netip.Addr{})
	pkt := &transport.Packet{Listener: l, Proto: transport.UDP}
	caller := netip.MustParseAddrPort("127.0.0.1:5070")
	callee := netip.MustParseAddrPort(calleeAddr)
	deliver := func(src netip.AddrPort, data []byte) {
		*pkt = transport.Packet{Data: data, Src: src, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
	}
	inDialog := func(method string, m *parser.Message, from, to []byte, branch string) []byte {
		req = append(req[:0], method...)
		req = append(req, ' ')
		req = append(req, na.URI...)
		req = append(req, " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-"...)
		req = append(req, branch...)
		req = append(req, m.CallID()[1:9]...) // the call's number
		req = append(req, "\r\nMax-Forwards: 70\r\n"...)
		if !hide {
			// From the caller (past its own proxy, 127.0.0.1:5070): our
			// Record-Route; from the callee, the INVITE's whole set, its
			// next hop the caller's proxy, as the dialog keeps it.
			req = append(req, "Route: "...)
			for k, n := 0, 0; k < relayed.NumHeaders(); k++ {
				if h := relayed.HeaderAt(k); h.Name == parser.HdrRecordRoute && (n == 0 || m == &relayed) {
					if n++; n > 1 {
						req = append(req, ", "...)
					}
					req = append(req, h.Value...)
				}
			}
			req = append(req, "\r\n"...)
		}
		req = append(req, "From: "...)
		req = append(req, from...)
		req = append(req, "\r\nTo: "...)
		req = append(req, to...)
		req = append(req, "\r\nCall-ID: "...)
		req = append(req, m.CallID()...)
		req = append(req, "\r\nCSeq: 1 "...)
		req = append(req, method...)
		return append(req, "\r\nContent-Length: 0\r\n\r\n"...)
	}
	i := 0
	return func() {
		i++
		numberAll(invite, i)
		deliver(caller, invite)
		if relayed.Parse(fwd) != nil {
			tb.Fatal("no INVITE relayed")
		}
		extra = append(extra[:0], "Contact: <sip:bob@127.0.0.1:5080>\r\n"...)
		if rr := relayed.Get(parser.HdrRecordRoute); rr != nil {
			extra = append(append(append(extra, "Record-Route: "...), rr...), "\r\n"...)
		}
		resp = parser.AppendResponseHeaders(resp[:0], &relayed, 200, nil, []byte("b1"), extra)
		deliver(callee, resp)
		if up.Parse(okUp) != nil || !up.Contact(&na) {
			tb.Fatal("no 200 upstream")
		}
		deliver(caller, inDialog("ACK", &up, up.Get(parser.HdrFrom), up.Get(parser.HdrTo), "ack"))
		if !relayed.Contact(&na) {
			tb.Fatal("no Contact in the INVITE")
		}
		deliver(callee, inDialog("BYE", &relayed, up.Get(parser.HdrTo), up.Get(parser.HdrFrom), "bye"))
		if bye.Parse(byeFwd) != nil {
			tb.Fatal("no BYE relayed")
		}
		deliver(caller, parser.AppendResponse(resp[:0], &bye, 200, nil, nil))
		if i%500 == 0 {
			e.clock.Advance(10 * time.Second) // finished transactions go back to their pool
		}
	}
}

// TestHiddenCallAllocatesNothing: whole hidden calls (hiddenCallLoop):
// no allocation once the pools are warm.
func TestHiddenCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil)
	call := hiddenCallLoop(t, e, true)
	for range 5000 {
		call()
	}
	if e.th.hidden.Get() != 5000 || e.th.matched.Get() != 10000 || len(e.d.List("", 10)) != 0 {
		t.Fatalf("%d calls hidden, %d requests matched, %d dialogs left", e.th.hidden.Get(), e.th.matched.Get(), len(e.d.List("", 10)))
	}
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per hidden call", n)
	}
}

// TestHiddenNATCallAllocatesNothing: the same with both parties marked
// behind NAT (dialog.FlagCallerNAT, FlagCalleeNAT): the caller's ACK goes
// to the callee's first hop (it has no route set: SetDestination), the
// callee's BYE along the caller's route set.
func TestHiddenNATCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil)
	e.natFlags = dialog.FlagCallerNAT | dialog.FlagCalleeNAT
	call := hiddenCallLoop(t, e, true)
	for range 5000 {
		call()
	}
	if e.th.matched.Get() != 10000 {
		t.Fatalf("%d requests matched", e.th.matched.Get())
	}
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per hidden call", n)
	}
}

// BenchmarkCall: one whole call (hiddenCallLoop) with a dialog, hidden
// or not: what topology hiding adds to a call with a dialog.
func BenchmarkCall(b *testing.B) {
	for _, hide := range []bool{false, true} {
		name := "mode=dialog" // benchstat -col /mode compares the two
		if hide {
			name = "mode=hidden"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, nil)
			call := hiddenCallLoop(b, e, hide)
			for range 5000 {
				call()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				call()
			}
		})
	}
}
