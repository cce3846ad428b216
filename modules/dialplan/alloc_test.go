package dialplan

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// TestTranslateAllocations: exact and prefix rules, and regex rules whose
// output does not refer to the input, translate without allocating; a
// regex rule whose output refers to its groups allocates once, the slice
// of group positions Go's regexp returns (it has no call that fills a
// slice the caller gives).
func TestTranslateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, envOptions{})
	e.add(
		store.DialplanRule{DPID: 1, Priority: 10, MatchOp: "prefix", MatchExp: "0", ReplExp: `+33\2`},
		store.DialplanRule{DPID: 1, Priority: 10, MatchOp: "prefix", MatchExp: "00", ReplExp: `+\2`},
		store.DialplanRule{DPID: 1, MatchOp: "exact", MatchExp: "112", Attrs: "emergency"},
		store.DialplanRule{DPID: 1, MatchOp: "exact", MatchExp: "Voicemail", MatchFlags: 1, ReplExp: "*98"},
		store.DialplanRule{DPID: 1, Priority: 5, MatchOp: "regex", MatchExp: `^3\d{3}$`, ReplExp: "short-code"},
		store.DialplanRule{DPID: 1, Priority: 6, MatchOp: "regex", MatchExp: `^4\d{3}$`},
		store.DialplanRule{DPID: 1, Priority: 7, MatchOp: "regex", MatchExp: `^5(\d{3})$`, ReplExp: `+335\1`},
		store.DialplanRule{DPID: 1, Priority: 8, MatchOp: "regex", MatchExp: `^6`, SubstExp: `^6`, ReplExp: `+336`},
		// Regexes with groups at a worse priority than the prefixes: never
		// run for the numbers the prefixes take (they would allocate).
		store.DialplanRule{DPID: 1, Priority: 20, MatchOp: "regex", MatchExp: `^(\d+)$`, ReplExp: `\1`},
	)
	out := make([]byte, 0, 64)
	for _, c := range []struct {
		name, in, want string
		allocs         float64
	}{
		{"prefix", "0612345678", "+33612345678", 0},
		{"longer prefix", "0049301234", "+49301234", 0},
		{"exact", "112", "112", 0},
		{"exact, case-insensitive", "VOICEMAIL", "*98", 0},
		{"regex, literal output", "3639", "short-code", 0},
		{"regex, input kept", "4000", "4000", 0},
		{"miss", "abc", "", 0},
		{"regex with a group", "5123", "+335123", 1},
		{"regex with subst_exp", "612", "+33612", 1},
	} {
		in := []byte(c.in)
		var res []byte
		allocs := testing.AllocsPerRun(1000, func() { res, _, _ = e.d.Translate(1, in, out[:0]) })
		if allocs != c.allocs || string(res) != c.want {
			t.Errorf("%s: %v allocations, %q; want %v, %q", c.name, allocs, res, c.allocs, c.want)
		}
	}
}

// TestTranslateRUserAllocatesNothing: a whole INVITE through the core
// whose route translates the R-URI user by a prefix rule and answers
// statelessly.
func TestTranslateRUserAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	e := newEnv(t, envOptions{})
	e.add(store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: `+33\2`})
	clock := shards.NewManualClock(1_700_000_000_000)
	h := routetest.New(t, clock)
	h.Keep = false
	var translated bool
	var ru []byte
	var routed int
	h.Route = func(c *routing.Ctx) {
		routed++
		translated = e.d.TranslateRUser(c, 1)
		ru = append(ru[:0], c.RU()...)
		c.ReplyStateless(404, "Not Found", nil)
	}
	msg := []byte("INVITE sip:0612345678@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-00000000;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=00000000\r\nTo: <sip:0612345678@example.com>\r\n" +
		"Call-ID: 00000000@phone\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	pkt := &transport.Packet{Data: msg, Src: netip.MustParseAddrPort("127.0.0.1:5080"), Listener: h.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	i := 0
	send := func() {
		numberMessage(msg, i)
		h.Handle(pkt)
		if i%1000 == 999 {
			clock.Advance(time.Minute)
		}
		i++
	}
	for i < 3000 {
		send()
	}
	if allocs := testing.AllocsPerRun(2000, send); allocs != 0 {
		t.Errorf("%v allocations per INVITE", allocs)
	}
	if !translated || string(ru) != "sip:+33612345678@example.com" || routed != i {
		t.Fatalf("translated %v, R-URI %s, %d of %d requests routed", translated, ru, routed, i)
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
