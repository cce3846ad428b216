// Package mytest runs a throwaway MariaDB server for tests: mariadbd and
// mariadb-install-db from Debian's mariadb-server package, a data
// directory in a temporary directory, listening on a unix socket there and
// on a free 127.0.0.1 port, root without a password, no flush at commit.
// The server runs as the user nobody when the tests run as root, and is
// killed with the test process (Pdeathsig).
package mytest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

// ErrNotInstalled: no mariadbd was found.
var ErrNotInstalled = errors.New("MariaDB is not installed (no mariadbd nor mariadb-install-db): install Debian's mariadb-server package, or run make test, which does")

// Server is a running (or stopped) test server.
type Server struct {
	Dir     string // data/, the socket, server.log
	Port    int
	daemon  string
	install string
	cred    *syscall.Credential
	cmd     *exec.Cmd
	done    chan struct{}
	seq     atomic.Int64
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
	s := &Server{daemon: find("mariadbd", "mysqld"), install: find("mariadb-install-db", "mysql_install_db")}
	if s.daemon == "" || s.install == "" {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp(tempBase(), "switchboard-mariadb-")
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("mytest: running as root needs the user nobody: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	out, err := s.command(s.install, "--no-defaults", "--datadir="+s.data(), "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mytest: %s: %v: %s", filepath.Base(s.install), err, out)
	}
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

func (s *Server) data() string   { return filepath.Join(s.Dir, "data") }
func (s *Server) socket() string { return filepath.Join(s.Dir, "mysql.sock") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
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

// Restart starts the server after Stop (Start does it the first time) and
// waits until it accepts connections.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("mytest: server already running")
	}
	logPath := filepath.Join(s.Dir, "server.log")
	cmd := s.command(s.daemon, "--no-defaults", "--datadir="+s.data(), "--socket="+s.socket(),
		"--port="+strconv.Itoa(s.Port), "--bind-address=127.0.0.1", "--skip-name-resolve",
		"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--innodb-buffer-pool-size=64M",
		"--max-connections=300", "--pid-file="+filepath.Join(s.Dir, "mariadb.pid"), "--log-error="+logPath)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mytest: start %s: %v", s.daemon, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done)
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, _ := sql.Open("mysql", s.DSN(""))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		db.Close()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("mytest: mariadbd exited at start: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("mytest: mariadbd did not accept connections within 60s: %v; %s", err, s.logTail())
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

// Stop shuts the server down (SIGTERM: a clean shutdown) and keeps the
// data for Restart.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM) }

// Kill stops the server at once.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL) }

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

// Close kills the server and removes its directory.
func (s *Server) Close() error {
	s.Kill()
	return os.RemoveAll(s.Dir)
}

// DSN is the go-sql-driver DSN of database db (none: "") through the unix
// socket, as root.
func (s *Server) DSN(db string) string {
	return "root@unix(" + s.socket() + ")/" + db
}

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
	name := fmt.Sprintf("%s_%d", sanitize(prefix), s.seq.Add(1))
	if err := s.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("mytest: create database %s: %v", name, err)
	}
	return s.DSN(name), nil
}

// sanitize makes a database name of a test name: lower-case letters,
// digits and underscores, at most 40 bytes.
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
