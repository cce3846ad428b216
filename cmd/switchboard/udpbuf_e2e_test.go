package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestE2EUDPSocketBuffer: limits.udp_socket_buffer sizes the UDP socket's
// receive buffer (the kernel reports twice the request, capped at
// net.core.rmem_max), and the default asks for 1 MiB instead of the kernel's
// default: a datagram that finds the buffer full is lost.
func TestE2EUDPSocketBuffer(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss (iproute2) not installed")
	}
	rmemMax := readSysctl(t, "/proc/sys/net/core/rmem_max")
	for _, c := range []struct {
		extra string
		want  int
	}{
		{"limits:\n  udp_socket_buffer: 131072\n", 2 * min(131072, rmemMax)},
		{"", 2 * min(1<<20, rmemMax)},
	} {
		s := startServer(t, c.extra)
		if got := udpRcvbuf(t, s.Port); got != c.want {
			t.Errorf("config %q: receive buffer %d bytes, want %d (rmem_max %d)", c.extra, got, c.want, rmemMax)
		}
		s.kill()
	}
}

func readSysctl(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// udpRcvbuf reads the receive buffer of the UDP socket bound to
// 127.0.0.1:port from ss's socket memory (rb).
func udpRcvbuf(t *testing.T, port int) int {
	t.Helper()
	out, err := exec.Command("ss", "-uamnH", fmt.Sprintf("sport = :%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`\brb(\d+)\b`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no rb in ss output:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
