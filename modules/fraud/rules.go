package fraud

import (
	"fmt"
	"sort"

	"switchboard/parser"
	"switchboard/store"
)

// param is a monitored value, in the order thresholds are compared
// (OpenSIPS: cpm, total calls, concurrent calls, sequential calls).
type param uint8

const (
	paramCPM param = iota
	paramTotal
	paramConcurrent
	paramSequential
	numParams
)

func (p param) String() string { return store.FraudLimitNames[p] }

// limit is a warning and a critical threshold; 0 is off.
type limit struct{ warning, critical int32 }

// rule is a store.FraudRule made ready for matching.
type rule struct {
	id         int64
	profile    int
	prefix     string
	start, end int16 // minutes after midnight, both included
	days       uint8 // bit d: time.Weekday d
	limits     [numParams]limit
}

// activeAt reports whether the rule applies at minute of the day on
// weekday. A start after the end spans midnight; days are those of the
// minute itself (22:00-06:00 on Mon applies Monday 22:00-23:59 and Monday
// 00:00-06:00).
func (r *rule) activeAt(minute, weekday int) bool {
	if r.days&(1<<weekday) == 0 {
		return false
	}
	m := int16(minute)
	if r.start <= r.end {
		return m >= r.start && m <= r.end
	}
	return m >= r.start || m <= r.end
}

// The trie's alphabet: the digits, '*', '#' and '+'.
const alphabet = 13

func digitIndex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c == '*':
		return 10
	case c == '#':
		return 11
	case c == '+':
		return 12
	}
	return -1
}

// isSeparator reports the visual separators of telephone numbers (RFC
// 3966), which matching skips: "0900-123" is matched as "0900123", so a
// gateway that drops them cannot be reached around a rule.
func isSeparator(c byte) bool {
	return c == '-' || c == '.' || c == '(' || c == ')' || c == ' '
}

// numberByte returns the character of number at i, with an escaped
// character (RFC 3261 §19.1.2: "%30" is '0') decoded, and the index after
// it. A user part may escape any character and the next hop sees the
// number unescaped, so matching must too.
func numberByte(number []byte, i int) (byte, int) {
	if c, ok := parser.DecodeEscape(number, i); ok {
		return c, i + 3
	}
	return number[i], i + 1
}

// node is a trie node: children by digit (0: none; the root is never a
// child) and the node's rules, order[first:first+n], by ID.
type node struct {
	next  [alphabet]int32
	first int32
	n     int32
}

// trie holds the rules of one profile by prefix.
type trie struct {
	nodes []node
	order []int32 // indexes into ruleSet.rules
	// concurrent: a rule of the profile has a concurrent_calls
	// threshold (CountsConcurrent).
	concurrent bool
}

// match returns the rule with the longest prefix of number that is active
// at minute on weekday, or nil. Among rules of one prefix the lowest ID
// wins. It allocates nothing.
func (t *trie) match(rules []rule, number []byte, minute, weekday int) *rule {
	best := t.active(rules, 0, minute, weekday)
	n := int32(0)
	for i := 0; i < len(number); {
		var c byte
		c, i = numberByte(number, i)
		if isSeparator(c) {
			continue
		}
		i := digitIndex(c)
		if i < 0 {
			break
		}
		if n = t.nodes[n].next[i]; n == 0 {
			break
		}
		if r := t.active(rules, n, minute, weekday); r != nil {
			best = r
		}
	}
	return best
}

func (t *trie) active(rules []rule, n int32, minute, weekday int) *rule {
	nd := &t.nodes[n]
	for _, i := range t.order[nd.first : nd.first+nd.n] {
		if r := &rules[i]; r.activeAt(minute, weekday) {
			return r
		}
	}
	return nil
}

// ruleSet is one generation of rules: swapped whole on reload.
type ruleSet struct {
	rules    []rule
	profiles map[int]*trie
	version  int64 // store.FraudRulesVersion it was loaded at
}

// buildRules turns stored rows into a rule set; rows that do not validate
// are left out and reported.
func buildRules(rows []store.FraudRule) (*ruleSet, []error) {
	var bad []error
	rs := &ruleSet{profiles: map[int]*trie{}}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	for i := range rows {
		r, err := compile(&rows[i])
		if err != nil {
			bad = append(bad, fmt.Errorf("rule %d: %w", rows[i].ID, err))
			continue
		}
		rs.rules = append(rs.rules, r)
	}
	// Group the rules of each node, in ID order: insert every prefix first,
	// then lay the rule lists out node by node.
	perNode := map[*trie]map[int32][]int32{}
	for i := range rs.rules {
		r := &rs.rules[i]
		t := rs.profiles[r.profile]
		if t == nil {
			t = &trie{nodes: make([]node, 1)}
			rs.profiles[r.profile] = t
			perNode[t] = map[int32][]int32{}
		}
		n := t.insert(r.prefix)
		perNode[t][n] = append(perNode[t][n], int32(i))
		if r.limits[paramConcurrent] != (limit{}) {
			t.concurrent = true
		}
	}
	for t, lists := range perNode {
		for n := range t.nodes {
			l := lists[int32(n)]
			t.nodes[n].first, t.nodes[n].n = int32(len(t.order)), int32(len(l))
			t.order = append(t.order, l...)
		}
	}
	return rs, bad
}

func (t *trie) insert(prefix string) int32 {
	n := int32(0)
	for i := 0; i < len(prefix); i++ {
		d := digitIndex(prefix[i])
		next := t.nodes[n].next[d]
		if next == 0 {
			next = int32(len(t.nodes))
			t.nodes = append(t.nodes, node{})
			t.nodes[n].next[d] = next
		}
		n = next
	}
	return n
}

func compile(s *store.FraudRule) (rule, error) {
	c := *s
	if err := store.CheckFraudRule(&c); err != nil {
		return rule{}, err
	}
	start, _ := store.ParseFraudHour(c.StartHour)
	end, _ := store.ParseFraudHour(c.EndHour)
	days, _ := store.ParseFraudDays(c.Days)
	r := rule{id: c.ID, profile: c.Profile, prefix: c.Prefix, start: int16(start), end: int16(end), days: days}
	for p, l := range c.Limits() {
		r.limits[p] = limit{int32(l.Warning), int32(l.Critical)}
	}
	return r, nil
}
