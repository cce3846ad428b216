package pike

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// harness is a real transaction core and router whose request route runs
// pike's Check first, as the provider route set does, and answers 200 to
// what passes; the socket is a double that records what would be sent.
type harness struct {
	t     testing.TB
	p     *Pike
	core  *txn.Core
	clock *shards.Clock
	l     transport.Listener
	ls    []*transport.Listener

	mu      sync.Mutex
	answers map[string]int // 200s sent, by destination address
	dropped int
	keep    bool
}

func (h *harness) Send(_ *transport.Listener, dst netip.AddrPort, data []byte) error {
	if h.keep {
		h.mu.Lock()
		if strings.HasPrefix(string(data), "SIP/2.0 200") {
			h.answers[dst.Addr().String()]++
		}
		h.mu.Unlock()
	}
	return nil
}
func (h *harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *harness) Listeners() []*transport.Listener                         { return h.ls }

func newHarness(t testing.TB, s *Settings, groups GroupChecker) *harness {
	t.Helper()
	h := &harness{t: t, clock: shards.NewManualClock(1_700_000_000_000), answers: map[string]int{}, keep: true}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	if s == nil {
		s = DefaultSettings()
	}
	p, err := New(h.clock, *s, groups, 8)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	routes := &routing.Routes{Request: func(c *routing.Ctx) {
		if !p.Check(c) {
			h.dropped++
			c.Drop()
			return
		}
		c.ReplyStateless(200, "OK", nil)
	}}
	rs := routing.RouteSet{Name: "pike-test", New: func(*routing.Env) (*routing.Routes, error) { return routes, nil }}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com"})})
	if err != nil {
		t.Fatal(err)
	}
	h.core, err = txn.New(txn.Config{Sender: h, Listeners: h, Router: rt, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.core.Close)
	return h
}

var seq int

func options(n int) string {
	return "OPTIONS sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-o" + strconv.Itoa(n) + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@example.com>;tag=t" + strconv.Itoa(n) + "\r\n" +
		"To: <sip:example.com>\r\n" +
		"Call-ID: opt-" + strconv.Itoa(n) + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// receive hands a new OPTIONS to the core as if it came from src over UDP.
func (h *harness) receive(src string) {
	seq++
	h.core.HandleMessage(&transport.Packet{Data: []byte(options(seq)), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: transport.UDP})
}

func (h *harness) answered(addr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.answers[addr]
}
