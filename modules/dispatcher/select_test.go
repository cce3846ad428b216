package dispatcher

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/store"
)

// pickMany runs SelectDst in the request route of n OPTIONS requests
// (not counted as calls) made by msg(i) and counts the destinations
// chosen.
func (p *proxy) pickMany(n int, alg Algorithm, msg func(i int) string) map[string]int {
	p.t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		p.InRoute(p.t, phone.String(), msg(i), func(c *routing.Ctx) {
			if !p.d.SelectDst(c, p.set, alg) {
				got["none"]++
				return
			}
			got[p.d.chosen(c)]++
		})
	}
	return got
}

func options(i int) string {
	return routetest.Request("OPTIONS", "sip:conf@example.com", "")
}

// withCallID makes requests with Call-IDs from key(i).
func withCallID(key func(i int) string) func(int) string {
	return func(i int) string {
		m := routetest.Request("OPTIONS", "sip:conf@example.com", "")
		start := strings.Index(m, "Call-ID: ") + len("Call-ID: ")
		end := start + strings.Index(m[start:], "\r\n")
		return m[:start] + key(i) + m[end:]
	}
}

func uri(port int) string { return fmt.Sprintf("sip:127.0.0.1:%d", port) }

// within reports whether got is within tol (a fraction) of want.
func within(got int, want, tol float64) bool {
	return math.Abs(float64(got)-want) <= tol*want
}

func TestSelectDstSetsTheDestination(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071), dst(1, 5072), dst(2, 5090))
	c := p.invite("alice", "sip:conf@example.com")
	if c.to() != "127.0.0.1:5071" || !strings.HasPrefix(c.relayed[0].Data, "INVITE sip:conf@example.com SIP/2.0") {
		t.Fatalf("relayed to %s:\n%s", c.to(), c.relayed[0].Data)
	}
	if c := p.invite("alice", "sip:conf@example.com"); c.to() != "127.0.0.1:5072" {
		t.Fatalf("second call to %s, want the next in turn", c.to())
	}
	p.set = 3
	if c := p.invite("alice", "sip:conf@example.com"); len(c.answers) != 1 || c.answers[0] != "SIP/2.0 503 No Destination" {
		t.Fatalf("a set that does not exist: %v", c.answers)
	}
	if n := p.metric("switchboard_dispatcher_no_destination_total"); n != 1 {
		t.Fatalf("no_destination_total %v", n)
	}
	if n := p.metric(`switchboard_dispatcher_selected_total{set="1",destination="sip:127.0.0.1:5071"}`); n != 1 {
		t.Fatalf("selected_total of A: %v", n)
	}
}

func TestWeightIsExact(t *testing.T) {
	p := newProxy(t, envOptions{})
	a, b := dst(1, 5071), dst(1, 5072)
	b.Weight = 3
	p.add(a, b)
	got := p.pickMany(400, Weight, options)
	if got[uri(5071)] != 100 || got[uri(5072)] != 300 {
		t.Fatalf("weight 1:3 over 400: %v", got)
	}
	// Interleaved, not in bursts: any 4 requests in a row hold one of A.
	seqs := ""
	for i := 0; i < 40; i++ {
		p.InRoute(t, phone.String(), options(i), func(c *routing.Ctx) {
			p.d.SelectDst(c, 1, Weight)
			seqs += map[string]string{uri(5071): "a", uri(5072): "b"}[p.d.chosen(c)]
		})
	}
	if strings.Contains(seqs, "bbbb") || strings.Contains(seqs, "aa") {
		t.Fatalf("weighted order in bursts: %s", seqs)
	}
}

func TestRoundRobin(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071), dst(1, 5072), dst(1, 5073))
	got := p.pickMany(300, RoundRobin, options)
	for _, port := range []int{5071, 5072, 5073} {
		if got[uri(port)] != 100 {
			t.Fatalf("round robin over 3, 300 requests: %v", got)
		}
	}
	p.d.mark(p.d.states[stateKey{1, uri(5072)}], Inactive)
	got = p.pickMany(300, RoundRobin, options)
	if got[uri(5072)] != 0 || got[uri(5071)]+got[uri(5073)] != 300 {
		t.Fatalf("an inactive destination chosen: %v", got)
	}
}

func TestHashAlgorithms(t *testing.T) {
	p := newProxy(t, envOptions{})
	a, b, c := dst(1, 5071), dst(1, 5072), dst(1, 5073)
	c.Weight = 2
	p.add(a, b, c)

	// Call-ID: weights 1:1:2 over 4000 distinct calls within ±10%, and
	// every request of one call to the same destination.
	got := p.pickMany(4000, CallID, withCallID(func(i int) string { return fmt.Sprintf("k%d@h", i) }))
	if !within(got[uri(5071)], 1000, 0.1) || !within(got[uri(5072)], 1000, 0.1) || !within(got[uri(5073)], 2000, 0.1) {
		t.Fatalf("call_id hash, weights 1:1:2 over 4000: %v", got)
	}
	if got := p.pickMany(20, CallID, withCallID(func(int) string { return "same@h" })); len(got) != 1 {
		t.Fatalf("one Call-ID, several destinations: %v", got)
	}

	// From user: a caller's calls go to one destination whatever the
	// Call-ID; callers spread.
	from := func(user string) func(int) string {
		return func(i int) string {
			return strings.Replace(routetest.Request("OPTIONS", "sip:conf@example.com", ""), "<sip:alice@", "<sip:"+user+"@", 1)
		}
	}
	if got := p.pickMany(20, FromUser, from("carol")); len(got) != 1 {
		t.Fatalf("one caller, several destinations: %v", got)
	}
	spread := map[string]bool{}
	for i := 0; i < 50; i++ {
		for k := range p.pickMany(1, FromUser, from(fmt.Sprintf("user%d", i))) {
			spread[k] = true
		}
	}
	if len(spread) != 3 {
		t.Fatalf("50 callers on %d destinations", len(spread))
	}

	// R-URI: user and host, the host's case ignored.
	ruri := func(r string) func(int) string {
		return func(int) string { return routetest.Request("OPTIONS", r, "") }
	}
	x := p.pickMany(1, RURI, ruri("sip:room7@Media.Example.COM"))
	y := p.pickMany(10, RURI, ruri("sip:room7@media.example.com:5060"))
	if len(y) != 1 || len(x) != 1 {
		t.Fatalf("one R-URI, several destinations: %v %v", x, y)
	}
	for k := range x {
		if y[k] != 10 {
			t.Fatalf("host case changed the destination: %v %v", x, y)
		}
	}
}

// Rendezvous hashing: when a destination goes down only its keys move,
// and they come back to it when it is up again.
func TestHashStickiness(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071), dst(1, 5072), dst(1, 5073), dst(1, 5074))
	keys := func(i int) string { return fmt.Sprintf("sticky%d@h", i) }
	before := map[int]string{}
	for i := 0; i < 400; i++ {
		for k := range p.pickMany(1, CallID, withCallID(func(int) string { return keys(i) })) {
			before[i] = k
		}
	}
	down := p.d.states[stateKey{1, uri(5072)}]
	p.d.mark(down, Inactive)
	moved := map[string]int{}
	for i := 0; i < 400; i++ {
		for k := range p.pickMany(1, CallID, withCallID(func(int) string { return keys(i) })) {
			if before[i] != uri(5072) && k != before[i] {
				t.Fatalf("key %d moved from %s to %s though its destination is up", i, before[i], k)
			}
			if before[i] == uri(5072) {
				moved[k]++
			}
		}
	}
	if len(moved) != 3 {
		t.Fatalf("the keys of the destination down went to %v, want all three others", moved)
	}
	p.d.mark(down, Active)
	for i := 0; i < 400; i++ {
		for k := range p.pickMany(1, CallID, withCallID(func(int) string { return keys(i) })) {
			if k != before[i] {
				t.Fatalf("key %d on %s after the destination came back, was %s", i, k, before[i])
			}
		}
	}
}

func TestPriority(t *testing.T) {
	p := newProxy(t, envOptions{})
	a, b, c := dst(1, 5071), dst(1, 5072), dst(1, 5073)
	b.Priority, c.Priority = 10, 5
	p.add(a, b, c)
	if got := p.pickMany(5, Priority, options); got[uri(5072)] != 5 {
		t.Fatalf("highest priority: %v", got)
	}
	p.d.mark(p.d.states[stateKey{1, uri(5072)}], Inactive)
	if got := p.pickMany(5, Priority, options); got[uri(5073)] != 5 {
		t.Fatalf("the next priority: %v", got)
	}
	for _, port := range []int{5071, 5073} {
		p.d.mark(p.d.states[stateKey{1, uri(port)}], Inactive)
	}
	if got := p.pickMany(3, Priority, options); got["none"] != 3 {
		t.Fatalf("every destination down: %v", got)
	}
}

// least_calls: calls in progress per unit of weight, counted from the
// INVITE to its end.
func TestLeastCalls(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.alg = LeastCalls
	a, b := dst(1, 5071), dst(1, 5072)
	b.Weight = 2
	p.add(a, b)
	var calls []*testCall
	count := map[string]int{}
	for i := 0; i < 6; i++ {
		c := p.invite("alice", "sip:conf@example.com")
		calls = append(calls, c)
		count[c.to()]++
	}
	if count["127.0.0.1:5071"] != 2 || count["127.0.0.1:5072"] != 4 {
		t.Fatalf("6 calls over weights 1:2: %v", count)
	}
	if i := p.info(1, uri(5072)); i.Calls != 4 {
		t.Fatalf("calls in progress on B: %d", i.Calls)
	}
	// B's calls end: the next ones go to B until it catches up.
	for _, c := range calls {
		if c.to() == "127.0.0.1:5072" {
			c.answer(486)
		}
	}
	if i := p.info(1, uri(5072)); i.Calls != 0 {
		t.Fatalf("calls on B after its 486s: %d", i.Calls)
	}
	for i := 0; i < 4; i++ {
		if c := p.invite("alice", "sip:conf@example.com"); c.to() != "127.0.0.1:5072" {
			t.Fatalf("call %d went to %s; B has fewer calls", i, c.to())
		}
	}
	if n := p.metric(`switchboard_dispatcher_calls{set="1",destination="sip:127.0.0.1:5072"}`); n != 4 {
		t.Fatalf("calls gauge %v", n)
	}
}

// The calls in progress end as a call ends without dialog state: a BYE,
// a final non-2xx in the failure route (486, a timeout), a 6xx or a
// CANCELed INVITE in the reply route. A fail-over moves the call.
func TestCallsReleased(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071))
	calls := func() int64 { return p.info(1, uri(5071)).Calls }

	ok := p.invite("alice", "sip:conf@example.com")
	ok.answer(200)
	if calls() != 1 {
		t.Fatalf("an answered call: %d", calls())
	}
	ok.bye()
	if calls() != 0 {
		t.Fatalf("after its BYE: %d", calls())
	}
	busy := p.invite("alice", "sip:conf@example.com")
	busy.answer(486)
	decline := p.invite("alice", "sip:conf@example.com")
	decline.answer(603)
	silent := p.invite("alice", "sip:conf@example.com")
	if calls() != 1 {
		t.Fatalf("with one call ringing: %d", calls())
	}
	silent.timeout()
	if calls() != 0 || p.metric("switchboard_dispatcher_calls_tracked") != 0 {
		t.Fatalf("after a 486, a 603 and a timeout: %d calls", calls())
	}
	// A second initial INVITE with the Call-ID and From tag of a call in
	// progress is another transaction: refused (482), not counted, and it
	// does not end the call.
	first := p.inviteWithID("same@phone", "alice", "sip:conf@example.com")
	first.answer(200)
	second := p.inviteTxn("same@phone", "again", 5)
	if calls() != 1 || len(second.relayed) != 0 || len(second.answers) != 1 || second.answers[0] != "SIP/2.0 482 Loop Detected" {
		t.Fatalf("one call and a second INVITE on its Call-ID: %d counted, answered %q", calls(), second.answers)
	}
	first.bye()
	if calls() != 0 {
		t.Fatalf("after the BYE: %d", calls())
	}
}

// ds_next_dst: a 503 and a timeout move the call to the others in
// priority order, skipping the first choice and those not active; the
// call's count moves with it; the failures are counted.
func TestNextDstFailsOver(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.alg = CallID
	a, b, c, d := dst(1, 5071), dst(1, 5072), dst(1, 5073), dst(1, 5074)
	a.Priority, b.Priority, c.Priority, d.Priority = 1, 4, 3, 2
	d.State = store.DispatcherInactive
	p.add(a, b, c, d)
	// A Call-ID that hashes to A (the lowest priority).
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("fo%d@phone", i)
		var to string
		p.InRoute(t, phone.String(), withCallID(func(int) string { return id })(0), func(c *routing.Ctx) {
			p.d.SelectDst(c, 1, CallID)
			to = p.d.chosen(c)
		})
		if to == uri(5071) {
			break
		}
	}
	call := p.inviteWithID(id, "alice", "sip:conf@example.com")
	if call.to() != "127.0.0.1:5071" {
		t.Fatalf("first choice %s", call.to())
	}
	call.answer(503)
	if call.to() != "127.0.0.1:5072" || len(call.answers) != 0 {
		t.Fatalf("after A's 503: relayed to %s, answers %v", call.to(), call.answers)
	}
	if p.info(1, uri(5071)).Calls != 0 || p.info(1, uri(5072)).Calls != 1 {
		t.Fatal("the call's count did not move with it")
	}
	call.timeout() // B silent
	if call.to() != "127.0.0.1:5073" {
		t.Fatalf("after B's timeout: %s", call.to())
	}
	call.answer(500)
	// D is inactive, A was the first choice: nothing is left, and the best
	// response (the 408, of the lowest class) goes back.
	if dsts := call.destinations(); dsts != "127.0.0.1:5071 127.0.0.1:5072 127.0.0.1:5073" ||
		len(call.answers) != 1 || call.answers[0] != "SIP/2.0 408 Request Timeout" {
		t.Fatalf("relayed to %s, answers %v", dsts, call.answers)
	}
	for _, port := range []int{5071, 5072, 5073} {
		if i := p.info(1, uri(port)); i.Failures != 1 || i.Calls != 0 {
			t.Fatalf("%d: %+v", port, i)
		}
	}
	if p.info(1, uri(5074)).Selected != 0 {
		t.Fatal("the inactive destination was tried")
	}
}

// ds_mark_dst: Probing counts failures up to probe_failures, Inactive and
// Active act at once; a destination marked out is skipped.
func TestMarkDst(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.markOn408 = true
	p.noFailover = false
	p.add(dst(1, 5071))
	for i := 1; i <= 3; i++ {
		c := p.invite("alice", "sip:conf@example.com")
		if c.to() != "127.0.0.1:5071" {
			t.Fatalf("call %d not sent: %v", i, c.answers)
		}
		c.timeout()
		want := "active"
		if i == 3 {
			want = "probing"
		}
		if s := p.state(1, uri(5071)); s != want {
			t.Fatalf("after %d timeouts: %s, want %s", i, s, want)
		}
	}
	if c := p.invite("alice", "sip:conf@example.com"); len(c.answers) != 1 || !strings.HasPrefix(c.answers[0], "SIP/2.0 503") {
		t.Fatalf("a probing destination selected: %v", c.answers)
	}
	if p.info(1, uri(5071)).Failures != 3 || p.metric("switchboard_dispatcher_state_changes_total") != 1 ||
		p.metric(`switchboard_dispatcher_state{set="1",destination="sip:127.0.0.1:5071"}`) != 2 {
		t.Fatalf("failures %d, changes %v", p.info(1, uri(5071)).Failures, p.metric("switchboard_dispatcher_state_changes_total"))
	}
	// Inactive and Active at once, from a route.
	p.InRoute(t, phone.String(), options(0), func(c *routing.Ctx) {
		if p.d.MarkDst(c, Inactive) {
			t.Error("MarkDst without SelectDst marked something")
		}
	})
	p.d.mark(p.d.states[stateKey{1, uri(5071)}], Active)
	p.InRoute(t, phone.String(), options(0), func(c *routing.Ctx) {
		if !p.d.SelectDst(c, 1, RoundRobin) || !p.d.MarkDst(c, Inactive) {
			t.Error("SelectDst and MarkDst")
		}
	})
	if s := p.state(1, uri(5071)); s != "inactive" {
		t.Fatalf("marked inactive: %s", s)
	}
}

func TestIsInList(t *testing.T) {
	p := newProxy(t, envOptions{})
	v6 := store.DispatcherDest{SetID: 2, Destination: "sip:[::1]:5090;transport=tcp", Weight: 1}
	p.add(dst(1, 5071), dst(2, 5072), v6)
	p.InRoute(t, "127.0.0.1:5071", options(0), func(c *routing.Ctx) {
		for _, q := range []struct {
			addr string
			set  int
			want bool
		}{
			{"", 1, true}, // the source: 127.0.0.1:5071
			{"", 2, false},
			{"", -1, true},
			{"127.0.0.1:5072", 2, true},
			{"127.0.0.1:5072", 1, false},
			{"127.0.0.1:0", 2, true}, // any port
			{"127.0.0.1:5073", -1, false},
			{"127.0.0.2:5071", -1, false},
			{"[::1]:5090", 2, true},
			{"[::1]:0", -1, true},
			{"[::ffff:127.0.0.1]:5071", 1, true},
		} {
			var a netip.AddrPort
			if q.addr != "" {
				a = netip.MustParseAddrPort(q.addr)
			}
			if got := p.d.IsInList(c, a, q.set); got != q.want {
				t.Errorf("IsInList(%q, %d) = %v", q.addr, q.set, got)
			}
		}
	})
}

func TestAttrs(t *testing.T) {
	p := newProxy(t, envOptions{})
	a := dst(1, 5071)
	a.Attrs = "room=7;media=1"
	p.add(a)
	p.InRoute(t, phone.String(), options(0), func(c *routing.Ctx) {
		if p.d.Attrs(c) != "" || !p.d.SelectDst(c, 1, Priority) || p.d.Attrs(c) != "room=7;media=1" {
			t.Errorf("attrs %q", p.d.Attrs(c))
		}
	})
}

// negLn53 stands in for math.Log in rendezvous scores: close and in the
// same order.
func TestNegLn53(t *testing.T) {
	prev := math.Inf(1)
	check := func(x uint64) {
		want := -math.Log(float64(x) / (1 << 53))
		got := negLn53(x)
		if math.Abs(got-want) > 2e-7 {
			t.Fatalf("x=%d: %v, math.Log gives %v", x, got, want)
		}
	}
	for _, x := range []uint64{1, 2, 3, 1 << 20, 1<<52 - 1, 1 << 52, 1<<53 - 1, 1 << 53} {
		check(x)
	}
	for i := uint64(0); i < 200_000; i++ {
		x := mix64(i)>>11 + 1
		check(x)
	}
	// Monotonic (decreasing in x) across table steps.
	for x := uint64(1<<53 - 1<<40); x <= 1<<53; x += 1 << 30 {
		v := negLn53(x)
		if v > prev {
			t.Fatalf("not monotonic at %d", x)
		}
		prev = v
	}
}

// TestReusedCallIDAndFromTag: new INVITEs with the Call-ID and From tag
// of a call in progress (other Request-URIs, other CSeqs, or the same
// CSeq: RFC 3261 §8.2.2.2's merged request) were each relayed to a
// destination and counted as the first call, so least_calls went on
// choosing a destination that had them all. Each is now refused 482 Loop
// Detected, relayed nowhere, and ends nothing; the first call's BYE
// releases its count once. The INVITE's own second pass (a spiral) is
// relayed and counted once.
func TestReusedCallIDAndFromTag(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.add(dst(1, 5071))
	calls := func() int64 { return p.info(1, uri(5071)).Calls }
	first := p.inviteWithID("reused@phone", "alice", "sip:conf@example.com")
	first.answer(200)
	for n := 1; n <= 4; n++ {
		again := p.send("reused@phone", "alice", fmt.Sprintf("sip:conf%d@example.com", n), fmt.Sprint("again-", n), 1+n%2)
		if len(again.relayed) != 0 || len(again.answers) != 1 || again.answers[0] != "SIP/2.0 482 Loop Detected" {
			t.Fatalf("INVITE %d on the Call-ID and From tag: relayed to %q, answered %q", n, again.destinations(), again.answers)
		}
	}
	if calls() != 1 || p.metric("switchboard_dispatcher_calls_in_use_total") != 4 {
		t.Fatalf("%d calls counted, %v refused in use; want 1 and 4", calls(), p.metric("switchboard_dispatcher_calls_in_use_total"))
	}
	first.bye()
	first.bye()
	if calls() != 0 {
		t.Fatalf("after the BYE: %d", calls())
	}

	// A spiral: the relayed INVITE back through the proxy, behind another
	// proxy's Via, to another Request-URI.
	ringing := p.invite("alice", "sip:conf@example.com")
	spiral := strings.NewReplacer("INVITE sip:conf@example.com", "INVITE sip:conf2@example.com",
		"\r\nVia: ", "\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKother\r\nVia: ").Replace(ringing.relayed[0].Data)
	second := &testCall{p: p}
	p.Take()
	p.Receive("127.0.0.1:5099", spiral)
	second.collect()
	if len(second.relayed) != 1 || calls() != 1 {
		t.Fatalf("the spiral: relayed %d times, %d counted; want relayed, counted once", len(second.relayed), calls())
	}
	ringing.answer(486)
	if calls() != 0 {
		t.Fatalf("after the 486: %d", calls())
	}
}

// TestForgedSpiralSentOnUncounted states what the dispatcher does with an
// INVITE made to look like a ringing call's spiral: the call's callee
// copies our Via, with the branch the call's INVITE reached it on, under
// its own into INVITEs of its own on the call's Call-ID and From tag. The
// dispatcher knows no caller to tell them from the call's INVITE coming
// back through another proxy (nothing authenticates before it, and a
// From is copied as easily), so each is sent on and counted on no
// destination: least_calls sees a destination with calls it does not
// count and keeps choosing it. A skew of the load, not a limit passed;
// the call's own count stays one and ends with it.
func TestForgedSpiralSentOnUncounted(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.alg = LeastCalls
	p.add(dst(1, 5071), dst(1, 5072))
	ringing := p.invite("alice", "sip:conf@example.com")
	if ringing.to() != "127.0.0.1:5071" {
		t.Fatalf("the call went to %s", ringing.to())
	}
	for n := 1; n <= 3; n++ {
		forged := strings.NewReplacer("INVITE sip:conf@example.com", fmt.Sprintf("INVITE sip:forged%d@example.com", n),
			"From: <sip:alice@", "From: <sip:mallory@",
			"\r\nVia: ", fmt.Sprintf("\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-forged-%d\r\nVia: ", n)).
			Replace(ringing.relayed[0].Data)
		c := &testCall{p: p}
		p.Take()
		p.Receive("127.0.0.1:5071", forged)
		c.collect()
		if c.to() != "127.0.0.1:5072" || len(c.answers) != 0 {
			t.Fatalf("forged spiral %d: sent to %q, answered %q; want sent on to the least loaded, uncounted", n, c.to(), c.answers)
		}
	}
	if a, b := p.info(1, uri(5071)).Calls, p.info(1, uri(5072)).Calls; a != 1 || b != 0 {
		t.Fatalf("calls counted %d and %d; want the call's alone (1, 0)", a, b)
	}
	ringing.answer(486)
	if a, b := p.info(1, uri(5071)).Calls, p.info(1, uri(5072)).Calls; a != 0 || b != 0 {
		t.Fatalf("after the call's 486: %d and %d", a, b)
	}
}
