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
