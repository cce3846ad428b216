// Package routetest runs a route function inside a real transaction core
// and router, for the tests of modules whose functions take a
// *routing.Ctx. The socket is a double that records what would be sent and
// where; nothing leaves the process.
package routetest

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

// Harness is a core whose request route is Route.
type Harness struct {
	Clock *shards.Clock
	// Route is the request route; set it before sending.
	Route func(c *routing.Ctx)
	// Reply and Failure, when set, are the on-reply and failure routes.
	Reply   func(c *routing.ReplyCtx) bool
	Failure func(c *routing.FailureCtx)
	// Keep records what the core sends (true by default); benchmarks turn
	// it off.
	Keep bool
	// OnSend, when set, sees every message the core sends (data is valid
	// during the call only): for tests that answer without allocating.
	OnSend func(dst netip.AddrPort, data []byte)

	core *txn.Core
	l    transport.Listener
	ls   []*transport.Listener
	mu   sync.Mutex
	sent []Sent
}

// Sent is a message the core sent.
type Sent struct {
	Dst  netip.AddrPort
	Data string
}

func (h *Harness) Send(_ *transport.Listener, dst netip.AddrPort, data []byte) error {
	if h.OnSend != nil {
		h.OnSend(dst, data)
	}
	if h.Keep {
		h.mu.Lock()
		h.sent = append(h.sent, Sent{dst, string(data)})
		h.mu.Unlock()
	}
	return nil
}
func (h *Harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *Harness) Listeners() []*transport.Listener                         { return h.ls }

// New returns a harness on a manual clock; the core is closed when the
// test ends.
func New(t testing.TB, clock *shards.Clock) *Harness {
	t.Helper()
	return NewWith(t, clock, nil)
}

// NewWith is New with changes to the core's configuration: a
// Record-Route key (RouteSecret: two harnesses with the same key verify
// each other's Routes, as a restarted server does its predecessor's),
// shorter timers.
func NewWith(t testing.TB, clock *shards.Clock, mod func(*txn.Config)) *Harness {
	t.Helper()
	if clock == nil {
		clock = shards.NewManualClock(1_700_000_000_000)
	}
	h := &Harness{Clock: clock, Keep: true}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	routes := &routing.Routes{
		Request: func(c *routing.Ctx) {
			if h.Route != nil {
				h.Route(c)
			}
		},
		Reply: func(c *routing.ReplyCtx) bool {
			return h.Reply == nil || h.Reply(c)
		},
		Failure: func(c *routing.FailureCtx) {
			if h.Failure != nil {
				h.Failure(c)
			}
		},
	}
	rs := routing.RouteSet{Name: "routetest", New: func(*routing.Env) (*routing.Routes, error) { return routes, nil }}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"})})
	if err != nil {
		t.Fatal(err)
	}
	cfg := txn.Config{Sender: h, Listeners: h, Router: rt, Clock: clock}
	if mod != nil {
		mod(&cfg)
	}
	h.core, err = txn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.core.Close)
	return h
}

// Core is the harness's transaction core, for modules that send requests
// of their own through it (txn.Core.SendLocal).
func (h *Harness) Core() *txn.Core { return h.core }

// Receive hands msg to the core as if it came from src over UDP.
func (h *Harness) Receive(src string, msg string) {
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: transport.UDP})
}

// Handle hands pkt to the core as it is (its Listener is the harness's:
// h.Listener(transport.UDP, netip.Addr{})); tests that count allocations
// reuse one packet.
func (h *Harness) Handle(pkt *transport.Packet) {
	h.core.HandleMessage(pkt)
}

// Take returns and forgets what was sent.
func (h *Harness) Take() []Sent {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sent
	h.sent = nil
	return s
}

// Answer sends msg from src and returns the status line of the final
// response sent back, or "" when nothing final was sent.
func (h *Harness) Answer(src, msg string) string {
	h.Take()
	h.Receive(src, msg)
	for _, s := range h.Take() {
		if strings.HasPrefix(s.Data, "SIP/2.0 ") && !strings.HasPrefix(s.Data, "SIP/2.0 1") {
			return s.Data
		}
	}
	return ""
}

// InRoute runs fn inside the request route of one request (the real
// routing.Ctx), then answers it 500; it fails the test if the route did
// not run.
func (h *Harness) InRoute(t testing.TB, src, msg string, fn func(c *routing.Ctx)) {
	t.Helper()
	ran := false
	prev := h.Route
	h.Route = func(c *routing.Ctx) {
		ran = true
		fn(c)
		c.Reply(500, "")
	}
	h.Receive(src, msg)
	h.Route = prev
	if !ran {
		t.Fatal("route did not run")
	}
}

var seq struct {
	sync.Mutex
	n int
}

func next() string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	return strconv.Itoa(seq.n)
}

// Request builds a request with fresh Call-ID, tag and branch; extra are
// header lines, each ending in CRLF.
func Request(method, ruri, extra string) string {
	n := next()
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK.t" + n + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a" + n + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: rt" + n + "@127.0.0.1\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}
