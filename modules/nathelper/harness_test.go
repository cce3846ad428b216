package nathelper

import (
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/routing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is the module built as the server builds it (with the registrar
// it needs), on a real transaction core whose socket records what it
// sends: the keepalive's OPTIONS go through that core.
type fixture struct {
	h   *routetest.Harness
	set *modules.Set
	n   *NATHelper
	reg *registrar.Registrar
	m   *metrics.Set
}

// build builds and starts the module; regTests are the registrar's own
// nat_tests (nil: none, so that only nathelper marks contacts).
func build(t testing.TB, s *Settings, regTests []string) *fixture {
	t.Helper()
	if s == nil {
		s = DefaultSettings()
	}
	f := &fixture{h: routetest.New(t, nil), m: metrics.NewSet()}
	org := &modules.Originator{}
	org.SetCore(f.h.Core())
	rs := registrar.DefaultSettings()
	rs.NATTests = regTests
	var err error
	f.set, err = modules.Build(modules.Services{Clock: f.h.Clock, Metrics: f.m, Logger: quiet, Originator: org},
		map[string]any{"nathelper": s, "registrar": rs}, "nathelper")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.set.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.set.Stop)
	f.n = f.set.Get("nathelper").(*NATHelper)
	f.reg = f.set.Get("registrar").(*registrar.Registrar)
	return f
}

// counter reads a metric of the fixture's set.
func (f *fixture) counter(name string) uint64 {
	var b strings.Builder
	f.m.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
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

// req builds a request with a fresh Call-ID, tag and branch: via is the
// sent-by of its Via ("192.168.1.10:5062"), extra header lines end in
// CRLF, and a body is sent as application/sdp.
func req(method, ruri, via, extra, body string) string {
	n := next()
	m := method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + via + ";branch=z9hG4bK.nh" + n + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=a" + n + "\r\n" +
		"To: <sip:bob@example.com>\r\n" +
		"Call-ID: nh" + n + "@test\r\n" +
		"CSeq: 1 " + method + "\r\n" + extra
	if body != "" {
		m += "Content-Type: application/sdp\r\n"
	}
	return m + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// phoneSDP is an offer from a phone at addr.
func phoneSDP(addr string) string {
	return "v=0\r\no=phone 1 1 IN IP4 " + addr + "\r\ns=-\r\nc=IN IP4 " + addr + "\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
}

// inRoute runs fn on msg from src inside the request route and returns its
// result.
func (f *fixture) inRoute(t testing.TB, src, msg string, fn func(c *routing.Ctx) bool) bool {
	t.Helper()
	var got bool
	f.h.InRoute(t, src, msg, func(c *routing.Ctx) { got = fn(c) })
	f.h.Take()
	return got
}

// relayed runs route on msg from src, relays it and returns the copy
// sent to the next hop (the Request-URI's host).
func (f *fixture) relayed(t testing.TB, src, msg string, route func(c *routing.Ctx)) string {
	t.Helper()
	f.h.Route = func(c *routing.Ctx) {
		route(c)
		if err := c.Relay(); err != nil {
			t.Errorf("relay: %v", err)
		}
	}
	f.h.Receive(src, msg)
	f.h.Route = nil
	for _, s := range f.h.Take() {
		if !strings.HasPrefix(s.Data, "SIP/2.0") {
			return s.Data
		}
	}
	t.Fatal("nothing relayed")
	return ""
}

// header returns the value of the first header called name.
func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// bodyOf returns the body of a message, checking its Content-Length.
func bodyOf(t testing.TB, msg string) string {
	t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(msg)); err != nil {
		t.Fatalf("unparsable: %v\n%s", err, msg)
	}
	return string(m.Body())
}

// response builds a response to a request the core sent, with extra
// header lines and an SDP body when body is set.
func response(t testing.TB, sent string, code int, extra, body string) string {
	t.Helper()
	var m parser.Message
	if err := m.Parse([]byte(sent)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " X\r\n")
	for i := 0; i < m.NumHeaders(); i++ {
		hd := m.HeaderAt(i)
		switch hd.Name {
		case parser.HdrVia, parser.HdrFrom, parser.HdrCallID, parser.HdrCSeq:
			b.Write(hd.Line)
		case parser.HdrTo:
			b.WriteString(strings.TrimRight(string(hd.Line), "\r\n") + ";tag=callee\r\n")
		}
	}
	b.WriteString(extra)
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

var _ = netip.Addr{}
