package drouting

import (
	"math/bits"
	"slices"
	"strings"
)

// The prefix trie of one routing group. A provider's rule table can hold a
// million prefixes (every number block of every destination), so a node
// is 12 bytes: a bitmap of the symbols that have a child, the index of
// the first child (the children of a node are stored together, in symbol
// order, so the child for symbol s is first + the number of bits below s),
// and where the node's rules start in the rule index list. A lookup walks
// one node per character of the number and allocates nothing.

// The alphabet, in byte order ('#' < '*' < '+' < '0'), so that prefixes
// sorted as strings come out in symbol order.
const alphabet = "#*+0123456789"

var symbolOf = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// node is a trie node. A node with no rules has nrules 0.
type node struct {
	kids   uint16 // bit s: a child for alphabet[s]
	nrules uint16
	first  int32 // index of the first child
	rules  int32 // index into trie.refs
}

// trie holds the rules of one group by prefix.
type trie struct {
	nodes []node
	refs  []int32 // rule indexes, each node's in priority order
	kids  []child // scratch of build
}

// maxDepth bounds a prefix and the part of a number matched.
const maxDepth = 64

// walk returns the nodes on the path of number that hold rules, shortest
// first, in path; number must be in the alphabet (see normalise).
func (t *trie) walk(number []byte, path *[maxDepth + 1]int32) int {
	n := 0
	cur := int32(0)
	if t.nodes[0].nrules > 0 {
		path[0] = 0
		n = 1
	}
	for i := 0; i < len(number) && i < maxDepth; i++ {
		nd := &t.nodes[cur]
		s := uint(symbolOf[number[i]])
		if s >= uint(len(alphabet)) || nd.kids&(1<<s) == 0 {
			break
		}
		cur = nd.first + int32(bits.OnesCount16(nd.kids&(1<<s-1)))
		if t.nodes[cur].nrules > 0 {
			path[n] = cur
			n++
		}
	}
	return n
}

// ruleRefs returns the rules of node n, highest priority first.
func (t *trie) ruleRefs(n int32) []int32 {
	nd := &t.nodes[n]
	return t.refs[nd.rules : nd.rules+int32(nd.nrules)]
}

// trieEntry is one rule of a group while the trie is built.
type trieEntry struct {
	prefix string
	prio   int32
	id     int64
	rule   int32
}

// buildTrie builds the trie of entries. It sorts them by prefix, then
// priority (highest first), then rule ID.
func buildTrie(ents []trieEntry) *trie {
	slices.SortFunc(ents, func(a, b trieEntry) int {
		if c := strings.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		if a.prio != b.prio {
			if a.prio > b.prio {
				return -1
			}
			return 1
		}
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	t := &trie{nodes: make([]node, 1, len(ents)+1), refs: make([]int32, 0, len(ents))}
	t.build(ents)
	t.kids = nil
	// Give back what the growing slices over-allocated: the trie lives
	// until the next reload.
	if cap(t.nodes) > len(t.nodes)+len(t.nodes)/16 {
		t.nodes = slices.Clone(t.nodes)
	}
	return t
}

// build lays the trie out level by level (breadth first): the nodes of
// the first levels, which every lookup reads, are packed together at the
// start of the array and stay in the processor's cache; a lookup then
// misses the cache only in the deep levels.
func (t *trie) build(ents []trieEntry) {
	// Every node is queued once, in the order it is created, so a node's
	// index is its place in the queue.
	type job struct {
		lo, hi int32 // ents[lo:hi] share their first depth characters
		depth  int32
	}
	queue := make([]job, 1, len(ents)+1)
	queue[0] = job{0, int32(len(ents)), 0}
	for n := 0; n < len(queue); n++ {
		j := queue[n]
		for _, c := range t.fill(int32(n), ents[j.lo:j.hi], int(j.depth)) {
			queue = append(queue, job{j.lo + int32(c.lo), j.lo + int32(c.hi), j.depth + 1})
		}
	}
}

// child is a node fill created: its index and its entries.
type child struct {
	node   int32
	lo, hi int
}

// fill sets node n's rules from ents (sorted, sharing their first depth
// characters: those that end here come first) and creates its children,
// one per next character, together at the end of the node array.
func (t *trie) fill(n int32, ents []trieEntry, depth int) []child {
	i := 0
	for i < len(ents) && len(ents[i].prefix) == depth {
		i++
	}
	if i > 0 {
		k := min(i, 1<<16-1) // more rules on one prefix than anyone writes: the rest are unreachable
		t.nodes[n].rules = int32(len(t.refs))
		t.nodes[n].nrules = uint16(k)
		for _, e := range ents[:k] {
			t.refs = append(t.refs, e.rule)
		}
	}
	if i == len(ents) {
		return nil
	}
	t.kids = t.kids[:0]
	first := int32(len(t.nodes))
	var kids uint16
	for j := i; j < len(ents); {
		k := runLen(ents[j:], depth)
		kids |= 1 << uint(symbolOf[ents[j].prefix[depth]])
		t.kids = append(t.kids, child{first + int32(len(t.kids)), j, j + k})
		t.nodes = append(t.nodes, node{})
		j += k
	}
	t.nodes[n].kids, t.nodes[n].first = kids, first
	return t.kids
}

// runLen is how many of ents (sorted, longer than depth) share the
// character at depth with the first.
func runLen(ents []trieEntry, depth int) int {
	c := ents[0].prefix[depth]
	k := 1
	for k < len(ents) && ents[k].prefix[depth] == c {
		k++
	}
	return k
}

// bytes is the memory the trie holds.
func (t *trie) bytes() int64 {
	return int64(cap(t.nodes))*12 + int64(cap(t.refs))*4
}
