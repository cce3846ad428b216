package txn

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
)

// RFC 4320 (non-INVITE transactions): §4.1 only a 100 as provisional,
// sent when the client's timer E reached T2 and nothing else was; §4.2 no
// 408; §4.3 no late response forwarded. Harness with the default T1 = 500
// ms and T2 = 4 s, so timer E reaches T2 at 3.5 s.

func TestTimerEAtT2(t *testing.T) {
	for _, c := range []struct{ t1, t2, want int64 }{
		{500, 4000, 3500}, // 500 + 1000 + 2000
		{100, 400, 300},
		{400, 4000, 6000}, // 400 + 800 + 1600 + 3200: E goes 3.2 s, then T2
		{4000, 4000, 0},   // E starts at T2
		{0, 4000, 4095},   // degenerate T1: 1 ms steps
	} {
		if got := timerEAtT2(c.t1, c.t2); got != c.want {
			t.Errorf("timerEAtT2(%d, %d) = %d, want %d", c.t1, c.t2, got, c.want)
		}
	}
}

// TestNonInviteTrying: the 100 goes out at 3.5 s, not before, only to an
// unanswered request, and answers the retransmissions after it. Neither a
// 180 from downstream nor one from the route reaches the UAC.
func TestNonInviteTrying(t *testing.T) {
	h := newHarness(t, nil)
	req := request("MESSAGE", "z9hG4bKtr1", "tr1@x", "sip:bob@127.0.0.1:5080", "")
	h.in(uacAddr, req)
	fwd := h.snd.take()[0].data
	h.in(uasAddr, respond(fwd, 180, "b"))
	h.only(h.snd.take())
	h.advance(3499 * time.Millisecond)
	for _, m := range h.snd.take() {
		if m.dst == uacAddr {
			t.Fatalf("sent to the UAC before 3.5 s: %s", firstLines([]sentMsg{m}))
		}
	}
	h.advance(time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	h.in(uacAddr, req)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	h.in(uasAddr, respond(fwd, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")

	// Answered before 3.5 s: no 100 at all.
	h.in(uacAddr, request("MESSAGE", "z9hG4bKtr2", "tr2@x", "sip:bob@127.0.0.1:5080", ""))
	fwd = h.snd.take()[0].data
	h.in(uasAddr, respond(fwd, 202, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 202 Accepted")
	h.advance(10 * time.Second)
	h.only(h.snd.take())

	// A route's provisional to a non-INVITE request is not sent either;
	// its final response is.
	h.rt.request = func(r *Request) {
		r.Reply(180, "")
		r.Reply(100, "")
		r.Reply(200, "")
	}
	h.in(uacAddr, request("OPTIONS", "z9hG4bKtr3", "tr3@x", "sip:127.0.0.1", ""))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.advance(10 * time.Second)
	h.only(h.snd.take())

	// A suspended route that answers after 3.5 s: 100, then its answer.
	var held *Request
	h.rt.request = func(r *Request) { held = r.Suspend() }
	h.in(uacAddr, request("OPTIONS", "z9hG4bKtr4", "tr4@x", "sip:127.0.0.1", ""))
	h.advance(3500 * time.Millisecond)
	h.only(h.snd.take(), toUAC+"SIP/2.0 100 Trying")
	held.Reply(200, "")
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// TestNonInviteTimeoutOtherBranchWins: branch 0 is silent (408 by timer F),
// branch 1 answered 404. The old choice kept the first of two 4xx, the
// 408; the 404 must go upstream instead.
func TestNonInviteTimeoutOtherBranchWins(t *testing.T) {
	h := newHarness(t, nil)
	var failed []int
	h.rt.request = func(r *Request) {
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.rt.failure = func(r *Request, best *parser.Message) { failed = append(failed, best.StatusCode()) }
	h.in(uacAddr, request("MESSAGE", "z9hG4bKow", "ow@x", "sip:bob@127.0.0.1:5080", ""))
	msgs := h.snd.take()
	h.only(msgs, toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0", toUA2+"MESSAGE sip:carol@127.0.0.1:5090 SIP/2.0")
	h.in(uas2Addr, respond(msgs[1].data, 404, "c"))
	h.only(h.snd.take())
	h.advance(32 * time.Second)
	var up []string
	for _, l := range firstLines(h.snd.take()) {
		if strings.HasPrefix(l, toUAC) {
			up = append(up, l)
		}
	}
	if len(up) != 2 || up[0] != toUAC+"SIP/2.0 100 Trying" || up[1] != toUAC+"SIP/2.0 404 Not Found" {
		t.Fatalf("upstream %q, want the 100 and the 404", up)
	}
	if len(failed) != 1 || failed[0] != 404 {
		t.Fatalf("failure route saw %v, want the 404", failed)
	}
}

// TestNonInvite408FromDownstream: a 408 received for a non-INVITE request
// is not relayed either; with another branch's final, that one is.
func TestNonInvite408FromDownstream(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKd408", "d408@x", "sip:bob@127.0.0.1:5080", ""))
	fwd := h.snd.take()[0].data
	h.in(uasAddr, respond(fwd, 408, "b"))
	h.only(h.snd.take())
	h.advance(DefaultWait)
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}

	h.rt.request = func(r *Request) {
		r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
		r.Relay()
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKd409", "d409@x", "sip:bob@127.0.0.1:5080", ""))
	msgs := h.snd.take()
	h.in(uasAddr, respond(msgs[0].data, 408, "b"))
	h.in(uas2Addr, respond(msgs[1].data, 486, "c"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 486 Busy Here")
}

// TestNonInviteTimeoutFailureRouteActs: the failure route sees the timeout
// and may still act: here it sends the request to another target, whose
// 200 goes upstream.
func TestNonInviteTimeoutFailureRouteActs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FR = 2 * time.Second })
	var failed []int
	h.rt.failure = func(r *Request, best *parser.Message) {
		failed = append(failed, best.StatusCode())
		if best.StatusCode() == 408 {
			r.AddBranch([]byte("sip:carol@127.0.0.1:5090"))
			if err := r.Relay(); err != nil {
				t.Errorf("relay from the failure route: %v", err)
			}
		}
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKfa", "fa@x", "sip:bob@127.0.0.1:5080", ""))
	h.snd.take()
	h.advance(2 * time.Second)
	msgs := h.snd.take()
	var next string
	for _, m := range msgs {
		if m.dst == uacAddr {
			t.Fatalf("sent upstream at timer F: %v", firstLines(msgs))
		}
		if m.dst == uas2Addr {
			next = m.data
		}
	}
	if next == "" {
		t.Fatalf("failure route's branch not sent: %v", firstLines(msgs))
	}
	h.in(uas2Addr, respond(next, 200, "c"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	if len(failed) != 1 || failed[0] != 408 {
		t.Fatalf("failure route saw %v", failed)
	}
}

// TestLateNonInviteResponseDropped (§4.3): once the transaction of a
// MESSAGE ended, a late 200 to it is not forwarded statelessly; a late
// 2xx to an INVITE still is (TestAcceptedAbsorbsRetransmissions).
func TestLateNonInviteResponseDropped(t *testing.T) {
	h := newHarness(t, nil)
	h.in(uacAddr, request("MESSAGE", "z9hG4bKlate", "late@x", "sip:bob@127.0.0.1:5080", ""))
	fwd := h.snd.take()[0].data
	h.in(uasAddr, respond(fwd, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.advance(DefaultWait + 5*time.Second) // timers J and K
	if n := h.core.Stats().Transactions; n != 0 {
		t.Fatalf("%d transactions left", n)
	}
	h.in(uasAddr, respond(fwd, 200, "b"))
	h.only(h.snd.take())
	if n := h.core.Stats().Stateless; n != 0 {
		t.Fatalf("%d late responses forwarded statelessly", n)
	}
}

// TestNonInviteTimeoutOverSockets: the real transport and clock, a MESSAGE
// to a next hop that never answers. The UAC's socket receives the 100 (at
// T1+2·T1 = 300 ms here) and nothing else: no 408 after timer F.
func TestNonInviteTimeoutOverSockets(t *testing.T) {
	rt := &e2eRouter{}
	p := startProxyRouter(t, func(c *Config) { c.FR = time.Second }, rt)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ua, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	uaPort := ua.LocalAddr().(*net.UDPAddr).Port
	msg := fixCL("MESSAGE sip:bob@" + silent.LocalAddr().String() + ` SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:` + strconv.Itoa(uaPort) + `;branch=z9hG4bKsock408;rport
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>
Call-ID: sock408@x
CSeq: 1 MESSAGE

hello`)
	if _, err := ua.WriteTo([]byte(msg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.udpPort}); err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 65536)
	ua.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
	for {
		n, _, err := ua.ReadFrom(buf)
		if err != nil {
			break
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		got = append(got, line)
	}
	if len(got) != 1 || got[0] != "SIP/2.0 100 Trying" {
		t.Fatalf("the UAC received %q, want only the 100", got)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.failures) != 1 || rt.failures[0] != 408 {
		t.Fatalf("failure route saw %v, want the timeout (408)", rt.failures)
	}
}
