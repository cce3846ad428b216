package txn

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// outcome records what a Done function received.
type outcome struct {
	calls int
	code  int
	via   string
}

func (o *outcome) done(code int, resp *parser.Message) {
	o.calls++
	o.code = code
	if resp != nil {
		o.via = string(resp.TopVia().Branch)
	}
}

var gwAddr = netip.MustParseAddrPort("127.0.0.9:5060")

// TestSendRequestAnswered: an OPTIONS the proxy originates goes out with
// our Via, a fresh Call-ID and tag; a provisional does not end it, the 200
// is handed to done once and not forwarded anywhere; a retransmitted 200
// afterwards is dropped.
func TestSendRequestAnswered(t *testing.T) {
	h := newHarness(t, nil)
	var o outcome
	err := h.core.SendRequest(&OutRequest{Method: "OPTIONS", URI: "sip:127.0.0.9:5060", Proto: transport.UDP, Dst: gwAddr}, o.done)
	if err != nil {
		t.Fatal(err)
	}
	sent := h.snd.take()
	if len(sent) != 1 || sent[0].dst != gwAddr {
		t.Fatalf("sent: %s", describe(sent))
	}
	req := sent[0].data
	for _, want := range []string{"OPTIONS sip:127.0.0.9:5060 SIP/2.0\r\n", "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK", ";rport\r\n",
		"From: <sip:switchboard@127.0.0.1>;tag=", "To: <sip:127.0.0.9:5060>\r\n", "CSeq: 1 OPTIONS\r\n", "Max-Forwards: 70\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("request lacks %q:\n%s", want, req)
		}
	}
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		t.Fatalf("unparsable request: %v\n%s", err, req)
	}
	h.in(gwAddr, respond(req, 100, ""))
	if o.calls != 0 {
		t.Fatal("a provisional ended the request")
	}
	h.in(gwAddr, respond(req, 200, "gw"))
	if o.calls != 1 || o.code != 200 || o.via != topBranch(req) {
		t.Fatalf("done: %+v", o)
	}
	h.in(gwAddr, respond(req, 200, "gw"))
	h.advance(time.Minute)
	if o.calls != 1 {
		t.Fatalf("done called %d times", o.calls)
	}
	if sent := h.snd.take(); len(sent) != 0 {
		t.Fatalf("the responses were forwarded or the request retransmitted: %s", describe(sent))
	}
	if st := h.core.Stats(); st.ResponseLoops != 0 || st.Stateless != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestSendRequestRetransmitsAndTimesOut: over UDP the request is sent again
// at T1, 2·T1, ... up to T2, and done gets 408 at the timeout; two requests
// in flight have different branches and Call-IDs.
func TestSendRequestRetransmitsAndTimesOut(t *testing.T) {
	h := newHarness(t, nil)
	var o, o2 outcome
	req := &OutRequest{Method: "OPTIONS", URI: "sip:gw@127.0.0.9", Proto: transport.UDP, Dst: gwAddr, Timeout: 5 * time.Second,
		From: "sip:pinger@example.com", Headers: "X-Probe: 1\r\n"}
	if err := h.core.SendRequest(req, o.done); err != nil {
		t.Fatal(err)
	}
	if err := h.core.SendRequest(req, o2.done); err != nil {
		t.Fatal(err)
	}
	first := h.snd.take()
	if len(first) != 2 || topBranch(first[0].data) == topBranch(first[1].data) ||
		header(first[0].data, "Call-ID") == header(first[1].data, "Call-ID") || header(first[0].data, "X-Probe") != "1" ||
		!strings.HasPrefix(header(first[0].data, "From"), "<sip:pinger@example.com>;tag=") {
		t.Fatalf("first sends:\n%s\n%s", first[0].data, first[1].data)
	}
	// Retransmissions at 0.5, 1.5, 3.5 s (T1 doubling, capped at T2 = 4 s).
	var at []int
	for ms := 100; ms <= 4900; ms += 100 {
		h.advance(100 * time.Millisecond)
		if n := len(h.snd.take()); n > 0 {
			at = append(at, ms)
		}
	}
	if len(at) != 3 || at[0] != 500 || at[1] != 1500 || at[2] != 3500 {
		t.Errorf("retransmissions at %v ms", at)
	}
	if o.calls != 0 {
		t.Fatal("done before the timeout")
	}
	h.advance(200 * time.Millisecond)
	if o.calls != 1 || o.code != 408 || o2.code != 408 {
		t.Fatalf("after the timeout: %+v %+v", o, o2)
	}
	// A late answer is dropped.
	h.in(gwAddr, respond(first[0].data, 200, "gw"))
	if o.calls != 1 || len(h.snd.take()) != 0 {
		t.Fatal("late answer handled")
	}
}

// TestSendRequestRefused: destinations outside the allow-list, our own
// address, and INVITE are refused at once, done never called.
func TestSendRequestRefused(t *testing.T) {
	h := newHarness(t, nil)
	var o outcome
	for _, c := range []struct {
		req  OutRequest
		want error
	}{
		{OutRequest{Method: "OPTIONS", URI: "sip:x", Dst: netip.MustParseAddrPort("192.0.2.1:5060")}, ErrNotAllowed},
		{OutRequest{Method: "OPTIONS", URI: "sip:x", Dst: proxyAddr}, ErrOwnAddress},
		{OutRequest{Method: "OPTIONS", URI: "sip:x", Dst: netip.MustParseAddrPort("[::1]:5060")}, ErrNoDestination},
	} {
		if err := h.core.SendRequest(&c.req, o.done); !errors.Is(err, c.want) {
			t.Errorf("%v: %v, want %v", c.req.Dst, err, c.want)
		}
	}
	if err := h.core.SendRequest(&OutRequest{Method: "INVITE", URI: "sip:x", Dst: gwAddr}, o.done); err == nil {
		t.Error("INVITE accepted")
	}
	h.advance(time.Minute)
	if o.calls != 0 || len(h.snd.take()) != 0 {
		t.Fatalf("refused requests sent or answered: %+v", o)
	}
}

// TestSendRequestOverTCP: no retransmissions on a stream.
func TestSendRequestOverTCP(t *testing.T) {
	h := newHarness(t, nil)
	var o outcome
	if err := h.core.SendRequest(&OutRequest{Method: "OPTIONS", URI: "sip:127.0.0.9;transport=tcp", Proto: transport.TCP, Dst: gwAddr}, o.done); err != nil {
		t.Fatal(err)
	}
	sent := h.snd.take()
	if len(sent) != 1 || sent[0].l.Proto != transport.TCP || !strings.Contains(sent[0].data, "Via: SIP/2.0/TCP ") {
		t.Fatalf("sent: %+v", sent)
	}
	h.advance(10 * time.Second)
	if n := len(h.snd.take()); n != 0 {
		t.Errorf("%d retransmissions over TCP", n)
	}
	h.inProto(gwAddr, transport.TCP, respond(sent[0].data, 404, "gw"))
	if o.code != 404 {
		t.Fatalf("done: %+v", o)
	}
}
