package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard/transport/porttest"
)

// The end-to-end tests build the real binary once, start it with a test
// configuration on free loopback ports and drive it with sipp. Every
// address is on 127.0.0.1 and the server's outbound allow-list holds only
// loopback, so nothing a test message names (example.com, 192.0.2.x) is
// ever sent anywhere.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// switchboardBinary builds cmd/switchboard once per test process.
func switchboardBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(netnsBinaryEnv); p != "" {
		return p // built by the test process outside the namespace
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-e2e-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "switchboard")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func needSipp(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Skip("sipp not installed (scripts/test-deps.sh installs it)")
	}
}

// freeSIPPort returns a loopback port free for both UDP and TCP a moment ago.
func freeSIPPort(t *testing.T) int {
	t.Helper()
	return freePort(t, "127.0.0.1")
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))
}

// freePort returns a port of ip free for UDP and TCP (porttest.Free:
// below the kernel's ephemeral range, where no client connection takes it
// before the server binds it).
func freePort(t *testing.T, ip string) int {
	t.Helper()
	port, err := porttest.Free(ip)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// syncBuffer is a bytes.Buffer safe for the process writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a running switchboard process.
type testServer struct {
	t       *testing.T
	Port    int    // SIP port (UDP and TCP) on 127.0.0.1
	Mgmt    string // management host:port
	Dir     string // data directory
	Config  string // config file path
	Log     *syncBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	env     []string // added to the test's environment
}

// startServer writes a configuration (the base below plus extra YAML keys,
// which must not repeat a base key) and starts the binary on it.
func startServer(t *testing.T, extra string) *testServer {
	t.Helper()
	return startServerWith(t, extra, serverOptions{})
}

// serverOptions are what startServerWith adds to startServer's base.
type serverOptions struct {
	Listen string   // more listen entries, YAML list lines ("  - {proto: tls, ...}\n")
	Env    []string // more environment variables for the process

	Resolver string // outbound.resolver instead of 127.0.0.1:9 (nothing answers there)
	Storage  string // more storage keys, YAML lines ("  driver: postgres\n")
}

// startServerWith is startServer with more listeners or environment.
func startServerWith(t *testing.T, extra string, o serverOptions) *testServer {
	t.Helper()
	dir := t.TempDir()
	s := &testServer{t: t, Port: freeSIPPort(t), Mgmt: freeTCPAddr(t), Dir: filepath.Join(dir, "data"), env: o.Env}
	s.Config = filepath.Join(dir, "switchboard.yaml")
	resolver := "127.0.0.1:9"
	if o.Resolver != "" {
		resolver = o.Resolver
	}
	cfg := fmt.Sprintf(`listen:
  - {proto: udp, address: "127.0.0.1:%d"}
  - {proto: tcp, address: "127.0.0.1:%d"}
%smgmt:
  listen: %q
storage:
  dir: %q
%soutbound:
  allow: [127.0.0.0/8, "::1"]
  resolver: %q
log:
  level: debug
%s`, s.Port, s.Port, o.Listen, s.Mgmt, s.Dir, o.Storage, resolver, extra)
	if !strings.Contains(extra, "timers:") {
		cfg += "timers:\n  t1: 100ms\n  t2: 400ms\n  t4: 500ms\n  timer_c: 5s\n"
	}
	if err := os.WriteFile(s.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *testServer) start() {
	t := s.t
	t.Helper()
	s.Log = &syncBuffer{}
	s.cmd = exec.Command(switchboardBinary(t), "run", "-c", s.Config)
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	if s.env != nil {
		s.cmd.Env = append(os.Environ(), s.env...)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("switchboard exited at start: %v\n%s", s.waitErr, s.Log)
		default:
		}
		if resp, err := http.Get("http://" + s.Mgmt + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("switchboard not ready after 15 s:\n%s", s.Log)
}

// signal sends sig and waits up to d for the process to exit; it returns
// whether it exited.
func (s *testServer) signal(sig syscall.Signal, d time.Duration) bool {
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// restart stops the server gracefully and starts it again on the same
// configuration and data.
func (s *testServer) restart() {
	s.t.Helper()
	if !s.signal(syscall.SIGTERM, 40*time.Second) {
		s.t.Fatalf("switchboard did not stop on SIGTERM:\n%s", s.Log)
	}
	s.start()
}

func (s *testServer) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	if !s.signal(syscall.SIGTERM, 5*time.Second) {
		s.cmd.Process.Kill()
		<-s.exited
	}
	if s.t.Failed() {
		s.t.Logf("switchboard log:\n%s", s.Log)
	}
}

// token is the management API token the server created in its data
// directory at start (mgmt.token is empty in the test configuration).
func (s *testServer) token() string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "mgmt.token"))
	if err != nil {
		s.t.Fatalf("management token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// api runs a management command as switchboard ctl does (POST, JSON
// arguments, the bearer token) and returns the status and the body.
func (s *testServer) api(cmd, args string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest("POST", "http://"+s.Mgmt+"/api/v1/"+cmd, strings.NewReader(args))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, body
}

// logged reports whether the server's log holds every one of subs, waiting
// up to 5 s for it: the log reaches the test through a pipe and may trail
// the answer to the request that caused it.
func (s *testServer) logged(subs ...string) bool {
	has := func() bool {
		l := s.Log.String()
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); !has(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// metrics scrapes /metrics into name{labels} -> value.
func (s *testServer) metrics() map[string]float64 {
	s.t.Helper()
	resp, err := http.Get("http://" + s.Mgmt + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sippResult is what a finished sipp run reported.
type sippResult struct {
	Code   int // sipp's exit code: 0 every call succeeded, 1 some failed
	Output string
}

// runSipp runs sipp in the foreground with a hard timeout, from dir (where
// scenario files and CSV files are found).
func runSipp(t *testing.T, timeout time.Duration, args ...string) sippResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", append([]string{"-nostdin", "-timeout", fmt.Sprintf("%ds", int(timeout.Seconds())), "-timeout_error"}, args...)...)
	cmd.Dir = sippDir(t)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("sipp: %v", err)
		}
	}
	return sippResult{Code: code, Output: out.String()}
}

// startSipp starts sipp in the background (a UAS, usually) and stops it at
// the end of the test.
func startSipp(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sipp", append([]string{"-nostdin", "-timeout", "60s"}, args...)...)
	cmd.Dir = sippDir(t)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGUSR1) // sipp: quit
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sipp %v output:\n%s", args, out.String())
		}
	})
	return cmd
}

// sippDir is where the scenario files live.
func sippDir(t *testing.T) string {
	d, err := filepath.Abs("testdata/sipp")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sendUDP sends raw bytes to the server and returns the first final reply
// (provisional ones are skipped), or "" when none came within wait.
func sendUDP(t *testing.T, port int, msg string, wait time.Duration) string {
	t.Helper()
	return sendUDPFrom(t, "127.0.0.1", port, msg, wait)
}

// sendUDPFrom is sendUDP from a socket bound to srcIP (a loopback address
// such as 127.0.0.2), so the server sees that source address. LOCALPORT in
// msg becomes the socket's port.
func sendUDPFrom(t *testing.T, srcIP string, port int, msg string, wait time.Duration) string {
	t.Helper()
	c, err := net.ListenPacket("udp", srcIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg = strings.ReplaceAll(msg, "LOCALPORT", strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
	if _, err := c.WriteTo([]byte(msg), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return ""
		}
		if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 1") {
			return string(buf[:n])
		}
	}
}
