package dialog

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/parser"
)

// answer sends the response code to a request the proxy sent, from
// where it went.
func (e *env) answer(t *testing.T, req routetest.Sent, code int) {
	t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(req.Data)); err != nil {
		t.Fatal(err)
	}
	e.Receive(req.Dst.String(), string(parser.AppendResponse(nil, &m, code, nil, nil)))
}

func isMethod(method string) func(routetest.Sent) bool {
	return func(s routetest.Sent) bool { return strings.HasPrefix(s.Data, method+" ") }
}

// pings waits for the next OPTIONS to each side (their retransmissions
// dropped) and returns them by destination.
func (e *env) pings(t *testing.T) map[string]routetest.Sent {
	t.Helper()
	out := map[string]routetest.Sent{}
	for len(out) < 2 {
		for _, s := range e.waitFor(t, 1, isMethod("OPTIONS")) {
			out[s.Dst.String()] = s
		}
	}
	return out
}

// TestPings: with ping_interval 1s, an answered call gets an in-dialog
// OPTIONS to each side once it is a second old, as the other side would
// send it, with a CSeq one below the other side's last; a 200 and a 500
// (CSeq out of order) both show a side is there. In the next round the
// callee does not answer (timer F: 64·T1): the call is ended with a BYE
// each way (reason ping, by the callee). Another call whose callee
// answers 481 (no such dialog there) is ended at once.
func TestPings(t *testing.T) {
	s := DefaultSettings()
	s.PingInterval = time.Second
	e := newEnvWith(t, s, envOptions{t1: 10 * time.Millisecond})
	c := e.invite("ping-1")
	c.respond(0, 200, "tp")
	c.inDialog("INFO", false, "tp", 5) // the callee's last: 5
	e.Take()
	time.Sleep(1200 * time.Millisecond) // a round over every shard: answered less than 1 s ago, not pinged
	if got := e.Take(); len(got) != 0 {
		t.Fatalf("pinged a call answered less than ping_interval ago: %v", got)
	}
	e.clock.Advance(time.Second)
	p := e.pings(t)
	want := map[string][4]string{
		calleeAddr: {"OPTIONS sip:bob@" + calleeAddr + ";transport=udp SIP/2.0", `"Alice" <sip:alice@example.com>;tag=atag-ping-1`, "<sip:bob@example.com>;tag=tp", "9 OPTIONS"},
		callerAddr: {"OPTIONS sip:alice@" + callerAddr + " SIP/2.0", "<sip:bob@example.com>;tag=tp", `"Alice" <sip:alice@example.com>;tag=atag-ping-1`, "4 OPTIONS"},
	}
	for dst, w := range want {
		m := p[dst].Data
		if firstLine(m) != w[0] || header(m, "From") != w[1] || header(m, "To") != w[2] || header(m, "CSeq") != w[3] || header(m, "Call-ID") != "ping-1" {
			t.Errorf("OPTIONS to %s:\n%s", dst, m)
		}
	}
	if r := header(p[calleeAddr].Data, "Route"); r != "<sip:10.0.0.7;lr;callee-side>" {
		t.Errorf("OPTIONS to the callee: Route %q", r)
	}
	e.answer(t, p[calleeAddr], 200)
	e.answer(t, p[callerAddr], 500)
	e.wantCount(t, 0, 0, 1)

	// Next round: the caller answers, the callee is gone.
	p = e.pings(t)
	e.answer(t, p[callerAddr], 200)
	byes := e.waitFor(t, 2, isMethod("BYE"))
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonPing) != 1 || e.d.pings.Get() < 4 {
		t.Fatalf("ended by ping %d, pings sent %d", e.ended(ReasonPing), e.d.pings.Get())
	}
	for _, b := range byes {
		if header(b.Data, "Call-ID") != "ping-1" {
			t.Fatalf("BYE %q", b.Data)
		}
	}

	c = e.invite("ping-2")
	c.respond(0, 200, "tq")
	e.clock.Advance(time.Second)
	p = e.pings(t)
	e.answer(t, p[calleeAddr], 481)
	e.waitFor(t, 2, isMethod("BYE"))
	if e.ended(ReasonPing) != 2 {
		t.Fatal("a 481 to the OPTIONS did not end the call")
	}
}
