package txn

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// UDP in, TCP out to a loopback port nobody listens on: the connect is
// refused after the INVITE was queued, and the caller gets the final
// response at once instead of after timer B (6.4 s here) or C (20 s).
func TestUDPToDeadTCPNextHop(t *testing.T) {
	p := startProxy(t, nil)
	dead := freePort(t, "tcp")
	uac, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uac.Close()
	me := uac.LocalAddr().(*net.UDPAddr).AddrPort()
	ruri := "sip:callee@127.0.0.1:" + strconv.Itoa(dead) + ";transport=tcp"
	inv := "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + me.String() + ";branch=z9hG4bKdeadtcp;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:caller@127.0.0.1>;tag=c1\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: deadtcp@127.0.0.1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:caller@" + me.String() + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	proxy := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.udpPort}
	start := time.Now()
	if _, err := uac.WriteToUDP([]byte(inv), proxy); err != nil {
		t.Fatal(err)
	}
	uac.SetReadDeadline(start.Add(5 * time.Second))
	buf := make([]byte, 4096)
	var final string
	for final == "" {
		n, err := uac.Read(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 1") {
			final = line
		}
	}
	took := time.Since(start)
	if final != "SIP/2.0 500 Server Internal Error" {
		t.Fatalf("final response %q, want 500 (the branch's 503, §16.7 step 6)", final)
	}
	if took > 500*time.Millisecond {
		t.Fatalf("final response after %v: the failure waited for a timer", took)
	}
	p.router.mu.Lock()
	defer p.router.mu.Unlock()
	if len(p.router.failures) != 1 || p.router.failures[0] != 503 {
		t.Fatalf("failure route saw %v, want [503]", p.router.failures)
	}
	if st := p.core.Stats(); st.SendErrors == 0 {
		t.Fatalf("send error not counted: %+v", st)
	}
}
