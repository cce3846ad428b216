package fraud

import (
	"fmt"
	"math/rand"
	"testing"

	"switchboard/store"
)

// benchRules makes n rules in profile 1 with random prefixes of 2 to 9
// digits, all with thresholds, and loads them into e's module directly
// (adding 10,000 rules through the store one transaction each would only
// measure SQLite).
func benchRules(e *env, n int) (prefixes []string) {
	rnd := rand.New(rand.NewSource(1))
	rows := make([]store.FraudRule, 0, n)
	seen := map[string]bool{}
	for len(rows) < n {
		p := fmt.Sprint(rnd.Int63())[:2+rnd.Intn(8)]
		if seen[p] {
			continue
		}
		seen[p] = true
		prefixes = append(prefixes, p)
		rows = append(rows, store.FraudRule{ID: int64(len(rows) + 1), Profile: 1, Prefix: p,
			CPM: store.FraudLimit{Warning: 1_000_000, Critical: 1_000_000}, TotalCalls: store.FraudLimit{Critical: 1_000_000},
			ConcurrentCalls: store.FraudLimit{Critical: 1_000_000}, SequentialCalls: store.FraudLimit{Critical: 1_000_000}})
	}
	rs, bad := buildRules(rows)
	if len(bad) > 0 {
		panic(bad[0])
	}
	e.f.rules.Store(rs)
	return prefixes
}

// BenchmarkCheck is Check with 10,000 rules: the trie walk, the counter
// update, the thresholds. Numbers are a rule's prefix and 6 more digits.
// hit: 10,000 (caller, prefix) counters that exist; miss: numbers no rule
// matches; new: a new counter each time in a full table, which evicts the
// least recently used.
func BenchmarkCheck(b *testing.B) {
	e := newEnv(b, envOptions{})
	prefixes := benchRules(e, 10_000)
	const callers, pairs = 1000, 10_000
	users := make([][]byte, callers)
	for i := range users {
		users[i] = []byte(fmt.Sprintf("user%d@example.com", i))
	}
	numbers := make([][]byte, 4096)
	for i := range numbers {
		numbers[i] = []byte(prefixes[(i*7919)%len(prefixes)] + "123456")
	}
	misses := make([][]byte, len(numbers))
	for i := range misses {
		misses[i] = []byte("#" + string(numbers[i])) // '#' starts no prefix
	}
	pair := func(i int) ([]byte, []byte) { i %= pairs; return users[i%callers], numbers[i%len(numbers)] }
	for i := 0; i < pairs; i++ {
		u, n := pair(i)
		e.f.Check(nil, u, n, 1)
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			u, n := pair(i)
			e.f.Check(nil, u, n, 1)
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e.f.Check(nil, users[i%callers], misses[i%len(misses)], 1)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.Int()
			for pb.Next() {
				u, n := pair(i)
				e.f.Check(nil, u, n, 1)
				i++
			}
		})
	})
	b.Run("new", func(b *testing.B) {
		for i := 0; e.f.counters.Len() < e.f.perShard*e.f.counters.NumShards()-e.f.counters.NumShards(); i++ {
			e.f.Check(nil, []byte(fmt.Sprintf("filler%d@example.com", i)), numbers[0], 1)
		}
		fresh := make([][]byte, 1<<16)
		for i := range fresh {
			fresh[i] = []byte(fmt.Sprintf("new%d@example.com", i))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e.f.Check(nil, fresh[i%len(fresh)], numbers[i%len(numbers)], 1)
			i++
		}
	})
}

// BenchmarkMatch is the trie lookup alone with 10,000 rules.
func BenchmarkMatch(b *testing.B) {
	e := newEnv(b, envOptions{})
	prefixes := benchRules(e, 10_000)
	rs := e.f.rules.Load()
	t := rs.profiles[1]
	numbers := make([][]byte, 4096)
	for i := range numbers {
		numbers[i] = []byte(prefixes[(i*7919)%len(prefixes)] + "123456")
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if t.match(rs.rules, numbers[i%len(numbers)], 600, 1) == nil {
			b.Fatal("no match")
		}
		i++
	}
}
