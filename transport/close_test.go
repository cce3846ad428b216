package transport

import (
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Close releases every socket, connection and goroutine, with connections
// open in both directions on every protocol.
func TestCloseReleasesStreams(t *testing.T) {
	pki := newPKI(t, "ca")
	cf, kf, _ := pki.issue(t, "server", []string{"sip.example.com"}, false)
	peerLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	peerTLS, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{mustPair(t, cf, kf)}})
	if err != nil {
		t.Fatal(err)
	}
	defer peerTLS.Close()

	g0, f0 := countGoroutines(), countFDs(t)
	rec := newRecorder()
	tr, err := New(Config{
		Listeners: []ListenerConfig{
			{Proto: UDP, Addr: "127.0.0.1:0"},
			{Proto: TCP, Addr: "127.0.0.1:0"},
			{Proto: TCP, Addr: "[::1]:0"},
			{Proto: TLS, Addr: "127.0.0.1:0"},
		},
		TLSCertFile:   cf,
		TLSKeyFile:    kf,
		TLSRootCAFile: pki.caFile,
		StreamLoops:   2,
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	ls := tr.Listeners()
	msg := []byte(sipMsg("OPTIONS", ""))
	c1, err := net.Dial("tcp", ls[1].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.Write(msg)
	c2, err := net.Dial("tcp", ls[2].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write(msg)
	c3, err := dialTLSClient(ls[3].Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.Write(msg)
	rec.wait(t, 3)
	if err := tr.Send(ls[1], peerLn.Addr().(*net.TCPAddr).AddrPort(), msg); err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(ls[3], peerTLS.Addr().(*net.TCPAddr).AddrPort(), msg); err != nil {
		t.Fatal(err)
	}
	var peers []net.Conn
	for _, ln := range []net.Listener{peerLn, peerTLS} {
		pc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, pc)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(pc, make([]byte, len(msg))); err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.Stats().ConnsOpen; n != 5 {
		t.Fatalf("%d connections open, want 5", n)
	}
	tr.Close()
	// The peers see their connections closed.
	expectClosed(t, c1, 2*time.Second)
	expectClosed(t, c3, 2*time.Second)
	c1.Close()
	c2.Close()
	c3.Close()
	if n := tr.Stats().ConnsOpen; n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
	for _, pc := range peers {
		expectClosed(t, pc, 2*time.Second)
		pc.Close()
	}
	expectNoLeak(t, g0, f0)
}

func mustPair(t *testing.T, cf, kf string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The proxy answers from inside HandleMessage: sends from the event loop
// (TCP) and the TLS reader must work and keep order.
func TestStreamAnswerFromHandler(t *testing.T) {
	pki := newPKI(t, "ca")
	cf, kf, _ := pki.issue(t, "server", []string{"sip.example.com"}, false)
	var trp atomic.Pointer[Transport]
	tr := startTransport(t, Config{
		Listeners:   []ListenerConfig{{Proto: TCP, Addr: "127.0.0.1:0"}, {Proto: TLS, Addr: "[::1]:0"}},
		TLSCertFile: cf,
		TLSKeyFile:  kf,
		StreamLoops: 2,
	}, HandlerFunc(func(p *Packet) {
		if err := trp.Load().SendConn(p.Conn, p.Data); err != nil {
			t.Error(err)
		}
	}))
	trp.Store(tr)
	ls := tr.Listeners()
	tcpc, err := net.Dial("tcp", ls[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcpc.Close()
	tlsc, err := dialTLSClient(ls[1].Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsc.Close()
	for _, c := range []net.Conn{tcpc, tlsc} {
		var all []byte
		for i := 0; i < 200; i++ {
			all = append(all, sipMsg("MESSAGE", strconv.Itoa(i))...)
		}
		go c.Write(all)
		got := make([]byte, len(all))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != string(all) {
			t.Fatalf("%T: echoed stream differs", c)
		}
	}
}

// A Start that fails half-way (a busy port, a missing certificate)
// releases what it had bound and names the key.
func TestStartFailureReleases(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	pki := newPKI(t, "ca")
	cf, kf, _ := pki.issue(t, "server", nil, false)
	g0, f0 := countGoroutines(), countFDs(t)
	cases := []struct {
		cfg Config
		key string
	}{
		{Config{Listeners: []ListenerConfig{
			{Proto: UDP, Addr: "127.0.0.1:0"},
			{Proto: TLS, Addr: "127.0.0.1:0"},
			{Proto: TLS, Addr: busy.Addr().String()},
		}, TLSCertFile: cf, TLSKeyFile: kf}, "listeners[2].addr"},
		{Config{Listeners: []ListenerConfig{
			{Proto: TLS, Addr: "127.0.0.1:0"},
		}, TLSCertFile: cf + ".missing", TLSKeyFile: kf}, "tls_cert_file"},
		{Config{Listeners: []ListenerConfig{
			{Proto: TCP, Addr: busy.Addr().String()},
		}}, "listeners[0].addr"},
	}
	for _, c := range cases {
		tr, err := New(c.cfg, newRecorder())
		if err != nil {
			t.Fatal(err)
		}
		err = tr.Start()
		ce, ok := err.(*ConfigError)
		if !ok || ce.Key != c.key {
			t.Errorf("got %v, want key %s", err, c.key)
		}
	}
	expectNoLeak(t, g0, f0)
}
