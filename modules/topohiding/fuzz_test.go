package topohiding

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"switchboard/modules/dialog"
	"switchboard/parser"
)

// FuzzToken: a token opens for the Call-ID it was made for, with the
// party and dialog id it names, and for no other Call-ID; any bytes a
// party puts in the Request-URI's parameter open only when they are
// exactly the token we would write (no other spelling of it: a MAC of
// 64 bits is no proof against a second encoding).
func FuzzToken(f *testing.F) {
	f.Add(true, uint64(1), []byte("a84b4c76e66710@pc33.atlanta.com"), []byte("c00000000000000010123456789abcdef"))
	f.Add(false, uint64(1<<64-1), []byte(""), []byte("effffffffffffffffFFFFFFFFFFFFFFFF"))
	f.Add(false, uint64(0), []byte("x"), []byte("e0000000000000000"))
	th := &TopoHiding{}
	key := sha256.Sum256([]byte("fuzz"))
	th.macs.New = func() any { return &signer{mac: hmac.New(sha256.New, key[:])} }
	f.Fuzz(func(t *testing.T, caller bool, id uint64, callID, tok []byte) {
		side := dialog.Callee
		if caller {
			side = dialog.Caller
		}
		if id != 0 {
			own := th.appendToken(nil, side, id, callID)
			if s, i, ok := th.openToken(own, callID); !ok || s != side || i != id {
				t.Fatalf("token %q of %v %d for %q opens as %v %d %v", own, side, id, callID, s, i, ok)
			}
			if _, _, ok := th.openToken(own, append(callID, 'x')); ok {
				t.Fatalf("token %q for %q opens for %q", own, callID, append(callID, 'x'))
			}
		}
		if s, i, ok := th.openToken(tok, callID); ok {
			if want := th.appendToken(nil, s, i, callID); string(want) != string(tok) {
				t.Fatalf("%q opens as %v %d, whose token is %q", tok, s, i, want)
			}
		}
	})
}

// FuzzRouteURI: the next hop Match sends a hidden call's request to is
// the URI the parse gives for the first value of the party's route set
// (its Record-Route values joined as the dialog keeps them), nil for a
// value without "<" ">". The Record-Route is whatever the party's proxies
// wrote.
func FuzzRouteURI(f *testing.F) {
	for _, rr := range []string{
		"Record-Route: <sip:10.0.0.7;lr>, <sip:10.0.0.8;lr>\r\n",
		"Record-Route: \"a, <b>\\\"\" <sip:p.example.net;lr;x=1>\r\nRecord-Route: <sip:q;lr>\r\n",
		"Record-Route: Proxy <sip:[2001:db8::1]:5070;lr>;x=\"<y>\"\r\n",
		"Record-Route: sip:bare.example.net;lr\r\n",
	} {
		f.Add([]byte(rr))
	}
	head := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n"
	f.Fuzz(func(t *testing.T, rr []byte) {
		data := append([]byte(head), rr...)
		data = append(data, "Content-Length: 0\r\n\r\n"...)
		var m parser.Message
		if m.Parse(data) != nil {
			return
		}
		var route []byte
		var first parser.NameAddr
		n := 0
		it := m.NameAddrs(parser.HdrRecordRoute)
		for it.Next() {
			if n == 0 {
				first = it.NameAddr
			} else {
				route = append(route, ", "...)
			}
			route = append(route, it.NameAddr.Raw...)
			n++
		}
		if it.Err() != nil || n == 0 {
			return
		}
		var want []byte
		if first.Bracketed {
			want = first.URI
		}
		if got := routeURI(route); string(got) != string(want) {
			t.Fatalf("route set %q: first URI %q, the parse %q", route, got, want)
		}
	})
}
