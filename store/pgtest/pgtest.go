// Package pgtest runs a throwaway PostgreSQL server for tests: initdb and
// postgres from the distribution's packages (Debian: postgresql, binaries
// in /usr/lib/postgresql/<version>/bin), a cluster in a temporary
// directory, listening on a unix socket in that directory and on a free
// 127.0.0.1 port, trust authentication, no fsync. PostgreSQL refuses to
// run as root, so when the tests run as root (CI) the server runs as the
// user nobody, in a directory given to it. What it shares with mytest
// (directory, user, port, start, wait, stop) is store/internal/dbtest.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"

	"github.com/jackc/pgx/v5"

	"switchboard/store/internal/dbtest"
)

// ErrNotInstalled: no initdb was found.
var ErrNotInstalled = errors.New("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin nor in PATH): install Debian's postgresql package, or run make test, which does")

// Server is a running (or stopped) test cluster: Dir holds data/, the
// socket and server.log; Port is its 127.0.0.1 port, also the number in
// the socket's name. Stop is a fast shutdown (connections are closed),
// Kill an immediate one, as a crash.
type Server struct {
	*dbtest.Server
}

// BinDir finds the directory of initdb and postgres: the newest version
// under /usr/lib/postgresql, else PATH.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNotInstalled
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start creates a cluster in a new temporary directory and starts it.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s, err := dbtest.Start(&dbtest.Spec{
		Name:      "pgtest",
		DirPrefix: "switchboard-pg-",
		Init: func(s *dbtest.Server) []string {
			return []string{filepath.Join(bin, "initdb"), "-D", s.Path("data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
				"--no-locale", "--no-sync"}
		},
		Run: func(s *dbtest.Server) []string {
			return []string{filepath.Join(bin, "postgres"), "-D", s.Path("data"), "-p", strconv.Itoa(s.Port), "-k", s.Dir,
				"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
				"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "log_min_messages=warning"}
		},
		Ready: func(ctx context.Context, s *dbtest.Server) error {
			c, err := pgx.Connect(ctx, dsn(s, "postgres"))
			if err == nil {
				c.Close(context.Background())
			}
			return err
		},
		StopSignal: syscall.SIGINT,  // fast shutdown
		KillSignal: syscall.SIGQUIT, // immediate shutdown
	})
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

func dsn(s *dbtest.Server, db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.Dir, s.Port, db)
}

// DSN is the key=value DSN of database db through the unix socket.
func (s *Server) DSN(db string) string { return dsn(s.Server, db) }

// URL is the URL of database db over TCP on 127.0.0.1.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// Exec runs SQL statements in the postgres database.
func (s *Server) Exec(ctx context.Context, sql string, args ...any) error {
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql, args...)
	return err
}

// NewSchema creates an empty schema in the postgres database and returns
// a DSN whose connections use it (search_path): each test gets a database
// of its own at the cost of a CREATE SCHEMA.
func (s *Server) NewSchema(ctx context.Context, prefix string) (string, error) {
	name := s.NewName(prefix)
	if err := s.Exec(ctx, `CREATE SCHEMA `+name); err != nil {
		return "", fmt.Errorf("pgtest: create schema %s: %v", name, err)
	}
	return s.DSN("postgres") + " search_path=" + name, nil
}

// NewDatabase creates an empty database and returns its name.
func (s *Server) NewDatabase(ctx context.Context, prefix string) (string, error) {
	name := s.NewName(prefix)
	if err := s.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %v", name, err)
	}
	return name, nil
}
