package store

import (
	"context"
	"strconv"
	"testing"
)

// TestPooledStatements: on SQLite a query run on the pool again and again
// (the modules' table version polls) is prepared once; past
// maxPooledStmts distinct queries still run, unprepared; inside a
// transaction nothing is kept.
func TestPooledStatements(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &s.b.(*SQLite).sqlBase
	count := func() int {
		b.stmtMu.Lock()
		defer b.stmtMu.Unlock()
		return b.stmtCount
	}
	before := count()
	for i := 0; i < 5; i++ {
		if _, err := s.DialplanVersion(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := count() - before; n != 1 {
		t.Fatalf("five polls prepared %d statements, want 1", n)
	}
	var v int
	err = b.txConn(ctx, func(c conn) error { return c.queryRow(ctx, `SELECT 12345`).Scan(&v) }, nil)
	if err != nil || v != 12345 || count()-before != 1 {
		t.Fatalf("a query in a transaction: %d, %v; %d statements kept", v, err, count()-before)
	}
	for i := 0; i < maxPooledStmts+8; i++ {
		var v int
		err := b.poolConn(ctx, func(ctx context.Context, c conn) error {
			return c.queryRow(ctx, `SELECT `+strconv.Itoa(i)).Scan(&v)
		})
		if err != nil || v != i {
			t.Fatalf("query %d: %d, %v", i, v, err)
		}
	}
	if n := count(); n != maxPooledStmts {
		t.Fatalf("%d statements kept, want the bound %d", n, maxPooledStmts)
	}
}
