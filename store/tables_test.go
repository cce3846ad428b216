package store

import "testing"

// The table code writes ? placeholders; PostgreSQL gets them numbered, and
// a ? inside quoted text (a literal, not a parameter) stays as it is.
func TestPgRebind(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`DELETE FROM grp WHERE username = ? AND domain = ? AND grp = ?`, `DELETE FROM grp WHERE username = $1 AND domain = $2 AND grp = $3`},
		{`UPDATE t SET a = '?', b = ? WHERE c = 'x''?' AND d = ?`, `UPDATE t SET a = '?', b = $1 WHERE c = 'x''?' AND d = $2`},
		{`VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`},
	} {
		if got := pgRebind(c.in); got != c.want {
			t.Errorf("pgRebind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// applyMigrations sends PostgreSQL's steps through pgRebind, which would
// turn a ? outside quotes (a jsonb operator, say) into a parameter: no
// step may hold one.
func TestMigrationsHoldNoPlaceholder(t *testing.T) {
	for _, m := range postgresMigrations {
		for _, q := range m.stmts {
			if pgRebind(q) != q {
				t.Errorf("postgres migration %d (%s) holds a ? outside quotes: %.80s", m.version, m.name, q)
			}
		}
	}
}
