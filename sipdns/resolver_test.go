package sipdns

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"switchboard/sipdns/dnstest"
	"switchboard/transport"
)

// newTestResolver asks z only, with a seeded weight draw and a clock
// the test moves.
func newTestResolver(z *dnstest.Zone, clock *time.Time) *Resolver {
	r := New(Config{Server: z.Addr, Timeout: 2 * time.Second})
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
	z := dnstest.NewZone(t,
		dnstest.NAPTR("carrier.test", 300, 20, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIPS+D2T", "_sips._tcp.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 10, 20, "S", "SIP+D2T", "_sip._tcp.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 5, 10, "u", "SIP+D2U", "_sip._udp.other.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, 5070, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "b.carrier.test"),
		dnstest.SRV("_sips._tcp.carrier.test", 300, 10, 0, 5061, "a.carrier.test"),
		dnstest.A("a.carrier.test", 300, "127.0.0.2"),
		dnstest.A("b.carrier.test", 300, "127.0.0.3"),
		dnstest.A("b.carrier.test", 300, "::1"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Supported: udpTCP})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := targetsString(ts), "TCP 127.0.0.2:5070, UDP 127.0.0.3:5080, UDP [::1]:5080"; got != want {
		t.Fatalf("targets %s, want %s", got, want)
	}
	q := z.Log()
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
	if q := z.Log(); len(q) != 0 {
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
	z := dnstest.NewZone(t,
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, 5070, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.SRV("_sips._tcp.carrier.test", 300, 10, 0, 5061, "a.carrier.test"),
		dnstest.A("a.carrier.test", 300, "127.0.0.2"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Supported: udpTCP})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := targetsString(ts), "UDP 127.0.0.2:5080, TCP 127.0.0.2:5070"; got != want {
		t.Fatalf("targets %s, want %s", got, want)
	}
	if q := z.Log(); q[0] != "carrier.test/NAPTR/udp" || contains(q, "_sips._tcp") {
		t.Fatalf("queries %v", q)
	}
}

// An explicit port: A/AAAA only (§4.2), over the URI's transport.
func TestResolveExplicitPort(t *testing.T) {
	z := dnstest.NewZone(t,
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.A("carrier.test", 300, "127.0.0.4"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Port: 5099, Supported: udpTCP})
	if err != nil || targetsString(ts) != "UDP 127.0.0.4:5099" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.Log(); strings.Join(q, " ") != "carrier.test/A/udp carrier.test/AAAA/udp" {
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
	z := dnstest.NewZone(t,
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, 5070, "a.carrier.test"),
		dnstest.A("a.carrier.test", 300, "127.0.0.2"),
		dnstest.A("carrier.test", 300, "127.0.0.4"),
	)
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Proto: transport.TCP, ProtoSet: true, Supported: udpTCP})
	if err != nil || targetsString(ts) != "TCP 127.0.0.2:5070" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.Log(); strings.Join(q, " ") != "_sip._tcp.carrier.test/SRV/udp a.carrier.test/A/udp a.carrier.test/AAAA/udp" {
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
	z := dnstest.NewZone(t, dnstest.A("pbx.test", 300, "127.0.0.5"))
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
	z := dnstest.NewZone(t,
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5080, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 20, 0, 5090, "alias.carrier.test"),
		dnstest.CNAME("alias.carrier.test", 300, "b.carrier.test"),
		dnstest.A("b.carrier.test", 300, "127.0.0.7"),
	)
	z.AddExtra("_sip._udp.carrier.test", dnstest.TypeSRV, dnstest.A("a.carrier.test", 300, "127.0.0.6"))
	r := newTestResolver(z, nil)
	ts, err := resolveNow(t, r, NextHop{Host: "carrier.test", Proto: transport.UDP, ProtoSet: true})
	if err != nil || targetsString(ts) != "UDP 127.0.0.6:5080, UDP 127.0.0.7:5090" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.Log(); contains(q, "a.carrier.test/A") {
		t.Fatalf("asked for an address the additional section had: %v", q)
	}
}

// orderRecs puts recs in the order orderSRV draws for them.
func orderRecs(recs []dnsRR, rnd *rand.Rand) {
	keys := make([]srvKey, len(recs))
	for i, rr := range recs {
		keys[i] = srvKey{rr.prio, rr.wt, uint8(i)}
	}
	orderSRV(keys, rnd)
	was := slices.Clone(recs)
	for i, k := range keys {
		recs[i] = was[k.i]
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
		orderRecs(recs, rnd)
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
		orderRecs(recs, rand.New(rand.NewPCG(3, 4)))
		return recs[0].host + recs[1].host + recs[2].host
	}
	if a, b := order(), order(); a != b {
		t.Fatalf("seeded orders differ: %s %s", a, b)
	}
	// The cache keeps an answer's records sorted by priority
	// (keepRecords): the same draw from them gives the order it gives
	// from the answer.
	g := rand.New(rand.NewPCG(5, 6))
	for it := 0; it < 2000; it++ {
		var recs []dnsRR
		for i, n := 0, 1+g.IntN(maxRecords); i < n; i++ {
			recs = append(recs, dnsRR{host: strconv.Itoa(i), prio: uint16(g.IntN(4)), wt: uint16(g.IntN(3) * g.IntN(100))})
		}
		kept := keepRecords(dns.TypeSRV, slices.Clone(recs), "s.test")
		seed := g.Uint64()
		orderRecs(recs, rand.New(rand.NewPCG(seed, 1)))
		orderRecs(kept, rand.New(rand.NewPCG(seed, 1)))
		for i := range recs {
			if recs[i].host != kept[i].host {
				t.Fatalf("from the answer %v\nfrom the cache %v", recs, kept)
			}
		}
	}
}

// The cache keeps answers for their TTL (capped by MaxTTL) and negative
// answers for the SOA minimum (capped by NegativeTTL), on the injected
// clock; a TTL expiry asks again.
func TestResolverCacheTTL(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	z := dnstest.NewZone(t,
		dnstest.SRV("_sip._udp.carrier.test", 120, 10, 0, 5080, "a.carrier.test"),
		dnstest.A("a.carrier.test", 60, "127.0.0.2"),
	)
	z.SetSOAMin(10)
	r := newTestResolver(z, &now)
	h := NextHop{Host: "carrier.test", Supported: udpTCP}
	if _, ok := r.Cached(h); ok {
		t.Fatal("empty cache answered")
	}
	ts, err := resolveNow(t, r, h)
	if err != nil || targetsString(ts) != "UDP 127.0.0.2:5080" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	z.Log()
	advance := func(d time.Duration) { now = now.Add(d) }

	advance(9 * time.Second) // NAPTR and _sip._tcp negative (SOA minimum 10 s): still cached
	if _, ok := r.Cached(h); !ok {
		t.Fatal("not cached after 9 s")
	}
	advance(2 * time.Second) // the negative answers expired
	if _, ok := r.Cached(h); ok {
		t.Fatal("negative answers outlived the SOA minimum")
	}
	z.Reset(dnstest.SRV("_sip._udp.carrier.test", 120, 10, 0, 5080, "a.carrier.test"), dnstest.A("a.carrier.test", 60, "127.0.0.9"))
	resolveNow(t, r, h)
	if q := z.Log(); strings.Join(q, " ") != "carrier.test/NAPTR/udp a.carrier.test/AAAA/udp _sip._tcp.carrier.test/SRV/udp" {
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
	if q := z.Log(); !contains(q, "a.carrier.test/A/udp") || contains(q, "_sip._udp.carrier.test/SRV") {
		t.Fatalf("after the A TTL asked %v", q)
	}

	// MaxTTL caps a long TTL.
	z.SetSOAMin(0)
	r2 := New(Config{Server: z.Addr, MaxTTL: time.Minute, NegativeTTL: 2 * time.Minute})
	r2.now = func() time.Time { return now }
	z.Reset(dnstest.A("long.test", 86400, "127.0.0.2"))
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
		c.put(cacheKey{strconv.Itoa(i), dns.TypeA}, &cacheEntry{exp: now.Add(time.Hour)}, now)
		if c.len() > 64 {
			t.Fatalf("%d entries", c.len())
		}
	}
	if _, ok := c.get(cacheKey{"999", dns.TypeA}, now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}

// countLookups makes r count its cache lookups (each reads the clock once).
func countLookups(r *Resolver) *atomic.Int64 {
	var n atomic.Int64
	r.now = func() time.Time { n.Add(1); return time.Now() }
	return &n
}

// A hostile SRV answer (2,000 records, 48 KB over TCP, targets that do not
// resolve) or NAPTR answer (1,000 records naming SRV sets that do not
// exist) gets maxRecords of its records kept and maxLookups answers looked
// up per resolution, Cached included; over any number of resolutions the
// name costs at most an SRV answer and the A and AAAA answers of the kept
// targets (the weight draw picks other targets each time). Before: about
// 4,000 questions and 4,000 negative cache entries in one resolution of
// the SRV answer, and 10 ms per Cached call (the weight draw over 2,000
// records, and two cache lookups for each).
func TestSRVAnswerFanOutBounded(t *testing.T) {
	var rrs []dnstest.RR
	for i := 0; i < 2000; i++ {
		rrs = append(rrs, dnstest.SRV("_sip._udp.evil.test", 300, 10, 1+i%50, 5060, "a"+strconv.Itoa(i)))
	}
	for i := 0; i < 1000; i++ {
		rrs = append(rrs, dnstest.NAPTR("naptr.evil.test", 300, 10, i, "s", "SIP+D2U", "_sip._udp.n"+strconv.Itoa(i)+".evil.test"))
	}
	z := dnstest.NewZone(t, rrs...)
	z.SetTruncate(dnstest.TruncateEmpty) // the 48 KB answers come over TCP
	z.SetSOAMin(300)
	for _, h := range []NextHop{
		{Host: "evil.test", ProtoSet: true, Supported: udpTCP},
		{Host: "naptr.evil.test", Supported: udpTCP},
	} {
		r := New(Config{Server: z.Addr, Timeout: 30 * time.Second})
		lookups := countLookups(r)
		all := map[string]bool{}
		for round := 0; round < 5; round++ {
			_, err := resolveNow(t, r, h)
			if err != ErrTooManyLookups {
				t.Errorf("%s: %v, want ErrTooManyLookups", h.Host, err)
			}
			uniq := map[string]bool{}
			for _, q := range z.Log() {
				uniq[q[:strings.LastIndexByte(q, '/')]] = true
				all[q[:strings.LastIndexByte(q, '/')]] = true
			}
			if len(uniq) > maxLookups {
				t.Errorf("%s: one resolution asked %d questions", h.Host, len(uniq))
			}
			lookups.Store(0)
			t0 := time.Now()
			_, ok := r.Cached(h)
			t.Logf("%s: %d questions, %d cache entries, Cached: %d lookups, %v", h.Host, len(uniq), r.cache.len(), lookups.Load(), time.Since(t0))
			if ok || lookups.Load() > maxLookups {
				t.Errorf("%s: Cached %v after %d lookups", h.Host, ok, lookups.Load())
			}
			if q := z.Log(); len(q) != 0 {
				t.Errorf("%s: Cached asked %v", h.Host, q)
			}
		}
		if len(all) > 1+2*maxRecords || r.cache.len() > 1+2*maxRecords {
			t.Errorf("%s: %d questions, %d cache entries in all", h.Host, len(all), r.cache.len())
		}
	}

	// Targets found before the lookups ran out are the answer, from the
	// network and from the cache alike.
	z.Reset(dnstest.SRV("_sip._udp.some.test", 300, 0, 0, 5070, "live.some.test"), dnstest.A("live.some.test", 300, "127.0.0.9"))
	for i := 1; i <= 40; i++ {
		z.Add(dnstest.SRV("_sip._udp.some.test", 300, i, 0, 5060, "dead"+strconv.Itoa(i)+".some.test"))
	}
	z.Log()
	r := newTestResolver(z, nil)
	h := NextHop{Host: "some.test", ProtoSet: true, Supported: udpTCP}
	ts, err := resolveNow(t, r, h)
	if err != nil || targetsString(ts) != "UDP 127.0.0.9:5070" {
		t.Fatalf("targets %s %v", targetsString(ts), err)
	}
	if q := z.Log(); len(q) != 2*maxLookups { // over UDP, then TCP
		t.Fatalf("%d questions", len(q))
	}
	if ts, ok := r.Cached(h); !ok || targetsString(ts) != "UDP 127.0.0.9:5070" {
		t.Fatalf("cached: %v %s", ok, targetsString(ts))
	}
}

// An answer of thousands of records keeps maxRecords of them in its cache
// entry, the ones resolution uses first: A and AAAA in answer order, SRV
// the best priorities, NAPTR the SIP records of the best order; of an SRV
// answer's additional section the addresses of the kept targets only.
// Before: all of them (3,000 A records, 450 KB of heap per name, up to
// 1.8 GB for a full cache).
func TestCacheEntryRecordsBounded(t *testing.T) {
	var rrs []dnstest.RR
	for n := 0; n < 20; n++ {
		for i := 0; i < 3000; i++ {
			rrs = append(rrs, dnstest.A("h"+strconv.Itoa(n)+".evil.test", 3600, "10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250+1)))
		}
	}
	// 500 SRV records of priority 20 and, last, one of priority 10; the
	// additional section has 1,000 addresses for a kept target and 1,000
	// for one cut.
	for i := 0; i < 500; i++ {
		rrs = append(rrs, dnstest.SRV("_sip._udp.srv.evil.test", 300, 20, 10, 5060, "t"+strconv.Itoa(i)))
	}
	rrs = append(rrs, dnstest.SRV("_sip._udp.srv.evil.test", 300, 10, 10, 5070, "good.evil.test"))
	// 500 NAPTR records of another service and, last, a SIP one.
	for i := 0; i < 500; i++ {
		rrs = append(rrs, dnstest.NAPTR("srv.evil.test", 300, 1, 1, "s", "E2U+sip", "x.test"))
	}
	rrs = append(rrs, dnstest.NAPTR("srv.evil.test", 300, 10, 10, "s", "SIP+D2U", "_sip._udp.srv.evil.test"))
	z := dnstest.NewZone(t, rrs...)
	for i := 0; i < 1000; i++ {
		z.AddExtra("_sip._udp.srv.evil.test", dnstest.TypeSRV, dnstest.A("t0", 300, "10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250+1)))
		z.AddExtra("_sip._udp.srv.evil.test", dnstest.TypeSRV, dnstest.A("t499", 300, "10.2."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250+1)))
	}
	z.AddExtra("_sip._udp.srv.evil.test", dnstest.TypeSRV, dnstest.A("good.evil.test", 300, "127.0.0.9"))
	z.SetTruncate(dnstest.TruncateEmpty)
	r := New(Config{Server: z.Addr, Timeout: 10 * time.Second})
	for n := 0; n < 20; n++ {
		ts, err := resolveNow(t, r, NextHop{Host: "h" + strconv.Itoa(n) + ".evil.test", Port: 5060, Supported: udpTCP})
		if err != nil || len(ts) != MaxTargets || ts[0].Addr.String() != "10.0.0.1:5060" {
			t.Fatalf("targets %s %v", targetsString(ts), err)
		}
	}
	for n := 0; n < 20; n++ {
		e, _ := r.cache.get(cacheKey{"h" + strconv.Itoa(n) + ".evil.test", dns.TypeA}, time.Now())
		if e == nil || len(e.rrs) != maxRecords || cap(e.rrs) != maxRecords || e.rrs[maxRecords-1].addr.String() != "10.0.0.32" {
			t.Fatalf("h%d: the entry keeps %d records (capacity %d)", n, len(e.rrs), cap(e.rrs))
		}
	}

	ts, err := resolveNow(t, r, NextHop{Host: "srv.evil.test", Supported: udpTCP})
	if err != nil || len(ts) == 0 || targetsString(ts[:1]) != "UDP 127.0.0.9:5070" {
		t.Fatalf("srv: targets %s %v", targetsString(ts), err)
	}
	e, _ := r.cache.get(cacheKey{"_sip._udp.srv.evil.test", dns.TypeSRV}, time.Now())
	if e == nil || len(e.rrs) != maxRecords || e.rrs[0].host != "good.evil.test" {
		t.Fatalf("SRV entry: %d records", len(e.rrs))
	}
	if len(e.extra) > maxRecords || !slices.ContainsFunc(e.extra, func(x dnsRR) bool { return x.name == "t0" }) ||
		slices.ContainsFunc(e.extra, func(x dnsRR) bool { return x.name == "t499" }) {
		t.Fatalf("SRV entry: %d additional addresses", len(e.extra))
	}
	e, _ = r.cache.get(cacheKey{"srv.evil.test", dns.TypeNAPTR}, time.Now())
	if e == nil || len(e.rrs) != 1 || e.rrs[0].svc != "SIP+D2U" {
		t.Fatalf("NAPTR entry: %d records", len(e.rrs))
	}
}

// A truncated UDP answer is asked again over TCP, whether the server sent
// no records or cut the message inside one.
func TestResolverTruncatedOverTCP(t *testing.T) {
	for _, mode := range []dnstest.Truncation{dnstest.TruncateEmpty, dnstest.TruncateCut} {
		z := dnstest.NewZone(t, dnstest.A("pbx.test", 300, "127.0.0.5"))
		z.SetTruncate(mode)
		r := newTestResolver(z, nil)
		ts, err := resolveNow(t, r, NextHop{Host: "pbx.test", Port: 5060})
		if err != nil || targetsString(ts) != "UDP 127.0.0.5:5060" {
			t.Fatalf("mode %d: targets %s %v", mode, targetsString(ts), err)
		}
		want := "pbx.test/A/udp pbx.test/A/tcp pbx.test/AAAA/udp"
		if mode == dnstest.TruncateEmpty {
			want += " pbx.test/AAAA/tcp" // an empty answer is truncated too
		}
		if q := z.Log(); strings.Join(q, " ") != want {
			t.Fatalf("mode %d: queries %v, want %s", mode, q, want)
		}
	}
}

// A server that never answers: the resolution fails within Timeout.
func TestResolverTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := New(Config{Server: pc.LocalAddr().String(), Timeout: 300 * time.Millisecond})
	start := time.Now()
	if _, err := resolveNow(t, r, NextHop{Host: "carrier.test"}); err == nil {
		t.Fatal("no error from a silent server")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if _, err := resolveNow(t, New(Config{Server: "dns.example.com"}), NextHop{Host: "x.test"}); err == nil {
		t.Fatal("a server name that is not ip:port was accepted")
	}
}

// query is the query the resolver sends for name/qtype, with id, and its
// wire form.
func query(t testing.TB, id uint16, name string, qtype uint16) (*dns.Msg, []byte) {
	t.Helper()
	q, err := newQuery(name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	q.Id = id
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return q, b
}

// parseAnswer decodes b as the client does: unpacked by the DNS library,
// then checked against the question and reduced to the records used.
func parseAnswer(b []byte, q *dns.Msg) (*dnsMsg, error) {
	var r dns.Msg
	if err := r.Unpack(b); err != nil {
		return nil, err
	}
	return decodeAnswer(q, &r)
}

// The zone's answers decode to the fields resolution uses; an answer to
// another id or question is refused.
func TestParseAnswer(t *testing.T) {
	z := dnstest.New()
	z.Add(dnstest.SRV("_sip._udp.carrier.test", 300, 10, 5, 5080, "a.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2U", "x.test"))
	z.AddExtra("_sip._udp.carrier.test", dnstest.TypeSRV, dnstest.A("a.carrier.test", 300, "127.0.0.2"))
	q, qb := query(t, 0x1234, "_sip._udp.carrier.test", dns.TypeSRV)
	resp := z.Answer(qb, false)
	m, err := parseAnswer(resp, q)
	if err != nil || len(m.ans) != 1 || len(m.extra) != 1 || m.ans[0].host != "a.carrier.test" || m.ans[0].port != 5080 || m.ans[0].wt != 5 || m.extra[0].addr != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("parsed %+v %v", m, err)
	}
	qn, qnb := query(t, 9, "Carrier.Test", dns.TypeNAPTR)
	mn, err := parseAnswer(z.Answer(qnb, false), qn)
	if err != nil || len(mn.ans) != 1 || mn.ans[0].svc != "SIP+D2U" || mn.ans[0].flags != "s" || mn.ans[0].host != "x.test" || mn.ans[0].prio != 10 {
		t.Fatalf("NAPTR parsed %+v %v", mn, err)
	}
	other, _ := query(t, 0x1235, "_sip._udp.carrier.test", dns.TypeSRV)
	if _, err := parseAnswer(resp, other); err != errDNSMismatch {
		t.Fatalf("wrong id: %v", err)
	}
	other, _ = query(t, 0x1234, "_sip._tcp.carrier.test", dns.TypeSRV)
	if _, err := parseAnswer(resp, other); err != errDNSMismatch {
		t.Fatalf("wrong name: %v", err)
	}
	other, _ = query(t, 0x1234, "_sip._udp.carrier.test", dns.TypeA)
	if _, err := parseAnswer(resp, other); err != errDNSMismatch {
		t.Fatalf("wrong type: %v", err)
	}
	for _, name := range []string{strings.Repeat("a", 64) + ".test", "a..test", "", "."} {
		if _, err := newQuery(name, dns.TypeA); err == nil {
			t.Fatalf("name %q accepted", name)
		}
	}
}

// Every prefix of a valid answer, and every single-byte change of it,
// decodes to an error or to a message, never a panic; a prefix never
// yields a record the whole answer does not have (the library accepts a
// message cut after a whole record as one with fewer records).
func TestParseAnswerMalformed(t *testing.T) {
	z := dnstest.New()
	z.Add(dnstest.SRV("_sip._udp.carrier.test", 300, 10, 5, 5080, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 20, 5, 5090, "b.carrier.test"))
	z.AddExtra("_sip._udp.carrier.test", dnstest.TypeSRV, dnstest.A("a.carrier.test", 300, "127.0.0.2"))
	q, qb := query(t, 0x1234, "_sip._udp.carrier.test", dns.TypeSRV)
	resp := z.Answer(qb, false)
	full, err := parseAnswer(resp, q)
	if err != nil || len(full.ans) != 2 || len(full.extra) != 1 {
		t.Fatalf("parsed %+v %v", full, err)
	}
	isPrefix := func(part, whole []dnsRR) bool {
		return len(part) <= len(whole) && slices.Equal(part, whole[:len(part)])
	}
	for n := 0; n < len(resp); n++ {
		m, err := parseAnswer(resp[:n], q)
		if err == nil && (!isPrefix(m.ans, full.ans) || !isPrefix(m.extra, full.extra) || len(m.auth) != 0) {
			t.Fatalf("prefix of %d bytes: %+v", n, m)
		}
	}
	b := append([]byte(nil), resp...)
	for i := range b {
		for _, v := range []byte{0, 0xff, 0xc0, 0x3f} {
			old := b[i]
			b[i] = v
			parseAnswer(b, q)
			b[i] = old
		}
	}
	// A compression pointer to itself as the first answer's owner.
	loop := append(append([]byte(nil), resp[:len(qb)-11]...), 0xc0, byte(len(qb)-11))
	loop[7] = 1
	if _, err := parseAnswer(loop, q); err == nil {
		t.Fatal("a compression loop decoded")
	}
}

func FuzzParseAnswer(f *testing.F) {
	z := dnstest.New(dnstest.SRV("s.test", 300, 10, 5, 5080, "a.test"), dnstest.NAPTR("s.test", 300, 1, 1, "s", "SIP+D2U", "x.test"), dnstest.CNAME("s.test", 1, "c.test"))
	q, qb := query(f, 7, "s.test", dns.TypeSRV)
	f.Add(z.Answer(qb, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseAnswer(b, q)
	})
}

// contains reports whether one of the logged queries contains s.
func contains(queries []string, s string) bool {
	for _, q := range queries {
		if strings.Contains(q, s) {
			return true
		}
	}
	return false
}
