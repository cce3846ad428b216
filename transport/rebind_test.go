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
