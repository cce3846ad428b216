package transport

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// What a peer that floods a stream with keep-alive bytes, and reads
// nothing, costs the server.

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// onLoop runs f on the event loop of the only TCP connection of tr.
func onLoop(t *testing.T, tr *Transport, f func(gnet.Conn) int) int {
	t.Helper()
	conns := tr.streams.table.snapshot(nil)
	if len(conns) != 1 {
		t.Fatalf("%d connections in the table, want 1", len(conns))
	}
	sc := conns[0]
	sc.mu.Lock()
	gc := sc.gc
	sc.mu.Unlock()
	ch := make(chan int, 1)
	if err := gc.Wake(func(gc gnet.Conn, _ error) error { ch <- f(gc); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("the event loop did not answer")
	}
	return 0
}

// writeFor writes chunk to c until total bytes went or the write blocks
// for 10 s; it returns the bytes written.
func writeFor(c net.Conn, chunk []byte, total int) int {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sent := 0
	for sent < total {
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	return sent
}

// TestTCPStrayLineFeeds: bare LFs (no CRLFCRLF ping, no message) are
// dropped as they come: 16 MB of them leave nothing in the connection's
// buffer, and the message after them is read.
func TestTCPStrayLineFeeds(t *testing.T) {
	rec := newRecorder()
	tr := startTransport(t, tcpConfig(func(c *Config) { c.MaxMessageSize = 4096 }), rec)
	c := dialTCP(t, tr.Listeners()[0].Local)
	sent := writeFor(c, bytes.Repeat([]byte("\n"), 64<<10), 16<<20)
	if sent < 16<<20 {
		t.Fatalf("the server stopped reading after %d bytes of LFs", sent)
	}
	time.Sleep(100 * time.Millisecond)
	if held := onLoop(t, tr, func(gc gnet.Conn) int { return gc.InboundBuffered() }); held > 4096 {
		t.Fatalf("the connection's buffer holds %d bytes after %d MB of LFs (MaxMessageSize 4096)", held, sent>>20)
	}
	c.Write([]byte(sipMsg("OPTIONS", "")))
	rec.wait(t, 1)
}

// TestTCPPingFloodNotRead: a peer that sends CRLFCRLF pings and reads no
// pong holds at most WriteQueueBytes in gnet's buffer, not a pong for
// every ping.
func TestTCPPingFloodNotRead(t *testing.T) {
	tr := startTransport(t, tcpConfig(func(c *Config) { c.WriteQueueBytes = 64 << 10 }), newRecorder())
	c := dialTCP(t, tr.Listeners()[0].Local)
	c.SetReadBuffer(4096)
	before := heapInUse()
	sent := writeFor(c, bytes.Repeat([]byte("\r\n\r\n"), 16<<10), 24<<20)
	if tr.streams.table.count() == 1 {
		if out := onLoop(t, tr, func(gc gnet.Conn) int { return gc.OutboundBuffered() }); out > 64<<10 {
			t.Errorf("after %d MB of pings not read, gnet holds %d bytes of pongs (WriteQueueBytes 64 KiB)", sent>>20, out)
		}
	}
	if grew := int64(heapInUse()) - int64(before); grew > 8<<20 {
		t.Errorf("the heap grew %d MB for pings not read", grew>>20)
	}
}

// TestWSPingFloodNotRead: WebSocket pings from a peer that reads nothing
// leave one pong in the queue (the latest ping's), not one per ping in a
// 2 KiB buffer each.
func TestWSPingFloodNotRead(t *testing.T) {
	tr := startTransport(t, wsConfig(func(c *Config) { c.WriteQueueBytes = 64 << 10 }), newRecorder())
	c := dialWS(t, tr.Listeners()[0].Local)
	c.(*net.TCPConn).SetReadBuffer(4096)
	before := heapInUse()
	// Empty pings: 30,000 pongs are 60,000 bytes, under the bound by
	// their length.
	burst := bytes.Repeat(clientFrame(wsOpPing, true, true, nil), 30000)
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if grew := int64(heapInUse()) - int64(before); grew > 4<<20 {
		t.Errorf("the server holds %d MB more after 30,000 pings not read (WriteQueueBytes 64 KiB)", grew>>20)
	}
}

// TestTLSPingFloodNotRead: the same for CRLFCRLF pings over TLS.
func TestTLSPingFloodNotRead(t *testing.T) {
	pki := newPKI(t, "ca")
	tr, _ := startTLS(t, pki, newRecorder(), func(c *Config) { c.WriteQueueBytes = 64 << 10 })
	nc, err := net.Dial("tcp", tr.Listeners()[0].Local.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	c := tls.Client(nc, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	if _, err := c.Write(bytes.Repeat([]byte("\r\n\r\n"), 30000)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if grew := int64(heapInUse()) - int64(before); grew > 4<<20 {
		t.Errorf("the server holds %d MB more after 30,000 pings not read (WriteQueueBytes 64 KiB)", grew>>20)
	}
}

// TestWSPongAnswersLatestPing: pings that arrive while a pong waits in
// the queue replace its payload: the peer gets the latest ping's.
func TestWSPongAnswersLatestPing(t *testing.T) {
	tr := startTransport(t, wsConfig(nil), newRecorder())
	c := dialWS(t, tr.Listeners()[0].Local)
	var burst []byte
	for i := 0; i < 2000; i++ {
		burst = append(burst, clientFrame(wsOpPing, true, true, []byte{byte(i >> 8), byte(i)})...)
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	last := -1
	for last != 1999 {
		op, p := readFrame(t, c)
		if op != wsOpPong || len(p) != 2 {
			t.Fatalf("frame %x %q, want a pong with a ping's payload", op, p)
		}
		n := int(p[0])<<8 | int(p[1])
		if n <= last {
			t.Fatalf("pong for ping %d after the pong for ping %d", n, last)
		}
		last = n
	}
}

// TestMessageTimeout: a peer that begins a message and drips the rest a
// few bytes at a time, never idle, is closed MessageTimeout after it
// began (over TCP, TLS and WebSocket: a frame begun, or a fragmented
// message not ended); one that sends whole messages as slowly is not.
func TestMessageTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	msg := []byte(sipMsg("OPTIONS", strings.Repeat("x", 200)))
	pki := newPKI(t, "ca")
	for _, c := range []struct {
		name  string
		start func(*testing.T) (*Transport, net.Conn)
		drip  [][]byte // written one every 100 ms, round and round
	}{
		{"tcp", func(t *testing.T) (*Transport, net.Conn) {
			tr := startTransport(t, tcpConfig(func(c *Config) { c.MessageTimeout = timeout }), newRecorder())
			return tr, dialTCP(t, tr.Listeners()[0].Local)
		}, splitEvery(msg, 4)},
		{"tls", func(t *testing.T) (*Transport, net.Conn) {
			tr, _ := startTLS(t, pki, newRecorder(), func(c *Config) { c.MessageTimeout = timeout })
			nc, err := tls.Dial("tcp", tr.Listeners()[0].Local.String(), &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			return tr, nc
		}, splitEvery(msg, 4)},
		{"ws frame", func(t *testing.T) (*Transport, net.Conn) {
			tr := startTransport(t, wsConfig(func(c *Config) { c.MessageTimeout = timeout }), newRecorder())
			return tr, dialWS(t, tr.Listeners()[0].Local)
		}, splitEvery(maskedText(string(msg)), 4)},
		{"ws fragments", func(t *testing.T) (*Transport, net.Conn) {
			tr := startTransport(t, wsConfig(func(c *Config) { c.MessageTimeout = timeout }), newRecorder())
			return tr, dialWS(t, tr.Listeners()[0].Local)
		}, append([][]byte{clientFrame(wsOpText, false, true, msg[:4])}, fragments(msg[4:], 4)...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, conn := c.start(t)
			closed := make(chan struct{})
			go func() {
				io.Copy(io.Discard, conn)
				close(closed)
			}()
			began := time.Now()
			for i := 0; ; i++ {
				select {
				case <-closed:
					if d := time.Since(began); d < timeout || d > timeout+2*time.Second {
						t.Fatalf("closed after %s, MessageTimeout %s", d, timeout)
					}
					if st := tr.Stats(); st.ConnsSlow != 1 || st.ConnsIdle != 0 {
						t.Fatalf("ConnsSlow %d, ConnsIdle %d", st.ConnsSlow, st.ConnsIdle)
					}
					return
				case <-time.After(100 * time.Millisecond):
				}
				if i >= len(c.drip) {
					t.Fatalf("the message was sent whole (%d pieces) and the connection is open", len(c.drip))
				}
				conn.Write(c.drip[i])
			}
		})
	}
	t.Run("whole messages", func(t *testing.T) {
		rec := newRecorder()
		tr := startTransport(t, tcpConfig(func(c *Config) { c.MessageTimeout = timeout }), rec)
		conn := dialTCP(t, tr.Listeners()[0].Local)
		for i := 0; i < 8; i++ {
			conn.Write(msg)
			time.Sleep(100 * time.Millisecond)
		}
		rec.wait(t, 8)
		if st := tr.Stats(); st.ConnsSlow != 0 || tr.streams.table.count() != 1 {
			t.Fatalf("ConnsSlow %d, %d connections", st.ConnsSlow, tr.streams.table.count())
		}
	})
}

// splitEvery cuts b into pieces of n bytes.
func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// fragments sends b as continuation frames of n bytes, the last with FIN.
func fragments(b []byte, n int) [][]byte {
	var out [][]byte
	for _, p := range splitEvery(b, n) {
		out = append(out, clientFrame(wsOpContinuation, false, true, p))
	}
	last := out[len(out)-1]
	last[0] |= 0x80
	return out
}
