// Package mytest runs a throwaway MariaDB server for tests: mariadbd and
// mariadb-install-db from Debian's mariadb-server package, a data
// directory in a temporary directory, listening on a unix socket there and
// on a free 127.0.0.1 port, root without a password, no flush at commit.
// The server runs as the user nobody when the tests run as root, and is
// killed with the test process (Pdeathsig). What it shares with pgtest
// (directory, user, port, start, wait, stop) is store/internal/dbtest.
package mytest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	_ "github.com/go-sql-driver/mysql"

	"switchboard/store/internal/dbtest"
)

// ErrNotInstalled: no mariadbd was found.
var ErrNotInstalled = errors.New("MariaDB is not installed (no mariadbd nor mariadb-install-db): install Debian's mariadb-server package, or run make test, which does")

// Server is a running (or stopped) test server: Dir holds data/, the
// socket and server.log; Port is its 127.0.0.1 port. Stop is a clean
// shutdown (SIGTERM), Kill a SIGKILL.
type Server struct {
	*dbtest.Server
}

func find(names ...string) string {
	for _, n := range names {
		for _, d := range []string{"/usr/sbin", "/usr/bin"} {
			if p := filepath.Join(d, n); fileExists(p) {
				return p
			}
		}
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Start creates a data directory in a new temporary directory and starts
// the server on it.
func Start() (*Server, error) {
	daemon, install := find("mariadbd", "mysqld"), find("mariadb-install-db", "mysql_install_db")
	if daemon == "" || install == "" {
		return nil, ErrNotInstalled
	}
	s, err := dbtest.Start(&dbtest.Spec{
		Name:      "mytest",
		DirPrefix: "switchboard-mariadb-",
		Init: func(s *dbtest.Server) []string {
			return []string{install, "--no-defaults", "--datadir=" + s.Path("data"), "--auth-root-authentication-method=normal",
				"--skip-test-db", "--skip-name-resolve"}
		},
		Run: func(s *dbtest.Server) []string {
			return []string{daemon, "--no-defaults", "--datadir=" + s.Path("data"), "--socket=" + socket(s),
				"--port=" + strconv.Itoa(s.Port), "--bind-address=127.0.0.1", "--skip-name-resolve",
				"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--innodb-buffer-pool-size=64M",
				"--max-connections=300", "--pid-file=" + s.Path("mariadb.pid"), "--log-error=" + s.Path("server.log")}
		},
		Ready: func(ctx context.Context, s *dbtest.Server) error {
			db, _ := sql.Open("mysql", dsn(s, ""))
			defer db.Close()
			return db.PingContext(ctx)
		},
		StopSignal: syscall.SIGTERM,
		KillSignal: syscall.SIGKILL,
	})
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

func socket(s *dbtest.Server) string { return s.Path("mysql.sock") }

func dsn(s *dbtest.Server, db string) string { return "root@unix(" + socket(s) + ")/" + db }

// DSN is the go-sql-driver DSN of database db (none: "") through the unix
// socket, as root.
func (s *Server) DSN(db string) string { return dsn(s.Server, db) }

// TCPDSN is the same over TCP on 127.0.0.1.
func (s *Server) TCPDSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s", s.Port, db)
}

// Exec runs a statement outside any database.
func (s *Server) Exec(ctx context.Context, q string, args ...any) error {
	db, err := sql.Open("mysql", s.DSN(""))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, q, args...)
	return err
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(ctx context.Context, prefix string) (string, error) {
	name := s.NewName(prefix)
	if err := s.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("mytest: create database %s: %v", name, err)
	}
	return s.DSN(name), nil
}
