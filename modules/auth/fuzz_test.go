package auth

import (
	"bytes"
	"testing"

	"switchboard/parser"
)

// caseFlipped returns a copy of u with its scheme in the other case: the
// same SIP URI (RFC 3261 §19.1.4), not the same bytes.
func caseFlipped(u []byte) []byte {
	c := bytes.Clone(u)
	for i := 0; i < len(c) && c[i] != ':'; i++ {
		if x := c[i] | 0x20; x >= 'a' && x <= 'z' {
			c[i] ^= 0x20
		}
	}
	return c
}

// FuzzSameResource: the digest uri check, which any sender of an
// Authorization reaches before its nonce is checked, is an equivalence on
// SIP URIs: a SIP URI names the same resource as itself spelt otherwise,
// and a as b is b as a. Both URIs are the sender's.
func FuzzSameResource(f *testing.F) {
	for _, c := range [][2]string{
		{"sip:alice@EXAMPLE.com", "SIP:alice@example.COM"},
		{"sip:%61lice@example.com;transport=tcp", "sip:alice@example.com"},
		{"sip:alice@example.com;a=1;b=2", "sip:alice@example.com;b=2;a=1"},
		{"sip:alice@example.com?subject=x&priority=urgent", "sip:alice@example.com?priority=urgent&subject=x"},
		{"sip:alice@example.com;a=1", "sip:alice@example.com;a=1;A=2"},
		{"sips:alice@example.com;maddr=192.0.2.1", "sips:alice@example.com;user=phone"},
		{"tel:+15551234", "TEL:+15551234"},
	} {
		f.Add([]byte(c[0]), []byte(c[1]))
	}
	f.Fuzz(func(t *testing.T, x, y []byte) {
		var a parser.URI
		if a.Parse(x) == nil && (a.Scheme == parser.SchemeSIP || a.Scheme == parser.SchemeSIPS) {
			if fx := caseFlipped(x); !sameResource(x, fx) {
				t.Fatalf("%q is not the same resource as %q", x, fx)
			}
		}
		if sameResource(x, y) != sameResource(y, x) {
			t.Fatalf("%q as %q is %v, the other way round %v", x, y, sameResource(x, y), sameResource(y, x))
		}
	})
}
