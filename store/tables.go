package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The modules' tables (address, fraud_rules, dialplan, aliases, grp,
// dispatcher, uac_*, dr_*) are written once for the three backends
// (address_sql.go, fraud_sql.go, ...): each operation's logic, its row
// scan and its arguments in column order. The statements are written
// with ? placeholders; what differs between the dialects is behind conn:
//
//   - sqlConn (SQLite, MySQL: database/sql) runs them as they are. A
//     failed statement leaves the transaction usable, so a batch is
//     inserted row by row with a prepared statement, the generated id
//     read with LastInsertId, and a duplicate is told by the driver's
//     error; a row is deleted or updated and then read (MySQL has no
//     RETURNING).
//   - pgConn (PostgreSQL: pgx) numbers the placeholders ($1, $2, ...).
//     PostgreSQL aborts a transaction at its first error, so batches are
//     inserted with ON CONFLICT DO NOTHING RETURNING, sent as pgx
//     batches (one round trip per 1,000 rows), a row that returns
//     nothing being the duplicate; a table without a unique key
//     (dr_rules) takes its ids from the sequence and is written with
//     COPY; deletes and updates return the row (RETURNING).
//
// tableBackend is what the table code needs of a backend: a transaction
// that bumps a table's version or logs a change, and reads off the pool.

// conn runs statements in a transaction, or off the pool for reads.
type conn interface {
	// exec runs q and returns how many rows it changed.
	exec(ctx context.Context, q string, args ...any) (int64, error)
	// queryRow runs q for one row; Scan returns an error wrapping
	// sql.ErrNoRows when there is none.
	queryRow(ctx context.Context, q string, args ...any) rowScanner
	// query runs q and calls each for every row.
	query(ctx context.Context, q string, args []any, each func(rowScanner) error) error
	// unique tells a duplicate key error, foreignKey a foreign key's
	// (a subscriber's domain: missing, or still in use).
	unique(err error) bool
	foreignKey(err error) bool
	// insertRows inserts the rows of ins and returns the index of the
	// first that collided with a stored row (or an earlier one), -1 when
	// none did. The transaction stays usable after a collision, so the
	// caller can look up the stored row to name it.
	insertRows(ctx context.Context, ins *insertSpec) (int, error)
	// deleteRows deletes the rows of r, calling each with the columns
	// cols of every deleted row first, and returns how many it deleted.
	deleteRows(ctx context.Context, r rowsOf, cols string, each func(rowScanner) error) (int, error)
	// updateRow sets set (its placeholders taking setArgs) in the row of
	// r and reads the columns cols of the updated row with scan: an error
	// wrapping sql.ErrNoRows when there was none.
	updateRow(ctx context.Context, r rowsOf, set string, setArgs []any, cols string, scan func(rowScanner) error) error
	// startsWith is the condition that col starts with prefix, compared
	// byte by byte (not LIKE, whose % and _ are wildcards), with its
	// arguments appended to args.
	startsWith(col, prefix string, args []any) (string, []any)
}

// rowsOf are the rows of table where the condition where (placeholders
// taking args) holds.
type rowsOf struct {
	table, where string
	args         []any
}

// insertSpec is n rows to insert into table.
type insertSpec struct {
	table string
	cols  string            // the inserted columns, comma-separated
	n     int               // how many rows
	args  func(i int) []any // row i's values, in cols order
	// key is the column that identifies an inserted row: a generated
	// id, whose value goes to id(i), or (id nil) one of cols.
	key string
	id  func(i int) *int64
	// bulk: the table has no unique key but its generated id, so rows
	// cannot collide and PostgreSQL writes them with COPY.
	bulk bool
}

// tableBackend is the backend's side of the table code.
type tableBackend interface {
	// txConn runs fn in a transaction and then mark, when not nil, in
	// the same one (see sqlBase.inTx).
	txConn(ctx context.Context, fn, mark func(c conn) error) error
	// loggedConn runs fn in a transaction that also logs a change of
	// kind to user and domain (a subscriber's, a domain's; ChangeAddress:
	// the permissions module reloads).
	loggedConn(ctx context.Context, kind ChangeKind, user, domain string, fn func(c conn) error) error
	// poolConn runs fn off the pool, within the operation's deadline on
	// a server (retried once where the statement never reached it: fn
	// starts again from nothing).
	poolConn(ctx context.Context, fn func(ctx context.Context, c conn) error) error
	// streamConn runs fn off the pool bounded by ctx only: a walk of a
	// million rows that the caller paces.
	streamConn(ctx context.Context, fn func(c conn) error) error
}

// tables has the table operations of the Backend interface; each backend
// embeds one that points back at it.
type tables struct {
	tb tableBackend
	// lastChange is the query of the last change log number (Changes).
	lastChange string
}

// versioned runs fn in a transaction that bumps the version of table (a
// table a server reloads whole and polls with TableVersion).
func (t tables) versioned(ctx context.Context, table string, fn func(c conn) error) error {
	return t.tb.txConn(ctx, fn, func(c conn) error {
		_, err := c.exec(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = ?`, table)
		return err
	})
}

func (t tables) TableVersion(ctx context.Context, name string) (int64, error) {
	var v int64
	err := t.tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		return c.queryRow(ctx, `SELECT version FROM table_versions WHERE name = ?`, name).Scan(&v)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// listRows reads the rows of q with scan; no rows give a nil slice.
func listRows[T any](ctx context.Context, tb tableBackend, scan func(rowScanner, *T) error, q string, args ...any) ([]T, error) {
	var out []T
	err := tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		out = nil // a retry starts again
		return c.query(ctx, q, args, appendRow(&out, scan))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// streamRows is listRows for a whole table (bindings, dialogs), bounded
// by ctx only.
func streamRows[T any](ctx context.Context, tb tableBackend, scan func(rowScanner, *T) error, q string, args ...any) ([]T, error) {
	var out []T
	err := tb.streamConn(ctx, func(c conn) error { return c.query(ctx, q, args, appendRow(&out, scan)) })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// appendRow is the row function of a query that appends each row, read
// with scan, to out.
func appendRow[T any](out *[]T, scan func(rowScanner, *T) error) func(rowScanner) error {
	return func(r rowScanner) error {
		var x T
		if err := scan(r, &x); err != nil {
			return err
		}
		*out = append(*out, x)
		return nil
	}
}

// execPool runs a statement off the pool and returns how many rows it
// changed.
func execPool(ctx context.Context, tb tableBackend, q string, args ...any) (int64, error) {
	var n int64
	err := tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		var err error
		n, err = c.exec(ctx, q, args...)
		return err
	})
	return n, err
}

// getRow reads the one row of q with scan (an error wrapping
// sql.ErrNoRows when there is none).
func getRow[T any](ctx context.Context, tb tableBackend, scan func(rowScanner, *T) error, x *T, q string, args ...any) error {
	return tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		return scan(c.queryRow(ctx, q, args...), x)
	})
}

// deleteOne deletes the row of r, scanning its columns cols with scan
// first; missing when there is none.
func deleteOne(ctx context.Context, c conn, r rowsOf, cols string, missing error, scan func(rowScanner) error) error {
	n, err := c.deleteRows(ctx, r, cols, scan)
	if err == nil && n == 0 {
		return missing
	}
	return err
}

// changeOne runs a statement that must change one row at least, and
// returns missing when it changed none.
func changeOne(ctx context.Context, c conn, missing error, q string, args ...any) error {
	n, err := c.exec(ctx, q, args...)
	if err == nil && n == 0 {
		return missing
	}
	return err
}

// eachRow calls each for every row of rows (sql.Rows, pgx.Rows), then
// returns the error that ended the rows, if any.
func eachRow(rows interface {
	rowScanner
	Next() bool
	Err() error
}, each func(rowScanner) error) error {
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// params is n placeholders, comma-separated: "?, ?, ?".
func params(n int) string {
	return strings.Repeat("?, ", n-1) + "?"
}

// countCols is the number of columns of a comma-separated list.
func countCols(cols string) int { return strings.Count(cols, ",") + 1 }

// sqlConn is a conn on database/sql (SQLite, MySQL).
type sqlConn struct {
	r interface {
		ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
		PrepareContext(ctx context.Context, q string) (*sql.Stmt, error)
	}
	b *sqlBase
}

func (c sqlConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := c.r.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c sqlConn) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	if st := c.pooled(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.r.QueryRowContext(ctx, q, args...)
}

func (c sqlConn) query(ctx context.Context, q string, args []any, each func(rowScanner) error) error {
	var rows *sql.Rows
	var err error
	if st := c.pooled(ctx, q); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = c.r.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	return eachRow(rows, each)
}

// pooled returns the prepared statement of query q on the pool, preparing
// it the first time, or nil: on a backend that does not keep them,
// inside a transaction (its statements are the transaction's), past
// maxPooledStmts, or when preparing fails (the query then runs unprepared
// and reports the error itself).
func (c sqlConn) pooled(ctx context.Context, q string) *sql.Stmt {
	if !c.b.keepStmts {
		return nil
	}
	if db, ok := c.r.(*sql.DB); !ok || db != c.b.db {
		return nil
	}
	if st, ok := c.b.stmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	c.b.stmtMu.Lock()
	defer c.b.stmtMu.Unlock()
	if st, ok := c.b.stmts.Load(q); ok {
		return st.(*sql.Stmt)
	}
	if c.b.stmtCount >= maxPooledStmts {
		return nil
	}
	st, err := c.b.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.b.stmts.Store(q, st)
	c.b.stmtCount++
	return st
}

func (c sqlConn) unique(err error) bool     { return c.b.dup(err) }
func (c sqlConn) foreignKey(err error) bool { return c.b.fk(err) }

func (c sqlConn) insertRows(ctx context.Context, ins *insertSpec) (int, error) {
	q := `INSERT INTO ` + ins.table + ` (` + ins.cols + `) VALUES (` + params(countCols(ins.cols)) + `)`
	exec := func(args ...any) (sql.Result, error) { return c.r.ExecContext(ctx, q, args...) }
	if ins.n > 1 {
		// Parsed once for the batch.
		st, err := c.r.PrepareContext(ctx, q)
		if err != nil {
			return -1, err
		}
		defer st.Close()
		exec = func(args ...any) (sql.Result, error) { return st.ExecContext(ctx, args...) }
	}
	for i := 0; i < ins.n; i++ {
		res, err := exec(ins.args(i)...)
		if c.b.dup(err) {
			return i, nil
		}
		if err != nil {
			return -1, err
		}
		if ins.id != nil {
			if *ins.id(i), err = res.LastInsertId(); err != nil {
				return -1, err
			}
		}
	}
	return -1, nil
}

func (c sqlConn) deleteRows(ctx context.Context, r rowsOf, cols string, each func(rowScanner) error) (int, error) {
	n := 0
	err := c.query(ctx, `SELECT `+cols+` FROM `+r.table+` WHERE `+r.where, r.args, func(s rowScanner) error {
		n++
		return each(s)
	})
	if err != nil || n == 0 {
		return 0, err
	}
	// Deleted by another transaction since the SELECT (MySQL reads a
	// snapshot): nothing deleted here.
	if d, err := c.exec(ctx, `DELETE FROM `+r.table+` WHERE `+r.where, r.args...); err != nil || d == 0 {
		return 0, err
	}
	return n, nil
}

func (c sqlConn) updateRow(ctx context.Context, r rowsOf, set string, setArgs []any, cols string, scan func(rowScanner) error) error {
	args := append(append(make([]any, 0, len(setArgs)+len(r.args)), setArgs...), r.args...)
	// Rows matched, not only changed: SQLite counts so, and MySQL with
	// ClientFoundRows (connectMySQL).
	n, err := c.exec(ctx, `UPDATE `+r.table+` SET `+set+` WHERE `+r.where, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return sql.ErrNoRows
	}
	return scan(c.queryRow(ctx, `SELECT `+cols+` FROM `+r.table+` WHERE `+r.where, r.args...))
}

func (c sqlConn) startsWith(col, prefix string, args []any) (string, []any) {
	return `substr(` + col + `, 1, ?) = ?`, append(args, len(prefix), prefix)
}

// pgConn is a conn on pgx (PostgreSQL): a transaction or the pool.
type pgConn struct {
	r interface {
		Exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, q string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, q string, args ...any) pgx.Row
		SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
		CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
	}
}

// pgRebind numbers the ? placeholders of q as PostgreSQL wants them ($1,
// $2, ...), leaving quoted text alone.
func pgRebind(q string) string {
	if strings.IndexByte(q, '?') < 0 {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func (c pgConn) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := c.r.Exec(ctx, pgRebind(q), args...)
	return tag.RowsAffected(), err
}

func (c pgConn) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	return c.r.QueryRow(ctx, pgRebind(q), args...)
}

func (c pgConn) query(ctx context.Context, q string, args []any, each func(rowScanner) error) error {
	rows, err := c.r.Query(ctx, pgRebind(q), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return eachRow(rows, each)
}

func (pgConn) unique(err error) bool     { return pgUnique(err) }
func (pgConn) foreignKey(err error) bool { return pgCode(err) == pgForeignKeyViolation }

func (c pgConn) insertRows(ctx context.Context, ins *insertSpec) (int, error) {
	if ins.bulk {
		return -1, c.copyRows(ctx, ins)
	}
	// A row that returns nothing collided with a stored one (or an
	// earlier one of the batch).
	q := pgRebind(`INSERT INTO ` + ins.table + ` (` + ins.cols + `) VALUES (` + params(countCols(ins.cols)) + `)
		ON CONFLICT DO NOTHING RETURNING ` + ins.key)
	var key any // the returned key when it is not a generated id: only whether it came
	dest := func(int) any { return &key }
	if ins.id != nil {
		dest = func(i int) any { return ins.id(i) }
	}
	const chunk = 1000 // rows per batch: one round trip each
	for start := 0; start < ins.n; start += chunk {
		end := min(ins.n, start+chunk)
		batch := &pgx.Batch{}
		for i := start; i < end; i++ {
			batch.Queue(q, ins.args(i)...)
		}
		br := c.r.SendBatch(ctx, batch)
		for i := start; i < end; i++ {
			err := br.QueryRow().Scan(dest(i))
			if errors.Is(err, pgx.ErrNoRows) {
				br.Close()
				return i, nil
			}
			if err != nil {
				br.Close()
				return -1, err
			}
		}
		if err := br.Close(); err != nil {
			return -1, err
		}
	}
	return -1, nil
}

// copyRows takes the rows' ids from the key's sequence in one query and
// writes the rows with COPY: a million rules is one transaction of a few
// seconds rather than a million statements.
func (c pgConn) copyRows(ctx context.Context, ins *insertSpec) error {
	if ins.n == 0 {
		return nil
	}
	ids := make([]int64, 0, ins.n)
	err := c.query(ctx, `SELECT nextval(pg_get_serial_sequence(?, ?)) FROM generate_series(1, ?) ORDER BY 1`,
		[]any{ins.table, ins.key, ins.n}, func(r rowScanner) error {
			var id int64
			err := r.Scan(&id)
			ids = append(ids, id)
			return err
		})
	if err != nil {
		return err
	}
	cols := []string{ins.key}
	for _, col := range strings.Split(ins.cols, ",") {
		cols = append(cols, strings.TrimSpace(col))
	}
	for i := range ids {
		*ins.id(i) = ids[i]
	}
	row := make([]any, 0, len(cols)) // COPY encodes each row before asking for the next
	_, err = c.r.CopyFrom(ctx, pgx.Identifier{ins.table}, cols,
		pgx.CopyFromSlice(ins.n, func(i int) ([]any, error) { return append(append(row[:0], ids[i]), ins.args(i)...), nil }))
	return err
}

func (c pgConn) deleteRows(ctx context.Context, r rowsOf, cols string, each func(rowScanner) error) (int, error) {
	n := 0
	err := c.query(ctx, `DELETE FROM `+r.table+` WHERE `+r.where+` RETURNING `+cols, r.args, func(s rowScanner) error {
		n++
		return each(s)
	})
	return n, err
}

func (c pgConn) updateRow(ctx context.Context, r rowsOf, set string, setArgs []any, cols string, scan func(rowScanner) error) error {
	args := append(append(make([]any, 0, len(setArgs)+len(r.args)), setArgs...), r.args...)
	return scan(c.queryRow(ctx, `UPDATE `+r.table+` SET `+set+` WHERE `+r.where+` RETURNING `+cols, args...))
}

func (pgConn) startsWith(col, prefix string, args []any) (string, []any) {
	return `starts_with(` + col + `, ?)`, append(args, prefix)
}

// The backends' side.

func (b *sqlBase) txConn(ctx context.Context, fn, mark func(c conn) error) error {
	var m func(tx *sql.Tx) error
	if mark != nil {
		m = func(tx *sql.Tx) error { return mark(sqlConn{tx, b}) }
	}
	return b.inTx(ctx, func(tx *sql.Tx) error { return fn(sqlConn{tx, b}) }, m)
}

func (b *sqlBase) loggedConn(ctx context.Context, kind ChangeKind, user, domain string, fn func(c conn) error) error {
	return b.write(ctx, kind, user, domain, func(tx *sql.Tx) error { return fn(sqlConn{tx, b}) })
}

func (b *sqlBase) poolConn(ctx context.Context, fn func(ctx context.Context, c conn) error) error {
	return b.check(fn(ctx, sqlConn{b.db, b}))
}

func (b *sqlBase) streamConn(ctx context.Context, fn func(c conn) error) error {
	return b.check(fn(sqlConn{b.db, b}))
}

func (b *Postgres) txConn(ctx context.Context, fn, mark func(c conn) error) error {
	var m func(tx pgx.Tx) error
	if mark != nil {
		m = func(tx pgx.Tx) error { return mark(pgConn{tx}) }
	}
	return b.inTx(ctx, func(tx pgx.Tx) error { return fn(pgConn{tx}) }, m)
}

func (b *Postgres) loggedConn(ctx context.Context, kind ChangeKind, user, domain string, fn func(c conn) error) error {
	return b.write(ctx, kind, user, domain, func(tx pgx.Tx) error { return fn(pgConn{tx}) })
}

func (b *Postgres) poolConn(ctx context.Context, fn func(ctx context.Context, c conn) error) error {
	return b.do(ctx, func(ctx context.Context) error { return fn(ctx, pgConn{b.pool}) })
}

func (b *Postgres) streamConn(ctx context.Context, fn func(c conn) error) error {
	return b.check(fn(pgConn{b.pool}))
}
