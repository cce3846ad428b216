package store

import (
	"context"
	"database/sql"
	"sync"
)

// sqlBase is what the SQLite and MySQL backends share: a database/sql
// pool whose statements take ? placeholders and where a failed statement
// (a duplicate) leaves the transaction usable. It is their tableBackend
// (tables.go).
type sqlBase struct {
	db *sql.DB
	// dup tells the driver's duplicate key error, fk its foreign key
	// error.
	dup, fk func(error) bool
	// unreachable marks the errors that mean the server cannot be
	// reached (MySQL.check); nil on SQLite.
	unreachable func(error) error
	// appendChange appends to the change log inside tx (the backend's
	// logChange: the numbering differs).
	appendChange func(ctx context.Context, tx *sql.Tx, kind ChangeKind, user, domain string) error

	// stmts are the pool's prepared queries by their text (sqlConn.pooled),
	// kept when keepStmts (SQLite): the modules poll table versions and
	// the change log every second or so, and SQLite parsing the same
	// statement at every poll, in the proxy's own process, was most of
	// what an idle server's polls cost. MySQL interpolates the arguments
	// into the text and parses on the server (one round trip, and the
	// text protocol's result types).
	keepStmts bool
	stmts     sync.Map // string -> *sql.Stmt
	stmtCount int      // under stmtMu
	stmtMu    sync.Mutex
}

// maxPooledStmts bounds the prepared queries kept: queries whose text is
// built from a varying number of arguments are prepared each time once it
// is reached.
const maxPooledStmts = 64

func (b *sqlBase) check(err error) error {
	if b.unreachable == nil || err == nil {
		return err
	}
	return b.unreachable(err)
}

// inTx runs fn and then mark (when not nil) in one transaction: mark
// records that the data changed (the change log, a table version), so
// that readers that poll it never miss a change nor see one that was
// rolled back.
func (b *sqlBase) inTx(ctx context.Context, fn, mark func(tx *sql.Tx) error) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return b.check(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return b.check(err)
	}
	if mark != nil {
		if err := mark(tx); err != nil {
			return b.check(err)
		}
	}
	return b.check(tx.Commit())
}

// write runs fn in a transaction that also logs a change.
func (b *sqlBase) write(ctx context.Context, kind ChangeKind, user, domain string, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error { return b.appendChange(ctx, tx, kind, user, domain) })
}

// execOne runs a statement that must change one row at least, and returns
// missing when it changed none.
func execOne(ctx context.Context, tx *sql.Tx, missing error, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return missing
	}
	return nil
}
