package nathelper

import (
	"net/netip"
	"testing"

	"switchboard/parser"
	"switchboard/routing"
)

// BenchmarkNATUACTest: nat_uac_test on an INVITE with SDP from a phone
// behind NAT (the first test holds) and from one that is not (every test
// runs, the SDP is parsed), inside a real route.
func BenchmarkNATUACTest(b *testing.B) {
	f := build(b, nil, nil)
	for _, tc := range []struct {
		name, via, contact, sdpAddr string
		flags                       Flags
	}{
		{"nated-19", "192.168.1.10:5062", "192.168.1.10:5062", "192.168.1.10", DefaultFlags},
		{"direct-19", "127.0.0.1:40000", "127.0.0.1:40000", "127.0.0.1", DefaultFlags},
		{"direct-all", "127.0.0.1:40000", "127.0.0.1:40000", "127.0.0.1", allFlags},
	} {
		b.Run(tc.name, func(b *testing.B) {
			msg := req("INVITE", "sip:bob@127.0.0.5:5080", tc.via, "Contact: <sip:alice@"+tc.contact+">\r\n", phoneSDP(tc.sdpAddr))
			f.h.InRoute(b, "127.0.0.1:40000", msg, func(c *routing.Ctx) {
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f.n.NATUACTest(c, tc.flags)
				}
			})
		})
	}
}

// BenchmarkFixContact: what fix_nated_contact does per request beside
// copying the new host:port into the transaction: find the Contact's
// host:port and record its replacement.
func BenchmarkFixContact(b *testing.B) {
	var m parser.Message
	if err := m.Parse([]byte(req("INVITE", "sip:bob@127.0.0.5:5080", "192.168.1.10:5062",
		"Contact: \"Alice\" <sip:alice@192.168.1.10:5062;transport=udp>;+sip.instance=\"<urn:uuid:1>\"\r\n", ""))); err != nil {
		b.Fatal(err)
	}
	var ed parser.Editor
	var buf [64]byte
	out := make([]byte, 0, 1024)
	src := netip.MustParseAddr("198.51.100.7")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ed.Reset(&m)
		hp := appendHostPort(buf[:0], src, 40000)
		it := m.NameAddrs(parser.HdrContact)
		for it.Next() {
			ed.Replace(hostPortView(&it.NameAddr), hp)
		}
		out = ed.AppendTo(out[:0])
	}
}

// BenchmarkFixSDP: fix_nated_sdp's parse and rewrite of a phone's offer
// (c= and o=, and nortpproxy added).
func BenchmarkFixSDP(b *testing.B) {
	f := build(b, nil, nil)
	var m parser.Message
	if err := m.Parse([]byte(req("INVITE", "sip:bob@127.0.0.5:5080", "192.168.1.10:5062", "", phoneSDP("192.168.1.10")))); err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("198.51.100.7")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w, body := f.n.rewriteSDP(&m, src, DefaultSDPFlags|AddNoRTPProxy)
		if len(body) == 0 {
			b.Fatal("nothing rewritten")
		}
		f.n.sdpWork.Put(w)
	}
}
