package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"hash/maphash"
	"net/netip"

	"switchboard/parser"
	"switchboard/routing"
)

// algorithm is a digest algorithm (RFC 7616 §3.4.2): the hash and whether
// it is the -sess variant.
type algorithm struct {
	h    uint8 // algMD5 or algSHA256
	sess bool
}

const (
	algMD5 = iota
	algSHA256
	numAlgs
)

var hexSize = [numAlgs]int{32, 64}

// parseAlgorithm maps the algorithm parameter; empty means MD5 (RFC 2617).
func parseAlgorithm(v []byte) (algorithm, bool) {
	switch {
	case len(v) == 0 || parser.EqualFold(v, []byte("MD5")):
		return algorithm{algMD5, false}, true
	case parser.EqualFold(v, []byte("MD5-sess")):
		return algorithm{algMD5, true}, true
	case parser.EqualFold(v, []byte("SHA-256")):
		return algorithm{algSHA256, false}, true
	case parser.EqualFold(v, []byte("SHA-256-sess")):
		return algorithm{algSHA256, true}, true
	}
	return algorithm{}, false
}

func (a algorithm) name() string {
	if a.h == algSHA256 {
		return "SHA-256"
	}
	return "MD5"
}

// appendHash appends the lower-case hex digest of in to dst.
func appendHash(dst []byte, h uint8, in []byte) []byte {
	const digits = "0123456789abcdef"
	var sum [32]byte
	n := 16
	if h == algSHA256 {
		sum = sha256.Sum256(in)
		n = 32
	} else {
		s := md5.Sum(in)
		copy(sum[:], s[:])
	}
	for _, b := range sum[:n] {
		dst = append(dst, digits[b>>4], digits[b&15])
	}
	return dst
}

// scratch is per-check working memory.
type scratch struct {
	in, ha1, ha2, want, got, hdr, key []byte
}

// response computes the expected digest response (RFC 7616 §3.4.1) for
// credentials a with stored HA1 (hex) and method, into sc.want.
func response(sc *scratch, alg algorithm, ha1 []byte, method []byte, a *parser.Auth) []byte {
	sc.ha1 = append(sc.ha1[:0], ha1...)
	if alg.sess {
		sc.in = append(append(append(append(append(sc.in[:0], ha1...), ':'), a.Nonce...), ':'), a.CNonce...)
		sc.ha1 = appendHash(sc.ha1[:0], alg.h, sc.in)
	}
	sc.in = append(append(append(sc.in[:0], method...), ':'), a.URI...)
	sc.ha2 = appendHash(sc.ha2[:0], alg.h, sc.in)
	in := append(append(append(sc.in[:0], sc.ha1...), ':'), a.Nonce...)
	in = append(in, ':')
	if len(a.QOP) > 0 {
		in = append(append(append(append(append(append(in, a.NC...), ':'), a.CNonce...), ':'), a.QOP...), ':')
	}
	in = append(in, sc.ha2...)
	sc.in = in
	sc.want = appendHash(sc.want[:0], alg.h, in)
	return sc.want
}

// equalHex compares a response as sent (any case) with the expected lower-case
// hex in constant time.
func equalHex(sc *scratch, sent, want []byte) bool {
	sc.got = sc.got[:0]
	for _, c := range sent {
		if c >= 'A' && c <= 'F' {
			c += 'a' - 'A'
		}
		sc.got = append(sc.got, c)
	}
	return subtle.ConstantTimeCompare(sc.got, want) == 1
}

// ---- nonces ----

// A nonce is base64url(expiry[4] | seq[4] | mac[16]): the unix second it
// expires, a sequence number that indexes the nonce-count table, and the
// first 16 bytes of HMAC-SHA-256(secret, expiry|seq|source), source being
// the address the challenge was sent to (putSource). The address is not in
// the nonce: an answer is checked against the address it comes from, so a
// nonce is good only from where it was sent, and an answer from a forged
// UDP source, which never received a challenge there, cannot carry one
// (Kamailio's auth_checks_register with the source IP bit). Nodes sharing
// the secret accept each other's nonces from the same address.
const (
	nonceRaw = 24
	nonceLen = 32 // base64url without padding
)

// boundTo is the address a nonce for src is bound to: src, or none with
// Config.SkipSourceCheck.
func (a *Auth) boundTo(src netip.Addr) netip.Addr {
	if a.cfg.SkipSourceCheck {
		return netip.Addr{}
	}
	return src
}

// appendNonce issues a nonce valid for the configured lifetime, from src
// only.
func (a *Auth) appendNonce(dst []byte, src netip.Addr) []byte {
	seq := a.seq.Add(1)
	if seq == 0 {
		seq = a.seq.Add(1) // 0 marks an empty slot
	}
	a.slots[seq&(nonceSlots-1)].Store(uint64(seq) << 32)
	var raw [nonceRaw]byte
	binary.BigEndian.PutUint32(raw[0:], uint32(a.clock.Now()/1000+a.lifetime))
	binary.BigEndian.PutUint32(raw[4:], seq)
	a.sign(&raw, a.boundTo(src))
	var enc [nonceLen]byte
	base64.RawURLEncoding.Encode(enc[:], raw[:])
	return append(dst, enc[:]...)
}

func (a *Auth) sign(raw *[nonceRaw]byte, src netip.Addr) {
	sg := a.macs.Get().(*signer)
	// The input and output go through the signer's own arrays: passed to
	// the hash interface, a stack array would escape and allocate.
	copy(sg.in[:8], raw[:8])
	putSource(sg.in[8:], src)
	sg.h.Reset()
	sg.h.Write(sg.in[:])
	sg.h.Sum(sg.out[:0])
	copy(raw[8:], sg.out[:16])
	a.macs.Put(sg)
}

// putSource writes what a nonce is bound to of src into dst (9 bytes):
// the family, then an IPv4 address, or the /64 of an IPv6 one, which a
// host usually has whole and whose privacy addresses change within it.
// Not the port: a NAT may give the phone's next request another one. An
// IPv4 address and the IPv6 prefix starting with its bytes differ by the
// family byte.
func putSource(dst []byte, src netip.Addr) {
	clear(dst[:9])
	src = src.Unmap()
	switch {
	case src.Is4():
		dst[0] = 4
		a := src.As4()
		copy(dst[1:5], a[:])
	case src.Is6():
		dst[0] = 6
		a := src.As16()
		copy(dst[1:9], a[:8])
	}
}

// signer is a pooled HMAC-SHA-256 under the secret, with its buffers.
type signer struct {
	h   hash.Hash
	in  [8 + 9]byte // expiry|seq, then putSource
	out [32]byte
}

// nonceState is what checking a nonce found.
type nonceState uint8

const (
	nonceOK nonceState = iota
	nonceForged
	nonceExpired
	nonceReplayed // nc below the last one seen, or the slot was reused
	nonceRepeated // nc equal to the last one seen: a replay or a retransmission
)

// decodeNonce checks a nonce's signature for an answer from src and
// returns its expiry and seq; false for a nonce not ours, or issued to
// another address.
func (a *Auth) decodeNonce(n []byte, src netip.Addr) (exp int64, seq uint32, ok bool) {
	if len(n) != nonceLen {
		return 0, 0, false
	}
	var raw, want [nonceRaw]byte
	// All 24 bytes: the decoder skips CR and LF, so a nonce with one in
	// place of its last character decoded to 23 and a zero, and opened
	// when its MAC's last byte was zero (one nonce in 256).
	if k, err := base64.RawURLEncoding.Decode(raw[:], n); err != nil || k != nonceRaw {
		return 0, 0, false
	}
	copy(want[:8], raw[:8])
	a.sign(&want, a.boundTo(src))
	if subtle.ConstantTimeCompare(raw[8:], want[8:]) != 1 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint32(raw[0:])), binary.BigEndian.Uint32(raw[4:]), true
}

// useNonce checks expiry and records nonce-count nc for the nonce with seq;
// it fails for a count not higher than one already used (nonceRepeated when
// it is the last one used, which the caller may accept for a
// retransmission).
func (a *Auth) useNonce(exp int64, seq, nc uint32) nonceState {
	if a.clock.Now()/1000 >= exp {
		return nonceExpired
	}
	slot := &a.slots[seq&(nonceSlots-1)]
	for {
		v := slot.Load()
		owner, last := uint32(v>>32), uint32(v)
		switch {
		case v == 0:
			// Issued before this process started (the secret is kept
			// across restarts): its counts were not remembered; take the
			// slot from here on.
		case owner != seq:
			return nonceReplayed // a newer nonce has the slot
		case nc == last:
			return nonceRepeated
		case nc < last:
			return nonceReplayed
		}
		if slot.CompareAndSwap(v, uint64(seq)<<32|uint64(nc)) {
			return nonceOK
		}
	}
}

// parseNC parses the 8-hex-digit nonce count.
func parseNC(v []byte) (uint32, bool) {
	if len(v) != 8 {
		return 0, false
	}
	var n uint32
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint32(c)
	}
	return n, n > 0
}

// retransmitWindow is how long after a nonce-count was accepted a
// retransmission of that request is still accepted: 64·T1 (32 s with the
// default T1 of 500 ms), the client's Timer F, after which it has stopped
// retransmitting.
const retransmitWindow = 32

// remember records, in the nonce's slot, a fingerprint of the request that
// was accepted with the slot's current nonce-count, for retransmission.
func (a *Auth) remember(seq uint32, c *routing.Ctx) {
	i := seq & (nonceSlots - 1)
	a.prints[i].Store(a.fingerprint(c))
	a.printAt[i].Store(uint32(a.clock.Now() / 1000))
}

// retransmission reports whether the request is a retransmission of the
// one accepted with the slot's current nonce-count: the same fingerprint,
// within retransmitWindow. useNonce found the count equal to the slot's.
// The fingerprint covers the whole message (Via branch, CSeq, Contact,
// body, the credentials with their nc) and the source, so a different
// request with the same nonce-count, or the same bytes sent from elsewhere,
// is still a replay.
func (a *Auth) retransmission(seq uint32, c *routing.Ctx) bool {
	i := seq & (nonceSlots - 1)
	age := uint32(a.clock.Now()/1000) - a.printAt[i].Load()
	return age <= retransmitWindow && a.prints[i].Load() == a.fingerprint(c)
}

// fingerprint hashes the request as received and its source with a key
// chosen at start (hash/maphash: an attacker who cannot see the values
// cannot build a different request with the same one).
func (a *Auth) fingerprint(c *routing.Ctx) uint64 {
	var h maphash.Hash
	h.SetSeed(a.seed)
	h.Write(c.Msg().Bytes())
	var src [19]byte
	ip := c.SrcIP().As16()
	copy(src[:16], ip[:])
	port := c.SrcPort()
	src[16], src[17], src[18] = byte(port>>8), byte(port), byte(c.Proto())
	h.Write(src[:])
	return h.Sum64()
}
