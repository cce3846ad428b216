package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UDP echo floor: the least CPU a process can spend to receive and send
// datagrams, with blocking recvfrom and sendto on one socket and nothing
// else. The echo's CPU per datagram is its CPU time over the datagrams it
// received plus those it sent; a proxy relaying one call of the benchmark
// handles datagramsPerCall datagrams, so the floor per call is the echo's
// cost per datagram times that number.
//
// The echo makes its system calls raw, as a C program would: exactly one
// recvfrom and one sendto per datagram, on a locked thread that blocks in
// recvfrom. Through Go's syscall package each wake-up after an idle moment
// also woke two more threads (the runtime's monitor, out of its deep sleep,
// and one the blocked call's P was handed to): about 4 futex calls, a
// nanosleep and 4 context switches per wake-up besides the recvfrom, which
// made the floor 1.7 times as high at 500 calls/s with work no relay has
// to do.
//
// A second echo, -poller, reads the way transport/udp.go does: a
// non-blocking socket in Go's network poller, raw recvfrom until EAGAIN,
// then park. Its cost over the floor is what a Go server pays for parking
// in the poller rather than blocking in the kernel.

// datagramsPerCall counts what a stateful relay with Record-Route handles for
// one call of the benchmark: INVITE, 180, 200, ACK, BYE and its 200 each
// received from one side and sent to the other (12), plus the 100 Trying it
// sends.
const datagramsPerCall = 13

// echoServer answers every datagram with its own bytes, until killed.
func echoServer(args []string) int {
	fs := flag.NewFlagSet("echo-server", flag.ExitOnError)
	port := fs.Int("port", 0, "UDP port on 127.0.0.1")
	poller := fs.Bool("poller", false, "read through Go's network poller as the proxy's transport does, instead of blocking in recvfrom")
	fs.Parse(args)
	if *poller {
		return echoPoller(*port)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-server:", err)
		return 1
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: *port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fmt.Fprintln(os.Stderr, "echo-server:", err)
		return 1
	}
	// The raw system calls do not tell the runtime that the thread blocks:
	// the goroutine keeps its P and its thread while it waits, so nothing
	// wakes another thread. runEcho starts this process with asynchronous
	// preemption off, so that the runtime's monitor does not signal the
	// thread every 10 ms for running that long; nothing here allocates, so
	// no collection waits for it.
	runtime.LockOSThread()
	buf := make([]byte, 65536)
	var from unix.RawSockaddrInet4
	for {
		n, fromLen, errno := rawRecvfrom(uintptr(fd), buf, 0, &from)
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "echo-server: recvfrom:", errno)
			return 1
		}
		rawSendto(uintptr(fd), buf[:n], &from, fromLen)
	}
}

// echoPoller is the echo through Go's network poller: the socket
// non-blocking, raw recvfrom inside one RawConn.Read until EAGAIN, then
// parked until the poller finds it readable.
func echoPoller(port int) int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-server:", err)
		return 1
	}
	c.SetReadBuffer(4 << 20)
	rc, err := c.SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-server:", err)
		return 1
	}
	buf := make([]byte, 65536)
	var from unix.RawSockaddrInet4
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, fromLen, errno := rawRecvfrom(fd, buf, unix.MSG_DONTWAIT, &from)
			switch errno {
			case 0:
				rawSendto(fd, buf[:n], &from, fromLen)
			case unix.EINTR:
			default: // EAGAIN: park until readable
				return false
			}
		}
	})
	fmt.Fprintln(os.Stderr, "echo-server:", err)
	return 1
}

func rawRecvfrom(fd uintptr, buf []byte, flags int, from *unix.RawSockaddrInet4) (int, uint32, syscall.Errno) {
	fromLen := uint32(unsafe.Sizeof(*from))
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(flags),
		uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(&fromLen)))
	return int(n), fromLen, errno
}

func rawSendto(fd uintptr, b []byte, to *unix.RawSockaddrInet4, toLen uint32) {
	unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(to)), uintptr(toLen))
}

// echoClient sends count datagrams of size bytes at rate per second to the
// echo server and counts the answers. It prints "sent N received M".
func echoClient(args []string) int {
	fs := flag.NewFlagSet("echo-client", flag.ExitOnError)
	port := fs.Int("port", 0, "echo server UDP port on 127.0.0.1")
	rate := fs.Int("rate", 10000, "datagrams per second")
	count := fs.Int("count", 50000, "datagrams to send")
	size := fs.Int("size", 600, "datagram size in bytes (a typical SIP message)")
	fs.Parse(args)
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: *port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-client:", err)
		return 1
	}
	c.SetReadBuffer(4 << 20)
	var received atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	msg := make([]byte, *size)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	// Send in 1 ms slices, as sipp paces its calls.
	start := time.Now()
	sent := 0
	for sent < *count {
		due := int(time.Since(start).Seconds() * float64(*rate))
		if due > *count {
			due = *count
		}
		for ; sent < due; sent++ {
			c.Write(msg)
		}
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(2 * time.Second)
	for received.Load() < int64(sent) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("sent " + strconv.Itoa(sent) + " received " + strconv.FormatInt(received.Load(), 10))
	return 0
}

// echoResult is the floor measured at one datagram rate.
type echoResult struct {
	Poller    bool // the echo through Go's network poller (echoPoller), not the floor
	Rate      int  // datagrams per second sent to the echo (it handles twice as many)
	Calls     int  // the call rate whose datagram rate this matches
	Sent      int
	Received  int
	CPU       time.Duration // echo server CPU
	ClientCPU time.Duration
	Wall      time.Duration
	// The echo server's context switches and system calls over the same
	// window as CPU (SyscallsOK false when not counted).
	CtxSwitches int64
	Syscalls    int64
	SyscallsOK  bool
}

// perDatagram is the echo's CPU per datagram handled (received or sent).
func (e echoResult) perDatagram() time.Duration {
	if e.Received == 0 {
		return 0
	}
	return e.CPU / time.Duration(2*e.Received)
}

// syscallsPerDatagram is the echo's system calls per datagram handled: one
// recvfrom or sendto each, plus what the Go runtime adds. 0 when not
// counted.
func (e echoResult) syscallsPerDatagram() float64 {
	if e.Received == 0 || !e.SyscallsOK {
		return 0
	}
	return float64(e.Syscalls) / float64(2*e.Received)
}

// ctxPerDatagram is the echo's context switches per datagram handled.
func (e echoResult) ctxPerDatagram() float64 {
	if e.Received == 0 {
		return 0
	}
	return float64(e.CtxSwitches) / float64(2*e.Received)
}

// runEcho measures the echo server at rate datagrams per second for d.
func (b *bench) runEcho(rate int, d time.Duration, poller bool) (echoResult, error) {
	r := echoResult{Rate: rate, Poller: poller}
	port, err := b.freePort()
	if err != nil {
		return r, err
	}
	self, _ := os.Executable()
	srv, err := b.procs.start("echo-server", b.proxyCPU, b.work+"/echo-server.log",
		"env", "GODEBUG=asyncpreemptoff=1", self, "echo-server", "-poller="+strconv.FormatBool(poller), "-port", strconv.Itoa(port))
	if err != nil {
		return r, err
	}
	defer srv.stop(syscall.SIGKILL, time.Second)
	if !waitUDPBound(port, 5*time.Second) {
		return r, fmt.Errorf("echo server did not bind: %s", srv.logTail(5))
	}
	count := int(float64(rate) * d.Seconds())
	sys := b.countSyscalls([]int{srv.pid()})
	ctx0 := treeCtxSwitches(srv.pid())
	before := treeCPU(srv.pid())
	t0 := time.Now()
	out := b.work + fmt.Sprintf("/echo-client-%d.log", rate)
	cl, err := b.procs.start("echo-client", b.loadCPU, out, self, "echo-client", "-port", strconv.Itoa(port),
		"-rate", strconv.Itoa(rate), "-count", strconv.Itoa(count))
	if err != nil {
		b.stopSyscalls(sys)
		return r, err
	}
	if !cl.wait(d + 30*time.Second) {
		b.stopSyscalls(sys)
		cl.stop(syscall.SIGKILL, time.Second)
		return r, fmt.Errorf("echo client did not finish")
	}
	r.Wall = time.Since(t0)
	r.CPU = treeCPU(srv.pid()) - before
	r.CtxSwitches = treeCtxSwitches(srv.pid()) - ctx0
	r.Syscalls, r.SyscallsOK = b.stopSyscalls(sys)
	r.ClientCPU = cl.cpuTime()
	if _, err := fmt.Sscanf(cl.logTail(1), "sent %d received %d", &r.Sent, &r.Received); err != nil {
		return r, fmt.Errorf("echo client: %q", cl.logTail(3))
	}
	return r, nil
}
