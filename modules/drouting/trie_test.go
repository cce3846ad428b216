package drouting

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"switchboard/store"
)

// randomPrefixes returns n distinct prefixes shaped like a carrier's rate
// table: a country code of 1 to 3 digits, then 2 to 8 more digits, some
// in E.164 form with a '+'.
func randomPrefixes(seed int64, n int) []string {
	rnd := rand.New(rand.NewSource(seed))
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	var b strings.Builder
	for len(out) < n {
		b.Reset()
		if rnd.Intn(10) == 0 {
			b.WriteByte('+')
		}
		for k := 1 + rnd.Intn(3) + 2 + rnd.Intn(7); k > 0; k-- {
			b.WriteByte(byte('0' + rnd.Intn(10)))
		}
		p := b.String()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// buildSet builds a rule set of group 0 with one rule per prefix (rule i
// has ID i+1 and the gateway list "gw1"), as a load from the store would.
func buildSet(d *Drouting, prefixes []string) *ruleSet {
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	b := newRuleBuilder(d, len(prefixes)+1)
	row := store.DRRule{Groups: "0", GWList: "gw1", SortAlg: "N"}
	for i, p := range prefixes {
		row.ID, row.Prefix = int64(i+1), p
		b.add(&row)
	}
	return b.finish()
}

// TestTrieMatchesBruteForce: on 20,000 random prefixes, the trie finds
// the longest prefix of random numbers that looking up every prefix of
// the number finds.
func TestTrieMatchesBruteForce(t *testing.T) {
	e := newEnv(t, envOptions{})
	prefixes := randomPrefixes(1, 20_000)
	rs := buildSet(e.d, prefixes)
	ids := make(map[string]int64, len(prefixes)) // the brute force: every prefix of the number looked up
	for i, p := range prefixes {
		ids[p] = int64(i + 1)
	}
	rnd := rand.New(rand.NewSource(2))
	for i := range 20_000 {
		var number string
		if i%2 == 0 {
			number = prefixes[rnd.Intn(len(prefixes))] + fmt.Sprint(rnd.Intn(1000))
		} else {
			number = fmt.Sprint(rnd.Int63())[:4+rnd.Intn(10)]
		}
		want := int64(0)
		for l := len(number); l > 0 && want == 0; l-- {
			want = ids[number[:l]]
		}
		got := int64(0)
		if r := rs.match(0, []byte(number), 600, 1); r != nil {
			got = r.id
		}
		if got != want {
			t.Fatalf("%s: rule %d, want %d (%q)", number, got, want, prefixes[max(want-1, 0)])
		}
	}
}

// TestTrieShapes: the empty prefix, every symbol, a prefix that is a
// prefix of another, rules of one prefix by priority then ID.
func TestTrieShapes(t *testing.T) {
	ents := []trieEntry{
		{prefix: "", prio: 0, id: 1, rule: 0},
		{prefix: "#", prio: 0, id: 2, rule: 1},
		{prefix: "*9", prio: 0, id: 3, rule: 2},
		{prefix: "+1", prio: 0, id: 4, rule: 3},
		{prefix: "0", prio: 0, id: 5, rule: 4},
		{prefix: "09", prio: 0, id: 6, rule: 5},
		{prefix: "0900", prio: 1, id: 9, rule: 6},
		{prefix: "0900", prio: 5, id: 8, rule: 7},
		{prefix: "0900", prio: 5, id: 7, rule: 8},
		{prefix: "9", prio: 0, id: 10, rule: 9},
	}
	tr := buildTrie(ents)
	var path [maxDepth + 1]int32
	for number, want := range map[string][]int32{
		"":       {0},
		"#1":     {0, 1},
		"*9":     {0, 2},
		"*8":     {0},
		"+15":    {0, 3},
		"09001":  {0, 4, 5, 8, 7, 6}, // the 0900 rules: priority 5 (IDs 7, 8) then 1
		"99":     {0, 9},
		"1":      {0},
		"0a":     {0, 4},
		"090":    {0, 4, 5},
		"0900":   {0, 4, 5, 8, 7, 6},
		"+":      {0},
		"0800#9": {0, 4},
	} {
		n := tr.walk([]byte(number), &path)
		var got []int32
		for _, nd := range path[:n] {
			got = append(got, tr.ruleRefs(nd)...)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q: rules %v, want %v", number, got, want)
		}
	}
}

// TestBadStoredRowsSkipped: rows written to the database by hand that do
// not validate are skipped, logged and counted; the others load.
func TestBadStoredRowsSkipped(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := newRuleBuilder(e.d, 100)
	for _, r := range []store.DRRule{
		{ID: 1, Groups: "0", Prefix: "49", GWList: "gw1", SortAlg: "N"},
		{ID: 2, Groups: "x", Prefix: "49", GWList: "gw1"},
		{ID: 3, Groups: "0", Prefix: "4a", GWList: "gw1"},
		{ID: 4, Groups: "0", Prefix: "49", GWList: ""},
		{ID: 5, Groups: "0", Prefix: "49", GWList: "gw1", TimeRec: "Mon-Fry"},
		{ID: 6, Groups: "0", Prefix: "49", GWList: "gw1", SortAlg: "Q"},
		{ID: 7, Groups: "0", Prefix: "49", GWList: "gw1", Priority: 2_000_000_000},
	} {
		b.add(&r)
	}
	rs := b.finish()
	if len(rs.rules) != 1 || rs.skipped != 6 || len(b.bad) != 6 {
		t.Fatalf("%d rules, %d skipped, %v", len(rs.rules), rs.skipped, b.bad)
	}
	for i, field := range []string{"groupid", "prefix", "gwlist", "timerec", "sort_alg", "priority"} {
		if !strings.Contains(b.bad[i].Error(), fmt.Sprintf("rule %d skipped: %s", i+2, field)) {
			t.Errorf("report %d: %v", i, b.bad[i])
		}
	}
	// max_rules: the rest is not loaded, and said so.
	b = newRuleBuilder(e.d, 2)
	for i := range 5 {
		b.add(&store.DRRule{ID: int64(i + 1), Groups: "0", Prefix: "1", GWList: "gw1", SortAlg: "N"})
	}
	if rs := b.finish(); len(rs.rules) != 2 || !b.tooMany || rs.skipped != 3 {
		t.Fatalf("max_rules 2: %d rules, %d skipped", len(rs.rules), rs.skipped)
	}
}
