// Package pgtest runs a throwaway PostgreSQL server for tests: initdb and
// postgres from the distribution's packages (Debian: postgresql, binaries
// in /usr/lib/postgresql/<version>/bin), a cluster in a temporary
// directory, listening on a unix socket in that directory and on a free
// 127.0.0.1 port, trust authentication, no fsync. PostgreSQL refuses to
// run as root, so when the tests run as root (CI) the server runs as the
// user nobody, in a directory given to it.
//
// The server is a child of the test process and is killed with it
// (Pdeathsig), so a test binary that panics leaves no server behind.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled: no initdb was found.
var ErrNotInstalled = errors.New("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin nor in PATH): install Debian's postgresql package, or run make test, which does")

// Server is a running (or stopped) test cluster.
type Server struct {
	Dir  string // the cluster's temporary directory: data/, the socket, server.log
	Port int    // its 127.0.0.1 port, also the number in the socket's name
	bin  string
	cred *syscall.Credential // the user the server runs as, when we are root
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	seq  atomic.Int64
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
	dir, err := os.MkdirTemp(tempBase(), "switchboard-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		if err := s.runAsNobody(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	out, err := s.command("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--no-locale", "--no-sync").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %v: %s", err, out)
	}
	// A free port can be taken by someone else before the server binds
	// it: try a few.
	for try := 0; ; try++ {
		if s.Port, err = freePort(); err == nil {
			if err = s.Restart(); err == nil {
				return s, nil
			}
		}
		if try == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

// runAsNobody gives the directory to the user nobody, whom every command
// then runs as.
func (s *Server) runAsNobody() error {
	u, err := user.Lookup("nobody")
	if err != nil {
		return fmt.Errorf("pgtest: running as root, and PostgreSQL refuses to: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(s.Dir, uid, gid); err != nil {
		return fmt.Errorf("pgtest: give %s to nobody: %v", s.Dir, err)
	}
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart starts the server of a cluster that Stop stopped (Start does it
// the first time), and waits until it accepts connections.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("pgtest: server already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	if s.cred != nil {
		os.Chown(logf.Name(), int(s.cred.Uid), int(s.cred.Gid))
	}
	cmd := s.command("postgres", "-D", s.data(), "-p", strconv.Itoa(s.Port), "-k", s.Dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done)

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("pgtest: postgres exited at start: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("pgtest: postgres did not accept connections within 60s: %v; %s", err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop shuts the server down (fast shutdown: connections are closed) and
// keeps the cluster for Restart.
func (s *Server) Stop() error {
	return s.signal(syscall.SIGINT)
}

// Kill stops the server at once, as a crash would (immediate shutdown).
func (s *Server) Kill() error {
	return s.signal(syscall.SIGQUIT)
}

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Close stops the server and removes the cluster.
func (s *Server) Close() error {
	s.Kill()
	return os.RemoveAll(s.Dir)
}

// DSN is the key=value DSN of database db through the unix socket.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.Dir, s.Port, db)
}

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
	name := fmt.Sprintf("%s_%d", sanitize(prefix), s.seq.Add(1))
	if err := s.Exec(ctx, `CREATE SCHEMA `+name); err != nil {
		return "", fmt.Errorf("pgtest: create schema %s: %v", name, err)
	}
	return s.DSN("postgres") + " search_path=" + name, nil
}

// NewDatabase creates an empty database and returns its name.
func (s *Server) NewDatabase(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("%s_%d", sanitize(prefix), s.seq.Add(1))
	if err := s.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %v", name, err)
	}
	return name, nil
}

// sanitize makes an identifier of a test name: lower-case letters, digits
// and underscores, at most 40 bytes.
func sanitize(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	if b.Len() == 0 || b.String()[0] >= '0' && b.String()[0] <= '9' {
		return "t_" + b.String()
	}
	return b.String()
}

// tempBase is where the server's directory goes: the usual temporary
// directory, unless we are root and the user nobody could not reach it
// (a private TMPDIR), then /tmp.
func tempBase() string {
	d := os.TempDir()
	if os.Geteuid() != 0 {
		return d
	}
	for p := d; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == filepath.Dir(p) {
			return d
		}
	}
}
