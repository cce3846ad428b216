package transport

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// Peers that connect in cannot take the slots kept for outbound dials:
// with MaxConns 8 and OutboundReserve 3, the sixth inbound connection (TCP
// or TLS) is refused at accept and counted, and the proxy still opens
// three outbound connections and delivers on them.
func TestStreamOutboundReserve(t *testing.T) {
	pki := newPKI(t, "ca")
	cf, kf, _ := pki.issue(t, "server", []string{"sip.example.com"}, false)
	tr := startTransport(t, Config{
		Listeners: []ListenerConfig{
			{Proto: TCP, Addr: "127.0.0.1:0"},
			{Proto: TLS, Addr: "127.0.0.1:0"},
		},
		TLSCertFile: cf, TLSKeyFile: kf,
		StreamLoops: 2, MaxConns: 8, OutboundReserve: 3, MaxConnsPerIP: 100,
	}, newRecorder())
	tcpL, tlsL := tr.Listeners()[0], tr.Listeners()[1]
	open := func(proto Proto) net.Conn {
		addr := tcpL.Local
		if proto == TLS {
			addr = tlsL.Local
		}
		seen := countedConns(tr)
		c := dialStream(t, proto, addr)
		t.Cleanup(func() { c.Close() })
		waitCounted(t, tr, seen)
		return c
	}
	var in []net.Conn
	for _, p := range []Proto{TCP, TLS, TCP, TLS, TCP} {
		c := open(p)
		if !stillOpen(c) {
			t.Fatalf("inbound %s connection %d within the share was closed", p, len(in)+1)
		}
		in = append(in, c)
	}
	if _, err := dialTLSClient(tlsL.Local, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Fatal("sixth inbound connection (TLS) completed a handshake")
	}
	if c := open(TCP); stillOpen(c) {
		t.Fatal("seventh inbound connection (TCP) accepted beyond the share")
	}
	if st := tr.Stats(); st.ConnsRejected != 2 || st.ConnsShareFull != 2 || st.ConnsOpen != 5 {
		t.Fatalf("rejected %d (share %d), open %d; want 2 (2), 5", st.ConnsRejected, st.ConnsShareFull, st.ConnsOpen)
	}

	// The reserve serves outbound dials: three peers get their message.
	msg := []byte(sipMsg("INVITE", ""))
	for i := 0; i < 3; i++ {
		peer, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		if err := tr.Send(tcpL, peer.Addr().(*net.TCPAddr).AddrPort(), msg); err != nil {
			t.Fatalf("outbound dial %d: %v", i+1, err)
		}
		peer.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		pc, err := peer.Accept()
		if err != nil {
			t.Fatalf("outbound dial %d never connected: %v", i+1, err)
		}
		defer pc.Close()
		buf := make([]byte, len(msg))
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != string(msg) {
			t.Fatalf("peer %d got %q, %v", i+1, buf, err)
		}
	}
	// Now every slot is taken: outbound too is refused.
	if err := tr.Send(tcpL, netip.MustParseAddrPort("127.0.0.1:9"), msg); err != ErrConnLimit {
		t.Fatalf("outbound over MaxConns: %v", err)
	}
	// An inbound connection that closes gives its slot back to inbound.
	in[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().ConnsOpen != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("open %d after an inbound close", tr.Stats().ConnsOpen)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := open(TCP); !stillOpen(c) {
		t.Fatal("inbound slot not given back")
	}
}

// stillOpen reports whether the server keeps c open (a refused connection
// is closed at once).
// countedConns is how many inbound connections tr has accepted or
// refused.
func countedConns(tr *Transport) uint64 {
	st := tr.Stats()
	return st.ConnsAccepted + st.ConnsRejected
}

// waitCounted waits until tr has accepted or refused a connection since
// it had counted seen. Tests that fill a connection limit dial one at a
// time: the event loops take connections in no set order, so dialing the
// next before the last was counted could let it take the last's slot.
func waitCounted(t *testing.T, tr *Transport, seen uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); countedConns(tr) <= seen; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a connection was neither accepted nor refused")
		}
	}
}

func stillOpen(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	c.SetReadDeadline(time.Time{})
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestPerIPCountsIPv6By64: MaxConnsPerIP counts an IPv6 source by its
// /64 (one host has the whole of it), an IPv4 one (mapped or not) by its
// address.
func TestPerIPCountsIPv6By64(t *testing.T) {
	var ct connTable
	ct.init()
	lim := connLimits{total: 100, inbound: 100, perIP: 2}
	admit := func(addr string) error {
		c := &streamConn{proto: TCP, inbound: true, remote: netip.MustParseAddrPort(addr)}
		_, err := ct.admit(c, lim)
		return err
	}
	for i, want := range []error{nil, nil, errPerIP} {
		if err := admit("[2001:db8:1:2::" + strconv.Itoa(i+1) + "]:5060"); err != want {
			t.Fatalf("IPv6 connection %d in one /64: %v, want %v", i+1, err, want)
		}
	}
	if err := admit("[2001:db8:1:3::1]:5060"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	for i, want := range []error{nil, nil, errPerIP} {
		addr := "192.0.2.7:" + strconv.Itoa(5060+i)
		if i == 1 {
			addr = "[::ffff:192.0.2.7]:5061"
		}
		if err := admit(addr); err != want {
			t.Fatalf("IPv4 connection %d: %v, want %v", i+1, err, want)
		}
	}
	if err := admit("192.0.2.8:5060"); err != nil {
		t.Fatalf("another IPv4 address: %v", err)
	}
}
