package registrar

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/transport"
)

// TestLookupWebSocketConnection: a phone registered over WebSocket (its
// contact an unresolvable .invalid host, RFC 7118) is reached at the
// address of its connection while that is open; once the connection is
// closed, Lookup expires the binding (480 instead of a call sent nowhere)
// and it leaves the table.
func TestLookupWebSocketConnection(t *testing.T) {
	h := newHarness(t, Config{})
	h.authenticated = true
	src := netip.MustParseAddrPort("127.0.0.1:40010")
	var open atomic.Bool
	open.Store(true)
	var asked atomic.Value
	h.reg.SetConnCheck(func(p transport.Proto, a netip.AddrPort) bool {
		asked.Store(p.String() + " " + a.String())
		return open.Load()
	})
	reg := register("web", "w1", 1, "Contact: <sip:k3h7q@df7jal23ls0d.invalid;transport=ws>\r\n")
	h.core.HandleMessage(&transport.Packet{Data: []byte(reg), Src: src, Listener: &h.l, Proto: transport.WSS, Conn: 7})
	if l := h.reg.List(""); len(l) != 1 {
		t.Fatalf("registered %+v", l)
	}
	// A TCP binding is never asked about: its contact can be dialed.
	tcp := register("tcp", "w2", 1, "Contact: <sip:tcp@127.0.0.1:5099;transport=tcp>\r\n")
	h.core.HandleMessage(&transport.Packet{Data: []byte(tcp), Src: netip.MustParseAddrPort("127.0.0.1:40011"), Listener: &h.l, Proto: transport.TCP})

	h.take()
	h.receive("127.0.0.1:5080", invite("web"))
	var relayed bool
	for _, s := range h.take() {
		if strings.HasPrefix(s.data, "INVITE sip:k3h7q@df7jal23ls0d.invalid;transport=ws") {
			relayed = s.dst == src
		}
	}
	if !relayed || asked.Load() != "WSS 127.0.0.1:40010" {
		t.Fatalf("not relayed to the connection's address (asked %v)", asked.Load())
	}

	open.Store(false)
	if resp := h.request("127.0.0.1:5080", invite("web")); !strings.HasPrefix(statusOf(resp), "480") {
		t.Fatalf("closed connection: %q", statusOf(resp))
	}
	h.clock.Advance(time.Second)
	if l := h.reg.List(""); len(l) != 1 || l[0].AOR != "tcp@example.com" {
		t.Fatalf("after close: %+v", l)
	}
	if st := h.reg.Stats(); st.ConnClosed != 1 || st.Expired != 1 {
		t.Fatalf("stats %+v", st)
	}
	asked.Store("")
	h.take()
	h.receive("127.0.0.1:5080", invite("tcp"))
	relayed = false
	for _, s := range h.take() {
		relayed = relayed || strings.HasPrefix(s.data, "INVITE sip:tcp@127.0.0.1:5099")
	}
	if !relayed || asked.Load() != "" {
		t.Fatalf("tcp binding: relayed %v, asked %v", relayed, asked.Load())
	}
}
