package registrar

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/transport"
	"switchboard/transport/anycast"
	"switchboard/txn"
)

// remoteFlows is the RemoteFlows of a node's core as package anycast
// keeps them: ids for (holder, connection), holders alive or not, and the
// requests handed over. (The registrar's use of them is under test.)
type remoteFlows struct {
	mu    sync.Mutex
	l     *transport.Listener
	keys  []flowRef
	dead  bool
	sends []flowRef
}

type flowRef struct {
	holder string
	id     uint64
	data   string
}

func (rf *remoteFlows) RemoteFlow(holder [6]byte, id uint64, _ transport.Proto, _ netip.AddrPort) transport.ConnID {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	for i, k := range rf.keys {
		if k.holder == string(holder[:]) && k.id == id {
			return txn.RemoteFlowBit | transport.ConnID(i+1)
		}
	}
	rf.keys = append(rf.keys, flowRef{holder: string(holder[:]), id: id})
	return txn.RemoteFlowBit | transport.ConnID(len(rf.keys))
}

func (rf *remoteFlows) RemoteFlowInfo(f transport.ConnID) (*transport.Listener, netip.AddrPort, [6]byte, uint64, bool) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	i := int(f&^txn.RemoteFlowBit) - 1
	if i < 0 || i >= len(rf.keys) {
		return nil, netip.AddrPort{}, [6]byte{}, 0, false
	}
	k := rf.keys[i]
	return rf.l, netip.MustParseAddrPort("10.0.0.9:5099"), [6]byte([]byte(k.holder)), k.id, !rf.dead
}

func (rf *remoteFlows) SendRemoteFlow(f transport.ConnID, data []byte, _ transport.Tag) error {
	_, _, h, id, _ := rf.RemoteFlowInfo(f)
	rf.mu.Lock()
	defer rf.mu.Unlock()
	rf.sends = append(rf.sends, flowRef{string(h[:]), id, string(data)})
	return nil
}

func (rf *remoteFlows) take() []flowRef {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	s := rf.sends
	rf.sends = nil
	return s
}

// flowNode is a shared node whose core hands requests for other nodes'
// connections to rf, and whose registrar names flows with the core.
func flowNode(t *testing.T, rs *redisServer, name string) (*sharedNode, *remoteFlows) {
	n := newSharedNode(t, rs, name)
	rf := &remoteFlows{l: &transport.Listener{Proto: transport.TCP, Local: n.l.Local, AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}}
	n.core.SetRemoteFlows(rf)
	n.reg.SetFlowNames(n.core.FlowName, n.core.FlowByName)
	n.inRoute = func(c *routing.Ctx) {
		if c.IsMethod(parser.MethodRegister) {
			n.reg.SaveWith(c, SaveOptions{Authenticated: true})
			return
		}
		if !n.reg.Lookup(c) {
			if n.reg.FlowFailed(c) {
				c.Reply(430, "Flow Failed")
				return
			}
			c.Reply(480, "")
			return
		}
		c.Relay()
	}
	return n, rf
}

// receiveConn hands msg to the core as if it came over TCP connection id.
func (h *harness) receiveConn(src string, id transport.ConnID, msg string) {
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: transport.TCP, Conn: id})
}

// A phone registered with outbound over a TCP connection of node A: the
// binding on Redis names A's connection by A's branch prefix; node B's
// lookup hands the call to A over that connection (not to the phone's
// address); a node started later resolves it once it knows its core;
// with A gone the call gets 430. The phone registering again over a
// connection of B moves the flow (and the node) to B, on every node.
func TestRedisShareFlow(t *testing.T) {
	rs := startRedis(t)
	a, _ := flowNode(t, rs, "node-a")
	b, brf := flowNode(t, rs, "node-b")
	aPrefix := a.core.BranchPrefix()[7:]

	reg := strings.Replace(register("dave", "cid-dave", 1, "Contact: <sip:dave@192.0.2.10:5999;transport=tcp;ob>"+obInstance+";reg-id=1\r\nExpires: 600\r\n"),
		"SIP/2.0/UDP 127.0.0.1:5062", "SIP/2.0/TCP 127.0.0.1:40000", 1)
	a.take()
	a.receiveConn("127.0.0.1:40000", 7, reg)
	if resp := a.final(time.Second); statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER over TCP on a: %q", resp)
	}
	waitFor(t, "b never saw dave", 5*time.Second, func() bool { return b.reg.Registered([]byte("dave@example.com")) })
	if l := b.reg.List("dave@example.com"); len(l) != 1 || l[0].Node != "node-a" || l[0].Flow != aPrefix+".7" || !l[0].Outbound {
		t.Fatalf("b's copy: %+v", l)
	}
	vals := rs.Client().HGetAll(context.Background(), "switchboard:loc:{dave@example.com}").Val()
	for _, v := range vals {
		if !strings.Contains(v, `"Flow":"`+aPrefix+`.7"`) || !strings.Contains(v, `"Outbound":true`) {
			t.Fatalf("Redis value %s: want the flow and outbound", v)
		}
	}

	b.take()
	b.receive("127.0.0.1:5080", invite("dave"))
	s := brf.take()
	if len(s) != 1 || s[0].holder != aPrefix || s[0].id != 7 || !strings.HasPrefix(s[0].data, "INVITE sip:dave@192.0.2.10:5999;transport=tcp;ob ") {
		t.Fatalf("b handed %+v, want the INVITE to a's connection 7", s)
	}
	if sent, ok := b.sentRequest(); ok {
		t.Fatalf("b sent the INVITE itself to %v", sent.dst)
	}

	// A node started now reads the binding before it has a core; the
	// name is resolved when it gets one.
	c := newSharedNode(t, rs, "node-c")
	crf := &remoteFlows{l: brf.l}
	c.core.SetRemoteFlows(crf)
	c.reg.SetFlowNames(c.core.FlowName, c.core.FlowByName)
	c.receive("127.0.0.1:5080", invite("dave"))
	if s := crf.take(); len(s) != 1 || s[0].holder != aPrefix || s[0].id != 7 {
		t.Fatalf("c handed %+v", s)
	}

	// A is gone (unheard): 430 on b, nothing handed over.
	brf.mu.Lock()
	brf.dead = true
	brf.mu.Unlock()
	b.take()
	b.receive("127.0.0.1:5080", invite("dave"))
	if resp := b.final(time.Second); statusOf(resp) != "430 Flow Failed" {
		t.Fatalf("A gone: %q, want 430", resp)
	}
	if s := brf.take(); len(s) != 0 {
		t.Fatalf("handed to a gone node: %+v", s)
	}

	// The phone comes back over a connection of b.
	b.take()
	b.receiveConn("127.0.0.1:40001", 9, strings.Replace(strings.Replace(reg, "CSeq: 1 ", "CSeq: 2 ", 1), "40000", "40001", 1))
	if resp := b.final(time.Second); statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER over TCP on b: %q", resp)
	}
	bPrefix := b.core.BranchPrefix()[7:]
	waitFor(t, "a never saw dave move", 5*time.Second, func() bool {
		l := a.reg.List("dave@example.com")
		return len(l) == 1 && l[0].Node == "node-b" && l[0].Flow == bPrefix+".9"
	})
	if l := b.reg.List("dave@example.com"); len(l) != 1 || l[0].Node != "" || l[0].Flow != bPrefix+".9" {
		t.Fatalf("b's own binding: %+v", l)
	}
}

// TestRedisShareFlowReresolve: node B's table of other nodes' flows
// (package anycast, the real one, with room for 2) is smaller than the
// five phones on connections of node A. A binding's flow id, resolved
// when the binding came from Redis, names nothing once its slot went to
// another flow; lookup resolves it again from the binding's name, so
// every call, in every round, is handed to A over the right connection
// (never 430 or 480).
func TestRedisShareFlowReresolve(t *testing.T) {
	rs := startRedis(t)
	a := newSharedNode(t, rs, "node-a")
	a.reg.SetFlowNames(a.core.FlowName, a.core.FlowByName)
	b := newSharedNode(t, rs, "node-b")
	aAddr, bAddr := freeUDP(t), freeUDP(t)
	type handed struct {
		id   transport.ConnID
		data string
	}
	got := make(chan handed, 16)
	ra, err := anycast.New(anycast.Config{Listen: aAddr, Peers: []netip.AddrPort{bAddr}, Prefix: a.core.BranchPrefix(),
		Handle:   func(*transport.Packet) {},
		Listener: func(transport.Proto, netip.AddrPort) *transport.Listener { return nil },
		SendConn: func(id transport.ConnID, data []byte, _ transport.Tag) error {
			got <- handed{id, string(data)}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	bTCP := &transport.Listener{Proto: transport.TCP, Local: b.l.Local, AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	rb, err := anycast.New(anycast.Config{Listen: bAddr, Peers: []netip.AddrPort{aAddr}, Prefix: b.core.BranchPrefix(),
		Handle:   func(*transport.Packet) {},
		Listener: func(transport.Proto, netip.AddrPort) *transport.Listener { return bTCP },
		MaxFlows: 2})
	if err != nil {
		t.Fatal(err)
	}
	ra.Start()
	defer ra.Close()
	rb.Start()
	defer rb.Close()
	b.core.SetRemoteFlows(rb)
	b.reg.SetFlowNames(b.core.FlowName, b.core.FlowByName)
	waitFor(t, "b's relay did not hear a's", 5*time.Second, func() bool { return rb.Stats().Peers == 1 })

	users := []string{"p1", "p2", "p3", "p4", "p5"}
	for i, u := range users {
		src := "127.0.0.1:" + itoa(41000+i)
		reg := strings.Replace(register(u, "cid-"+u, 1, "Contact: <sip:"+u+"@192.0.2.10:5999;transport=tcp;ob>"+obInstance+";reg-id=1\r\nExpires: 600\r\n"),
			"SIP/2.0/UDP 127.0.0.1:5062", "SIP/2.0/TCP "+src, 1)
		a.take()
		a.receiveConn(src, transport.ConnID(11+i), reg)
		if resp := a.final(time.Second); statusOf(resp) != "200 OK" {
			t.Fatalf("REGISTER of %s on a: %q", u, resp)
		}
	}
	for _, u := range users {
		waitFor(t, "b never saw "+u, 5*time.Second, func() bool { return b.reg.Registered([]byte(u + "@example.com")) })
	}
	for round := 0; round < 2; round++ {
		for i, u := range users {
			b.take()
			b.receive("127.0.0.1:5080", invite(u))
			select {
			case h := <-got:
				if h.id != transport.ConnID(11+i) || !strings.HasPrefix(h.data, "INVITE sip:"+u+"@192.0.2.10:5999;transport=tcp;ob ") {
					t.Fatalf("round %d, %s: a wrote %.60q on connection %d, want the INVITE on %d", round, u, h.data, h.id, 11+i)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("round %d: the call to %s was not handed to a (b answered %q)", round, u, statusOf(b.final(100*time.Millisecond)))
			}
		}
	}
	if st := rb.Stats(); st.Flows != 2 || st.FlowsEvicted == 0 {
		t.Fatalf("b's table: %d flows, %d evicted: want it full and turning over", st.Flows, st.FlowsEvicted)
	}
}

func freeUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}
