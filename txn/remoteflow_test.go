package txn

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// remoteTable is a RemoteFlows as package anycast's relay keeps one: ids
// for (holder, connection) pairs, the holders that are alive, and what was
// handed to them. The core under test only sees the interface.
type remoteTable struct {
	mu    sync.Mutex
	l     *transport.Listener
	alive map[[6]byte]netip.AddrPort // holder → relay address
	flows []remoteEntry
	sent  []remoteSend
	full  bool
}

type remoteEntry struct {
	holder [6]byte
	id     uint64
	proto  transport.Proto
	local  netip.AddrPort
}

type remoteSend struct {
	f    transport.ConnID
	data string
	tag  transport.Tag
}

func (rt *remoteTable) RemoteFlow(holder [6]byte, id uint64, proto transport.Proto, local netip.AddrPort) transport.ConnID {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for i, e := range rt.flows {
		if e.holder == holder && e.id == id {
			return RemoteFlowBit | transport.ConnID(i+1)
		}
	}
	if rt.full {
		return 0
	}
	rt.flows = append(rt.flows, remoteEntry{holder, id, proto, local})
	return RemoteFlowBit | transport.ConnID(len(rt.flows))
}

func (rt *remoteTable) RemoteFlowInfo(f transport.ConnID) (*transport.Listener, netip.AddrPort, [6]byte, uint64, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	i := int(f&^RemoteFlowBit) - 1
	if i < 0 || i >= len(rt.flows) {
		return nil, netip.AddrPort{}, [6]byte{}, 0, false
	}
	e := rt.flows[i]
	relay, ok := rt.alive[e.holder]
	return rt.l, relay, e.holder, e.id, ok
}

func (rt *remoteTable) SendRemoteFlow(f transport.ConnID, data []byte, tag transport.Tag) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.sent = append(rt.sent, remoteSend{f, string(data), tag})
	return nil
}

func (rt *remoteTable) take() []remoteSend {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	s := rt.sent
	rt.sent = nil
	return s
}

var relayA = netip.MustParseAddrPort("10.0.0.1:5099")

// twoNodes returns node A (holds connection 7, the phone's) and node B,
// sharing the Record-Route secret, with B's remote flows; A is alive.
func twoNodes(t *testing.T) (a, b *harness, afs *flowSender, rt *remoteTable) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	var fs *flowSender
	a = newHarness(t, func(c *Config) {
		c.RouteSecret = secret
		cs := &connSender{recSender: c.Sender.(*recSender), closed: map[transport.ConnID]bool{}}
		fs = &flowSender{connSender: cs, open: map[transport.ConnID]netip.AddrPort{7: phoneAddr}}
		c.Sender = fs
	})
	fs.tcp = a.tcp
	b = newHarness(t, func(c *Config) { c.RouteSecret = secret })
	rt = &remoteTable{l: b.tcp, alive: map[[6]byte]netip.AddrPort{[6]byte(a.core.prefix[7:]): relayA}}
	b.core.SetRemoteFlows(rt)
	return a, b, fs, rt
}

// TestRemoteFlowInDialog: node A record-routes a call from a phone on its
// connection 7; the callee's BYE lands on node B, which verifies A's flow
// token, keeps the transaction and hands the BYE to A (tagged, with B's
// own Via and branch; an ACK untagged); when A reports the connection gone the BYE gets 430
// at once. A token of a node that is not alive, or of an earlier run,
// gets 430 and is handed to nobody.
func TestRemoteFlowInDialog(t *testing.T) {
	a, b, afs, rt := twoNodes(t)
	a.inConn(phoneAddr, 7, obInvite("remote@dlg"))
	invs := a.expectTo(a.snd.take(), uasAddr)
	if len(invs) != 1 {
		t.Fatal("INVITE not relayed by A")
	}
	rr := recordRoutes(t, &invs[0])
	afs.takeConn()
	if !strings.Contains(rr[1], "flow="+string(a.core.prefix[7:])+"0000000000000007") {
		t.Fatalf("A's token %q does not name A and connection 7", rr[1])
	}

	// An ACK (no transaction) is handed over untagged.
	b.in(uasAddr, inDialogFromCallee("ACK", "z9hG4bKrack1", "remote@dlg", rr))
	sent := rt.take()
	if len(sent) != 1 || !strings.HasPrefix(sent[0].data, "ACK ") || sent[0].tag != (transport.Tag{}) {
		t.Fatalf("ACK not handed to A untagged: %+v", sent)
	}

	b.in(uasAddr, inDialogFromCallee("BYE", "z9hG4bKrbye1", "remote@dlg", rr))
	sent = rt.take()
	if len(sent) != 1 || !strings.HasPrefix(sent[0].data, "BYE ") || sent[0].tag == (transport.Tag{}) {
		t.Fatalf("BYE not handed to A with a tag: %+v; sent %s", sent, describe(b.snd.take()))
	}
	if v := header(sent[0].data, "Via"); !strings.HasPrefix(v, "SIP/2.0/TCP 127.0.0.1:5060;branch="+b.core.BranchPrefix()) {
		t.Fatalf("Via %q: want B's TCP listener and branch", v)
	}
	if _, _, holder, id, _ := rt.RemoteFlowInfo(sent[0].f); holder != [6]byte(a.core.prefix[7:]) || id != 7 {
		t.Fatalf("handed to %q connection %d", holder[:], id)
	}
	if got := b.snd.take(); len(b.expectTo(got, phoneAddr)) != 0 {
		t.Fatal("B sent to the phone itself")
	}

	// A finds the connection gone: B answers 430 without waiting.
	b.core.SendFailed(transport.SendFailure{Conn: sent[0].f, Tag: sent[0].tag, Err: transport.ErrNoConn})
	resp := b.expectTo(b.snd.take(), uasAddr)
	if len(resp) == 0 || status(&resp[len(resp)-1]) != 430 {
		t.Fatalf("want 430 after the holder's report, got %d responses", len(resp))
	}
	// A report for another flow, or a stale one, changes nothing.
	b.in(uasAddr, inDialogFromCallee("INFO", "z9hG4bKrinfo1", "remote@dlg", rr))
	sent = rt.take()
	if len(sent) != 1 {
		t.Fatalf("INFO handed %d times", len(sent))
	}
	b.snd.take()
	b.core.SendFailed(transport.SendFailure{Conn: sent[0].f + 1, Tag: sent[0].tag})
	if got := b.snd.take(); len(got) != 0 {
		t.Fatalf("a report naming another flow ended the branch: %s", describe(got))
	}

	// A stops being heard: 430 at once, nothing handed over.
	rt.mu.Lock()
	delete(rt.alive, [6]byte(a.core.prefix[7:]))
	rt.mu.Unlock()
	b.in(uasAddr, inDialogFromCallee("BYE", "z9hG4bKrbye2", "remote@dlg", rr))
	resp = b.expectTo(b.snd.take(), uasAddr)
	if len(resp) == 0 || status(&resp[len(resp)-1]) != 430 {
		t.Fatalf("holder gone: want 430, got %d responses", len(resp))
	}
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("handed to a holder that is gone: %+v", s)
	}

	// Without remote flows (a single node that restarted: the prefix in
	// the token is no one's), the same: 430, and no connection used.
	c := newHarness(t, func(c *Config) { c.RouteSecret = []byte("0123456789abcdef0123456789abcdef") })
	var kinds []RouteKind
	c.rt.request = func(r *Request) {
		kinds = append(kinds, r.RouteKind())
		r.Relay()
	}
	c.in(uasAddr, inDialogFromCallee("BYE", "z9hG4bKrbye3", "remote@dlg", rr))
	resp = c.expectTo(c.snd.take(), uasAddr)
	if len(kinds) != 1 || kinds[0] != RouteDialog || len(resp) == 0 || status(&resp[len(resp)-1]) != 430 {
		t.Fatalf("a token of an earlier run: route %v, want dialog and 430", kinds)
	}
}

// TestRemoteFlowSetFlow: B's lookup sends a call over a flow A holds (the
// registrar gives the RemoteFlows id): B hands the INVITE to A, its
// Record-Route facing the phone names A's connection (so that A takes an
// in-dialog request from the phone over it for its own flow, and sends
// one from the other side over it); 430 at once when A is gone, and when
// the table has no room for another flow.
func TestRemoteFlowSetFlow(t *testing.T) {
	a, b, afs, rt := twoNodes(t)
	f := b.core.FlowByName(string(a.core.prefix[7:])+".7", transport.TCP, proxyAddr)
	if f&RemoteFlowBit == 0 {
		t.Fatalf("FlowByName gave %x, want a remote flow", f)
	}
	if name, ok := b.core.FlowName(f); !ok || name != string(a.core.prefix[7:])+".7" {
		t.Fatalf("FlowName %q %v", name, ok)
	}
	if own := a.core.FlowByName(string(a.core.prefix[7:])+".7", transport.TCP, proxyAddr); own != 7 {
		t.Fatalf("A's own flow by name: %x, want 7", own)
	}
	for _, bad := range []string{"", "abc.7", string(a.core.prefix[7:]) + ".0", string(a.core.prefix[7:]) + ".x"} {
		if got := b.core.FlowByName(bad, transport.TCP, proxyAddr); got != 0 {
			t.Errorf("FlowByName(%q) = %x", bad, got)
		}
	}
	var alive []bool
	b.rt.request = func(r *Request) {
		alive = append(alive, r.FlowAlive(f))
		r.RecordRoute()
		r.SetFlow(f)
		r.Relay()
	}
	b.in(uacAddr, request("INVITE", "z9hG4bKrsf1", "remote@set", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	sent := rt.take()
	if len(sent) != 1 || !strings.HasPrefix(sent[0].data, "INVITE ") || !alive[0] {
		t.Fatalf("INVITE not handed to A: %+v (alive %v)", sent, alive)
	}
	var pm parser.Message
	if err := pm.Parse([]byte(sent[0].data)); err != nil {
		t.Fatal(err)
	}
	rr := recordRoutes(t, &pm)
	if len(rr) != 2 || !strings.Contains(rr[0], ";transport=tcp;lr;flow="+string(a.core.prefix[7:])+"0000000000000007") {
		t.Fatalf("Record-Route %q: want the phone's side naming A's connection 7", rr)
	}
	// The caller's BYE lands on A: A's own connection 7, by B's token.
	a.in(uacAddr, `BYE sip:alice@192.0.2.10:5999;transport=tcp;ob SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKrbyeA
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=a1
To: <sip:bob@127.0.0.1>;tag=callee
Call-ID: remote@set
CSeq: 2 BYE
Route: <`+rr[1]+`>, <`+rr[0]+`>

`)
	got := afs.takeConn()
	if len(got) != 1 || got[0].id != 7 || !strings.HasPrefix(got[0].data, "BYE ") {
		t.Fatalf("A did not send the caller's BYE over its connection 7: %q; sent %s", connLines(got), describe(a.snd.take()))
	}

	b.snd.take()
	rt.mu.Lock()
	delete(rt.alive, [6]byte(a.core.prefix[7:]))
	rt.mu.Unlock()
	b.in(uacAddr, request("INVITE", "z9hG4bKrsf2", "remote@set2", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	var codes []int
	for _, m := range b.expectTo(b.snd.take(), uacAddr) {
		codes = append(codes, status(&m))
	}
	if len(codes) == 0 || codes[len(codes)-1] != 430 || alive[1] {
		t.Fatalf("holder gone: responses %v (alive %v), want 430 last", codes, alive)
	}
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("handed to a holder that is gone: %+v", s)
	}

	rt.mu.Lock()
	rt.full = true
	rt.mu.Unlock()
	if got := b.core.FlowByName("qqqqqq.9", transport.TCP, proxyAddr); got != deadFlow {
		t.Fatalf("a full table gave %x, want a flow that is never open", got)
	}
}

// TestRemoteFlowResend: a branch request handed to the holder goes once
// more, tagged and unchanged, after T1 without a response (the datagram
// between the nodes may be lost, and nothing else would send it again),
// and never a third time; a response before T1 (a provisional, or the
// final of a non-INVITE) stops it, as does the holder's report that the
// connection is gone (the branch ended with 430).
func TestRemoteFlowResend(t *testing.T) {
	_, b, _, rt := twoNodes(t)
	f := b.core.FlowByName("qqqqqq.7", transport.TCP, proxyAddr)
	rt.mu.Lock()
	rt.alive[[6]byte([]byte("qqqqqq"))] = relayA
	rt.mu.Unlock()
	b.rt.request = func(r *Request) {
		r.SetFlow(f)
		r.Relay()
	}
	t1 := b.core.t1

	// INVITE, no answer: sent twice, the same bytes and tag.
	b.in(uacAddr, request("INVITE", "z9hG4bKrs1", "resend@1", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	first := rt.take()
	if len(first) != 1 || first[0].f != f || first[0].tag == (transport.Tag{}) {
		t.Fatalf("INVITE not handed over tagged: %+v", first)
	}
	b.advance(msDur(t1) - time.Millisecond)
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("sent again before T1: %+v", s)
	}
	b.advance(2 * time.Millisecond)
	again := rt.take()
	if len(again) != 1 || again[0] != first[0] {
		t.Fatalf("after T1: %+v, want the same hand-off once more", again)
	}
	b.advance(20 * msDur(t1))
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("sent a third time: %d", len(s))
	}

	// INVITE answered 100 before T1: sent once.
	b.in(uacAddr, request("INVITE", "z9hG4bKrs2", "resend@2", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	sent := rt.take()
	if len(sent) != 1 {
		t.Fatalf("INVITE handed %d times", len(sent))
	}
	b.inProto(phoneAddr, transport.TCP, respond(sent[0].data, 100, ""))
	b.advance(4 * msDur(t1))
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("sent again after a 100: %d", len(s))
	}

	// MESSAGE answered 200 before T1: sent once; unanswered: twice.
	msg := func(branch, callID string) {
		b.in(uacAddr, request("MESSAGE", branch, callID, "sip:alice@192.0.2.10:5999;transport=tcp;ob", ""))
	}
	msg("z9hG4bKrs3", "resend@3")
	sent = rt.take()
	b.inProto(phoneAddr, transport.TCP, respond(sent[0].data, 200, "ph"))
	b.advance(4 * msDur(t1))
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("MESSAGE sent again after its 200: %d", len(s))
	}
	msg("z9hG4bKrs4", "resend@4")
	rt.take()
	b.advance(4 * msDur(t1))
	if s := rt.take(); len(s) != 1 || !strings.HasPrefix(s[0].data, "MESSAGE ") {
		t.Fatalf("unanswered MESSAGE: %d hand-offs after T1, want 1", len(s))
	}

	// The holder reports the connection gone before T1: 430, nothing more.
	b.snd.take()
	b.in(uacAddr, request("INVITE", "z9hG4bKrs5", "resend@5", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	sent = rt.take()
	b.core.SendFailed(transport.SendFailure{Conn: sent[0].f, Tag: sent[0].tag, Err: transport.ErrNoConn})
	var codes []int
	for _, m := range b.expectTo(b.snd.take(), uacAddr) {
		codes = append(codes, status(&m))
	}
	if len(codes) == 0 || codes[len(codes)-1] != 430 {
		t.Fatalf("responses %v, want 430 last", codes)
	}
	b.advance(4 * msDur(t1))
	if s := rt.take(); len(s) != 0 {
		t.Fatalf("sent again after the holder's report: %d", len(s))
	}
}
