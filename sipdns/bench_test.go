package sipdns

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"switchboard/sipdns/dnstest"
)

// carrierZone is the usual RFC 3263 chain: NAPTR → SRV (addresses in the
// additional section) for UDP and TCP.
func carrierZone(b *testing.B) *dnstest.Zone {
	z := dnstest.NewZone(b,
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 20, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, 5060, "a.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 20, 0, 5060, "b.carrier.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, 5060, "a.carrier.test"),
	)
	for _, srv := range []string{"_sip._udp.carrier.test", "_sip._tcp.carrier.test"} {
		z.AddExtra(srv, dnstest.TypeSRV, dnstest.A("a.carrier.test", 300, "127.0.0.2"), dnstest.A("b.carrier.test", 300, "127.0.0.3"))
	}
	return z
}

var benchHop = NextHop{Host: "carrier.test", Supported: udpTCP}

// BenchmarkCached is what the proxy does for every request to a hostname
// next hop once its answers are cached: no DNS message is built or read.
func BenchmarkCached(b *testing.B) {
	z := carrierZone(b)
	r := New(Config{Server: z.Addr, Timeout: 2 * time.Second})
	if _, ok := r.Cached(benchHop); ok {
		b.Fatal("cached before the first resolution")
	}
	resolveBench(b, r)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ts, ok := r.Cached(benchHop); !ok || len(ts) != 3 {
			b.Fatalf("cached: %v %d", ok, len(ts))
		}
	}
}

// BenchmarkResolveMiss is one whole resolution with no cache (NAPTR and
// two SRV queries over UDP to a server on loopback): the cost of a miss,
// mostly sockets and the goroutine, and the DNS messages built and read.
func BenchmarkResolveMiss(b *testing.B) {
	z := carrierZone(b)
	r := New(Config{Server: z.Addr, Timeout: 2 * time.Second, CacheSize: -1})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resolveBench(b, r)
	}
}

// BenchmarkWireFormat is the DNS wire format alone: one SRV query built
// and its answer (two SRV records, two addresses in the additional
// section) decoded.
func BenchmarkWireFormat(b *testing.B) {
	z := carrierZone(b)
	const name = "_sip._udp.carrier.test"
	_, qb := query(b, 7, name, dns.TypeSRV)
	resp := z.Answer(qb, true)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q, err := newQuery(name, dns.TypeSRV)
		if err != nil {
			b.Fatal(err)
		}
		q.Id = 7
		if _, err = q.Pack(); err != nil {
			b.Fatal(err)
		}
		m, err := parseAnswer(resp, q)
		if err != nil || len(m.ans) != 2 || len(m.extra) != 2 {
			b.Fatalf("%v %+v", err, m)
		}
	}
}

func resolveBench(b *testing.B, r *Resolver) {
	ch := make(chan error, 1)
	r.Resolve(benchHop, func(ts []Target, err error) {
		if err == nil && len(ts) != 3 {
			b.Errorf("%d targets", len(ts))
		}
		ch <- err
	})
	if err := <-ch; err != nil {
		b.Fatal(err)
	}
}
