package txn

import (
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// dnsServer answers A queries for one name with 127.0.0.1 on a loopback
// UDP socket; everything else gets NXDOMAIN (AAAA for the name: no data).
func dnsServer(t *testing.T, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if len(q) < 17 {
				continue
			}
			// question: labels from offset 12
			i := 12
			var labels []string
			for i < len(q) && q[i] != 0 {
				l := int(q[i])
				if i+1+l > len(q) {
					break
				}
				labels = append(labels, string(q[i+1:i+1+l]))
				i += 1 + l
			}
			i++
			if i+4 > len(q) {
				continue
			}
			qtype := int(q[i])<<8 | int(q[i+1])
			qend := i + 4
			resp := append([]byte(nil), q[:qend]...)
			resp[2], resp[3] = 0x81, 0x80 // response, RD, RA, NOERROR
			resp[6], resp[7] = 0, 0       // ancount
			resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0
			got := strings.ToLower(strings.Join(labels, "."))
			switch {
			case got != name:
				resp[3] = 0x83 // NXDOMAIN
			case qtype == 1:
				resp[7] = 1
				resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
			}
			pc.WriteTo(resp, src)
		}
	}()
	return pc.LocalAddr().String()
}

func TestResolverHostnameNextHop(t *testing.T) {
	dns := dnsServer(t, "uas.test")
	h := newHarness(t, func(c *Config) {
		c.Resolver = NewResolver(ResolverConfig{Server: dns, Timeout: 2 * time.Second})
	})
	var failures []int
	done := make(chan struct{}, 1)
	h.rt.failure = func(r *Request, best *parser.Message) {
		failures = append(failures, best.StatusCode())
		done <- struct{}{}
	}
	h.in(uacAddr, request("MESSAGE", "z9hG4bKdns", "dns@x", "sip:bob@uas.test:5080", ""))
	var msgs []sentMsg
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		msgs = h.snd.take()
	}
	h.only(msgs, toUAS+"MESSAGE sip:bob@uas.test:5080 SIP/2.0")

	h.in(uacAddr, request("MESSAGE", "z9hG4bKdns2", "dns2@x", "sip:bob@unknown.test:5080", ""))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no failure after an unresolvable next hop")
	}
	msgs = nil
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		msgs = h.snd.take() // the 500 follows the failure route on the resolver goroutine
		time.Sleep(5 * time.Millisecond)
	}
	h.only(msgs, toUAC+"SIP/2.0 500 Server Internal Error")
	if len(failures) != 1 || failures[0] != 503 {
		t.Fatalf("failure route saw %v", failures)
	}
}

func TestResolverStatelessACK(t *testing.T) {
	dns := dnsServer(t, "uas.test")
	h := newHarness(t, func(c *Config) {
		c.Resolver = NewResolver(ResolverConfig{Server: dns, Timeout: 2 * time.Second})
	})
	ack := request("ACK", "z9hG4bKdnsack", "dnsack@x", "sip:bob@127.0.0.1:5090", "Route: <sip:127.0.0.1:5060;lr>, <sip:uas.test:5080;lr>")
	h.in(uacAddr, strings.Replace(ack, "To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b", 1))
	var msgs []sentMsg
	for i := 0; i < 200 && len(msgs) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		msgs = h.snd.take()
	}
	h.only(msgs, toUAS+"ACK sip:bob@127.0.0.1:5090 SIP/2.0")
	if r := headers(msgs[0].data, "Route"); len(r) != 1 || r[0] != "<sip:uas.test:5080;lr>" {
		t.Fatalf("routes %q", r)
	}
}

// zone is a small authoritative DNS server on loopback (UDP and TCP on the
// same port) for the RFC 3263 tests. It answers from a table of records,
// NXDOMAIN for names it has nothing for, no data otherwise, with an SOA in
// the authority section of negative answers when soaMin is set. It parses
// queries and writes answers on its own, without the code under test.
type zone struct {
	t        *testing.T
	mu       sync.Mutex
	rrs      map[string][]testRR // "name/type"
	extra    map[string][]testRR // additional section for "name/type"
	soaMin   uint32
	truncate bool // UDP answers carry TC and no records
	queries  []string
	addr     string
}

type testRR struct {
	name string
	typ  uint16
	ttl  uint32
	data []byte
}

func zkey(name string, typ uint16) string { return strings.ToLower(name) + "/" + typeName(typ) }

func typeName(t uint16) string {
	switch t {
	case typeA:
		return "A"
	case typeAAAA:
		return "AAAA"
	case typeSRV:
		return "SRV"
	case typeNAPTR:
		return "NAPTR"
	case typeCNAME:
		return "CNAME"
	}
	return "T" + strconv.Itoa(int(t))
}

func wireName(name string) []byte {
	var b []byte
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }

func rrA(name string, ttl uint32, ip string) testRR {
	a := netip.MustParseAddr(ip)
	if a.Is4() {
		b := a.As4()
		return testRR{name, typeA, ttl, b[:]}
	}
	b := a.As16()
	return testRR{name, typeAAAA, ttl, b[:]}
}

func rrSRV(name string, ttl uint32, prio, weight, port int, target string) testRR {
	d := append(append(append(u16(prio), u16(weight)...), u16(port)...), wireName(target)...)
	return testRR{name, typeSRV, ttl, d}
}

func rrNAPTR(name string, ttl uint32, order, pref int, flags, svc, repl string) testRR {
	d := append(u16(order), u16(pref)...)
	for _, s := range []string{flags, svc, ""} {
		d = append(d, byte(len(s)))
		d = append(d, s...)
	}
	return testRR{name, typeNAPTR, ttl, append(d, wireName(repl)...)}
}

func rrCNAME(name string, ttl uint32, target string) testRR {
	return testRR{name, typeCNAME, ttl, wireName(target)}
}

func newZone(t *testing.T, rrs ...testRR) *zone {
	t.Helper()
	z := &zone{t: t, rrs: map[string][]testRR{}, extra: map[string][]testRR{}}
	z.add(rrs...)
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	z.addr = pc.LocalAddr().String()
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := z.answer(buf[:n], true); resp != nil {
				pc.WriteTo(resp, src)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [2]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				q := make([]byte, int(hdr[0])<<8|int(hdr[1]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp := z.answer(q, false)
				c.Write(append(u16(len(resp)), resp...))
			}()
		}
	}()
	return z
}

func (z *zone) add(rrs ...testRR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, rr := range rrs {
		k := zkey(rr.name, rr.typ)
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

func (z *zone) addExtra(name string, typ uint16, rrs ...testRR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.extra[zkey(name, typ)] = append(z.extra[zkey(name, typ)], rrs...)
}

func (z *zone) reset(rrs ...testRR) {
	z.mu.Lock()
	z.rrs = map[string][]testRR{}
	z.extra = map[string][]testRR{}
	z.mu.Unlock()
	z.add(rrs...)
}

func (z *zone) log() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	q := z.queries
	z.queries = nil
	return q
}

func (z *zone) answer(q []byte, udp bool) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	i++
	if i+4 > len(q) {
		return nil
	}
	qname := strings.Join(labels, ".")
	qtype := uint16(q[i])<<8 | uint16(q[i+1])
	qend := i + 4

	z.mu.Lock()
	defer z.mu.Unlock()
	proto := "tcp"
	if udp {
		proto = "udp"
	}
	z.queries = append(z.queries, zkey(qname, qtype)+"/"+proto)
	ans := z.rrs[zkey(qname, qtype)]
	if len(ans) == 0 {
		ans = z.rrs[zkey(qname, typeCNAME)]
	}
	var extra []testRR
	for _, rr := range ans {
		if rr.typ == typeCNAME {
			// Like a recursive server: the chain and what it ends in.
			extraAns := z.rrs[zkey(strings.TrimSuffix(decodeTestName(rr.data), "."), qtype)]
			ans = append(append([]testRR(nil), ans...), extraAns...)
			break
		}
	}
	extra = z.extra[zkey(qname, qtype)]
	exists := false
	for k := range z.rrs {
		if strings.HasPrefix(k, strings.ToLower(qname)+"/") {
			exists = true
		}
	}
	resp := append([]byte(nil), q[:qend]...)
	resp[2], resp[3] = 0x84, 0x00 // response, authoritative, NOERROR
	resp[4], resp[5] = 0, 1
	if udp && z.truncate {
		resp[2] |= 0x02
		ans, extra = nil, nil
		exists = true
	}
	var auth []testRR
	if len(ans) == 0 && z.soaMin > 0 {
		soa := append(append(wireName("ns.test"), wireName("hostmaster.test")...), 0, 0, 0, 1, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0, 60)
		soa = append(soa, byte(z.soaMin>>24), byte(z.soaMin>>16), byte(z.soaMin>>8), byte(z.soaMin))
		auth = []testRR{{"test", typeSOA, 3600, soa}}
	}
	if !exists {
		resp[3] = rcodeNXDomain
	}
	put := func(rrs []testRR) {
		for _, rr := range rrs {
			if strings.EqualFold(rr.name, qname) {
				resp = append(resp, 0xc0, 12) // compressed owner: the question
			} else {
				resp = append(resp, wireName(rr.name)...)
			}
			resp = append(resp, u16(int(rr.typ))...)
			resp = append(resp, 0, 1)
			resp = append(resp, byte(rr.ttl>>24), byte(rr.ttl>>16), byte(rr.ttl>>8), byte(rr.ttl))
			resp = append(resp, u16(len(rr.data))...)
			resp = append(resp, rr.data...)
		}
	}
	resp = append(resp[:6], append(append(append(u16(len(ans)), u16(len(auth))...), u16(len(extra))...), resp[12:]...)...)
	put(ans)
	put(auth)
	put(extra)
	return resp
}

func decodeTestName(b []byte) string {
	var parts []string
	for len(b) > 0 && b[0] != 0 {
		parts = append(parts, string(b[1:1+b[0]]))
		b = b[1+b[0]:]
	}
	return strings.Join(parts, ".")
}

// newTestResolver asks z only, with a seeded weight draw and a clock
// the test moves.
func newTestResolver(z *zone, clock *time.Time) *Resolver {
	r := NewResolver(ResolverConfig{Server: z.addr, Timeout: 2 * time.Second})
	r.rnd = rand.New(rand.NewPCG(1, 2))
	if clock != nil {
		var mu sync.Mutex
		r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return *clock }
	}
	return r
}

// resolveNow runs Resolve and waits for its answer.
func resolveNow(t *testing.T, r *Resolver, h NextHop) ([]Target, error) {
	t.Helper()
	type res struct {
		ts  []Target
		err error
	}
	ch := make(chan res, 1)
	r.Resolve(h, func(ts []Target, err error) { ch <- res{ts, err} })
	select {
	case x := <-ch:
		return x.ts, x.err
	case <-time.After(5 * time.Second):
		t.Fatal("resolution did not complete")
	}
	return nil, nil
}

func targetsString(ts []Target) string {
	var s []string
	for _, tg := range ts {
		s = append(s, tg.Proto.String()+" "+tg.Addr.String())
	}
	return strings.Join(s, ", ")
}

const udpTCP = Protos(1<<transport.UDP | 1<<transport.TCP)

// NAPTR → SRV → A: the NAPTR records of transports we have, in order
// (then preference), each SRV's targets, and their addresses. The TLS one
// is skipped without a TLS listener; a record with other flags too.
func TestResolveNAPTRChain(t *testing.T) {
	z := newZone(t,
		rrNAPTR("carrier.test", 300, 20, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		rrNAPTR("carrier.test", 300, 10, 10, "s", "SIPS+D2T", "_sips._tcp.carrier.test"),
		rrNAPTR("carrier.test", 300, 10, 20, "S", "SIP+D2T", "_sip._tcp.carrier.test"),
		rrNAPTR("carrier.test", 300, 5, 10, "u", "SIP+D2U", "_sip._udp.other.test"),
		rrSRV("_sip._tcp.carrier.test", 300, 10, 0, 5070, "a.carrier.test"),
		rrSRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "b.carrier.test"),
		rrSRV("_sips._tcp.carrier.test", 300, 10, 0, 5061, "a.carrier.test"),
		rrA("a.carrier.test", 300, "127.0.0.2"),
		rrA("b.carrier.test", 300, "127.0.0.3"),
		rrA("b.carrier.test", 300, "::1"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Supported: udpTCP})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := targetsString(ts), "TCP 127.0.0.2:5070, UDP 127.0.0.3:5080, UDP [::1]:5080"; got != want {
		t.Fatalf("targets %s, want %s", got, want)
	}
	q := z.log()
	want := []string{"carrier.test/NAPTR/udp", "_sip._tcp.carrier.test/SRV/udp", "a.carrier.test/A/udp", "a.carrier.test/AAAA/udp",
		"_sip._udp.carrier.test/SRV/udp", "b.carrier.test/A/udp", "b.carrier.test/AAAA/udp"}
	if strings.Join(q, " ") != strings.Join(want, " ") {
		t.Fatalf("queries %v\nwant %v", q, want)
	}
	// A second resolution comes from the cache, without a goroutine.
	ts2, ok := r.Cached(NextHop{Host: "Carrier.Test.", Supported: udpTCP})
	if !ok || targetsString(ts2) != targetsString(ts) {
		t.Fatalf("cached: %v %s", ok, targetsString(ts2))
	}
	if q := z.log(); len(q) != 0 {
		t.Fatalf("cached resolution asked %v", q)
	}
	// A sips URI: only SIPS+D2T, which needs a TLS listener.
	ts, err = resolveNow(t, r, NextHop{Host: "carrier.test", Secure: true, Supported: udpTCP.With(transport.TLS)})
	if err != nil || targetsString(ts) != "TLS 127.0.0.2:5061" {
		t.Fatalf("sips: %s %v", targetsString(ts), err)
	}
}

// Without NAPTR records: SRV for each transport we have, UDP, TCP, TLS.
func TestResolveSRVWithoutNAPTR(t *testing.T) {
	z := newZone(t,
		rrSRV("_sip._tcp.carrier.test", 300, 10, 0, 5070, "a.carrier.test"),
		rrSRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		rrSRV("_sips._tcp.carrier.test", 300, 10, 0, 5061, "a.carrier.test"),
		rrA("a.carrier.test", 300, "127.0.0.2"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Supported: udpTCP})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := targetsString(ts), "UDP 127.0.0.2:5080, TCP 127.0.0.2:5070"; got != want {
		t.Fatalf("targets %s, want %s", got, want)
	}
	if q := z.log(); q[0] != "carrier.test/NAPTR/udp" || contains(q, "_sips._tcp") {
		t.Fatalf("queries %v", q)
	}
}

// An explicit port: A/AAAA only (§4.2), over the URI's transport.
func TestResolveExplicitPort(t *testing.T) {
	z := newZone(t,
		rrNAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test"),
		rrSRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		rrA("carrier.test", 300, "127.0.0.4"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Port: 5099, Supported: udpTCP})
	if err != nil || targetsString(ts) != "UDP 127.0.0.4:5099" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.log(); strings.Join(q, " ") != "carrier.test/A/udp carrier.test/AAAA/udp" {
		t.Fatalf("queries %v", q)
	}
	ts, err = resolveNow(t, r, NextHop{Host: "carrier.test", Port: 5099, Proto: transport.TCP, ProtoSet: true})
	if err != nil || targetsString(ts) != "TCP 127.0.0.4:5099" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
}

// A transport parameter without a port: SRV for that transport only; no
// SRV there: A/AAAA on its default port.
func TestResolveTransportParam(t *testing.T) {
	z := newZone(t,
		rrNAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		rrSRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		rrSRV("_sip._tcp.carrier.test", 300, 10, 0, 5070, "a.carrier.test"),
		rrA("a.carrier.test", 300, "127.0.0.2"),
		rrA("carrier.test", 300, "127.0.0.4"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Proto: transport.TCP, ProtoSet: true, Supported: udpTCP})
	if err != nil || targetsString(ts) != "TCP 127.0.0.2:5070" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.log(); strings.Join(q, " ") != "_sip._tcp.carrier.test/SRV/udp a.carrier.test/A/udp a.carrier.test/AAAA/udp" {
		t.Fatalf("queries %v", q)
	}
	ts, err = resolveNow(t, r, NextHop{Host: "carrier.test", Proto: transport.TLS, ProtoSet: true})
	if err != nil || targetsString(ts) != "TLS 127.0.0.4:5061" {
		t.Fatalf("tls without SRV: %s %v", targetsString(ts), err)
	}
}

// No NAPTR and no SRV: A/AAAA on 5060 over UDP (5061 over TLS for sips);
// a name with nothing at all is ErrNoTarget.
func TestResolveNoSRV(t *testing.T) {
	z := newZone(t, rrA("pbx.test", 300, "127.0.0.5"))
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "pbx.test", Supported: udpTCP})
	if err != nil || targetsString(ts) != "UDP 127.0.0.5:5060" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	ts, err = resolveNow(t, r, NextHop{Host: "pbx.test", Secure: true, Supported: udpTCP.With(transport.TLS)})
	if err != nil || targetsString(ts) != "TLS 127.0.0.5:5061" {
		t.Fatalf("sips: %s %v", targetsString(ts), err)
	}
	if _, err := resolveNow(t, r, NextHop{Host: "nothing.test"}); err != ErrNoTarget {
		t.Fatalf("unknown name: %v", err)
	}
}

// SRV targets take their addresses from the additional section when the
// server sends them; a CNAME is followed.
func TestResolveAdditionalAndCNAME(t *testing.T) {
	z := newZone(t,
		rrSRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		rrSRV("_sip._udp.carrier.test", 300, 20, 0, 5090, "alias.carrier.test"),
		rrCNAME("alias.carrier.test", 300, "b.carrier.test"),
		rrA("b.carrier.test", 300, "127.0.0.7"),
	)
	z.addExtra("_sip._udp.carrier.test", typeSRV, rrA("a.carrier.test", 300, "127.0.0.6"))
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Proto: transport.UDP, ProtoSet: true})
	if err != nil || targetsString(ts) != "UDP 127.0.0.6:5080, UDP 127.0.0.7:5090" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.log(); contains(q, "a.carrier.test/A") {
		t.Fatalf("asked for an address the additional section had: %v", q)
	}
}

// SRV order (RFC 2782): priorities strictly, weights as probabilities.
func TestOrderSRV(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 11))
	first := map[string]int{}
	const n = 20000
	for i := 0; i < n; i++ {
		recs := []dnsRR{
			{host: "low", prio: 20, wt: 100},
			{host: "w60", prio: 10, wt: 60},
			{host: "w0", prio: 10, wt: 0},
			{host: "w30", prio: 10, wt: 30},
			{host: "w10", prio: 10, wt: 10},
		}
		orderSRV(recs, rnd)
		if recs[4].host != "low" {
			t.Fatalf("priority 20 not last: %v", recs)
		}
		first[recs[0].host]++
	}
	// Expected shares of the first place: weight/(sum+1) for each, and
	// 1/(sum+1) for the weight-0 record placed first.
	for host, want := range map[string]float64{"w60": 60.0 / 101, "w30": 30.0 / 101, "w10": 10.0 / 101, "w0": 1.0 / 101} {
		got := float64(first[host]) / n
		if got < want*0.85-0.003 || got > want*1.15+0.003 {
			t.Errorf("%s first %.4f of the time, want about %.4f", host, got, want)
		}
	}
	// Seeded: the same draw twice gives the same order.
	order := func() string {
		recs := []dnsRR{{host: "a", prio: 1, wt: 5}, {host: "b", prio: 1, wt: 5}, {host: "c", prio: 1, wt: 5}}
		orderSRV(recs, rand.New(rand.NewPCG(3, 4)))
		return recs[0].host + recs[1].host + recs[2].host
	}
	if a, b := order(), order(); a != b {
		t.Fatalf("seeded orders differ: %s %s", a, b)
	}
}

// The cache keeps answers for their TTL (capped by MaxTTL) and negative
// answers for the SOA minimum (capped by NegativeTTL), on the injected
// clock; a TTL expiry asks again.
func TestResolverCacheTTL(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	z := newZone(t,
		rrSRV("_sip._udp.carrier.test", 120, 10, 0, 5080, "a.carrier.test"),
		rrA("a.carrier.test", 60, "127.0.0.2"),
	)
	z.mu.Lock()
	z.soaMin = 10
	z.mu.Unlock()
	r := newTestResolver(z, &now)
	h := NextHop{Host: "carrier.test", Supported: udpTCP}
	if _, ok := r.Cached(h); ok {
		t.Fatal("empty cache answered")
	}
	ts, err := resolveNow(t, r, h)
	if err != nil || targetsString(ts) != "UDP 127.0.0.2:5080" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	z.log()
	advance := func(d time.Duration) { now = now.Add(d) }

	advance(9 * time.Second) // NAPTR and _sip._tcp negative (SOA minimum 10 s): still cached
	if _, ok := r.Cached(h); !ok {
		t.Fatal("not cached after 9 s")
	}
	advance(2 * time.Second) // the negative answers expired
	if _, ok := r.Cached(h); ok {
		t.Fatal("negative answers outlived the SOA minimum")
	}
	z.reset(rrSRV("_sip._udp.carrier.test", 120, 10, 0, 5080, "a.carrier.test"), rrA("a.carrier.test", 60, "127.0.0.9"))
	resolveNow(t, r, h)
	if q := z.log(); strings.Join(q, " ") != "carrier.test/NAPTR/udp a.carrier.test/AAAA/udp _sip._tcp.carrier.test/SRV/udp" {
		t.Fatalf("after the negative TTL asked %v", q)
	}
	advance(50 * time.Second) // 61 s: the A record (TTL 60) expired, the SRV (120) not
	if _, ok := r.Cached(h); ok {
		t.Fatal("A record outlived its TTL")
	}
	ts, _ = resolveNow(t, r, h)
	if targetsString(ts) != "UDP 127.0.0.9:5080" {
		t.Fatalf("after the A TTL: %s", targetsString(ts))
	}
	if q := z.log(); !contains(q, "a.carrier.test/A/udp") || contains(q, "_sip._udp.carrier.test/SRV") {
		t.Fatalf("after the A TTL asked %v", q)
	}

	// MaxTTL caps a long TTL.
	z.mu.Lock()
	z.soaMin = 0
	z.mu.Unlock()
	r2 := NewResolver(ResolverConfig{Server: z.addr, MaxTTL: time.Minute, NegativeTTL: 2 * time.Minute})
	r2.now = func() time.Time { return now }
	z.reset(rrA("long.test", 86400, "127.0.0.2"))
	long := NextHop{Host: "long.test", Port: 5060}
	resolveNow(t, r2, long)
	now = now.Add(59 * time.Second)
	if _, ok := r2.Cached(long); !ok {
		t.Fatal("not cached within MaxTTL")
	}
	now = now.Add(2 * time.Second)
	if _, ok := r2.Cached(long); ok {
		t.Fatal("kept past MaxTTL")
	}
}

// The cache holds at most CacheSize answers.
func TestResolverCacheBounded(t *testing.T) {
	c := newDNSCache(64)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		c.put(cacheKey{strconv.Itoa(i), typeA}, &cacheEntry{exp: now.Add(time.Hour)}, now)
		if c.len() > 64 {
			t.Fatalf("%d entries", c.len())
		}
	}
	if _, ok := c.get(cacheKey{"999", typeA}, now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}

// A truncated UDP answer is asked again over TCP.
func TestResolverTruncatedOverTCP(t *testing.T) {
	z := newZone(t, rrA("pbx.test", 300, "127.0.0.5"))
	z.mu.Lock()
	z.truncate = true
	z.mu.Unlock()
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "pbx.test", Port: 5060})
	if err != nil || targetsString(ts) != "UDP 127.0.0.5:5060" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.log(); strings.Join(q, " ") != "pbx.test/A/udp pbx.test/A/tcp pbx.test/AAAA/udp pbx.test/AAAA/tcp" {
		t.Fatalf("queries %v", q)
	}
}

// A server that never answers: the resolution fails within Timeout.
func TestResolverTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := NewResolver(ResolverConfig{Server: pc.LocalAddr().String(), Timeout: 300 * time.Millisecond})
	start := time.Now()
	if _, err := resolveNow(t, r, NextHop{Host: "carrier.test"}); err == nil {
		t.Fatal("no error from a silent server")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if _, err := resolveNow(t, NewResolver(ResolverConfig{Server: "dns.example.com"}), NextHop{Host: "x.test"}); err == nil {
		t.Fatal("a server name that is not ip:port was accepted")
	}
}

// Every prefix of a valid answer, and every single-byte change of it,
// decodes to an error or a message: never a panic.
func TestParseAnswerMalformed(t *testing.T) {
	z := &zone{rrs: map[string][]testRR{}, extra: map[string][]testRR{}}
	z.add(rrSRV("_sip._udp.carrier.test", 300, 10, 5, 5080, "a.carrier.test"),
		rrNAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2U", "x.test"))
	z.addExtra("_sip._udp.carrier.test", typeSRV, rrA("a.carrier.test", 300, "127.0.0.2"))
	q, err := appendQuery(nil, 0x1234, "_sip._udp.carrier.test", typeSRV)
	if err != nil {
		t.Fatal(err)
	}
	resp := z.answer(q, false)
	m, err := parseAnswer(resp, 0x1234, "_sip._udp.carrier.test", typeSRV)
	if err != nil || len(m.ans) != 1 || len(m.extra) != 1 || m.ans[0].host != "a.carrier.test" || m.ans[0].port != 5080 || m.ans[0].wt != 5 || m.extra[0].addr != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("parsed %+v %v", m, err)
	}
	qn, _ := appendQuery(nil, 9, "carrier.test", typeNAPTR)
	mn, err := parseAnswer(z.answer(qn, false), 9, "carrier.test", typeNAPTR)
	if err != nil || len(mn.ans) != 1 || mn.ans[0].svc != "SIP+D2U" || mn.ans[0].flags != "s" || mn.ans[0].host != "x.test" || mn.ans[0].prio != 10 {
		t.Fatalf("NAPTR parsed %+v %v", mn, err)
	}
	if _, err := parseAnswer(resp, 0x1235, "_sip._udp.carrier.test", typeSRV); err != errDNSMismatch {
		t.Fatalf("wrong id: %v", err)
	}
	if _, err := parseAnswer(resp, 0x1234, "_sip._tcp.carrier.test", typeSRV); err != errDNSMismatch {
		t.Fatalf("wrong name: %v", err)
	}
	for n := 0; n < len(resp); n++ {
		if _, err := parseAnswer(resp[:n], 0x1234, "_sip._udp.carrier.test", typeSRV); err == nil {
			t.Fatalf("prefix of %d bytes parsed", n)
		}
	}
	b := append([]byte(nil), resp...)
	for i := range b {
		for _, v := range []byte{0, 0xff, 0xc0, 0x3f} {
			old := b[i]
			b[i] = v
			parseAnswer(b, 0x1234, "_sip._udp.carrier.test", typeSRV)
			b[i] = old
		}
	}
	// A compression pointer to itself.
	loop := append(append([]byte(nil), resp[:len(q)-11]...), 0xc0, 0)
	loop[7] = 1
	parseAnswer(loop, 0x1234, "_sip._udp.carrier.test", typeSRV)
	if _, err := appendQuery(nil, 1, strings.Repeat("a", 64)+".test", typeA); err == nil {
		t.Fatal("a 64-byte label was accepted")
	}
	if _, err := appendQuery(nil, 1, "a..test", typeA); err == nil {
		t.Fatal("an empty label was accepted")
	}
}

func FuzzParseAnswer(f *testing.F) {
	z := &zone{rrs: map[string][]testRR{}, extra: map[string][]testRR{}}
	z.add(rrSRV("s.test", 300, 10, 5, 5080, "a.test"), rrNAPTR("s.test", 300, 1, 1, "s", "SIP+D2U", "x.test"), rrCNAME("s.test", 1, "c.test"))
	q, _ := appendQuery(nil, 7, "s.test", typeSRV)
	f.Add(z.answer(q, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseAnswer(b, 7, "s.test", typeSRV)
	})
}
