package anycast

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/transport"
)

// phoneConn is a phone's TCP connection to node A's real transport, and
// the connection number A gave it.
type phoneConn struct {
	c  net.Conn
	id transport.ConnID
	r  *bufio.Reader
}

// holderNode is node A: a real transport with a TCP listener, whose
// handler records the connection of each message (and passes responses
// to the relay as the core's ForeignResponse hook does).
type holderNode struct {
	tr    *transport.Transport
	relay atomic.Pointer[Relay] // set once the transport started (its goroutines read the transport's state)
	mu    sync.Mutex
	seen  map[netip.AddrPort]transport.ConnID
}

func (h *holderNode) HandleMessage(p *transport.Packet) {
	if bytes.HasPrefix(p.Data, []byte("SIP/2.0 ")) {
		if i := bytes.Index(p.Data, []byte("branch=")); i >= 0 && h.relay.Load() != nil {
			b := p.Data[i+7:]
			b = b[:bytes.IndexAny(b, ";\r")]
			h.relay.Load().Forward(b, p.Data, p.Src, p.Listener, p.Proto)
		}
		return
	}
	h.mu.Lock()
	h.seen[p.Src] = p.Conn
	h.mu.Unlock()
}

// dial connects a phone to A and waits for A to number its connection.
func (h *holderNode) dial(t *testing.T) *phoneConn {
	t.Helper()
	c, err := net.Dial("tcp", h.tr.Listeners()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte("OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n"))
	src := c.LocalAddr().(*net.TCPAddr).AddrPort()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		id := h.seen[src]
		h.mu.Unlock()
		if id != 0 {
			return &phoneConn{c: c, id: id, r: bufio.NewReader(c)}
		}
		if time.Now().After(deadline) {
			t.Fatal("A did not see the phone's message")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// read returns the next len(want) bytes the phone receives.
func (p *phoneConn) read(t *testing.T, n int) string {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(p.r, b); err != nil {
		t.Fatalf("the phone read %q: %v", b, err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFlowHandoff: node B hands a request to node A, which holds the
// phone's TCP connection (a real transport): A writes the bytes on the
// connection unchanged, and the phone's response over it, carrying B's
// branch prefix, comes back to B as a TCP response with the phone's
// source. Once the connection is closed a tagged hand-off is reported
// back (B's FlowFailed gets the flow and the tag, and the flow is dead
// from then on); an untagged one is dropped silently; a connection A never
// had, or one of an earlier run of A (another prefix), is reported too.
// A relay packet from a stranger, shaped like a hand-off for a live
// connection, is dropped and never reaches the phone; a report from a
// peer that does not hold the flow changes nothing.
func TestFlowHandoff(t *testing.T) {
	aAddr, bAddr := freeUDP(t), freeUDP(t)
	raw, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rawAddr := raw.LocalAddr().(*net.UDPAddr).AddrPort()

	a := &holderNode{seen: map[netip.AddrPort]transport.ConnID{}}
	a.tr, err = transport.New(transport.Config{Listeners: []transport.ListenerConfig{{Proto: transport.TCP, Addr: "127.0.0.1:0"}}, StreamLoops: 1}, a)
	if err != nil {
		t.Fatal(err)
	}
	outA, outB := make(chan got, 8), make(chan got, 8)
	// A's peers: B, and raw, a socket the test writes relay packets from
	// as a peer would.
	if err := a.tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.tr.Close()
	a.relay.Store(newRelayWith(t, Config{Listen: aAddr, Peers: []netip.AddrPort{bAddr, rawAddr}, Prefix: "z9hG4bKaaaaaa",
		SendConn: a.tr.SendConnTagged}, outA))
	defer a.relay.Load().Close()
	shared := a.tr.Listeners()[0].Local
	bTCP := &transport.Listener{Proto: transport.TCP, Local: shared}
	var fmu sync.Mutex
	var failed []transport.SendFailure
	b := newRelayWith(t, Config{Listen: bAddr, Peers: []netip.AddrPort{aAddr}, Prefix: "z9hG4bKbbbbbb",
		FlowFailed: func(f transport.SendFailure) { fmu.Lock(); failed = append(failed, f); fmu.Unlock() }}, outB, bTCP)
	defer b.Close()
	waitFor(t, "B did not hear A", func() bool { return b.Stats().Peers == 1 })
	failures := func() []transport.SendFailure {
		fmu.Lock()
		defer fmu.Unlock()
		return append([]transport.SendFailure(nil), failed...)
	}

	phone := a.dial(t)
	holder := [6]byte([]byte("aaaaaa"))
	f := b.RemoteFlow(holder, uint64(phone.id), transport.TCP, shared)
	if f == 0 || f != b.RemoteFlow(holder, uint64(phone.id), transport.TCP, shared) {
		t.Fatalf("flow ids %x: want one, the same for the same connection", f)
	}
	if l, relay, h, id, ok := b.RemoteFlowInfo(f); !ok || l != bTCP || relay != aAddr || h != holder || id != uint64(phone.id) {
		t.Fatalf("RemoteFlowInfo: %p %v %q %d %v", l, relay, h[:], id, ok)
	}
	if b.RemoteFlow([6]byte([]byte("bbbbbb")), 3, transport.TCP, shared) != 0 || b.RemoteFlow(holder, 3, transport.UDP, shared) != 0 {
		t.Fatal("a flow of B's own, or over UDP, got an id")
	}

	invite := "INVITE sip:phone@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKbbbbbb0001\r\nContent-Length: 0\r\n\r\n"
	if err := b.SendRemoteFlow(f, []byte(invite), transport.Tag{1, 2}); err != nil {
		t.Fatal(err)
	}
	if got := phone.read(t, len(invite)); got != invite {
		t.Fatalf("the phone got %q, want the request unchanged", got)
	}
	// The phone answers on its connection, to A: relayed to B.
	ok := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKbbbbbb0001\r\nContent-Length: 0\r\n\r\n"
	phone.c.Write([]byte(ok))
	select {
	case g := <-outB:
		if string(g.data) != ok || g.listener != bTCP || g.src != phone.c.LocalAddr().(*net.TCPAddr).AddrPort() {
			t.Fatalf("B got %q from %v on %p, want the 200 from the phone on its TCP listener", g.data, g.src, g.listener)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the phone's response did not reach B")
	}

	// A stranger's hand-off for the live connection is dropped; the
	// phone's next bytes are the peer's.
	stranger, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(aAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	refused := a.relay.Load().Stats().Refused
	stranger.Write(handoffPacket(holder, uint64(phone.id), 77, transport.Tag{9, 9}, "FORGED sip:x SIP/2.0\r\n\r\n"))
	waitFor(t, "A did not refuse the stranger's packet", func() bool { return a.relay.Load().Stats().Refused > refused })
	bye := "BYE sip:phone@192.0.2.10 SIP/2.0\r\nContent-Length: 0\r\n\r\n"
	raw.WriteToUDPAddrPort(handoffPacket(holder, uint64(phone.id), 77, transport.Tag{}, bye), aAddr)
	if got := phone.read(t, len(bye)); got != bye {
		t.Fatalf("the phone got %q after a stranger's hand-off, want the peer's BYE", got)
	}

	// Another prefix (an earlier run of A) and a connection A never had:
	// reported to the sender, the flow id and tag given back.
	buf := make([]byte, 64)
	for _, c := range []struct {
		holder [6]byte
		id     uint64
	}{{[6]byte([]byte("cccccc")), uint64(phone.id)}, {holder, 999}} {
		raw.WriteToUDPAddrPort(handoffPacket(c.holder, c.id, 0x8000000100000005, transport.Tag{7, 8}, bye), aAddr)
		raw.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := raw.ReadFromUDPAddrPort(buf)
		for err == nil && string(buf[:4]) == magicHello { // raw is A's peer: it gets A's hellos
			n, _, err = raw.ReadFromUDPAddrPort(buf)
		}
		if err != nil || string(buf[:n]) != string(goneReport(0x8000000100000005, transport.Tag{7, 8})) {
			t.Fatalf("holder %q connection %d: report %q (%v)", c.holder[:], c.id, buf[:n], err)
		}
	}

	// The phone hangs up: B's tagged hand-off is reported, an untagged one
	// is not; then the flow is dead.
	phone.c.Close()
	waitFor(t, "A still has the connection", func() bool { _, _, ok := a.tr.ConnInfo(phone.id); return !ok })
	dropped := a.relay.Load().Stats().HandoffsDropped
	if err := b.SendRemoteFlow(f, []byte(bye), transport.Tag{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A did not drop the untagged hand-off", func() bool { return a.relay.Load().Stats().HandoffsDropped > dropped })
	if err := b.SendRemoteFlow(f, []byte(bye), transport.Tag{3, 4}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B got no report", func() bool { return len(failures()) > 0 })
	if fs := failures(); len(fs) != 1 || fs[0].Conn != f || fs[0].Tag != (transport.Tag{3, 4}) || fs[0].Proto != transport.TCP {
		t.Fatalf("reports %+v, want one for flow %x with tag {3 4}", fs, f)
	}
	if _, _, _, _, ok := b.RemoteFlowInfo(f); ok {
		t.Fatal("a flow reported gone is still usable")
	}
	if err := b.SendRemoteFlow(f, []byte(bye), transport.Tag{5, 6}); err != ErrFlowGone {
		t.Fatalf("a hand-off over a dead flow: %v", err)
	}
	st := b.Stats()
	if st.HandoffsSent != 3 || st.HandoffsFailed != 1 || a.relay.Load().Stats().HandoffsReceived != 2 {
		t.Fatalf("B sent %d, failed %d; A wrote %d: want 3, 1, 2", st.HandoffsSent, st.HandoffsFailed, a.relay.Load().Stats().HandoffsReceived)
	}

	// A report about A's flow from raw (a peer, not the holder) is
	// ignored.
	g := b.RemoteFlow(holder, 12345, transport.TCP, shared)
	refused = b.Stats().Refused
	bRaw, _ := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(bAddr))
	defer bRaw.Close()
	bRaw.Write(goneReport(uint64(g), transport.Tag{1, 1}))
	waitFor(t, "B did not refuse a stranger's report", func() bool { return b.Stats().Refused > refused })
	if _, _, _, _, ok := b.RemoteFlowInfo(g); !ok {
		t.Fatal("a stranger's report killed a flow")
	}
}

func handoffPacket(holder [6]byte, id, flow uint64, tag transport.Tag, data string) []byte {
	b := append([]byte(magicFlow), holder[:]...)
	b = be64(b, id)
	b = be64(b, flow)
	b = be64(b, tag[0])
	b = be64(b, tag[1])
	return append(b, data...)
}

func goneReport(flow uint64, tag transport.Tag) []byte {
	return be64(be64(be64([]byte(magicFlowGone), flow), tag[0]), tag[1])
}

func be64(b []byte, v uint64) []byte {
	for i := 7; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// TestFlowTable: the table keeps at most MaxFlows; a full table forgets
// one not used since the clock hand last passed, whose id then names
// nothing even though its holder is alive; ids of the others stay.
// Looking flows up and handing a request over allocate nothing.
func TestFlowTable(t *testing.T) {
	aAddr, bAddr := freeUDP(t), freeUDP(t)
	shared := netip.MustParseAddrPort("127.0.0.1:5060")
	bTCP := &transport.Listener{Proto: transport.TCP, Local: shared}
	out := make(chan got, 1)
	// A writes every hand-off (on no connection), so that none is
	// reported gone and the sends below all go out.
	a := newRelayWith(t, Config{Listen: aAddr, Peers: []netip.AddrPort{bAddr}, Prefix: "z9hG4bKaaaaaa",
		SendConn: func(transport.ConnID, []byte, transport.Tag) error { return nil }}, out)
	defer a.Close()
	b := newRelayWith(t, Config{Listen: bAddr, Peers: []netip.AddrPort{aAddr}, Prefix: "z9hG4bKbbbbbb", MaxFlows: 4}, out, bTCP)
	defer b.Close()
	waitFor(t, "B did not hear A", func() bool { return b.Stats().Peers == 1 })
	holder := [6]byte([]byte("aaaaaa"))
	var ids []transport.ConnID
	for i := uint64(1); i <= 4; i++ {
		ids = append(ids, b.RemoteFlow(holder, i, transport.TCP, shared))
	}
	// A fifth: every slot is marked used, so the hand clears them all and
	// takes the first; the next new one takes the second.
	f5 := b.RemoteFlow(holder, 5, transport.TCP, shared)
	if st := b.Stats(); st.Flows != 4 || st.FlowsEvicted != 1 {
		t.Fatalf("flows %d, evicted %d: want 4 and 1", st.Flows, st.FlowsEvicted)
	}
	if _, _, _, _, ok := b.RemoteFlowInfo(ids[0]); ok {
		t.Fatal("the id of a forgotten flow still names one")
	}
	if _, _, _, id, ok := b.RemoteFlowInfo(f5); !ok || id != 5 {
		t.Fatal("the new flow is not usable")
	}
	b.RemoteFlowInfo(ids[1]) // used again: survives the next eviction
	b.RemoteFlow(holder, 6, transport.TCP, shared)
	if _, _, _, _, ok := b.RemoteFlowInfo(ids[1]); !ok {
		t.Fatal("a flow used since the hand passed was forgotten")
	}
	if _, _, _, _, ok := b.RemoteFlowInfo(ids[2]); ok {
		t.Fatal("the hand skipped the unused flow")
	}
	if raceEnabled {
		return
	}
	data := []byte(strings.Repeat("x", 400))
	if n := testing.AllocsPerRun(100, func() {
		b.RemoteFlow(holder, 5, transport.TCP, shared)
		b.RemoteFlowInfo(f5)
		if err := b.SendRemoteFlow(f5, data, transport.Tag{1, 2}); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per look-up and hand-off", n)
	}
}

// BenchmarkHandoff is the sender's cost of handing a 600-byte INVITE to
// the holder (flow look-up and one datagram) next to the look-up alone.
func BenchmarkHandoff(b *testing.B) {
	aAddr, bAddr := freeUDPB(b), freeUDPB(b)
	shared := netip.MustParseAddrPort("127.0.0.1:5060")
	// A writes every hand-off (on no connection: the sender's side is
	// measured).
	ra, err := New(Config{Listen: aAddr, Peers: []netip.AddrPort{bAddr}, Prefix: "z9hG4bKaaaaaa",
		Handle: func(*transport.Packet) {}, Listener: func(transport.Proto, netip.AddrPort) *transport.Listener { return nil },
		SendConn: func(transport.ConnID, []byte, transport.Tag) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	ra.Start()
	defer ra.Close()
	bTCP := &transport.Listener{Proto: transport.TCP, Local: shared}
	rb, err := New(Config{Listen: bAddr, Peers: []netip.AddrPort{aAddr}, Prefix: "z9hG4bKbbbbbb",
		Handle:   func(*transport.Packet) {},
		Listener: func(transport.Proto, netip.AddrPort) *transport.Listener { return bTCP }})
	if err != nil {
		b.Fatal(err)
	}
	rb.Start()
	defer rb.Close()
	for rb.Stats().Peers == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	f := rb.RemoteFlow([6]byte([]byte("aaaaaa")), 7, transport.TCP, shared)
	data := []byte(strings.Repeat("x", 600))

	b.Run("info", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rb.RemoteFlowInfo(f)
		}
	})
	b.Run("send", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rb.RemoteFlowInfo(f)
			if err := rb.SendRemoteFlow(f, data, transport.Tag{1, 2}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func freeUDPB(b *testing.B) netip.AddrPort {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestFlowTableFreesGone: in a full table the slot of a flow known gone
// is reused before any live flow is forgotten, however recently that
// was used: one the holder reported closed, one of a holder not heard
// from (listed when added, or when its holder is forgotten). A listed
// slot whose holder is heard again is not taken for gone.
func TestFlowTableFreesGone(t *testing.T) {
	aAddr, bAddr := freeUDP(t), freeUDP(t)
	shared := netip.MustParseAddrPort("127.0.0.1:5060")
	bTCP := &transport.Listener{Proto: transport.TCP, Local: shared}
	out := make(chan got, 1)
	// A holds connections 1 to 9, except 2, which closed.
	a := newRelayWith(t, Config{Listen: aAddr, Peers: []netip.AddrPort{bAddr}, Prefix: "z9hG4bKaaaaaa",
		SendConn: func(id transport.ConnID, _ []byte, _ transport.Tag) error {
			if id == 2 {
				return transport.ErrNoConn
			}
			return nil
		}}, out)
	defer a.Close()
	var reports atomic.Int32
	b := newRelayWith(t, Config{Listen: bAddr, Peers: []netip.AddrPort{aAddr}, Prefix: "z9hG4bKbbbbbb", MaxFlows: 4,
		FlowFailed: func(transport.SendFailure) { reports.Add(1) }}, out, bTCP)
	defer b.Close()
	waitFor(t, "B did not hear A", func() bool { return b.Stats().Peers == 1 })
	holder := [6]byte([]byte("aaaaaa"))
	ids := map[uint64]transport.ConnID{}
	for i := uint64(1); i <= 4; i++ {
		ids[i] = b.RemoteFlow(holder, i, transport.TCP, shared)
	}
	if err := b.SendRemoteFlow(ids[2], []byte("INVITE"), transport.Tag{1, 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A did not report connection 2 gone", func() bool { return reports.Load() == 1 })
	live := func(ns ...uint64) {
		t.Helper()
		for _, n := range ns {
			if _, _, _, id, ok := b.RemoteFlowInfo(ids[n]); !ok || id != n {
				t.Fatalf("live flow %d forgotten", n)
			}
		}
	}
	live(1, 3, 4) // all used since the hand passed
	ids[5] = b.RemoteFlow(holder, 5, transport.TCP, shared)
	if st := b.Stats(); st.FlowsEvicted != 0 || st.FlowsFreed != 1 || st.Flows != 4 {
		t.Fatalf("evicted %d, freed %d, flows %d: want the gone flow's slot reused", st.FlowsEvicted, st.FlowsFreed, st.Flows)
	}
	live(1, 3, 4, 5)

	// A holder never heard from (a dead node's bindings on Redis): its
	// flow takes a live one's slot this once, and is the first to go.
	ghost := b.RemoteFlow([6]byte([]byte("gggggg")), 1, transport.TCP, shared)
	if st := b.Stats(); st.FlowsEvicted != 1 {
		t.Fatalf("evicted %d, want 1", st.FlowsEvicted)
	}
	evicted := b.Stats().FlowsEvicted
	for n := range ids {
		b.RemoteFlowInfo(ids[n]) // all used: only the ghost is free
	}
	ids[6] = b.RemoteFlow(holder, 6, transport.TCP, shared)
	if st := b.Stats(); st.FlowsEvicted != evicted || st.FlowsFreed != 2 {
		t.Fatalf("evicted %d, freed %d: want the unheard holder's slot reused", st.FlowsEvicted, st.FlowsFreed)
	}
	if _, _, _, _, ok := b.RemoteFlowInfo(ghost); ok {
		t.Fatal("the ghost's flow is usable")
	}

	// A forgotten (as expire does) and heard again before the slots are
	// needed: its flows are live, and the clock decides.
	b.flows.forget(map[[6]byte]bool{holder: true})
	b.RemoteFlow(holder, 7, transport.TCP, shared)
	if st := b.Stats(); st.FlowsFreed != 2 || st.FlowsEvicted != evicted+1 {
		t.Fatalf("freed %d, evicted %d: a live holder's listed flow was taken for gone", st.FlowsFreed, st.FlowsEvicted)
	}
	// The free list never holds a slot twice.
	b.flows.forget(map[[6]byte]bool{holder: true})
	b.flows.forget(map[[6]byte]bool{holder: true})
	b.flows.freeMu.Lock()
	n := len(b.flows.free)
	b.flows.freeMu.Unlock()
	if n > 4 {
		t.Fatalf("free list of %d for a table of 4", n)
	}
}

// TestFlowHandoffLateFailure: the holder accepts a tagged hand-off (the
// transport queues it) and the connection closes before it is written:
// the transport's SendFailure for the holder's tag reaches the relay
// (SendErrors), which reports the connection gone to the sender with the
// sender's flow and tag, once; the sender's FlowFailed answers 430.
// Failures of the holder's own requests go on to the core, and a forged
// or stale hand-off tag reports nothing.
func TestFlowHandoffLateFailure(t *testing.T) {
	aAddr, bAddr := freeUDP(t), freeUDP(t)
	shared := netip.MustParseAddrPort("127.0.0.1:5060")
	bTCP := &transport.Listener{Proto: transport.TCP, Local: shared}
	out := make(chan got, 1)
	accepted := make(chan transport.Tag, 4)
	a := newRelayWith(t, Config{Listen: aAddr, Peers: []netip.AddrPort{bAddr}, Prefix: "z9hG4bKaaaaaa",
		SendConn: func(_ transport.ConnID, _ []byte, tag transport.Tag) error { accepted <- tag; return nil }}, out)
	defer a.Close()
	var fmu sync.Mutex
	var failed []transport.SendFailure
	b := newRelayWith(t, Config{Listen: bAddr, Peers: []netip.AddrPort{aAddr}, Prefix: "z9hG4bKbbbbbb",
		FlowFailed: func(f transport.SendFailure) { fmu.Lock(); failed = append(failed, f); fmu.Unlock() }}, out, bTCP)
	defer b.Close()
	waitFor(t, "B did not hear A", func() bool { return b.Stats().Peers == 1 })
	f := b.RemoteFlow([6]byte([]byte("aaaaaa")), 7, transport.TCP, shared)

	core := &coreFailures{}
	h := a.SendErrors(core)
	if err := b.SendRemoteFlow(f, []byte("BYE"), transport.Tag{}); err != nil {
		t.Fatal(err)
	}
	if tag := <-accepted; tag != (transport.Tag{}) {
		t.Fatalf("an untagged hand-off written with tag %v", tag)
	}
	if err := b.SendRemoteFlow(f, []byte("INVITE"), transport.Tag{5, 6}); err != nil {
		t.Fatal(err)
	}
	tag := <-accepted
	if tag == (transport.Tag{}) || tag[1]>>63 != 0 {
		t.Fatalf("a tagged hand-off written with tag %x: want one of the holder's", tag)
	}
	// A forged tag (the next sequence number) and a branch tag of A's
	// own core: nothing reported; the core gets its own.
	h.SendFailed(transport.SendFailure{Tag: transport.Tag{tag[0], tag[1] + 1}})
	h.SendFailed(transport.SendFailure{Tag: transport.Tag{tag[0], 1<<63 | 1}})
	if n := core.count(); n != 1 {
		t.Fatalf("the core got %d failures, want its own 1", n)
	}
	h.SendFailed(transport.SendFailure{Tag: tag, Proto: transport.TCP, Err: transport.ErrConnClosed})
	h.SendFailed(transport.SendFailure{Tag: tag, Proto: transport.TCP, Err: transport.ErrConnClosed})
	waitFor(t, "B got no report", func() bool { fmu.Lock(); defer fmu.Unlock(); return len(failed) > 0 })
	time.Sleep(50 * time.Millisecond) // a second report would have arrived
	fmu.Lock()
	defer fmu.Unlock()
	if len(failed) != 1 || failed[0].Conn != f || failed[0].Tag != (transport.Tag{5, 6}) {
		t.Fatalf("reports %+v, want one for flow %x with tag {5 6}", failed, f)
	}
	if _, _, _, _, ok := b.RemoteFlowInfo(f); ok {
		t.Fatal("the flow is still usable after the holder's report")
	}
	if core.count() != 1 {
		t.Fatal("the hand-off's failure reached the core")
	}
}

type coreFailures struct{ n atomic.Int32 }

func (c *coreFailures) SendFailed(transport.SendFailure) { c.n.Add(1) }
func (c *coreFailures) count() int                       { return int(c.n.Load()) }
