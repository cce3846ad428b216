package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// Tests that run tools which could send anywhere (scanners) run inside a
// network namespace of their own that has nothing but a loopback
// interface: the test binary runs the test again inside it, where the
// server, sipp and the tool share that loopback and nothing can leave.

const (
	netnsEnv       = "SWITCHBOARD_TEST_NETNS"  // set inside: the namespace's name
	netnsBinaryEnv = "SWITCHBOARD_TEST_BINARY" // the server binary, built outside
)

var netnsSeq atomic.Int32

// inLoopbackNetns reports whether the calling test runs inside its own
// loopback-only namespace. Outside, it creates one, runs the test (a
// top-level test: its name is the -test.run pattern) again inside it with
// the same binary, reports the inner run's result and output, deletes the
// namespace, and returns false: the caller returns. It skips without root
// or without iproute2.
func inLoopbackNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (ip netns); make test runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (Debian package iproute2) not installed; scripts/test-deps.sh installs it")
	}
	bin := switchboardBinary(t)
	name := fmt.Sprintf("sbtest-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up in %s: %v: %s", name, err, out)
	}
	args := []string{"netns", "exec", name, os.Args[0], "-test.run", "^" + t.Name() + "$", "-test.count=1", "-test.v", "-test.timeout=5m"}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+name, netnsBinaryEnv+"="+bin)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("inside namespace %s (%s): %v\n%s", name, time.Since(start).Round(time.Millisecond), err, out)
	}
	if testing.Verbose() {
		t.Logf("inside namespace %s:\n%s", name, out)
	}
	return false
}

// TestNetnsHasOnlyLoopback: inside, there is nothing but lo, so a
// datagram to an address from a test message has nowhere to go.
func TestNetnsHasOnlyLoopback(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	out, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if n := countLines(string(out)); n != 1 {
		t.Fatalf("links in the namespace:\n%s", out)
	}
	// No route but loopback: connecting a UDP socket to a test address
	// fails at once (ENETUNREACH), outside it would succeed.
	if c, err := net.Dial("udp", "192.0.2.1:5060"); err == nil {
		c.Close()
		t.Fatal("192.0.2.1 is routable from inside the namespace")
	}
}

func countLines(s string) int {
	n := 0
	for _, c := range s {
		if c == '\n' {
			n++
		}
	}
	return n
}
