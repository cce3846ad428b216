package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2ERequire: where the server answers as the UAS (an OPTIONS to the
// proxy itself, a REGISTER), an option tag in Require that it does not
// support gets 420 Bad Extension with Unsupported (RFC 3261 §8.2.2.3,
// §10.3); a request it relays keeps its Require, which is for the UAS at
// the other end.
func TestE2ERequire(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  register: false\n")
	addUser(t, srv, "bob@localhost", "bob-pw")
	self := "sip:127.0.0.1:" + strconv.Itoa(srv.Port)
	options := func(extra string) string {
		return request("OPTIONS", self, "To: <"+self+">\r\nMax-Forwards: 70\r\n"+extra)
	}

	r := sendUDP(t, srv.Port, options("Require: foo, 100rel\r\n"), 3*time.Second)
	if statusLine(r) != "SIP/2.0 420 Bad Extension" || !strings.Contains(r, "\r\nUnsupported: foo, 100rel\r\n") {
		t.Fatalf("OPTIONS with Require: %q\n%s", statusLine(r), r)
	}
	if r := sendUDP(t, srv.Port, options(""), 3*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS without Require: %q", statusLine(r))
	}

	register := func(extra string) string {
		m := request("REGISTER", "sip:localhost", "To: <sip:bob@localhost>\r\nMax-Forwards: 70\r\n"+
			"Contact: <sip:bob@127.0.0.1:5999>\r\nExpires: 300\r\n"+extra)
		return strings.Replace(m, "From: <sip:bob@example.org>", "From: <sip:bob@localhost>", 1)
	}
	r = sendUDP(t, srv.Port, register("Require: gruu\r\n"), 3*time.Second)
	if statusLine(r) != "SIP/2.0 420 Bad Extension" || !strings.Contains(r, "\r\nUnsupported: gruu\r\n") {
		t.Fatalf("REGISTER with Require: gruu: %q\n%s", statusLine(r), r)
	}
	if l := bindings(t, srv, "bob@localhost"); len(l) != 0 {
		t.Fatalf("a refused REGISTER left bindings: %+v", l)
	}
	if r := sendUDP(t, srv.Port, register("Require: path\r\n"), 3*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER with Require: path: %q", statusLine(r))
	}

	// Relayed: a MESSAGE to bob, registered at a raw UAS, keeps its Require
	// and gets the UAS's answer.
	bob := startRawUAS(t, "127.0.0.1:0")
	bob.register(t, srv, "bob")
	msg := request("MESSAGE", "sip:bob@localhost", "To: <sip:bob@localhost>\r\nMax-Forwards: 70\r\nRequire: foo\r\n")
	if r := sendUDP(t, srv.Port, msg, 3*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("relayed MESSAGE with Require: %q", statusLine(r))
	}
	if got := bob.next(t, 3*time.Second); !strings.Contains(got, "\r\nRequire: foo\r\n") {
		t.Fatalf("the relayed MESSAGE lost its Require:\n%s", got)
	}
}
