package main

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sipPhone is a raw SIP phone on one UDP socket, so that a retransmission
// comes from the same source as the original.
type sipPhone struct {
	t    *testing.T
	conn *net.UDPConn
	port int
	srv  *net.UDPAddr
}

func newSIPPhone(t *testing.T, srvPort int) *sipPhone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipPhone{t: t, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port, srv: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srvPort}}
}

// fill puts the peer's port where the message says LOCALPORT.
func (p *sipPhone) fill(msg string) string {
	return strings.ReplaceAll(msg, "LOCALPORT", strconv.Itoa(p.port))
}

// send sends msg (as filled) and returns the first final answer.
func (p *sipPhone) send(msg string) string {
	p.t.Helper()
	if _, err := p.conn.WriteTo([]byte(msg), p.srv); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			p.t.Fatalf("no answer to\n%s", msg)
		}
		if r := string(buf[:n]); !strings.HasPrefix(r, "SIP/2.0 1") {
			return r
		}
	}
}

type natBinding struct {
	AOR, Contact string
	NAT          bool
}

func natBindings(t *testing.T, srv *testServer, aor string) []natBinding {
	t.Helper()
	var l []natBinding
	if err := json.Unmarshal(mgmtCall(t, srv, "registrations.list", `{"aor":"`+aor+`"}`), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestE2EDigestURIRetransmissionAndOrder drives the binary with a raw UDP
// phone: credentials computed for another URI get 400 (RFC 7616 §3.4.6);
// a retransmitted REGISTER gets its 200 again while the same nonce-count in
// another request is a replay; a lower CSeq fails (RFC 3261 §10.3 step 7);
// and an authenticated contact elsewhere than the phone's address is stored
// as a third-party registration, not as behind NAT.
func TestE2EDigestURIRetransmissionAndOrder(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "")
	addUser(t, srv, "hal@localhost", "hal-pw")
	p := newSIPPhone(t, srv.Port)
	u := &digestUA{user: "hal"}

	// Credentials for another Request-URI (a served domain too): 400,
	// nothing registered.
	ch := pickChallenge(t, p.send(p.fill(u.register(nil, 0, ""))), "SHA-256")
	forged := strings.Replace(p.fill(u.register(ch, 1, "hal-pw")), "REGISTER sip:localhost SIP/2.0", "REGISTER sip:127.0.0.1 SIP/2.0", 1)
	if r := p.send(forged); statusLine(r) != "SIP/2.0 400 Digest URI Mismatch" {
		t.Fatalf("credentials for another URI: %s", r)
	}

	// The right request, then its retransmission: the same 200.
	ch = pickChallenge(t, p.send(p.fill(u.register(nil, 0, ""))), "SHA-256")
	msg := p.fill(u.register(ch, 1, "hal-pw"))
	if r := p.send(msg); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %s", r)
	}
	time.Sleep(300 * time.Millisecond) // a retransmission after the stateless answer's transaction ended
	if r := p.send(msg); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("retransmission: %s", r)
	}
	// The same nonce-count in another request, or with another contact
	// on the same branch: a replay.
	for name, m := range map[string]string{
		"new request":     p.fill(u.register(ch, 1, "hal-pw")),
		"another contact": strings.Replace(msg, "<sip:hal@127.0.0.1:5999>", "<sip:hal@127.0.0.1:5998>", 1),
	} {
		time.Sleep(300 * time.Millisecond) // not the previous transaction, which would answer as it did
		if r := p.send(m); statusLine(r) != "SIP/2.0 401 Unauthorized" || !parseChallenges(r)[0].stale {
			t.Errorf("%s with a used nonce-count: %s", name, statusLine(r))
		}
	}
	m := srv.metrics()
	if m["switchboard_auth_retransmits_total"] != 1 || m["switchboard_auth_bad_uri_total"] != 1 {
		t.Errorf("metrics: retransmits %v, bad_uri %v", m["switchboard_auth_retransmits_total"], m["switchboard_auth_bad_uri_total"])
	}

	// The contact (127.0.0.1:5999) is not where the phone sends from, but
	// the REGISTER is authenticated and no NAT test holds (its Via is its
	// address): stored as given.
	if l := natBindings(t, srv, "hal@localhost"); len(l) != 1 || l[0].Contact != "sip:hal@127.0.0.1:5999" || l[0].NAT {
		t.Fatalf("third-party contact: %+v", l)
	}

	// A lower CSeq on the same Call-ID: 400, the binding stays.
	u.seq = 1
	unreg := strings.Replace(p.fill(u.register(ch, 2, "hal-pw")), "Expires: 300", "Expires: 0", 1)
	if r := p.send(unreg); statusLine(r) != "SIP/2.0 400 Out of Order CSeq" {
		t.Fatalf("lower CSeq: %s", r)
	}
	if l := natBindings(t, srv, "hal@localhost"); len(l) != 1 {
		t.Fatalf("the refused REGISTER removed the binding: %+v", l)
	}
}

// TestE2EUnauthenticatedContactIsItsSource: with auth.register false the
// same REGISTER's contact is reached at its source (marked behind NAT).
func TestE2EUnauthenticatedContactIsItsSource(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "auth:\n  register: false\n")
	p := newSIPPhone(t, srv.Port)
	if r := p.send(p.fill((&digestUA{user: "ida"}).register(nil, 0, ""))); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatal(r)
	}
	if l := natBindings(t, srv, "ida@localhost"); len(l) != 1 || !l[0].NAT {
		t.Fatalf("unauthenticated contact elsewhere: %+v", l)
	}
}
