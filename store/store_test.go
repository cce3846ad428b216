package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var ctx = context.Background()

func openT(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenCreatesDatabaseAndMigrates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s := openT(t, dir, Options{})
	path := filepath.Join(dir, DefaultFileName)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want -rw-------", name, fi.Mode(), err)
		}
	}
	sb := s.b.(*SQLite)
	v, err := sb.SchemaVersion(ctx)
	if err != nil || v != len(sqliteMigrations) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(sqliteMigrations))
	}
	var mode string
	if err := sb.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := sb.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v", fk, err)
	}
	if err := s.AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Re-open: no migration re-applied, data kept.
	s2 := openT(t, dir, Options{})
	var rows int
	if err := s2.b.(*SQLite).db.QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != len(sqliteMigrations) {
		t.Fatalf("schema_version rows = %d, %v", rows, err)
	}
	ok, err := s2.DomainExists(ctx, "example.com")
	if err != nil || !ok {
		t.Fatalf("domain lost across re-open: %v %v", ok, err)
	}
}

func TestMigrationStepsAndNewerSchema(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFileName)
	b, err := OpenSQLite(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	// A later binary with one more step upgrades the file in place.
	next := append(append([]migration(nil), sqliteMigrations...),
		migration{len(sqliteMigrations) + 1, "test step", []string{`CREATE TABLE extra (x INTEGER)`}})
	var opts Options
	opts.setDefaults()
	b2, err := openSQLite(path, opts, next)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if v, _ := b2.SchemaVersion(ctx); v != len(next) {
		t.Fatalf("version after upgrade = %d, want %d", v, len(next))
	}
	if _, err := b2.db.Exec(`INSERT INTO extra VALUES (1)`); err != nil {
		t.Fatalf("step not applied: %v", err)
	}
	b2.Close()

	// This binary must refuse the newer file rather than guess.
	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("err = %v, want ErrSchemaTooNew", err)
	}
	n := len(sqliteMigrations)
	for _, want := range []string{path, fmt.Sprintf("schema version %d", n+1), fmt.Sprintf("only up to %d", n), "newer switchboard"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestMigrationIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFileName)
	bad := append(append([]migration(nil), sqliteMigrations...),
		migration{len(sqliteMigrations) + 1, "broken", []string{`CREATE TABLE ok1 (x)`, `THIS IS NOT SQL`}})
	var opts Options
	opts.setDefaults()
	step := fmt.Sprintf("migration %d (broken)", len(bad))
	if _, err := openSQLite(path, opts, bad); err == nil || !strings.Contains(err.Error(), step) {
		t.Fatalf("err = %v, want failure naming %s", err, step)
	}
	// Nothing of the failed run is left: not even step 1.
	db := rawDB(t, path)
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name IN ('ok1', 'subscribers', 'schema_version')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tables left after failed migration: %d, %v", n, err)
	}
	db.Close()
	s := openT(t, dir, Options{})
	if v, _ := s.b.(*SQLite).SchemaVersion(ctx); v != len(sqliteMigrations) {
		t.Fatalf("version %d after clean open", v)
	}
}

func TestOpenErrors(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "plainfile")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("empty dir", func(t *testing.T) {
		_, err := Open("", Options{})
		if !errors.Is(err, ErrDataDirUnavailable) || !strings.Contains(err.Error(), "no data directory") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("dir is a file", func(t *testing.T) {
		_, err := Open(file, Options{})
		if !errors.Is(err, ErrDataDirUnavailable) || !strings.Contains(err.Error(), "not a directory") || !strings.Contains(err.Error(), file) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("parent is a file", func(t *testing.T) {
		dir := filepath.Join(file, "data")
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrDataDirUnavailable) || !strings.Contains(err.Error(), "cannot create data directory") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		dir := filepath.Join(tmp, "ro")
		os.Mkdir(dir, 0o500)
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrDataDirUnavailable) || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("corrupted file", func(t *testing.T) {
		dir := filepath.Join(tmp, "corrupt")
		os.Mkdir(dir, 0o700)
		junk := []byte(strings.Repeat("this is not a database page ", 300))
		path := filepath.Join(dir, DefaultFileName)
		if err := os.WriteFile(path, junk, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Options{})
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "not a SQLite database") || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("database is a directory", func(t *testing.T) {
		dir := filepath.Join(tmp, "dbdir")
		if err := os.MkdirAll(filepath.Join(dir, DefaultFileName), 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Options{})
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), DefaultFileName) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad file name", func(t *testing.T) {
		_, err := Open(tmp, Options{FileName: "../x.db"})
		if err == nil || !strings.Contains(err.Error(), "plain file name") {
			t.Fatalf("err = %v", err)
		}
	})
}

// Server and CLI started together on a fresh directory both create and
// migrate; the immediate transaction makes one wait for the other.
func TestConcurrentFirstOpen(t *testing.T) {
	dir := t.TempDir()
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			s, err := Open(dir, Options{})
			if err == nil {
				err = s.AddDomain(ctx, "example.com")
				if errors.Is(err, ErrDomainExists) {
					err = nil
				}
				s.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := openT(t, dir, Options{})
	if v, _ := s.b.(*SQLite).SchemaVersion(ctx); v != len(sqliteMigrations) {
		t.Fatalf("version %d", v)
	}
}

// TestDataDirWithPercentRefused: a data directory with a '%' in its name
// is refused by name: opened as a URI, sip%41data was the file
// sipAdata/switchboard.db, created world-readable, digests and all.
func TestDataDirWithPercentRefused(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sip%41data")
	if err := os.MkdirAll(filepath.Join(root, "sipAdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatal("opened")
	}
	if !strings.Contains(err.Error(), "'%'") {
		t.Fatalf("%v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "sipAdata", DefaultFileName)); err == nil {
		t.Fatal("a database was created in sipAdata")
	}
}
