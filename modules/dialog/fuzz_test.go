package dialog

import (
	"bytes"
	"testing"

	"switchboard/parser"
)

// caseFlipped returns a copy of u with its scheme in the other case: the
// same URI (RFC 3261 §19.1.4), not the same bytes.
func caseFlipped(u []byte) []byte {
	c := bytes.Clone(u)
	for i := 0; i < len(c) && c[i] != ':'; i++ {
		if x := c[i] | 0x20; x >= 'a' && x <= 'z' {
			c[i] ^= 0x20
		}
	}
	return c
}

// FuzzSameURI: the comparison a request's Request-URI and Route go
// through (ValidateDialog) is an equivalence on the URIs that parse: a
// URI is the same as itself spelt otherwise (what goesTo's byte-for-byte
// short way answers for the copy), and a is b when b is a. Both URIs are
// the sender's: the target and route as the party wrote them, and the
// request's.
func FuzzSameURI(f *testing.F) {
	for _, c := range [][2]string{
		{"sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"},
		{"sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"},
		{"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"},
		{"sip:bob@[2001:DB8::1]:5080", "sip:bob@[2001:db8:0:0::1]:5080"},
		{"sips:bob@192.0.2.4", "sips:bob@192.0.2.4:5061;transport=tls"},
		{"sip:carol@chicago.com;x=1", "sip:carol@chicago.com;x=1;X=2"},
		{"tel:+1-201-555-0123;phone-context=x", "TEL:+1-201-555-0123;phone-context=X"},
	} {
		f.Add([]byte(c[0]), []byte(c[1]))
	}
	f.Fuzz(func(t *testing.T, x, y []byte) {
		var a, b, a2 parser.URI
		if a.Parse(x) != nil {
			return
		}
		if a2.Parse(caseFlipped(x)) == nil && !sameURI(&a, &a2, true) {
			t.Fatalf("%q is not the same URI as %q", x, caseFlipped(x))
		}
		if b.Parse(y) != nil {
			return
		}
		for _, hostPort := range []bool{true, false} {
			if sameURI(&a, &b, hostPort) != sameURI(&b, &a, hostPort) {
				t.Fatalf("hostPort %v: %q = %q is %v, the other way round %v", hostPort, x, y, sameURI(&a, &b, hostPort), sameURI(&b, &a, hostPort))
			}
		}
	})
}
