package transport

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Memory per idle connection. The clients run in a child process (this
// test binary again, TestIdleClientProcess), so that the server's process
// holds only its own side: 10 000 WebSocket connections need 10 000
// descriptors on each side, and the hard limit here is 20 000 per process.
// What is measured is Go memory (heap in use and goroutine stacks) after
// a GC, with n connections open and idle, less the same before them.

var idleMemBound = map[Proto]int{TCP: 8 << 10, TLS: 64 << 10, WS: 24 << 10, WSS: 64 << 10}

func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of connections")
	}
	pki := newPKI(t, "idle-ca")
	cf, kf, _ := pki.issue(t, "server", nil, false)
	for _, tc := range []struct {
		proto Proto
		n     int
	}{{TCP, 2000}, {TLS, 1000}, {WS, 10000}, {WSS, 1000}} {
		if raceEnabled {
			// The race detector makes the handshakes several times
			// slower; the bound is not checked under it anyway.
			tc.n /= 10
		}
		t.Run(tc.proto.String(), func(t *testing.T) {
			tr := startTransport(t, Config{
				Listeners:     []ListenerConfig{{Proto: tc.proto, Addr: "127.0.0.1:0"}},
				StreamLoops:   1,
				MaxConnsPerIP: tc.n + 10,
				TLSCertFile:   cf, TLSKeyFile: kf,
			}, newRecorder())
			before := goMemory()
			child := exec.Command(os.Args[0], "-test.run=^TestIdleClientProcess$", "-test.v")
			child.Env = append(os.Environ(), "SWB_IDLE_CLIENT="+tc.proto.String()+" "+tr.Listeners()[0].Local.String()+" "+strconv.Itoa(tc.n))
			stdin, _ := child.StdinPipe()
			stdout, _ := child.StdoutPipe()
			child.Stderr = os.Stderr
			start := time.Now()
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			defer child.Wait()
			defer stdin.Close()
			out := bufio.NewReader(stdout)
			for {
				line, err := out.ReadString('\n')
				if err != nil {
					t.Fatalf("client process: %v", err)
				}
				if strings.HasPrefix(line, "ready") {
					break
				}
			}
			waitFor(t, func() bool { return tr.Stats().ConnsOpen == int64(tc.n) }, strconv.Itoa(tc.n)+" connections")
			opened := time.Since(start)
			// Let readers reach their blocking Read.
			time.Sleep(200 * time.Millisecond)
			after := goMemory()
			per := int(after-before) / tc.n
			t.Logf("%s: %d idle connections opened in %v; Go memory %.1f MiB more: %d bytes per connection",
				tc.proto, tc.n, opened.Round(time.Millisecond), float64(after-before)/(1<<20), per)
			if bound := idleMemBound[tc.proto]; per > bound && !raceEnabled {
				t.Errorf("%d bytes per idle %s connection, bound %d", per, tc.proto, bound)
			}
			stdin.Close()
			io.Copy(io.Discard, out)
		})
	}
}

func goMemory() uint64 {
	var m runtime.MemStats
	for i := 0; i < 2; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// TestIdleClientProcess is the client half of TestIdleConnMemory: it opens
// n connections (upgraded, or with the TLS handshake done), prints "ready"
// and holds them until its stdin closes.
func TestIdleClientProcess(t *testing.T) {
	spec := strings.Fields(os.Getenv("SWB_IDLE_CLIENT"))
	if len(spec) != 3 {
		t.Skip("SWB_IDLE_CLIENT not set")
	}
	proto, _ := ParseProto(spec[0])
	addr := spec[1]
	n, _ := strconv.Atoi(spec[2])
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := idleClient(proto, addr)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

func idleClient(proto Proto, addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if proto == TLS || proto == WSS {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // a test's own server
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if !proto.WebSocket() {
		return c, nil
	}
	if _, err := c.Write([]byte(wsRequest("/", wsSIPProto))); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101 ") {
		return nil, fmt.Errorf("upgrade: %q %v", line, err)
	}
	for line != "\r\n" {
		if line, err = br.ReadString('\n'); err != nil {
			return nil, err
		}
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}
