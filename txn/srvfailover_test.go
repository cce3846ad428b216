package txn

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/sipdns"
	"switchboard/sipdns/dnstest"
	"switchboard/transport"
)

// Fail-over between the targets of a resolved next hop (RFC 3263 §4.3),
// on the harness: real transactions and timers, a recording sender, and a
// loopback DNS server.

const carrierURI = "sip:+15551234@carrier.test"

func carrierInvite(branch, callID string) string {
	return strings.Replace(invite(branch, callID), "INVITE sip:bob@127.0.0.1:5080 SIP/2.0", "INVITE "+carrierURI+" SIP/2.0", 1)
}

// carrierHarness is a harness whose resolver asks z, with the answers for
// carrier.test already cached so the branch is sent synchronously.
func carrierHarness(t *testing.T, z *dnstest.Zone) *harness {
	t.Helper()
	res := sipdns.New(sipdns.Config{Server: z.Addr, Timeout: 2 * time.Second})
	h := newHarness(t, func(c *Config) { c.Resolver = res })
	q := sipdns.NextHop{Host: "carrier.test", Supported: udpTCP}
	if _, err := resolveNow(t, res, q); err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Cached(q); !ok {
		t.Fatal("answers not cached")
	}
	return h
}

// invitesTo returns the INVITEs among msgs, by destination.
func invitesTo(msgs []sentMsg) map[netip.AddrPort][]sentMsg {
	out := map[netip.AddrPort][]sentMsg{}
	for _, m := range msgs {
		if strings.HasPrefix(m.data, "INVITE ") || strings.HasPrefix(m.data, "MESSAGE ") {
			out[m.dst] = append(out[m.dst], m)
		}
	}
	return out
}

// twoTargetZone serves carrier.test by SRV: a.carrier.test:5080 first
// (the UAS), b.carrier.test:5090 second (the second UAS), both 127.0.0.1.
func twoTargetZone(t *testing.T) *dnstest.Zone {
	return dnstest.NewZone(t,
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 20, 0, 5090, "b.carrier.test"),
		dnstest.A("a.carrier.test", 300, "127.0.0.1"),
		dnstest.A("b.carrier.test", 300, "127.0.0.1"),
	)
}

// The first SRV target stays silent: on timer B the branch moves to the
// second as a new client transaction (new branch parameter), whose 200
// goes upstream. A late 486 from the first target is not taken for the
// branch's answer but is ACKed; a late 200 from it goes upstream as a late
// 2xx.
func TestFailoverSilentTarget(t *testing.T) {
	z := twoTargetZone(t)
	h := carrierHarness(t, z)
	var failures []int
	h.rt.failure = func(r *Request, best *parser.Message) { failures = append(failures, best.StatusCode()) }
	h.in(uacAddr, carrierInvite("z9hG4bKfo1", "fo1@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE "+carrierURI+" SIP/2.0")
	first := msgs[1]

	h.advance(31 * time.Second) // timer A retransmissions only
	if inv := invitesTo(h.snd.take()); len(inv[uas2Addr]) != 0 || len(inv[uasAddr]) == 0 {
		t.Fatalf("before timer B: %v", inv)
	}
	h.advance(time.Second) // timer A at 31.5 s, then timer B (64·T1 = 32 s)
	inv := invitesTo(h.snd.take())
	if len(inv[uas2Addr]) != 1 || len(inv[uasAddr]) != 1 {
		t.Fatalf("around timer B: %v", inv)
	}
	second := inv[uas2Addr][0]
	if topBranch(first.data) == topBranch(second.data) {
		t.Fatal("the second target got the first attempt's branch parameter")
	}

	// The late 486 is not the branch's answer, but the given-up attempt
	// ACKs it (same branch as its INVITE), so the target stops resending.
	h.in(uasAddr, respond(first.data, 486, "late"))
	acks := h.snd.take()
	h.only(acks, toUAS+"ACK "+carrierURI+" SIP/2.0")
	if topBranch(acks[0].data) != topBranch(first.data) || !strings.Contains(header(acks[0].data, "To"), "tag=late") ||
		header(acks[0].data, "CSeq") != "1 ACK" {
		t.Fatalf("ACK of the late 486:\n%s", acks[0].data)
	}
	h.in(uas2Addr, respond(second.data, 180, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 180 Ringing")
	h.in(uas2Addr, respond(second.data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.in(uasAddr, respond(first.data, 200, "late"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	if len(failures) != 0 {
		t.Fatalf("failure route ran: %v", failures)
	}
}

// A send that fails at once moves to the next target at once.
func TestFailoverSendError(t *testing.T) {
	z := twoTargetZone(t)
	h := carrierHarness(t, z)
	h.snd.fail = map[netip.AddrPort]error{uasAddr: syscall.ENETUNREACH}
	h.in(uacAddr, carrierInvite("z9hG4bKfo2", "fo2@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUA2+"INVITE "+carrierURI+" SIP/2.0")
	h.in(uas2Addr, respond(msgs[1].data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// NAPTR → SRV over TCP: the connection to the first target cannot be
// opened (reported after Send returned nil), the branch moves to the
// second target; a report for the attempt given up changes nothing.
func TestFailoverAsyncStreamFailure(t *testing.T) {
	z := dnstest.NewZone(t,
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 20, 0, 5090, "b.carrier.test"),
		dnstest.A("a.carrier.test", 300, "127.0.0.1"),
		dnstest.A("b.carrier.test", 300, "127.0.0.1"),
	)
	h := carrierHarness(t, z)
	h.in(uacAddr, carrierInvite("z9hG4bKfo3", "fo3@x"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 100 Trying", toUAS+"INVITE "+carrierURI+" SIP/2.0")
	if msgs[1].l.Proto != transport.TCP {
		t.Fatalf("sent over %v, want TCP (NAPTR SIP+D2T)", msgs[1].l.Proto)
	}
	h.snd.lost(msgs[1], syscall.ECONNREFUSED)
	m2 := h.snd.take()
	h.only(m2, toUA2+"INVITE "+carrierURI+" SIP/2.0")
	if m2[0].tag == msgs[1].tag {
		t.Fatal("same send-failure tag for both attempts")
	}
	h.snd.lost(msgs[1], syscall.ECONNREFUSED) // stale
	h.only(h.snd.take())
	h.inProto(uas2Addr, transport.TCP, respond(m2[0].data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// Targets outside Config.AllowOutbound are never sent to: the branch goes
// to the next one, and the refusal is counted.
func TestFailoverAllowList(t *testing.T) {
	z := dnstest.NewZone(t,
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 20, 0, 5090, "b.carrier.test"),
		dnstest.A("a.carrier.test", 300, "192.0.2.10"), // documentation range: outside the allow-list
		dnstest.A("b.carrier.test", 300, "127.0.0.1"),
	)
	h := carrierHarness(t, z)
	errs := h.core.Stats().SendErrors
	h.in(uacAddr, request("MESSAGE", "z9hG4bKfo4", "fo4@x", carrierURI, ""))
	msgs := h.snd.take()
	h.only(msgs, toUA2+"MESSAGE "+carrierURI+" SIP/2.0")
	if got := h.core.Stats().SendErrors; got != errs+1 {
		t.Fatalf("send errors %d -> %d", errs, got)
	}

	// Every target outside: 503 for the branch, 500 upstream, nothing sent
	// anywhere else.
	z.Reset(dnstest.A("pbx.test", 300, "192.0.2.11"))
	h.in(uacAddr, request("MESSAGE", "z9hG4bKfo5", "fo5@x", "sip:x@pbx.test", ""))
	var out []sentMsg
	for i := 0; i < 200 && len(out) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		out = h.snd.take()
	}
	h.only(out, toUAC+"SIP/2.0 500 Server Internal Error")
}

// At most MaxAttempts targets are tried; then the branch ends (408 here,
// every target silent) and the failure handling runs once. The request is
// a MESSAGE: upstream gets the 100 of RFC 4320 §4.1 and no 408 (§4.2).
func TestFailoverBounded(t *testing.T) {
	var rrs []dnstest.RR
	for i := 0; i < 6; i++ {
		rrs = append(rrs, dnstest.SRV("_sip._udp.carrier.test", 300, 10+i, 0, 5101+i, "a.carrier.test"))
	}
	z := dnstest.NewZone(t, append(rrs, dnstest.A("a.carrier.test", 300, "127.0.0.1"))...)
	h := carrierHarness(t, z)
	var failures []int
	h.rt.failure = func(r *Request, best *parser.Message) { failures = append(failures, best.StatusCode()) }
	h.in(uacAddr, request("MESSAGE", "z9hG4bKfo6", "fo6@x", carrierURI, ""))
	var all []sentMsg
	for i := 0; i < 6*40; i++ {
		all = append(all, h.snd.take()...)
		h.advance(time.Second)
	}
	all = append(all, h.snd.take()...)
	tried := map[netip.AddrPort]bool{}
	var final []string
	for _, m := range all {
		if strings.HasPrefix(m.data, "MESSAGE ") {
			tried[m.dst] = true
		} else if m.dst == uacAddr {
			final = append(final, firstLines([]sentMsg{m})[0])
		}
	}
	if len(tried) != MaxAttempts {
		t.Fatalf("tried %d targets, want %d: %v", len(tried), MaxAttempts, tried)
	}
	for i := 0; i < MaxAttempts; i++ {
		if !tried[netip.MustParseAddrPort("127.0.0.1:"+strconv.Itoa(5101+i))] {
			t.Fatalf("target %d (priority order) not tried: %v", i, tried)
		}
	}
	if len(failures) != 1 || failures[0] != 408 || len(final) != 1 || final[0] != toUAC+"SIP/2.0 100 Trying" {
		t.Fatalf("failures %v, upstream %v", failures, final)
	}
}

// A branch that had a provisional response, or was canceled, does not
// move: timer C / CANCEL behave as before.
func TestFailoverNotAfterCancel(t *testing.T) {
	z := twoTargetZone(t)
	h := carrierHarness(t, z)
	inv := carrierInvite("z9hG4bKfo7", "fo7@x")
	h.in(uacAddr, inv)
	h.snd.take()
	cancel := strings.Replace(strings.Replace(inv, "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1)
	h.in(uacAddr, cancel)
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
	h.advance(33 * time.Second)
	if inv := invitesTo(h.snd.take()); len(inv[uas2Addr]) != 0 {
		t.Fatal("a canceled branch failed over")
	}
}

// The asynchronous path: nothing cached, the branch waits for DNS, then
// fails over on a send error.
func TestFailoverAfterAsyncResolution(t *testing.T) {
	z := twoTargetZone(t)
	h := newHarness(t, func(c *Config) { c.Resolver = sipdns.New(sipdns.Config{Server: z.Addr, Timeout: 2 * time.Second}) })
	h.snd.mu.Lock()
	h.snd.fail = map[netip.AddrPort]error{uasAddr: syscall.ENETUNREACH}
	h.snd.mu.Unlock()
	h.in(uacAddr, request("MESSAGE", "z9hG4bKfo8", "fo8@x", carrierURI, ""))
	var msgs []sentMsg
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		msgs = h.snd.take()
	}
	h.only(msgs, toUA2+"MESSAGE "+carrierURI+" SIP/2.0")
	h.in(uas2Addr, respond(msgs[0].data, 200, "b"))
	h.only(h.snd.take(), toUAC+"SIP/2.0 200 OK")
}

// End to end over real sockets: NAPTR prefers TCP, whose SRV target is a
// closed port on 127.0.0.1; the connect fails, the branch moves to the
// UDP target (the next NAPTR record), a UAS that answers 200.
func TestFailoverEndToEnd(t *testing.T) {
	dead := freePort(t, "tcp")
	uas, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	uasPort := uas.LocalAddr().(*net.UDPAddr).Port
	go func() {
		buf := make([]byte, 8192)
		for {
			n, src, err := uas.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m parser.Message
			if m.Parse(buf[:n]) != nil || !m.IsRequest() || m.Method() != parser.MethodInvite {
				continue
			}
			uas.WriteToUDP(parser.AppendResponse(nil, &m, 200, nil, []byte("uas")), src)
		}
	}()
	z := dnstest.NewZone(t,
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 20, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, dead, "dead.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, uasPort, "live.carrier.test"),
		dnstest.A("dead.carrier.test", 300, "127.0.0.1"),
		dnstest.A("live.carrier.test", 300, "127.0.0.1"),
	)
	p := startProxy(t, func(c *Config) { c.Resolver = sipdns.New(sipdns.Config{Server: z.Addr, Timeout: 2 * time.Second}) })
	uac, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uac.Close()
	me := uac.LocalAddr().(*net.UDPAddr).AddrPort()
	inv := "INVITE " + carrierURI + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + me.String() + ";branch=z9hG4bKfoe2e;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:caller@127.0.0.1>;tag=c1\r\n" +
		"To: <" + carrierURI + ">\r\n" +
		"Call-ID: foe2e@127.0.0.1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:caller@" + me.String() + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	start := time.Now()
	if _, err := uac.WriteToUDP([]byte(inv), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.udpPort}); err != nil {
		t.Fatal(err)
	}
	uac.SetReadDeadline(start.Add(5 * time.Second))
	buf := make([]byte, 8192)
	final := ""
	for final == "" {
		n, err := uac.Read(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 1") {
			final = line
		}
	}
	if final != "SIP/2.0 200 OK" {
		t.Fatalf("final response %q, want 200 from the second target", final)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v: the fail-over waited for a timer", d)
	}
	p.router.mu.Lock()
	defer p.router.mu.Unlock()
	if len(p.router.failures) != 0 {
		t.Fatalf("failure route ran: %v", p.router.failures)
	}
}
