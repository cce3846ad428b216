package uac

import (
	"testing"

	"switchboard/parser"
)

// BenchmarkAnswer: the digest answer to one challenge (HA1 from the
// password, cnonce, response, the header written).
func BenchmarkAnswer(b *testing.B) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		b.Run(alg, func(b *testing.B) {
			sc := newScratch()
			var ch parser.Auth
			parser.ParseAuth([]byte(`Digest realm="carrier.example", nonce="5f2b7c9e0a1d", qop="auth", algorithm=`+alg+`, opaque="op"`), &ch)
			a, _ := parseAlgorithm(ch.Algorithm)
			c := &cred{user: "trunk1", password: "s3cret-password"}
			method, uri := []byte("INVITE"), []byte("sip:+4930123456@192.0.2.10:5060")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, ok := sc.answer(&ch, a, c, method, uri, nil); !ok {
					b.Fatal("no answer")
				}
			}
		})
	}
}

// BenchmarkToken: sealing the From token of an INVITE (ReplaceFrom) and
// opening it on an in-dialog request (Restore).
func BenchmarkToken(b *testing.B) {
	f := build(b, nil, nil, nil)
	var m parser.Message
	if err := m.Parse([]byte(invite("sip:+4930123@127.0.0.5:5090"))); err != nil {
		b.Fatal(err)
	}
	sc := newScratch()
	orig, repl := []byte("sip:alice@example.com"), []byte("sip:+4930100@carrier.example")
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f.u.seal(sc, &m, paramFrom, orig, repl)
		}
	})
	f.u.seal(sc, &m, paramFrom, orig, repl)
	tok := append([]byte(nil), sc.tok...)
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, ok := f.u.open(sc, &m, paramFrom, tok, true); !ok {
				b.Fatal("does not open")
			}
		}
	})
}
