package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestE2EOutbound: RFC 5626 outbound through the binary with the provider
// route set. A sipp phone registers over a connection (TCP on IPv4 and
// IPv6, TLS on IPv6) with a Contact nothing can reach (192.0.2.10, ";ob")
// and +sip.instance/reg-id; the 200 says "Require: outbound" with a
// Flow-Timer (the phone's scenario checks both). A caller on UDP calls
// it: the INVITE reaches the phone over its connection with a Record-Route
// carrying its flow token (checked by the phone), and the caller's ACK and
// BYE follow the route to the phone's connection. A made-up flow token in
// a preloaded Route is refused. Once the phone's connection closes, a call
// to it gets 430 Flow Failed.
func TestE2EOutbound(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv, port6, tls6, _, pool := dualStackServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")

	for _, c := range []struct{ name, ip, transport string }{
		{"tcp4", "127.0.0.1", "TCP"},
		{"tcp6", "::1", "TCP"},
		{"tls6", "::1", "TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			server := net.JoinHostPort(c.ip, strconv.Itoa(srv.Port))
			if c.ip == "::1" {
				server = net.JoinHostPort(c.ip, strconv.Itoa(port6))
			}
			if c.transport == "TLS" {
				ln, err := net.Listen("tcp", net.JoinHostPort(c.ip, "0"))
				if err != nil {
					t.Fatal(err)
				}
				tm := startTerminator(t, ln, func() (net.Conn, error) {
					d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second},
						Config: &tls.Config{RootCAs: pool, ServerName: "::1"}}
					return d.DialContext(context.Background(), "tcp", "[::1]:"+strconv.Itoa(tls6))
				})
				server = net.JoinHostPort(c.ip, strconv.Itoa(tm.Port()))
			}
			phonePort := freeSIPPort(t)
			if c.ip == "::1" {
				phonePort = freeSIPPort6(t)
			}
			phone := startSippPeer(t, "-sf", "outbound_phone.xml", "-oocsf", "outbound_phone_ooc.xml", "-t", "t1",
				"-i", c.ip, "-p", strconv.Itoa(phonePort), "-m", "1",
				"-key", "domain", "localhost", "-key", "user", "bob", "-key", "via_transport", c.transport,
				"-au", "bob", "-ap", "bob-pw", server)
			var l []struct {
				Contact, Received string
				Outbound          bool
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				if err := json.Unmarshal(mgmtCall(t, srv, "registrations.list", `{"aor":"bob@localhost"}`), &l); err != nil {
					t.Fatal(err)
				}
				if len(l) == 1 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(l) != 1 || l[0].Contact != "sip:bob@192.0.2.10:5999;transport=tcp;ob" || !l[0].Outbound {
				t.Fatalf("bob's bindings %+v; phone:\n%s", l, phone.out.String())
			}

			// alice calls bob from UDP on the phone's family.
			callerServer := net.JoinHostPort(c.ip, strconv.Itoa(srv.Port))
			callerPort := freeSIPPort(t)
			if c.ip == "::1" {
				callerServer, callerPort = net.JoinHostPort(c.ip, strconv.Itoa(port6)), freeSIPPort6(t)
			}
			call := func(scenario string) sippResult {
				return runSipp(t, 20*time.Second, "-sf", scenario, "-i", c.ip, "-p", strconv.Itoa(callerPort), "-m", "1",
					"-key", "domain", "localhost", "-key", "user", "alice", "-key", "callee", "bob",
					"-au", "alice", "-ap", "alice-pw", callerServer)
			}
			if r := call("uac_auth_call.xml"); r.Code != 0 {
				t.Fatalf("call to the outbound phone: exit %d\n%s\nphone:\n%s\nserver:\n%s", r.Code, r.Output, phone.out.String(), srv.Log)
			}

			// A request with a made-up flow token in a preloaded Route (the
			// connection numbers are small: 1 names one of the phones') is
			// refused, not sent over any connection.
			forged := "INVITE sip:bob@192.0.2.10:5999;transport=tcp;ob SIP/2.0\r\n" +
				"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-forged-" + c.name + ";rport\r\n" +
				"Route: <sip:127.0.0.1:" + strconv.Itoa(srv.Port) + ";transport=tcp;lr;ob;flow=aaaaaa0000000000000001deadbeefdeadbeef>\r\n" +
				"Max-Forwards: 70\r\nFrom: <sip:mallory@example.net>;tag=m1\r\nTo: <sip:bob@localhost>\r\n" +
				"Call-ID: forged-" + c.name + "@test\r\nCSeq: 1 INVITE\r\nContact: <sip:mallory@127.0.0.1:LOCALPORT>\r\nContent-Length: 0\r\n\r\n"
			if resp := sendUDP(t, srv.Port, forged, 3*time.Second); statusLine(resp) != "SIP/2.0 403 Preload Route denied" {
				t.Fatalf("a forged flow token got %q", statusLine(resp))
			}

			// The phone goes away: its connection closes, and the next call
			// gets 430 (no connection is opened to it, no 480).
			// (Once the server has seen it close: an INVITE written into a
			// connection the peer has just closed is lost, as on any
			// network, and the caller would wait for timer B.)
			open := srv.metrics()["switchboard_connections_open"]
			phone.cmd.Process.Kill()
			phone.wait(5 * time.Second)
			for deadline := time.Now().Add(5 * time.Second); srv.metrics()["switchboard_connections_open"] >= open; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the server still has %v connections open", srv.metrics()["switchboard_connections_open"])
				}
			}
			if r := call("uac_auth_call_430.xml"); r.Code != 0 {
				t.Fatalf("call after the flow closed: exit %d\n%s", r.Code, r.Output)
			}
			// The binding stays until it expires or the phone registers
			// again on a new flow; clear it for the next case.
			mgmtCall(t, srv, "registrations.flush", `{"aor":"bob@localhost"}`)
		})
	}
}
