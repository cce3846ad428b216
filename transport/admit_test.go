package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// refusing is the source filter of these tests: everyone but banned is
// admitted. It counts its calls.
type refusing struct {
	banned netip.Addr
	calls  atomic.Int64
}

func (r *refusing) admit(a netip.Addr) bool {
	r.calls.Add(1)
	return a != r.banned
}

var bannedSrc = netip.MustParseAddr("127.0.0.3")

func TestUDPAdmitDropsBeforeHandler(t *testing.T) {
	rec := newRecorder()
	f := &refusing{banned: bannedSrc}
	tr := startTransport(t, Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1, Admit: f.admit}, rec)
	dst := net.UDPAddrFromAddrPort(tr.Listeners()[0].Local)
	bad := udpPeer(t, "udp4", "127.0.0.3:0")
	good := udpPeer(t, "udp4", "127.0.0.2:0")
	for i := 0; i < 10; i++ {
		if _, err := bad.WriteToUDP([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), dst); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := good.WriteToUDP([]byte("OPTIONS sip:y SIP/2.0\r\n\r\n"), dst); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().AdmitDrops < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	pkts := rec.wait(t, 1)
	if len(pkts) != 1 || pkts[0].Src.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("handler got %d packets (first from %v), want only the admitted source's", len(pkts), pkts[0].Src)
	}
	st := tr.Stats()
	if st.AdmitDrops != 10 {
		t.Fatalf("AdmitDrops = %d, want 10", st.AdmitDrops)
	}
	if st.Proto[UDP].PacketsIn != 1 {
		t.Fatalf("PacketsIn = %d, want 1 (refused datagrams are not received)", st.Proto[UDP].PacketsIn)
	}
}

func TestTCPAdmitRefusesAtAccept(t *testing.T) {
	rec := newRecorder()
	f := &refusing{banned: bannedSrc}
	tr := startTransport(t, tcpConfig(func(c *Config) { c.Admit = f.admit }), rec)
	to := net.TCPAddrFromAddrPort(tr.Listeners()[0].Local)

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}
	// The kernel completes the handshake before accept, so the dial
	// usually succeeds and the reset comes after; on loopback the reset
	// can also beat connect() back to the caller.
	bad, err := d.Dial("tcp", to.String())
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case err != nil:
		t.Fatal(err)
	default:
		defer bad.Close()
		bad.Write([]byte(sipMsg("OPTIONS", "")))
		expectClosed(t, bad, 5*time.Second)
	}

	d.LocalAddr = &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	good, err := d.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	good.Write([]byte(sipMsg("OPTIONS", "")))
	p := rec.wait(t, 1)[0]
	if p.Src.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("message from %v", p.Src)
	}
	st := tr.Stats()
	if st.AdmitRefused != 1 || st.ConnsAccepted != 1 || st.ConnsRejected != 0 {
		t.Fatalf("refused %d accepted %d rejected %d, want 1 1 0", st.AdmitRefused, st.ConnsAccepted, st.ConnsRejected)
	}
}

func TestTLSAdmitRefusesBeforeHandshake(t *testing.T) {
	pki := newPKI(t, "ca")
	rec := newRecorder()
	f := &refusing{banned: bannedSrc}
	tr, _ := startTLS(t, pki, rec, func(c *Config) { c.Admit = f.admit })
	to := tr.Listeners()[0].Local
	cfg := &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"}

	td := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}, Config: cfg}
	if c, err := td.Dial("tcp", to.String()); err == nil {
		c.Close()
		t.Fatal("TLS handshake completed from a refused source")
	}
	td.NetDialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	c, err := td.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(sipMsg("OPTIONS", "")))
	rec.wait(t, 1)
	st := tr.Stats()
	if st.AdmitRefused != 1 || st.TLSHandshakeKO != 0 || st.ConnsAccepted != 1 {
		t.Fatalf("refused %d handshake failures %d accepted %d, want 1 0 1", st.AdmitRefused, st.TLSHandshakeKO, st.ConnsAccepted)
	}
}

// A refused datagram costs no allocation on the reader: AllocsPerRun
// counts the whole process, the reader goroutine included.
func TestUDPAdmitDropNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	refuseAll := func(netip.Addr) bool { return false }
	tr := startTransport(t, Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1, Admit: refuseAll},
		HandlerFunc(func(*Packet) { t.Error("a refused datagram reached the handler") }))
	l := tr.Listeners()[0]
	fd, _, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(fd)
	sender := &Transport{}
	sl := &Listener{Proto: UDP, udp: []*udpSocket{{fd: fd}}}
	msg := []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")
	var sent uint64
	sendOne := func() {
		sent++
		sender.sendUDP(sl, l.Local, msg)
		for tr.Stats().AdmitDrops < sent {
			// Park (Gosched would keep this goroutine runnable and
			// the scheduler would not look at the poller for 10 ms).
			time.Sleep(time.Microsecond)
		}
	}
	for i := 0; i < 100; i++ {
		sendOne()
	}
	if a := testing.AllocsPerRun(1000, sendOne); a != 0 {
		t.Fatalf("a refused datagram costs %.2f allocations", a)
	}
}

// BenchmarkUDPAdmit compares a datagram the handler receives with one the
// source filter refuses, through the real socket (the sender's sendto is
// in both).
func BenchmarkUDPAdmit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		admit bool
	}{{"handled", true}, {"refused", false}} {
		b.Run(bc.name, func(b *testing.B) {
			var handled atomic.Uint64
			admit := func(netip.Addr) bool { return bc.admit }
			tr, err := New(Config{Listeners: []ListenerConfig{{Proto: UDP, Addr: "127.0.0.1:0"}}, UDPReaders: 1, Admit: admit, SocketBuffer: 4 << 20},
				HandlerFunc(func(*Packet) { handled.Add(1) }))
			if err != nil {
				b.Fatal(err)
			}
			if err := tr.Start(); err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			fd, _, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), 4<<20)
			if err != nil {
				b.Fatal(err)
			}
			defer closeFD(fd)
			sender := &Transport{}
			sl := &Listener{Proto: UDP, udp: []*udpSocket{{fd: fd}}}
			msg := []byte("OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n")
			seen := func() uint64 { return handled.Load() + tr.Stats().AdmitDrops }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sender.sendUDP(sl, tr.Listeners()[0].Local, msg)
				// Keep at most 32 in flight so that none is lost.
				for uint64(i+1)-seen() > 32 {
					runtime.Gosched()
				}
			}
			for seen() < uint64(b.N) {
				runtime.Gosched()
			}
		})
	}
}

// A connection open before its source was refused is closed at its next
// message, which is not handled.
func TestStreamAdmitClosesOpenConnection(t *testing.T) {
	for _, proto := range []Proto{TCP, TLS} {
		t.Run(proto.String(), func(t *testing.T) {
			rec := newRecorder()
			var banned atomic.Bool
			admit := func(netip.Addr) bool { return !banned.Load() }
			var c net.Conn
			var tr *Transport
			if proto == TCP {
				tr = startTransport(t, tcpConfig(func(c *Config) { c.Admit = admit }), rec)
				c = dialTCP(t, tr.Listeners()[0].Local)
			} else {
				pki := newPKI(t, "ca")
				tr, _ = startTLS(t, pki, rec, func(c *Config) { c.Admit = admit })
				tc, err := dialTLSClient(tr.Listeners()[0].Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
				if err != nil {
					t.Fatal(err)
				}
				defer tc.Close()
				c = tc
			}
			c.Write([]byte(sipMsg("OPTIONS", "")))
			rec.wait(t, 1)
			banned.Store(true)
			c.Write([]byte(sipMsg("MESSAGE", "hi")))
			expectClosed(t, c, 5*time.Second)
			time.Sleep(20 * time.Millisecond)
			if n := len(rec.wait(t, 1)); n != 1 {
				t.Fatalf("%d messages handled, want only the one before the ban", n)
			}
			st := tr.Stats()
			if st.AdmitClosed != 1 || st.ConnsOversize != 0 || st.Errors != 0 {
				t.Fatalf("closed %d oversize %d errors %d, want 1 0 0", st.AdmitClosed, st.ConnsOversize, st.Errors)
			}
		})
	}
}
