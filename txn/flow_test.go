package txn

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"switchboard/parser"
	"switchboard/transport"
)

// flowSender is connSender plus ConnInfo, as *transport.Transport has:
// the open connections are those in open (all on the harness's TCP
// listener).
type flowSender struct {
	*connSender
	fmu  sync.Mutex
	open map[transport.ConnID]netip.AddrPort
	tcp  *transport.Listener
}

func (s *flowSender) ConnInfo(id transport.ConnID) (*transport.Listener, netip.AddrPort, bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	a, ok := s.open[id]
	return s.tcp, a, ok
}

func (s *flowSender) SendConn(id transport.ConnID, data []byte) error {
	s.fmu.Lock()
	_, ok := s.open[id]
	s.fmu.Unlock()
	if !ok {
		return transport.ErrNoConn
	}
	return s.connSender.SendConn(id, data)
}

func (s *flowSender) closeConn(id transport.ConnID) {
	s.fmu.Lock()
	delete(s.open, id)
	s.fmu.Unlock()
}

var phoneAddr = netip.MustParseAddrPort("127.0.0.1:40001")

func newFlowHarness(t *testing.T) (*harness, *flowSender) {
	var fs *flowSender
	h := newHarness(t, func(c *Config) {
		cs := &connSender{recSender: c.Sender.(*recSender), closed: map[transport.ConnID]bool{}}
		fs = &flowSender{connSender: cs, open: map[transport.ConnID]netip.AddrPort{
			7: phoneAddr, 8: netip.MustParseAddrPort("127.0.0.1:40002"),
		}}
		c.Sender = fs
	})
	fs.tcp = h.tcp
	return h, fs
}

// obInvite is an INVITE from a phone over TCP asking for outbound.
func obInvite(callID string) string {
	return strings.Replace(request("INVITE", "z9hG4bKob1", callID, "sip:bob@127.0.0.1:5080",
		"Contact: <sip:alice@192.0.2.10:5999;transport=tcp;ob>\n"), "SIP/2.0/UDP 127.0.0.1:5070", "SIP/2.0/TCP 192.0.2.10:5999", 1)
}

// recordRoutes returns the Record-Route values of a message sent.
func recordRoutes(t *testing.T, m *parser.Message) []string {
	t.Helper()
	var out []string
	it := m.NameAddrs(parser.HdrRecordRoute)
	for it.Next() {
		out = append(out, string(it.NameAddr.URI))
	}
	return out
}

// inDialogFromCallee is the callee's request in the dialog obInvite made,
// with the Route set it learnt from the Record-Route.
func inDialogFromCallee(method, branch, callID string, route []string) string {
	return `` + method + ` sip:alice@192.0.2.10:5999;transport=tcp;ob SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=` + branch + `
Max-Forwards: 70
From: <sip:bob@127.0.0.1>;tag=b1
To: <sip:alice@127.0.0.1>;tag=a1
Call-ID: ` + callID + `
CSeq: 2 ` + method + `
Route: <` + strings.Join(route, ">, <") + `>

`
}

// TestFlowRecordRoute: a dialog-forming request over a flow from a phone
// whose Contact has ";ob" is record-routed (though the route did not ask)
// with a double Record-Route whose value facing the phone carries its
// flow token; the callee's in-dialog request goes over that connection,
// whatever the phone's Contact says; once it has closed, the request gets
// 430 Flow Failed and no connection is opened.
func TestFlowRecordRoute(t *testing.T) {
	h, fs := newFlowHarness(t)
	h.inConn(phoneAddr, 7, obInvite("flow@rr"))
	invs := h.expectTo(h.snd.take(), uasAddr)
	if len(invs) != 1 {
		t.Fatal("INVITE not relayed")
	}
	rr := recordRoutes(t, &invs[0])
	if len(rr) != 2 || strings.Contains(rr[0], "flow=") || !strings.Contains(rr[1], ";transport=tcp;lr;flow=") {
		t.Fatalf("Record-Route %q: want the UDP side on top without a flow, the TCP side with one", rr)
	}
	fs.takeConn() // the 100 Trying

	// The callee's BYE goes over connection 7.
	bye := inDialogFromCallee("BYE", "z9hG4bKbye1", "flow@rr", rr)
	h.in(uasAddr, bye)
	got := fs.takeConn()
	if len(got) != 1 || got[0].id != 7 || !strings.HasPrefix(got[0].data, "BYE ") {
		t.Fatalf("BYE not sent over the flow: %q / %s", connLines(got), describe(h.snd.take()))
	}
	h.snd.take()

	// The phone's connection closes: the next request gets 430.
	fs.closeConn(7)
	h.in(uasAddr, inDialogFromCallee("INFO", "z9hG4bKinfo1", "flow@rr", rr))
	resp := h.expectTo(h.snd.take(), uasAddr)
	if len(resp) == 0 || status(&resp[len(resp)-1]) != 430 || string(resp[len(resp)-1].Reason()) != "Flow Failed" {
		t.Fatalf("want 430 Flow Failed, got %d responses", len(resp))
	}
	if got := fs.takeConn(); len(got) != 0 {
		t.Fatalf("sent on a connection: %q", connLines(got))
	}
}

// TestFlowTokenForged: a flow token changed to name another connection
// (with or without the dialog signature), made up, or from an earlier run
// of the process makes the Route forged and is never used: nothing goes
// over any connection.
func TestFlowTokenForged(t *testing.T) {
	h, fs := newFlowHarness(t)
	var kinds []RouteKind
	h.rt.request = func(r *Request) {
		kinds = append(kinds, r.RouteKind())
		r.Relay()
	}
	h.inConn(phoneAddr, 7, obInvite("flow@forged"))
	invs := h.expectTo(h.snd.take(), uasAddr)
	if len(invs) != 1 {
		t.Fatal("INVITE not relayed")
	}
	rr := recordRoutes(t, &invs[0])
	fs.takeConn()
	tok := rr[1][strings.Index(rr[1], "flow=")+5:][:flowTokenLen]

	h2, _ := newFlowHarness(t)
	earlier := string(h2.core.appendFlowToken(nil, 8, flowRR))
	forged := []string{
		strings.Replace(rr[1], tok, tok[:6]+"0000000000000008"+tok[22:], 1),               // the other connection's number, signed route
		strings.Replace(rr[1], tok, "zzzzzz"+tok[6:], 1),                                  // another node's, signed route
		strings.Replace(rr[1], tok, earlier, 1),                                           // a token under another secret, signed route
		"127.0.0.1:5060;transport=tcp;lr;flow=" + tok[:6] + "0000000000000008" + tok[22:], // unsigned
		"127.0.0.1:5060;transport=tcp;lr;flow=" + earlier,
		"127.0.0.1:5060;transport=tcp;lr;flow=zz",
		"127.0.0.1:5060;transport=tcp;lr;flow=" + tok, // a Record-Route token outside its signed route
	}
	for i, f := range forged {
		kinds = kinds[:0]
		route := []string{rr[0], "sip:" + strings.TrimPrefix(f, "sip:")}
		h.in(uasAddr, inDialogFromCallee("BYE", "z9hG4bKforged"+itoa(i), "flow@forged", route))
		if len(kinds) != 1 || kinds[0] != RouteForged {
			t.Errorf("%s: route kind %v, want forged", f, kinds)
		}
		if got := fs.takeConn(); len(got) != 0 {
			t.Errorf("%s: sent over a connection: %q", f, connLines(got))
		}
		h.snd.take()
	}
}

// TestFlowTokenPreloaded: a Record-Route token a party to a call saw,
// preloaded alone in the Route of a new request (where only Path tokens
// count), makes the route forged and reaches no connection.
func TestFlowTokenPreloaded(t *testing.T) {
	h, fs := newFlowHarness(t)
	var kinds []RouteKind
	h.rt.request = func(r *Request) {
		kinds = append(kinds, r.RouteKind())
		r.Relay()
	}
	tok := string(h.core.appendFlowToken(nil, 7, flowRR))
	h.in(uasAddr, request("INVITE", "z9hG4bKpre", "flow@preload", "sip:alice@192.0.2.10:5999;transport=tcp",
		"Route: <sip:127.0.0.1:5060;transport=tcp;lr;flow="+tok+">\n"))
	if len(kinds) != 1 || kinds[0] != RouteForged {
		t.Fatalf("route kind %v, want forged", kinds)
	}
	if got := fs.takeConn(); len(got) != 0 {
		t.Fatalf("sent over a connection: %q", connLines(got))
	}
}

// TestFlowTokenOnItsOwnFlow: a request that comes over the flow its token
// names goes the other way (RFC 5626 §5.3): by its Request-URI, not back
// to the phone.
func TestFlowTokenOnItsOwnFlow(t *testing.T) {
	h, fs := newFlowHarness(t)
	tok := string(h.core.appendFlowToken(nil, 7, flowPath))
	msg := strings.Replace(request("OPTIONS", "z9hG4bKown", "flow@own", "sip:bob@127.0.0.1:5080",
		"Route: <sip:127.0.0.1:5060;transport=tcp;lr;ob;flow="+tok+">\n"), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	h.inConn(phoneAddr, 7, msg)
	if got := h.expectTo(h.snd.take(), uasAddr); len(got) != 1 {
		t.Fatal("not sent to the Request-URI")
	}
	for _, m := range fs.takeConn() {
		if !strings.HasPrefix(m.data, "SIP/2.0 ") {
			t.Fatalf("request sent back over the flow: %q", m.data)
		}
	}
	// The same over another connection goes over connection 7.
	h.inConn(netip.MustParseAddrPort("127.0.0.1:40002"), 8, strings.Replace(msg, "z9hG4bKown", "z9hG4bKown2", 1))
	got := fs.takeConn()
	sent := false
	for _, m := range got {
		sent = sent || m.id == 7 && strings.HasPrefix(m.data, "OPTIONS ")
	}
	if !sent {
		t.Fatalf("not sent over the flow: %q", connLines(got))
	}
}

// TestSetFlow: a request the route sends over a flow (the registrar's
// lookup) goes over that connection, with the Record-Route facing it
// naming it; over a closed one the caller gets 430.
func TestSetFlow(t *testing.T) {
	h, fs := newFlowHarness(t)
	h.rt.request = func(r *Request) {
		r.RecordRoute()
		r.SetFlow(7)
		r.Relay()
	}
	h.in(uacAddr, request("INVITE", "z9hG4bKsf1", "flow@set", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	var inv string
	for _, m := range fs.takeConn() {
		if m.id == 7 && strings.HasPrefix(m.data, "INVITE ") {
			inv = m.data
		}
	}
	if inv == "" {
		t.Fatalf("INVITE not sent over the flow; sent: %s", describe(h.snd.take()))
	}
	var pm parser.Message
	if err := pm.Parse([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	if rr := recordRoutes(t, &pm); len(rr) != 2 || !strings.Contains(rr[0], ";transport=tcp;lr;flow=") || strings.Contains(rr[1], "flow=") {
		t.Fatalf("Record-Route %q: want the flow's side on top with its token", rr)
	}
	if v := header(inv, "Via"); !strings.HasPrefix(v, "SIP/2.0/TCP ") {
		t.Fatalf("Via %q: want the flow's transport", v)
	}
	h.snd.take()

	fs.closeConn(7)
	h.in(uacAddr, request("INVITE", "z9hG4bKsf2", "flow@set2", "sip:alice@192.0.2.10:5999;transport=tcp;ob", "Contact: <sip:bob@127.0.0.1:5070>\n"))
	var codes []int
	for _, m := range h.expectTo(h.snd.take(), uacAddr) {
		codes = append(codes, status(&m))
	}
	if len(codes) == 0 || codes[len(codes)-1] != 430 {
		t.Fatalf("responses %v: want 430 last", codes)
	}
	if got := fs.takeConn(); len(got) != 0 {
		t.Fatalf("sent on a connection: %q", connLines(got))
	}
}

// TestAddPath: a REGISTER relayed by an edge proxy with AddPath carries a
// Path on top naming the listener towards the registrar, ";ob" and the
// flow token of the phone's connection; a request from the registrar with
// that Path as its Route goes over the connection; over UDP the Path has
// neither.
func TestAddPath(t *testing.T) {
	h, fs := newFlowHarness(t)
	var flows []transport.ConnID
	h.rt.request = func(r *Request) {
		r.AddPath()
		flows = append(flows, r.Flow())
		r.Relay()
	}
	reg := strings.Replace(request("REGISTER", "z9hG4bKpath1", "flow@path", "sip:registrar@127.0.0.1:5080",
		"Contact: <sip:alice@192.0.2.10:5999;transport=tcp;ob>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\nPath: <sip:other.example.net;lr>\n"),
		"SIP/2.0/UDP 127.0.0.1:5070", "SIP/2.0/TCP 192.0.2.10:5999", 1)
	h.inConn(phoneAddr, 7, reg)
	sent := h.expectTo(h.snd.take(), uasAddr)
	if len(sent) != 1 {
		t.Fatal("REGISTER not relayed")
	}
	var paths []string
	it := sent[0].NameAddrs(parser.HdrPath)
	for it.Next() {
		paths = append(paths, string(it.NameAddr.URI))
	}
	if len(paths) != 2 || !strings.HasPrefix(paths[0], "sip:127.0.0.1:5060;lr;ob;flow=") || paths[1] != "sip:other.example.net;lr" {
		t.Fatalf("Path %q", paths)
	}
	fs.takeConn()

	// The registrar's INVITE along the Path goes over connection 7.
	inv := request("INVITE", "z9hG4bKpath2", "flow@path-inv", "sip:alice@192.0.2.10:5999;transport=tcp;ob",
		"Route: <"+paths[0]+">\nContact: <sip:bob@127.0.0.1:5080>\n")
	h.in(uasAddr, inv)
	got := fs.takeConn()
	if len(got) != 1 || got[0].id != 7 || !strings.HasPrefix(got[0].data, "INVITE ") || flows[len(flows)-1] != 7 {
		t.Fatalf("INVITE along the Path: %q (flow %v); sent %s", connLines(got), flows, describe(h.snd.take()))
	}

	// Over UDP: a plain Path.
	h.snd.take()
	h.in(uacAddr, request("REGISTER", "z9hG4bKpath3", "flow@path-udp", "sip:registrar@127.0.0.1:5080", "Contact: <sip:alice@127.0.0.1:5070>\n"))
	sent = h.expectTo(h.snd.take(), uasAddr)
	if len(sent) != 1 || header(string(sent[0].Bytes()), "Path") != "<sip:127.0.0.1:5060;lr>" {
		t.Fatalf("Path over UDP: %q", header(string(sent[0].Bytes()), "Path"))
	}
}

// TestFlowTokenAllocatesNothing: making a flow token and checking one,
// which every request along a flow does, allocate nothing.
func TestFlowTokenAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h, _ := newFlowHarness(t)
	buf := make([]byte, 0, 64)
	tok := h.core.appendFlowToken(nil, 7, flowRR)
	if n := testing.AllocsPerRun(1000, func() {
		buf = h.core.appendFlowToken(buf[:0], 7, flowRR)
		if _, id, ok := h.core.sigs.parseFlowToken(tok, flowRR); !ok || id != 7 {
			t.Fatal("token does not verify")
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
