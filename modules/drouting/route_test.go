package drouting

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/dispatcher"
	"switchboard/modules/registrar"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

// TestPrefixRulesPickTheGateway: the longest prefix wins; the gateway's
// strip and prefix make the number sent, in a Request-URI at the gateway's
// address and transport, and the request goes there; no rule: NoRule.
func TestPrefixRulesPickTheGateway(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("de", 1), gwRow("berlin", 2), gwRow("any", 3),
		store.DRGateway{GWID: "tcp", Address: gwAddr(4).String(), Transport: "tcp", Strip: 2, PriPrefix: "+"})
	e.rules(
		store.DRRule{Prefix: "49", GWList: "de"},
		store.DRRule{Prefix: "4930", GWList: "berlin"},
		store.DRRule{Prefix: "", GWList: "any"},
		store.DRRule{Prefix: "0044", GWList: "tcp"},
		store.DRRule{Groups: "7", Prefix: "1", GWList: "de"},
	)
	for _, c := range []struct {
		number, ruri string
		gw           int
	}{
		{"4989123", "sip:4989123@127.0.0.1:5101", 1},
		{"4930123", "sip:4930123@127.0.0.1:5102", 2},
		{"493", "sip:493@127.0.0.1:5101", 1},
		{"33123", "sip:33123@127.0.0.1:5103", 3},
		{"0044207", "sip:+44207@127.0.0.1:5104;transport=tcp", 4}, // strip 2, prefix +
		{"%34%39-30-123", "sip:4930123@127.0.0.1:5102", 2},        // escapes decoded, separators dropped
	} {
		call := e.invite(c.number)
		if call.ruri() != c.ruri || call.dst != gwAddr(c.gw) {
			t.Errorf("%s: relayed %q to %v, want %q to %v (answer %q)", c.number, call.ruri(), call.dst, c.ruri, gwAddr(c.gw), call.final)
		}
	}
	if call := e.invite("alice"); call.final != "SIP/2.0 404 No Route" || e.result != NoRule {
		t.Errorf("a name: %q %v", call.final, e.result)
	}
	e.group = 7
	if call := e.invite("49"); call.final != "SIP/2.0 404 No Route" {
		t.Errorf("group 7, 49: %q", call.final)
	}
	if call := e.invite("1555"); call.dst != gwAddr(1) {
		t.Errorf("group 7, 1555: to %v", call.dst)
	}
	e.group = 3
	if call := e.invite("4930"); call.final != "SIP/2.0 404 No Route" {
		t.Errorf("group 3 has no rules: %q", call.final)
	}
	if e.metric(`switchboard_drouting_routes_total{result="routed"}`) != 7 || e.metric(`switchboard_drouting_gateway_calls_total{gwid="berlin"}`) != 2 {
		t.Errorf("metrics: routed %v, berlin calls %v", e.metric(`switchboard_drouting_routes_total{result="routed"}`),
			e.metric(`switchboard_drouting_gateway_calls_total{gwid="berlin"}`))
	}
}

// TestPriorityAndTimeWindows: among the rules of one prefix the highest
// priority that applies now wins; out of its hours a rule gives way, to a
// lower priority or to a shorter prefix.
func TestPriorityAndTimeWindows(t *testing.T) {
	e := newEnv(t, envOptions{}) // Monday 10:00 UTC
	e.gws(gwRow("day", 1), gwRow("night", 2), gwRow("cheap", 3), gwRow("short", 4), gwRow("weekend", 5))
	e.rules(
		store.DRRule{Prefix: "33", GWList: "day", Priority: 10, TimeRec: "Mon-Fri 08:00-17:59"},
		store.DRRule{Prefix: "33", GWList: "night", Priority: 5},
		store.DRRule{Prefix: "34", GWList: "cheap", Priority: 1},
		store.DRRule{Prefix: "34", GWList: "night", Priority: 1}, // same priority: the lower ID wins
		store.DRRule{Prefix: "3", GWList: "short"},
		store.DRRule{Prefix: "39", GWList: "weekend", TimeRec: "Sat,Sun"},
	)
	expect := func(number string, gw int) {
		t.Helper()
		if call := e.invite(number); call.dst != gwAddr(gw) {
			t.Errorf("%s at %s: to %v, want %v", number, time.UnixMilli(e.clock.Now()).UTC().Format("Mon 15:04"), call.dst, gwAddr(gw))
		}
	}
	expect("33123", 1)
	expect("34123", 3)
	expect("39123", 4)             // Monday: the weekend rule is out, the shorter prefix applies
	e.clock.Advance(8 * time.Hour) // 18:00
	expect("33123", 2)
	e.clock.Advance(5 * 24 * time.Hour) // Saturday 18:00
	expect("39123", 5)
	expect("33123", 2)
}

// TestFailoverOn503AndTimeout: a 503 or a gateway that stays silent moves
// the call to the next gateway of its list, with that gateway's strip and
// prefix; a 486 goes to the caller; the list ends with the best response.
func TestFailoverOn503AndTimeout(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.FRTimeout = "UTC", 2*time.Second
	e := newEnv(t, envOptions{settings: s})
	e.gws(gwRow("gw1", 1), store.DRGateway{GWID: "gw2", Address: gwAddr(2).String(), PriPrefix: "00", Strip: 1}, gwRow("gw3", 3))
	e.rules(store.DRRule{Prefix: "+", GWList: "gw1,gw2,gw3"})

	call := e.invite("+4930123")
	if call.dst != gwAddr(1) {
		t.Fatalf("first to %v", call.dst)
	}
	call.answer(503)
	if call.dst != gwAddr(2) || call.ruri() != "sip:004930123@127.0.0.1:5102" {
		t.Fatalf("after 503: %q to %v", call.ruri(), call.dst)
	}
	// gw2 says nothing: fr_timeout (2 s) later the call moves on.
	e.clock.Advance(2100 * time.Millisecond)
	call.collect()
	if call.dst != gwAddr(3) || call.ruri() != "sip:+4930123@127.0.0.1:5103" {
		t.Fatalf("after gw2's silence: %q to %v", call.ruri(), call.dst)
	}
	call.answer(486)
	if call.relay != "" || !strings.HasPrefix(call.final, "SIP/2.0 4") {
		t.Fatalf("486 of the last gateway: relayed %q, final %q", call.ruri(), call.final)
	}
	if e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw1"}`) != 1 || e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw2"}`) != 1 ||
		e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw3"}`) != 0 || e.metric(`switchboard_drouting_failovers_total`) != 2 {
		t.Errorf("failures gw1 %v gw2 %v gw3 %v, failovers %v", e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw1"}`),
			e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw2"}`), e.metric(`switchboard_drouting_gateway_failures_total{gwid="gw3"}`),
			e.metric(`switchboard_drouting_failovers_total`))
	}

	// A 486 from the second gateway ends the call although the best of
	// all responses would be the first one's 408.
	call = e.invite("+331")
	e.clock.Advance(2100 * time.Millisecond)
	call.collect()
	if call.dst != gwAddr(2) {
		t.Fatalf("after a silent gw1: to %v", call.dst)
	}
	call.answer(486)
	if call.relay != "" || call.final == "" {
		t.Fatalf("486 from gw2 was not final: relayed %q, final %q", call.ruri(), call.final)
	}

	// Every gateway fails: the caller gets the best response (503 goes
	// upstream as 500).
	call = e.invite("+332")
	call.answer(503)
	call.answer(500)
	call.answer(503)
	if call.relay != "" || !strings.HasPrefix(call.final, "SIP/2.0 500 ") {
		t.Fatalf("all failed: relayed %q, final %q", call.ruri(), call.final)
	}
}

// TestFailoverSkipsDownAndDisabledGateways: a gateway that went down or
// was disabled after the call was routed is skipped; a gateway down at
// routing time is not in the list at all; with none left, NoGateway.
func TestFailoverSkipsDownAndDisabledGateways(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("gw1", 1), gwRow("gw2", 2), gwRow("gw3", 3), gwRow("gw4", 4))
	e.rules(store.DRRule{Prefix: "1", GWList: "gw1,gw2,gw3,gw4"})
	e.d.reg.gws["gw1"].down.Store(true)
	call := e.invite("1555")
	if call.dst != gwAddr(2) {
		t.Fatalf("gw1 down: to %v", call.dst)
	}
	e.d.reg.gws["gw3"].down.Store(true)
	if err := e.st.UpdateDRGateway(ctx, store.DRGateway{GWID: "gw4", Address: gwAddr(4).String(), State: 1}); err != nil {
		t.Fatal(err)
	}
	e.load(store.DRGatewaysTable)
	call.answer(503)
	if call.relay != "" || !strings.HasPrefix(call.final, "SIP/2.0 500 ") {
		t.Fatalf("gw3 down and gw4 disabled: relayed %q to %v, final %q", call.ruri(), call.dst, call.final)
	}
	e.d.reg.gws["gw2"].down.Store(true)
	if call := e.invite("1555"); call.final != "SIP/2.0 503 No Gateway" || e.result != NoGateway {
		t.Fatalf("every gateway down: %q %v", call.final, e.result)
	}
	if st := e.d.reg.gws["gw4"].state(); st != "disabled" {
		t.Errorf("gw4 is %s", st)
	}
}

// TestCarriers: a carrier expands to its gateways in its own order; use
// first only takes one; a disabled carrier is skipped; a gateway listed
// twice is tried once; the rule's own order places the carrier.
func TestCarriers(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("a1", 1), gwRow("a2", 2), gwRow("b1", 3), gwRow("b2", 4), gwRow("solo", 5))
	e.carriers(
		store.DRCarrier{CarrierID: "A", GWList: "a1,a2"},
		store.DRCarrier{CarrierID: "B", GWList: "b1,b2", Flags: store.DRUseFirst},
		store.DRCarrier{CarrierID: "off", GWList: "solo", State: 1},
	)
	e.rules(store.DRRule{Prefix: "1", GWList: "#off,#B,solo,#A,a1"})
	m, err := e.d.Match(0, "1555")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Gateways, ","); got != "b1,solo,a1,a2" {
		t.Fatalf("gateways %s, want b1,solo,a1,a2", got)
	}
	// use first: the first usable one of the carrier.
	e.d.reg.gws["b1"].down.Store(true)
	if m, _ := e.d.Match(0, "1555"); strings.Join(m.Gateways, ",") != "b2,solo,a1,a2" {
		t.Fatalf("b1 down: %v", m.Gateways)
	}
	// A gateway named in a list but not in the table is skipped; once
	// added, it is used without reloading the rules.
	e.rules(store.DRRule{Prefix: "2", GWList: "later,a1"})
	if m, _ := e.d.Match(0, "2"); strings.Join(m.Gateways, ",") != "a1" {
		t.Fatalf("with an undefined gateway: %v", m.Gateways)
	}
	e.gws(gwRow("later", 6))
	if m, _ := e.d.Match(0, "2"); strings.Join(m.Gateways, ",") != "later,a1" {
		t.Fatalf("once defined: %v", m.Gateways)
	}
}

// TestSortAlgorithms: W draws gateways in proportion to their weights, R
// uniformly; N keeps the order. 20000 draws, within 2 points.
func TestSortAlgorithms(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("g1", 1), gwRow("g2", 2), gwRow("g3", 3))
	e.carriers(store.DRCarrier{CarrierID: "W", GWList: "g1=70,g2=20,g3=10", SortAlg: "W"})
	e.rules(store.DRRule{Prefix: "1", GWList: "#W"}, store.DRRule{Prefix: "2", GWList: "g1,g2,g3", SortAlg: "R"},
		store.DRRule{Prefix: "3", GWList: "g3,g1,g2", SortAlg: "N"})
	const n = 20000
	draw := func(number string) map[string]int {
		first := map[string]int{}
		for range n {
			m, err := e.d.Match(0, number)
			if err != nil || len(m.Gateways) != 3 {
				t.Fatalf("%s: %v %v", number, m, err)
			}
			first[m.Gateways[0]]++
		}
		return first
	}
	within := func(what string, got int, want float64) {
		t.Helper()
		if share := float64(got) / n; share < want-0.02 || share > want+0.02 {
			t.Errorf("%s first %.3f of the time, want %.2f", what, share, want)
		}
	}
	w := draw("1")
	within("W g1", w["g1"], 0.70)
	within("W g2", w["g2"], 0.20)
	within("W g3", w["g3"], 0.10)
	r := draw("2")
	for _, g := range []string{"g1", "g2", "g3"} {
		within("R "+g, r[g], 1.0/3)
	}
	if m, _ := e.d.Match(0, "3"); strings.Join(m.Gateways, ",") != "g3,g1,g2" {
		t.Errorf("N: %v", m.Gateways)
	}
}

// TestReloadKeepsTheCallsList: a call routed before a reload that replaces
// every rule and gateway fails over along the list it was given.
func TestReloadKeepsTheCallsList(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("gw1", 1), gwRow("gw2", 2))
	e.rules(store.DRRule{Prefix: "1", GWList: "gw1,gw2"})
	call := e.invite("1555")
	if call.dst != gwAddr(1) {
		t.Fatalf("to %v", call.dst)
	}
	if err := e.st.AddDRRules(ctx, []store.DRRule{{Groups: "0", Prefix: "1", GWList: "gw3"}}, true); err != nil {
		t.Fatal(err)
	}
	e.load(store.DRRulesTable)
	e.gws(gwRow("gw3", 3))
	call.answer(503)
	if call.dst != gwAddr(2) {
		t.Fatalf("after the reload the call went to %v, want gw2 of its own list", call.dst)
	}
	if call := e.invite("1555"); call.dst != gwAddr(3) {
		t.Fatalf("a new call went to %v, want gw3", call.dst)
	}
}

// TestListLostWhenTheRingWraps: with max_calls records, the list of a call
// is reused by the max_calls-th call routed after it; its failure route
// then has no next gateway, counted.
func TestListLostWhenTheRingWraps(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.MaxCalls = "UTC", 1024
	e := newEnv(t, envOptions{settings: s})
	e.gws(gwRow("gw1", 1), gwRow("gw2", 2))
	e.rules(store.DRRule{Prefix: "1", GWList: "gw1,gw2"})
	first := e.invite("1000")
	for i := range 1023 {
		e.invite("1" + itoa(i))
	}
	first.answer(503) // its record still holds it: 1023 calls later
	if first.dst != gwAddr(2) {
		t.Fatalf("within the ring: to %v", first.dst)
	}
	second := e.invite("1999")
	for i := range 1024 {
		e.invite("1" + itoa(i))
	}
	second.answer(503)
	if second.relay != "" || e.metric("switchboard_drouting_lists_lost_total") != 1 {
		t.Fatalf("after 1024 more calls: relayed %q, lost %v", second.ruri(), e.metric("switchboard_drouting_lists_lost_total"))
	}
}

// TestIsFromAndGoesToGW: the source address (any port) of a gateway in
// the table, whatever its state; the destination or Request-URI address
// and port.
func TestIsFromAndGoesToGW(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("gw1", 1), store.DRGateway{GWID: "gw6", Address: "[::1]:5070", Type: 6, State: 1})
	e.rules(store.DRRule{Prefix: "1", GWList: "gw1"})
	d := e.d
	for _, c := range []struct {
		src, ruri             string
		from, fromType6, goes bool
	}{
		{"127.0.0.1:40000", "sip:1@127.0.0.1:5101", true, false, true},
		{"127.0.0.2:5101", "sip:1@127.0.0.1:5102", false, false, false},
		{"[::1]:5070", "sip:1@[::1]:5070", true, true, true},
		{"[::ffff:127.0.0.1]:40001", "sip:1@example.com", true, false, false},
	} {
		e.InRoute(t, c.src, routetestRequest(c.ruri), func(rc *routing.Ctx) {
			if got := d.IsFromGW(rc); got != c.from {
				t.Errorf("%s IsFromGW = %v", c.src, got)
			}
			if got := d.IsFromGWType(rc, 6); got != c.fromType6 {
				t.Errorf("%s IsFromGWType(6) = %v", c.src, got)
			}
			if got := d.GoesToGW(rc); got != c.goes {
				t.Errorf("%s GoesToGW = %v", c.ruri, got)
			}
		})
	}
	// The destination ($du) decides when set, and DoRouting sets it.
	e.InRoute(t, "127.0.0.9:5060", routetestRequest("sip:1555@example.com"), func(rc *routing.Ctx) {
		rc.SetDestination(transport.UDP, gwAddr(1))
		if !d.GoesToGW(rc) {
			t.Error("to gw1's address set as destination: not to a gateway")
		}
	})
	e.InRoute(t, "127.0.0.9:5060", routetestRequest("sip:1555@example.com"), func(rc *routing.Ctx) {
		if !d.DoRouting(rc, 0) || !d.GoesToGW(rc) {
			t.Error("after DoRouting: not to a gateway")
		}
		if gw, rule, ok := d.Chosen(rc); !ok || gw != "gw1" || rule != 1 {
			t.Errorf("Chosen: %s %d %v", gw, rule, ok)
		}
	})
	// Deleted: no longer a gateway.
	if err := e.st.DeleteDRGateway(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	e.load(store.DRGatewaysTable)
	e.InRoute(t, "127.0.0.1:5101", routetestRequest("sip:1@127.0.0.1:5101"), func(rc *routing.Ctx) {
		if d.IsFromGW(rc) || d.GoesToGW(rc) {
			t.Error("a deleted gateway still matches")
		}
	})
}

func routetestRequest(ruri string) string {
	seq++
	return "OPTIONS " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-x" + itoa(seq) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <" + ruri + ">\r\n" +
		"Call-ID: x" + itoa(seq) + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

func TestNormalise(t *testing.T) {
	for in, want := range map[string]string{
		"+49 (30) 123-45.6":              "+4930123456",
		"%2B4930":                        "+4930",
		"*21#":                           "*21#",
		"alice":                          "",
		"49a":                            "",
		"%4":                             "",
		"":                               "",
		strings.Repeat("1", maxNumber+1): "",
	} {
		var buf [maxNumber]byte
		n, ok := normalise(&buf, []byte(in))
		if got := string(buf[:n]); ok != (want != "") || ok && got != want {
			t.Errorf("normalise(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestSlotsApart: the per-transaction value DoRouting keeps is none of
// the registrar's nor the dispatcher's, so one route set can use all three.
func TestSlotsApart(t *testing.T) {
	for _, other := range []int{registrar.SlotAOR, registrar.SlotNextQ, dispatcher.SlotSet, dispatcher.SlotDest} {
		if SlotCall == other {
			t.Fatalf("drouting.SlotCall (%d) is another module's slot", SlotCall)
		}
	}
}

// TestGoesToGWHost: by address whatever the port, by the next hop (a
// Route after ours), and never a host name.
func TestGoesToGWHost(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.gws(gwRow("gw1", 1)) // 127.0.0.1:5101
	d := e.d
	for ruri, want := range map[string]bool{
		"sip:1@127.0.0.1:5101":     true,
		"sip:1@127.0.0.1:65000":    true,
		"sip:1@127.0.0.2:5101":     false,
		"sip:1@gw.example.com":     false,
		"sip:1@[::ffff:127.0.0.1]": true,
	} {
		e.InRoute(t, "127.0.0.9:5060", routetestRequest(ruri), func(rc *routing.Ctx) {
			if got := d.GoesToGWHost(rc); got != want {
				t.Errorf("%s: %v, want %v", ruri, got, want)
			}
		})
	}
	if !d.IsGWAddr(gwAddr(1).Addr()) || d.IsGWAddr(gwAddr(1).Addr().Next()) {
		t.Error("IsGWAddr")
	}
}
