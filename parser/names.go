package parser

import (
	"encoding/binary"
	"math/bits"
)

// Method is a known SIP request method. Unknown methods are MethodOther; the
// raw bytes are always available from Message.MethodBytes.
type Method uint8

const (
	MethodOther Method = iota
	MethodInvite
	MethodAck
	MethodBye
	MethodCancel
	MethodRegister
	MethodOptions
	MethodInfo
	MethodPrack
	MethodUpdate
	MethodSubscribe
	MethodNotify
	MethodRefer
	MethodMessage
	MethodPublish
	numMethods
)

var methodNames = [numMethods]string{
	"", "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "PRACK",
	"UPDATE", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
}

// String returns the method name, or "" for MethodOther.
func (m Method) String() string {
	if m < numMethods {
		return methodNames[m]
	}
	return ""
}

// LookupMethod maps method bytes to a Method. Methods are case-sensitive
// (RFC 3261 §7.1), so "invite" is MethodOther.
func LookupMethod(b []byte) Method {
	switch len(b) {
	case 3:
		if string(b) == "ACK" {
			return MethodAck
		}
		if string(b) == "BYE" {
			return MethodBye
		}
	case 4:
		if string(b) == "INFO" {
			return MethodInfo
		}
	case 5:
		if string(b) == "PRACK" {
			return MethodPrack
		}
		if string(b) == "REFER" {
			return MethodRefer
		}
	case 6:
		switch string(b) {
		case "INVITE":
			return MethodInvite
		case "CANCEL":
			return MethodCancel
		case "UPDATE":
			return MethodUpdate
		case "NOTIFY":
			return MethodNotify
		}
	case 7:
		switch string(b) {
		case "OPTIONS":
			return MethodOptions
		case "MESSAGE":
			return MethodMessage
		case "PUBLISH":
			return MethodPublish
		}
	case 8:
		if string(b) == "REGISTER" {
			return MethodRegister
		}
	case 9:
		if string(b) == "SUBSCRIBE" {
			return MethodSubscribe
		}
	}
	return MethodOther
}

// HeaderName identifies a header the parser knows by name. Compact forms map
// to the same value as the full name. Unknown headers are HdrOther and keep
// their raw name.
type HeaderName uint8

const (
	HdrOther HeaderName = iota
	HdrVia
	HdrFrom
	HdrTo
	HdrCallID
	HdrCSeq
	HdrMaxForwards
	HdrContact
	HdrRoute
	HdrRecordRoute
	HdrPath
	HdrContentLength
	HdrContentType
	HdrContentEncoding
	HdrExpires
	HdrMinExpires
	HdrAuthorization
	HdrProxyAuthorization
	HdrWWWAuthenticate
	HdrProxyAuthenticate
	HdrAuthenticationInfo
	HdrRequire
	HdrProxyRequire
	HdrSupported
	HdrUnsupported
	HdrAllow
	HdrAccept
	HdrEvent
	HdrAllowEvents
	HdrSubscriptionState
	HdrUserAgent
	HdrServer
	HdrSubject
	HdrReferTo
	HdrReferredBy
	HdrSessionExpires
	HdrMinSE
	HdrIdentity
	HdrAcceptContact
	HdrRSeq
	HdrRAck
	HdrTimestamp
	HdrDate
	HdrRetryAfter
	HdrWarning
	HdrReason
	HdrPrivacy
	HdrPAssertedIdentity
	HdrPPreferredIdentity
	HdrReplaces
	HdrServiceRoute
	HdrOrganization
	HdrMIMEVersion
	HdrContentDisposition
	numHeaderNames
)

// headerNames holds the canonical spelling written by the editor and by
// AppendResponse.
var headerNames = [numHeaderNames]string{
	"", "Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Route",
	"Record-Route", "Path", "Content-Length", "Content-Type", "Content-Encoding",
	"Expires", "Min-Expires", "Authorization", "Proxy-Authorization",
	"WWW-Authenticate", "Proxy-Authenticate", "Authentication-Info", "Require",
	"Proxy-Require", "Supported", "Unsupported", "Allow", "Accept", "Event",
	"Allow-Events", "Subscription-State", "User-Agent", "Server", "Subject",
	"Refer-To", "Referred-By", "Session-Expires", "Min-SE", "Identity",
	"Accept-Contact", "RSeq", "RAck", "Timestamp", "Date", "Retry-After", "Warning",
	"Reason", "Privacy", "P-Asserted-Identity", "P-Preferred-Identity", "Replaces",
	"Service-Route", "Organization", "MIME-Version", "Content-Disposition",
}

// String returns the canonical header name, or "" for HdrOther.
func (h HeaderName) String() string {
	if h < numHeaderNames {
		return headerNames[h]
	}
	return ""
}

// compactNames maps the RFC 3261 §7.3.3 (and later RFCs') one-letter forms.
var compactNames = [26]HeaderName{
	'a' - 'a': HdrAcceptContact,
	'b' - 'a': HdrReferredBy,
	'c' - 'a': HdrContentType,
	'e' - 'a': HdrContentEncoding,
	'f' - 'a': HdrFrom,
	'i' - 'a': HdrCallID,
	'k' - 'a': HdrSupported,
	'l' - 'a': HdrContentLength,
	'm' - 'a': HdrContact,
	'o' - 'a': HdrEvent,
	'r' - 'a': HdrReferTo,
	's' - 'a': HdrSubject,
	't' - 'a': HdrTo,
	'u' - 'a': HdrAllowEvents,
	'v' - 'a': HdrVia,
	'x' - 'a': HdrSessionExpires,
	'y' - 'a': HdrIdentity,
}

// The full names are found through a perfect hash of the case-folded
// first eight bytes and the length (no two known names share a slot, which
// init checks), then one comparison eight bytes at a time: (word | fold) &
// keep == lower, where fold has 0x20 on letter positions only, so letters
// match either case and every other byte matches exactly. Parse hands over
// the words it already loaded while looking for the colon, so a header name
// is read once.
const (
	hashBits = 8
	hashMult = 0x98e09052e5853c3f // found by trying multipliers until no slot is shared
)

type nameKey struct {
	n     int
	lower [3]uint64
	fold  [3]uint64
	keep  [3]uint64
}

// hashTab holds the one HeaderName of each slot (HdrOther = empty); keys is
// indexed by HeaderName, and keys[HdrOther] matches nothing (n = 0). Both
// stay small enough for L1.
var (
	hashTab   [1 << hashBits]HeaderName
	keys      [numHeaderNames]nameKey
	lowerName [numHeaderNames]string
	keepBytes [9]uint64 // keepBytes[k] keeps the low k bytes of a word
)

func nameHash(n int, w0 uint64) uint {
	fw := (w0 | 0x2020202020202020) & keepBytes[min(uint(n), 8)]
	return uint(((fw ^ uint64(n)) * hashMult) >> (64 - hashBits))
}

func init() {
	for k := 1; k <= 8; k++ {
		keepBytes[k] = keepBytes[k-1]<<8 | 0xff
	}
	for h := HdrVia; h < numHeaderNames; h++ {
		s := headerNames[h]
		if len(s) < 2 || len(s) > 24 {
			panic("parser: header name not 2-24 bytes long: " + s)
		}
		key := nameKey{n: len(s)}
		low := make([]byte, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			low[i] = c
			if c >= 'a' && c <= 'z' {
				key.fold[i/8] |= 0x20 << (8 * (i % 8))
			}
			key.lower[i/8] |= uint64(c) << (8 * (i % 8))
			key.keep[i/8] |= 0xff << (8 * (i % 8))
		}
		lowerName[h] = string(low)
		keys[h] = key
		k := nameHash(len(s), key.lower[0])
		if hashTab[k] != HdrOther {
			panic("parser: header name hash collision: " + s + ", " + headerNames[hashTab[k]])
		}
		hashTab[k] = h
	}
}

// load8 reads eight bytes of b from i, little-endian, looking past len(b)
// into its capacity when it can (the caller masks those bytes off), else
// zero-padded.
func load8(b []byte, i int) uint64 {
	if i+8 <= cap(b) {
		return binary.LittleEndian.Uint64(b[i : i+8 : i+8])
	}
	var w uint64
	for k := 0; i+k < len(b); k++ {
		w |= uint64(b[i+k]) << (8 * k)
	}
	return w
}

// matchName finds the known header of length n (2..24) whose bytes are the
// words w0, w1, w2 (bytes past n are ignored; w1 and w2 may be 0 when n is
// at most 8 or 16).
func matchName(n int, w0, w1, w2 uint64) HeaderName {
	h := hashTab[nameHash(n, w0)]
	c := &keys[h]
	if c.n == n && (w0|c.fold[0])&c.keep[0] == c.lower[0] &&
		(w1|c.fold[1])&c.keep[1] == c.lower[1] && (w2|c.fold[2])&c.keep[2] == c.lower[2] {
		return h
	}
	return HdrOther
}

// matchShort is matchName for a name of at most 8 bytes, small enough to
// be inlined into the header loop.
func matchShort(n int, w0 uint64) HeaderName {
	h := hashTab[nameHash(n, w0)]
	c := &keys[h]
	if c.n == n && (w0|c.fold[0])&c.keep[0] == c.lower[0] {
		return h
	}
	return HdrOther
}

// matchMid is matchName for a name of 8 to 15 bytes, small enough to be
// inlined into the header loop.
func matchMid(n int, w0, w1 uint64) HeaderName {
	h := hashTab[nameHash(n, w0)]
	c := &keys[h]
	if c.n == n && w0|c.fold[0] == c.lower[0] && (w1|c.fold[1])&c.keep[1] == c.lower[1] {
		return h
	}
	return HdrOther
}

// LookupHeader maps a header name (full or compact, any case) to its
// HeaderName, HdrOther if unknown.
func LookupHeader(name []byte) HeaderName {
	n := len(name)
	if n == 0 || n > 24 {
		return HdrOther
	}
	if n == 1 {
		c := name[0] | 0x20
		if c >= 'a' && c <= 'z' {
			return compactNames[c-'a']
		}
		return HdrOther
	}
	var w1, w2 uint64
	if n > 8 {
		w1 = load8(name, 8)
	}
	if n > 16 {
		w2 = load8(name, 16)
	}
	return matchName(n, load8(name, 0), w1, w2)
}

// scanName reads the header name at b[i:] up to its colon, eight bytes at
// a time. It returns the colon's index (-1 if there is none), the end of
// the name (before any SP/HT) and the name; the common case (no SP before
// the colon, name within 24 bytes, 24 bytes of buffer left) reads every
// byte once.
func scanName(b []byte, i int) (colon, end int, h HeaderName) {
	const ones, highs, colons = 0x0101010101010101, 0x8080808080808080, 0x3a3a3a3a3a3a3a3a
	if i+24 <= len(b) {
		w := b[i : i+24 : i+24]
		w0 := binary.LittleEndian.Uint64(w[0:8])
		x := w0 ^ colons
		n := -1
		var w1, w2 uint64
		if t := (x - ones) &^ x & highs; t != 0 {
			n = bits.TrailingZeros64(t) / 8
		} else {
			w1 = binary.LittleEndian.Uint64(w[8:16])
			x = w1 ^ colons
			if t := (x - ones) &^ x & highs; t != 0 {
				n = 8 + bits.TrailingZeros64(t)/8
			} else {
				w2 = binary.LittleEndian.Uint64(w[16:24])
				x = w2 ^ colons
				if t := (x - ones) &^ x & highs; t != 0 {
					n = 16 + bits.TrailingZeros64(t)/8
				}
			}
		}
		if n > 1 && w[n-1] != ' ' && w[n-1] != '\t' {
			return i + n, i + n, matchName(n, w0, w1, w2)
		}
	}
	// Short buffer, long name, compact name or SP before the colon.
	c := indexColon(b, i)
	if c < 0 {
		return -1, i, HdrOther
	}
	e := c
	for e > i && (b[e-1] == ' ' || b[e-1] == '\t') {
		e--
	}
	return c, e, LookupHeader(b[i:e])
}
