// Package parsercompare benchmarks switchboard/parser against the parser
// of github.com/emiago/sipgo on the same messages, with the same benchmark
// names, so benchstat can put them side by side:
//
//	go test -run '^$' -bench . -benchmem -count 6 -benchtime 200ms . > bench.txt
//	benchstat -col /impl bench.txt
//
// It is its own module so sipgo never enters the main module's go.mod.
package parsercompare

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"

	"switchboard/parser"
)

// The message kinds of a call and a registration, shared with the parser's
// own benchmarks.
var kinds = []string{"invite", "register", "ringing", "ok200", "ack", "bye", "options"}

func load(tb testing.TB) [][]byte {
	out := make([][]byte, len(kinds))
	for i, k := range kinds {
		b, err := os.ReadFile(filepath.Join("../../parser/testdata/bench", k+".sip"))
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

var sink int

// --- switchboard -----------------------------------------------------------

func sbFields(m *parser.Message) int {
	n := len(m.CallID()) + int(m.CSeq().Num) + len(m.FromTag()) + len(m.ToTag())
	n += len(m.TopVia().Branch) + len(m.TopVia().Host)
	mf, _ := m.MaxForwards()
	n += mf + len(m.Body())
	if m.IsRequest() {
		n += len(m.RURI().Host) + len(m.RURI().User)
	}
	vi := m.Vias()
	for vi.Next() {
		n += len(vi.Via.Branch)
	}
	for _, h := range [...]parser.HeaderName{parser.HdrRoute, parser.HdrRecordRoute, parser.HdrContact} {
		it := m.NameAddrs(h)
		for it.Next() {
			n += len(it.NameAddr.URI)
		}
	}
	return n
}

var (
	newVia  = []byte("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-sb-0123456789abcdef")
	newRR   = []byte("<sip:203.0.113.5;lr>")
	rcvAddr = []byte("192.0.2.99")
)

func sbEdit(e *parser.Editor, m *parser.Message) {
	e.Reset(m)
	if m.IsRequest() {
		e.SetViaReceived(rcvAddr, 5062)
		e.InsertVia(newVia)
		e.RemoveFirstRoute()
		if m.Method() == parser.MethodInvite {
			e.InsertRecordRoute(newRR)
		}
		e.DecrementMaxForwards()
	} else {
		e.RemoveTopVia()
	}
}

// --- sipgo -----------------------------------------------------------------

func sgFields(msg sip.Message) int {
	n := 0
	var hs interface {
		CallID() *sip.CallIDHeader
		CSeq() *sip.CSeqHeader
		From() *sip.FromHeader
		To() *sip.ToHeader
		Via() *sip.ViaHeader
		MaxForwards() *sip.MaxForwardsHeader
		GetHeaders(string) []sip.Header
		Body() []byte
	}
	switch m := msg.(type) {
	case *sip.Request:
		hs = m
		n += len(m.Recipient.Host) + len(m.Recipient.User)
	case *sip.Response:
		hs = m
	}
	n += len(hs.CallID().Value()) + int(hs.CSeq().SeqNo)
	if t, ok := hs.From().Params.Get("tag"); ok {
		n += len(t)
	}
	if t, ok := hs.To().Params.Get("tag"); ok {
		n += len(t)
	}
	v := hs.Via()
	b, _ := v.Params.Get("branch")
	n += len(b) + len(v.Host)
	if mf := hs.MaxForwards(); mf != nil {
		n += int(*mf)
	}
	n += len(hs.Body())
	for _, h := range hs.GetHeaders("Via") {
		b, _ := h.(*sip.ViaHeader).Params.Get("branch")
		n += len(b)
	}
	for _, name := range [...]string{"Route", "Record-Route", "Contact"} {
		for _, h := range hs.GetHeaders(name) {
			n += len(h.Value())
		}
	}
	return n
}

func sgEdit(msg sip.Message) {
	switch m := msg.(type) {
	case *sip.Request:
		if v := m.Via(); v != nil && v.Params.Has("rport") {
			v.Params.Add("received", string(rcvAddr))
			v.Params.Add("rport", "5062")
		}
		via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
			Host: "203.0.113.5", Port: 5060, Params: sip.NewParams()}
		via.Params.Add("branch", "z9hG4bK-sb-0123456789abcdef")
		m.PrependHeader(via)
		m.RemoveHeader("Route")
		if m.Method == sip.INVITE {
			rr := &sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "203.0.113.5", UriParams: sip.NewParams()}}
			rr.Address.UriParams.Add("lr", "")
			m.PrependHeader(rr)
		}
		if mf := m.MaxForwards(); mf != nil {
			mf.Dec()
		}
	case *sip.Response:
		m.RemoveHeader("Via")
	}
}

// --- benchmarks ------------------------------------------------------------

func BenchmarkParse(b *testing.B) {
	msgs := load(b)
	for i, k := range kinds {
		data := msgs[i]
		b.Run("msg="+k+"/impl=switchboard", func(b *testing.B) {
			var m parser.Message
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("msg="+k+"/impl=sipgo", func(b *testing.B) {
			p := sip.NewParser()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseSIP(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseFields(b *testing.B) {
	msgs := load(b)
	for i, k := range kinds {
		data := msgs[i]
		b.Run("msg="+k+"/impl=switchboard", func(b *testing.B) {
			var m parser.Message
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
				sink += sbFields(&m)
			}
		})
		b.Run("msg="+k+"/impl=sipgo", func(b *testing.B) {
			p := sip.NewParser()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				msg, err := p.ParseSIP(data)
				if err != nil {
					b.Fatal(err)
				}
				sink += sgFields(msg)
			}
		})
	}
}

func BenchmarkParseEditWrite(b *testing.B) {
	msgs := load(b)
	for i, k := range kinds {
		data := msgs[i]
		b.Run("msg="+k+"/impl=switchboard", func(b *testing.B) {
			var m parser.Message
			var e parser.Editor
			out := make([]byte, 0, 4096)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
				sbEdit(&e, &m)
				out = e.AppendTo(out[:0])
			}
			sink += len(out)
		})
		b.Run("msg="+k+"/impl=sipgo", func(b *testing.B) {
			p := sip.NewParser()
			var out bytes.Buffer
			out.Grow(4096)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				msg, err := p.ParseSIP(data)
				if err != nil {
					b.Fatal(err)
				}
				sgEdit(msg)
				out.Reset()
				msg.StringWrite(&out)
			}
			sink += out.Len()
		})
	}
}

// TestSameMessages checks both parsers read the benchmark messages alike,
// so the comparison is between equal work.
func TestSameMessages(t *testing.T) {
	msgs := load(t)
	p := sip.NewParser()
	for i, data := range msgs {
		var m parser.Message
		if err := m.Parse(data); err != nil {
			t.Fatalf("%s: switchboard: %v", kinds[i], err)
		}
		msg, err := p.ParseSIP(data)
		if err != nil {
			t.Fatalf("%s: sipgo: %v", kinds[i], err)
		}
		var cid string
		switch x := msg.(type) {
		case *sip.Request:
			cid = x.CallID().Value()
		case *sip.Response:
			cid = x.CallID().Value()
		}
		if cid != string(m.CallID()) {
			t.Errorf("%s: Call-ID %q vs %q", kinds[i], cid, m.CallID())
		}
		// Both edited outputs must parse again.
		var e parser.Editor
		sbEdit(&e, &m)
		var m2 parser.Message
		if err := m2.Parse(e.AppendTo(nil)); err != nil {
			t.Errorf("%s: switchboard edited: %v", kinds[i], err)
		}
		sgEdit(msg)
		if _, err := p.ParseSIP([]byte(msg.String())); err != nil {
			t.Errorf("%s: sipgo edited: %v", kinds[i], err)
		}
	}
}
