package rtpengine

import (
	"net"
	"strings"
	"testing"
	"time"

	"switchboard/modules/internal/routetest"
	"switchboard/modules/rtpengine/ng"
)

// An offer the proxy gave up on may still have been carried out: the
// rtpengine that did not answer in time (or whose answer was lost) holds
// a session, its ports allocated, that no BYE or failure route will ever
// delete (rtpengine keeps a one-sided call for its offer-timeout, an hour
// by default). These tests run the module against an ng peer on loopback
// that answers late or not at all.

// commandsNamed returns the commands cmd p received.
func commandsNamed(p *ngPeer, cmd string) []map[string]string {
	var out []map[string]string
	for _, c := range p.commands() {
		if c["command"] == cmd {
			out = append(out, c)
		}
	}
	return out
}

// callHashingTo returns inv with a Call-ID whose commands go first to
// in among set (as long as it is in service).
func callHashingTo(t *testing.T, inv string, set []*ng.Instance, in *ng.Instance) string {
	t.Helper()
	old := strings.SplitN(strings.SplitN(inv, "\r\nCall-ID: ", 2)[1], "\r\n", 2)[0]
	for i := 0; i < 1000; i++ {
		id := "hash" + itoa(i+1) + "-" + old
		if ng.SelectIn(set, []byte(id)).Same(in) {
			return strings.Replace(inv, "Call-ID: "+old, "Call-ID: "+id, 1)
		}
	}
	t.Fatal("no Call-ID hashes to the instance")
	return ""
}

// TestTimedOutOfferDeleted: rtpengine answers the offer after the module
// gave up (timeout × (retries + 1)): the caller gets 503 as before, and
// the session rtpengine opened all the same is deleted (the call's
// Call-ID and the caller's tag, the offer's own), counted.
func TestTimedOutOfferDeleted(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	s.Timeout, s.Retries = 20*time.Millisecond, 1
	e, h := newEngine(t, s)
	peer.delay.Store(int64(150 * time.Millisecond)) // past 2 × 20 ms

	h.Receive("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP))
	if r := waitSent(t, h, "SIP/2.0 5"); !strings.HasPrefix(r.Data, "SIP/2.0 503 Media Relay Unavailable\r\n") {
		t.Fatalf("caller got\n%s", r.Data)
	}
	offer := commandsNamed(peer, "offer")[0]
	d := sentCommand(peer, "delete", 3*time.Second)
	if d == nil {
		t.Fatalf("the session of a timed-out offer was never deleted: %v", peer.commands())
	}
	if d["call-id"] != offer["call-id"] || d["from-tag"] != offer["from-tag"] || d["to-tag"] != "" {
		t.Fatalf("delete %v for offer %v", d, offer)
	}
	if e.timeoutDeletes.Get() != 1 || e.timeoutDeletesDropped.Get() != 0 {
		t.Fatalf("deletes of timed-out offers: %d sent, %d dropped", e.timeoutDeletes.Get(), e.timeoutDeletesDropped.Get())
	}
}

// TestTimedOutOfferDeletedOnFailover: the instance the call hashes to
// does not answer the offer; the offer goes to the other instance of the
// set, which answers, and the call goes on with its SDP. The instance
// that timed out gets a delete of the session; the one that answered
// keeps the call.
func TestTimedOutOfferDeletedOnFailover(t *testing.T) {
	silent, good := newNGPeer(t), newNGPeer(t)
	silent.silent.Store(true)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + silent.conn.LocalAddr().String(), "udp:" + good.conn.LocalAddr().String()}
	s.Timeout, s.Retries = 20*time.Millisecond, 1
	e, h := newEngine(t, s)
	set := e.snap.Load().sets[0]

	inv := callHashingTo(t, withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP), set, set[0])
	h.Receive("127.0.0.1:5070", inv)
	if fwd := waitSent(t, h, "INVITE "); !strings.Contains(fwd.Data, "m=audio 40000 RTP/AVP 0\r\n") {
		t.Fatalf("relayed INVITE:\n%s", fwd.Data)
	}
	lost, answered := commandsNamed(silent, "offer"), commandsNamed(good, "offer")
	if len(lost) != 2 || len(answered) != 1 {
		t.Fatalf("offers: %d to the silent instance, %d to the other", len(lost), len(answered))
	}
	d := sentCommand(silent, "delete", 3*time.Second)
	if d == nil {
		t.Fatalf("the silent instance never got a delete: %v", silent.commands())
	}
	if d["call-id"] != lost[0]["call-id"] || d["from-tag"] != lost[0]["from-tag"] || d["to-tag"] != "" {
		t.Fatalf("delete %v for offer %v", d, lost[0])
	}
	if d := sentCommand(good, "delete", 200*time.Millisecond); d != nil {
		t.Fatalf("the instance that answered got a delete: %v", d)
	}
	if e.timeoutDeletes.Get() != 1 {
		t.Fatalf("deletes of timed-out offers: %d", e.timeoutDeletes.Get())
	}
}

// TestTimedOutReofferKeepsTheCallsSession: a re-INVITE's offer to the
// instance the call lives on times out, then to a second instance, and a
// third answers. The second gets a delete of what the offer opened there;
// the call's own instance gets none (its session carries the call's media
// until the re-INVITE is answered, and for good if it is refused).
func TestTimedOutReofferKeepsTheCallsSession(t *testing.T) {
	home, second, third := newNGPeer(t), newNGPeer(t), newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + home.conn.LocalAddr().String(), "udp:" + second.conn.LocalAddr().String(), "udp:" + third.conn.LocalAddr().String()}
	s.Timeout, s.Retries = 20*time.Millisecond, 1
	e, h := newEngine(t, s)
	set := e.snap.Load().sets[0]

	inv := callHashingTo(t, withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP), set, set[0])
	h.Receive("127.0.0.1:5070", inv)
	fwd := waitSent(t, h, "INVITE ")
	h.Receive("127.0.0.1:5080", respond(fwd.Data, "200", "OK", "b1", answerSDP))
	waitSent(t, h, "SIP/2.0 200 OK")
	waitCommand(t, home, 2, "answer")

	home.silent.Store(true)
	second.silent.Store(true)
	reinv := replaceAll(inv, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", "CSeq: 1 INVITE", "CSeq: 2 INVITE", "branch=z9hG4bK.t", "branch=z9hG4bK.re")
	h.Receive("127.0.0.1:5070", reinv)
	if fwd := waitSent(t, h, "INVITE "); !strings.Contains(fwd.Data, "m=audio 40000 RTP/AVP 0\r\n") {
		t.Fatalf("relayed re-INVITE:\n%s", fwd.Data)
	}
	if len(commandsNamed(second, "offer")) != 2 || len(commandsNamed(third, "offer")) != 1 {
		t.Fatalf("re-offers: home %v, second %v, third %v", home.commands(), second.commands(), third.commands())
	}
	d := sentCommand(second, "delete", 3*time.Second)
	if d == nil || d["from-tag"] != commandsNamed(second, "offer")[0]["from-tag"] || d["to-tag"] != "b1" {
		t.Fatalf("the second instance's delete: %v", d)
	}
	if d := sentCommand(home, "delete", 200*time.Millisecond); d != nil {
		t.Fatalf("the call's own session was deleted: %v", d)
	}
}

// TestTimeoutDeletesBounded: deletes of timed-out offers wait in a queue
// of maxTimeoutDeletes and at most maxTimeoutDeletesInFlight are sent at
// once; past that they are dropped and counted (a caller making offers
// time out by the thousand, against a wedged rtpengine, holds no more).
func TestTimeoutDeletesBounded(t *testing.T) {
	// A socket nobody reads: no command is ever answered.
	mute, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	s := DefaultSettings()
	s.Instances = []string{"udp:" + mute.LocalAddr().String()}
	s.Timeout, s.Retries = 2*time.Second, 0
	e, _ := newEngine(t, s)
	in := e.snap.Load().sets[0][0]
	const extra = 100
	for i := 0; i < maxTimeoutDeletes+maxTimeoutDeletesInFlight+extra; i++ {
		e.queueDelete(in, "call"+itoa(i+1), "tag", "")
	}
	if got := e.timeoutDeletesDropped.Get(); got < extra || got > maxTimeoutDeletes+maxTimeoutDeletesInFlight+extra {
		t.Fatalf("dropped %d", got)
	}
	for deadline := time.Now().Add(3 * time.Second); e.client.Pending() < maxTimeoutDeletesInFlight; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d deletes in flight", e.client.Pending())
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := e.client.Pending(); n != maxTimeoutDeletesInFlight {
		t.Fatalf("%d deletes in flight, want %d", n, maxTimeoutDeletesInFlight)
	}
}
