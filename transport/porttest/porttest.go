// Package porttest gives tests loopback ports for the servers they start
// (the proxy, sipp, redis-server, PostgreSQL).
//
// A port the kernel hands out for ":0" is free only until it hands the
// same port to some client's connection, which it may do between the
// test's pick and the server's bind: the server then fails to start with
// "address already in use". Free picks below the kernel's ephemeral range
// (ip_local_port_range), where nothing takes a port unasked, and never
// gives the same port twice in a process.
package porttest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a port of ip ("127.0.0.1", "::1") that is free for both
// UDP and TCP.
func Free(ip string) (int, error) {
	lo, hi := portRange()
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < 200; i++ {
		port := lo + rand.IntN(hi-lo)
		if given[port] {
			continue
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", addr)
		u.Close()
		if err == nil {
			l.Close()
			given[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("porttest: no port free for UDP and TCP on %s in %d-%d", ip, lo, hi-1)
}

// portRange is where Free picks: the 12,000 ports below the kernel's
// ephemeral range (10000-32767 when it cannot be read).
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if first, err := strconv.Atoi(f[0]); err == nil && first > 13000 {
			lo, hi = first-12000, first
		}
	}
	return lo, hi
}
