package transport

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A server that closed its clients' connections itself holds them in
// TIME-WAIT on its own port for a minute. A restart (after a crash, by the
// service manager) must still bind that port at once: the listening
// sockets set SO_REUSEADDR, which the accepted sockets and their TIME-WAIT
// remnants inherit.
func TestStreamRebindAfterServerClose(t *testing.T) {
	pki := newPKI(t, "ca")
	cf, kf, _ := pki.issue(t, "server", []string{"sip.example.com"}, false)
	for _, proto := range []Proto{TCP, TLS} {
		t.Run(proto.String(), func(t *testing.T) {
			cfg := Config{
				Listeners:   []ListenerConfig{{Proto: proto, Addr: "127.0.0.1:0"}},
				TLSCertFile: cf, TLSKeyFile: kf,
				StreamLoops: 2,
			}
			rec := newRecorder()
			tr := startTransport(t, cfg, rec)
			addr := tr.Listeners()[0].Local
			const clients = 4
			var conns []net.Conn
			for i := 0; i < clients; i++ {
				c := dialStream(t, proto, addr)
				if _, err := c.Write([]byte(sipMsg("OPTIONS", ""))); err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			// The server closes every connection first (active close:
			// TIME-WAIT is on its side), then each client closes its end.
			for _, p := range rec.wait(t, clients) {
				if !tr.CloseConn(p.Conn) {
					t.Fatalf("connection %d already gone", p.Conn)
				}
			}
			for _, c := range conns {
				expectClosed(t, c, 5*time.Second)
				if tc, ok := c.(*tls.Conn); ok {
					// Not tls.Conn.Close: a close_notify sent to a
					// closed socket is answered with a reset, which
					// skips TIME-WAIT.
					c = tc.NetConn()
				}
				c.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for timeWaitOn(t, addr.Port()) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("no TIME-WAIT socket on the server port: the test would prove nothing")
				}
				time.Sleep(10 * time.Millisecond)
			}
			tr.Close()

			cfg.Listeners[0].Addr = addr.String()
			again, err := New(cfg, newRecorder())
			if err != nil {
				t.Fatal(err)
			}
			if err := again.Start(); err != nil {
				t.Fatalf("restart on %s with %d connections in TIME-WAIT: %v", addr, timeWaitOn(t, addr.Port()), err)
			}
			defer again.Close()
			// And it serves.
			c := dialStream(t, proto, addr)
			defer c.Close()
			if _, err := c.Write([]byte(sipMsg("OPTIONS", ""))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func dialStream(t *testing.T, proto Proto, to netip.AddrPort) net.Conn {
	t.Helper()
	if proto == TLS {
		c, err := dialTLSClient(to, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c, err := net.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// timeWaitOn counts IPv4 TCP sockets in TIME-WAIT whose local port is port.
func timeWaitOn(t *testing.T, port uint16) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp:", err)
	}
	defer f.Close()
	want := ":" + strings.ToUpper(strconv.FormatUint(uint64(port)|1<<16, 16)[1:])
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st ...; TIME-WAIT is state 06.
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "06" {
			n++
		}
	}
	return n
}

// Several anycast nodes on one machine share their stream listeners'
// address with StreamReusePort: a second transport binds the same TCP
// or TLS address (WS and WSS bind the same way), and the kernel hands
// each connection to one of them. Without it the second one fails, naming the listener.
func TestStreamReusePort(t *testing.T) {
	pki := newPKI(t, "ca")
	cf, kf, _ := pki.issue(t, "server", []string{"sip.example.com"}, false)
	for _, proto := range []Proto{TCP, TLS} {
		t.Run(proto.String(), func(t *testing.T) {
			cfg := Config{
				Listeners:   []ListenerConfig{{Proto: proto, Addr: "127.0.0.1:0"}},
				TLSCertFile: cf, TLSKeyFile: kf, StreamLoops: 2, StreamReusePort: true,
			}
			recs := []*recorder{newRecorder(), newRecorder()}
			tr1 := startTransport(t, cfg, recs[0])
			addr := tr1.Listeners()[0].Local
			cfg.Listeners[0].Addr = addr.String()
			tr2 := startTransport(t, cfg, recs[1])
			if got := tr2.Listeners()[0].Local; got != addr {
				t.Fatalf("second listener on %v, want %v", got, addr)
			}
			// Connections from many source ports land on both.
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := 0; i < 64 && (len(recs[0].ch) == 0 || len(recs[1].ch) == 0); i++ {
				c := dialStream(t, proto, addr)
				conns = append(conns, c)
				if _, err := c.Write([]byte(sipMsg("OPTIONS", ""))); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for len(recs[0].ch)+len(recs[1].ch) < i+1 {
					if time.Now().After(deadline) {
						t.Fatalf("connection %d delivered nothing", i)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if len(recs[0].ch) == 0 || len(recs[1].ch) == 0 {
				t.Fatalf("64 connections all went to one transport (%d, %d)", len(recs[0].ch), len(recs[1].ch))
			}

			cfg.StreamReusePort = false
			tr3, err := New(cfg, newRecorder())
			if err == nil {
				err = tr3.Start()
				defer tr3.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "listeners[0]") {
				t.Fatalf("a third transport without SO_REUSEPORT on the same address: %v", err)
			}
		})
	}
}
