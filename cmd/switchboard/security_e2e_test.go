package main

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// End-to-end tests of the attacks an Internet-facing proxy sees, against
// the real binary on the provider route set. Every would-be target is a
// socket of the test on loopback that counts what reaches it: nothing
// must.

// udpPeer is a UDP socket of the test that collects what it receives.
type udpPeer struct {
	t    *testing.T
	conn net.PacketConn
	mu   sync.Mutex
	got  []string
}

// newUDPPeer is a peer on 127.0.0.1.
func newUDPPeer(t *testing.T) *udpPeer {
	t.Helper()
	return newUDPPeerOn(t, "127.0.0.1")
}

// newUDPPeerOn is a peer bound to another loopback address ip (such as
// 127.0.0.2), so that the server sees another source.
func newUDPPeerOn(t *testing.T, ip string) *udpPeer {
	t.Helper()
	c, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	p := &udpPeer{t: t, conn: c}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.got = append(p.got, string(buf[:n]))
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return p
}

func (p *udpPeer) Port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// send writes msg to the server, LOCALPORT replaced by the peer's port.
func (p *udpPeer) send(port int, msg string) {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "LOCALPORT", strconv.Itoa(p.Port()))
	if _, err := p.conn.WriteTo([]byte(msg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		p.t.Fatal(err)
	}
}

// take waits d and returns what arrived since the last take.
func (p *udpPeer) take(d time.Duration) []string {
	time.Sleep(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.got
	p.got = nil
	return out
}

// waitFor returns the first message received that starts with prefix.
func (p *udpPeer) waitFor(prefix string, d time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for i, m := range p.got {
			if strings.HasPrefix(m, prefix) {
				p.got = append(p.got[:i:i], p.got[i+1:]...)
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("no %q received in %s", prefix, d)
	return ""
}

// tcpTarget is a TCP listener of the test that counts connections.
type tcpTarget struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
}

func newTCPTarget(t *testing.T) *tcpTarget {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt := &tcpTarget{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tt.mu.Lock()
			tt.conns++
			tt.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return tt
}

func (tt *tcpTarget) Port() int { return tt.ln.Addr().(*net.TCPAddr).Port }

func (tt *tcpTarget) count() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.conns
}

// sipRequest builds a request from the peer at LOCALPORT.
func sipRequest(method, ruri, callID, from, to, extra string) string {
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: " + from + "\r\n" +
		"To: " + to + "\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 2 " + method + "\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

// TestE2ENoOpenRelay: the relay and SSRF attempts that an in-dialog
// request could make before Record-Route was signed. A call is set up
// through the proxy to learn a real recorded Route; then an attacker
// sends requests with forged To tags, made-up or copied Routes and
// foreign Request-URIs. Each gets 403 or 404 and the targets (a UDP and a
// TCP socket on loopback) receive nothing.
func TestE2ENoOpenRelay(t *testing.T) {
	t.Parallel()
	needSipp(t)
	// REGISTER without a password keeps the test to the in-dialog checks;
	// they do not depend on it.
	srv := startServer(t, "auth:\n  register: false\n")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bob, caller, attacker := newUDPPeer(t), newUDPPeer(t), newUDPPeer(t)
	target, tcp := newUDPPeer(t), newTCPTarget(t)

	bob.send(srv.Port, sipRequest("REGISTER", "sip:localhost", "reg-bob", "<sip:bob@localhost>;tag=r1", "<sip:bob@localhost>",
		"Contact: <sip:bob@127.0.0.1:LOCALPORT>\r\nExpires: 300\r\n"))
	if r := bob.waitFor("SIP/2.0 ", 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER: %q", statusLine(r))
	}
	caller.send(srv.Port, sipRequest("INVITE", "sip:bob@localhost", "call-1", "<sip:someone@example.net>;tag=c1", "<sip:bob@localhost>",
		"Contact: <sip:someone@127.0.0.1:LOCALPORT>\r\n"))
	inv := bob.waitFor("INVITE ", 3*time.Second)
	rr := regexp.MustCompile(`(?m)^Record-Route: (<[^>]+>)`).FindStringSubmatch(inv)
	if rr == nil || !strings.Contains(rr[1], ";sig=") {
		t.Fatalf("no signed Record-Route in the relayed INVITE:\n%s", inv)
	}
	// bob hangs up along the recorded route: the caller gets the BYE.
	bob.send(srv.Port, sipRequest("BYE", "sip:someone@127.0.0.1:"+strconv.Itoa(caller.Port()), "call-1",
		"<sip:bob@localhost>;tag=b1", "<sip:someone@example.net>;tag=c1", "Route: "+rr[1]+"\r\n"))
	caller.waitFor("BYE ", 3*time.Second)

	tgt := "127.0.0.1:" + strconv.Itoa(target.Port())
	from, to := "<sip:mallory@example.net>;tag=m1", "<sip:x@example.net>;tag=forged"
	for _, c := range []struct{ name, msg, want string }{
		{"INVITE with a forged To tag and a Route to the target",
			sipRequest("INVITE", "sip:+19005551234@"+tgt, "a1", from, to, "Route: <sip:"+tgt+";lr>\r\n"), "403 Forbidden Route"},
		{"BYE with our address unsigned as Route, foreign Request-URI",
			sipRequest("BYE", "sip:x@"+tgt, "a2", from, to, "Route: <sip:127.0.0.1:"+strconv.Itoa(srv.Port)+";lr>\r\n"), "404 Not here"},
		{"BYE with a made-up signature",
			sipRequest("BYE", "sip:x@"+tgt, "a3", from, to, "Route: <sip:127.0.0.1:"+strconv.Itoa(srv.Port)+";lr;sig=0123456789abcdef>\r\n"), "403 Forbidden Route"},
		{"the recorded Route reused for another Call-ID",
			sipRequest("INVITE", "sip:+19005551234@"+tgt, "a4", "<sip:bob@localhost>;tag=b1", "<sip:someone@example.net>;tag=c1", "Route: "+rr[1]+"\r\n"), "403 Forbidden Route"},
		{"unsigned Route through us to the target",
			sipRequest("INVITE", "sip:+19005551234@example.net", "a5", from, to, "Route: <sip:127.0.0.1:"+strconv.Itoa(srv.Port)+";lr>, <sip:"+tgt+";lr>\r\n"), "403 Forbidden Route"},
		{"MESSAGE to a TCP port (SSRF)",
			sipRequest("MESSAGE", "sip:x@127.0.0.1:"+strconv.Itoa(tcp.Port())+";transport=tcp", "a6", from, to, "Content-Type: text/plain\r\n"), "404 Not here"},
		{"initial INVITE preloaded with a Route to the target",
			sipRequest("INVITE", "sip:bob@localhost", "a7", "<sip:mallory@example.net>;tag=m1", "<sip:bob@localhost>", "Route: <sip:"+tgt+";lr>\r\n"), "403 Preload Route denied"},
	} {
		attacker.send(srv.Port, c.msg)
		if r := attacker.waitFor("SIP/2.0 ", 3*time.Second); statusLine(r) != "SIP/2.0 "+c.want {
			t.Errorf("%s: %q, want %q", c.name, statusLine(r), c.want)
		}
	}
	if got := target.take(500 * time.Millisecond); len(got) != 0 {
		t.Errorf("the target received %d messages:\n%s", len(got), strings.Join(got, "\n"))
	}
	if n := tcp.count(); n != 0 {
		t.Errorf("the TCP target got %d connections from the proxy", n)
	}
	for _, m := range bob.take(0) {
		if strings.HasPrefix(m, "SIP/2.0 100 ") && strings.Contains(m, "CSeq: 2 BYE\r\n") {
			continue // the caller never answers the BYE: RFC 4320 §4.1's 100 after 3·T1
		}
		if !strings.HasPrefix(m, "INVITE ") || !strings.Contains(m, "Call-ID: call-1\r\n") { // bob never answers: retransmissions
			t.Errorf("bob received %q", m)
		}
	}
}

// TestE2ESpoofedInviteGetsOnePacket: an INVITE from a spoofed source to a
// name that is no subscriber (with 800 Via values, the amplification
// attempt) gets exactly one response, with no 100 Trying ahead of it and
// no retransmission while the proxy waits for an ACK that never comes.
// The answer for a subscriber who is not registered is the same 480.
func TestE2ESpoofedInviteGetsOnePacket(t *testing.T) {
	needSipp(t)
	srv := startServer(t, "")
	addUser(t, srv, "carol@localhost", "carol-pw")
	victim := newUDPPeer(t)
	var vias strings.Builder
	vias.WriteString("Via: ")
	for i := 0; i < 800; i++ {
		if i > 0 {
			vias.WriteString(", ")
		}
		vias.WriteString("SIP/2.0/UDP 192.0.2." + strconv.Itoa(i%250+1) + ":5060;branch=z9hG4bK-amp" + strconv.Itoa(i))
	}
	vias.WriteString("\r\n")
	for _, user := range []string{"nobody", "carol"} {
		msg := sipRequest("INVITE", "sip:"+user+"@localhost", "amp-"+user, "<sip:x@example.net>;tag=x1", "<sip:"+user+"@localhost>", "")
		msg = strings.Replace(msg, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n"+vias.String(), 1)
		if len(msg) < 40000 {
			t.Fatalf("request of %d bytes", len(msg))
		}
		victim.send(srv.Port, msg)
		// t1 is 100ms in tests: a stateful 480 would be sent again at
		// 100, 300, 700, 1500 ms.
		got := victim.take(2 * time.Second)
		if len(got) != 1 || statusLine(got[0]) != "SIP/2.0 480 Temporarily Unavailable" {
			lines := make([]string, len(got))
			for i, m := range got {
				lines[i] = statusLine(m)
			}
			t.Errorf("INVITE to %s: %d packets back %q, want one 480", user, len(got), lines)
		}
	}
}

// TestE2EOutboundProxyPreload: a phone whose outbound proxy is this server
// preloads a Route to it on every out-of-dialog request; the server removes
// it and answers as without it (RFC 3261 §16.4). A Route preloaded to
// another proxy is still refused.
func TestE2EOutboundProxyPreload(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "")
	p := newUDPPeer(t)
	own := "Route: <sip:127.0.0.1:" + strconv.Itoa(srv.Port) + ";lr>\r\n"
	for _, c := range []struct{ name, msg, want string }{
		{"OPTIONS keep-alive", sipRequest("OPTIONS", "sip:127.0.0.1:"+strconv.Itoa(srv.Port), "o1", "<sip:alice@localhost>;tag=a", "<sip:127.0.0.1>", own), "200 OK"},
		{"REGISTER", sipRequest("REGISTER", "sip:localhost", "r1", "<sip:alice@localhost>;tag=a", "<sip:alice@localhost>", own+"Contact: <sip:alice@127.0.0.1:LOCALPORT>\r\n"), "401 Unauthorized"},
		{"INVITE", sipRequest("INVITE", "sip:bob@localhost", "i1", "<sip:alice@localhost>;tag=a", "<sip:bob@localhost>", own), "407 Proxy Authentication Required"},
		{"INVITE preloaded elsewhere", sipRequest("INVITE", "sip:bob@localhost", "i2", "<sip:alice@localhost>;tag=a", "<sip:bob@localhost>", "Route: <sip:127.0.0.1:1;lr>\r\n"), "403 Preload Route denied"},
	} {
		p.send(srv.Port, c.msg)
		if r := p.waitFor("SIP/2.0 ", 3*time.Second); statusLine(r) != "SIP/2.0 "+c.want {
			t.Errorf("%s: %q, want %q", c.name, statusLine(r), c.want)
		}
	}
}
