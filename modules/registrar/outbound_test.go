package registrar

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// RFC 5626 outbound against real sockets: the registrar inside a real
// transaction core on a real transport (TCP and UDP on loopback), phones
// as TCP connections, a caller on UDP.

type flowServer struct {
	t    *testing.T
	tr   *transport.Transport
	tcp  netip.AddrPort
	udp  netip.AddrPort
	core *txn.Core
}

func newFlowServer(t *testing.T, cfg Config) *flowServer {
	t.Helper()
	clock := shards.NewClock()
	t.Cleanup(clock.Stop)
	cfg.Clock = clock
	reg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	routes := &routing.Routes{
		Request: func(c *routing.Ctx) {
			if c.IsMethod(parser.MethodRegister) {
				reg.SaveWith(c, SaveOptions{Authenticated: true})
				return
			}
			if c.LooseRoute() {
				c.Relay()
				return
			}
			c.RecordRoute()
			if !reg.Lookup(c) {
				if reg.FlowFailed(c) {
					c.Reply(430, "Flow Failed")
					return
				}
				c.Reply(480, "")
				return
			}
			c.Relay()
		},
		Branch:  func(c *routing.Ctx, b *routing.Branch) { reg.BranchRoute(c, b) },
		Failure: func(c *routing.FailureCtx) { reg.NextContacts(c) },
	}
	rs := routing.RouteSet{Name: "outbound-test", New: func(*routing.Env) (*routing.Routes, error) { return routes, nil }}
	rt, err := routing.NewRouter(rs, &routing.Env{Domains: routing.NewDomains([]string{"example.com"})})
	if err != nil {
		t.Fatal(err)
	}
	s := &flowServer{t: t}
	tr, err := transport.New(transport.Config{Listeners: []transport.ListenerConfig{
		{Proto: transport.UDP, Addr: "127.0.0.1:0"}, {Proto: transport.TCP, Addr: "127.0.0.1:0"},
	}}, transport.HandlerFunc(func(p *transport.Packet) { s.core.HandleMessage(p) }))
	if err != nil {
		t.Fatal(err)
	}
	s.core, err = txn.New(txn.Config{Sender: tr, Listeners: tr, Router: rt, Clock: clock,
		AllowOutbound: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close(); s.core.Close() })
	s.tr = tr
	for _, l := range tr.Listeners() {
		if l.Proto == transport.TCP {
			s.tcp = l.Local
		} else {
			s.udp = l.Local
		}
	}
	return s
}

// phone is a TCP connection to the server.
type phone struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (s *flowServer) dial() *phone {
	c, err := net.Dial("tcp", s.tcp.String())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &phone{t: s.t, c: c, r: bufio.NewReader(c)}
}

func (p *phone) send(msg string) {
	if _, err := p.c.Write([]byte(msg)); err != nil {
		p.t.Fatal(err)
	}
}

// read returns the next SIP message on the connection ("" on timeout).
func (p *phone) read(d time.Duration) string {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(d))
	var head strings.Builder
	cl := 0
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			return ""
		}
		if line == "\r\n" && head.Len() == 0 {
			continue
		}
		head.WriteString(line)
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(p.r, body); err != nil {
		return ""
	}
	return head.String() + string(body)
}

// readRequest skips responses (100 Trying) up to the first request.
func (p *phone) readRequest(d time.Duration) string {
	p.t.Helper()
	for {
		m := p.read(d)
		if m == "" || !strings.HasPrefix(m, "SIP/2.0 ") {
			return m
		}
	}
}

const obInstance = `;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"`

func tcpRegister(p *phone, callID string, cseq int, regID int, extra string) string {
	local := p.c.LocalAddr().String()
	return "REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-ob" + callID + itoa(cseq) + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=ob" + itoa(cseq) + "\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: " + itoa(cseq) + " REGISTER\r\n" +
		"Supported: path, outbound\r\n" +
		// An address nothing could reach: only the flow leads to the phone.
		"Contact: <sip:alice@192.0.2.10:5999;transport=tcp;ob>" + obInstance + ";reg-id=" + itoa(regID) + "\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

// caller is a UDP socket placing calls through the server.
type caller struct {
	t *testing.T
	c *net.UDPConn
	n int
}

func (s *flowServer) caller() *caller {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &caller{t: s.t, c: c}
}

// call sends an INVITE for alice@example.com to the server and returns
// its Call-ID.
func (cl *caller) call(server netip.AddrPort) string {
	cl.n++
	callID := "call-" + itoa(cl.n) + "@" + cl.c.LocalAddr().String()
	msg := "INVITE sip:alice@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + cl.c.LocalAddr().String() + ";branch=z9hG4bK-call" + itoa(cl.n) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:carol@example.com>;tag=c" + itoa(cl.n) + "\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:carol@" + cl.c.LocalAddr().String() + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := cl.c.WriteToUDPAddrPort([]byte(msg), server); err != nil {
		cl.t.Fatal(err)
	}
	return callID
}

// final returns the first final response the caller gets ("" on timeout).
func (cl *caller) final(d time.Duration) string {
	buf := make([]byte, 65536)
	cl.c.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := cl.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return ""
		}
		if m := string(buf[:n]); strings.HasPrefix(m, "SIP/2.0 ") && !strings.HasPrefix(m, "SIP/2.0 1") {
			return m
		}
	}
}

func hdr(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestOutboundFlow: a phone registering with outbound over TCP gets
// "Require: outbound" and the Flow-Timer; a call to it goes over its
// connection (its Contact names an unreachable address) with the
// Record-Route facing it carrying its flow token; a new flow of the same
// instance and reg-id replaces the old one; once the connection closes the
// call gets 430 Flow Failed.
func TestOutboundFlow(t *testing.T) {
	s := newFlowServer(t, Config{FlowTimer: 120 * time.Second})
	a1 := s.dial()
	a1.send(tcpRegister(a1, "ob-reg-1", 1, 1, ""))
	resp := a1.read(5 * time.Second)
	if statusOf(resp) != "200 OK" || hdr(resp, "Require") != "outbound" || hdr(resp, "Flow-Timer") != "120" {
		t.Fatalf("REGISTER answered:\n%s", resp)
	}

	cl := s.caller()
	cl.call(s.udp)
	inv := a1.readRequest(5 * time.Second)
	if !strings.HasPrefix(inv, "INVITE sip:alice@192.0.2.10:5999;transport=tcp;ob SIP/2.0") {
		t.Fatalf("INVITE not over the flow:\n%s", inv)
	}
	if rr := hdr(inv, "Record-Route"); !strings.Contains(rr, ";transport=tcp;lr;flow=") {
		t.Fatalf("Record-Route %q: want the flow's token on top", rr)
	}
	a1.send(responseTo(t, inv, 486, "Busy Here"))
	if f := cl.final(5 * time.Second); statusOf(f) != "486 Busy Here" {
		t.Fatalf("caller got %q", f)
	}
	if ack := a1.readRequest(5 * time.Second); !strings.HasPrefix(ack, "ACK ") {
		t.Fatalf("no ACK over the flow: %q", ack)
	}

	// The phone opens a new flow for the same instance and reg-id: it
	// replaces the first, which stays open but is not used.
	a2 := s.dial()
	a2.send(tcpRegister(a2, "ob-reg-1", 2, 1, ""))
	if resp := a2.read(5 * time.Second); statusOf(resp) != "200 OK" || len(contacts(resp)) != 1 {
		t.Fatalf("REGISTER on the new flow answered:\n%s", resp)
	}
	cl.call(s.udp)
	inv = a2.readRequest(5 * time.Second)
	if !strings.HasPrefix(inv, "INVITE ") {
		t.Fatalf("INVITE not over the new flow: %q", inv)
	}
	if m := a1.readRequest(200 * time.Millisecond); m != "" {
		t.Fatalf("the replaced flow got:\n%s", m)
	}
	a2.send(responseTo(t, inv, 486, "Busy Here"))
	cl.final(5 * time.Second)
	a2.readRequest(5 * time.Second) // the ACK

	// The flow closes: the next call gets 430, and nothing reaches the
	// old flow either.
	// (Once the server has seen it close: an INVITE written into a
	// connection the peer has just closed is lost like on any network,
	// and the caller would wait for timer B.)
	open := s.tr.Stats().ConnsOpen
	a2.c.Close()
	for deadline := time.Now().Add(5 * time.Second); s.tr.Stats().ConnsOpen != open-1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server still counts %d connections", s.tr.Stats().ConnsOpen)
		}
	}
	cl.call(s.udp)
	if f := cl.final(5 * time.Second); statusOf(f) != "430 Flow Failed" {
		t.Fatalf("after the flow closed the caller got %q", f)
	}
	if m := a1.readRequest(100 * time.Millisecond); m != "" {
		t.Fatalf("the replaced flow got:\n%s", m)
	}
}

// TestOutboundNotDone: outbound is not done over UDP (no STUN keep-alive)
// or behind an edge proxy whose Path has no ";ob": the 200 does not say
// "Require: outbound", and a phone that requires it gets 439. A Path with
// ";ob" gets it, without Flow-Timer (the edge proxy keeps the flow).
func TestOutboundNotDone(t *testing.T) {
	h := newHarness(t, Config{FlowTimer: 120 * time.Second})
	ob := `Contact: <sip:alice@127.0.0.1:5062;ob>` + obInstance + ";reg-id=1\r\n"
	resp := h.request("127.0.0.1:5062", register("alice", "nd1", 1, ob))
	if statusOf(resp) != "200 OK" || hdr(resp, "Require") != "" || hdr(resp, "Flow-Timer") != "" {
		t.Fatalf("over UDP:\n%s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("alice", "nd1", 2, ob+"Require: outbound\r\n"))
	if statusOf(resp) != "439 First Hop Lacks Outbound Support" {
		t.Fatalf("Require: outbound over UDP:\n%s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("alice", "nd2", 1, ob+"Path: <sip:edge.example.net;lr>\r\nRequire: outbound\r\n"))
	if statusOf(resp) != "439 First Hop Lacks Outbound Support" {
		t.Fatalf("Path without ob:\n%s", resp)
	}
	resp = h.request("127.0.0.1:5062", register("alice", "nd3", 1, ob+"Path: <sip:127.0.0.1:5090;lr;ob>\r\n"))
	if statusOf(resp) != "200 OK" || hdr(resp, "Require") != "outbound" || hdr(resp, "Flow-Timer") != "" {
		t.Fatalf("Path with ob:\n%s", resp)
	}
}
