package txn

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// A response never goes back to one of our own listeners unless it answers
// a request we sent ourselves (a spiral): neither a response without
// transaction whose next Via is ours again, nor the answers to a request
// whose source was spoofed to be our own address.

// TestResponseLoopDropped: the next Via of an unmatched response is ours,
// by sent-by or by received/rport: dropped and counted, nothing sent.
func TestResponseLoopDropped(t *testing.T) {
	h := newHarness(t, nil)
	resp := func(second string) string {
		return "SIP/2.0 200 OK\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours1\r\n" +
			"Via: " + second + "\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKuac\r\n" +
			"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\n" +
			"Call-ID: rl@x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	}
	for i, second := range []string{
		"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours2",
		"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKours3", // default port 5060
		"SIP/2.0/UDP 192.0.2.7:5999;received=127.0.0.1;rport=5060;branch=z9hG4bKnat",
		"SIP/2.0/UDP 0.0.0.0:5060;branch=z9hG4bKany",
	} {
		h.in(uasAddr, resp(second))
		h.only(h.snd.take())
		if n := h.core.Stats().ResponseLoops; n != uint64(i+1) {
			t.Fatalf("%s: ResponseLoops = %d, want %d", second, n, i+1)
		}
	}
	// The next Via elsewhere, but a branch on top we never made: not
	// ours to forward (TestUnsolicitedResponseNotRelayed).
	h.in(uasAddr, resp("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKother"))
	h.only(h.snd.take())
	if s := h.core.Stats(); s.Stateless != 0 || s.ResponseLoops != 4 || s.ForgedResponses != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestSpoofedOwnSourceDropped: requests whose answers would go to our own
// listener and that we did not send are dropped whole: not relayed, not
// answered (statefully or statelessly), and counted.
func TestSpoofedOwnSourceDropped(t *testing.T) {
	h := newHarness(t, nil)
	relayed := 0
	h.rt.request = func(r *Request) { relayed++; r.Relay() }
	spoofed := []struct {
		name string
		src  string
		msg  string
	}{
		{"rport to our own address", "127.0.0.1:5060",
			strings.Replace(request("MESSAGE", "z9hG4bKsp1", "sp1@x", "sip:bob@127.0.0.1:5080", ""), "branch=z9hG4bKsp1", "branch=z9hG4bKsp1;rport", 1)},
		{"Via port ours, source address ours", "127.0.0.1:40000",
			strings.Replace(invite("z9hG4bKsp2", "sp2@x"), "127.0.0.1:5070;", "127.0.0.1:5060;", 1)},
		{"our Via copied, no transaction of ours", "127.0.0.1:5060",
			strings.Replace(request("MESSAGE", "z9hG4bKsp3", "sp3@x", "sip:bob@127.0.0.1:5080", ""),
				"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsp3",
				"Via: SIP/2.0/UDP 127.0.0.1:5060;branch="+string(h.core.prefix[:])+"0000000000000000000000000000000000", 1)},
		{"stateless refusal (Proxy-Require)", "127.0.0.1:5060",
			strings.Replace(request("OPTIONS", "z9hG4bKsp4", "sp4@x", "sip:bob@127.0.0.1:5080", "Proxy-Require: foo"), "z9hG4bKsp4", "z9hG4bKsp4;rport", 1)},
		{"CANCEL", "127.0.0.1:5060",
			strings.Replace(strings.Replace(invite("z9hG4bKsp5;rport", "sp5@x"), "INVITE sip", "CANCEL sip", 1), "1 INVITE", "1 CANCEL", 1)},
		{"malformed", "127.0.0.1:5060",
			strings.Replace(request("MESSAGE", "z9hG4bKsp6", "sp6@x", "sip:bob@127.0.0.1:5080", ""), "CSeq: 1 MESSAGE", "CSeq: x MESSAGE", 1)},
	}
	for i, c := range spoofed {
		h.in(netip.MustParseAddrPort(c.src), c.msg)
		h.only(h.snd.take())
		if n := h.core.Stats().ResponseLoops; n != uint64(i+1) {
			t.Fatalf("%s: ResponseLoops = %d, want %d", c.name, n, i+1)
		}
	}
	h.advance(64 * time.Second)
	h.only(h.snd.take())
	if relayed != 0 || h.core.Stats().Transactions != 0 {
		t.Fatalf("relayed %d, %d transactions", relayed, h.core.Stats().Transactions)
	}
	// The same requests from their real source are handled as usual.
	h.in(uacAddr, request("MESSAGE", "z9hG4bKsp1", "sp1@x", "sip:bob@127.0.0.1:5080", ""))
	h.only(h.snd.take(), toUAS+"MESSAGE sip:bob@127.0.0.1:5080 SIP/2.0")
}

// TestSpiralAnswersOurselves: a request we relay to ourselves comes back
// from our own address, and its answers do go to us: a spiral's 200 and a
// loop's 482 reach the first pass, which forwards them upstream.
func TestSpiralAnswersOurselves(t *testing.T) {
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		var u parser.URI
		u.Parse(r.Msg.RequestURI())
		switch string(u.User) {
		case "bob": // first pass: to carol, on this proxy
			r.SetRequestURI([]byte("sip:carol@127.0.0.1:5060"))
		case "carol": // second pass: carol is at the UAS
			r.SetRequestURI([]byte("sip:carol@127.0.0.1:5080"))
		}
		r.Relay() // "dave" is relayed to ourselves unchanged: a loop
	}
	// back delivers what was sent to our own address, from it, until
	// nothing more is, and returns what was sent elsewhere.
	back := func(msgs []sentMsg) []sentMsg {
		var out []sentMsg
		for len(msgs) > 0 {
			for _, m := range msgs {
				if m.dst == proxyAddr {
					h.in(proxyAddr, m.data)
				} else {
					out = append(out, m)
				}
			}
			msgs = h.snd.take()
		}
		return out
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKspi", "spi@x", "sip:bob@127.0.0.1:5060", ""))
	msgs := back(h.snd.take())
	h.only(msgs, toUAS+"MESSAGE sip:carol@127.0.0.1:5080 SIP/2.0")
	if n := len(headers(msgs[0].data, "Via")); n != 3 {
		t.Fatalf("%d Vias after the spiral, want 3", n)
	}
	h.in(uasAddr, respond(msgs[0].data, 200, "c"))
	h.only(back(h.snd.take()), toUAC+"SIP/2.0 200 OK")

	h.in(uacAddr, request("MESSAGE", "z9hG4bKloop", "loop@x", "sip:dave@127.0.0.1:5060", ""))
	h.only(back(h.snd.take()), toUAC+"SIP/2.0 482 Loop Detected")
	if n := h.core.Stats().ResponseLoops; n != 0 {
		t.Fatalf("ResponseLoops = %d for a spiral and a loop of our own", n)
	}
}

// TestResponseLoopOverSockets is the reported case on the real transport:
// one response carrying 1,000 Vias of the proxy's own address, then the
// Via of a listener that counts what reaches it. The proxy handles it
// once and drops it; nothing reaches the listener.
func TestResponseLoopOverSockets(t *testing.T) {
	p := startProxy(t, nil)
	target, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	var got atomic.Int32
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := target.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	// 1,000 values on 20 lines (a message has at most parser.MaxHeaders
	// lines), 29 KB as reported.
	own := "SIP/2.0/UDP 127.0.0.1:" + strconv.Itoa(p.udpPort)
	for line := 0; line < 20; line++ {
		b.WriteString("Via: " + own)
		for i := 1; i < 50; i++ {
			b.WriteString(", " + own)
		}
		b.WriteString("\r\n")
	}
	b.WriteString("Via: SIP/2.0/UDP " + target.LocalAddr().String() + ";branch=z9hG4bKtarget\r\n")
	b.WriteString("From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: loop1000@x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
	if b.Len() < 29000 {
		t.Fatalf("response is %d bytes", b.Len())
	}
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(p.udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.core.Stats().ResponseLoops == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // would-be hops have time to happen
	s := p.core.Stats()
	if s.ResponseLoops != 1 || s.Responses != 1 || s.Stateless != 0 {
		t.Fatalf("responses handled %d, dropped as loops %d, forwarded %d; want 1, 1, 0", s.Responses, s.ResponseLoops, s.Stateless)
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the listener behind the loop received %d packets", n)
	}
}

// TestOwnAddrWildcardListener: a listener on 0.0.0.0 receives what is sent
// on its port to loopback, to any address of the host's interfaces, to the
// unspecified address and to its advertised address; other addresses and
// ports are not ours.
func TestOwnAddrWildcardListener(t *testing.T) {
	l := &transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("0.0.0.0:5060"), AdvertisedHost: "192.0.2.10", AdvertisedPort: 5060}
	snd := &recSender{ls: []*transport.Listener{l}}
	c, err := New(Config{Sender: snd, Listeners: snd, Router: &funcRouter{}, Clock: shards.NewManualClock(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	own := []string{"127.0.0.1:5060", "127.0.0.53:5060", "0.0.0.0:5060", "192.0.2.10:5060", "[::ffff:127.0.0.1]:5060"}
	if ifas, err := net.InterfaceAddrs(); err == nil {
		for _, ifa := range ifas {
			if p, err := netip.ParsePrefix(ifa.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
				own = append(own, netip.AddrPortFrom(p.Addr(), 5060).String())
			}
		}
	}
	for _, a := range own {
		if !c.isOwnAddr(netip.MustParseAddrPort(a)) {
			t.Errorf("%s is not recognised as ours", a)
		}
	}
	for _, a := range []string{"192.0.2.11:5060", "127.0.0.1:5061", "198.51.100.7:5060"} {
		if slices.Contains(own, a) {
			continue // this machine has that address
		}
		if c.isOwnAddr(netip.MustParseAddrPort(a)) {
			t.Errorf("%s is taken for ours", a)
		}
	}
}

// TestSendsToUsAndSpiral: what a registrar asks before storing a contact
// and before forking a lookup. SendsToUs: a host and port that reach one of
// our listeners (bound, wildcard, advertised, by name or address, the
// transport's default port); another port or host is not us. Spiral: a
// Via of ours anywhere in the request (our branch prefix and a listener
// as sent-by), not one with another prefix or sent-by.
func TestSendsToUsAndSpiral(t *testing.T) {
	l := &transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("0.0.0.0:5060"), AdvertisedHost: "sip.example.net", AdvertisedPort: 5060}
	tl := &transport.Listener{Proto: transport.TLS, Local: netip.MustParseAddrPort("192.0.2.10:5061"), AdvertisedHost: "192.0.2.10", AdvertisedPort: 5061}
	snd := &recSender{ls: []*transport.Listener{l, tl}}
	c, err := New(Config{Sender: snd, Listeners: snd, Router: &funcRouter{}, Clock: shards.NewManualClock(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &Request{c: c}
	for _, tc := range []struct {
		host  string
		port  int
		proto transport.Proto
		us    bool
	}{
		{"127.0.0.1", 0, transport.UDP, true},
		{"127.0.0.1", 5060, transport.TCP, true},
		{"[::ffff:127.0.0.1]", 5060, transport.UDP, true},
		{"sip.example.net", 0, transport.UDP, true},
		{"SIP.example.NET", 5060, transport.UDP, true},
		{"192.0.2.10", 0, transport.TLS, true},
		{"192.0.2.10", 5061, transport.UDP, true},
		{"127.0.0.1", 5062, transport.UDP, false},
		{"127.0.0.1", 0, transport.TLS, false}, // 5061: only 192.0.2.10 has it
		{"sip.example.net", 5070, transport.UDP, false},
		{"other.example.net", 0, transport.UDP, false},
		{"198.51.100.7", 0, transport.UDP, false},
	} {
		if got := r.SendsToUs([]byte(tc.host), tc.port, tc.proto); got != tc.us {
			t.Errorf("SendsToUs(%s, %d, %v) = %v", tc.host, tc.port, tc.proto, got)
		}
	}
	ours := "SIP/2.0/UDP sip.example.net:5060;branch=" + c.BranchPrefix() + "0123456789abcdef0123456789abcdef00"
	for _, tc := range []struct {
		vias   []string
		spiral bool
	}{
		{[]string{"SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKphone"}, false},
		{[]string{ours, "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKphone"}, true},
		{[]string{"SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKother", ours, "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKphone"}, true},
		{[]string{"SIP/2.0/UDP sip.example.net:5060;branch=z9hG4bKnotours0123456789abcdef0123456789"}, false},
		{[]string{strings.Replace(ours, "sip.example.net:5060", "203.0.113.5:5060", 1)}, false},
	} {
		msg := "INVITE sip:alice@example.com SIP/2.0\r\n"
		for _, v := range tc.vias {
			msg += "Via: " + v + "\r\n"
		}
		msg += "Max-Forwards: 70\r\nFrom: <sip:m@example.org>;tag=1\r\nTo: <sip:alice@example.com>\r\n" +
			"Call-ID: sp@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
		var m parser.Message
		if err := m.Parse([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		r.Msg = &m
		if got := r.Spiral(); got != tc.spiral {
			t.Errorf("Spiral with Vias %q = %v", tc.vias, got)
		}
	}
}
