package ng

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// startDaemon starts Debian's rtpengine in userspace mode on loopback with
// a free ng port (the benchmarks' real peer); skipped without the binary.
func startDaemon(tb testing.TB) *Instance {
	tb.Helper()
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		tb.Skip("rtpengine not installed (Debian package rtpengine-daemon)")
	}
	port := freeUDPPort(tb)
	cmd := exec.Command(bin, "--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--log-level=3", "--no-fallback",
		"--interface=127.0.0.1", "--listen-ng=127.0.0.1:"+strconv.Itoa(port),
		"--port-min=38000", "--port-max=38999", "--delete-delay=0",
		"--pidfile="+filepath.Join(tb.TempDir(), "pid"))
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	in, _ := ParseInstance("udp:127.0.0.1:" + strconv.Itoa(port))
	c, err := New(Config{Timeout: 100 * time.Millisecond, Retries: 50}, []*Instance{in})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	done := make(chan bool, 1)
	c.Ping(in, func(ok bool) { done <- ok })
	if !<-done {
		tb.Fatal("rtpengine does not answer ping")
	}
	return in
}

// BenchmarkNGRoundTrip: one command at a time through the client to the
// real rtpengine and back (ping: the protocol's own cost; offer+delete: a
// call's session created with a real SDP and ended).
func BenchmarkNGRoundTrip(b *testing.B) {
	in := startDaemon(b)
	c, err := New(Config{Timeout: time.Second, Retries: 2}, []*Instance{in})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	cb := func(_ *Instance, v Value, err error) { done <- err }
	b.Run("ping", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c.Do(nil, "ping", pingCmd, cb)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	})
	sdp := []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
	b.Run("offer+delete", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			id := strconv.AppendInt([]byte("bench-"), int64(i), 10)
			buf = AppendDict(buf[:0])
			buf = AppendKeyStr(buf, "command", "offer")
			buf = AppendKeyString(buf, "call-id", id)
			buf = AppendKeyStr(buf, "from-tag", "a")
			buf = AppendKeyString(buf, "sdp", sdp)
			buf = AppendEnd(buf)
			c.Do(id, "offer", buf, cb)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			buf = AppendDict(buf[:0])
			buf = AppendKeyStr(buf, "command", "delete")
			buf = AppendKeyString(buf, "call-id", id)
			buf = AppendKeyStr(buf, "from-tag", "a")
			buf = AppendEnd(buf)
			c.Do(id, "delete", buf, cb)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	})
}

func freeUDPPort(tb testing.TB) int {
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}
