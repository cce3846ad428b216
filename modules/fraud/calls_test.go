package fraud

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/routing"
	"switchboard/store"
)

// concurrentRule: the 3rd simultaneous call of a caller to 0900 is refused
// (the count includes the call checked), the 2nd is a warning.
func concurrentProxy(t *testing.T, o envOptions) *proxy {
	p := newProxy(t, o)
	p.rule(store.FraudRule{Prefix: "0900", ConcurrentCalls: store.FraudLimit{Warning: 2, Critical: 3}})
	return p
}

func TestConcurrentCallsReleasedOnBye(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	a, answer := p.invite("alice", "0900111")
	if answer != "" || p.last != OK {
		t.Fatalf("first call: %q, %v", answer, p.last)
	}
	a.answer(200)
	b, answer := p.invite("alice", "0900222")
	if answer != "" || p.last != Warning {
		t.Fatalf("second call: %q, %v", answer, p.last)
	}
	b.answer(200)
	if _, answer := p.invite("alice", "0900333"); answer != "SIP/2.0 403 Forbidden" || p.last != Critical {
		t.Fatalf("third call: %q, %v", answer, p.last)
	}
	if n := p.concurrent("0900"); n != 2 {
		t.Fatalf("%d concurrent after a refused third call, want 2", n)
	}
	// Another caller has its own count.
	if _, answer := p.invite("bob", "0900333"); answer != "" {
		t.Fatalf("bob: %q", answer)
	}
	a.bye()
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent after a BYE, want 1", n)
	}
	a.bye() // a second BYE (retransmitted, or a forgery) releases nothing more
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent after the BYE again, want 1", n)
	}
	if _, answer := p.invite("alice", "0900333"); answer != "" || p.last != Warning {
		t.Fatalf("a call after the BYE: %q, %v", answer, p.last)
	}
}

func TestConcurrentCallsReleasedOnFailure(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	a, _ := p.invite("alice", "0900111")
	b, _ := p.invite("alice", "0900222")
	if n := p.concurrent("0900"); n != 2 {
		t.Fatalf("%d concurrent", n)
	}
	a.answer(486) // busy: the failure route runs
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent after a 486, want 1", n)
	}
	b.answer(603) // 6xx: no failure route, the reply route sees it
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after a 603, want 0", n)
	}
	c, _ := p.invite("alice", "0900333")
	c.cancel()
	c.answer(487) // canceled: no failure route either
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after a canceled call, want 0", n)
	}
	// No answer at all: the transaction times out (408), failure route.
	d, _ := p.invite("alice", "0900444")
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent", n)
	}
	p.clock.Advance(40 * time.Second)
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after the INVITE timed out, want 0", n)
	}
	_ = d
	// A route that refuses the call after Check (its lookup failed, say)
	// releases it with CallFailed.
	p.refuseAfterCheck = true
	if _, answer := p.invite("alice", "0900555"); answer != "SIP/2.0 480 Temporarily Unavailable" {
		t.Fatalf("refused after check: %q", answer)
	}
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after a refusal, want 0", n)
	}
}

func TestConcurrentCallsReleasedOnTimeout(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.CallTimeout = "UTC", time.Hour
	p := concurrentProxy(t, envOptions{settings: s})
	a, _ := p.invite("alice", "0900111")
	a.answer(200) // the call is up, and its BYE will never come this way
	p.clock.Advance(59 * time.Minute)
	p.f.sweep()
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent before the timeout", n)
	}
	p.clock.Advance(time.Minute)
	p.f.sweep()
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after call_timeout, want 0", n)
	}
	if p.counter(`switchboard_fraud_calls_timed_out_total`) != 1 || p.counter(`switchboard_fraud_calls`) != 0 {
		t.Error("timeout metrics")
	}
	a.bye() // the late BYE finds nothing to release
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent", n)
	}
}

func TestOnlyTheCountedTransactionReleases(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	a, _ := p.invite("alice", "0900111")
	// The INVITE's second pass through the proxy (a spiral) is the same
	// call, counted once, and its failure does not end the call: a caller
	// cannot shed a call in progress this way.
	const other = "127.0.0.1:5099"
	spiral := strings.NewReplacer("INVITE sip:0900111@", "INVITE sip:0900112@",
		"\r\nVia: ", "\r\nVia: SIP/2.0/UDP "+other+";branch=z9hG4bKother\r\nVia: ").Replace(a.relay)
	p.take()
	p.receive(netip.MustParseAddrPort(other), spiral)
	second := &testCall{p: p}
	for _, m := range p.take() {
		if strings.HasPrefix(m, "INVITE sip:0900112@") {
			second.relay = m
		}
	}
	if second.relay == "" || p.concurrent("0900") != 1 {
		t.Fatalf("the spiral: relayed %v, %d concurrent; want relayed, 1", second.relay != "", p.concurrent("0900"))
	}
	second.answer(404)
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent after the spiral failed, want 1 (the first pass still rings)", n)
	}
	a.answer(200)
	// Another INVITE with the call's Call-ID and From tag (not in its
	// dialog: no To tag) is refused and ends nothing either.
	if answer := reuse(a, "0900999", 5).send(); answer != "SIP/2.0 482 Loop Detected" {
		t.Fatalf("second INVITE: %q", answer)
	}
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent after a second INVITE on the Call-ID and From tag, want 1", n)
	}
	a.bye()
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after the BYE", n)
	}
}

// An attacker who sends every call with one Call-ID, each INVITE with a
// From tag of its own (five separate dialogs: dialog-1 to dialog-5), and
// has each answered 200 before the next, had all five relayed and counted
// as one call: the table was keyed by Call-ID alone, so every INVITE after
// the first was taken for a second INVITE of that call and its lease
// released. A call is a dialog, Call-ID and From tag: with
// concurrent_calls_critical 3 the third call in progress is refused
// (thresholds are reached at "≥", the count including the call checked),
// so two are up and the rest get 403; each BYE ends its own call.
func TestConcurrentLimitHoldsForCallsSharingACallID(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.rule(store.FraudRule{Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 3}})
	var up []*testCall
	for n := 1; n <= 5; n++ {
		p.take()
		p.receive(phone, fmt.Sprintf("INVITE sip:0900%03d@gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-shared-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=dialog-%d\r\nTo: <sip:0900%03d@gw.example.net>\r\n"+
			"Call-ID: shared@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n", n, n, n, n))
		refused := false
		for _, m := range p.take() {
			switch {
			case strings.HasPrefix(m, "INVITE "):
				c := &testCall{p: p, relay: m}
				c.answer(200)
				up = append(up, c)
			case strings.HasPrefix(m, "SIP/2.0 403 "):
				refused = true
			}
		}
		if want := n >= 3; refused != want || (p.last == Critical) != want {
			t.Fatalf("call %d: refused %v (%v), want %v", n, refused, p.last, want)
		}
	}
	if len(up) > 2 || p.concurrent("0900") != 2 {
		t.Fatalf("%d calls up at once, critical 3; counted %d", len(up), p.concurrent("0900"))
	}
	// Each dialog's BYE ends its own call, once.
	for i, n := range []int{1, 1, 2} {
		seq++
		p.receive(phone, fmt.Sprintf("BYE sip:0900%03d@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=dialog-%d\r\nTo: <sip:0900%03d@gw.example.net>;tag=callee\r\n"+
			"Call-ID: shared@phone\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", n, seq, n, n))
		if want := int32(1 - i/2); p.concurrent("0900") != want {
			t.Fatalf("after the BYE of dialog-%d: %d concurrent, want %d", n, p.concurrent("0900"), want)
		}
	}
}

func TestRulesReloadDoesNotDropCalls(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	a, _ := p.invite("alice", "0900111")
	a.answer(200)
	b, _ := p.invite("alice", "0900222")
	b.answer(200)
	// Every rule is replaced: the calls in progress keep their count and
	// their release.
	rules, _ := p.st.ListFraudRules(ctx)
	for _, r := range rules {
		r.ConcurrentCalls.Critical = 4
		if err := p.st.UpdateFraudRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.f.LoadRules(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.concurrent("0900"); n != 2 {
		t.Fatalf("%d concurrent after the reload", n)
	}
	c, answer := p.invite("alice", "0900333")
	if answer != "" || p.last != Warning {
		t.Fatalf("third call with the new threshold 4: %q, %v", answer, p.last)
	}
	if _, answer := p.invite("alice", "0900444"); answer != "SIP/2.0 403 Forbidden" {
		t.Fatalf("fourth call: %q", answer)
	}
	for _, x := range []*testCall{a, b} {
		x.bye()
	}
	c.answer(486)
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after every call ended", n)
	}
}

func TestCallTableBounded(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.MaxCalls = "UTC", 100
	p := newProxy(t, envOptions{settings: s, shards: 1})
	p.rule(store.FraudRule{Prefix: "", ConcurrentCalls: store.FraudLimit{Critical: 1000}})
	for i := 0; i < 150; i++ {
		if _, answer := p.invite(fmt.Sprintf("u%d", i), "0900"); answer != "" {
			t.Fatalf("call %d: %q", i, answer)
		}
	}
	if n := p.f.calls.Len(); n != 100 {
		t.Fatalf("%d calls tracked, bound 100", n)
	}
	if p.counter(`switchboard_fraud_calls_untracked_total`) != 50 {
		t.Error("untracked calls not counted")
	}
	// An untracked call is not counted as concurrent either.
	if s := p.f.Stats("u149@example.com"); len(s) != 1 || s[0].ConcurrentCalls != 0 {
		t.Fatalf("untracked call's counter: %+v", s)
	}
	if s := p.f.Stats("u0@example.com"); len(s) != 1 || s[0].ConcurrentCalls != 1 {
		t.Fatalf("tracked call's counter: %+v", s)
	}
}

func TestResetDropsCallsInProgress(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	a, _ := p.invite("alice", "0900111")
	a.answer(200)
	p.f.Reset("alice@example.com")
	// The call's end releases nothing from the new counter.
	b, _ := p.invite("alice", "0900222")
	a.bye()
	if n := p.concurrent("0900"); n != 1 {
		t.Fatalf("%d concurrent: the BYE of a call from before the reset took the new call's count", n)
	}
	b.bye()
}

func TestTrackerReplaced(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	rec := &recordingTracker{}
	p.f.SetTracker(rec)
	a, _ := p.invite("alice", "0900111")
	if len(rec.leases) != 1 || p.concurrent("0900") != 1 {
		t.Fatalf("leases %d, concurrent %d", len(rec.leases), p.concurrent("0900"))
	}
	a.bye() // the built-in table has nothing: the dialog module releases
	if p.concurrent("0900") != 1 {
		t.Fatal("released by the built-in table")
	}
	rec.leases[0].Release()
	if p.concurrent("0900") != 0 {
		t.Fatal("lease release")
	}
}

type recordingTracker struct{ leases []Lease }

func (r *recordingTracker) Track(_ *routing.Ctx, l Lease) bool {
	r.leases = append(r.leases, l)
	return true
}

func TestEvictionSparesCallsInProgress(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.MaxCallers = "UTC", 100
	p := newProxy(t, envOptions{settings: s, shards: 1})
	p.rule(store.FraudRule{Prefix: "", ConcurrentCalls: store.FraudLimit{Critical: 2}})
	a, _ := p.invite("alice", "0900111")
	a.answer(200)
	// 300 other callers since: alice's counter is the least recently used,
	// but the one with a call in progress.
	for i := 0; i < 300; i++ {
		p.clock.Advance(time.Second)
		p.check(fmt.Sprintf("user%d@example.com", i), "0900")
	}
	if n := p.f.counters.Len(); n != 100 {
		t.Fatalf("%d counters", n)
	}
	if n := p.concurrent(""); n != 1 {
		t.Fatalf("alice's call in progress lost from the counters: %d", n)
	}
	if _, answer := p.invite("alice", "0900222"); answer != "SIP/2.0 403 Forbidden" {
		t.Fatalf("second concurrent call: %q", answer)
	}
	a.bye()
	if n := p.concurrent(""); n != 0 {
		t.Fatalf("%d concurrent after the BYE", n)
	}
}

// reuse is another initial INVITE of call's caller with call's Call-ID
// and From tag, to number, with its own branch and CSeq.
func reuse(call *testCall, number string, cseq int) *testCall {
	return &testCall{p: call.p, callID: call.callID, from: call.from, number: number, cseq: cseq}
}

// TestReusedCallIDAndFromTag: a caller who sent new INVITEs with the
// Call-ID and From tag of her call in progress (other Request-URIs, other
// CSeqs, or the same CSeq: RFC 3261 §8.2.2.2's merged request) had each
// relayed and answered while counted as the first call: five calls up
// under concurrent_calls_critical 3, counted once. Each is now refused 482
// Loop Detected, not counted, and ends nothing; the first call's BYE
// releases it once, and then the Call-ID and From tag start a call again.
func TestReusedCallIDAndFromTag(t *testing.T) {
	p := newProxy(t, envOptions{})
	p.rule(store.FraudRule{Prefix: "0900", ConcurrentCalls: store.FraudLimit{Critical: 3}})
	first, _ := p.invite("alice", "0900100")
	first.answer(200)
	up, refused := 1, 0
	for n := 1; n <= 4; n++ {
		again := reuse(first, fmt.Sprintf("0900%03d", 100+n), 1+n%2) // CSeq 1: merged with the first
		switch answer := again.send(); answer {
		case "":
			again.answer(200)
			up++
		case "SIP/2.0 482 Loop Detected":
			refused++
		default:
			t.Fatalf("INVITE %d reusing the Call-ID and From tag: %q", n, answer)
		}
	}
	if up != 1 || refused != 4 || p.concurrent("0900") != 1 {
		t.Fatalf("%d calls up on one Call-ID and From tag under critical 3, counted %d, %d refused; want 1 up, 4 refused",
			up, p.concurrent("0900"), refused)
	}
	if p.counter(`switchboard_fraud_calls_in_use_total`) != 4 {
		t.Errorf("in use: %v", p.counter(`switchboard_fraud_calls_in_use_total`))
	}
	first.bye()
	first.bye() // again, or a forgery: nothing more
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after the BYE, want 0", n)
	}
	next := reuse(first, "0900200", 10)
	if answer := next.send(); answer != "" || p.concurrent("0900") != 1 {
		t.Fatalf("a call on the Call-ID and From tag once the first ended: %q, counted %d", answer, p.concurrent("0900"))
	}
}

// TestRetryAfterChallengeCountedOnce: the caller's INVITE again with
// credentials after a 407 from the next hop (same Call-ID and From tag,
// CSeq + 1, RFC 3261 §22.2) comes after the first INVITE's final
// response released it: relayed and counted once, released by its BYE.
func TestRetryAfterChallengeCountedOnce(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	a, _ := p.invite("alice", "0900111")
	a.answer(407)
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after the 407", n)
	}
	retry := reuse(a, "0900111", 2)
	if answer := retry.send(); answer != "" || p.last != OK || p.concurrent("0900") != 1 {
		t.Fatalf("the retry: %q, %v, counted %d; want relayed, counted once", answer, p.last, p.concurrent("0900"))
	}
	retry.answer(200)
	retry.bye()
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after the BYE", n)
	}
}

// TestReusedBranchAndCSeqCountedApart: a caller's INVITEs on her call's
// Call-ID and From tag that copy the first INVITE's branch and CSeq but
// not its sent-by (another port each) are other transactions. They were
// taken for the first INVITE's own transaction: relayed uncounted, four
// calls up under concurrent_calls_critical 3, and the failure of one
// released the call in progress. Each is refused 482 like any reuse, and
// ends nothing.
func TestReusedBranchAndCSeqCountedApart(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	first, _ := p.invite("alice", "0900100")
	first.answer(200)
	up := 1
	for port := 5081; port <= 5084; port++ {
		copied := reuse(first, fmt.Sprint("0900", port), first.cseq)
		copied.withVia = strings.Replace(first.via, "127.0.0.1:5080", fmt.Sprint("127.0.0.1:", port), 1)
		switch answer := copied.send(); answer {
		case "SIP/2.0 482 Loop Detected":
		case "":
			if port == 5084 {
				copied.answer(404)
			} else {
				copied.answer(200)
				up++
			}
		default:
			t.Fatalf("an INVITE copying the call's branch and CSeq: %q", answer)
		}
	}
	if n := p.concurrent("0900"); up != 1 || n != 1 {
		t.Fatalf("%d calls up on one Call-ID and From tag under critical 3, counted %d; want 1, 1", up, n)
	}
	first.bye()
	if n := p.concurrent("0900"); n != 0 {
		t.Fatalf("%d concurrent after the BYE", n)
	}
}

// TestForgedSpiralOfAnotherCaller: the callee of a call still ringing
// sees, in the INVITE it receives, our Via with the branch the call's
// INVITE was relayed on. Bob, alice's callee, sent INVITEs of his own
// (From bob, to premium numbers) with the Call-ID and From tag of her
// call and a copy of its Vias under his own: each looked like her INVITE
// passing through the proxy again (a spiral) and was relayed uncounted,
// four of his calls up under concurrent_calls_critical 3, counted for no
// one. A spiral is the call's only when it is its caller's: each of
// bob's is refused 482 like any reuse of the Call-ID and From tag, counted
// for no one and ending nothing, while alice's INVITE coming back through
// another proxy is still relayed and counted once.
func TestForgedSpiralOfAnotherCaller(t *testing.T) {
	p := concurrentProxy(t, envOptions{})
	p.rule(store.FraudRule{Prefix: "", ConcurrentCalls: store.FraudLimit{Critical: 10}})
	a, _ := p.invite("alice", "1002") // bob's phone rings, at the callee's address
	if p.stats("alice@example.com", "").ConcurrentCalls != 1 {
		t.Fatal("alice's call not counted")
	}
	up := 0
	for n := 1; n <= 4; n++ {
		forged := strings.NewReplacer(
			"INVITE sip:1002@", fmt.Sprintf("INVITE sip:0900%03d@", n),
			"From: <sip:alice@", "From: <sip:bob@",
			"Contact: <sip:alice@127.0.0.1:5080>", "Contact: <sip:bob@127.0.0.1:5070>",
			"\r\nVia: ", fmt.Sprintf("\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bob-%d;rport\r\nVia: ", n),
		).Replace(a.relay)
		p.take()
		p.receive(callee, forged)
		var relayed string
		answer := ""
		for _, m := range p.take() {
			switch {
			case strings.HasPrefix(m, "INVITE "):
				relayed = m
			case strings.HasPrefix(m, "SIP/2.0 ") && !strings.HasPrefix(m, "SIP/2.0 1"):
				answer = m[:strings.Index(m, "\r\n")]
			}
		}
		switch {
		case relayed != "":
			(&testCall{p: p, relay: relayed}).answer(200)
			up++
		case answer != "SIP/2.0 482 Loop Detected":
			t.Fatalf("bob's INVITE %d on alice's Call-ID and From tag with her Vias: %q, want 482", n, answer)
		}
	}
	if up != 0 || p.stats("bob@example.com", "0900").ConcurrentCalls != 0 {
		t.Fatalf("bob's INVITEs made to look like alice's spiral: %d up, counted %d for bob; want 0 up (482)",
			up, p.stats("bob@example.com", "0900").ConcurrentCalls)
	}
	if p.counter(`switchboard_fraud_calls_in_use_total`) != 4 {
		t.Errorf("in use: %v, want 4", p.counter(`switchboard_fraud_calls_in_use_total`))
	}
	// Alice's INVITE through another proxy and back (a real spiral) is
	// still her call: relayed, counted once; its failure ends nothing.
	const other = "127.0.0.1:5099"
	spiral := strings.NewReplacer("INVITE sip:1002@", "INVITE sip:1003@",
		"\r\nVia: ", "\r\nVia: SIP/2.0/UDP "+other+";branch=z9hG4bKother\r\nVia: ").Replace(a.relay)
	p.take()
	p.receive(netip.MustParseAddrPort(other), spiral)
	second := &testCall{p: p}
	for _, m := range p.take() {
		if strings.HasPrefix(m, "INVITE sip:1003@") {
			second.relay = m
		}
	}
	if second.relay == "" || p.stats("alice@example.com", "").ConcurrentCalls != 1 {
		t.Fatalf("alice's spiral: relayed %v, counted %d; want relayed, 1", second.relay != "", p.stats("alice@example.com", "").ConcurrentCalls)
	}
	second.answer(404)
	a.answer(200)
	a.bye()
	if n, m := p.stats("alice@example.com", "").ConcurrentCalls, p.stats("bob@example.com", "0900").ConcurrentCalls; n != 0 || m != 0 {
		t.Fatalf("after alice's BYE: alice %d, bob %d concurrent; want 0, 0", n, m)
	}
}
