// Package store persists subscribers, served domains and registrar location
// bindings. The default backend is an embedded SQLite database (pure Go, no
// cgo) created under the configured data directory on first start, so a fresh
// checkout runs without installing a database server.
//
// Reads that the hot path needs (credentials, bindings) are served from memory
// by the modules that own them; this package is only called off the event
// loop. Binding writes from the registrar go through LocationWriter, which
// never blocks its caller and applies changes in batched transactions.
package store

import (
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
)

// DefaultFileName is the database file created in the data directory.
const DefaultFileName = "switchboard.db"

// Options configure Open. The zero value is usable.
type Options struct {
	// FileName is the database file inside the data directory
	// (default DefaultFileName).
	FileName string
	// BusyTimeout is how long a write waits for another process (the CLI
	// while the server runs, or the reverse) to release the write lock
	// (default 5s).
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
	// stored.
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
}

// Store is the persistence API used by the registrar, auth, the CLI and the
// management API. It validates input, derives credentials and words errors;
// the Backend does the database work. A Store is safe for concurrent use.
type Store struct {
	b    Backend
	opts Options
}

// Open opens (creating on first use) the SQLite database in dir and brings
// its schema up to date. Several processes may open the same directory at
// once: the server and the user-management CLI share the file.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := prepareDir(dir); err != nil {
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

// Close releases the database. Close any LocationWriter first.
func (s *Store) Close() error { return s.b.Close() }

// prepareDir creates dir if needed and proves that it can hold the database,
// so a bad data_dir setting fails at start with a message naming the
// directory instead of an obscure SQLite error on the first write.
func prepareDir(dir string) error {
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
