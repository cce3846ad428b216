package uac

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
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

// packets turns messages into packets from src, reused as they are.
func packets(h *routetest.Harness, src string, msgs []string) []transport.Packet {
	l := h.Listener(transport.UDP, netip.Addr{})
	out := make([]transport.Packet, len(msgs))
	for i, m := range msgs {
		out[i] = transport.Packet{Data: []byte(m), Src: netip.MustParseAddrPort(src), Listener: l, Proto: transport.UDP}
	}
	return out
}

// measure handles each packet once and returns the allocations per
// packet after the first (the warm-up).
func measure(h *routetest.Harness, pkts []transport.Packet) float64 {
	i := 0
	return testing.AllocsPerRun(len(pkts)-1, func() {
		h.Handle(&pkts[i])
		i++
	})
}

// The functions routes call per call allocate nothing once warm: a
// challenge answered (UACAuth and the branch it starts), From and To
// replaced on an INVITE, an in-dialog request restored. Each is measured
// on transactions that reuse the table entries of as many calls like them
// before (steady state: the core keeps the buffers of ended transactions).
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	f := build(t, nil, trunkCredential, nil)
	h := routetest.New(t, nil)
	replace := false
	display, from, to := []byte("Trunk"), []byte("sip:+4930100@carrier.example"), []byte("sip:+4930999@carrier.example")
	trunkRoutes(h, f.u, func(c *routing.Ctx) {
		if replace {
			f.u.ReplaceFrom(c, display, from)
			f.u.ReplaceTo(c, nil, to)
		}
	})
	finish := func() { // every transaction ends; its entry goes back warm
		for i := 0; i < 12; i++ {
			h.Clock.Advance(30 * time.Second)
		}
		h.Take()
	}

	// UACAuth: the carrier's 407 to calls already relayed.
	challenges := func(n int) []transport.Packet {
		var msgs []string
		for i := 0; i < n; i++ {
			h.Receive(caller, invite("sip:+4930123@"+carrier))
			fwd := one(t, h.Take(), carrier, "INVITE ")
			msgs = append(msgs, respond(t, fwd, 407, "c1", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n"+strings.Repeat("x", 20)+"\", qop=\"auth\"\r\n"))
		}
		return packets(h, carrier, msgs)
	}
	for i := 0; i < 3; i++ {
		measure(h, challenges(warmRuns))
		finish()
	}
	pk := challenges(allocRuns + 1)
	h.Keep = false
	if n := measure(h, pk); n != 0 {
		t.Errorf("UACAuth: %.1f allocations per challenge answered", n)
	}
	h.Keep = true
	finish()
	if got := f.counter("switchboard_uac_auth_answered_total"); got != 3*warmRuns+allocRuns+1 {
		t.Fatalf("answered %d of %d", got, 3*warmRuns+allocRuns+1)
	}

	// ReplaceFrom and ReplaceTo on INVITEs.
	replace = true
	invites := func(n int) []transport.Packet {
		var msgs []string
		for i := 0; i < n; i++ {
			msgs = append(msgs, invite("sip:+4930123@"+carrier))
		}
		return packets(h, caller, msgs)
	}
	for i := 0; i < 3; i++ {
		measure(h, invites(warmRuns))
		finish()
	}
	pk = invites(allocRuns + 1)
	h.Keep = false
	if n := measure(h, pk); n != 0 {
		t.Errorf("ReplaceFrom+ReplaceTo: %.1f allocations per INVITE", n)
	}
	h.Keep = true
	finish()

	// Restore: BYEs from the caller in a dialog whose INVITE was
	// replaced and challenged.
	inv := invite("sip:+4930123@" + carrier)
	h.Receive(caller, inv)
	fwd := one(t, h.Take(), carrier, "INVITE ")
	h.Receive(carrier, respond(t, fwd, 407, "c1", "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"n1\"\r\n"))
	fwd = one(t, h.Take(), carrier, "INVITE ")
	rr := header(fwd, "Record-Route")
	if !strings.Contains(rr, "uacc=1") || !strings.Contains(rr, "uacf=") {
		t.Fatalf("Record-Route %s", rr)
	}
	n := 0
	byes := func(k int) []transport.Packet {
		var msgs []string
		for i := 0; i < k; i++ {
			n++
			msgs = append(msgs, inDialog("BYE", "sip:gw@"+carrier, "ab"+itoa(n), header(inv, "From"), header(inv, "To")+";tag=c1",
				header(inv, "Call-ID"), itoa(n+2), rr))
		}
		return packets(h, caller, msgs)
	}
	measure(h, byes(warmRuns))
	finish()
	before := f.counter("switchboard_uac_restored_total")
	pk = byes(allocRuns + 1)
	h.Keep = false
	if n := measure(h, pk); n != 0 {
		t.Errorf("Restore: %.1f allocations per BYE", n)
	}
	if f.counter("switchboard_uac_restored_total")-before != allocRuns+1 {
		t.Fatalf("restored %d of %d", f.counter("switchboard_uac_restored_total")-before, allocRuns+1)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
