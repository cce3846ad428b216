package dialplan

import (
	"fmt"
	"math/rand"
	"runtime"
	"strconv"
	"testing"

	"switchboard/store"
)

// benchTable builds a table of n rules of op in dialplan 1 (random
// prefixes of 2 to 9 digits, random 10-digit numbers, or regexes
// "^<prefix>(\d+)$"), plus the rules of extra, directly (adding 10,000
// rules through the store would only measure SQLite). It returns the
// match expressions.
func benchTable(b testing.TB, op string, n int, extra ...store.DialplanRule) (*table, []string) {
	rnd := rand.New(rand.NewSource(1))
	rows := make([]store.DialplanRule, 0, n+len(extra))
	seen := map[string]bool{}
	var exps []string
	for len(exps) < n {
		var exp, repl string
		switch op {
		case "prefix":
			exp, repl = strconv.FormatInt(rnd.Int63(), 10)[:2+rnd.Intn(8)], `+33\2`
		case "exact":
			exp, repl = fmt.Sprintf("0%09d", rnd.Intn(1_000_000_000)), `+\0`
		case "regex":
			exp, repl = `^`+strconv.FormatInt(rnd.Int63(), 10)[:2+rnd.Intn(8)]+`(\d+)$`, `+33\1`
		}
		if seen[exp] {
			continue
		}
		seen[exp] = true
		exps = append(exps, exp)
		rows = append(rows, store.DialplanRule{DPID: 1, Priority: 10, MatchOp: op, MatchExp: exp, ReplExp: repl})
	}
	rows = append(rows, extra...)
	for i := range rows {
		rows[i].ID = int64(i + 1)
	}
	t := buildTable(rows, emptyTable, func(r *store.DialplanRule, err error) { b.Fatal(err) })
	return t, exps
}

// BenchmarkTranslate: one translation in a dialplan of 10,000 rules.
//
//   - prefix: 10,000 prefix rules, inputs a rule's prefix and 6 digits,
//     output +33 and the rest;
//   - exact: 10,000 numbers, inputs one of them;
//   - miss: 10,000 prefix rules, inputs that start with none;
//   - regex-group: ^00(\d+)$ to +\1, with ^3\d{3}$ before it, at a better
//     priority than 10,000 prefix rules (the prefix walk, then two
//     regexes; the second matches, with groups: one allocation);
//   - regex-literal: ^3\d{3}$ to a literal, the first regex tried, in the
//     same table (no groups: no allocation);
//   - regex-10k-first, regex-10k-last: 10,000 regex rules ^<prefix>(\d+)$,
//     inputs matching the first one tried, or only the last: regexes are
//     tried one after the other, so a table of many regexes costs what
//     they cost together (write prefixes as prefix rules).
func BenchmarkTranslate(b *testing.B) {
	prefixTab, prefixes := benchTable(b, "prefix", 10_000)
	mixedTab, _ := benchTable(b, "prefix", 10_000,
		store.DialplanRule{DPID: 1, Priority: 1, MatchOp: "regex", MatchExp: `^00(\d+)$`, ReplExp: `+\1`},
		store.DialplanRule{DPID: 1, Priority: 0, MatchOp: "regex", MatchExp: `^3\d{3}$`, ReplExp: `short-code`})
	exactTab, numbers := benchTable(b, "exact", 10_000)
	regexTab, regexes := benchTable(b, "regex", 10_000)
	inputs := func(f func(i int) string) [][]byte {
		in := make([][]byte, 4096)
		for i := range in {
			in[i] = []byte(f(i))
		}
		return in
	}
	first := regexTab.rules[regexTab.plans[1].regex[0]].matchExp
	last := regexTab.rules[regexTab.plans[1].regex[len(regexes)-1]].matchExp
	for _, c := range []struct {
		name string
		tab  *table
		in   [][]byte
	}{
		{"prefix", prefixTab, inputs(func(i int) string { return prefixes[(i*7919)%len(prefixes)] + "123456" })},
		{"exact", exactTab, inputs(func(i int) string { return numbers[(i*7919)%len(numbers)] })},
		{"miss", prefixTab, inputs(func(i int) string { return "#" + prefixes[(i*7919)%len(prefixes)] })},
		{"regex-group", mixedTab, inputs(func(i int) string { return "0049" + strconv.Itoa(30_000_000+i) })},
		{"regex-literal", mixedTab, inputs(func(i int) string { return strconv.Itoa(3000 + i%1000) })},
		{"regex-10k-first", regexTab, inputs(func(i int) string { return first[1:len(first)-6] + strconv.Itoa(100000+i) })},
		{"regex-10k-last", regexTab, inputs(func(i int) string { return last[1:len(last)-6] + strconv.Itoa(100000+i) })},
	} {
		b.Run(c.name, func(b *testing.B) {
			out := make([]byte, 0, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.tab.translate(1, c.in[i&4095], out[:0])
			}
		})
	}
}

// BenchmarkBuildTable is the work of a reload after the rows are read:
// 10,000 rules of each kind (regexes compiled anew, as at the first load).
func BenchmarkBuildTable(b *testing.B) {
	for _, op := range []string{"prefix", "exact", "regex"} {
		b.Run(op, func(b *testing.B) {
			t, _ := benchTable(b, op, 10_000)
			rows := make([]store.DialplanRule, 0, len(t.rules))
			for _, r := range t.rules {
				rows = append(rows, store.DialplanRule{ID: r.id, DPID: 1, Priority: r.pr, MatchOp: op, MatchExp: r.matchExp, ReplExp: `\0`})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				buildTable(rows, emptyTable, func(*store.DialplanRule, error) {})
			}
		})
	}
}

// TestTableMemory reports the heap a table of 10,000 rules of each kind
// takes, and fails past a bound that catches a structure gone wrong.
func TestTableMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	for _, c := range []struct {
		op    string
		bound int // bytes per rule
	}{{"prefix", 2000}, {"exact", 400}, {"regex", 20000}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tab, _ := benchTable(t, c.op, 10_000)
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := int(after.HeapAlloc-before.HeapAlloc) / 10_000
		t.Logf("%s: %d bytes per rule (10,000 rules: %.1f MiB)", c.op, per, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))
		if per > c.bound {
			t.Errorf("%s: %d bytes per rule, more than %d", c.op, per, c.bound)
		}
		runtime.KeepAlive(tab)
	}
}

// BenchmarkLoad is a whole reload of 10,000 prefix rules: read from
// SQLite, validated, built and swapped in (what the poller does when the
// table's version moves).
func BenchmarkLoad(b *testing.B) {
	e := newEnv(b, envOptions{})
	t, _ := benchTable(b, "prefix", 10_000)
	rows := make([]store.DialplanRule, 0, len(t.rules))
	for _, r := range t.rules {
		rows = append(rows, store.DialplanRule{DPID: 1, Priority: r.pr, MatchOp: "prefix", MatchExp: r.matchExp, ReplExp: `+33\2`})
	}
	if err := e.st.AddDialplanRules(ctx, rows, true); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.d.Load(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
