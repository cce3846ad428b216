package store

import (
	"database/sql"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"switchboard/store/mytest"
	"switchboard/store/pgtest"
)

// The store's tests run against every backend: eachBackend gives each test
// a fresh, empty database per backend, as subtests named after the driver.
// PostgreSQL is a real server started once for the package (pgtest) the
// first time a test needs it, and stopped by TestMain; each test gets a
// schema of its own in it. Where PostgreSQL is not installed its subtests
// skip and say so.

var pg struct {
	once sync.Once
	srv  *pgtest.Server
	err  error
	took time.Duration
}

var my struct {
	once sync.Once
	srv  *mytest.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.srv != nil {
		pg.srv.Close()
	}
	if my.srv != nil {
		my.srv.Close()
	}
	os.Exit(code)
}

// testMySQL returns the package's MariaDB server, starting it at the first
// call.
func testMySQL(t testing.TB) *mytest.Server {
	t.Helper()
	my.once.Do(func() { my.srv, my.err = mytest.Start() })
	if errors.Is(my.err, mytest.ErrNotInstalled) {
		t.Skip("mysql: " + my.err.Error())
	}
	if my.err != nil {
		t.Fatalf("mysql: %v", my.err)
	}
	return my.srv
}

func newMySQLDB(t testing.TB) *testDB {
	t.Helper()
	dsn, err := testMySQL(t).NewDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return &testDB{driver: DriverMySQL, dsn: dsn}
}

// testPostgres returns the package's PostgreSQL server, starting it at the
// first call.
func testPostgres(t testing.TB) *pgtest.Server {
	t.Helper()
	pg.once.Do(func() {
		start := time.Now()
		pg.srv, pg.err = pgtest.Start()
		pg.took = time.Since(start)
	})
	if errors.Is(pg.err, pgtest.ErrNotInstalled) {
		t.Skip("postgres: " + pg.err.Error())
	}
	if pg.err != nil {
		t.Fatalf("postgres: %v", pg.err)
	}
	return pg.srv
}

// busyFloor is the shortest lock wait the backend can be given: MySQL's
// innodb_lock_wait_timeout counts whole seconds.
func (db *testDB) busyFloor(d time.Duration) time.Duration {
	if db.driver == DriverMySQL {
		return max(d, time.Second)
	}
	return d
}

// testDB is one test's database on one backend.
type testDB struct {
	driver string
	dir    string // sqlite: the data directory
	dsn    string // postgres: the test's schema
}

// open opens a handle on the test's database, as another process would
// (the server and the CLI each have their own).
func (db *testDB) open(t testing.TB, opts Options) *Store {
	t.Helper()
	opts.Driver, opts.DSN = db.driver, db.dsn
	return openT(t, db.dir, opts)
}

func eachBackend(t *testing.T, fn func(t *testing.T, db *testDB)) {
	t.Run(DriverSQLite, func(t *testing.T) {
		fn(t, &testDB{driver: DriverSQLite, dir: t.TempDir()})
	})
	t.Run(DriverPostgres, func(t *testing.T) {
		fn(t, newPostgresDB(t))
	})
	t.Run(DriverMySQL, func(t *testing.T) {
		fn(t, newMySQLDB(t))
	})
}

// eachBackendB is eachBackend for benchmarks.
func eachBackendB(b *testing.B, fn func(b *testing.B, db *testDB)) {
	b.Run(DriverSQLite, func(b *testing.B) {
		fn(b, &testDB{driver: DriverSQLite, dir: b.TempDir()})
	})
	b.Run(DriverPostgres, func(b *testing.B) {
		fn(b, newPostgresDB(b))
	})
	b.Run(DriverMySQL, func(b *testing.B) {
		fn(b, newMySQLDB(b))
	})
}

func newPostgresDB(t testing.TB) *testDB {
	t.Helper()
	dsn, err := testPostgres(t).NewSchema(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return &testDB{driver: DriverPostgres, dsn: dsn}
}

// count returns the number of rows of table, read directly.
func (db *testDB) count(t testing.TB, s *Store, table string) int {
	t.Helper()
	var n int
	var err error
	switch b := s.b.(type) {
	case *SQLite:
		err = b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n)
	case *Postgres:
		err = b.pool.QueryRow(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n)
	case *MySQL:
		err = b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lockWrites makes another connection hold the lock a writer of the
// location table needs (SQLite: the database's write lock; PostgreSQL: an
// exclusive lock on the table; MySQL: every row and gap of it), until
// unlock is called.
func (db *testDB) lockWrites(t testing.TB, s *Store) (unlock func()) {
	t.Helper()
	switch b := s.b.(type) {
	case *SQLite:
		conn, err := rawDB(t, b.path).Conn(ctx)
		must(t, err)
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		must(t, err)
		return func() {
			conn.ExecContext(ctx, "ROLLBACK")
			conn.Close()
		}
	case *Postgres:
		conn, err := pgx.Connect(ctx, db.dsn)
		must(t, err)
		tx, err := conn.Begin(ctx)
		must(t, err)
		_, err = tx.Exec(ctx, "LOCK TABLE location IN EXCLUSIVE MODE")
		must(t, err)
		return func() {
			tx.Rollback(ctx)
			conn.Close(ctx)
		}
	case *MySQL:
		// Every row and gap of the table (next-key locks of a full scan):
		// a writer waits innodb_lock_wait_timeout, as it would for
		// another node's transaction.
		other, err := sql.Open("mysql", db.dsn)
		must(t, err)
		tx, err := other.BeginTx(ctx, nil)
		must(t, err)
		_, err = tx.ExecContext(ctx, "SELECT COUNT(*) FROM location FOR UPDATE")
		must(t, err)
		return func() {
			tx.Rollback()
			other.Close()
		}
	}
	t.Fatalf("no lock for %T", s.b)
	return nil
}
