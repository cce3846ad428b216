package scanner

import (
	"bytes"

	"switchboard/parser"
)

// A fingerprint recognises a scanning tool by the shape of the identifiers
// it makes up, which holds when it sends no User-Agent (svmap -c, compact
// form) or a forged one. The shapes below were read from the requests
// SIPVicious 0.3 (svmap, svwar, svcrack) sends and from its source
// (sipvicious/libs/svhelper.py: createTag, makeRequest).
type fingerprint struct {
	name  string
	match func(m *parser.Message) bool
}

// fingerprints are the known fingerprints by name (the fingerprints
// setting).
var fingerprints = []fingerprint{
	{"sipvicious-tag", sipviciousTag},
	{"sipvicious-ids", sipviciousIDs},
}

func lookupFingerprint(name string) (fingerprint, bool) {
	for _, f := range fingerprints {
		if f.name == name {
			return f, true
		}
	}
	return fingerprint{}, false
}

// svcrackTag is the From tag svcrack puts on its first, unauthenticated
// REGISTER of every extension.
var svcrackTag = []byte("3206210844")

// branchDash is the start of every SIPVicious Via branch.
var branchDash = []byte("z9hG4bK-")

// sipviciousTag: the From tag is svcrack's constant, or was made by
// SIPVicious's createTag, which hex-encodes some text (svmap: the target's
// address and port in hex; svwar: the extension tried; svcrack: user and
// password), a 0x01 byte and a random decimal number:
//
//	tag=3766303030303031336537660133393635303238333034
//	    "7f0000013e7f"           01 "3965028304"
//
// A random hex tag has this shape with a probability below 10⁻⁷: every
// byte before the 0x01 must be printable ASCII and every byte after it a
// decimal digit.
func sipviciousTag(m *parser.Message) bool {
	tag := m.FromTag()
	return bytes.Equal(tag, svcrackTag) || isCreateTag(tag)
}

func isCreateTag(tag []byte) bool {
	if len(tag) < 6 || len(tag)%2 != 0 {
		return false
	}
	sep := -1 // byte index of the 0x01
	for i := 0; i < len(tag); i += 2 {
		hi, ok1 := unhex(tag[i])
		lo, ok2 := unhex(tag[i+1])
		if !ok1 || !ok2 {
			return false
		}
		b := hi<<4 | lo
		switch {
		case b == 0x01 && sep < 0 && i > 0:
			sep = i / 2
		case sep < 0 && 0x20 <= b && b < 0x7f:
		case sep >= 0 && '0' <= b && b <= '9':
		default:
			return false
		}
	}
	digits := len(tag)/2 - sep - 1
	return sep > 0 && 1 <= digits && digits <= 20
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// sipviciousIDs: every SIPVicious request has a Call-ID made only of
// decimal digits (a random 32- or 80-bit number) and a top Via branch of
// "z9hG4bK-" and decimal digits only. Phones put a host or random letters
// in one or the other.
func sipviciousIDs(m *parser.Message) bool {
	id := m.CallID()
	if len(id) < 4 || len(id) > 40 || !allDigits(id) {
		return false
	}
	br, ok := bytes.CutPrefix(m.TopVia().Branch, branchDash)
	return ok && len(br) > 0 && len(br) <= 20 && allDigits(br)
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
