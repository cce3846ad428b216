package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"sync/atomic"
	"testing"

	"switchboard/parser"
	"switchboard/shards"
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

// FuzzNonce: a nonce opens, with its seq, for the address it was sent to
// (its IPv6 /64) and for no other; any bytes an answer puts in the nonce
// parameter open only when they are the nonce we sent (a flip of any bit,
// or another spelling of the same bytes, is not ours). The nonce is
// checked before anything else of an unauthenticated answer.
func FuzzNonce(f *testing.F) {
	f.Add([]byte{192, 0, 2, 5}, []byte{0, 0, 0, 0}, uint32(1), uint8(0), byte(1))
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 15: 1}, []byte{0x20, 1, 0xd, 0xb8, 15: 2}, uint32(7), uint8(31), byte('\n'^'A'))
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 15: 1}, []byte{0x20, 1, 0xd, 0xb9, 15: 1}, uint32(1<<32-1), uint8(7), byte(0))
	a := newNonceAuth()
	f.Fuzz(func(t *testing.T, ip, other []byte, seq uint32, at uint8, flip byte) {
		src, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		a.seq.Store(seq - 1) // the nonce gets seq (or 1 after 0): an input is one nonce
		n := a.appendNonce(nil, src)
		exp, seq, ok := a.decodeNonce(n, src)
		if !ok || exp != a.clock.Now()/1000+a.lifetime || seq != a.seq.Load() {
			t.Fatalf("nonce %q for %v: opens as %d %d %v", n, src, exp, seq, ok)
		}
		if o, ok := netip.AddrFromSlice(other); ok {
			same := o.Unmap() == src.Unmap() || o.Unmap().Is6() && src.Unmap().Is6() &&
				netip.PrefixFrom(o.Unmap(), 64).Masked() == netip.PrefixFrom(src.Unmap(), 64).Masked()
			if _, _, ok := a.decodeNonce(n, o); ok != same {
				t.Fatalf("nonce for %v from %v: opens %v", src, o, ok)
			}
		}
		m := bytes.Clone(n)
		m[int(at)%len(m)] ^= flip
		if _, _, ok := a.decodeNonce(m, src); ok && !bytes.Equal(m, n) {
			t.Fatalf("nonce %q for %v opens as %q", n, src, m)
		}
	})
}

// newNonceAuth is an Auth that issues and checks nonces and nothing else,
// on a clock that stands still.
func newNonceAuth() *Auth {
	a := &Auth{clock: shards.NewManualClock(1_700_000_000_000), lifetime: 30}
	secret := []byte("fuzz secret")
	a.macs.New = func() any { return &signer{h: hmac.New(sha256.New, secret)} }
	a.slots = make([]atomic.Uint64, nonceSlots)
	return a
}

// TestNonceOneSpelling: a nonce whose last byte is zero (one in 256)
// with a line feed in place of its last character is not ours: the
// base64 decoder skips the line feed and decoded the rest to 23 bytes
// and the zero the array already held.
func TestNonceOneSpelling(t *testing.T) {
	a := newNonceAuth()
	src := netip.MustParseAddr("192.0.2.5")
	for i := 0; i < 100_000; i++ {
		n := a.appendNonce(nil, src)
		var raw [nonceRaw]byte
		base64.RawURLEncoding.Decode(raw[:], n)
		if raw[nonceRaw-1] != 0 {
			continue
		}
		if _, _, ok := a.decodeNonce(n, src); !ok {
			t.Fatalf("nonce %q does not open", n)
		}
		for _, c := range []byte{'\n', '\r'} {
			m := append(n[:len(n)-1:len(n)-1], c)
			if _, _, ok := a.decodeNonce(m, src); ok {
				t.Fatalf("nonce %q opens as %q", n, m)
			}
		}
		return
	}
	t.Fatal("no nonce ending in a zero byte in 100,000")
}
