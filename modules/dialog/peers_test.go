package dialog

import (
	"strings"
	"testing"

	"switchboard/parser"
	"switchboard/routing"
)

// peerRoute makes e's in-dialog requests go to MatchDialogID for the
// dialog id and side the test sets, records the peer it returned, and
// relays (the harness records what is sent) or answers 404.
type peerRoute struct {
	id    uint64
	from  Side
	got   []string // "target | route", or "-" for false
	slots []int64
}

func (p *peerRoute) install(e *env, flags uint32) {
	e.beforeRelay = func(c *routing.Ctx) bool {
		p.id = uint64(c.Value(SlotDialog))
		if flags != 0 && !e.d.SetFlag(c, flags) {
			e.t.Fatal("SetFlag refused")
		}
		return true
	}
	inner := e.Route
	e.Route = func(c *routing.Ctx) {
		if !c.HasToTag() {
			inner(c)
			return
		}
		var buf [2048]byte
		peer, ok := e.d.MatchDialogID(c, p.id, p.from, buf[:0])
		p.slots = append(p.slots, c.Value(SlotDialog))
		if !ok {
			p.got = append(p.got, "-")
			if !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(404, "Not here", nil)
			}
			return
		}
		p.got = append(p.got, string(peer.Target)+" | "+string(peer.Route))
		c.Relay()
	}
}

func (p *peerRoute) last() string { return p.got[len(p.got)-1] }

// TestMatchDialogIDPeers: with FlagPeers, a forked call's early dialogs
// each give the caller's requests (PRACK) the Contact and route set of
// the branch whose To tag they carry; once one answers, that branch's,
// and the other fork's tag matches nothing. The callee's requests get the
// caller's Contact and the INVITE's Record-Route. A request whose tags
// are those of the other side than the one claimed is refused and
// counted. A target refresh (re-INVITE from the callee, 2xx from the
// caller) moves both targets; a BYE ends the dialog, after which nothing
// matches. SlotDialog holds the id after every match.
func TestMatchDialogIDPeers(t *testing.T) {
	e := newEnv(t, nil)
	p := &peerRoute{from: Caller}
	p.install(e, FlagPeers)
	inner := e.beforeRelay
	e.beforeRelay = func(c *routing.Ctx) bool {
		c.AppendBranch([]byte("sip:bob@" + callee2))
		return inner(c)
	}
	c := e.invite("peers-1")
	c.respond(0, 180, "b1")
	c.respond(1, 183, "b2")
	const calleeRoute = "<sip:10.0.0.7;lr;callee-side>"
	c.inDialog("PRACK", true, "b2", 11)
	if want := "sip:bob@" + callee2 + ";transport=udp | " + calleeRoute; p.last() != want {
		t.Fatalf("PRACK to the second fork: peer %q, want %q", p.last(), want)
	}
	c.inDialog("PRACK", true, "b1", 12)
	if want := "sip:bob@" + calleeAddr + ";transport=udp | " + calleeRoute; p.last() != want {
		t.Fatalf("PRACK to the first fork: peer %q, want %q", p.last(), want)
	}
	// Claimed to come from the callee, tags of the caller.
	p.from = Callee
	mis := e.d.mismatched.Get()
	c.inDialog("UPDATE", true, "b1", 13)
	if p.last() != "-" || e.d.mismatched.Get() != mis+1 {
		t.Fatalf("a request of the caller taken as the callee's: %q", p.last())
	}
	p.from = Caller
	c.respond(0, 200, "b1")
	e.wantCount(t, 0, 0, 1)
	c.inDialog("INFO", true, "b2", 14)
	if p.last() != "-" {
		t.Fatalf("the fork that did not answer still matches: %q", p.last())
	}
	c.inDialog("INFO", true, "b1", 15)
	if want := "sip:bob@" + calleeAddr + ";transport=udp | " + calleeRoute; p.last() != want {
		t.Fatalf("INFO to the callee: peer %q, want %q", p.last(), want)
	}
	p.from = Callee
	c.inDialog("INFO", false, "b1", 1)
	if want := "sip:alice@" + callerAddr + " | <sip:10.0.0.9;lr;caller-side>"; p.last() != want {
		t.Fatalf("INFO to the caller: peer %q, want %q", p.last(), want)
	}
	for i, v := range p.slots {
		if (p.got[i] != "-") != (v == int64(p.id)) {
			t.Fatalf("request %d: SlotDialog %d, matched %q", i, v, p.got[i])
		}
	}

	// A re-INVITE from the callee with a new Contact, answered by the
	// caller from a new one.
	sent := c.send(calleeAddr, "INVITE sip:alice@"+callerAddr+" SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP "+calleeAddr+";branch=z9hG4bKreinv-peers\r\nMax-Forwards: 70\r\n"+
		"From: <sip:bob@example.com>;tag=b1\r\nTo: \"Alice\" <sip:alice@example.com>;tag=atag-peers-1\r\n"+
		"Call-ID: peers-1\r\nCSeq: 2 INVITE\r\nContact: <sip:bob@10.1.1.1:5080>\r\nContent-Length: 0\r\n\r\n")
	var fwd string
	for _, s := range sent {
		if strings.HasPrefix(s.Data, "INVITE ") {
			fwd = s.Data
		}
	}
	var m parser.Message
	if err := m.Parse([]byte(fwd)); err != nil {
		t.Fatalf("re-INVITE not relayed: %v", err)
	}
	c.send(callerAddr, string(parser.AppendResponseHeaders(nil, &m, 200, nil, nil, []byte("Contact: <sip:alice@10.2.2.2:5070>\r\n"))))
	c.inDialog("INFO", false, "b1", 3)
	if want := "sip:alice@10.2.2.2:5070 | <sip:10.0.0.9;lr;caller-side>"; p.last() != want {
		t.Fatalf("after the refresh, to the caller: %q, want %q", p.last(), want)
	}
	p.from = Caller
	c.inDialog("BYE", true, "b1", 16)
	if want := "sip:bob@10.1.1.1:5080 | " + calleeRoute; p.last() != want {
		t.Fatalf("after the refresh, to the callee: %q, want %q", p.last(), want)
	}
	e.wantCount(t, 0, 0, 0)
	c.inDialog("BYE", true, "b1", 17)
	if p.last() != "-" {
		t.Fatal("a BYE matched the ended dialog")
	}
}

// TestMatchDialogIDWithoutPeers: without FlagPeers the early dialogs'
// Contacts are not kept: a request inside one gets false (and the
// dialog's buffer holds only the tags); the confirmed dialog's peers are
// there all the same.
func TestMatchDialogIDWithoutPeers(t *testing.T) {
	e := newEnv(t, nil)
	p := &peerRoute{from: Caller}
	p.install(e, 0)
	c := e.invite("nopeers-1")
	c.respond(0, 180, "b1")
	if g := e.only(t); g.peers != 0 {
		t.Fatalf("early peers kept without the flag: %b", g.peers)
	}
	c.inDialog("PRACK", true, "b1", 11)
	if p.last() != "-" {
		t.Fatalf("PRACK matched without the early peer: %q", p.last())
	}
	c.respond(0, 200, "b1")
	c.inDialog("INFO", true, "b1", 12)
	if want := "sip:bob@" + calleeAddr + ";transport=udp | <sip:10.0.0.7;lr;callee-side>"; p.last() != want {
		t.Fatalf("INFO to the callee: %q, want %q", p.last(), want)
	}
}
