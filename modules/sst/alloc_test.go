package sst

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// number writes n as 8 digits over the "00000000" after each marker.
func number(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=a", "Call-ID: c"} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}

// TestCallAllocatesNothing: whole calls through the core with sst on
// (CheckMin, CreateDialog, Manage raising Session-Expires and Min-SE, the
// 2xx's Session-Expires timing the dialog, the callee's BYE), and INVITEs
// answered 422 and 400: no allocation once the pools are warm.
func TestCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, nil, nil)
	e.Keep = false
	var relayed parser.Message
	fwd := make([]byte, 0, 4096)
	e.OnSend = func(_ netip.AddrPort, data []byte) {
		if bytes.HasPrefix(data, []byte("INVITE ")) {
			fwd = append(fwd[:0], data...)
		}
	}
	invite := []byte("INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-00000000;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a00000000\r\nTo: <sip:bob@example.com>\r\n" +
		"Call-ID: c00000000@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n" +
		"Session-Expires: 60;refresher=uac\r\nMin-SE: 30\r\nContent-Length: 0\r\n\r\n")
	tooSmall := []byte(string(bytes.Replace(invite, []byte("Min-SE: 30"), []byte("Supported: timer"), 1)))
	malformed := []byte(string(bytes.Replace(invite, []byte("Min-SE: 30"), []byte("Min-SE: xx"), 1)))
	resp := make([]byte, 0, 4096)
	extra := make([]byte, 0, 1024)
	bye := make([]byte, 0, 4096)
	l := e.Listener(transport.UDP, netip.Addr{})
	pkt := &transport.Packet{}
	caller, callee := netip.MustParseAddrPort(caller), netip.MustParseAddrPort(callee)
	i := 0
	call := func() {
		i++
		number(invite, i)
		*pkt = transport.Packet{Data: invite, Src: caller, Listener: l, Proto: transport.UDP}
		e.Handle(pkt)
		if relayed.Parse(fwd) != nil {
			t.Fatal("no INVITE relayed")
		}
		rr := relayed.Get(parser.HdrRecordRoute)
		extra = append(append(append(extra[:0], "Record-Route: "...), rr...), "\r\nContact: <sip:bob@127.0.0.1:5080>\r\nSession-Expires: 90;refresher=uac\r\n"...)
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
		for k, m := range [][]byte{tooSmall, malformed} {
			number(m, i+(k+1)*10_000_000) // a transaction of its own
			*pkt = transport.Packet{Data: m, Src: caller, Listener: l, Proto: transport.UDP}
			e.Handle(pkt)
		}
		if i%500 == 0 {
			e.clock.Advance(10 * time.Second) // finished transactions go back to their pool
		}
	}
	for range 20000 {
		call() // every pool and index at the size this load needs
	}
	if n := len(e.d.List("", 0)); n != 0 {
		t.Fatalf("%d dialogs left: the calls did not go through", n)
	}
	if n := testing.AllocsPerRun(500, call); n != 0 {
		t.Fatalf("%v allocations a call", n)
	}
	if e.m.raised.Get() == 0 || e.m.sessions.Get() == 0 || e.m.tooSmall.Get() == 0 || e.m.badRequests.Get() == 0 {
		t.Fatalf("raised %d, sessions %d, 422 %d, 400 %d: the loop missed a path",
			e.m.raised.Get(), e.m.sessions.Get(), e.m.tooSmall.Get(), e.m.badRequests.Get())
	}
}
