package registrar

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

// pings records what the registrar hands its keepalive.
type pings struct {
	mu  sync.Mutex
	got []pingRec
}

type pingRec struct {
	at           int64
	aor, contact string
	proto        transport.Proto
	dst, socket  netip.AddrPort
	id           BindingID
}

func (p *pings) ping(clock func() int64) func(*KeepaliveTarget) {
	return func(t *KeepaliveTarget) {
		p.mu.Lock()
		p.got = append(p.got, pingRec{clock(), string(t.AOR), string(t.Contact), t.Proto, t.Dst, t.Socket, t.ID})
		p.mu.Unlock()
	}
}

func (p *pings) take() []pingRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.got
	p.got = nil
	return g
}

// saveNAT makes the harness save REGISTERs as authenticated with
// SaveOptions.NAT set as nat says.
func saveNAT(h *harness, nat bool) {
	h.inRoute = func(c *routing.Ctx) {
		if c.IsMethod(parser.MethodRegister) {
			h.reg.SaveWith(c, SaveOptions{Authenticated: true, NAT: nat})
			return
		}
		if !h.reg.Lookup(c) {
			c.Reply(480, "")
			return
		}
		c.Relay()
	}
}

// TestSaveNATOption: a REGISTER the route found behind NAT (fix_nated_register)
// has its contacts reached at its source even when no registrar test holds
// (the contact is a public-looking address and the Via matches the
// source); the binding keeps the packet's source, which no header can
// change; with Path it is stored as registered (the edge faces the NAT).
func TestSaveNATOption(t *testing.T) {
	h := newHarness(t, Config{})
	saveNAT(h, true)
	dst, ruri, nat, _ := natCase(t, h, "fixed", "127.0.0.1:5062", "sip:u@127.0.0.3:7000", nil)
	if !nat || dst != "127.0.0.1:5062" || ruri != "sip:u@127.0.0.3:7000" {
		t.Fatalf("NAT option: nat=%v, INVITE %s to %s", nat, ruri, dst)
	}
	// A forged received parameter or Via received says nothing: the
	// stored address is the packet's source.
	forged := func(m string) string {
		m = replaceOnce(m, ";rport\r\n", ";rport=9;received=198.51.100.66\r\n")
		return replaceOnce(m, "Contact: <sip:u@127.0.0.4:7000>", `Contact: <sip:u@127.0.0.4:7000>;received="sip:198.51.100.66:5060"`)
	}
	dst, _, _, _ = natCase(t, h, "forged", "127.0.0.1:5063", "sip:u@127.0.0.4:7000", forged)
	if l := h.reg.List("forged@example.com"); dst != "127.0.0.1:5063" || len(l) != 1 || l[0].Received != "udp:127.0.0.1:5063" {
		t.Fatalf("forged received: INVITE to %s, stored %+v", dst, l)
	}
	// Path: stored as registered, not marked.
	path := func(m string) string {
		return replaceOnce(m, "Contact:", "Path: <sip:127.0.0.7:5070;lr>\r\nContact:")
	}
	dst, _, nat, _ = natCase(t, h, "pathed", "127.0.0.1:5062", "sip:u@192.168.1.10:5060", path)
	if nat || dst != "127.0.0.7:5070" {
		t.Fatalf("with Path: nat=%v, INVITE to %s", nat, dst)
	}
	// Without the option the registrar's own tests decide.
	saveNAT(h, false)
	if _, _, nat, _ := natCase(t, h, "plain", "127.0.0.1:5062", "sip:u@127.0.0.3:7000", nil); nat {
		t.Fatal("no test holds and no NAT option, yet marked")
	}
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

// TestKeepaliveSchedule: a NATed UDP binding is handed to the keepalive
// once per interval, with the REGISTER's source and listener; bindings
// not behind NAT, over TCP, expired or removed are not; a binding
// registered again gets its new address.
func TestKeepaliveSchedule(t *testing.T) {
	h := newHarness(t, Config{MinExpires: time.Second})
	h.authenticated = true
	var p pings
	h.reg.SetKeepalive(10*time.Second, p.ping(h.clock.Now))

	h.request("127.0.0.1:40000", register("nat", "k1", 1, "Contact: <sip:nat@192.168.1.10:5060>\r\nExpires: 35\r\n"))
	h.request("127.0.0.1:5062", register("direct", "k2", 1, "Contact: <sip:direct@127.0.0.1:5062>\r\n"))
	tcp := register("tcp", "k3", 1, "Contact: <sip:tcp@192.168.1.11:5060;transport=tcp>\r\n")
	h.core.HandleMessage(&transport.Packet{Data: []byte(tcp), Src: netip.MustParseAddrPort("127.0.0.1:40001"), Listener: &h.l, Proto: transport.TCP})
	if l := h.reg.List(""); len(l) != 3 {
		t.Fatalf("registered %+v", l)
	}
	var first []pingRec
	for i := 0; i < 10; i++ {
		h.clock.Advance(time.Second)
		first = append(first, p.take()...)
	}
	if len(first) != 1 {
		t.Fatalf("first interval: %d pings %+v", len(first), first)
	}
	g := first[0]
	if g.aor != "nat@example.com" || g.contact != "sip:nat@192.168.1.10:5060" || g.proto != transport.UDP ||
		g.dst.String() != "127.0.0.1:40000" || g.socket != h.l.Local {
		t.Fatalf("ping %+v", g)
	}
	// Every interval after, at the same phase.
	for round := 1; round <= 2; round++ {
		for i := 0; i < 10; i++ {
			h.clock.Advance(time.Second)
		}
		got := p.take()
		if len(got) != 1 || got[0].at != g.at+int64(round)*10_000 {
			t.Fatalf("round %d: %+v (first at %d)", round, got, g.at)
		}
	}
	// Registered again from another port: the next ping goes there.
	h.request("127.0.0.1:40002", register("nat", "k1", 2, "Contact: <sip:nat@192.168.1.10:5060>\r\nExpires: 35\r\n"))
	h.clock.Advance(10 * time.Second)
	if got := p.take(); len(got) != 1 || got[0].dst.String() != "127.0.0.1:40002" {
		t.Fatalf("after re-registration: %+v", got)
	}
	// Unregistered: no more pings.
	h.request("127.0.0.1:40002", register("nat", "k1", 3, "Contact: <sip:nat@192.168.1.10:5060>\r\nExpires: 0\r\n"))
	h.clock.Advance(30 * time.Second)
	if got := p.take(); len(got) != 0 {
		t.Fatalf("after unregistration: %+v", got)
	}
	// Expired: none either.
	h.request("127.0.0.1:40003", register("brief", "k4", 1, "Contact: <sip:brief@10.0.0.9:5060>\r\nExpires: 5\r\n"))
	h.clock.Advance(30 * time.Second)
	for _, g := range p.take() {
		if g.at > h.clock.Now()-25_000 {
			t.Fatalf("an expired binding was pinged: %+v", g)
		}
	}
	// Stopped: nothing.
	h.request("127.0.0.1:40004", register("late", "k5", 1, "Contact: <sip:late@10.0.0.9:5060>\r\n"))
	h.reg.SetKeepalive(0, nil)
	h.clock.Advance(30 * time.Second)
	if got := p.take(); len(got) != 0 {
		t.Fatalf("after SetKeepalive(0): %+v", got)
	}
}

// TestKeepaliveSpread: phones that register at the same moment are pinged
// spread over the interval, not in one burst.
func TestKeepaliveSpread(t *testing.T) {
	h := newHarness(t, Config{})
	h.authenticated = true
	var p pings
	h.reg.SetKeepalive(10*time.Second, p.ping(h.clock.Now))
	const phones = 200
	for i := 0; i < phones; i++ {
		u := "p" + itoa(i)
		h.request("127.0.0.1:"+itoa(20000+i), register(u, "s"+u, 1, "Contact: <sip:"+u+"@192.168.1.10:5060>\r\n"))
	}
	start := h.clock.Now()
	var perSecond [10]int
	for i := 0; i < 10; i++ {
		h.clock.Advance(time.Second)
		for _, g := range p.take() {
			perSecond[(g.at-start-1)/1000]++
		}
	}
	total := 0
	for s, n := range perSecond {
		total += n
		if n > 2*phones/10 {
			t.Errorf("second %d: %d pings of %d (a burst)", s, n, phones)
		}
	}
	if total != phones {
		t.Fatalf("%d pings in the first interval, want %d: %v", total, phones, perSecond)
	}
}

// TestKeepaliveFailures: unanswered pings are counted per binding, an
// answer starts the count again, a failure of the old address says
// nothing once the phone registered from another one, and
// RemoveUnreachable takes the binding out of memory and the store once it
// failed enough.
func TestKeepaliveFailures(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := st.NewLocationWriter(store.WriterOptions{})
	defer w.Close()
	h := newHarness(t, Config{Writer: w})
	h.authenticated = true
	var p pings
	h.reg.SetKeepalive(10*time.Second, p.ping(h.clock.Now))
	h.request("127.0.0.1:40000", register("gone", "f1", 1, "Contact: <sip:gone@192.168.1.10:5060>\r\n"))
	h.request("127.0.0.1:40001", register("gone", "f2", 1, "Contact: <sip:gone@192.168.1.11:5060>\r\n"))
	h.clock.Advance(10 * time.Second)
	got := p.take()
	if len(got) != 2 {
		t.Fatalf("pings %+v", got)
	}
	a, b := got[0], got[1]
	if a.dst.Port() != 40000 {
		a, b = b, a
	}
	if n := h.reg.PingFailed(a.id, a.dst); n != 1 {
		t.Fatalf("first failure counted %d", n)
	}
	h.reg.PingAnswered(a.id, a.dst)
	for i := 1; i <= 3; i++ {
		if n := h.reg.PingFailed(a.id, a.dst); n != i {
			t.Fatalf("failure %d counted %d", i, n)
		}
	}
	if l := h.reg.List("gone@example.com"); l[0].PingFailures != 3 && l[1].PingFailures != 3 {
		t.Fatalf("List does not show the failures: %+v", l)
	}
	if ok, err := h.reg.RemoveUnreachable(a.id, a.dst, 4); ok || err != nil {
		t.Fatalf("removed below the limit: %v %v", ok, err)
	}
	if n := h.reg.PingFailed(b.id, netip.MustParseAddrPort("127.0.0.1:49999")); n != 0 {
		t.Fatalf("a failure at another address counted %d", n)
	}
	if ok, err := h.reg.RemoveUnreachable(a.id, a.dst, 3); !ok || err != nil {
		t.Fatalf("RemoveUnreachable: %v %v", ok, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	l := h.reg.List("gone@example.com")
	if len(l) != 1 || l[0].Contact != "sip:gone@192.168.1.11:5060" {
		t.Fatalf("left %+v", l)
	}
	stored, _, err := st.LoadBindings(context.Background(), time.UnixMilli(h.clock.Now()))
	if err != nil || len(stored) != 1 || stored[0].Contact != "sip:gone@192.168.1.11:5060" {
		t.Fatalf("stored %+v %v", stored, err)
	}
	if s := h.reg.Stats(); s.Unreachable != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The flag is stored: after a restart the binding is pinged again.
	h2 := newHarness(t, Config{})
	h2.clock.Set(h.clock.Now())
	if n, err := h2.reg.Load(context.Background(), st); n != 1 || err != nil {
		t.Fatalf("Load %d %v", n, err)
	}
	var p2 pings
	h2.reg.SetKeepalive(10*time.Second, p2.ping(h2.clock.Now))
	h2.clock.Advance(10 * time.Second)
	if got := p2.take(); len(got) != 1 || got[0].dst != b.dst {
		t.Fatalf("after Load: %+v", got)
	}
}
