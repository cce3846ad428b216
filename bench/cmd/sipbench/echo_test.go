package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"switchboard/transport/porttest"
)

// TestMain lets the test binary be the echo server of TestEchoServers, as
// sipbench re-executes itself for it.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "echo-server" {
		os.Exit(echoServer(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestEchoServers: both echoes, the blocking floor and the one through Go's
// poller, send every datagram back to its sender unchanged, from bursts as
// the echo client sends them.
func TestEchoServers(t *testing.T) {
	for _, poller := range []bool{false, true} {
		t.Run(echoName(poller), func(t *testing.T) {
			port, err := porttest.Free("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("env", "GODEBUG=asyncpreemptoff=1", os.Args[0], "echo-server",
				"-poller="+strconv.FormatBool(poller), "-port", strconv.Itoa(port))
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			if !waitUDPBound(port, 5*time.Second) {
				t.Fatal("echo server did not bind")
			}
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 2048)
			for burst := 0; burst < 20; burst++ {
				var sent [][]byte
				for i := 0; i < 10; i++ {
					msg := []byte(fmt.Sprintf("burst %d datagram %d %s", burst, i, bytes.Repeat([]byte{'x'}, burst*50)))
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					sent = append(sent, msg)
				}
				for _, want := range sent {
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, err := c.Read(buf)
					if err != nil {
						t.Fatalf("burst %d: %v", burst, err)
					}
					if !bytes.Equal(buf[:n], want) {
						t.Fatalf("echoed %q, want %q", buf[:n], want)
					}
				}
			}
		})
	}
}
