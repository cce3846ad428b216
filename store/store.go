// Package store persists subscribers, served domains and registrar location
// bindings. The default backend is an embedded SQLite database (pure Go, no
// cgo) created under the configured data directory on first start, so a fresh
// checkout runs without installing a database server; several nodes share a
// PostgreSQL database instead (DriverPostgres).
//
// Reads that the hot path needs (credentials, bindings) are served from memory
// by the modules that own them; this package is only called off the event
// loop. Binding writes from the registrar go through LocationWriter, which
// never blocks its caller and applies changes in batched transactions.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors returned by the store. Each is wrapped with the names involved, so
// test with errors.Is and print the wrapped error to a user.
var (
	ErrSubscriberExists   = errors.New("subscriber already exists")
	ErrNoSubscriber       = errors.New("no such subscriber")
	ErrDomainExists       = errors.New("domain already exists")
	ErrUnknownDomain      = errors.New("domain is not served")
	ErrDomainInUse        = errors.New("domain still has subscribers")
	ErrMalformedAOR       = errors.New("malformed address-of-record")
	ErrMalformedUser      = errors.New("malformed username")
	ErrMalformedDomain    = errors.New("malformed domain")
	ErrMalformedHA1       = errors.New("malformed ha1")
	ErrNoCredentials      = errors.New("neither password nor ha1 given")
	ErrSchemaTooNew       = errors.New("database schema is newer than this binary")
	ErrQueueFull          = errors.New("location write queue is full")
	ErrWriterClosed       = errors.New("location writer is closed")
	ErrMalformedBinding   = errors.New("malformed binding")
	ErrDataDirUnavailable = errors.New("data directory unavailable")
	ErrMalformedAddress   = errors.New("malformed address entry")
	ErrAddressExists      = errors.New("address entry already exists")
	ErrNoAddress          = errors.New("no such address entry")
	ErrMalformedFraudRule = errors.New("malformed fraud rule")
	ErrFraudRuleExists    = errors.New("fraud rule already exists")
	ErrNoFraudRule        = errors.New("no such fraud rule")
	ErrMalformedUAC       = errors.New("malformed uac entry")
	ErrUACExists          = errors.New("uac entry already exists")
	ErrNoUAC              = errors.New("no such uac entry")

	ErrMalformedDialplanRule = errors.New("malformed dialplan rule")
	ErrDialplanRuleExists    = errors.New("dialplan rule already exists")
	ErrNoDialplanRule        = errors.New("no such dialplan rule")
	ErrMalformedAlias        = errors.New("malformed alias")
	ErrAliasExists           = errors.New("alias already exists")
	ErrNoAlias               = errors.New("no such alias")
	ErrMalformedGroup        = errors.New("malformed group membership")
	ErrGroupMemberExists     = errors.New("already a member of the group")
	ErrNoGroupMember         = errors.New("not a member of the group")

	ErrMalformedDispatcher = errors.New("malformed dispatcher destination")
	ErrDispatcherExists    = errors.New("dispatcher destination already exists")
	ErrNoDispatcher        = errors.New("no such dispatcher destination")

	ErrMalformedDR = errors.New("malformed dynamic routing entry")
	ErrDRExists    = errors.New("dynamic routing entry already exists")
	ErrNoDR        = errors.New("no such dynamic routing entry")

	// ErrUnavailable: the database server cannot be reached (PostgreSQL
	// down, refusing connections, or a reconnection is being held back
	// after a failed one). The data may well exist: callers keep what
	// they have cached rather than treating it as missing.
	ErrUnavailable = errors.New("database unavailable")
)

// Drivers accepted in Options.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql" // MariaDB or MySQL
)

// DefaultFileName is the database file created in the data directory.
const DefaultFileName = "switchboard.db"

// Options configure Open. The zero value is usable: SQLite.
type Options struct {
	// Driver is DriverSQLite (the default, a file in the data directory),
	// DriverPostgres (a PostgreSQL server named by DSN) or DriverMySQL (a
	// MariaDB or MySQL server named by DSN).
	Driver string
	// DSN names the PostgreSQL database, as a URL
	// (postgres://user@host:5432/switchboard?sslmode=verify-full) or as
	// libpq key=value pairs (host=/run/postgresql dbname=switchboard). The
	// password may also come from PGPASSWORD or ~/.pgpass. For
	// DriverMySQL, go-sql-driver's form:
	// user:password@tcp(db.example.net:3306)/switchboard or
	// user@unix(/run/mysqld/mysqld.sock)/switchboard.
	DSN string
	// Schema is the layout of the tables: SchemaSwitchboard (the
	// default: Switchboard's own, created and migrated by Open) or
	// SchemaOpenSIPS (an OpenSIPS 3.x database used as it is, nothing
	// migrated; DriverPostgres or DriverMySQL). See opensips.go.
	Schema string
	// MaxConns is the connection pool's size of a database server
	// (default 8).
	MaxConns int
	// Timeout bounds each operation on a database server, connecting
	// included (default 10s), so that a server that stops answering makes
	// callers fail instead of hang. PostgreSQL's streamed loads
	// (LoadBindings, ForEachDRRule) are bounded by their caller's context
	// only; MySQL bounds each read and write on the connection.
	Timeout time.Duration
	// FileName is the database file inside the data directory
	// (default DefaultFileName).
	FileName string
	// BusyTimeout is how long a write waits for another process (the CLI
	// while the server runs, or the reverse) to release the write lock
	// (default 5s). With PostgreSQL it is the lock_timeout of each
	// connection: how long a statement waits for a row or table lock.
	BusyTimeout time.Duration
	// StorePasswords keeps the plain password beside the HA1 values. By
	// default only the HA1 digests are kept, which is all digest
	// authentication needs.
	StorePasswords bool
	// ChangeLogSize is how many subscriber/domain changes are kept for
	// Changes (default 10000). A reader that falls further behind gets a
	// ChangeAll entry and must drop its whole cache.
	ChangeLogSize int
	// SyncCommits makes every commit wait for the disk (SQLite
	// synchronous=FULL), so a committed change survives a power loss or an
	// operating-system crash, not only a crash of the process (the default,
	// synchronous=NORMAL in WAL mode). The server sets it with
	// registrar.persist: write-through, whose 200 promises the binding is
	// stored. PostgreSQL commits are durable as its server is configured
	// (synchronous_commit), which this does not change.
	SyncCommits bool
}

func (o *Options) setDefaults() {
	if o.FileName == "" {
		o.FileName = DefaultFileName
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.ChangeLogSize <= 0 {
		o.ChangeLogSize = 10000
	}
	if o.Driver == "" {
		o.Driver = DriverSQLite
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
}

// Store is the persistence API used by the registrar, auth, the CLI and the
// management API. It validates input, derives credentials and words errors;
// the Backend does the database work. A Store is safe for concurrent use.
type Store struct {
	b    Backend
	opts Options
}

// Open opens the database and brings its schema up to date: with
// DriverSQLite the file in dir (created on first use), with DriverPostgres
// or DriverMySQL the database at opts.DSN (dir is not used). Several processes may open the
// same database at once: the server and the user-management CLI share it.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	switch opts.Schema {
	case "", SchemaSwitchboard:
	case SchemaOpenSIPS:
		b, err := OpenOpenSIPS(context.Background(), opts.Driver, opts.DSN, opts)
		if err != nil {
			return nil, err
		}
		return New(b, opts), nil
	default:
		return nil, fmt.Errorf("store: unknown schema %q (want %s or %s)", opts.Schema, SchemaSwitchboard, SchemaOpenSIPS)
	}
	switch opts.Driver {
	case DriverSQLite:
	case DriverPostgres:
		b, err := OpenPostgres(context.Background(), opts.DSN, opts)
		if err != nil {
			return nil, err
		}
		return New(b, opts), nil
	case DriverMySQL:
		b, err := OpenMySQL(context.Background(), opts.DSN, opts)
		if err != nil {
			return nil, err
		}
		return New(b, opts), nil
	default:
		return nil, fmt.Errorf("store: unknown driver %q (want %s, %s or %s)", opts.Driver, DriverSQLite, DriverPostgres, DriverMySQL)
	}
	if opts.DSN != "" {
		return nil, fmt.Errorf("store: a DSN is for the %s and %s drivers; %s uses the data directory", DriverPostgres, DriverMySQL, DriverSQLite)
	}
	if err := PrepareDir(dir); err != nil {
		return nil, err
	}
	if strings.ContainsAny(opts.FileName, "/\\?#") {
		return nil, fmt.Errorf("store: database file name %q must be a plain file name", opts.FileName)
	}
	path := filepath.Join(dir, opts.FileName)
	// Create the file ourselves so it is private: it holds credential
	// digests. SQLite gives its -wal and -shm files the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	}
	b, err := OpenSQLite(path, opts)
	if err != nil {
		return nil, err
	}
	return New(b, opts), nil
}

// New wraps an already opened backend. It is how a backend other than the
// embedded SQLite one is plugged in.
func New(b Backend, opts Options) *Store {
	opts.setDefaults()
	return &Store{b: b, opts: opts}
}

// Ping checks that the database answers. With PostgreSQL an error wraps
// ErrUnavailable while the server cannot be reached.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.b.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close releases the database. Close any LocationWriter first.
func (s *Store) Close() error { return s.b.Close() }

// PrepareDir creates dir if needed and proves that it is a writable
// directory, so a bad data_dir setting fails at start with a message naming
// the directory instead of an obscure SQLite error on the first write. Open
// does it for SQLite; a server on PostgreSQL calls it for its secrets.
func PrepareDir(dir string) error {
	if dir == "" {
		return errorf(ErrDataDirUnavailable, "store: no data directory configured")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return errorf(ErrDataDirUnavailable, "store: data directory %q exists but is not a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return errorf(ErrDataDirUnavailable, "store: cannot create data directory %q: %v", dir, unwrapPathErr(err))
	}
	f, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return errorf(ErrDataDirUnavailable, "store: data directory %q is not writable: %v", dir, unwrapPathErr(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func unixNow() int64 { return time.Now().Unix() }

// wordedError is an error whose message already says what the sentinel
// says, so the sentinel's text is not repeated after a colon.
type wordedError struct {
	msg      string
	sentinel error
}

func (e *wordedError) Error() string { return e.msg }
func (e *wordedError) Unwrap() error { return e.sentinel }

func errorf(sentinel error, format string, args ...any) error {
	return &wordedError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}
