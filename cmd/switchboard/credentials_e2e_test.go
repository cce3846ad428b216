package main

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawUAS is a UDP peer standing in for the next hop: it keeps every
// request it receives and answers each with 200.
type rawUAS struct {
	conn  net.PacketConn
	got   chan string // requests
	resps chan string // responses (to what the peer itself sent)
}

func startRawUAS(t *testing.T, addr string) *rawUAS {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUAS{conn: c, got: make(chan string, 16), resps: make(chan string, 16)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if strings.HasPrefix(msg, "SIP/2.0 ") {
				select {
				case u.resps <- msg:
				default:
				}
				continue
			}
			select {
			case u.got <- msg:
			default:
			}
			c.WriteTo([]byte(answer200(msg)), src)
		}
	}()
	return u
}

func (u *rawUAS) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

// register registers user@localhost at srv from the peer's own socket,
// with the peer as contact, and fails unless the answer is 200.
func (u *rawUAS) register(t *testing.T, srv *testServer, user string) {
	t.Helper()
	port := strconv.Itoa(u.port())
	reg := request("REGISTER", "sip:localhost", "To: <sip:"+user+"@localhost>\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:"+user+"@127.0.0.1:"+port+">\r\nExpires: 300\r\n")
	reg = strings.Replace(reg, "LOCALPORT", port, 1)
	reg = strings.Replace(reg, "From: <sip:bob@example.org>", "From: <sip:"+user+"@localhost>", 1)
	if _, err := u.conn.WriteTo([]byte(reg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srv.Port}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-u.resps:
		if statusLine(r) != "SIP/2.0 200 OK" {
			t.Fatalf("REGISTER %s: %q", user, statusLine(r))
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("REGISTER %s: no answer", user)
	}
}

// next returns the next request received, failing after wait.
func (u *rawUAS) next(t *testing.T, wait time.Duration) string {
	t.Helper()
	select {
	case r := <-u.got:
		return r
	case <-time.After(wait):
		t.Fatal("the next hop received nothing")
		return ""
	}
}

// answer200 builds a 200 to req, as a UAS would: its Vias, From, To with a
// tag, Call-ID and CSeq.
func answer200(req string) string {
	out := "SIP/2.0 200 OK\r\n"
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "call-id", "i", "cseq":
			out += line + "\r\n"
		case "to", "t":
			out += line + ";tag=uas\r\n"
		}
	}
	return out + "Content-Length: 0\r\n\r\n"
}

var proxyChallengeRE = regexp.MustCompile(`Proxy-Authenticate: Digest realm="([^"]*)", nonce="([^"]*)", qop="auth", algorithm=MD5`)

// proxyCredentials answers the MD5 challenge of a 407 for method and uri.
func proxyCredentials(t *testing.T, resp, user, password, method, uri string) string {
	t.Helper()
	m := proxyChallengeRE.FindStringSubmatch(resp)
	if m == nil {
		t.Fatalf("no MD5 Proxy-Authenticate in:\n%s", resp)
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	realm, nonce := m[1], m[2]
	resp2 := h(h(user+":"+realm+":"+password) + ":" + nonce + ":00000001:5ca1ab1e:auth:" + h(method+":"+uri))
	return fmt.Sprintf("Proxy-Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5, cnonce=\"5ca1ab1e\", qop=auth, nc=00000001\r\n",
		user, realm, nonce, uri, resp2)
}

// The credentials of a downstream proxy's realm, which must travel on.
const carrierCredentials = `Proxy-Authorization: Digest username="acct-17", realm="carrier.example", nonce="abc", uri="sip:x@carrier.example", response="00000000000000000000000000000000", algorithm=MD5` + "\r\n"

// TestE2EConsumeCredentials: a request relayed after proxy authorization
// reaches the next hop without the credentials answered to us (OpenSIPS
// consume_credentials), to a registered subscriber and to another domain;
// credentials for another realm are relayed.
func TestE2EConsumeCredentials(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  register: false\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bob := startRawUAS(t, "127.0.0.1:0")
	bob.register(t, srv, "bob")
	carrier := startRawUAS(t, "127.0.0.2:0")

	for _, c := range []struct{ name, ruri string }{
		{"to a subscriber", "sip:bob@localhost"},
		{"to another domain", "sip:carol@127.0.0.2:" + strconv.Itoa(carrier.port())},
	} {
		msg := func(extra string) string {
			m := request("MESSAGE", c.ruri, "To: <"+c.ruri+">\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n"+extra)
			return strings.Replace(m, "From: <sip:bob@example.org>", "From: <sip:alice@localhost>", 1)
		}
		ch := sendUDP(t, srv.Port, msg(carrierCredentials), 3*time.Second)
		if statusLine(ch) != "SIP/2.0 407 Proxy Authentication Required" {
			t.Fatalf("%s: %q, want 407", c.name, statusLine(ch))
		}
		creds := proxyCredentials(t, ch, "alice", "alice-pw", "MESSAGE", c.ruri)
		if r := sendUDP(t, srv.Port, msg(creds+carrierCredentials), 3*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
			t.Fatalf("%s: %q, want the next hop's 200", c.name, statusLine(r))
		}
		next := bob
		if strings.Contains(c.ruri, "127.0.0.2") {
			next = carrier
		}
		got := next.next(t, 3*time.Second)
		if strings.Contains(got, `realm="localhost"`) {
			t.Errorf("%s: our credentials were relayed:\n%s", c.name, got)
		}
		if !strings.Contains(got, carrierCredentials) {
			t.Errorf("%s: the carrier's credentials were not relayed:\n%s", c.name, got)
		}
	}
}
