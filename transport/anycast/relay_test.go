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

func newTestRelay(t *testing.T, listen, peer netip.AddrPort, prefix string, l *transport.Listener, out chan got) *Relay {
	t.Helper()
	r, err := New(Config{
		Listen: listen, Peers: []netip.AddrPort{peer}, Prefix: prefix,
		Handle: func(p *transport.Packet) {
			out <- got{append([]byte(nil), p.Data...), p.Src, p.Listener}
		},
		Listener: func(local netip.AddrPort) *transport.Listener {
			if local == l.Local {
				return l
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	return r
}

// A response whose branch has the other node's prefix goes to that node
// with its source and the listener it came in on; our own prefix, an
// unknown one and TCP stay here; a stranger's packet on the relay port is
// refused; a peer that stops sending hellos is forgotten.
func TestRelay(t *testing.T) {
	shared := netip.MustParseAddrPort("127.0.0.1:5060")
	l1 := &transport.Listener{Proto: transport.UDP, Local: shared}
	l2 := &transport.Listener{Proto: transport.UDP, Local: shared}
	a1, a2 := freeUDP(t), freeUDP(t)
	out1, out2 := make(chan got, 4), make(chan got, 4)
	r1 := newTestRelay(t, a1, a2, "z9hG4bKaaaaaa", l1, out1)
	defer r1.Close()
	r2 := newTestRelay(t, a2, a1, "z9hG4bKbbbbbb", l2, out2)
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
	tcp := *p
	tcp.Proto = transport.TCP
	if r1.Forward([]byte("z9hG4bKbbbbbb0123"), tcp.Data, tcp.Src, tcp.Listener, tcp.Proto) {
		t.Error("a response over TCP relayed")
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
}
