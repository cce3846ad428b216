package porttest

import (
	"net"
	"strconv"
	"testing"
)

// TestFree: ports below the ephemeral range, never the same twice, and
// free for a server to bind on UDP and TCP.
func TestFree(t *testing.T) {
	lo, hi := portRange()
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p, err := Free("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p >= hi || seen[p] {
			t.Fatalf("port %d: outside %d-%d or given twice", p, lo, hi-1)
		}
		seen[p] = true
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		u.Close()
		l.Close()
	}
}
