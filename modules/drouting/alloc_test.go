package drouting

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/store"
	"switchboard/transport"
)

// numberMessage writes n as 8 digits over every "00000000"-sized number
// field of msg (the first time: the zeros; later: the previous number).
func numberMessage(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=", "Call-ID: "} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}

const allocInvite = "INVITE sip:+49301234567@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-00000000;rport\r\n" +
	"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=00000000\r\nTo: <sip:+49301234567@example.com>\r\n" +
	"Call-ID: 00000000@phone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"

// TestRoutingAllocatesNothing: a whole INVITE through the core, matched
// against 10,000 rules (weighted carrier), relayed to its gateway, that
// gateway's 503, the failure route's UseNextGW relaying to the next one,
// whose 503 ends the call: no allocation.
func TestRoutingAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, envOptions{})
	e.Keep = false
	e.gws(gwRow("gw1", 1), store.DRGateway{GWID: "gw2", Address: gwAddr(2).String(), Strip: 1, PriPrefix: "00"})
	e.carriers(store.DRCarrier{CarrierID: "cr", GWList: "gw1=50,gw2=50", SortAlg: "W"})
	rows := make([]store.DRRule, 0, 10_000)
	for _, p := range randomPrefixes(3, 9_999) {
		rows = append(rows, store.DRRule{Groups: "0", Prefix: p, GWList: "gw1"})
	}
	rows = append(rows, store.DRRule{Groups: "0", Prefix: "+4930", GWList: "#cr,gw1"})
	e.rules(rows...)

	invite := []byte(allocInvite)
	pkt := &transport.Packet{Listener: e.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	resp := make([]byte, 0, 2048)
	i := 0
	// call routes one INVITE, fails it on both gateways with 503 (the
	// responses built in place from the INVITE's fields) and moves the
	// clock every 1000 calls so finished transactions go back to their pool.
	call := func() {
		numberMessage(invite, i)
		*pkt = transport.Packet{Data: invite, Src: phone, Listener: pkt.Listener, Proto: transport.UDP}
		e.Handle(pkt)
		for range 2 {
			resp = e.lastResponse(resp[:0])
			*pkt = transport.Packet{Data: resp, Src: e.lastDst, Listener: pkt.Listener, Proto: transport.UDP}
			e.Handle(pkt)
		}
		if i%1000 == 999 {
			e.clock.Advance(time.Minute)
		}
		i++
	}
	e.capture(true)
	for i < 3000 {
		call()
	}
	allocs := testing.AllocsPerRun(1000, call)
	if allocs != 0 {
		t.Errorf("%v allocations per routed and failed-over call", allocs)
	}
	if e.metric(`switchboard_drouting_failovers_total`) < 4000 || e.metric(`switchboard_drouting_routes_total{result="routed"}`) < 4000 {
		t.Fatalf("the path measured did not route and fail over: failovers %v", e.metric(`switchboard_drouting_failovers_total`))
	}
}

// capture makes the harness keep the last INVITE sent (in a buffer
// reused) and where it went, without allocating.
func (e *env) capture(on bool) {
	if !on {
		e.OnSend = nil
		return
	}
	e.lastInvite = make([]byte, 0, 4096)
	e.OnSend = func(dst netip.AddrPort, data []byte) {
		if bytes.HasPrefix(data, []byte("INVITE ")) {
			e.lastInvite = append(e.lastInvite[:0], data...)
			e.lastDst = dst
		}
	}
}

// lastResponse appends a 503 to the last INVITE captured to dst.
func (e *env) lastResponse(dst []byte) []byte {
	if err := e.respMsg.Parse(e.lastInvite); err != nil {
		e.t.Fatal(err)
	}
	return parser.AppendResponse(dst, &e.respMsg, 503, nil, []byte("gw"))
}
