package drouting

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// FuzzTrie: for any prefixes (of the operator's rules) and any number (the
// caller's Request-URI user, normalised), the trie's walk gives the rules
// of every prefix of the number, shortest first, each prefix's rules by
// priority (highest first) then ID: what looking up each prefix of the
// number in the list finds.
func FuzzTrie(f *testing.F) {
	f.Add([]byte(",#,*9,+1,0,09,0900,0900,0900,9"), []byte("09001"))
	f.Add([]byte("4420,44,4420,+4420,442"), []byte("+442079460000"))
	f.Add([]byte(strings.Repeat("1", 70)+","+strings.Repeat("1", 64)), []byte(strings.Repeat("1", 80)))
	f.Fuzz(func(t *testing.T, list, number []byte) {
		var ents []trieEntry
		for i, p := range bytes.Split(list, []byte{','}) {
			if len(p) > maxDepth || bytes.ContainsFunc(p, func(r rune) bool { return !strings.ContainsRune(alphabet, r) }) {
				continue // the rule builder refuses such a prefix
			}
			ents = append(ents, trieEntry{prefix: string(p), prio: int32(i % 3), id: int64(len(ents) + 1), rule: int32(len(ents))})
		}
		if len(ents) == 0 {
			return
		}
		byRule := slices.Clone(ents)
		tr := buildTrie(ents)
		var path [maxDepth + 1]int32
		n := tr.walk(number, &path)
		var got []int32
		for _, nd := range path[:n] {
			got = append(got, tr.ruleRefs(nd)...)
		}
		var want []int32
		for l := 0; l <= len(number) && l <= maxDepth; l++ {
			if l > 0 && !strings.ContainsRune(alphabet, rune(number[l-1])) {
				break
			}
			var here []trieEntry
			for _, e := range byRule {
				if e.prefix == string(number[:l]) {
					here = append(here, e)
				}
			}
			slices.SortFunc(here, func(a, b trieEntry) int {
				if a.prio != b.prio {
					return int(b.prio - a.prio)
				}
				return int(a.id - b.id)
			})
			for _, e := range here {
				want = append(want, e.rule)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("prefixes %q, number %q: rules %v, want %v", list, number, got, want)
		}
	})
}
