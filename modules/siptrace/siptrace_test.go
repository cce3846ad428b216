package siptrace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"switchboard/modules"
	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

func options(callID string) string {
	return "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK" + callID + "\r\n" +
		"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
}

// TestAllModeEveryField: in mode all, a received and a sent message reach
// both collectors, each as one HEP3 packet whose chunks hold the
// addresses, ports, transport, time, node id, password, Call-ID and the
// bytes of the message.
func TestAllModeEveryField(t *testing.T) {
	c1, c2 := newCollector(t), newCollector(t)
	s := settings("all", c1.addr(), "udp:"+c2.addr())
	s.NodeID, s.Password = 4242, "hep-secret"
	tm := start(t, s, nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	in, out := options("all-1"), strings.Replace(options("all-1"), "OPTIONS sip:bob@127.0.0.1", "OPTIONS sip:bob@127.0.0.1:5080", 1)

	before := time.Now()
	tm.st.Received([]byte(in), uac, l, transport.UDP, nil)
	tl := &transport.Listener{Proto: transport.TCP, Local: proxy}
	tm.st.Sent(tl, uas, []byte(out))
	after := time.Now()

	for _, c := range []*collectorSock{c1, c2} {
		r := c.next(t)
		if r.Proto != transport.UDP || r.Src != uac || r.Dst != proxy || string(r.Payload) != in {
			t.Errorf("received message as %v %v -> %v:\n%s", r.Proto, r.Src, r.Dst, r.Payload)
		}
		at := time.Unix(int64(r.Sec), int64(r.Usec)*1000)
		if at.Before(before.Truncate(time.Microsecond)) || at.After(after) || r.Usec >= 1e6 {
			t.Errorf("capture time %v not within %v .. %v", at, before, after)
		}
		if r.NodeID != 4242 || string(r.Password) != "hep-secret" || string(r.CallID) != "all-1" {
			t.Errorf("node %d, password %q, correlation %q", r.NodeID, r.Password, r.CallID)
		}
		r = c.next(t)
		if r.Proto != transport.TCP || r.Src != proxy || r.Dst != uas || string(r.Payload) != out || string(r.CallID) != "all-1" {
			t.Errorf("sent message as %v %v -> %v (%q):\n%s", r.Proto, r.Src, r.Dst, r.CallID, r.Payload)
		}
	}
	tm.waitSent(t)
	for _, c := range []string{"udp:" + c1.addr(), "udp:" + c2.addr()} {
		if v := tm.metric(t, `switchboard_siptrace_packets_sent_total{collector="`+c+`"}`); v != "2" {
			t.Errorf("%s: packets sent %s, want 2", c, v)
		}
	}
	if v := tm.metric(t, "switchboard_siptrace_captured_total"); v != "2" {
		t.Errorf("captured %s, want 2", v)
	}
}

// TestKeepalivesNotTraced: CRLF and STUN keep-alives that reach the core
// over UDP are not SIP and are not traced; a malformed message is.
func TestKeepalivesNotTraced(t *testing.T) {
	c := newCollector(t)
	tm := start(t, settings("all", c.addr()), nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	for _, ka := range []string{"\r\n\r\n", "\r\n", "\x00\x01\x00\x00\x21\x12\xa4\x42", ""} {
		tm.st.Received([]byte(ka), uac, l, transport.UDP, nil)
	}
	tm.st.Received([]byte("\r\nINVITE sip:x SIP/2.0\r\nCall-ID: broken\r\nCSeq: x\r\n"), uac, l, transport.UDP, nil)
	tm.waitSent(t)
	got := c.drain(t, 100*time.Millisecond)
	if len(got) != 1 || string(got[0].CallID) != "broken" {
		t.Fatalf("traced %d packets, want only the malformed INVITE", len(got))
	}
}

// TestSampleMode: mode sample traces every message of the Call-IDs whose
// hash falls in the sampled share, and nothing of the others, whichever
// way the message goes.
func TestSampleMode(t *testing.T) {
	c := newCollector(t)
	s := settings("sample", c.addr())
	s.SampleRate = 0.3
	tm := start(t, s, nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	rate := 0.3
	threshold := uint64(rate * (1 << 64))
	want := map[string]int{}
	for i := 0; i < 200; i++ {
		id := "sample-" + strconv.Itoa(i)
		msg := []byte(options(id))
		var m parser.Message
		if err := m.Parse(msg); err != nil {
			t.Fatal(err)
		}
		tm.st.Received(msg, uac, l, transport.UDP, &m)
		tm.st.Sent(l, uas, msg)
		if xxhash.Sum64([]byte(id)) < threshold {
			want[id] = 2
		}
	}
	tm.waitSent(t)
	got := map[string]int{}
	for _, r := range c.drain(t, 100*time.Millisecond) {
		got[string(r.CallID)]++
	}
	if len(want) < 30 || len(want) > 90 {
		t.Fatalf("%d of 200 Call-IDs sampled at 0.3: the hash does not spread", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("traced %d Call-IDs, want %d", len(got), len(want))
	}
	for id, n := range want {
		if got[id] != n {
			t.Errorf("%s: %d packets, want %d", id, got[id], n)
		}
	}
}

// TestRouteMode drives a real transaction core: a route that calls Trace
// for one INVITE and not for another. Every message of the traced
// transaction is sent to the collector once (the INVITE in and out, the
// 100, the 180 and 200 both ways), nothing of the other one, and nothing
// of a later BYE of the traced call whose route does not call Trace.
func TestRouteMode(t *testing.T) {
	c := newCollector(t)
	h := routetest.New(t, nil)
	tm := start(t, settings("route", c.addr()), h.Core())
	h.Route = func(ctx *routing.Ctx) {
		if strings.HasPrefix(string(ctx.CallID()), "traced") {
			tm.st.Trace(ctx)
			tm.st.Trace(ctx) // twice: still once
		}
		ctx.Relay()
	}
	call := func(callID string) {
		inv := strings.Replace(routetest.Request("INVITE", "sip:bob@127.0.0.1:5080", "Contact: <sip:a@127.0.0.1:5070>\r\n"),
			"Call-ID: ", "Call-ID: "+callID+"-", 1)
		h.Receive(uac.String(), inv)
		var fwd string
		for _, s := range h.Take() {
			if s.Dst == uas {
				fwd = s.Data
			}
		}
		if fwd == "" {
			t.Fatal("INVITE not relayed")
		}
		var m parser.Message
		if err := m.Parse([]byte(fwd)); err != nil {
			t.Fatal(err)
		}
		h.Receive(uas.String(), string(parser.AppendResponse(nil, &m, 180, nil, []byte("b"))))
		h.Receive(uas.String(), string(parser.AppendResponse(nil, &m, 200, nil, []byte("b"))))
	}
	call("traced")
	call("other")
	tm.waitSent(t)
	var got []string
	for _, r := range c.drain(t, 100*time.Millisecond) {
		if !strings.HasPrefix(string(r.CallID), "traced-") {
			t.Errorf("traced a message of %q", r.CallID)
		}
		line, _, _ := strings.Cut(string(r.Payload), "\r\n")
		got = append(got, r.Src.String()+">"+r.Dst.String()+" "+line)
	}
	want := []string{
		"127.0.0.1:5070>127.0.0.1:5060 INVITE sip:bob@127.0.0.1:5080 SIP/2.0",
		"127.0.0.1:5060>127.0.0.1:5070 SIP/2.0 100 Trying",
		"127.0.0.1:5060>127.0.0.1:5080 INVITE sip:bob@127.0.0.1:5080 SIP/2.0",
		"127.0.0.1:5080>127.0.0.1:5060 SIP/2.0 180 Ringing",
		"127.0.0.1:5060>127.0.0.1:5070 SIP/2.0 180 Ringing",
		"127.0.0.1:5080>127.0.0.1:5060 SIP/2.0 200 OK",
		"127.0.0.1:5060>127.0.0.1:5070 SIP/2.0 200 OK",
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("traced:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestModeOffAndSet: mode off installs no tap; siptrace.set turns capture
// on and off at run time on the real core.
func TestModeOffAndSet(t *testing.T) {
	c := newCollector(t)
	h := routetest.New(t, nil)
	h.Route = func(ctx *routing.Ctx) { ctx.Reply(200, "") }
	tm := start(t, settings("off", c.addr()), h.Core())
	send := func(id string) { h.Receive(uac.String(), options(id)) }
	send("off-1")
	if err := tm.st.SetMode("all", 0); err != nil {
		t.Fatal(err)
	}
	send("on-1")
	if err := tm.st.SetMode("off", 0); err != nil {
		t.Fatal(err)
	}
	send("off-2")
	tm.waitSent(t)
	var ids []string
	for _, r := range c.drain(t, 100*time.Millisecond) {
		ids = append(ids, string(r.CallID))
	}
	if strings.Join(ids, ",") != "on-1,on-1" { // the OPTIONS and its 200
		t.Fatalf("traced %v, want on-1 twice", ids)
	}
	if err := tm.st.SetMode("loud", 0); err == nil {
		t.Fatal("SetMode accepted an unknown mode")
	}
}

// TestDeadCollectorNeverBlocks: nothing listens on the collector's port.
// Captures return at once and the sender goes on; the ICMP port
// unreachable turns into errors (the kernel limits how many ICMP errors
// it sends, so the test sends until one comes), after which the collector
// is not sent to for a second: 2,000 more messages make no sendmmsg call
// and are counted as errors. Every message is counted as sent, failed or
// dropped.
func TestDeadCollectorNeverBlocks(t *testing.T) {
	dead := newCollector(t)
	addr := dead.addr()
	dead.conn.Close()
	tm := start(t, settings("all", addr), nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	msg := []byte(options("dead"))
	c := tm.st.colls.Load().list[0]
	n := 0
	for deadline := time.Now().Add(5 * time.Second); c.errs.Load() == 0; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("no send error within 5s for a collector nobody listens on (%d sent)", c.sent.Load())
		}
		tm.st.Sent(l, uas, msg)
		time.Sleep(time.Millisecond)
	}
	tm.waitSent(t)
	calls := c.calls.Load()
	start := time.Now()
	for i := 0; i < 2000; i++ {
		tm.st.Sent(l, uas, msg)
	}
	n += 2000
	tm.waitSent(t)
	if after := c.calls.Load(); after != calls && time.Since(start) < udpPause {
		t.Errorf("%d sendmmsg calls to a paused collector", after-calls)
	}
	sent, _ := strconv.Atoi(tm.metric(t, `switchboard_siptrace_packets_sent_total{collector="udp:`+addr+`"}`))
	errs, _ := strconv.Atoi(tm.metric(t, `switchboard_siptrace_send_errors_total{collector="udp:`+addr+`"}`))
	full, _ := strconv.Atoi(tm.metric(t, `switchboard_siptrace_dropped_total{reason="queue_full"}`))
	if errs < 2000-full || sent+errs+full != n {
		t.Errorf("%d captured: sent %d + errors %d + dropped %d", n, sent, errs, full)
	}
	if st := tm.st.Status(); len(st.Collectors) != 1 || st.Collectors[0].Errors != uint64(errs) {
		t.Errorf("status %+v", st)
	}
}

// TestTCPCollector: HEP over TCP, packets back to back on one connection;
// a collector that goes away is dialled again.
func TestTCPCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tm := start(t, settings("all", "tcp:"+ln.Addr().String()), nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	read := func(conn net.Conn, want int) []string {
		var ids []string
		br := bufio.NewReader(conn)
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		for len(ids) < want {
			hdr := make([]byte, 6)
			if _, err := io.ReadFull(br, hdr); err != nil {
				t.Fatalf("after %d packets: %v", len(ids), err)
			}
			p := make([]byte, binary.BigEndian.Uint16(hdr[4:]))
			copy(p, hdr)
			if _, err := io.ReadFull(br, p[6:]); err != nil {
				t.Fatal(err)
			}
			var r Record
			if err := ParseHEP3(p, &r); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, string(r.CallID))
		}
		return ids
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	waitUp(t, tm)
	for i := 0; i < 3; i++ {
		tm.st.Sent(l, uas, []byte(options("tcp-"+strconv.Itoa(i))))
	}
	if ids := read(conn, 3); strings.Join(ids, ",") != "tcp-0,tcp-1,tcp-2" {
		t.Fatalf("got %v", ids)
	}
	conn.Close() // the collector restarts
	conn, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Until the writer notices the old connection is gone, packets may be
	// lost (counted); keep sending until one arrives on the new one.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		tm.st.Sent(l, uas, []byte(options("again-"+strconv.Itoa(i))))
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var b [1]byte
		if n, _ := conn.Read(b[:]); n == 1 {
			return
		}
	}
	t.Fatal("nothing arrived on the new connection")
}

func waitUp(t *testing.T, tm *testModule) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c := tm.st.colls.Load().list[0]
		c.mu.Lock()
		up := c.up
		c.mu.Unlock()
		if up {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the TCP collector was not connected within 3s")
}

// nopRouter is a Router for a core whose routes do not matter here.
type nopRouter struct{}

func (nopRouter) Request(r *txn.Request)                                   { r.Drop() }
func (nopRouter) Branch(*txn.Request, *txn.Branch)                         {}
func (nopRouter) Reply(*txn.Request, *txn.Branch, *parser.Message) bool    { return true }
func (nopRouter) Failure(*txn.Request, *parser.Message)                    {}
func (nopRouter) Send(*transport.Listener, netip.AddrPort, []byte) error   { return nil }
func (nopRouter) Listener(transport.Proto, netip.Addr) *transport.Listener { return nil }
func (nopRouter) Listeners() []*transport.Listener                         { return nil }

// TestCollectorOutsideAllowList: a collector outside outbound.allow stops
// the start with an error naming the entry; so does a reload to one.
func TestCollectorOutsideAllowList(t *testing.T) {
	core, err := txn.New(txn.Config{Sender: nopRouter{}, Listeners: nopRouter{}, Router: nopRouter{}, Clock: shards.NewManualClock(0),
		AllowOutbound: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	_, err = tryStart(t, settings("all", "127.0.0.1:9060", "192.0.2.7:9060"), core)
	if err == nil || !strings.Contains(err.Error(), "collectors[1]") || !strings.Contains(err.Error(), "outbound.allow") {
		t.Fatalf("start: %v", err)
	}
	tm := start(t, settings("all", "127.0.0.1:9060"), core)
	err = tm.st.Reload(settings("all", "udp:[2001:db8::1]:9060"))
	if err == nil || !strings.Contains(err.Error(), "collectors[0]") {
		t.Fatalf("reload: %v", err)
	}
	if st := tm.st.Status(); len(st.Collectors) != 1 || st.Collectors[0].Collector != "udp:127.0.0.1:9060" {
		t.Fatalf("collectors after the refused reload: %+v", st.Collectors)
	}
}

// TestReload: new collectors, mode and node id apply without a restart;
// a collector kept keeps its counters; the queue's size needs a restart:
// named so by CheckReload (not a refusal), kept by Reload, which applies
// the node id changed with it.
func TestReload(t *testing.T) {
	c1, c2 := newCollector(t), newCollector(t)
	tm := start(t, settings("all", c1.addr()), nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	tm.st.Sent(l, uas, []byte(options("r-1")))
	c1.next(t)
	s := settings("all", c2.addr(), c1.addr())
	s.NodeID = 77
	if err := tm.st.Reload(s); err != nil {
		t.Fatal(err)
	}
	tm.st.Sent(l, uas, []byte(options("r-2")))
	for _, c := range []*collectorSock{c1, c2} {
		if r := c.next(t); r.NodeID != 77 || string(r.CallID) != "r-2" {
			t.Errorf("after reload: node %d, %q", r.NodeID, r.CallID)
		}
	}
	tm.waitSent(t)
	if v := tm.metric(t, `switchboard_siptrace_packets_sent_total{collector="udp:`+c1.addr()+`"}`); v != "2" {
		t.Errorf("kept collector: sent %s, want 2", v)
	}
	queueSize := s.QueueSize
	s.QueueSize, s.NodeID = 4096, 78
	var ke *modules.KeyError
	if err := tm.st.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "queue_size" {
		t.Fatalf("queue_size changed: CheckReload %v, want it named as needing a restart", err)
	}
	if err := tm.st.Reload(s); err != nil || s.QueueSize != queueSize {
		t.Fatalf("queue_size changed on reload: %v, settings left with %d", err, s.QueueSize)
	}
	tm.st.Sent(l, uas, []byte(options("r-3")))
	if r := c1.next(t); r.NodeID != 78 {
		t.Errorf("node id %d after a reload with queue_size changed, want 78", r.NodeID)
	}
}

func TestCheckSettings(t *testing.T) {
	for _, c := range []struct {
		key string
		mod func(*Settings)
	}{
		{"collectors[0]", func(s *Settings) { s.Collectors = []string{"homer.example.com:9060"} }},
		{"collectors[1]", func(s *Settings) { s.Collectors = []string{"127.0.0.1:9060", "sctp:127.0.0.1:9060"} }},
		{"collectors[0]", func(s *Settings) { s.Collectors = []string{"127.0.0.1:0"} }},
		{"collectors[0]", func(s *Settings) { s.Collectors = []string{"0.0.0.0:9060"} }},
		{"collectors[1]", func(s *Settings) { s.Collectors = []string{"127.0.0.1:9060", "udp:127.0.0.1:9060"} }},
		{"mode", func(s *Settings) { s.Mode = "some" }},
		{"sample_rate", func(s *Settings) { s.SampleRate = 0 }},
		{"sample_rate", func(s *Settings) { s.SampleRate = 1.5 }},
		{"node_id", func(s *Settings) { s.NodeID = 1 << 32 }},
		{"password", func(s *Settings) { s.Password = strings.Repeat("p", 300) }},
		{"queue_size", func(s *Settings) { s.QueueSize = 8 }},
		{"max_message", func(s *Settings) { s.MaxMessage = 70000 }},
	} {
		s := DefaultSettings()
		c.mod(s)
		err := checkSettings(s)
		ke, ok := err.(*modules.KeyError)
		if !ok || ke.Key != c.key {
			t.Errorf("%s: got %v", c.key, err)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	s := DefaultSettings()
	s.Collectors = []string{"127.0.0.1:9060", "tcp:[::1]:9061", "udp:10.0.0.1:9060"}
	if err := checkSettings(s); err != nil {
		t.Fatalf("good collectors: %v", err)
	}
}

// TestCaptureNoAllocs: the tap allocates nothing per message in any mode,
// traced or not; the sender allocates nothing per packet.
func TestCaptureNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	tm := start(t, settings("all", newSink(t)), nil)
	l := &transport.Listener{Proto: transport.UDP, Local: proxy}
	msg := []byte(options("alloc-1"))
	var m parser.Message
	if err := m.Parse(msg); err != nil {
		t.Fatal(err)
	}
	tm.st.traced.add(txKey([]byte("alloc-1"), 1), 0)
	for _, mode := range []string{"all", "sample", "route", "off"} {
		if err := tm.st.SetMode(mode, 0.5); err != nil {
			t.Fatal(err)
		}
		f := func() {
			tm.st.Received(msg, uac, l, transport.UDP, &m)
			tm.st.Received(msg, uac, l, transport.UDP, nil)
			tm.st.Sent(l, uas, msg)
		}
		f()
		tm.waitSent(t)
		if n := testing.AllocsPerRun(100, func() { f(); tm.waitSentQuiet() }); n != 0 {
			t.Errorf("mode %s: %v allocations per message", mode, n)
		}
	}
	// The sender on its own: encode and send one slot.
	q := newQueue(16, 8192)
	s, pos := q.claim()
	s.proto, s.src, s.dst, s.buf = transport.UDP, uac, proxy, append(s.buf[:0], msg...)
	q.publish(s, pos)
	b, st := newBatch(), tm.st.state.Load()
	if n := testing.AllocsPerRun(200, func() {
		b.reset()
		for i := 0; i < batchMax; i++ {
			tm.st.encode(b, s, st)
		}
		tm.st.flush(b)
	}); n != 0 {
		t.Errorf("sender: %v allocations per batch of %d packets", n, batchMax)
	}
}

// waitSentQuiet waits as waitSent does, without the test's helpers
// (which allocate).
func (tm *testModule) waitSentQuiet() {
	q := tm.st.q.Load()
	for q.tail.Load() != tm.st.flushed.Load()+tm.st.encodeErr.Load() {
		time.Sleep(50 * time.Microsecond)
	}
}

// TestLogLines: with logs on, Log sends a HEP type 100 packet whose
// correlation id is the Call-ID and whose payload is the line; with logs
// off, in mode off, or without a Call-ID, nothing.
func TestLogLines(t *testing.T) {
	c := newCollector(t)
	s := settings("all", c.addr())
	s.Logs = true
	tm := start(t, s, nil)
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	tm.st.Log([]byte("call-1@x"), src, []byte(`level=WARN msg="txn: next hop unreachable" call_id=call-1@x`))
	r := c.next(t)
	if r.Type != ProtoTypeLog || string(r.CallID) != "call-1@x" || r.Src != src || r.Dst.Addr() != netip.IPv4Unspecified() ||
		string(r.Payload) != `level=WARN msg="txn: next hop unreachable" call_id=call-1@x` || r.NodeID != 1 {
		t.Fatalf("log record %+v", r)
	}
	tm.st.Log([]byte("call-2@x"), netip.AddrPort{}, []byte("no source"))
	if r := c.next(t); r.Src.Addr() != netip.IPv4Unspecified() || string(r.CallID) != "call-2@x" {
		t.Fatalf("log without a source %+v", r)
	}
	tm.st.Log(nil, src, []byte("no call"))
	if err := tm.st.SetMode("off", 0); err != nil {
		t.Fatal(err)
	}
	tm.st.Log([]byte("call-3@x"), src, []byte("mode off"))
	tm.waitSent(t)
	if got := c.drain(t, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("sent %d more: %+v", len(got), got)
	}

	off := newCollector(t)
	tm2 := start(t, settings("all", off.addr()), nil) // logs: false
	tm2.st.Log([]byte("call-4@x"), src, []byte("logs off"))
	tm2.waitSent(t)
	if got := off.drain(t, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("logs off sent %+v", got)
	}
}

func TestLogsOn(t *testing.T) {
	c := newCollector(t)
	s := settings("all", c.addr())
	s.Logs = true
	tm := start(t, s, nil)
	if !tm.st.LogsOn() {
		t.Fatal("logs on, collector set: LogsOn false")
	}
	tm.st.SetMode("off", 0)
	if tm.st.LogsOn() {
		t.Fatal("mode off: LogsOn true")
	}
	if start(t, settings("all", c.addr()), nil).st.LogsOn() {
		t.Fatal("logs off: LogsOn true")
	}
}
