package anycast

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"switchboard/transport"
)

func freeUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

type got struct {
	data     []byte
	src      netip.AddrPort
	listener *transport.Listener
}

// newRelayWith starts a relay with cfg, whose relayed responses go to out
// and whose listeners are ls.
func newRelayWith(t *testing.T, cfg Config, out chan got, ls ...*transport.Listener) *Relay {
	t.Helper()
	cfg.Handle = func(p *transport.Packet) {
		out <- got{append([]byte(nil), p.Data...), p.Src, p.Listener}
	}
	cfg.Listener = func(proto transport.Proto, local netip.AddrPort) *transport.Listener {
		for _, l := range ls {
			if l.Proto == proto && (local == l.Local || !local.IsValid()) {
				return l
			}
		}
		return nil
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	return r
}

// A response whose branch has the other node's prefix goes to that node
// with its source and the listener it came in on (over UDP or TCP); our
// own prefix and an unknown one stay here; a stranger's packet on the relay port is
// refused; a peer that stops sending hellos is forgotten, and the flows it
// held are not used.
func TestRelay(t *testing.T) {
	shared := netip.MustParseAddrPort("127.0.0.1:5060")
	l1 := &transport.Listener{Proto: transport.UDP, Local: shared}
	l2 := &transport.Listener{Proto: transport.UDP, Local: shared}
	a1, a2 := freeUDP(t), freeUDP(t)
	out1, out2 := make(chan got, 4), make(chan got, 4)
	t1, t2 := &transport.Listener{Proto: transport.TCP, Local: shared}, &transport.Listener{Proto: transport.TCP, Local: shared}
	r1 := newRelayWith(t, Config{Listen: a1, Peers: []netip.AddrPort{a2}, Prefix: "z9hG4bKaaaaaa"}, out1, l1, t1)
	defer r1.Close()
	r2 := newRelayWith(t, Config{Listen: a2, Peers: []netip.AddrPort{a1}, Prefix: "z9hG4bKbbbbbb"}, out2, l2, t2)
	deadline := time.Now().Add(3 * time.Second)
	for r1.Stats().Peers != 1 || r2.Stats().Peers != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the relays did not hear each other")
		}
		time.Sleep(10 * time.Millisecond)
	}

	resp := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbbbbbb0123\r\n\r\n")
	src := netip.MustParseAddrPort("192.0.2.7:5062")
	p := &transport.Packet{Data: resp, Src: src, Listener: l1, Proto: transport.UDP}
	if !r1.Forward([]byte("z9hG4bKbbbbbb0123"), p.Data, p.Src, p.Listener, p.Proto) {
		t.Fatal("a response of the peer's was not relayed")
	}
	select {
	case g := <-out2:
		if !bytes.Equal(g.data, resp) || g.src != src || g.listener != l2 {
			t.Fatalf("relayed: %q from %v on %p, want the response from %v on %p", g.data, g.src, g.listener, src, l2)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("nothing arrived at the peer")
	}
	for _, b := range []string{"z9hG4bKaaaaaa0123", "z9hG4bKcccccc0123", "z9hG4bK", "abc"} {
		if r1.Forward([]byte(b), p.Data, p.Src, p.Listener, p.Proto) {
			t.Errorf("branch %q relayed", b)
		}
	}
	// A response received over a connection (to a request the peer
	// handed over, flows.go) goes to the peer as one over TCP.
	if !r1.Forward([]byte("z9hG4bKbbbbbb0123"), resp, src, t1, transport.TCP) {
		t.Fatal("a response over TCP was not relayed")
	}
	select {
	case g := <-out2:
		if !bytes.Equal(g.data, resp) || g.src != src || g.listener != t2 {
			t.Fatalf("relayed from TCP: %q from %v on %p, want the response from %v on %p", g.data, g.src, g.listener, src, t2)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the TCP response did not arrive at the peer")
	}
	f := r1.RemoteFlow([6]byte([]byte("bbbbbb")), 5, transport.TCP, shared)
	if l, relay, _, _, ok := r1.RemoteFlowInfo(f); !ok || l != t1 || relay != a2 {
		t.Fatalf("a flow of the peer: %v %v %v, want usable through %p and %v", l, relay, ok, t1, a2)
	}
	if !raceEnabled {
		if n := testing.AllocsPerRun(100, func() { r1.Forward([]byte("z9hG4bKbbbbbb0123"), p.Data, p.Src, p.Listener, p.Proto) }); n != 0 {
			t.Errorf("Forward allocates %v times", n)
		}
		for len(out2) > 0 || r2.Stats().Received < 102 {
			select {
			case <-out2:
			case <-time.After(2 * time.Second):
				t.Fatalf("received %d of 102", r2.Stats().Received)
			}
		}
	}

	// A stranger's packet, shaped like a relayed response.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a2))
	if err != nil {
		t.Fatal(err)
	}
	hdr := appendAddr(appendAddr([]byte(magicResp), shared), src)
	c.Write(append(hdr, resp...))
	c.Close()
	deadline = time.Now().Add(2 * time.Second)
	for r2.Stats().Refused == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a stranger's packet was not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case g := <-out2:
		t.Fatalf("a stranger's packet was handled: %q", g.data)
	default:
	}

	// The peer goes silent: forgotten after PeerTimeout.
	r2.Close()
	deadline = time.Now().Add(PeerTimeout + 2*time.Second)
	for r1.Stats().Peers != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a silent peer was not forgotten")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r1.Forward([]byte("z9hG4bKbbbbbb0123"), p.Data, p.Src, p.Listener, p.Proto) {
		t.Fatal("relayed to a forgotten peer")
	}
	// Its flows are failed flows: nothing is handed to it.
	if _, _, _, _, ok := r1.RemoteFlowInfo(f); ok {
		t.Fatal("a flow of a forgotten peer is usable")
	}
	if err := r1.SendRemoteFlow(f, []byte("BYE sip:x SIP/2.0\r\n\r\n"), transport.Tag{1, 1}); err != ErrFlowGone {
		t.Fatalf("hand-off to a forgotten peer: %v, want ErrFlowGone", err)
	}
}
