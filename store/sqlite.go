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
	db      *sql.DB
	path    string
	logSize int

	// Statements prepared once: database/sql prepares each on a connection
	// the first time it is used there and reuses it after, also inside
	// transactions (Tx.StmtContext). Parsing the upsert otherwise costs as
	// much as executing it.
	getSub, upsert, del, delAOR *sql.Stmt
	// The multi-row statements of the batched writes (sqlite_rows.go:
	// accounting records, dialogs), by their text, prepared on first use
	// (a store opened with fewer migrations, in the upgrade tests, has no
	// acc table), under cdrMu.
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
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: database path %q must not contain '?' or '#'", path)
	}
	// _txlock=immediate takes the write lock at BEGIN, so a transaction that
	// reads then writes cannot fail with SQLITE_BUSY half way (which
	// busy_timeout cannot retry); synchronous=NORMAL is durable across a
	// process crash in WAL mode and only risks the last commits on power
	// loss, FULL (Options.SyncCommits) syncs the WAL at every commit.
	sync := "NORMAL"
	if opts.SyncCommits {
		sync = "FULL"
	}
	dsn := "file:" + path +
		"?_txlock=immediate" +
		"&_busy_timeout=" + strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10) +
		"&_journal_mode=WAL&_foreign_keys=1&_synchronous=" + sync
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
	b := &SQLite{db: db, path: path, logSize: opts.ChangeLogSize}
	if err := b.migrate(ctx, migs); err != nil {
		db.Close()
		return nil, err
	}
	for _, p := range []struct {
		st *(*sql.Stmt)
		q  string
	}{
		{&b.getSub, `SELECT password, ha1, ha1_sha256, email, created FROM subscribers WHERE username = ? AND domain = ?`},
		{&b.upsert, `INSERT INTO location (binding_key, ` + bindingCols + `)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (aor, binding_key) DO UPDATE SET
				contact = excluded.contact, received = excluded.received, path = excluded.path,
				q = excluded.q, expires = excluded.expires, call_id = excluded.call_id,
				cseq = excluded.cseq, user_agent = excluded.user_agent, instance = excluded.instance,
				reg_id = excluded.reg_id, socket = excluded.socket, flags = excluded.flags,
				last_modified = excluded.last_modified`},
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
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("store: %s: read schema version: %w", b.path, err)
	}
	want := len(migs)
	if have > want {
		return errorf(ErrSchemaTooNew, "store: %s has schema version %d but this switchboard knows only up to %d; run a newer switchboard binary",
			b.path, have, want)
	}
	for _, m := range migs[:have] {
		if err := b.fillPlaceholder(ctx, tx, m); err != nil {
			return err
		}
	}
	for i, m := range migs[have:] {
		if m.version != have+i+1 {
			panic("store: migrations are not numbered 1, 2, 3, ...")
		}
		for _, q := range m.stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("store: %s: migration %d (%s): %w", b.path, m.version, m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().Unix()); err != nil {
			return fmt.Errorf("store: %s: record migration %d: %w", b.path, m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit migration: %w", b.path, err)
	}
	return nil
}

// fillPlaceholder applies step m when the database recorded it under its
// placeholder name (placeholders): reserved and empty when the binary
// that migrated it was built.
func (b *SQLite) fillPlaceholder(ctx context.Context, tx *sql.Tx, m migration) error {
	placeholder := placeholders[m.version]
	if placeholder == "" || m.stmts == nil {
		return nil
	}
	var name string
	if err := tx.QueryRowContext(ctx, `SELECT name FROM schema_version WHERE version = ?`, m.version).Scan(&name); err != nil {
		return fmt.Errorf("store: %s: read migration %d: %w", b.path, m.version, err)
	}
	if name != placeholder {
		return nil
	}
	for _, q := range m.stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("store: %s: migration %d (%s, reserved before): %w", b.path, m.version, m.name, err)
		}
	}
	_, err := tx.ExecContext(ctx, `UPDATE schema_version SET name = ?, applied = ? WHERE version = ?`, m.name, time.Now().Unix(), m.version)
	return err
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
	for _, st := range []*sql.Stmt{b.getSub, b.upsert, b.del, b.delAOR} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range b.batchStmts {
		st.Close()
	}
	return b.db.Close()
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

// write runs fn in a transaction that also logs a change.
func (b *SQLite) write(ctx context.Context, kind ChangeKind, user, domain string, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error { return b.logChange(ctx, tx, kind, user, domain) })
}

// inTx runs fn and then mark in one transaction: mark records that the
// data changed (the change log, a table version), so that readers that
// poll it never miss a change nor see one that was rolled back.
func (b *SQLite) inTx(ctx context.Context, fn, mark func(tx *sql.Tx) error) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := mark(tx); err != nil {
		return err
	}
	return tx.Commit()
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

func txDomainExists(ctx context.Context, tx *sql.Tx, domain string) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM domains WHERE domain = ?`, domain).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (b *SQLite) AddDomain(ctx context.Context, domain string, created int64) error {
	return b.write(ctx, ChangeDomain, "", domain, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO domains (domain, created) VALUES (?, ?)`, domain, created)
		if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return ErrDomainExists
		}
		return err
	})
}

func (b *SQLite) DeleteDomain(ctx context.Context, domain string) error {
	return b.write(ctx, ChangeDomain, "", domain, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM subscribers WHERE domain = ?`, domain).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrDomainInUse
		}
		return execOne(ctx, tx, ErrUnknownDomain, `DELETE FROM domains WHERE domain = ?`, domain)
	})
}

func (b *SQLite) ListDomains(ctx context.Context) ([]Domain, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT domain, created FROM domains ORDER BY domain`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Domain
	for rows.Next() {
		var d Domain
		if err := rows.Scan(&d.Domain, &d.Created); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (b *SQLite) DomainExists(ctx context.Context, domain string) (bool, error) {
	var one int
	err := b.db.QueryRowContext(ctx, `SELECT 1 FROM domains WHERE domain = ?`, domain).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (b *SQLite) AddSubscriber(ctx context.Context, s *Subscriber) error {
	return b.write(ctx, ChangeSubscriber, s.Username, s.Domain, func(tx *sql.Tx) error {
		ok, err := txDomainExists(ctx, tx, s.Domain)
		if err != nil {
			return err
		}
		if !ok {
			return ErrUnknownDomain
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO subscribers
			(username, domain, password, ha1, ha1_sha256, email, created) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			s.Username, s.Domain, s.Password, s.HA1, s.HA1SHA256, s.Email, s.Created)
		switch sqliteCode(err) {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return ErrSubscriberExists
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return ErrUnknownDomain
		}
		return err
	})
}

func (b *SQLite) SetCredentials(ctx context.Context, user, domain, password, ha1, ha1SHA256 string) error {
	return b.write(ctx, ChangeSubscriber, user, domain, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoSubscriber, `UPDATE subscribers SET password = ?, ha1 = ?, ha1_sha256 = ?
			WHERE username = ? AND domain = ?`, password, ha1, ha1SHA256, user, domain)
	})
}

func (b *SQLite) DeleteSubscriber(ctx context.Context, user, domain string) error {
	return b.write(ctx, ChangeSubscriber, user, domain, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoSubscriber, `DELETE FROM subscribers WHERE username = ? AND domain = ?`, user, domain)
	})
}

func (b *SQLite) GetSubscriber(ctx context.Context, user, domain string, s *Subscriber) error {
	err := b.getSub.QueryRowContext(ctx, user, domain).Scan(&s.Password, &s.HA1, &s.HA1SHA256, &s.Email, &s.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoSubscriber
	}
	if err != nil {
		return err
	}
	s.Username, s.Domain = user, domain
	return nil
}

func (b *SQLite) ListSubscribers(ctx context.Context, domain string) ([]Subscriber, error) {
	const cols = `SELECT username, domain, password, ha1, ha1_sha256, email, created FROM subscribers`
	var rows *sql.Rows
	var err error
	if domain == "" {
		rows, err = b.db.QueryContext(ctx, cols+` ORDER BY domain, username`)
	} else {
		rows, err = b.db.QueryContext(ctx, cols+` WHERE domain = ? ORDER BY username`, domain)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Subscriber
	for rows.Next() {
		var s Subscriber
		if err := rows.Scan(&s.Username, &s.Domain, &s.Password, &s.HA1, &s.HA1SHA256, &s.Email, &s.Created); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const bindingCols = `aor, contact, received, path, q, expires, call_id, cseq, user_agent, instance, reg_id, socket, flags, last_modified`

func (b *SQLite) LoadBindings(ctx context.Context, now int64) ([]Binding, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT `+bindingCols+` FROM location WHERE expires > ? ORDER BY aor`, now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Binding
	for rows.Next() {
		var x Binding
		if err := rows.Scan(&x.AOR, &x.Contact, &x.Received, &x.Path, &x.Q, &x.Expires, &x.CallID, &x.CSeq,
			&x.UserAgent, &x.Instance, &x.RegID, &x.Socket, &x.Flags, &x.LastModified); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
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
	var upsert, del, delAOR *sql.Stmt
	defer func() {
		for _, st := range []*sql.Stmt{upsert, del, delAOR} {
			if st != nil {
				st.Close()
			}
		}
	}()
	now := time.Now().Unix()
	for i := range ops {
		op := &ops[i]
		x := &op.Binding
		switch op.Kind {
		case OpUpsert:
			if upsert == nil {
				upsert = tx.StmtContext(ctx, b.upsert)
			}
			lm := x.LastModified
			if lm == 0 {
				lm = now
			}
			_, err = upsert.ExecContext(ctx, x.Key(), x.AOR, x.Contact, x.Received, x.Path, int64(x.Q), x.Expires,
				x.CallID, int64(x.CSeq), x.UserAgent, x.Instance, int64(x.RegID), x.Socket, int64(x.Flags), lm)
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
			err = errorf(ErrMalformedBinding, "unknown binding operation %d", op.Kind)
		}
		if err != nil {
			return fmt.Errorf("binding %s %s: %w", x.AOR, x.Contact, err)
		}
	}
	return tx.Commit()
}

func (b *SQLite) DeleteExpiredBindings(ctx context.Context, now int64) (int64, error) {
	res, err := b.db.ExecContext(ctx, `DELETE FROM location WHERE expires <= ?`, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (b *SQLite) Changes(ctx context.Context, since uint64, limit int) ([]Change, uint64, error) {
	// Sequence numbers come from AUTOINCREMENT and are contiguous (a rolled
	// back insert does not consume one), so a gap right after since can only
	// mean the entries were pruned. No transaction is needed: the log is
	// append-only and pruning removes only the oldest entries.
	if limit > 0 {
		rows, err := b.db.QueryContext(ctx, `SELECT seq, kind, username, domain FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?`,
			int64(since), limit)
		if err != nil {
			return nil, 0, err
		}
		defer rows.Close()
		var out []Change
		for rows.Next() {
			var c Change
			var seq int64
			var kind int
			if err := rows.Scan(&seq, &kind, &c.Username, &c.Domain); err != nil {
				return nil, 0, err
			}
			c.Seq, c.Kind = uint64(seq), ChangeKind(kind)
			out = append(out, c)
		}
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		if len(out) > 0 {
			latest := out[len(out)-1].Seq
			if out[0].Seq != since+1 {
				return []Change{{Seq: latest, Kind: ChangeAll}}, latest, nil
			}
			return out, latest, nil
		}
	}
	// sqlite_sequence keeps the last number even if the log is empty.
	var last int64
	err := b.db.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'change_log'), 0)`).Scan(&last)
	if err != nil {
		return nil, 0, err
	}
	latest := uint64(last)
	if limit > 0 {
		if since > latest {
			// The database was replaced or restored from a backup.
			return []Change{{Seq: latest, Kind: ChangeAll}}, latest, nil
		}
		// Pruning always keeps the newest entries, so latest > since here
		// means a write committed after the query above: report it next
		// time rather than skipping it.
		return nil, since, nil
	}
	return nil, latest, nil
}
