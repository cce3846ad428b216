package nathelper

import (
	"net/netip"
	"testing"
	"time"

	"switchboard/routing"
	"switchboard/transport"
)

// allocRuns calls are measured after warmRuns like them ended: the core
// spreads transactions over its shards by Call-ID, and every shard must
// have warm entries to reuse for the measured ones.
const (
	allocRuns = 50
	warmRuns  = 400
)

// TestNoAllocs: the per-request steps of the NAT script allocate nothing
// once warm: nat_uac_test with every request test (the SDP parsed), then
// fix_nated_contact, force_rport and fix_nated_sdp on an INVITE that is
// relayed; and nat_uac_test alone on a request from a phone not behind
// NAT (the common case, which runs every test).
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	f := build(t, nil, nil)
	h := f.h
	fixSDP := true
	nated := 0
	h.Route = func(c *routing.Ctx) {
		if f.n.NATUACTest(c, DefaultFlags|PrivateSDP|PrivateVia|DiffIPSrcContact|DiffPortSrcContact) {
			nated++
			c.ForceRPort()
			f.n.FixNATedContact(c)
			if fixSDP {
				f.n.FixNATedSDP(c, DefaultSDPFlags|AddNoRTPProxy)
			}
		}
		c.Relay()
	}
	finish := func() { // every transaction ends; its entry goes back warm
		for i := 0; i < 12; i++ {
			h.Clock.Advance(30 * time.Second)
		}
		h.Take()
	}
	l := h.Listener(transport.UDP, netip.Addr{})
	invites := func(n int, via, contact, sdpAddr string) []transport.Packet {
		out := make([]transport.Packet, n)
		for i := range out {
			m := req("INVITE", "sip:bob@127.0.0.5:5080", via, "Contact: <sip:alice@"+contact+">\r\n", phoneSDP(sdpAddr))
			out[i] = transport.Packet{Data: []byte(m), Src: netip.MustParseAddrPort("127.0.0.1:40000"), Listener: l, Proto: transport.UDP}
		}
		return out
	}
	measure := func(pkts []transport.Packet) float64 {
		i := 0
		return testing.AllocsPerRun(len(pkts)-1, func() {
			h.Handle(&pkts[i])
			i++
		})
	}
	for _, tc := range []struct {
		name                  string
		via, contact, sdpAddr string
		nated                 bool
	}{
		{"behind NAT", "192.168.1.10:5062", "192.168.1.10:5062", "192.168.1.10", true},
		{"not behind NAT", "127.0.0.1:40000", "127.0.0.1:40000", "127.0.0.1", false},
	} {
		for i := 0; i < 3; i++ {
			measure(invites(warmRuns, tc.via, tc.contact, tc.sdpAddr))
			finish()
		}
		nated = 0
		pk := invites(allocRuns+1, tc.via, tc.contact, tc.sdpAddr)
		h.Keep = false
		if n := measure(pk); n != 0 {
			t.Errorf("%s: %.1f allocations per INVITE", tc.name, n)
		}
		h.Keep = true
		finish()
		if (nated == allocRuns+1) != tc.nated {
			t.Fatalf("%s: %d of %d found behind NAT", tc.name, nated, allocRuns+1)
		}
	}
}
