package transport

import (
	"errors"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP is served without gnet: one SO_REUSEPORT socket per reader, each read
// by a goroutine that calls recvmmsg on a non-blocking socket and parks in
// Go's network poller when the socket is empty. gnet v2.9 allocates a conn,
// a sockaddr and a net.UDPAddr per datagram; this loop allocates nothing
// (see README.md for the figures).
//
// Why the poller and not a thread blocked in recvmmsg: a goroutine blocked
// in a system call keeps the scheduler's monitor thread polling every 20 µs
// to hand its P to another thread, and every datagram then wakes a second
// thread and moves the P back. Parked in the poller, the reader is woken by
// the thread that was idle in epoll_wait and runs on it: one wake-up per
// batch, no hand-off (at 500 calls/s this halved the proxy's CPU per call).

type udpSocket struct {
	fd int
	// file registers fd with the network poller; its Close wakes the
	// reader parked on it. Nil for sockets used only to send.
	file *os.File
	l    *Listener
	v6   bool
	// inflight counts sends inside sendto, so that Close does not close
	// the descriptor under them (and a reused descriptor number never gets
	// a stray datagram).
	inflight atomic.Int64
}

// openUDP binds one UDP socket with SO_REUSEPORT so that several sockets
// (one per reader) share the address and port.
func openUDP(ap netip.AddrPort, sockBuf int) (int, netip.AddrPort, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	} else {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return -1, ap, err
	}
	fail := func(err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, ap, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail(err)
	}
	if family == unix.AF_INET6 {
		// One listener, one family: a v6 listener does not also take v4,
		// so the source address of a send is always the listener's.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail(err)
		}
	}
	if sockBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
	}
	if err := unix.Bind(fd, sockaddrOf(ap)); err != nil {
		return fail(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	return fd, addrPortOf(sa), nil
}

// udpReader owns the buffers of one recvmmsg loop.
type udpReader struct {
	fd    int
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  []byte
	size  int
}

func newUDPReader(fd, batch, size int) *udpReader {
	r := &udpReader{
		fd:    fd,
		hdrs:  make([]unix.Mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		bufs:  make([]byte, batch*size),
		size:  size,
	}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i*size]
		r.iovs[i].SetLen(size)
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	return r
}

// recv returns how many slots were filled, or EAGAIN when the
// (non-blocking) socket is empty. It is a raw system call: it cannot block,
// and entering the scheduler's system-call path on every datagram would
// wake its monitor thread each time (which then polls every 20 µs for a
// while).
func (r *udpReader) recv() (int, syscall.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(r.fd),
		uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
		unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// recvWait is recv on a blocking socket: it waits for the first datagram
// (or the socket's receive timeout). Used by test clients.
func (r *udpReader) recvWait() (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd),
		uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
		unix.MSG_WAITFORONE, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// datagram returns slot i and re-arms it for the next call.
func (r *udpReader) datagram(i int) (data []byte, src netip.AddrPort, truncated bool) {
	h := &r.hdrs[i]
	n := int(h.Len)
	off := i * r.size
	data = r.bufs[off : off+n : off+n]
	src = getSockaddr(&r.names[i])
	truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0
	h.Hdr.Namelen = unix.SizeofSockaddrInet6
	h.Hdr.Flags = 0
	return
}

func (t *Transport) runUDPReader(s *udpSocket, stripe int) {
	defer t.wg.Done()
	rc, err := s.file.SyscallConn()
	if err != nil {
		t.stats.errors.Add(1)
		return
	}
	r := newUDPReader(s.fd, t.cfg.UDPBatch, t.udpBufSize)
	p := &Packet{Listener: s.l, Proto: UDP}
	h := t.handler
	admit := t.cfg.Admit
	drops := &t.stats.stripes[stripe&(statStripes-1)].admitDrops

	// Batches are served inside the callback of a single RawConn.Read: the
	// callback returns false to park, and the poller calls it again when the
	// socket is readable. Read clears the descriptor's readiness on entry,
	// so leaving it after each batch and entering it again would drop the
	// readiness of a datagram that arrived while the handler ran, and that
	// datagram would wait for the next one.
	//
	// Because the readiness is kept, a batch shorter than the array (the
	// socket was empty when the kernel returned it) parks at once instead of
	// paying a recvmmsg for a sure EAGAIN: a datagram that arrived since then
	// has marked the descriptor ready, so the park returns at once.
	errs := 0 // consecutive failed recvmmsg calls
	serve := func(uintptr) bool {
		for {
			if t.closing.Load() {
				return true
			}
			n, errno := r.recv()
			switch errno {
			case 0:
				errs = 0
			case unix.EAGAIN:
				return false
			case unix.EINTR:
				continue
			default:
				// Retry a transient error (ENOMEM) a few times, then park
				// rather than spin on one that persists.
				t.stats.errors.Add(1)
				if errs++; errs >= 8 {
					errs = 0
					return false
				}
				continue
			}
			for i := 0; i < n; i++ {
				data, src, trunc := r.datagram(i)
				// A refused source (a ban) costs this call and a
				// counter on the reader's own stripe: no parse, no
				// allocation, no answer.
				if admit != nil && !admit(src.Addr()) {
					drops.Add(1)
					continue
				}
				if trunc || len(data) > t.cfg.MaxMessageSize {
					t.stats.dropsIn.Add(1)
					continue
				}
				t.stats.in(stripe, UDP, len(data))
				p.Data = data
				p.Src = src
				p.Conn = 0
				h.HandleMessage(p)
			}
			p.Data = nil
			if n < len(r.hdrs) {
				return false
			}
		}
	}
	// Read returns when Close has begun: nil if the loop saw closing,
	// an error if closing the file woke the parked reader.
	_ = rc.Read(serve)
}

// Errors returned by Send.
var (
	ErrClosed        = errors.New("transport: closed")
	ErrNoListener    = errors.New("transport: no listener for this protocol and address family")
	ErrAddressFamily = errors.New("transport: destination address family differs from the listener's")
	ErrInvalidAddr   = errors.New("transport: invalid destination address")
	ErrTooLarge      = errors.New("transport: message larger than the maximum size")
	ErrWouldBlock    = errors.New("transport: socket send buffer full, datagram dropped")
	ErrQueueFull     = errors.New("transport: connection write queue full")
	ErrNoConn        = errors.New("transport: no such connection")
)

// sendUDP sends one datagram from the listener's socket. It never blocks:
// a full socket buffer drops the datagram (SIP over UDP retransmits).
func (t *Transport) sendUDP(l *Listener, dst netip.AddrPort, data []byte) error {
	if len(data) > maxUDPDatagram || len(data) == 0 {
		if len(data) == 0 {
			return nil
		}
		return ErrTooLarge
	}
	if !dst.IsValid() || dst.Port() == 0 {
		return ErrInvalidAddr
	}
	s := l.udp[0]
	dstV6 := dst.Addr().Is6() && !dst.Addr().Is4In6()
	if dstV6 != s.v6 {
		return ErrAddressFamily
	}
	var rsa unix.RawSockaddrInet6
	salen := putSockaddr(&rsa, dst, s.v6)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if t.closing.Load() {
		return ErrClosed
	}
	for {
		// Raw: MSG_DONTWAIT never blocks (see udpReader.recv).
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd),
			uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&rsa)), uintptr(salen))
		switch e {
		case 0:
			t.stats.out(int(dst.Port()), UDP, len(data))
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			t.stats.sendDrops.Add(1)
			return ErrWouldBlock
		default:
			t.stats.errors.Add(1)
			return e
		}
	}
}
