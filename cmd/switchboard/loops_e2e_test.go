package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2EResponseLoopDropped: the reported response loop against the
// binary. One 29 KB response carries 1,000 Via values of the server's own
// address and then the Via of a listener; the server used to forward it to
// itself once per Via (1,002 packets). It is now handled once and dropped,
// /metrics counts the drop, and nothing reaches the listener.
func TestE2EResponseLoopDropped(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "")
	target := newUDPPeer(t)
	own := "SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(srv.Port)
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for line := 0; line < 20; line++ { // at most 64 header lines: 50 values a line
		b.WriteString("Via: " + own + ";branch=z9hG4bK-l" + strconv.Itoa(line))
		for i := 1; i < 50; i++ {
			b.WriteString(", " + own)
		}
		b.WriteString("\r\n")
	}
	b.WriteString("Via: SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(target.Port()) + ";branch=z9hG4bK-target\r\n" +
		"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n" +
		"Call-ID: loop1000@test\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
	if b.Len() < 29000 {
		t.Fatalf("the response is %d bytes", b.Len())
	}

	before := srv.metrics()
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	const dropped = "switchboard_response_loops_dropped_total"
	deadline := time.Now().Add(5 * time.Second)
	for srv.metrics()[dropped] == before[dropped] && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // hops that would follow have time to happen
	after := srv.metrics()
	if d := after[dropped] - before[dropped]; d != 1 {
		t.Errorf("%s +%v, want +1", dropped, d)
	}
	if d := after["switchboard_replies_received_total"] - before["switchboard_replies_received_total"]; d != 1 {
		t.Errorf("responses received +%v, want +1 (one hop)", d)
	}
	if d := after["switchboard_replies_forwarded_stateless_total"] - before["switchboard_replies_forwarded_stateless_total"]; d != 0 {
		t.Errorf("responses forwarded +%v, want 0", d)
	}
	if n := len(target.take(0)); n != 0 {
		t.Errorf("the listener behind the loop received %d packets", n)
	}
}
