package txn

import (
	"net/netip"
	"strings"
	"testing"

	"switchboard/transport"
)

// Two nodes share one address (anycast): the response to a request node a
// relayed reaches node b, whose ForeignResponse hook hands it to a (as
// package anycast does over the network); a forwards it upstream through
// its transaction and b sends nothing. Responses to b's own requests never
// reach the hook. Without the hook, b forwards the response statelessly.
func TestForeignResponse(t *testing.T) {
	a := newHarness(t, nil)
	var hooked []string
	b := newHarness(t, func(c *Config) {
		c.ForeignResponse = func(branch, data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto) bool {
			hooked = append(hooked, string(branch))
			if !strings.HasPrefix(string(branch), a.core.BranchPrefix()) {
				return false
			}
			a.core.HandleMessage(&transport.Packet{Data: data, Src: src, Listener: a.udp, Proto: proto})
			return true
		}
	})
	if a.core.BranchPrefix() == b.core.BranchPrefix() || len(a.core.BranchPrefix()) != 13 {
		t.Fatalf("branch prefixes %q and %q", a.core.BranchPrefix(), b.core.BranchPrefix())
	}

	inv := request("INVITE", "z9hG4bKfr1", "fr1@x", "sip:bob@127.0.0.1:5080", "")
	a.in(uacAddr, inv)
	sent := a.snd.take()
	fwd := a.expectTo(sent, uasAddr)
	if len(fwd) != 1 {
		t.Fatalf("a sent:\n%s", describe(sent))
	}
	var out string
	for _, m := range sent {
		if m.dst == uasAddr {
			out = m.data
		}
	}
	// The 200 lands on b.
	b.in(uasAddr, respond(out, 200, "callee"))
	if got := b.snd.take(); len(got) != 0 {
		t.Fatalf("b sent:\n%s", describe(got))
	}
	if len(hooked) != 1 || !strings.HasPrefix(hooked[0], a.core.BranchPrefix()) {
		t.Fatalf("hook saw %q", hooked)
	}
	a.only(a.snd.take(), toUAC+"SIP/2.0 200 OK")

	// b's own request: its response is matched here, never hooked.
	hooked = nil
	b.in(uacAddr, request("INVITE", "z9hG4bKfr2", "fr2@x", "sip:bob@127.0.0.1:5080", ""))
	var own string
	for _, m := range b.snd.take() {
		if m.dst == uasAddr {
			own = m.data
		}
	}
	b.in(uasAddr, respond(own, 200, "callee"))
	b.only(b.snd.take(), toUAC+"SIP/2.0 200 OK")
	if len(hooked) != 0 {
		t.Fatalf("b's own response went to the hook: %q", hooked)
	}

	// Without the hook (no anycast group), a branch of another prefix
	// is none of ours: dropped, not forwarded where its next Via says.
	c := newHarness(t, nil)
	c.in(uasAddr, respond(out, 200, "callee"))
	c.only(c.snd.take())
	if n := c.core.Stats().ForgedResponses; n != 1 {
		t.Fatalf("ForgedResponses %d", n)
	}
}
