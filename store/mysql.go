package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL is the Backend for a MariaDB or MySQL server that several nodes
// share, through database/sql and github.com/go-sql-driver/mysql. Like the
// SQLite backend it uses ? placeholders, and a statement that fails in a
// transaction (a duplicate) does not abort it; like the PostgreSQL one it
// keeps a pool of connections (database/sql's) and spaces out connection
// attempts after a failed one (reconnectGate).
//
// Text is stored as bytes (VARBINARY, BLOB): keys compare and sort byte by
// byte as in SQLite, whatever the server's character set and collation, and
// nothing a phone sends can be refused as invalid text.
type MySQL struct {
	sqlBase
	tables
	name    string // user@address/database, for messages
	logSize int
	timeout time.Duration
	gate    reconnectGate
}

// OpenMySQL connects to the database dsn names (go-sql-driver's form:
// user:password@tcp(host:3306)/switchboard, or
// user@unix(/run/mysqld/mysqld.sock)/switchboard) and applies pending
// migrations. Most callers want Open with Options.Driver DriverMySQL.
func OpenMySQL(ctx context.Context, dsn string, opts Options) (*MySQL, error) {
	opts.setDefaults()
	return openMySQL(ctx, dsn, opts, mysqlMigrations)
}

func openMySQL(ctx context.Context, dsn string, opts Options, migs []migration) (*MySQL, error) {
	b, err := connectMySQL(dsn, opts)
	if err != nil {
		return nil, err
	}
	if err := b.migrate(ctx, migs); err != nil {
		b.db.Close()
		return nil, err
	}
	return b, nil
}

// connectMySQL sets up the connection pool without touching the schema
// (the OpenSIPS schema mode migrates nothing).
func connectMySQL(dsn string, opts Options) (*MySQL, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("store: mysql: no DSN (such as switchboard:password@tcp(db.example.net:3306)/switchboard)")
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// The driver's messages do not repeat the DSN.
		return nil, fmt.Errorf("store: mysql: bad DSN: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("store: mysql: the DSN names no database (.../switchboard)")
	}
	b := &MySQL{name: cfg.User + "@" + cfg.Addr + "/" + cfg.DBName, logSize: opts.ChangeLogSize, timeout: opts.Timeout}
	b.sqlBase = sqlBase{dup: myUnique, fk: myForeignKey, unreachable: b.check, appendChange: b.logChange}
	b.tables = tables{b, `SELECT last FROM change_log_seq`}
	// A server that stops answering fails the read or write that waits on
	// it after Timeout (the connection is then dropped); a lock wait ends
	// first, after BusyTimeout.
	if cfg.Timeout == 0 || cfg.Timeout > opts.Timeout {
		cfg.Timeout = opts.Timeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = opts.Timeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = opts.Timeout
	}
	// One round trip per statement instead of prepare, execute, close.
	cfg.InterpolateParams = true
	// An UPDATE reports the rows it matched, as SQLite and PostgreSQL do,
	// not only those whose values changed (execOne relies on it).
	cfg.ClientFoundRows = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["innodb_lock_wait_timeout"]; !ok {
		cfg.Params["innodb_lock_wait_timeout"] = strconv.FormatInt(max(1, int64(opts.BusyTimeout.Round(time.Second)/time.Second)), 10)
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		// Strict: a value that does not fit is an error, not truncated.
		cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: mysql %s: %w", b.name, err)
	}
	b.db = sql.OpenDB(&gatedConnector{Connector: conn, gate: &b.gate})
	b.db.SetMaxOpenConns(opts.MaxConns)
	b.db.SetMaxIdleConns(opts.MaxConns)
	// Below the servers' usual wait_timeout (8h) and load balancers' idle
	// cuts.
	b.db.SetConnMaxIdleTime(5 * time.Minute)
	return b, nil
}

// gatedConnector opens connections through the reconnection gate.
type gatedConnector struct {
	driver.Connector
	gate *reconnectGate
}

func (c *gatedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := c.gate.allow(); err != nil {
		return nil, err
	}
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			// The server answered (access denied, unknown database):
			// not an outage.
			return nil, err
		}
		c.gate.failed(err)
		return nil, &unavailableError{err: err}
	}
	c.gate.connected()
	return conn, nil
}

// MySQL error numbers the backend maps to the store's errors.
const (
	myDuplicate       = 1062 // ER_DUP_ENTRY
	myRowIsReferenced = 1451 // ER_ROW_IS_REFERENCED_2: a parent row still has children
	myNoReferencedRow = 1452 // ER_NO_REFERENCED_ROW_2: no parent row
)

// The named lock migrations take.
const myMigrationLock = "switchboard_migrations"

func myCode(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func myUnique(err error) bool { return myCode(err) == myDuplicate }

// myRefusedRow: a constraint (NOT NULL, UNIQUE, a foreign key, CHECK), a
// trigger's SIGNAL, a value a column cannot hold (strict mode).
func myRefusedRow(err error) bool {
	switch myCode(err) {
	case 1048, // ER_BAD_NULL_ERROR
		myDuplicate, myRowIsReferenced, myNoReferencedRow,
		1264, // ER_WARN_DATA_OUT_OF_RANGE
		1292, // ER_TRUNCATED_WRONG_VALUE
		1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
		1406, // ER_DATA_TOO_LONG
		1644, // ER_SIGNAL_EXCEPTION: a trigger's SIGNAL SQLSTATE '45000'
		3819, // MySQL: ER_CHECK_CONSTRAINT_VIOLATED
		4025: // MariaDB: ER_CONSTRAINT_FAILED
		return true
	}
	return false
}

// myForeignKey: a parent row missing, or still referenced.
func myForeignKey(err error) bool {
	c := myCode(err)
	return c == myNoReferencedRow || c == myRowIsReferenced
}

// check marks errors that mean the server cannot be reached.
func (b *MySQL) check(err error) error {
	if err == nil {
		return nil
	}
	var ue *unavailableError
	if errors.As(err, &ue) {
		return err
	}
	var ne net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return &unavailableError{err: err}
	}
	return err
}

// logChange appends to the change log as Postgres.logChange does: the
// number comes from the one-row change_log_seq (LAST_INSERT_ID(expr) hands
// it back without another query), whose row lock orders the writers by
// commit; AUTO_INCREMENT would leave gaps on rollback.
func (b *MySQL) logChange(ctx context.Context, tx *sql.Tx, kind ChangeKind, user, domain string) error {
	res, err := tx.ExecContext(ctx, `UPDATE change_log_seq SET last = LAST_INSERT_ID(last + 1)`)
	if err != nil {
		return err
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO change_log (seq, kind, username, domain, at) VALUES (?, ?, ?, ?, ?)`,
		seq, int(kind), user, domain, time.Now().Unix()); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM change_log WHERE seq <= ?`, seq-int64(b.logSize))
	return err
}

// migrate applies the missing steps under a named lock, so that nodes
// starting together apply each once. MySQL commits DDL at once, so a step
// cannot be rolled back: each is written to be run again (IF NOT EXISTS,
// INSERT IGNORE) and is recorded only once it has run whole.
func (b *MySQL) migrate(ctx context.Context, migs []migration) error {
	err := b.migrateLocked(ctx, migs)
	if err == nil || errors.Is(err, ErrSchemaTooNew) {
		return err
	}
	return fmt.Errorf("store: mysql %s: %w", b.name, b.check(err))
}

func (b *MySQL) migrateLocked(ctx context.Context, migs []migration) error {
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Wait for another process's migrations a little less than the
	// connection's read timeout, which would otherwise cut the wait.
	wait := max(1, int(b.timeout/time.Second)-1)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, myMigrationLock, wait).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("another process held the migration lock (%s) for %ds", myMigrationLock, wait)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK(?)`, myMigrationLock)
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INT NOT NULL PRIMARY KEY,
		name    VARBINARY(255) NOT NULL,
		applied BIGINT NOT NULL) ENGINE=InnoDB`); err != nil {
		return err
	}
	// Steps recorded while they were empty placeholders are applied
	// too; rerunnable like every step.
	return applyMigrations(ctx, sqlConn{conn, &b.sqlBase}, "mysql "+b.name, migs)
}

// SchemaVersion returns the schema version recorded in the database.
func (b *MySQL) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := b.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, b.check(err)
}

// Unavailable returns the last connection error while the server cannot be
// reached, and nil while it can (as far as the last attempt knows).
func (b *MySQL) Unavailable() error { return b.gate.down() }

// Ping checks that the server answers on a pooled connection.
func (b *MySQL) Ping(ctx context.Context) error { return b.check(b.db.PingContext(ctx)) }

// Close closes the pool.
func (b *MySQL) Close() error { return b.db.Close() }

// myKey is the stored form of a binding's key: its SHA-256. A key is a
// contact URI, of any length a phone sends, and an index key has a bound.
func myKey(x *Binding) []byte {
	h := sha256.Sum256([]byte(x.Key()))
	return h[:]
}

// myUpsertRows is how many upserts go in one INSERT statement.
const myUpsertRows = 100

// ApplyBindings applies ops in order in one transaction; a run of upserts
// goes as multi-row INSERTs (MySQL applies the rows in order, a later row
// updating an earlier one with its key), so a batch costs a few round trips
// rather than one per binding.
func (b *MySQL) ApplyBindings(ctx context.Context, ops []BindingOp) error {
	if len(ops) == 0 {
		return nil
	}
	for i := range ops {
		if k := ops[i].Kind; k != OpUpsert && k != OpDelete && k != OpDeleteAOR {
			x := &ops[i].Binding
			return fmt.Errorf("binding %s %s: %w", x.AOR, x.Contact, errorf(ErrMalformedBinding, "unknown binding operation %d", k))
		}
	}
	now := time.Now().Unix()
	return b.inTx(ctx, func(tx *sql.Tx) error {
		for i := 0; i < len(ops); {
			x := &ops[i].Binding
			var err error
			n := 1
			switch ops[i].Kind {
			case OpUpsert:
				for n < myUpsertRows && i+n < len(ops) && ops[i+n].Kind == OpUpsert {
					n++
				}
				err = myUpsert(ctx, tx, ops[i:i+n], now)
			case OpDelete:
				_, err = tx.ExecContext(ctx, `DELETE FROM location WHERE aor = ? AND binding_key = ?`, x.AOR, myKey(x))
			case OpDeleteAOR:
				_, err = tx.ExecContext(ctx, `DELETE FROM location WHERE aor = ?`, x.AOR)
			}
			if err != nil {
				if n > 1 {
					return fmt.Errorf("bindings %s %s and %d more: %w", x.AOR, x.Contact, n-1, err)
				}
				return fmt.Errorf("binding %s %s: %w", x.AOR, x.Contact, err)
			}
			i += n
		}
		return nil
	}, nil)
}

// myUpsert inserts or updates the bindings of ops in one statement.
func myUpsert(ctx context.Context, tx *sql.Tx, ops []BindingOp, now int64) error {
	var q strings.Builder
	q.WriteString(`INSERT INTO location (binding_key, ` + bindingCols + `) VALUES `)
	args := make([]any, 0, 15*len(ops))
	for i := range ops {
		x := &ops[i].Binding
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		lm := x.LastModified
		if lm == 0 {
			lm = now
		}
		args = append(args, myKey(x), x.AOR, x.Contact, x.Received, x.Path, int64(x.Q), x.Expires,
			x.CallID, int64(x.CSeq), x.UserAgent, x.Instance, int64(x.RegID), x.Socket, int64(x.Flags), lm)
	}
	q.WriteString(` ON DUPLICATE KEY UPDATE
		contact = VALUES(contact), received = VALUES(received), path = VALUES(path),
		q = VALUES(q), expires = VALUES(expires), call_id = VALUES(call_id),
		cseq = VALUES(cseq), user_agent = VALUES(user_agent), instance = VALUES(instance),
		reg_id = VALUES(reg_id), socket = VALUES(socket), flags = VALUES(flags),
		last_modified = VALUES(last_modified)`)
	_, err := tx.ExecContext(ctx, q.String(), args...)
	return err
}

// sqlCollect reads every row of a database/sql query with scan; no rows
// give a nil slice.
func sqlCollect[T any](rows *sql.Rows, err error, scan func(rowScanner, *T) error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var x T
		if err := scan(rows, &x); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}
