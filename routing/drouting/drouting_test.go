package drouting

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/modules"
	dr "switchboard/modules/drouting"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
	"switchboard/txn"
)

// harness runs the drouting route set with the real drouting module (built
// as the server builds it, on a real SQLite store) inside a real
// transaction core whose socket is a recording double: nothing leaves the
// process.
type harness struct {
	t     testing.TB
	d     *dr.Drouting
	set   *modules.Set
	core  *txn.Core
	clock *shards.Clock
	l     transport.Listener
	ls    []*transport.Listener

	// keep records what the core sends; onSend, when set, sees it first
	// (the allocation test keeps nothing).
	keep   bool
	onSend func(dst netip.AddrPort, data []byte)
	mu     sync.Mutex
	sent   []sentMsg
}

type sentMsg struct {
	dst  string
	data string
}

func (h *harness) Send(_ *transport.Listener, dst netip.AddrPort, data []byte) error {
	if h.onSend != nil {
		h.onSend(dst, data)
	}
	if h.keep {
		h.mu.Lock()
		h.sent = append(h.sent, sentMsg{dst.String(), string(data)})
		h.mu.Unlock()
	}
	return nil
}
func (h *harness) Listener(transport.Proto, netip.Addr) *transport.Listener { return &h.l }
func (h *harness) Listeners() []*transport.Listener                         { return h.ls }

// The gateways and rules of the tests: gw1 takes numbers as they are, gw2
// wants national numbers (49 stripped, 0 in front), off is disabled.
var (
	testGateways = []store.DRGateway{
		{GWID: "gw1", Address: "127.0.0.7:5070"},
		{GWID: "gw2", Address: "127.0.0.8:5070", Strip: 2, PriPrefix: "0"},
		{GWID: "off", Address: "127.0.0.9:5070", State: 1},
	}
	testRules = []store.DRRule{
		{Groups: "0", Prefix: "49", GWList: "gw1,gw2"},
		{Groups: "0", Prefix: "4930", GWList: "gw2"},
		{Groups: "0", Prefix: "44", GWList: "off"},
		{Groups: "3", Prefix: "1", GWList: "gw1"},
	}
)

// newHarness stores gateways and rules, builds the module on them with s
// (nil: the defaults) and the route set on the module.
func newHarness(t testing.TB, s *dr.Settings, gws []store.DRGateway, rules []store.DRRule) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddDRGateways(ctx, gws, false); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDRRules(ctx, rules, false); err != nil {
		t.Fatal(err)
	}
	if s == nil {
		s = dr.DefaultSettings()
	}
	clock := shards.NewManualClock(1_700_000_000_000)
	set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		map[string]any{"drouting": s}, "drouting")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	h := &harness{t: t, d: set.Get("drouting").(*dr.Drouting), set: set, clock: clock, keep: true}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	rs, err := routing.Lookup("drouting")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"}), Modules: set.Env()})
	if err != nil {
		t.Fatal(err)
	}
	h.core, err = txn.New(txn.Config{Sender: h, Listeners: h, Router: rt, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	set.SetCore(h.core)
	t.Cleanup(h.core.Close)
	return h
}

// receive hands msg to the core as if it came from src over UDP, and
// returns what the core sent for it.
func (h *harness) receive(src, msg string) []sentMsg {
	h.mu.Lock()
	h.sent = nil
	h.mu.Unlock()
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort(src), Listener: &h.l, Proto: transport.UDP})
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent
}

// first returns the first message sent whose start line begins with
// prefix, or fails the test.
func (h *harness) first(sent []sentMsg, prefix string) sentMsg {
	h.t.Helper()
	for _, s := range sent {
		if strings.HasPrefix(s.data, prefix) {
			return s
		}
	}
	h.t.Fatalf("nothing starting %q sent: %+v", prefix, sent)
	return sentMsg{}
}

// final returns the status line of the final response in sent, "" when
// none.
func final(sent []sentMsg) string {
	for _, s := range sent {
		if strings.HasPrefix(s.data, "SIP/2.0 ") && !strings.HasPrefix(s.data, "SIP/2.0 1") {
			line, _, _ := strings.Cut(s.data, "\r\n")
			return strings.TrimPrefix(line, "SIP/2.0 ")
		}
	}
	return ""
}

const caller = "127.0.0.1:6000"

var seq int

// request is a request from the caller; extra are header lines.
func request(method, ruri, toTag, extra string) string {
	seq++
	to := "<" + ruri + ">"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-d%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:caller@example.net>;tag=c%d\r\nTo: %s\r\nCall-ID: call%d\r\nCSeq: 1 %s\r\n"+
		"Contact: <sip:caller@127.0.0.1:6000>\r\n%sContent-Length: 0\r\n\r\n", method, ruri, seq, seq, to, seq, method, extra)
}

// respond builds a gateway's answer to a relayed request: its Via, From,
// Call-ID, CSeq and Record-Route, a To tag and a Contact.
func respond(relayed string, code int) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " Whatever\r\n")
	for _, line := range strings.Split(relayed, "\r\n") {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "via", "from", "call-id", "cseq", "record-route":
			b.WriteString(line + "\r\n")
		case "to":
			b.WriteString(line + ";tag=gw\r\n")
		}
	}
	b.WriteString("Contact: <sip:gw@127.0.0.8:5070>\r\nContent-Length: 0\r\n\r\n")
	return b.String()
}

// header returns the value of the first header name in msg.
func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// The route set needs the drouting module, and has a request and a
// failure route.
func TestNewRoutes(t *testing.T) {
	rs, err := routing.Lookup("drouting")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.New(&routing.Env{}); err == nil || !strings.Contains(err.Error(), "needs the drouting module") {
		t.Fatalf("without the module: %v", err)
	}
	h := newHarness(t, nil, testGateways, testRules)
	r, err := rs.New(&routing.Env{Modules: h.set.Env()})
	if err != nil || r.Request == nil || r.Failure == nil {
		t.Fatalf("routes %+v, %v", r, err)
	}
}

// TestCallsToGateways: an INVITE goes to the gateway of the longest
// prefix of its number, record-routed, with the gateway's strip and
// prefix; a gateway's 503 moves it to the next of the rule's list, whose
// 200 goes back; the BYE follows the recorded route. No rule: 404; only
// disabled gateways: 503; a 486 ends the call without fail-over; when the
// last gateway answers 503 too, the caller gets 500.
func TestCallsToGateways(t *testing.T) {
	h := newHarness(t, nil, testGateways, testRules)

	sent := h.receive(caller, request("INVITE", "sip:4989123@example.com", "", ""))
	inv := h.first(sent, "INVITE ")
	if inv.dst != "127.0.0.7:5070" || !strings.HasPrefix(inv.data, "INVITE sip:4989123@127.0.0.7:5070 SIP/2.0\r\n") ||
		!strings.Contains(header(inv.data, "Record-Route"), "sig=") {
		t.Fatalf("INVITE to 4989123: %+v", inv)
	}
	if s := h.first(sent, "SIP/2.0 100"); s.dst != caller {
		t.Fatalf("100 Trying to %s", s.dst)
	}
	// gw1: 503; gw2 gets it as a national number.
	sent = h.receive("127.0.0.7:5070", respond(inv.data, 503))
	next := h.first(sent, "INVITE ")
	if next.dst != "127.0.0.8:5070" || !strings.HasPrefix(next.data, "INVITE sip:089123@127.0.0.8:5070 SIP/2.0\r\n") {
		t.Fatalf("after gw1's 503: %+v", next)
	}
	sent = h.receive("127.0.0.8:5070", respond(next.data, 200))
	ok := h.first(sent, "SIP/2.0 200")
	rr := header(ok.data, "Record-Route")
	if ok.dst != caller || rr == "" {
		t.Fatalf("200 to the caller: %+v", ok)
	}
	// The caller's BYE along the recorded route reaches gw2's Contact.
	bye := request("BYE", "sip:gw@127.0.0.8:5070", "gw", "Route: "+rr+"\r\n")
	bye = strings.Replace(bye, "Call-ID: call"+strconv.Itoa(seq), "Call-ID: "+header(ok.data, "Call-ID"), 1)
	bye = strings.Replace(bye, "From: <sip:caller@example.net>;tag=c"+strconv.Itoa(seq), "From: "+header(ok.data, "From"), 1)
	if s := h.first(h.receive(caller, bye), "BYE "); s.dst != "127.0.0.8:5070" {
		t.Fatalf("BYE relayed to %s", s.dst)
	}

	// The longer prefix wins: 4930 goes to gw2 first.
	if s := h.first(h.receive(caller, request("INVITE", "sip:4930555@example.com", "", "")), "INVITE "); s.dst != "127.0.0.8:5070" {
		t.Fatalf("4930555 to %s", s.dst)
	}
	for _, c := range []struct{ ruri, want string }{
		{"sip:3312345@example.com", "404 No Route"},
		{"sip:bob@example.com", "404 No Route"}, // no number
		{"sip:4420123@example.com", "503 No Gateway Available"},
		{"sip:1202555@example.com", "404 No Route"}, // a rule of group 3 only
	} {
		if got := final(h.receive(caller, request("INVITE", c.ruri, "", ""))); got != c.want {
			t.Errorf("%s: %q, want %q", c.ruri, got, c.want)
		}
	}

	// A 486 from the first gateway is the callee's answer: no fail-over.
	inv = h.first(h.receive(caller, request("INVITE", "sip:4989777@example.com", "", "")), "INVITE ")
	sent = h.receive("127.0.0.7:5070", respond(inv.data, 486))
	if got := final(sent); got != "486 Whatever" {
		t.Fatalf("after gw1's 486: %q", got)
	}
	for _, s := range sent {
		if strings.HasPrefix(s.data, "INVITE ") {
			t.Fatalf("486 failed over: %+v", s)
		}
	}
	// Both gateways 503: the caller gets a 500 (a proxy does not pass a
	// 503 upstream, RFC 3261 §16.7).
	inv = h.first(h.receive(caller, request("INVITE", "sip:4989888@example.com", "", "")), "INVITE ")
	next = h.first(h.receive("127.0.0.7:5070", respond(inv.data, 503)), "INVITE ")
	if got := final(h.receive("127.0.0.8:5070", respond(next.data, 503))); !strings.HasPrefix(got, "500 ") {
		t.Fatalf("after both 503s: %q", got)
	}
}

// TestInDialogAndPreloadedRoutes: in-dialog requests are relayed only on
// our signed Record-Route of their own dialog; anything else gets 404 (an
// ACK nothing); an initial request with a Route to another proxy gets 403,
// a stray ACK nothing.
func TestInDialogAndPreloadedRoutes(t *testing.T) {
	h := newHarness(t, nil, testGateways, testRules)
	// A route recorded for another call.
	inv := h.first(h.receive(caller, request("INVITE", "sip:4989123@example.com", "", "")), "INVITE ")
	other := header(inv.data, "Record-Route")

	for _, c := range []struct{ name, msg, want string }{
		{"BYE without Route", request("BYE", "sip:gw@127.0.0.8:5070", "gw", ""), "404 Not here"},
		{"BYE with another call's Route", request("BYE", "sip:gw@127.0.0.8:5070", "gw", "Route: "+other+"\r\n"), "404 Not here"},
		{"BYE with an unsigned Route of ours", request("BYE", "sip:gw@127.0.0.8:5070", "gw", "Route: <sip:127.0.0.1:5060;lr>\r\n"), "404 Not here"},
		{"INVITE with a foreign Route", request("INVITE", "sip:4989123@example.com", "", "Route: <sip:192.0.2.1;lr>\r\n"), "403 Preload Route denied"},
		{"ACK in a dialog without Route", request("ACK", "sip:gw@127.0.0.8:5070", "gw", ""), ""},
		{"stray ACK", request("ACK", "sip:4989123@example.com", "", ""), ""},
	} {
		sent := h.receive(caller, c.msg)
		if got := final(sent); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		for _, s := range sent {
			if s.dst != caller {
				t.Errorf("%s: sent to %s: %q", c.name, s.dst, s.data)
			}
		}
	}
}

// TestGroupFromTheSetting: the rules used are those of drouting.group, and
// a changed setting (what SIGHUP applies) takes effect at the next call.
func TestGroupFromTheSetting(t *testing.T) {
	s := dr.DefaultSettings()
	s.Group = 3
	h := newHarness(t, s, testGateways, testRules)
	if got := h.first(h.receive(caller, request("INVITE", "sip:1202555@example.com", "", "")), "INVITE "); got.dst != "127.0.0.7:5070" {
		t.Fatalf("group 3's 1202555 to %s", got.dst)
	}
	if got := final(h.receive(caller, request("INVITE", "sip:4989123@example.com", "", ""))); got != "404 No Route" {
		t.Fatalf("group 0's 4989123 in group 3: %q", got)
	}
	s2 := dr.DefaultSettings()
	if err := h.d.Reload(s2); err != nil {
		t.Fatal(err)
	}
	if got := h.first(h.receive(caller, request("INVITE", "sip:4989123@example.com", "", "")), "INVITE "); got.dst != "127.0.0.7:5070" {
		t.Fatalf("after the reload to group 0: 4989123 to %s", got.dst)
	}
}

// capture keeps the last INVITE sent, in a reused buffer, and where it
// went, without allocating.
type capture struct {
	invite []byte
	dst    netip.AddrPort
}

func (c *capture) send(dst netip.AddrPort, data []byte) {
	if len(data) > 7 && string(data[:7]) == "INVITE " {
		c.invite = append(c.invite[:0], data...)
		c.dst = dst
	}
}

// TestRouteSetAllocatesNothing: an INVITE through the core and the route
// set, matched against 10,000 rules, record-routed and relayed to its
// gateway, that gateway's 503, the failure route relaying to the next
// one, whose 503 goes back: no allocation.
func TestRouteSetAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	rules := []store.DRRule{{Groups: "0", Prefix: "4930", GWList: "gw1,gw2"}}
	for _, p := range prefixes(9_999) {
		rules = append(rules, store.DRRule{Groups: "0", Prefix: p, GWList: "gw1"})
	}
	h := newHarness(t, nil, testGateways[:2], rules)
	h.keep = false
	cp := &capture{invite: make([]byte, 0, 4096)}
	h.onSend = cp.send

	invite := []byte("INVITE sip:49301234567@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-00000000;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:caller@example.net>;tag=00000000\r\nTo: <sip:49301234567@example.com>\r\n" +
		"Call-ID: 00000000@caller\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
	src := netip.MustParseAddrPort(caller)
	pkt := &transport.Packet{Listener: &h.l, Proto: transport.UDP}
	resp := make([]byte, 0, 2048)
	var rmsg respParser
	i := 0
	call := func() {
		number(invite, i)
		*pkt = transport.Packet{Data: invite, Src: src, Listener: &h.l, Proto: transport.UDP}
		h.core.HandleMessage(pkt)
		for range 2 {
			resp = rmsg.response(h.t, resp[:0], cp.invite, 503)
			*pkt = transport.Packet{Data: resp, Src: cp.dst, Listener: &h.l, Proto: transport.UDP}
			h.core.HandleMessage(pkt)
		}
		if i%1000 == 999 {
			h.clock.Advance(time.Minute) // finished transactions back to their pool
		}
		i++
	}
	for i < 3000 {
		call()
	}
	if allocs := testing.AllocsPerRun(1000, call); allocs != 0 {
		t.Errorf("%v allocations per call routed, record-routed and failed over", allocs)
	}
	// The path measured is the one meant: both gateways tried each call.
	if !strings.HasPrefix(string(cp.invite), "INVITE sip:0301234567@127.0.0.8:5070 ") {
		t.Fatalf("last INVITE: %.80q", cp.invite)
	}
	if !strings.Contains(string(cp.invite), "Record-Route: ") {
		t.Fatal("last INVITE not record-routed")
	}
}

// respParser builds a gateway's response to a relayed INVITE in place.
type respParser struct{ m parser.Message }

func (r *respParser) response(t testing.TB, dst, invite []byte, code int) []byte {
	if err := r.m.Parse(invite); err != nil {
		t.Fatal(err)
	}
	return parser.AppendResponse(dst, &r.m, code, nil, []byte("gw"))
}

// number writes n as 8 digits over the zeros of the branch, tag and
// Call-ID of msg (later: over the previous number).
func number(msg []byte, n int) {
	for _, at := range []string{"z9hG4bK-", "tag=", "Call-ID: "} {
		i := bytes.Index(msg, []byte(at)) + len(at)
		for j, k := 7, n; j >= 0; j, k = j-1, k/10 {
			msg[i+j] = byte('0' + k%10)
		}
	}
}

// prefixes returns n distinct digit prefixes shaped like a rate table (a
// country code of 1 to 3 digits and 2 to 6 more), none starting 49.
func prefixes(n int) []string {
	seen := map[string]bool{}
	out := make([]string, 0, n)
	x := uint64(88172645463325252)
	for len(out) < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p := strconv.FormatUint(x%1e9+1e9, 10)[1 : 4+x%6]
		if p[0] == '0' || strings.HasPrefix(p, "49") || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}
