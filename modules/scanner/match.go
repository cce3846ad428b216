package scanner

import (
	"errors"
	"regexp"
	"strings"
)

// maxPatternLen bounds one pattern, so that max_patterns bounds the
// matcher's memory (at most max_patterns·128 automaton states).
const maxPatternLen = 128

// The forms of a pattern (see README: Patterns).
const (
	kindContains = iota // friendly-scanner
	kindPrefix          // ^sipcli
	kindSuffix          // scanner$
	kindExact           // ^VaxSIPUserAgent$
	kindRegexp          // re:^sip(vicious|cli)/
)

var kindNames = [...]string{"contains", "prefix", "suffix", "exact", "regexp"}

// pattern is one parsed entry of the patterns setting.
type pattern struct {
	text string // as configured: the metric label and the listing
	kind int
	lit  []byte // the literal to compare, lower-cased (not for regexp)
	re   *regexp.Regexp
}

// parsePattern reads one entry of the patterns setting.
func parsePattern(s string) (pattern, error) {
	p := pattern{text: s}
	switch {
	case s == "":
		return p, errors.New("empty pattern")
	case len(s) > maxPatternLen:
		return p, errors.New("longer than 128 bytes")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return p, errors.New("control character in pattern")
		}
	}
	if rest, ok := strings.CutPrefix(s, "re:"); ok {
		re, err := regexp.Compile(rest)
		if err != nil {
			return p, err
		}
		if re.MatchString("") {
			return p, errors.New("regular expression matches every User-Agent, even an empty one")
		}
		p.kind, p.re = kindRegexp, re
		return p, nil
	}
	lit := s
	pre := strings.HasPrefix(lit, "^")
	if pre {
		lit = lit[1:]
	}
	suf := strings.HasSuffix(lit, "$")
	if suf {
		lit = lit[:len(lit)-1]
	}
	if lit == "" {
		return p, errors.New("nothing to match besides ^ and $")
	}
	switch {
	case pre && suf:
		p.kind = kindExact
	case pre:
		p.kind = kindPrefix
	case suf:
		p.kind = kindSuffix
	default:
		p.kind = kindContains
	}
	p.lit = make([]byte, len(lit))
	for i := 0; i < len(lit); i++ {
		p.lit[i] = lower[lit[i]]
	}
	return p, nil
}

// lower folds ASCII letters; User-Agent matching is case-insensitive for
// the literal forms (scanners vary the case, phones never collide by it).
var lower [256]byte

func init() {
	for i := range lower {
		lower[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			lower[i] = byte(i + 'a' - 'A')
		}
	}
}

// equalFold compares b with a lower-cased literal.
func equalFold(b, lit []byte) bool {
	if len(b) != len(lit) {
		return false
	}
	for i, c := range b {
		if lower[c] != lit[i] {
			return false
		}
	}
	return true
}

// uaMatcher matches a User-Agent against every pattern at once: the
// "contains" patterns through one Aho-Corasick automaton (one table step
// per byte of the User-Agent, whatever the number of patterns, so a long
// forged User-Agent costs no more than its length), the anchored ones by
// comparing the ends, regular expressions (RE2, linear time) last and only
// when configured. Built once per configuration; read-only afterwards, so
// it is shared by every core without a lock.
type uaMatcher struct {
	// Aho-Corasick DFA over byte classes: class[b] is 0 for a byte that
	// occurs in no pattern, next[state*nclass+class] the next state and
	// out[state] the pattern (index into the rule list) ending there, -1
	// for none.
	class  [256]uint8
	nclass int
	next   []int32
	out    []int32

	prefix, suffix, exact []anchored
	regexps               []compiled
}

type anchored struct {
	lit  []byte
	rule int
}

type compiled struct {
	re   *regexp.Regexp
	rule int
}

// newUAMatcher compiles pats; rule i of the result is pats[i].
func newUAMatcher(pats []pattern) *uaMatcher {
	m := &uaMatcher{}
	var contains []anchored
	for i, p := range pats {
		switch p.kind {
		case kindContains:
			contains = append(contains, anchored{p.lit, i})
		case kindPrefix:
			m.prefix = append(m.prefix, anchored{p.lit, i})
		case kindSuffix:
			m.suffix = append(m.suffix, anchored{p.lit, i})
		case kindExact:
			m.exact = append(m.exact, anchored{p.lit, i})
		case kindRegexp:
			m.regexps = append(m.regexps, compiled{p.re, i})
		}
	}
	m.build(contains)
	return m
}

// build makes the automaton of the "contains" patterns.
func (m *uaMatcher) build(pats []anchored) {
	m.nclass = 1
	for _, p := range pats {
		for _, c := range p.lit {
			if m.class[c] == 0 {
				m.class[c] = uint8(m.nclass)
				m.nclass++
			}
		}
	}
	// Upper-case letters share the class of their lower-case form.
	for c := 'A'; c <= 'Z'; c++ {
		m.class[c] = m.class[c+'a'-'A']
	}
	// The trie: next holds -1 where the trie has no edge yet.
	m.next = make([]int32, m.nclass)
	m.out = []int32{-1}
	for i := range m.next {
		m.next[i] = -1
	}
	for _, p := range pats {
		s := int32(0)
		for _, c := range p.lit {
			k := int(s)*m.nclass + int(m.class[c])
			if m.next[k] < 0 {
				m.next[k] = int32(len(m.out))
				m.out = append(m.out, -1)
				for range m.nclass {
					m.next = append(m.next, -1)
				}
			}
			s = m.next[k]
		}
		if m.out[s] < 0 { // the first of two equal patterns counts
			m.out[s] = int32(p.rule)
		}
	}
	// Breadth first: failure links turn the trie into a DFA. A state's
	// missing edges are its failure state's edges, and it inherits its
	// failure state's output when it has none of its own (a shorter
	// pattern ending at the same byte).
	fail := make([]int32, len(m.out))
	queue := make([]int32, 0, len(m.out))
	for a := 0; a < m.nclass; a++ {
		if t := m.next[a]; t > 0 {
			fail[t] = 0
			queue = append(queue, t)
		} else {
			m.next[a] = 0
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if m.out[s] < 0 {
			m.out[s] = m.out[fail[s]]
		}
		for a := 0; a < m.nclass; a++ {
			k := int(s)*m.nclass + a
			if t := m.next[k]; t >= 0 {
				fail[t] = m.next[int(fail[s])*m.nclass+a]
				queue = append(queue, t)
			} else {
				m.next[k] = m.next[int(fail[s])*m.nclass+a]
			}
		}
	}
	for i, t := range m.next {
		m.next[i] = t * int32(m.nclass)
		if m.out[t] >= 0 {
			m.next[i] = -1 - m.next[i]
		}
	}
}

// match returns the rule the User-Agent matches, or -1. It allocates
// nothing (regular expressions aside, which Go runs from pooled machines).
func (m *uaMatcher) match(ua []byte) int {
	if len(m.out) > 1 {
		// A state is its row's offset in next; a transition into a state
		// where a pattern ends is stored as -1-offset (see build).
		next, class := m.next, &m.class
		s := int32(0)
		for _, c := range ua {
			s = next[s+int32(class[c])]
			if s < 0 {
				return int(m.out[(-1-s)/int32(m.nclass)])
			}
		}
	}
	for _, a := range m.exact {
		if equalFold(ua, a.lit) {
			return a.rule
		}
	}
	for _, a := range m.prefix {
		if len(ua) >= len(a.lit) && equalFold(ua[:len(a.lit)], a.lit) {
			return a.rule
		}
	}
	for _, a := range m.suffix {
		if len(ua) >= len(a.lit) && equalFold(ua[len(ua)-len(a.lit):], a.lit) {
			return a.rule
		}
	}
	for _, r := range m.regexps {
		if r.re.Match(ua) {
			return r.rule
		}
	}
	return -1
}
