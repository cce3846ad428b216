package pike

import (
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/shards"
	"switchboard/transport"
)

// BenchmarkCheck is the cost of pike_check_req for a request: "pass" over
// 65,536 sources each under the limit, "banned" for a source already
// banned (its requests on an open connection), "exempt" for a trusted
// address.
func BenchmarkCheck(b *testing.B) {
	srcs := make([]netip.Addr, 1<<16)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	run := func(b *testing.B, p *Pike, pick func(i int) netip.Addr) {
		b.ReportAllocs()
		b.ResetTimer()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1)) * 7919
			for pb.Next() {
				i++
				p.CheckAddr(pick(i))
			}
		})
	}
	b.Run("pass", func(b *testing.B) {
		s := DefaultSettings()
		s.MaxRequests = 1_000_000
		p, _ := newPike(b, s, nil)
		run(b, p, func(i int) netip.Addr { return srcs[i&(len(srcs)-1)] })
	})
	b.Run("banned", func(b *testing.B) {
		p, _ := newPike(b, nil, nil)
		p.Ban(srcs[0], time.Hour, Manual)
		run(b, p, func(int) netip.Addr { return srcs[0] })
	})
	b.Run("exempt", func(b *testing.B) {
		p, _ := newPike(b, nil, nil)
		lo := netip.MustParseAddr("127.0.0.1")
		run(b, p, func(int) netip.Addr { return lo })
	})
}

// BenchmarkAdmit is the transport filter's cost per datagram: with no ban
// in force (one atomic load), with bans in force for a source not banned,
// and for a banned source.
func BenchmarkAdmit(b *testing.B) {
	p, _ := newPike(b, nil, nil)
	src := netip.MustParseAddr("192.0.2.1")
	b.Run("no-bans", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			p.Admit(src)
		}
	})
	for i := 0; i < 1000; i++ {
		p.Ban(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), time.Hour, Flood)
	}
	b.Run("not-banned", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			p.Admit(src)
		}
	})
	banned := netip.AddrFrom4([4]byte{198, 51, 0, 7})
	b.Run("banned", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			p.Admit(banned)
		}
	})
}

// BenchmarkBannedDatagram sends datagrams through a real transport with
// pike's filter: "served" from a source that is not banned (the handler
// gets them), "banned" from one that is (dropped before parsing). The
// sender's sendto is in both; their ratio is what a ban saves the
// receiver, the rest of the proxy's work (parse, transaction, route) not
// even counted.
func BenchmarkBannedDatagram(b *testing.B) {
	for _, name := range []string{"served", "banned"} {
		b.Run(name, func(b *testing.B) {
			clock := shards.NewManualClock(1_700_000_000_000)
			p, err := New(clock, *DefaultSettings(), nil, 8)
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Uint64
			tr, err := transport.New(transport.Config{
				Listeners:  []transport.ListenerConfig{{Proto: transport.UDP, Addr: "127.0.0.1:0"}},
				UDPReaders: 1, SocketBuffer: 4 << 20, Admit: p.Admit,
			}, transport.HandlerFunc(func(*transport.Packet) { handled.Add(1) }))
			if err != nil {
				b.Fatal(err)
			}
			if err := tr.Start(); err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.3")})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if name == "banned" {
				p.Ban(netip.MustParseAddr("127.0.0.3"), time.Hour, Manual)
			}
			dst := tr.Listeners()[0].Local
			msg := []byte(options(1))
			seen := func() uint64 { return handled.Load() + tr.Stats().AdmitDrops }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.WriteToUDPAddrPort(msg, dst); err != nil {
					b.Fatal(err)
				}
				for uint64(i+1)-seen() > 32 {
					runtime.Gosched()
				}
			}
			for seen() < uint64(b.N) {
				runtime.Gosched()
			}
		})
	}
}

// BenchmarkRequest is what a ban saves: a request from a source that is
// served goes through the parser, the transaction core, the route with
// pike's Check and a stateless 200 ("served"); one from a banned source
// costs the transport's Admit call only ("banned", as BenchmarkAdmit).
func BenchmarkRequest(b *testing.B) {
	h := newHarness(b, nil, nil)
	h.Keep = false
	msgs := make([][]byte, 4096)
	for i := range msgs {
		msgs[i] = []byte(options(200000 + i))
	}
	pkt := &transport.Packet{Listener: h.Listener(transport.UDP, netip.Addr{}), Proto: transport.UDP}
	srcs := make([]netip.AddrPort, 1024)
	for i := range srcs {
		srcs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 5060)
	}
	b.Run("served", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if i%1024 == 0 {
				h.Clock.Advance(time.Second) // 1024 sources, one request each per second
			}
			pkt.Data, pkt.Src = msgs[i%len(msgs)], srcs[i%len(srcs)]
			h.Handle(pkt)
		}
	})
	banned := netip.MustParseAddr("192.0.2.66")
	h.p.Ban(banned, time.Hour, Manual)
	b.Run("banned", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if h.p.Admit(banned) {
				b.Fatal("admitted")
			}
		}
	})
}
