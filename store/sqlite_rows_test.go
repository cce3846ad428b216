package store

import (
	"strings"
	"testing"
)

// TestRowQueries: every count chunkRows returns has its text, with as
// many row groups as rows, the tail last.
func TestRowQueries(t *testing.T) {
	q := valuesQueries("INSERT INTO t (a, b) VALUES ", 2, " ON CONFLICT DO NOTHING")
	in := inQueries("DELETE FROM t WHERE id IN ")
	for n := 1; n <= 100; n++ {
		k := chunkRows(n)
		if k < 1 || k > maxBatchRows || k > n || k&(k-1) != 0 {
			t.Fatalf("chunkRows(%d) = %d", n, k)
		}
		v := q.rows(k)
		if got := strings.Count(v, "(?, ?)"); got != k || !strings.HasSuffix(v, " ON CONFLICT DO NOTHING") {
			t.Fatalf("valuesQueries rows(%d) = %q: %d groups", k, v, got)
		}
		if got := strings.Count(in.rows(k), "?"); got != k {
			t.Fatalf("inQueries rows(%d): %d parameters", k, got)
		}
	}
}

// TestEachChunk: chunks cover every item once, in order, never mix items
// same separates, and hold at most 32.
func TestEachChunk(t *testing.T) {
	kinds := []byte(strings.Repeat("a", 70) + "bb" + "a" + strings.Repeat("b", 5))
	var got []string
	err := eachChunk(len(kinds), func(i, k int) bool { return kinds[i] == kinds[k] }, func(i, n int) error {
		got = append(got, string(kinds[i:i+n]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strings.Repeat("a", 32), strings.Repeat("a", 32), "aaaa", "aa", "bb", "a", "bbbb", "b"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("chunks %q, want %q", got, want)
	}
}
