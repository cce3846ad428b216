package registrar

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// harness is a real transaction core and router running a small route set
// on the registrar under test; the socket is a double that records what
// would be sent and where, so no packet leaves the process.
type harness struct {
	t     testing.TB
	reg   *Registrar
	core  *txn.Core
	clock *shards.Clock
	l     transport.Listener
	ls    []*transport.Listener // [&l], made once as the transport keeps its own

	mu   sync.Mutex
	sent []sent
	keep bool
	// inRoute, when set, runs inside the request route instead of the
	// default handling (benchmarks and allocation tests).
	inRoute func(c *routing.Ctx)
	// authenticated makes the route save REGISTERs as authenticated.
	authenticated bool
}

type sent struct {
	dst  netip.AddrPort
	data string
}

func (h *harness) Send(_ *transport.Listener, dst netip.AddrPort, data []byte) error {
	if h.keep {
		h.mu.Lock()
		h.sent = append(h.sent, sent{dst, string(data)})
		h.mu.Unlock()
	}
	return nil
}
func (h *harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *harness) Listeners() []*transport.Listener                         { return h.ls }

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	return newHarnessClock(t, cfg, shards.NewManualClock(1_700_000_000_000))
}

// newHarnessClock is newHarness on the given clock.
func newHarnessClock(t testing.TB, cfg Config, clock *shards.Clock) *harness {
	t.Helper()
	h := &harness{t: t, clock: clock, keep: true}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	cfg.Clock = h.clock
	reg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	h.reg = reg
	routes := &routing.Routes{
		Request: func(c *routing.Ctx) {
			if h.inRoute != nil {
				h.inRoute(c)
				return
			}
			if c.IsMethod(parser.MethodRegister) {
				reg.SaveWith(c, SaveOptions{Authenticated: h.authenticated})
				return
			}
			if !reg.Lookup(c) {
				c.Reply(480, "")
				return
			}
			c.Relay()
		},
		Branch:  func(c *routing.Ctx, b *routing.Branch) { reg.BranchRoute(c, b) },
		Failure: func(c *routing.FailureCtx) { reg.NextContacts(c) },
	}
	rs := routing.RouteSet{Name: "registrar-test", New: func(*routing.Env) (*routing.Routes, error) { return routes, nil }}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"})})
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

// receive hands msg to the core as if it came from src over UDP.
func (h *harness) receive(src string, msg string) {
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: transport.UDP})
}

// take returns and forgets what was sent.
func (h *harness) take() []sent {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sent
	h.sent = nil
	return s
}

// request sends msg from src and returns the final response sent back.
func (h *harness) request(src, msg string) string {
	h.t.Helper()
	h.take()
	h.receive(src, msg)
	for _, s := range h.take() {
		if strings.HasPrefix(s.data, "SIP/2.0 ") && !strings.HasPrefix(s.data, "SIP/2.0 1") {
			return s.data
		}
	}
	h.t.Fatalf("no final response to:\n%s", msg)
	return ""
}

var callSeq int

// register builds a REGISTER for user@example.com; headers are extra
// lines (Contact, Expires, ...), each ending in CRLF.
func register(user, callID string, cseq int, headers string) string {
	callSeq++
	return "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-reg" + itoa(callSeq) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@example.com>;tag=f" + itoa(callSeq) + "\r\n" +
		"To: <sip:" + user + "@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: " + itoa(cseq) + " REGISTER\r\n" +
		"User-Agent: test-phone\r\n" +
		headers +
		"Content-Length: 0\r\n\r\n"
}

func invite(user string) string {
	callSeq++
	return "INVITE sip:" + user + "@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-inv" + itoa(callSeq) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:carol@example.com>;tag=c" + itoa(callSeq) + "\r\n" +
		"To: <sip:" + user + "@example.com>\r\n" +
		"Call-ID: inv-" + itoa(callSeq) + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:carol@127.0.0.1:5080>\r\n" +
		"Content-Length: 0\r\n\r\n"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// responseTo builds a response to a request the core sent.
func responseTo(t testing.TB, req string, code int, reason string) string {
	t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(req)); err != nil {
		t.Fatalf("sent request does not parse: %v\n%s", err, req)
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 " + itoa(code) + " " + reason + "\r\n")
	for i := 0; i < m.NumHeaders(); i++ {
		hd := m.HeaderAt(i)
		switch hd.Name {
		case parser.HdrVia, parser.HdrFrom, parser.HdrCallID, parser.HdrCSeq:
			b.Write(hd.Line)
		case parser.HdrTo:
			b.WriteString(strings.TrimRight(string(hd.Line), "\r\n") + ";tag=callee\r\n")
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// contacts returns the Contact lines of a response.
func contacts(resp string) []string {
	var out []string
	for _, line := range strings.Split(resp, "\r\n") {
		if strings.HasPrefix(line, "Contact: ") {
			out = append(out, strings.TrimPrefix(line, "Contact: "))
		}
	}
	return out
}

func statusOf(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	return strings.TrimPrefix(line, "SIP/2.0 ")
}

// await sends msg from src and waits up to d for the final response, which
// may come from another goroutine (write-through answers from the store's
// writer); "" when none came.
func (h *harness) await(src, msg string, d time.Duration) string {
	h.t.Helper()
	h.take()
	h.receive(src, msg)
	return h.final(d)
}

// final waits up to d for a final response among what is sent.
func (h *harness) final(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		h.mu.Lock()
		for i, s := range h.sent {
			if strings.HasPrefix(s.data, "SIP/2.0 ") && !strings.HasPrefix(s.data, "SIP/2.0 1") {
				h.sent = append(h.sent[:i:i], h.sent[i+1:]...)
				h.mu.Unlock()
				return s.data
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(time.Millisecond)
	}
}
