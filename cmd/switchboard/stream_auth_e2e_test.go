package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// streamClient is a SIP client on one TCP or TLS connection: it writes
// requests and reads the responses the server sends back on it.
type streamClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialStream(t *testing.T, conn net.Conn) *streamClient {
	t.Cleanup(func() { conn.Close() })
	return &streamClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// send writes msg, its Via transport and LOCALPORT made to match the
// connection.
func (c *streamClient) send(msg, proto string) {
	c.t.Helper()
	port := c.conn.LocalAddr().(*net.TCPAddr).Port
	msg = strings.Replace(msg, "SIP/2.0/UDP", "SIP/2.0/"+proto, 1)
	msg = strings.ReplaceAll(msg, "LOCALPORT", strconv.Itoa(port))
	if _, err := c.conn.Write([]byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

// final returns the next final response on the connection, as sent, or
// "" when none came within wait.
func (c *streamClient) final(wait time.Duration) string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		var msg strings.Builder
		n := 0
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				return ""
			}
			msg.WriteString(line)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(name, "Content-Length") || name == "l") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.r, body); err != nil {
			return ""
		}
		msg.Write(body)
		if !strings.HasPrefix(msg.String(), "SIP/2.0 1") {
			return msg.String()
		}
	}
}

// reusePortDialer dials from one fixed local port for every connection,
// as phones that bind their SIP port for TCP do.
func reusePortDialer(t *testing.T) *net.Dialer {
	port := freeSIPPort(t)
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// TestE2EStreamRegisterAfterLookup: a phone registers over one TCP (and
// one TLS) connection: 401, then, a moment later as a phone answers, the
// REGISTER with credentials, whose credential lookup misses the cache (the
// subscriber was never looked up) and suspends the request. The 200 must
// come back on the same connection. It did not: the 401 ended the
// transaction at once (a stream) and left a timer on its pooled entry,
// which the next transaction of the shard inherited as already answered.
// The "one port" case has the phone reach two TCP listeners from the same
// local port, the second connection opened last: the answers still go on
// the connection each request came in on.
func TestE2EStreamRegisterAfterLookup(t *testing.T) {
	t.Parallel()
	needSipp(t)
	dir := t.TempDir()
	certFile, keyFile, _, pool := testCert(t, dir)
	tlsPort, tcp2Port := freeSIPPort(t), freeSIPPort(t)
	srv := startServerWith(t, "tls:\n  cert: "+strconv.Quote(certFile)+"\n  key: "+strconv.Quote(keyFile)+"\n",
		serverOptions{Listen: "  - {proto: tls, address: \"127.0.0.1:" + strconv.Itoa(tlsPort) + "\"}\n" +
			"  - {proto: tcp, address: \"127.0.0.1:" + strconv.Itoa(tcp2Port) + "\"}\n"})
	tcpAddr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	cases := []struct {
		name, proto string
		dial        func(t *testing.T) (net.Conn, error)
	}{
		{"TCP", "TCP", func(*testing.T) (net.Conn, error) { return net.Dial("tcp", tcpAddr(srv.Port)) }},
		{"TLS", "TLS", func(*testing.T) (net.Conn, error) {
			return tls.Dial("tcp", tcpAddr(tlsPort), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		}},
		{"one port", "TCP", func(t *testing.T) (net.Conn, error) {
			d := reusePortDialer(t)
			a, err := d.Dial("tcp", tcpAddr(srv.Port))
			if err != nil {
				return nil, err
			}
			b, err := d.Dial("tcp", tcpAddr(tcp2Port))
			if err != nil {
				a.Close()
				return nil, err
			}
			// A keep-alive ping answered: the server has taken b in.
			other := dialStream(t, b)
			if _, err := b.Write([]byte("\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			b.SetReadDeadline(time.Now().Add(3 * time.Second))
			if pong, err := other.r.ReadString('\n'); err != nil || pong != "\r\n" {
				t.Fatalf("keep-alive on the second connection: %q %v", pong, err)
			}
			t.Cleanup(func() {
				if r := other.final(100 * time.Millisecond); r != "" {
					t.Errorf("an answer went on the other connection:\n%s", r)
				}
			})
			return a, nil
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user := "stream" + strconv.Itoa(i)
			addUser(t, srv, user+"@localhost", "pw-"+user)
			conn, err := tc.dial(t)
			if err != nil {
				t.Fatal(err)
			}
			c := dialStream(t, conn)
			u := &digestUA{user: user}
			for round := 1; round <= 3; round++ {
				c.send(u.register(nil, 0, ""), tc.proto)
				r := c.final(3 * time.Second)
				if statusLine(r) != "SIP/2.0 401 Unauthorized" {
					t.Fatalf("round %d, first REGISTER: %q", round, r)
				}
				// A phone takes a moment to answer the challenge.
				time.Sleep(50 * time.Millisecond)
				c.send(u.register(pickChallenge(t, r, "MD5"), 1, "pw-"+user), tc.proto)
				if r := c.final(3 * time.Second); statusLine(r) != "SIP/2.0 200 OK" {
					t.Fatalf("round %d, REGISTER with credentials: no 200 on the connection: %q", round, r)
				}
			}
			if l := bindings(t, srv, user+"@localhost"); len(l) != 1 {
				t.Fatalf("bindings: %+v", l)
			}
		})
	}
}
