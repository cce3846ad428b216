package transport

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkSendPair measures what sending the two datagrams an initial
// INVITE produces (the 100 Trying to the caller, the relayed INVITE to the
// callee) costs as two sendto calls against one sendmmsg of both: the
// saving sendmmsg could bring per relayed call. Both receivers are drained
// every 32 pairs by the same code in both cases, so the difference is the
// send side's. Besides wall time it reports the thread's CPU time per pair
// (cpu-ns/op, getrusage of the locked thread), which other processes
// preempting the benchmark do not inflate. It is what bench/results/breakdown.md weighs against the CPU
// of a whole call.
func BenchmarkSendPair(b *testing.B) {
	src, _, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), 4<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(src)
	var dsts [2]netip.AddrPort
	var rfds [2]int
	for i := range rfds {
		fd, ap, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), 4<<20)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		rfds[i], dsts[i] = fd, ap
	}
	msgs := [2][]byte{benchMsg[:300], benchMsg}
	var names [2]unix.RawSockaddrInet6
	var lens [2]uint32
	for i := range dsts {
		lens[i] = putSockaddr(&names[i], dsts[i], false)
	}
	drains := [2]*udpReader{newUDPReader(rfds[0], 64, 2048), newUDPReader(rfds[1], 64, 2048)}
	drain := func() {
		for _, r := range drains {
			for {
				if n, e := r.recv(); e != 0 || n == 0 {
					break
				}
			}
		}
	}
	sendto := func(i int) {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(src), uintptr(unsafe.Pointer(&msgs[i][0])), uintptr(len(msgs[i])),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&names[i])), uintptr(lens[i]))
		if e != 0 {
			b.Fatal(e)
		}
	}
	var hdrs [2]unix.Mmsghdr
	var iovs [2]unix.Iovec
	for i := range hdrs {
		iovs[i].Base = &msgs[i][0]
		iovs[i].SetLen(len(msgs[i]))
		h := &hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&names[i]))
		h.Namelen = lens[i]
		h.Iov = &iovs[i]
		h.SetIovlen(1)
	}
	b.Run("sendto", func(b *testing.B) {
		defer threadCPU(b)()
		for i := 0; i < b.N; i++ {
			sendto(0)
			sendto(1)
			if i%32 == 31 {
				drain()
			}
		}
		drain()
	})
	b.Run("sendmmsg", func(b *testing.B) {
		defer threadCPU(b)()
		for i := 0; i < b.N; i++ {
			n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(src), uintptr(unsafe.Pointer(&hdrs[0])), 2, unix.MSG_DONTWAIT, 0, 0)
			if e != 0 || n != 2 {
				b.Fatal(n, e)
			}
			if i%32 == 31 {
				drain()
			}
		}
		drain()
	})
}

// threadCPU locks the benchmark to its thread and returns the function that
// reports the thread's CPU time per op and unlocks it.
func threadCPU(b *testing.B) func() {
	runtime.LockOSThread()
	var r0 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &r0)
	return func() {
		var r1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &r1)
		runtime.UnlockOSThread()
		cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
