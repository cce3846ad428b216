package routing

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

const invite = "INVITE sip:Alice@Example.COM:5070;transport=udp SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-r1;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: \"Bob\" <sip:bob@example.org>;tag=ft1\r\n" +
	"To: <sip:alice@example.com>\r\n" +
	"Call-ID: call-1@127.0.0.1\r\n" +
	"CSeq: 7 INVITE\r\n" +
	"User-Agent: test-ua\r\n" +
	"X-Account: 42\r\n" +
	"Contact: <sip:bob@127.0.0.1:5062>\r\n" +
	"Content-Length: 0\r\n\r\n"

// harness is a real transaction core, with a socket double that records
// what would be sent, running the route functions under test.
type harness struct {
	core  *txn.Core
	clock *shards.Clock
	sent  [][]byte
	keep  bool
	l     transport.Listener
	ls    []*transport.Listener // [&l], made once as the transport keeps its own
}

func (h *harness) Send(_ *transport.Listener, _ netip.AddrPort, data []byte) error {
	if h.keep {
		h.sent = append(h.sent, append([]byte(nil), data...))
	}
	return nil
}
func (h *harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *harness) Listeners() []*transport.Listener                         { return h.ls }

func newHarness(t testing.TB, routes *Routes, domains ...string) *harness {
	t.Helper()
	h := &harness{clock: shards.NewManualClock(1_000_000), keep: true}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	rs := RouteSet{Name: "test", New: func(*Env) (*Routes, error) { return routes, nil }}
	rt, err := NewRouter(rs, &Env{Domains: NewDomains(domains)})
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

func (h *harness) receive(msg []byte) {
	h.core.HandleMessage(&transport.Packet{Data: msg, Src: netip.MustParseAddrPort("127.0.0.1:5062"), Listener: &h.l, Proto: transport.UDP})
}

func TestAccessors(t *testing.T) {
	ran := false
	h := newHarness(t, &Routes{Request: func(c *Ctx) {
		ran = true
		checkAccessors(t, c)
		c.Reply(486, "")
	}}, "example.com", "127.0.0.1")
	h.receive([]byte(invite))
	if !ran {
		t.Fatal("route did not run")
	}
	last := string(h.sent[len(h.sent)-1])
	if !strings.HasPrefix(last, "SIP/2.0 486 Busy Here\r\n") {
		t.Fatalf("reply sent:\n%s", last)
	}
}

func checkAccessors(t *testing.T, c *Ctx) {

	checks := []struct {
		name string
		got  []byte
		want string
	}{
		{"$ru", c.RU(), "sip:Alice@Example.COM:5070;transport=udp"},
		{"$rU", c.RUser(), "Alice"},
		{"$rd", c.RDomain(), "Example.COM"},
		{"$fu", c.FU(), "sip:bob@example.org"},
		{"$fU", c.FUser(), "bob"},
		{"$fd", c.FDomain(), "example.org"},
		{"$ft", c.FTag(), "ft1"},
		{"$tu", c.TU(), "sip:alice@example.com"},
		{"$tU", c.TUser(), "alice"},
		{"$td", c.TDomain(), "example.com"},
		{"$ci", c.CallID(), "call-1@127.0.0.1"},
		{"$ua", c.UserAgent(), "test-ua"},
		{"$hdr(X-Account)", c.Header("x-account"), "42"},
		{"$hdr(f)", c.Header("f"), "\"Bob\" <sip:bob@example.org>;tag=ft1"},
	}
	for _, ch := range checks {
		if string(ch.got) != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	if c.RPort() != 5070 || c.SrcPort() != 5062 || c.SrcIP().String() != "127.0.0.1" {
		t.Errorf("ports/addresses: %d %d %s", c.RPort(), c.SrcPort(), c.SrcIP())
	}
	if !c.IsMethod(parser.MethodBye, parser.MethodInvite) || c.IsMethod(parser.MethodBye) {
		t.Error("IsMethod")
	}
	if c.HasToTag() {
		t.Error("HasToTag on an initial INVITE")
	}
	if !c.IsURIHostLocal() {
		t.Error("Example.COM should be local (case-insensitive)")
	}
	if c.IsFromLocal() {
		t.Error("example.org is not served")
	}
	if !c.HasHeader("User-Agent") || c.HasHeader("X-Missing") {
		t.Error("HasHeader")
	}
	if c.CSeq().Num != 7 || c.CSeq().Method != parser.MethodInvite {
		t.Errorf("CSeq %+v", c.CSeq())
	}
}

func TestDomains(t *testing.T) {
	d := NewDomains([]string{"Example.com", "[::1]"})
	for _, h := range []string{"example.com", "EXAMPLE.COM", "[::1]"} {
		if !d.Has([]byte(h)) {
			t.Errorf("%s not found", h)
		}
	}
	if d.Has([]byte("example.org")) || d.Has([]byte(strings.Repeat("a", 300))) {
		t.Error("unexpected match")
	}
	d.Replace([]string{"other.net"})
	if d.Has([]byte("example.com")) || !d.Has([]byte("other.net")) {
		t.Error("Replace")
	}
}

// registryRuns names TestRegistry's route set apart in each run: the
// registry is process-wide, and -count N runs the test N times.
var registryRuns int

func TestRegistry(t *testing.T) {
	registryRuns++
	name := "test-registry-" + strconv.Itoa(registryRuns)
	Register(RouteSet{Name: name, New: func(*Env) (*Routes, error) { return &Routes{}, nil }})
	if _, err := Lookup(name); err != nil {
		t.Fatal(err)
	}
	_, err := Lookup("nope")
	if err == nil || !strings.Contains(err.Error(), `no route set named "nope"`) || !strings.Contains(err.Error(), name) {
		t.Fatalf("Lookup error: %v", err)
	}
	rs, _ := Lookup(name)
	if _, err := NewRouter(rs, &Env{}); err == nil || !strings.Contains(err.Error(), "no request route") {
		t.Fatalf("route set without request route accepted: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	Register(RouteSet{Name: name, New: func(*Env) (*Routes, error) { return &Routes{}, nil }})
}

// usualChecks is what most request routes start with: method and dialog
// tests, domain checks and a few pseudo-variables.
var sink int

func usualChecks(c *Ctx) {
	if c.HasToTag() {
		return
	}
	if c.IsMethod(parser.MethodRegister, parser.MethodOptions) {
		return
	}
	if c.IsURIHostLocal() && !c.IsFromLocal() {
		sink += len(c.RUser()) + len(c.FUser()) + len(c.Header("X-Account")) + int(c.SrcPort())
	}
}

// options is an OPTIONS whose Call-ID and branch end in eight digits that
// the benchmark rewrites in place, so each message is a new transaction.
var options = []byte("OPTIONS sip:alice@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-00000000;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:bob@example.org>;tag=ft1\r\n" +
	"To: <sip:alice@example.com>\r\n" +
	"Call-ID: bench-00000000\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"X-Account: 42\r\n" +
	"Content-Length: 0\r\n\r\n")

var digitOffsets = func() [2]int {
	var offs [2]int
	for k, marker := range []string{"z9hG4bK-", "bench-"} {
		offs[k] = strings.Index(string(options), marker) + len(marker)
	}
	return offs
}()

func numberMessage(msg []byte, n int) {
	for _, i := range digitOffsets {
		v := n
		for j := i + 7; j >= i; j-- {
			msg[j] = byte('0' + v%10)
			v /= 10
		}
	}
}

// routeLoop runs n new OPTIONS transactions through the core and a route
// that does the usual checks and answers 200; every 1000 it lets the clock
// expire the finished transactions so their entries are reused.
func routeLoop(h *harness, msg []byte, n int, start int) {
	for i := 0; i < n; i++ {
		numberMessage(msg, start+i)
		h.receive(msg)
		if (start+i)%1000 == 999 {
			h.clock.Advance(time.Minute)
		}
	}
}

func usualRoutes() *Routes {
	return &Routes{Request: func(c *Ctx) {
		usualChecks(c)
		c.Reply(200, "")
	}}
}

func TestRouteCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	h := newHarness(t, usualRoutes(), "example.com")
	h.keep = false
	msg := append([]byte(nil), options...)
	routeLoop(h, msg, 5000, 0) // warm up pools, tables and buffers
	i := 5000
	if n := testing.AllocsPerRun(2000, func() { routeLoop(h, msg, 1, i); i++ }); n != 0 {
		t.Fatalf("a routed request allocated %.2f times", n)
	}
}

// BenchmarkRouteCall measures a whole new request through the core: parse,
// transaction creation, the route function with the usual checks, and the
// 200 reply written for the socket.
func BenchmarkRouteCall(b *testing.B) {
	h := newHarness(b, usualRoutes(), "example.com")
	h.keep = false
	msg := append([]byte(nil), options...)
	routeLoop(h, msg, 5000, 0)
	i := 5000
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		routeLoop(h, msg, 1, i)
		i++
	}
}

func TestErrorRouteGetsPanics(t *testing.T) {
	var got any
	h := newHarness(t, &Routes{
		Request: func(c *Ctx) { panic("route bug") },
		Error: func(c *Ctx, err any) {
			got = err
			c.Reply(503, "Route Error")
		},
	}, "example.com")
	h.receive([]byte(invite))
	if got != "route bug" {
		t.Fatalf("error route got %v", got)
	}
	if last := string(h.sent[len(h.sent)-1]); !strings.HasPrefix(last, "SIP/2.0 503 Route Error\r\n") {
		t.Fatalf("reply sent:\n%s", last)
	}
}

func TestLocalRouteSeesGeneratedCancel(t *testing.T) {
	var methods []parser.Method
	var raw string
	h := newHarness(t, &Routes{
		Request: func(c *Ctx) { c.Relay() },
		Local: func(c *LocalCtx) {
			methods = append(methods, c.Method())
			raw = string(c.Raw())
		},
	}, "example.com")
	inv := strings.Replace(invite, "sip:Alice@Example.COM:5070;transport=udp", "sip:alice@127.0.0.1:5080", 1)
	h.receive([]byte(inv))
	var relayed parser.Message
	for _, m := range h.sent {
		if strings.HasPrefix(string(m), "INVITE ") {
			if err := relayed.Parse(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !relayed.IsRequest() {
		t.Fatal("INVITE not relayed")
	}
	ringing := parser.AppendResponse(nil, &relayed, 180, nil, []byte("uas1"))
	h.core.HandleMessage(&transport.Packet{Data: ringing, Src: netip.MustParseAddrPort("127.0.0.1:5080"), Listener: &h.l, Proto: transport.UDP})
	cancel := strings.Replace(strings.Replace(inv, "INVITE sip:", "CANCEL sip:", 1), "CSeq: 7 INVITE", "CSeq: 7 CANCEL", 1)
	h.receive([]byte(cancel))
	if len(methods) != 1 || methods[0] != parser.MethodCancel || !strings.HasPrefix(raw, "CANCEL sip:alice@127.0.0.1:5080 SIP/2.0\r\n") {
		t.Fatalf("local route saw %v:\n%s", methods, raw)
	}
}

// TestCheckRequire: option tags the route does not list in Require get
// 420 with Unsupported naming them (RFC 3261 §8.2.2.3); supported ones,
// none, and an ACK's pass.
func TestCheckRequire(t *testing.T) {
	h := newHarness(t, &Routes{Request: func(c *Ctx) {
		if c.CheckRequire("path", "timer") {
			c.Reply(200, "")
		}
	}}, "example.com")
	for i, c := range []struct{ require, want, unsupported string }{
		{"", "SIP/2.0 200 OK", ""},
		{"Require: path\r\n", "SIP/2.0 200 OK", ""},
		{"Require: TIMER, path\r\n", "SIP/2.0 200 OK", ""},
		{"Require: foo, path, Bar\r\n", "SIP/2.0 420 Bad Extension", "foo, Bar"},
		{"Require: path\r\nRequire: 100rel\r\n", "SIP/2.0 420 Bad Extension", "100rel"},
	} {
		msg := []byte(strings.Replace(string(options), "X-Account: 42\r\n", c.require, 1))
		numberMessage(msg, i+1) // X-Account comes after the numbered branch and Call-ID
		h.sent = nil
		h.receive(msg)
		if len(h.sent) != 1 {
			t.Fatalf("%q: %d messages sent", c.require, len(h.sent))
		}
		got := string(h.sent[0])
		line, _, _ := strings.Cut(got, "\r\n")
		if line != c.want || (c.unsupported != "" && !strings.Contains(got, "\r\nUnsupported: "+c.unsupported+"\r\n")) {
			t.Errorf("%q: got\n%s", c.require, got)
		}
	}
	ack := strings.Replace(strings.Replace(string(options), "OPTIONS", "ACK", 2), "X-Account: 42\r\n", "Require: foo\r\n", 1)
	h.sent = nil
	h.receive([]byte(ack))
	if len(h.sent) != 0 {
		t.Fatalf("an ACK was answered:\n%s", h.sent[0])
	}
}

func TestCheckRequireAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	ran := false
	h := newHarness(t, &Routes{Request: func(c *Ctx) {
		ran = true
		if n := testing.AllocsPerRun(100, func() { c.CheckRequire("path") }); n != 0 {
			t.Errorf("CheckRequire allocated %.1f times", n)
		}
	}}, "example.com")
	h.receive([]byte(strings.Replace(string(options), "X-Account: 42\r\n", "Require: foo, path\r\n", 1)))
	if !ran {
		t.Fatal("route did not run")
	}
}
