package parser

import "encoding/binary"

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

// The full names are found through a small hash of (length, first, last
// byte) into buckets of candidates, then a comparison eight bytes at a
// time: (word | fold) == lower, where fold has 0x20 on letter positions
// only, so letters match either case and every other byte matches exactly.
const hashBuckets = 256

type nameKey struct {
	n     int
	lower [3]uint64
	fold  [3]uint64
	keep  [3]uint64
}

// hashTab holds up to two HeaderNames per bucket (HdrOther = empty); keys
// is indexed by HeaderName. Both stay small enough for L1.
var (
	hashTab   [hashBuckets][2]HeaderName
	keys      [numHeaderNames]nameKey
	lowerName [numHeaderNames]string
)

func nameHash(n int, first, last byte) int {
	return (n*13 + int(first|0x20)*5 + int(last|0x20)*3) & (hashBuckets - 1)
}

func init() {
	for h := HdrVia; h < numHeaderNames; h++ {
		s := headerNames[h]
		if len(s) > 24 {
			panic("parser: header name longer than 24 bytes: " + s)
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
		k := nameHash(len(s), s[0], s[len(s)-1])
		placed := false
		for j := range hashTab[k] {
			if hashTab[k][j] == HdrOther {
				hashTab[k][j] = h
				placed = true
				break
			}
		}
		if !placed {
			panic("parser: header name hash bucket overflow for " + s)
		}
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

// LookupHeader maps a header name (full or compact, any case) to its
// HeaderName, HdrOther if unknown.
func LookupHeader(name []byte) HeaderName {
	n := len(name)
	if n == 0 {
		return HdrOther
	}
	if n == 1 {
		c := name[0] | 0x20
		if c >= 'a' && c <= 'z' {
			return compactNames[c-'a']
		}
		return HdrOther
	}
	if n > 24 {
		return HdrOther
	}
	bucket := &hashTab[nameHash(n, name[0], name[n-1])]
	w0 := load8(name, 0)
	for _, h := range bucket {
		if h == HdrOther {
			break
		}
		c := &keys[h]
		if c.n != n || (w0|c.fold[0])&c.keep[0] != c.lower[0] {
			continue
		}
		if n > 8 && (load8(name, 8)|c.fold[1])&c.keep[1] != c.lower[1] {
			continue
		}
		if n > 16 && (load8(name, 16)|c.fold[2])&c.keep[2] != c.lower[2] {
			continue
		}
		return h
	}
	return HdrOther
}
