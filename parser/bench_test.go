package parser

import (
	"os"
	"path/filepath"
	"testing"
)

// benchMessages are the message kinds of a call and a registration, in
// testdata/bench (also used by bench/parsercompare).
var benchMessages = []string{"invite", "register", "ringing", "ok200", "ack", "bye", "options"}

func loadBench(tb testing.TB) [][]byte {
	out := make([][]byte, len(benchMessages))
	for i, n := range benchMessages {
		b, err := os.ReadFile(filepath.Join("testdata/bench", n+".sip"))
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func BenchmarkParse(b *testing.B) {
	msgs := loadBench(b)
	for i, name := range benchMessages {
		data := msgs[i]
		b.Run(name, func(b *testing.B) {
			var m Message
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sink keeps field reads from being optimised away.
var sink int

// readFields reads what a proxy reads from every message, plus the typed
// fields of the headers each kind carries.
func readFields(m *Message) int {
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
	for _, h := range [...]HeaderName{HdrRoute, HdrRecordRoute, HdrContact} {
		it := m.NameAddrs(h)
		for it.Next() {
			n += len(it.NameAddr.URI)
		}
	}
	ti := m.Tokens(HdrSupported)
	for ti.Next() {
		n += len(ti.Token)
	}
	var a Auth
	if m.Auth(HdrAuthorization, &a) {
		n += len(a.Response) + len(a.Nonce)
	}
	if e, ok := m.Expires(); ok {
		n += int(e)
	}
	return n
}

func BenchmarkParseFields(b *testing.B) {
	msgs := loadBench(b)
	for i, name := range benchMessages {
		data := msgs[i]
		b.Run(name, func(b *testing.B) {
			var m Message
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
				sink += readFields(&m)
			}
		})
	}
}

var (
	proxyVia = []byte("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-sb-0123456789abcdef")
	proxyRR  = []byte("<sip:203.0.113.5;lr>")
	proxyRcv = []byte("192.0.2.99")
)

// proxyEdit applies what a stateful proxy does to a message it forwards:
// requests get a Via, Record-Route, Max-Forwards and loose-route
// handling; responses lose their top Via.
func proxyEdit(e *Editor, m *Message) {
	e.Reset(m)
	if m.IsRequest() {
		e.SetViaReceived(proxyRcv, 5062)
		e.InsertVia(proxyVia)
		e.RemoveFirstRoute()
		if m.Method() == MethodInvite {
			e.InsertRecordRoute(proxyRR)
		}
		e.DecrementMaxForwards()
	} else {
		e.RemoveTopVia()
	}
}

func BenchmarkParseEditWrite(b *testing.B) {
	msgs := loadBench(b)
	for i, name := range benchMessages {
		data := msgs[i]
		b.Run(name, func(b *testing.B) {
			var m Message
			var e Editor
			out := make([]byte, 0, 4096)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
				proxyEdit(&e, &m)
				out = e.AppendTo(out[:0])
			}
			sink += len(out)
		})
	}
}
