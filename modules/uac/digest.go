package uac

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"

	"switchboard/parser"
)

// Digest authentication as a client (RFC 7616, RFC 3261 §22): the answer
// to one challenge of a 401 or 407.

// Algorithms: the hash, plus the -sess variants.
const (
	algMD5 = iota
	algSHA256
	numAlgs
)

type algorithm struct {
	h    uint8
	sess bool
}

// parseAlgorithm maps a challenge's algorithm; none is MD5 (RFC 2617).
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

var algNames = [2][2]string{{"MD5", "MD5-sess"}, {"SHA-256", "SHA-256-sess"}}

func (a algorithm) name() string {
	s := 0
	if a.sess {
		s = 1
	}
	return algNames[a.h][s]
}

// scratch is the working memory of one answer (pooled: allocation-free
// once warm).
type scratch struct {
	in, ha1, ha2, resp, cnonce, hdr, val, val2, tok, plain []byte
	rnd                                                    [16]byte
	ch                                                     parser.Auth
	na                                                     parser.NameAddr
}

func newScratch() *scratch {
	return &scratch{in: make([]byte, 0, 512), hdr: make([]byte, 0, 512), val: make([]byte, 0, 512),
		tok: make([]byte, 0, 512), plain: make([]byte, 0, 512)}
}

const hexDigits = "0123456789abcdef"

// appendHash appends the lower-case hex digest of in.
func appendHash(dst []byte, h uint8, in []byte) []byte {
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
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}

func appendJoin(dst []byte, parts ...[]byte) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, p...)
	}
	return dst
}

// chooseQOP picks what to answer a challenge's qop list with: "auth"
// first, then "auth-int"; "" when the challenge has no qop (RFC 2069
// style), false when it offers only unknown ones.
func chooseQOP(list []byte) (string, bool) {
	if len(list) == 0 {
		return "", true
	}
	auth, authInt := false, false
	for i := 0; i < len(list); {
		j := i
		for j < len(list) && list[j] != ',' {
			j++
		}
		tok := trimSpace(list[i:j])
		auth = auth || parser.EqualFold(tok, []byte("auth"))
		authInt = authInt || parser.EqualFold(tok, []byte("auth-int"))
		i = j + 1
	}
	switch {
	case auth:
		return "auth", true
	case authInt:
		return "auth-int", true
	}
	return "", false
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// usable reports whether c can answer a challenge of algorithm a for
// realm: with the password, or with the HA1 stored for that algorithm and
// realm.
func (c *cred) usable(a algorithm, realm []byte) bool {
	if c.password != "" {
		return true
	}
	return c.ha1[a.h] != "" && c.realm == string(realm)
}

// answer appends to sc.hdr the credentials answering challenge ch
// (algorithm a) with c, for a request of method to uri with body, and
// returns them. ok is false when the challenge's qop cannot be answered,
// or uri cannot go into the quoted string as it is (a '"' or '\\', which
// a Request-URI's parameters may hold, would end it early).
func (sc *scratch) answer(ch *parser.Auth, a algorithm, c *cred, method, uri, body []byte) ([]byte, bool) {
	qop, ok := chooseQOP(ch.QOP)
	if !ok || bytes.ContainsAny(uri, "\"\\") {
		return nil, false
	}
	if c.password != "" {
		sc.in = appendJoin(sc.in[:0], []byte(c.user), ch.Realm, []byte(c.password))
		sc.ha1 = appendHash(sc.ha1[:0], a.h, sc.in)
	} else {
		sc.ha1 = append(sc.ha1[:0], c.ha1[a.h]...)
	}
	sc.cnonce = sc.cnonce[:0]
	if qop != "" || a.sess {
		_, _ = rand.Read(sc.rnd[:8])
		for _, b := range sc.rnd[:8] {
			sc.cnonce = append(sc.cnonce, hexDigits[b>>4], hexDigits[b&15])
		}
	}
	if a.sess {
		sc.in = appendJoin(sc.in[:0], sc.ha1, ch.Nonce, sc.cnonce)
		sc.ha1 = appendHash(sc.ha1[:0], a.h, sc.in)
	}
	sc.in = appendJoin(sc.in[:0], method, uri)
	if qop == "auth-int" {
		sc.in = append(sc.in, ':')
		sc.in = appendHash(sc.in, a.h, body)
	}
	sc.ha2 = appendHash(sc.ha2[:0], a.h, sc.in)
	const nc = "00000001"
	if qop != "" {
		sc.in = appendJoin(sc.in[:0], sc.ha1, ch.Nonce, []byte(nc), sc.cnonce, []byte(qop), sc.ha2)
	} else {
		sc.in = appendJoin(sc.in[:0], sc.ha1, ch.Nonce, sc.ha2)
	}
	sc.resp = appendHash(sc.resp[:0], a.h, sc.in)

	h := append(sc.hdr[:0], `Digest username="`...)
	h = append(h, c.user...)
	h = append(h, `", realm="`...)
	h = append(h, ch.Realm...)
	h = append(h, `", nonce="`...)
	h = append(h, ch.Nonce...)
	h = append(h, `", uri="`...)
	h = append(h, uri...)
	h = append(h, `", response="`...)
	h = append(h, sc.resp...)
	h = append(h, `", algorithm=`...)
	h = append(h, a.name()...)
	if len(sc.cnonce) > 0 {
		h = append(h, `, cnonce="`...)
		h = append(h, sc.cnonce...)
		h = append(h, '"')
	}
	if qop != "" {
		h = append(h, ", qop="...)
		h = append(h, qop...)
		h = append(h, ", nc="+nc...)
	}
	if len(ch.Opaque) > 0 {
		h = append(h, `, opaque="`...)
		h = append(h, ch.Opaque...)
		h = append(h, '"')
	}
	sc.hdr = h
	return h, true
}

// validChallengeText reports whether the parts of a challenge we copy
// into our credentials' quoted strings are safe there: no quotes,
// backslashes or control characters (a challenge is peer input).
func validChallengeText(ch *parser.Auth) bool {
	for _, b := range [3][]byte{ch.Realm, ch.Nonce, ch.Opaque} {
		for _, c := range b {
			if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
				return false
			}
		}
	}
	return len(ch.Nonce) > 0 && len(ch.Nonce) <= 1024 && len(ch.Realm) <= 255 && len(ch.Opaque) <= 1024
}
