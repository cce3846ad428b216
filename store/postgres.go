package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Backend for a PostgreSQL server shared by several nodes
// (and their CLIs). It keeps a pool of connections (pgxpool): a connection
// that broke is dropped and a new one opened on the next use, and after a
// failed connection attempt the next one waits (100ms, doubling up to 5s)
// while operations fail at once with ErrUnavailable instead of each waiting
// for a dead server. Each operation is bounded by Options.Timeout.
type Postgres struct {
	tables
	pool    *pgxpool.Pool
	name    string // the server and database, without the password, for messages
	logSize int
	timeout time.Duration
	gate    reconnectGate
}

// migrationLock is the key of the advisory lock taken by the transaction
// that migrates, so that nodes starting together apply each step once.
const migrationLock = 0x5357_4244 // "SWBD"

// OpenPostgres connects to the database dsn names and applies pending
// migrations. Most callers want Open with Options.Driver DriverPostgres.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Postgres, error) {
	opts.setDefaults()
	return openPostgres(ctx, dsn, opts, postgresMigrations)
}

func openPostgres(ctx context.Context, dsn string, opts Options, migs []migration) (*Postgres, error) {
	b, err := connectPostgres(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	if err := b.migrate(ctx, migs); err != nil {
		b.pool.Close()
		return nil, err
	}
	return b, nil
}

// PostgresDSNError words pgx's error for a DSN it could not parse without
// the DSN: pgx quotes it with the password redacted, but misses a password
// written "password = x" (libpq allows spaces around '='). pgx's reason,
// after the quoted DSN, is kept.
func PostgresDSNError(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "cannot parse `"); ok {
		if i := strings.LastIndex(rest, "`: "); i >= 0 {
			return "cannot parse the DSN: " + rest[i+3:]
		}
		return "cannot parse the DSN (its text is not repeated: it may hold a password)"
	}
	return s
}

// connectPostgres sets up the pool without touching the schema (the
// OpenSIPS schema mode migrates nothing).
func connectPostgres(ctx context.Context, dsn string, opts Options) (*Postgres, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("store: postgres: no DSN (a URL such as postgres://switchboard@db.example.net/switchboard, or host=... dbname=... pairs)")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: bad DSN: %s", PostgresDSNError(err))
	}
	b := &Postgres{name: describeConn(cfg.ConnConfig), logSize: opts.ChangeLogSize, timeout: opts.Timeout}
	b.tables = tables{b, `SELECT last FROM change_log_seq`}
	cfg.MaxConns = int32(opts.MaxConns)
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > opts.Timeout {
		cfg.ConnConfig.ConnectTimeout = opts.Timeout
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["lock_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "switchboard"
	}
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error { return b.gate.allow() }
	cfg.AfterConnect = func(context.Context, *pgx.Conn) error { b.gate.connected(); return nil }
	b.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres %s: %w", b.name, err)
	}
	return b, nil
}

// describeConn names the server and database of c without the password.
func describeConn(c *pgx.ConnConfig) string {
	host := c.Host
	if !strings.HasPrefix(host, "/") {
		host += ":" + strconv.Itoa(int(c.Port))
	}
	return c.User + "@" + host + "/" + c.Database
}

// reconnectGate spaces out connection attempts to a server that refused or
// did not answer the last one, so that a dead database costs each caller
// an immediate ErrUnavailable rather than a connect timeout, and the server
// is not hammered when it comes back.
type reconnectGate struct {
	mu      sync.Mutex
	delay   time.Duration // the current wait; 0 when the last attempt succeeded
	next    time.Time     // no attempt before this
	lastErr error
}

const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

func (g *reconnectGate) allow() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.delay == 0 || !time.Now().Before(g.next) {
		return nil
	}
	return &unavailableError{err: g.lastErr, retry: time.Until(g.next)}
}

func (g *reconnectGate) failed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.delay == 0 {
		g.delay = reconnectMin
	} else if !time.Now().Before(g.next) {
		// A real attempt failed again (not one held back by the gate).
		g.delay = min(2*g.delay, reconnectMax)
	}
	g.next = time.Now().Add(g.delay)
	g.lastErr = err
}

func (g *reconnectGate) connected() {
	g.mu.Lock()
	g.delay, g.lastErr = 0, nil
	g.mu.Unlock()
}

// down reports the error of the last failed connection attempt while the
// gate holds new ones back.
func (g *reconnectGate) down() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.delay == 0 {
		return nil
	}
	return g.lastErr
}

// unavailableError is a failure to reach the server; it wraps both
// ErrUnavailable and the cause.
type unavailableError struct {
	err   error
	retry time.Duration // > 0: held back by the gate for this long
}

func (e *unavailableError) Error() string {
	if e.retry > 0 {
		return fmt.Sprintf("database unavailable (next connection attempt in %s): %v", e.retry.Round(time.Millisecond), e.err)
	}
	return "database unavailable: " + e.err.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// Unavailable returns the last connection error while the server cannot be
// reached, and nil while it can (as far as the last attempt knows).
func (b *Postgres) Unavailable() error { return b.gate.down() }

// check turns a connection failure into an ErrUnavailable and records it,
// so the next attempts wait.
func (b *Postgres) check(err error) error {
	if err == nil {
		return nil
	}
	var ue *unavailableError
	if errors.As(err, &ue) {
		return err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "28") || pe.Code == "3D000") {
			// The server answered: bad credentials, no such database.
			// A setting to fix, not an outage.
			return err
		}
		b.gate.failed(ce)
		return &unavailableError{err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		// Lock waits end earlier (lock_timeout): the server does not answer.
		return &unavailableError{err: fmt.Errorf("postgres %s: no answer within %s: %w", b.name, b.timeout, err)}
	}
	if connectionLost(err) {
		// The pool drops the connection; the next operation opens
		// another (and the gate learns whether the server is there).
		return &unavailableError{err: err}
	}
	return err
}

// connectionLost tells an established connection that broke (server
// crashed or shut down, network cut) from an error of the statement.
func connectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down, crashed, or not yet accepting connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// do runs fn with the operation's deadline, retrying once when the error
// says the statement never reached the server (a pooled connection that
// had died: the pool then drops it). A failed connection attempt is not
// retried here: the gate decides when the next one may be made.
func (b *Postgres) do(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	err := fn(ctx)
	var ce *pgconn.ConnectError
	if err != nil && pgconn.SafeToRetry(err) && !errors.As(err, &ce) && ctx.Err() == nil {
		err = fn(ctx)
	}
	return b.check(err)
}

// inTx runs fn and then mark in one transaction, as sqlBase.inTx: mark
// records the change (change log, table version) so that readers polling
// it neither miss a change nor see one rolled back.
func (b *Postgres) inTx(ctx context.Context, fn, mark func(tx pgx.Tx) error) error {
	return b.do(ctx, func(ctx context.Context) error {
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if err := fn(tx); err != nil {
			return err
		}
		if mark != nil {
			if err := mark(tx); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	})
}

// write runs fn in a transaction that also logs a change.
func (b *Postgres) write(ctx context.Context, kind ChangeKind, user, domain string, fn func(tx pgx.Tx) error) error {
	return b.inTx(ctx, fn, func(tx pgx.Tx) error { return b.logChange(ctx, tx, kind, user, domain) })
}

// logChange appends to the change log and prunes it, inside tx. The number
// comes from the one-row change_log_seq, whose row lock is held from here
// to the commit: writers of the log take their numbers in commit order and
// a rolled back transaction gives its number back, so the numbers readers
// see are contiguous, as SQLite's AUTOINCREMENT under its single writer
// makes them, and a gap can only mean pruning (see Changes). Runs last in
// the transaction to hold the lock briefly.
func (b *Postgres) logChange(ctx context.Context, tx pgx.Tx, kind ChangeKind, user, domain string) error {
	var seq int64
	if err := tx.QueryRow(ctx, `UPDATE change_log_seq SET last = last + 1 RETURNING last`).Scan(&seq); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO change_log (seq, kind, username, domain, at) VALUES ($1, $2, $3, $4, $5)`,
		seq, int(kind), user, domain, time.Now().Unix()); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM change_log WHERE seq <= $1`, seq-int64(b.logSize))
	return err
}

func (b *Postgres) migrate(ctx context.Context, migs []migration) error {
	err := b.do(ctx, func(ctx context.Context) error {
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			version INTEGER PRIMARY KEY,
			name    TEXT NOT NULL,
			applied BIGINT NOT NULL)`); err != nil {
			return err
		}
		if err := applyMigrations(ctx, pgConn{tx}, "postgres "+b.name, migs); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err == nil || errors.Is(err, ErrSchemaTooNew) {
		return err
	}
	return fmt.Errorf("store: postgres %s: %w", b.name, err)
}

// SchemaVersion returns the schema version recorded in the database.
func (b *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := b.do(ctx, func(ctx context.Context) error {
		return b.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	})
	return v, err
}

// Ping takes a connection from the pool (opening one if none is idle) and
// checks that the server answers on it.
func (b *Postgres) Ping(ctx context.Context) error {
	return b.do(ctx, func(ctx context.Context) error { return b.pool.Ping(ctx) })
}

// Close closes every connection of the pool.
func (b *Postgres) Close() error {
	b.pool.Close()
	return nil
}

// PostgreSQL error codes (SQLSTATE) the backend maps to the store's errors.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func pgUnique(err error) bool { return pgCode(err) == pgUniqueViolation }

// pgRefusedRow: class 22 (data exception: a value out of range, too long),
// class 23 (integrity constraint violation) or P0001, a trigger's RAISE
// EXCEPTION.
func pgRefusedRow(err error) bool {
	c := pgCode(err)
	return strings.HasPrefix(c, "22") || strings.HasPrefix(c, "23") || c == "P0001"
}

// rowScanner is a row of either a query or QueryRow.
type rowScanner = interface{ Scan(...any) error }

// pgText makes s storable in a PostgreSQL text column, which refuses NUL
// and invalid UTF-8. Binding fields come from SIP headers anyone can forge
// (User-Agent, Path, +sip.instance): one such binding must not fail the
// writer's whole batch. Valid text, the usual case, is returned as it is.
func pgText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// pgUpsertBindings upserts many bindings in one statement, the columns as
// arrays: one statement text whatever the number of rows, so pgx prepares
// it once per connection.
const pgUpsertBindings = `INSERT INTO location (binding_key, ` + bindingCols + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
		$8::text[], $9::bigint[], $10::text[], $11::text[], $12::bigint[], $13::text[], $14::bigint[], $15::bigint[])` + bindingUpsertTail

// pgUpsertBinding is one upsert, cheaper than the arrays for one row (the
// write-through REGISTER's).
const pgUpsertBinding = `INSERT INTO location (binding_key, ` + bindingCols + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)` + bindingUpsertTail

// pgUpsertRows is the most upserts in one statement.
const pgUpsertRows = 500

// bindingColumns are a run of upserts as the arrays of pgUpsertBindings.
type bindingColumns struct {
	key, aor, contact, received, path, callID, userAgent, instance, socket []string
	q, expires, cseq, regID, flags, lastModified                           []int64
	seen                                                                   map[[2]string]bool
}

// add appends x unless its key is already in the run (ON CONFLICT cannot
// change one row twice in a statement): then it returns false.
func (c *bindingColumns) add(x *Binding, now int64) bool {
	key, aor := pgText(x.Key()), pgText(x.AOR)
	if c.seen == nil {
		c.seen = map[[2]string]bool{}
	}
	if c.seen[[2]string{aor, key}] {
		return false
	}
	c.seen[[2]string{aor, key}] = true
	lm := x.LastModified
	if lm == 0 {
		lm = now
	}
	c.key, c.aor, c.contact = append(c.key, key), append(c.aor, aor), append(c.contact, pgText(x.Contact))
	c.received, c.path = append(c.received, pgText(x.Received)), append(c.path, pgText(x.Path))
	c.callID, c.userAgent = append(c.callID, pgText(x.CallID)), append(c.userAgent, pgText(x.UserAgent))
	c.instance, c.socket = append(c.instance, pgText(x.Instance)), append(c.socket, pgText(x.Socket))
	c.q, c.expires, c.cseq = append(c.q, int64(x.Q)), append(c.expires, x.Expires), append(c.cseq, int64(x.CSeq))
	c.regID, c.flags, c.lastModified = append(c.regID, int64(x.RegID)), append(c.flags, int64(x.Flags)), append(c.lastModified, lm)
	return true
}

// queue adds the run's statement to batch.
func (c *bindingColumns) queue(batch *pgx.Batch) {
	if len(c.key) == 1 {
		batch.Queue(pgUpsertBinding, c.key[0], c.aor[0], c.contact[0], c.received[0], c.path[0], c.q[0], c.expires[0],
			c.callID[0], c.cseq[0], c.userAgent[0], c.instance[0], c.regID[0], c.socket[0], c.flags[0], c.lastModified[0])
		return
	}
	batch.Queue(pgUpsertBindings, c.key, c.aor, c.contact, c.received, c.path, c.q, c.expires, c.callID, c.cseq, c.userAgent,
		c.instance, c.regID, c.socket, c.flags, c.lastModified)
}

// ApplyBindings applies ops in order in one transaction, sent as one pgx
// batch (one round trip): a run of upserts is one statement per
// pgUpsertRows (a new one where a key comes back; a run of one, the plain
// upsert), deletes one each.
func (b *Postgres) ApplyBindings(ctx context.Context, ops []BindingOp) error {
	if len(ops) == 0 {
		return nil
	}
	now := time.Now().Unix()
	batch := &pgx.Batch{}
	var first []int // index in ops of each queued statement's first operation
	var run bindingColumns
	runStart := -1
	flush := func() {
		if runStart >= 0 {
			run.queue(batch)
			first = append(first, runStart)
			run = bindingColumns{seen: run.seen} // the arrays now belong to the batch
			clear(run.seen)
			runStart = -1
		}
	}
	for i := range ops {
		x := &ops[i].Binding
		switch ops[i].Kind {
		case OpUpsert:
			if runStart >= 0 && len(run.key) == pgUpsertRows {
				flush()
			}
			if runStart >= 0 && !run.add(x, now) {
				flush()
			}
			if runStart < 0 {
				runStart = i
				run.add(x, now)
			}
		case OpDelete:
			flush()
			batch.Queue(`DELETE FROM location WHERE aor = $1 AND binding_key = $2`, pgText(x.AOR), pgText(x.Key()))
			first = append(first, i)
		case OpDeleteAOR:
			flush()
			batch.Queue(`DELETE FROM location WHERE aor = $1`, pgText(x.AOR))
			first = append(first, i)
		default:
			return fmt.Errorf("binding %s %s: %w", x.AOR, x.Contact, errorf(ErrMalformedBinding, "unknown binding operation %d", ops[i].Kind))
		}
	}
	flush()
	return b.inTx(ctx, func(tx pgx.Tx) error {
		br := tx.SendBatch(ctx, batch)
		defer br.Close()
		for _, i := range first {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("binding %s %s: %w", ops[i].Binding.AOR, ops[i].Binding.Contact, err)
			}
		}
		return br.Close()
	}, nil)
}
