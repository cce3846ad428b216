package main

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2ERestartAfterCrashWithTimeWait: the server closes its TCP clients'
// connections itself (idle timeout), so they wait in TIME-WAIT on the SIP
// port; it then crashes (SIGKILL) and is started again at once, as a
// service manager would: it must bind the port and serve.
func TestE2ERestartAfterCrashWithTimeWait(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "limits:\n  idle_timeout: 1s\n")
	addr := "127.0.0.1:" + strconv.Itoa(srv.Port)
	options := request("OPTIONS", "sip:"+addr, "To: <sip:"+addr+">\r\nMax-Forwards: 70\r\n")
	options = strings.ReplaceAll(strings.ReplaceAll(options, "SIP/2.0/UDP", "SIP/2.0/TCP"), "LOCALPORT", "5060")
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(options)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The idle timeout closes them from the server's side; the clients
	// then close theirs.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server did not close an idle connection")
				}
				break
			}
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for tcpTimeWait(t, srv.Port) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no TIME-WAIT socket on the SIP port: the test would prove nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv.cmd.Process.Signal(syscall.SIGKILL)
	<-srv.exited
	srv.start() // fails the test if the server does not come up
	reply := sendUDP(t, srv.Port, request("OPTIONS", "sip:"+addr, "To: <sip:"+addr+">\r\nMax-Forwards: 70\r\n"), 3*time.Second)
	if !strings.HasPrefix(reply, "SIP/2.0 200 ") {
		t.Fatalf("OPTIONS after the restart: %q", statusLine(reply))
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("TCP after the restart: %v", err)
	}
	c.Close()
}

// tcpTimeWait counts IPv4 TCP sockets in TIME-WAIT on local port port.
func tcpTimeWait(t *testing.T, port int) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp:", err)
	}
	defer f.Close()
	want := ":" + strings.ToUpper(strconv.FormatUint(uint64(port)|1<<16, 16)[1:])
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st ...; TIME-WAIT is state 06.
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "06" {
			n++
		}
	}
	return n
}
