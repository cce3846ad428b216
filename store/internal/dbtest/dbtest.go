// Package dbtest runs a throwaway database server for tests: what pgtest
// (PostgreSQL) and mytest (MariaDB) have in common. A Spec says how to
// create the data directory, how to run the server on a port and how to
// tell that it accepts connections; Server does the rest: a temporary
// directory, the user nobody when the tests run as root (neither server
// runs as root), a free 127.0.0.1 port, the wait until the server is
// ready, stop, kill, restart and removal.
//
// The server is a child of the test process and is killed with it
// (Pdeathsig), so a test binary that panics leaves no server behind.
package dbtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"switchboard/transport/porttest"
)

// Spec is what differs between servers.
type Spec struct {
	// Name prefixes errors: the package, "pgtest" or "mytest".
	Name string
	// DirPrefix is the prefix of the temporary directory's name.
	DirPrefix string
	// Init is the command (its program's path first) that creates the
	// data directory under s.Dir; it runs once, before the first start.
	Init func(s *Server) []string
	// Run is the server command listening on s.Port.
	Run func(s *Server) []string
	// Ready connects to the server once, within ctx: nil when it accepts
	// connections.
	Ready func(ctx context.Context, s *Server) error
	// StopSignal shuts the server down cleanly, KillSignal at once.
	StopSignal, KillSignal syscall.Signal
}

// Server is a running (or stopped) test server.
type Server struct {
	Dir  string // the temporary directory: the data, the socket, server.log
	Port int    // the 127.0.0.1 port
	spec *Spec
	cred *syscall.Credential // the user the server runs as, when we are root
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	seq  atomic.Int64
}

// Start creates the data directory in a new temporary directory and
// starts the server on a free port.
func Start(spec *Spec) (*Server, error) {
	dir, err := os.MkdirTemp(tempBase(), spec.DirPrefix)
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, spec: spec}
	if os.Geteuid() == 0 {
		if err := s.runAsNobody(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	argv := spec.Init(s)
	out, err := s.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s: %s: %v: %s", spec.Name, filepath.Base(argv[0]), err, out)
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

// Path is the path of name in the server's directory.
func (s *Server) Path(name string) string { return filepath.Join(s.Dir, name) }

// runAsNobody gives the directory to the user nobody, whom every command
// then runs as.
func (s *Server) runAsNobody() error {
	u, err := user.Lookup("nobody")
	if err != nil {
		return fmt.Errorf("%s: running as root, and the server must not: no user nobody to run it as: %v", s.spec.Name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(s.Dir, uid, gid); err != nil {
		return fmt.Errorf("%s: give %s to nobody: %v", s.spec.Name, s.Dir, err)
	}
	s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

// Command is the program at path run in the server's directory, as the
// server's user, with a fixed environment, killed with the test process.
func (s *Server) Command(path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func freePort() (int, error) { return porttest.Free("127.0.0.1") }

// Restart starts the server after Stop (Start does it the first time),
// its output appended to server.log, and waits until it accepts
// connections.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New(s.spec.Name + ": server already running")
	}
	logf, err := os.OpenFile(s.Path("server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	if s.cred != nil {
		// The server may open the file itself (MariaDB's --log-error).
		os.Chown(logf.Name(), int(s.cred.Uid), int(s.cred.Gid))
	}
	argv := s.spec.Run(s)
	name := filepath.Base(argv[0])
	cmd := s.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %v", s.spec.Name, name, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done)

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.spec.Ready(ctx, s)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("%s: %s exited at start: %s", s.spec.Name, name, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("%s: %s did not accept connections within 60s: %v; %s", s.spec.Name, name, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.Path("server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop shuts the server down cleanly (connections are closed) and keeps
// the data for Restart.
func (s *Server) Stop() error { return s.signal(s.spec.StopSignal) }

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() error { return s.signal(s.spec.KillSignal) }

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

// NewName is a new identifier for a database or schema made of prefix (a
// test's name): lower-case letters, digits and underscores, a number that
// no other call on s returns.
func (s *Server) NewName(prefix string) string {
	return fmt.Sprintf("%s_%d", sanitize(prefix), s.seq.Add(1))
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
