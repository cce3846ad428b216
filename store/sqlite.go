package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Backend: one database file in WAL mode, so readers
// never wait for the writer and several processes (server and CLI) can use
// the file at once. Writers from different processes take turns, waiting up
// to Options.BusyTimeout for the write lock.
type SQLite struct {
	sqlBase
	tables
	path    string
	logSize int

	// Statements prepared once: database/sql prepares each on a connection
	// the first time it is used there and reuses it after, also inside
	// transactions (Tx.StmtContext). Parsing a statement otherwise costs
	// as much as executing it.
	getSub, del, delAOR *sql.Stmt
	// The multi-row statements of the batched writes (sqlite_rows.go:
	// location bindings, accounting records, dialogs), by their text,
	// prepared on first use (a store opened with fewer migrations, in the
	// upgrade tests, has no acc table), under cdrMu.
	cdrMu      sync.Mutex
	batchStmts map[string]*sql.Stmt
}

// OpenSQLite opens or creates the database file at path and applies pending
// migrations. Most callers want Open, which also prepares the directory.
func OpenSQLite(path string, opts Options) (*SQLite, error) {
	opts.setDefaults()
	return openSQLite(path, opts, sqliteMigrations)
}

func openSQLite(path string, opts Options, migs []migration) (*SQLite, error) {
	if strings.ContainsAny(path, "?#%") {
		// The driver opens "file:" + path as a URI: '?' and '#' would end
		// the path, a '%' escape would name another file (sip%41data is
		// sipAdata), created with the default mode, not 0600.
		return nil, fmt.Errorf("store: database path %q must not contain '?', '#' or '%%'", path)
	}
	// _txlock=immediate takes the write lock at BEGIN, so a transaction that
	// reads then writes cannot fail with SQLITE_BUSY half way (which
	// busy_timeout cannot retry); synchronous=NORMAL is durable across a
	// process crash in WAL mode and only risks the last commits on power
	// loss, FULL (Options.SyncCommits) syncs the WAL at every commit.
	// temp_store=memory keeps statement journals in memory: a multi-row
	// INSERT inside a transaction journals the pages it changes, and past
	// 64 KiB SQLite spills that journal to a temporary file, a write()
	// per page for a file nobody reads after the statement (6% of
	// BenchmarkAddCDRs). wal_autocheckpoint(8192) lets the WAL grow to
	// 32 MiB (8192 pages) before a checkpoint copies its pages into the
	// database file, instead of 4 MiB: a checkpoint copies each page once
	// however often it was written since the last, and the writers
	// rewrite the same pages in every commit (the right edge of each
	// table and time index, the Call-ID index's pages), so there are
	// fewer copies and fewer fsyncs (BenchmarkAddCDRs −16%).
	sync := "NORMAL"
	if opts.SyncCommits {
		sync = "FULL"
	}
	dsn := "file:" + path +
		"?_txlock=immediate" +
		"&_busy_timeout=" + strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10) +
		"&_journal_mode=WAL&_foreign_keys=1&_synchronous=" + sync +
		"&_pragma=temp_store(memory)&_pragma=wal_autocheckpoint(8192)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open database %s: %w", path, err)
	}
	// A few connections let readers (CLI listing, management API) proceed
	// while the location writer holds a write transaction.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(0)
	ctx := context.Background()
	if err := pingSQLite(ctx, db, opts.BusyTimeout); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open database %s: %s", path, describeOpenErr(err))
	}
	b := &SQLite{path: path, logSize: opts.ChangeLogSize}
	b.sqlBase = sqlBase{db: db, dup: isUnique, fk: isForeignKey, appendChange: b.logChange, keepStmts: true}
	// sqlite_sequence keeps the last number of the AUTOINCREMENT even
	// when the log is empty.
	b.tables = tables{b, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'change_log'), 0)`}
	if err := b.migrate(ctx, migs); err != nil {
		db.Close()
		return nil, err
	}
	for _, p := range []struct {
		st *(*sql.Stmt)
		q  string
	}{
		{&b.getSub, getSubscriberQuery},
		{&b.del, `DELETE FROM location WHERE aor = ? AND binding_key = ?`},
		{&b.delAOR, `DELETE FROM location WHERE aor = ?`},
	} {
		if *p.st, err = db.PrepareContext(ctx, p.q); err != nil {
			b.Close()
			return nil, fmt.Errorf("store: %s: prepare: %w", path, err)
		}
	}
	return b, nil
}

// pingSQLite opens the first connection, which sets the pragmas. Two
// processes opening a new database at once (the server and the CLI) race
// to switch it to WAL, and SQLite reports the loser SQLITE_BUSY without
// calling the busy handler, so busy_timeout does not cover it: retry
// within the same timeout.
func pingSQLite(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describeOpenErr(err error) string {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB:
			return "the file is not a SQLite database (corrupted, or another program's file): " + err.Error()
		case sqlite3.SQLITE_CORRUPT:
			return "the database file is corrupted: " + err.Error()
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY:
			return "cannot open the database file (is it a writable regular file?): " + err.Error()
		}
	}
	return err.Error()
}

func (b *SQLite) migrate(ctx context.Context, migs []migration) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: begin migration: %s", b.path, describeOpenErr(err))
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER PRIMARY KEY NOT NULL,
		name    TEXT NOT NULL,
		applied INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: %s: %s", b.path, describeOpenErr(err))
	}
	if err := applyMigrations(ctx, sqlConn{tx, &b.sqlBase}, b.path, migs); err != nil {
		if errors.Is(err, ErrSchemaTooNew) {
			return err
		}
		return fmt.Errorf("store: %s: %w", b.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit migration: %w", b.path, err)
	}
	return nil
}

// SchemaVersion returns the schema version recorded in the database.
func (b *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := b.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

// Ping checks that the database can be used.
func (b *SQLite) Ping(ctx context.Context) error { return b.db.PingContext(ctx) }

// Close closes the database.
func (b *SQLite) Close() error {
	b.cdrMu.Lock()
	defer b.cdrMu.Unlock()
	for _, st := range []*sql.Stmt{b.getSub, b.del, b.delAOR} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range b.batchStmts {
		st.Close()
	}
	return b.db.Close()
}

// isUnique tells SQLite's duplicate key errors.
func isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func isForeignKey(err error) bool { return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY }

// sqliteRefusedRow: a constraint (NOT NULL, CHECK, UNIQUE, a trigger's
// RAISE), a value too large or of the wrong type.
func sqliteRefusedRow(err error) bool {
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
		return true
	}
	return false
}

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// logChange appends to the change log and prunes it, inside tx.
func (b *SQLite) logChange(ctx context.Context, tx *sql.Tx, kind ChangeKind, user, domain string) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO change_log (kind, username, domain, at) VALUES (?, ?, ?, ?)`,
		int(kind), user, domain, time.Now().Unix())
	if err != nil {
		return err
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM change_log WHERE seq <= ?`, seq-int64(b.logSize))
	return err
}

// GetSubscriber runs the statement prepared at open (the lookup behind
// auth's cache misses), in place of tables.GetSubscriber, which would
// parse it every time.
func (b *SQLite) GetSubscriber(ctx context.Context, user, domain string, s *Subscriber) error {
	return scanCredentials(b.getSub.QueryRowContext(ctx, user, domain), user, domain, s)
}

// batchCtx is the context of a write-back batch's statements. The writers
// give their batches a deadline, which matters on a network database; on
// a cancellable context modernc's SQLite starts a goroutine per statement
// to interrupt it (1.5% of a call's CPU with dialogs and accounting on,
// bench/results/dialog-acc.md). An embedded statement waits only for the
// file's lock, which busy_timeout bounds, so a batch runs without it.
func batchCtx(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func (b *SQLite) ApplyBindings(ctx context.Context, ops []BindingOp) error {
	if len(ops) == 0 {
		return nil
	}
	ctx = batchCtx(ctx)
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var del, delAOR *sql.Stmt
	defer func() {
		for _, st := range []*sql.Stmt{del, delAOR} {
			if st != nil {
				st.Close()
			}
		}
	}()
	now := time.Now().Unix()
	args := make([]any, 0, min(len(ops), maxBatchRows)*(1+bindingColCount))
	// A run of upserts goes in statements of up to 32 rows: SQLite applies
	// the rows of one INSERT in order, so a later row of the same binding
	// updates the one before, as single statements would. A delete is a
	// chunk of its own.
	upserts := func(i, k int) bool { return ops[i].Kind == OpUpsert && ops[k].Kind == OpUpsert }
	err = eachChunk(len(ops), upserts, func(i, n int) error {
		x := &ops[i].Binding
		var err error
		switch ops[i].Kind {
		case OpUpsert:
			args = args[:0]
			for k := i; k < i+n; k++ {
				args = appendBindingArgs(args, &ops[k].Binding, now)
			}
			var st *sql.Stmt
			if st, err = b.rowsStmt(ctx, upsertBindingRows.rows(n)); err == nil {
				_, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
			}
			if err != nil && n > 1 {
				last := &ops[i+n-1].Binding
				return fmt.Errorf("bindings %s %s to %s %s: %w", x.AOR, x.Contact, last.AOR, last.Contact, err)
			}
		case OpDelete:
			if del == nil {
				del = tx.StmtContext(ctx, b.del)
			}
			_, err = del.ExecContext(ctx, x.AOR, x.Key())
		case OpDeleteAOR:
			if delAOR == nil {
				delAOR = tx.StmtContext(ctx, b.delAOR)
			}
			_, err = delAOR.ExecContext(ctx, x.AOR)
		default:
			err = errorf(ErrMalformedBinding, "unknown binding operation %d", ops[i].Kind)
		}
		if err != nil {
			return fmt.Errorf("binding %s %s: %w", x.AOR, x.Contact, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tx.Commit()
}

// bindingColCount is the number of columns in bindingCols.
var bindingColCount = countCols(bindingCols)

var upsertBindingRows = valuesQueries(`INSERT INTO location (binding_key, `+bindingCols+`) VALUES `, 1+bindingColCount, bindingUpsertTail)

// appendBindingArgs appends the key and bindingCols of x; a binding
// without a modification time gets now.
func appendBindingArgs(dst []any, x *Binding, now int64) []any {
	lm := x.LastModified
	if lm == 0 {
		lm = now
	}
	return append(dst, x.Key(), x.AOR, x.Contact, x.Received, x.Path, int64(x.Q), x.Expires,
		x.CallID, int64(x.CSeq), x.UserAgent, x.Instance, int64(x.RegID), x.Socket, int64(x.Flags), lm)
}
