package rtpengine

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/auth"
	"switchboard/modules/internal/routetest"
	"switchboard/routing"
)

// What a caller, a callee or a forked branch can make the module send to
// rtpengine by the order of its messages.

// relayRoute is the provider's use of Manage: relay once rtpengine
// answered, delete the session if the relay fails; with fork, an initial
// INVITE gets a second branch to 127.0.0.1:5090.
func relayRoute(e *Engine, f *Flags, fork bool) func(c *routing.Ctx) {
	return func(c *routing.Ctx) {
		e.Manage(c, f, func(c *routing.Ctx, err error) {
			if err != nil && e.Refuse(c, err) {
				return
			}
			if fork && !c.HasToTag() {
				c.AppendBranch([]byte("sip:bob@127.0.0.1:5090"))
			}
			if c.Relay() != nil {
				e.Delete(c)
				c.Reply(500, "Relay Failed")
			}
		})
	}
}

// sentCommand waits up to d for a command cmd to reach p.
func sentCommand(p *ngPeer, cmd string, d time.Duration) map[string]string {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		for _, c := range p.commands() {
			if c["command"] == cmd {
				return c
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
	}
}

func replaceAll(msg string, pairs ...string) string {
	for i := 0; i < len(pairs); i += 2 {
		msg = strings.Replace(msg, pairs[i], pairs[i+1], 1)
	}
	return msg
}

// TestOfferAfterCancel: an INVITE canceled (and its 487 acknowledged)
// while rtpengine is answering its offer: the transaction is gone when the
// answer comes, so the module deletes the session the offer opened at
// once; nothing else ever would.
func TestOfferAfterCancel(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	e, h := newEngine(t, s)
	h.Route = relayRoute(e, nil, false)
	peer.delay.Store(int64(300 * time.Millisecond))
	inv := withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP)
	h.Receive("127.0.0.1:5070", inv)
	cancel := replaceAll(strings.SplitN(inv, "Content-Type:", 2)[0], "INVITE sip:", "CANCEL sip:", "1 INVITE", "1 CANCEL") + "Content-Length: 0\r\n\r\n"
	h.Receive("127.0.0.1:5070", cancel)
	r487 := waitSent(t, h, "SIP/2.0 487")
	to := strings.SplitN(strings.SplitN(r487.Data, "\r\nTo: ", 2)[1], "\r\n", 2)[0]
	h.Receive("127.0.0.1:5070", replaceAll(cancel, "CANCEL sip:", "ACK sip:", "1 CANCEL", "1 ACK", "To: <sip:bob@example.com>", "To: "+to))
	h.Clock.Advance(6 * time.Second) // timer I
	waitCommand(t, peer, 1, "offer")
	d := sentCommand(peer, "delete", 3*time.Second)
	if d == nil {
		t.Fatalf("the session of a call canceled during its offer was never deleted: %v", peer.commands())
	}
	if d["call-id"] != peer.commands()[0]["call-id"] || d["from-tag"] != peer.commands()[0]["from-tag"] {
		t.Fatalf("delete %v for offer %v", d, peer.commands()[0])
	}
	if got := e.orphans.Get(); got != 1 {
		t.Fatalf("orphan offers counted: %d", got)
	}
}

// TestForkDeclineAfterAnswer: a forked call answered 200 by one phone;
// the other then answers 603 (a user declining at the same moment, a
// phone answering the CANCEL so): the answered call keeps its session.
func TestForkDeclineAfterAnswer(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	e, h := newEngine(t, s)
	h.Route = relayRoute(e, nil, true)
	h.Receive("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP))
	waitCommand(t, peer, 1, "offer")
	branches := map[string]string{}
	for deadline := time.Now().Add(3 * time.Second); len(branches) < 2 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, s := range h.Take() {
			branches[strings.SplitN(s.Data, " SIP/2.0", 2)[0]] = s.Data
		}
	}
	first, second := branches["INVITE sip:bob@127.0.0.1:5080"], branches["INVITE sip:bob@127.0.0.1:5090"]
	if first == "" || second == "" {
		t.Fatalf("branches relayed: %v", branches)
	}
	h.Receive("127.0.0.1:5080", respond(first, "200", "OK", "desk", answerSDP))
	waitCommand(t, peer, 2, "answer")
	h.Receive("127.0.0.1:5090", respond(second, "603", "Decline", "soft", ""))
	if d := sentCommand(peer, "delete", 500*time.Millisecond); d != nil {
		t.Fatalf("the answered call's session was deleted by the other branch's 603: %v", d)
	}
}

// TestDeleteInRouteSet: a BYE managed with flags of set 2 deletes the
// session in set 2 when the instance it was opened on is no longer
// remembered (past call_timeout, after a restart).
func TestDeleteInRouteSet(t *testing.T) {
	p0, p2 := newNGPeer(t), newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + p0.conn.LocalAddr().String(), "2 == udp:" + p2.conn.LocalAddr().String()}
	e, h := newEngine(t, s)
	h.Route = relayRoute(e, (*Flags)(nil).InSet(2), false)
	inv := routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "")
	h.Receive("127.0.0.1:5070", withSDP(inv, offerSDP))
	waitCommand(t, p2, 1, "offer")
	e.calls.sweep(time.Now().UnixMilli() + 1) // forgotten, as after call_timeout
	h.Receive("127.0.0.1:5070", replaceAll(inv, "INVITE sip:", "BYE sip:", "1 INVITE", "2 BYE", "branch=z9hG4bK.t", "branch=z9hG4bK.bye",
		"To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1"))
	if sentCommand(p2, "delete", 3*time.Second) == nil {
		t.Fatalf("no delete in set 2; the default set got %v", p0.commands())
	}
}

// TestAckWithManyCredentials: an ACK answering a late offer, carrying 46
// credentials for our realm, which the route consumes before Manage: the
// ACK forwarded carries rtpengine's SDP and the Content-Length of it.
func TestAckWithManyCredentials(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	e, h := newEngine(t, s)
	route := relayRoute(e, nil, false)
	h.Route = func(c *routing.Ctx) {
		auth.ConsumeCredentials(c)
		route(c)
	}
	creds := strings.Repeat("Proxy-Authorization: Digest username=\"a\", realm=\"example.com\", nonce=\"x\", uri=\"sip:b@example.com\", response=\"0\"\r\n", 46)
	ack := ackFor(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), "b1", "z9hG4bK.full", offerSDP)
	h.Receive("127.0.0.1:5070", strings.Replace(ack, "Content-Type:", creds+"Content-Type:", 1))
	fwd := waitSent(t, h, "ACK ").Data
	head, body, _ := strings.Cut(fwd, "\r\n\r\n")
	if cl := strings.SplitN(strings.SplitN(head, "Content-Length: ", 2)[1], "\r\n", 2)[0]; cl != itoa(len(body)) || !strings.Contains(body, "127.0.0.99") {
		t.Fatalf("forwarded ACK: Content-Length %s, body %d bytes:\n%s", cl, len(body), body)
	}
	if strings.Contains(head, "Proxy-Authorization") {
		t.Fatal("credentials for us relayed")
	}
}

// TestAnswerNamesTheRequestsCall: a callee's 200 naming another From tag
// (or Call-ID: a response is matched to its transaction by its branch)
// is answered to rtpengine for the call of the INVITE it answers, never
// for the call it names.
func TestAnswerNamesTheRequestsCall(t *testing.T) {
	peer := newNGPeer(t)
	s := DefaultSettings()
	s.Instances = []string{"udp:" + peer.conn.LocalAddr().String()}
	_, h := newEngine(t, s)
	h.Receive("127.0.0.1:5070", withSDP(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", ""), offerSDP))
	offer := waitCommand(t, peer, 1, "offer")
	fwd := waitSent(t, h, "INVITE ").Data
	// Another Call-ID would do too when it hashes to the transaction's
	// shard; the From tag is enough to show it.
	forged := strings.Replace(respond(fwd, "200", "OK", "b1", answerSDP), "tag="+offer["from-tag"], "tag=victim", 1)
	h.Receive("127.0.0.1:5080", forged)
	if a := waitCommand(t, peer, 2, "answer"); a["call-id"] != offer["call-id"] || a["from-tag"] != offer["from-tag"] || a["to-tag"] != "b1" {
		t.Fatalf("answer %v for offer %v", a, offer)
	}
}
