package txn

import (
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/sipdns"
	"switchboard/sipdns/dnstest"
	"switchboard/transport"
)

// The core with a resolver (package sipdns) asking a DNS server on
// loopback: hostnames in the Request-URI and in Route.

// uasZone serves uas.test: A 127.0.0.1, no AAAA; other names NXDOMAIN.
func uasZone(t *testing.T) string {
	return dnstest.NewZone(t, dnstest.A("uas.test", 60, "127.0.0.1")).Addr
}

const udpTCP = sipdns.Protos(1<<transport.UDP | 1<<transport.TCP)

// resolveNow runs Resolve and waits for its answer.
func resolveNow(t *testing.T, r *sipdns.Resolver, h sipdns.NextHop) ([]sipdns.Target, error) {
	t.Helper()
	type res struct {
		ts  []sipdns.Target
		err error
	}
	ch := make(chan res, 1)
	r.Resolve(h, func(ts []sipdns.Target, err error) { ch <- res{ts, err} })
	select {
	case x := <-ch:
		return x.ts, x.err
	case <-time.After(5 * time.Second):
		t.Fatal("resolution did not complete")
	}
	return nil, nil
}

func TestResolverHostnameNextHop(t *testing.T) {
	dns := uasZone(t)
	h := newHarness(t, func(c *Config) {
		c.Resolver = sipdns.New(sipdns.Config{Server: dns, Timeout: 2 * time.Second})
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
	dns := uasZone(t)
	h := newHarness(t, func(c *Config) {
		c.Resolver = sipdns.New(sipdns.Config{Server: dns, Timeout: 2 * time.Second})
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
