package parser

// Character classes from RFC 3261 §25.1, as 256-entry tables so the hot
// loops are one load and one test per byte.
var (
	tokenTab [256]bool // token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
	wordTab  [256]bool // word (Call-ID): token chars plus ( ) < > : \ " / [ ] ? { }
	hostTab  [256]bool // hostname / IPv4 characters (plus "_", seen in the wild)
	paramTab [256]bool // generic-param value outside quotes: token / host (":" "[" "]")
	uriTab   [256]bool // anything a URI may hold (no LWS, CTL, "<", ">", "\"")
	digitTab [256]bool
	lwsTab   [256]bool // SP HT CR LF (CR LF only occur inside folded values)
	lowerTab [256]byte // ASCII lower-casing, every other byte unchanged
)

func init() {
	for c := 0; c < 256; c++ {
		lowerTab[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			lowerTab[c] = byte(c) + 'a' - 'A'
		}
		alnum := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		tokenTab[c] = alnum
		hostTab[c] = alnum
		digitTab[c] = c >= '0' && c <= '9'
		uriTab[c] = c > 0x20 && c < 0x7f && c != '<' && c != '>' && c != '"'
	}
	for _, c := range []byte("-.!%*_+`'~") {
		tokenTab[c] = true
	}
	wordTab = tokenTab
	for _, c := range []byte("()<>:\\\"/[]?{}") {
		wordTab[c] = true
	}
	for _, c := range []byte("-._") {
		hostTab[c] = true
	}
	paramTab = tokenTab
	for _, c := range []byte(":[]/") {
		paramTab[c] = true
	}
	for _, c := range []byte(" \t\r\n") {
		lwsTab[c] = true
	}
}

// skipLWS returns the index of the first byte at or after i that is not
// linear white space. Folding CRLFs inside a header value count as LWS.
func skipLWS(b []byte, i int) int {
	for uint(i) < uint(len(b)) && lwsTab[b[i]] {
		i++
	}
	return i
}

func trimLWS(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && lwsTab[b[i]] {
		i++
	}
	for j > i && lwsTab[b[j-1]] {
		j--
	}
	return b[i:j]
}

func skipToken(b []byte, i int) int { return span(&tokenTab, b, i) }

// span returns the index of the first byte at or after i that is not in
// tab. Small enough to be inlined: the runs it scans (methods, hosts,
// parameter names and values) are short, so a call would cost more than
// the loop.
func span(tab *[256]bool, b []byte, i int) int {
	// uint(i) < uint(len(b)) tells the compiler i is a valid index, which
	// drops the bounds check from the per-byte loop.
	for uint(i) < uint(len(b)) && tab[b[i]] {
		i++
	}
	return i
}

// eqFold reports whether b equals the lower-case ASCII string s, ignoring the
// case of b.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lowerTab[b[i]] != s[i] {
			return false
		}
	}
	return true
}

// EqualFold reports whether a and b are equal ignoring ASCII case.
func EqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// equalFoldString is EqualFold against a string without converting it.
func equalFoldString(a []byte, s string) bool {
	if len(a) != len(s) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], s[i]
		if x == y {
			continue
		}
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseUint parses 1*DIGIT into a uint64, failing on empty input, any other
// byte, or a value above max.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		d := c - '0' // bytes below '0' wrap around above 9
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
		if n > max {
			return 0, false
		}
	}
	return n, true
}

// appendUint appends the decimal form of n without going through strconv's
// interface-free but still branchy path; it is small and allocation free.
func appendUint(dst []byte, n uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

// Parameter names read on every message, as little-endian words for
// nameIs.
const (
	wordBranch   = 0x68636e617262     // "branch"
	wordReceived = 0x6465766965636572 // "received"
	wordRport    = 0x74726f7072       // "rport"
	wordMaddr    = 0x726464616d       // "maddr"
	wordTTL      = 0x6c7474           // "ttl"
	wordTag      = 0x676174           // "tag"
)

// nameIs reports whether name equals the lower-case letters-only word w of
// length n (at most 8), ignoring case: one load and one compare instead of
// a byte loop. For a letter target, c|0x20 matches only that letter in
// either case, so the comparison is exact.
func nameIs(name []byte, w uint64, n int) bool {
	return nameAt(name, 0, len(name), w, n)
}
