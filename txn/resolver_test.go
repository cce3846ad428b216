package txn

import (
	"net"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
)

// dnsServer answers A queries for one name with 127.0.0.1 on a loopback
// UDP socket; everything else gets NXDOMAIN (AAAA for the name: no data).
func dnsServer(t *testing.T, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if len(q) < 17 {
				continue
			}
			// question: labels from offset 12
			i := 12
			var labels []string
			for i < len(q) && q[i] != 0 {
				l := int(q[i])
				if i+1+l > len(q) {
					break
				}
				labels = append(labels, string(q[i+1:i+1+l]))
				i += 1 + l
			}
			i++
			if i+4 > len(q) {
				continue
			}
			qtype := int(q[i])<<8 | int(q[i+1])
			qend := i + 4
			resp := append([]byte(nil), q[:qend]...)
			resp[2], resp[3] = 0x81, 0x80 // response, RD, RA, NOERROR
			resp[6], resp[7] = 0, 0       // ancount
			resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0
			got := strings.ToLower(strings.Join(labels, "."))
			switch {
			case got != name:
				resp[3] = 0x83 // NXDOMAIN
			case qtype == 1:
				resp[7] = 1
				resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
			}
			pc.WriteTo(resp, src)
		}
	}()
	return pc.LocalAddr().String()
}

func TestResolverHostnameNextHop(t *testing.T) {
	dns := dnsServer(t, "uas.test")
	h := newHarness(t, func(c *Config) {
		c.Resolver = NewResolver(ResolverConfig{Server: dns, Timeout: 2 * time.Second})
	})
	var failures []int
	done := make(chan struct{}, 1)
	h.rt.failure = func(r *Request, best *parser.Message) {
		failures = append(failures, best.StatusCode())
		done <- struct{}{}
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKdns", "dns@x", "sip:bob@uas.test:5080", ""))
	var msgs []sentMsg
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		msgs = h.snd.take()
	}
	h.only(msgs, toUAS+"MESSAGE sip:bob@uas.test:5080 SIP/2.0")

	h.in(uacAddr, request("MESSAGE", "z9hG4bKdns2", "dns2@x", "sip:bob@unknown.test:5080", ""))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no failure after an unresolvable next hop")
	}
	msgs = nil
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		msgs = h.snd.take() // the 500 follows the failure route on the resolver goroutine
		time.Sleep(5 * time.Millisecond)
	}
	h.only(msgs, toUAC+"SIP/2.0 500 Server Internal Error")
	if len(failures) != 1 || failures[0] != 503 {
		t.Fatalf("failure route saw %v", failures)
	}
}

func TestResolverStatelessACK(t *testing.T) {
	dns := dnsServer(t, "uas.test")
	h := newHarness(t, func(c *Config) {
		c.Resolver = NewResolver(ResolverConfig{Server: dns, Timeout: 2 * time.Second})
	})
	ack := request("ACK", "z9hG4bKdnsack", "dnsack@x", "sip:bob@127.0.0.1:5090", "Route: <sip:127.0.0.1:5060;lr>, <sip:uas.test:5080;lr>")
	h.in(uacAddr, strings.Replace(ack, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b", 1))
	var msgs []sentMsg
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		msgs = h.snd.take()
	}
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5090 SIP/2.0")
	if r := headers(msgs[0].data, "Route"); len(r) != 1 || r[0] != "<sip:uas.test:5080;lr>" {
		t.Fatalf("routes %q", r)
	}
}
