package dialplan

import (
	"fmt"
	"regexp"
	"sort"

	"switchboard/store"
)

type matchOp uint8

const (
	opExact matchOp = iota
	opPrefix
	opRegex
)

func parseOp(s string) matchOp {
	switch s {
	case store.DialplanExact:
		return opExact
	case store.DialplanPrefix:
		return opPrefix
	}
	return opRegex
}

// part is a piece of a rule's output: a literal, or a reference to a part
// of the input (ref >= 0: \N).
type part struct {
	lit string
	ref int
}

// rule is a store.DialplanRule made ready for matching.
type rule struct {
	id       int64
	dpid     int
	pr       int
	op       matchOp
	fold     bool // case-insensitive
	key      string
	re       *regexp.Regexp // regex rules: match_exp
	subst    *regexp.Regexp // regex rules with subst_exp (re itself when the two are the same)
	repl     []part
	keep     bool // no repl_exp: the output is the input
	hasRefs  bool // repl refers to the input
	attrs    string
	matchExp string // as stored, for the management API
}

// before orders rules that match the same input: the lower priority
// number first; at equal priority exact before prefix before regex, a
// longer prefix before a shorter one, then the lower ID.
func before(a, b *rule) bool {
	if a.pr != b.pr {
		return a.pr < b.pr
	}
	if a.op != b.op {
		return a.op < b.op
	}
	if a.op == opPrefix && len(a.key) != len(b.key) {
		return len(a.key) > len(b.key)
	}
	return a.id < b.id
}

// The prefix trie's alphabet: the digits, '*', '#' and '+'.
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

// node is a prefix trie node: children by digit (0: none; the root is
// never a child) and the best rule whose prefix ends here (-1: none).
// Rules with the same prefix match the same inputs, so only the best is
// kept.
type node struct {
	next [alphabet]int32
	best int32
}

// plan holds the rules of one dialplan (dpid), each kind in the structure
// that finds it without a regular expression engine where none is needed.
type plan struct {
	exact   map[string]int32 // input -> best exact rule
	fold    map[string]int32 // ASCII-lower-cased input -> best case-insensitive exact rule
	foldMax int              // longest fold key: longer inputs skip the map
	trie    []node           // prefix rules; nil when there are none
	regex   []int32          // regex rules, in the order they are tried
}

// table is one generation of the rules: built whole, swapped whole.
type table struct {
	rules   []rule
	plans   map[int]*plan
	regexes map[string]*regexp.Regexp // compiled, by flags and expression: reused by the next load
	version int64                     // store.DialplanVersion it was loaded at
	skipped int                       // stored rows that did not validate
	off     int                       // disabled rules
}

var emptyTable = &table{plans: map[int]*plan{}, regexes: map[string]*regexp.Regexp{}}

// buildTable turns stored rows into a table. Rows that do not validate
// (written to the database by hand) are left out and reported to bad.
// Regular expressions compiled for prev are reused.
func buildTable(rows []store.DialplanRule, prev *table, bad func(r *store.DialplanRule, err error)) *table {
	t := &table{plans: map[int]*plan{}, regexes: make(map[string]*regexp.Regexp, len(prev.regexes))}
	compile := func(expr string, fold bool) (*regexp.Regexp, error) {
		k := expr
		if fold {
			k = "i:" + expr
		} else {
			k = "c:" + expr
		}
		if re := t.regexes[k]; re != nil {
			return re, nil
		}
		re := prev.regexes[k]
		if re == nil {
			flags := 0
			if fold {
				flags = store.DialplanCaseInsensitive
			}
			var err error
			if re, err = store.DialplanRegexp(expr, flags); err != nil {
				return nil, err
			}
		}
		t.regexes[k] = re
		return re, nil
	}
	for i := range rows {
		row := rows[i]
		if row.Disabled {
			t.off++
			continue
		}
		r, err := compileRule(&row, compile)
		if err != nil {
			t.skipped++
			bad(&rows[i], err)
			continue
		}
		t.rules = append(t.rules, r)
	}
	for i := range t.rules {
		t.add(int32(i))
	}
	for _, p := range t.plans {
		sort.Slice(p.regex, func(a, b int) bool { return before(&t.rules[p.regex[a]], &t.rules[p.regex[b]]) })
	}
	return t
}

func compileRule(row *store.DialplanRule, compile func(string, bool) (*regexp.Regexp, error)) (rule, error) {
	if err := store.CheckDialplanRule(row); err != nil {
		return rule{}, err
	}
	parts, _ := store.ParseDialplanRepl(row.ReplExp) // checked above
	r := rule{id: row.ID, dpid: row.DPID, pr: row.Priority, op: parseOp(row.MatchOp),
		fold: row.MatchFlags&store.DialplanCaseInsensitive != 0, key: row.MatchExp,
		keep: row.ReplExp == "", attrs: row.Attrs, matchExp: row.MatchExp}
	for _, p := range parts {
		r.repl = append(r.repl, part{lit: p.Lit, ref: p.Ref})
		r.hasRefs = r.hasRefs || p.Ref >= 0
	}
	if r.op == opExact && r.fold {
		r.key = lowerASCII(r.key)
	}
	if r.op != opRegex {
		return r, nil
	}
	var err error
	if r.re, err = compile(row.MatchExp, r.fold); err != nil {
		return rule{}, fmt.Errorf("match_exp: %w", err)
	}
	if row.SubstExp != "" {
		if r.subst, err = compile(row.SubstExp, r.fold); err != nil {
			return rule{}, fmt.Errorf("subst_exp: %w", err)
		}
	}
	return r, nil
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// add files rule i in its dialplan's plan.
func (t *table) add(i int32) {
	r := &t.rules[i]
	p := t.plans[r.dpid]
	if p == nil {
		p = &plan{}
		t.plans[r.dpid] = p
	}
	keep := func(cur int32, ok bool) int32 {
		if !ok || before(r, &t.rules[cur]) {
			return i
		}
		return cur
	}
	switch r.op {
	case opExact:
		if r.fold {
			if p.fold == nil {
				p.fold = map[string]int32{}
			}
			cur, ok := p.fold[r.key]
			p.fold[r.key] = keep(cur, ok)
			p.foldMax = max(p.foldMax, len(r.key))
			return
		}
		if p.exact == nil {
			p.exact = map[string]int32{}
		}
		cur, ok := p.exact[r.key]
		p.exact[r.key] = keep(cur, ok)
	case opPrefix:
		if p.trie == nil {
			p.trie = []node{{best: -1}}
		}
		n := p.insert(r.key)
		cur := p.trie[n].best
		p.trie[n].best = keep(cur, cur >= 0)
	case opRegex:
		p.regex = append(p.regex, i)
	}
}

func (p *plan) insert(prefix string) int32 {
	n := int32(0)
	for i := 0; i < len(prefix); i++ {
		d := digitIndex(prefix[i])
		next := p.trie[n].next[d]
		if next == 0 {
			next = int32(len(p.trie))
			p.trie = append(p.trie, node{best: -1})
			p.trie[n].next[d] = next
		}
		n = next
	}
	return n
}

// translate finds the rule of dialplan id for in and appends its output
// to out. It allocates nothing for exact and prefix rules, nor for regex
// rules whose output does not refer to the input (see README.md).
func (t *table) translate(id int, in, out []byte) ([]byte, *rule, bool) {
	p := t.plans[id]
	if p == nil {
		return out, nil, false
	}
	// cand is the best exact or prefix rule found, plen the length of
	// its prefix.
	var cand *rule
	plen := 0
	better := func(i int32) bool {
		return i >= 0 && (cand == nil || before(&t.rules[i], cand))
	}
	if p.exact != nil {
		if i, ok := p.exact[string(in)]; ok {
			cand = &t.rules[i]
		}
	}
	if p.fold != nil && len(in) <= p.foldMax {
		var kb [store.MaxDialplanKey]byte
		k := kb[:len(in)]
		for j, c := range in {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			k[j] = c
		}
		if i, ok := p.fold[string(k)]; ok && better(i) {
			cand = &t.rules[i]
		}
	}
	if p.trie != nil {
		n := int32(0)
		if b := p.trie[0].best; better(b) {
			cand, plen = &t.rules[b], 0
		}
		for j := 0; j < len(in); j++ {
			d := digitIndex(in[j])
			if d < 0 {
				break
			}
			if n = p.trie[n].next[d]; n == 0 {
				break
			}
			if b := p.trie[n].best; better(b) {
				cand, plen = &t.rules[b], j+1
			}
		}
	}
	// Regular expressions are tried, in order, only while they could
	// beat the rule found: at equal priority the exact or prefix rule
	// wins, so a table of prefixes never runs a regex for inputs they
	// cover at a better priority.
	for _, i := range p.regex {
		r := &t.rules[i]
		if cand != nil && r.pr >= cand.pr {
			break
		}
		if res, ok := r.applyRegex(in, out); ok {
			return res, r, true
		}
	}
	if cand == nil {
		return out, nil, false
	}
	if cand.keep {
		return append(out, in...), cand, true
	}
	// The input's parts as a regex match would give them: \0 the input;
	// for a prefix rule \1 the prefix and \2 the rest.
	loc := [6]int{0, len(in), 0, plen, plen, len(in)}
	return expand(out, in, loc[:], cand.repl), cand, true
}

// applyRegex matches a regex rule and appends its output. Only
// FindSubmatchIndex, which allocates its result, gives the positions
// of groups: rules that need none are matched with Match, which does not.
func (r *rule) applyRegex(in, out []byte) ([]byte, bool) {
	switch {
	case r.keep:
		if !r.re.Match(in) {
			return out, false
		}
		return append(out, in...), true
	case r.subst == nil && !r.hasRefs:
		if !r.re.Match(in) {
			return out, false
		}
		return expand(out, in, nil, r.repl), true
	case r.subst == nil:
		loc := r.re.FindSubmatchIndex(in)
		if loc == nil {
			return out, false
		}
		return expand(out, in, loc, r.repl), true
	}
	var loc []int
	if r.subst == r.re {
		if loc = r.re.FindSubmatchIndex(in); loc == nil {
			return out, false
		}
	} else {
		if !r.re.Match(in) {
			return out, false
		}
		if loc = r.subst.FindSubmatchIndex(in); loc == nil {
			// Nothing to substitute: the input as it is (sed).
			return append(out, in...), true
		}
	}
	out = append(out, in[:loc[0]]...)
	out = expand(out, in, loc, r.repl)
	return append(out, in[loc[1]:]...), true
}

// expand appends parts to out, references taken from in at the positions
// in loc (pairs of start and end, -1 for a group that did not take part:
// it expands to nothing).
func expand(out, in []byte, loc []int, parts []part) []byte {
	for _, p := range parts {
		if p.ref < 0 {
			out = append(out, p.lit...)
			continue
		}
		if 2*p.ref+1 < len(loc) && loc[2*p.ref] >= 0 {
			out = append(out, in[loc[2*p.ref]:loc[2*p.ref+1]]...)
		}
	}
	return out
}
