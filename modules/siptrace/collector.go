package siptrace

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Collector sockets. The sender goroutine hands each collector a batch of
// packets at a time. A UDP collector sends the batch with one sendmmsg on
// a connected, non-blocking socket: a full socket buffer drops the rest of
// the batch, counted. A collector that is down answers with ICMP port
// unreachable, which the kernel reports as ECONNREFUSED on a later send:
// the collector then sends nothing for udpPause (its packets are counted
// as errors), so a dead collector costs one failed send a second and not
// one per message. A TCP collector (HEP over TCP: packets back to back,
// framed by their length field) has a writer goroutine of its own and a
// bounded buffer between: the sender appends the batch and moves on, so a
// TCP collector that is slow or gone never holds up the others. While it
// is not connected, or its buffer is full, packets for it are counted as
// errors and dropped; it is dialled again with a backoff.
const (
	udpPause        = time.Second
	tcpBuffer       = 1 << 20 // bytes waiting for one TCP collector
	tcpDialTimeout  = 3 * time.Second
	tcpWriteTimeout = 2 * time.Second
	tcpBackoffMin   = 200 * time.Millisecond
	tcpBackoffMax   = 10 * time.Second
)

// collectorAddr is one parsed collectors entry.
type collectorAddr struct {
	tcp  bool
	addr netip.AddrPort
}

// String is the normalised form, the collector label of the metrics.
func (c collectorAddr) String() string {
	if c.tcp {
		return "tcp:" + c.addr.String()
	}
	return "udp:" + c.addr.String()
}

// parseCollector reads "ip:port", "udp:ip:port" or "tcp:ip:port" (IPv6 in
// brackets).
func parseCollector(s string) (collectorAddr, error) {
	var c collectorAddr
	rest := s
	switch {
	case strings.HasPrefix(s, "udp:"):
		rest = s[4:]
	case strings.HasPrefix(s, "tcp:"):
		c.tcp, rest = true, s[4:]
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return c, errors.New("want ip:port, udp:ip:port or tcp:ip:port (an IP address, not a name)")
	}
	if ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return c, errors.New("needs a port and an address that is not 0.0.0.0 or ::")
	}
	c.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return c, nil
}

// collector is one open HEP destination.
type collector struct {
	collectorAddr
	name       string
	sent, errs atomic.Uint64
	failing    atomic.Bool // the last send failed (for one log line per outage)
	warn       func(msg string, args ...any)

	// UDP only; used by the sender goroutine alone.
	udp    *net.UDPConn
	raw    syscall.RawConn
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	pkts   int           // packets in hdrs for sendmmsgFD
	done   int           // of which sent
	errno  syscall.Errno // of the last sendmmsg
	sendFn func(fd uintptr) bool
	paused time.Time     // nothing is sent until then (after an error)
	calls  atomic.Uint64 // sendmmsg calls made (tests)

	// TCP only.
	mu      sync.Mutex
	up      bool
	pending []byte // under mu: packets waiting for the writer
	npend   int
	spare   []byte // the writer's: the buffer being written
	kick    chan struct{}
	stop    chan struct{}
	wdone   chan struct{}
}

// openCollector opens a's socket (UDP) or starts its writer (TCP).
func openCollector(a collectorAddr, warn func(string, ...any)) (*collector, error) {
	c := &collector{collectorAddr: a, name: a.String(), warn: warn}
	if !a.tcp {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a.addr))
		if err != nil {
			return nil, err
		}
		raw, err := conn.SyscallConn()
		if err != nil {
			conn.Close()
			return nil, err
		}
		c.udp, c.raw = conn, raw
		c.hdrs = make([]unix.Mmsghdr, batchMax)
		c.iovs = make([]unix.Iovec, batchMax)
		for i := range c.hdrs {
			c.hdrs[i].Hdr.Iov = &c.iovs[i]
			c.hdrs[i].Hdr.SetIovlen(1)
		}
		c.sendFn = c.sendmmsgFD // bound once: RawConn.Write allocates nothing then
		return c, nil
	}
	c.pending = make([]byte, 0, tcpBuffer)
	c.spare = make([]byte, 0, tcpBuffer)
	c.kick = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.wdone = make(chan struct{})
	go c.runTCP()
	return c, nil
}

// sendBatch hands the batch to the collector. Sender goroutine only; it
// never waits (a non-blocking sendmmsg, or an append for TCP). now is the
// sender's clock, read once per batch.
func (c *collector) sendBatch(b *batch, now time.Time) {
	if c.udp != nil {
		c.sendUDP(b, now)
		return
	}
	c.mu.Lock()
	n := 0
	if c.up {
		for ; n < b.len(); n++ {
			p := b.packet(n)
			if len(c.pending)+len(p) > cap(c.pending) {
				break
			}
			c.pending = append(c.pending, p...)
		}
		c.npend += n
	}
	c.mu.Unlock()
	if n < b.len() {
		c.errs.Add(uint64(b.len() - n))
	}
	if n > 0 {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// sendUDP sends the batch with sendmmsg, as many calls as it takes; an
// error other than a full buffer pauses the collector.
func (c *collector) sendUDP(b *batch, now time.Time) {
	n := b.len()
	if now.Before(c.paused) {
		c.errs.Add(uint64(n))
		return
	}
	for i := 0; i < n; i++ {
		p := b.packet(i)
		c.iovs[i].Base = &p[0]
		c.iovs[i].SetLen(len(p))
	}
	c.pkts, c.done = n, 0
	for c.done < c.pkts {
		c.errno = 0
		if err := c.raw.Write(c.sendFn); err != nil {
			c.errno = syscall.EBADF // closed by a reload
		}
		if c.errno == 0 {
			continue
		}
		// The packets not sent are lost, counted. A full socket buffer
		// passes; a refusal (the collector is down) or an unreachable
		// network pauses the collector.
		c.errs.Add(uint64(c.pkts - c.done))
		if c.errno != syscall.EAGAIN {
			c.paused = now.Add(udpPause)
			if !c.failing.Swap(true) {
				c.warn("siptrace: sending to a collector failed; its packets are dropped for a second at a time while it fails",
					"collector", c.name, "err", c.errno.Error())
			}
		}
		break
	}
	c.sent.Add(uint64(c.done))
	if c.done == c.pkts {
		c.failing.Store(false)
	}
	for i := 0; i < n; i++ {
		c.iovs[i].Base = nil // the batch's buffer is reused
	}
}

// sendmmsgFD is the RawConn.Write callback: one sendmmsg of the packets
// from c.done on. It returns true: the socket is non-blocking and a full
// buffer is an error, never a wait. A raw system call, as the transport's
// sends: it cannot block, and the scheduler's system-call path would hand
// the sender's P to another thread when a batch takes long (a collector
// on loopback costs its receive path too), a context switch per batch.
func (c *collector) sendmmsgFD(fd uintptr) bool {
	c.calls.Add(1)
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.hdrs[c.done])), uintptr(c.pkts-c.done), unix.MSG_DONTWAIT, 0, 0)
	switch {
	case e != 0:
		c.errno = e
	case r == 0:
		c.errno = syscall.EAGAIN
	default:
		c.done += int(r)
	}
	return true
}

// close releases the socket or stops the writer.
func (c *collector) close() {
	if c.udp != nil {
		c.udp.Close()
		return
	}
	close(c.stop)
	<-c.wdone
}

// runTCP dials, writes what is queued, and dials again after a failure.
func (c *collector) runTCP() {
	defer close(c.wdone)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.stop
		cancel()
	}()
	backoff := tcpBackoffMin
	d := net.Dialer{Timeout: tcpDialTimeout}
	for {
		conn, err := d.DialContext(ctx, "tcp", c.addr.String())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !c.failing.Swap(true) {
				c.warn("siptrace: cannot connect to a collector; packets for it are dropped until it answers",
					"collector", c.name, "err", err, "retry", backoff.String())
			}
			select {
			case <-c.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, tcpBackoffMax)
			continue
		}
		backoff = tcpBackoffMin
		c.failing.Store(false)
		c.setUp(true)
		err = c.writeLoop(conn)
		c.setUp(false)
		conn.Close()
		if err == nil {
			return // stopped
		}
		if !c.failing.Swap(true) {
			c.warn("siptrace: lost the connection to a collector", "collector", c.name, "err", err)
		}
	}
}

// setUp opens or closes the buffer to the sender; what is queued when the
// connection goes is lost, and counted.
func (c *collector) setUp(up bool) {
	c.mu.Lock()
	c.up = up
	if !up {
		c.errs.Add(uint64(c.npend))
		c.pending, c.npend = c.pending[:0], 0
	}
	c.mu.Unlock()
}

// errClosedByCollector: the collector closed the connection (it
// restarted, say); the writer dials again.
var errClosedByCollector = errors.New("connection closed by the collector")

// writeLoop writes queued packets until a write fails or the collector
// closes the connection (an error), or the module stops (nil). A collector
// sends nothing back: a reader waits for the end of the connection, so a
// restarted collector is dialled again at once, not at the next write.
func (c *collector) writeLoop(conn net.Conn) error {
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	for {
		stopping := false
		select {
		case <-c.stop:
			stopping = true // write what is queued, then return
		case <-c.kick:
		case <-gone:
			return errClosedByCollector
		}
		c.mu.Lock()
		buf, n := c.pending, c.npend
		c.pending, c.npend = c.spare[:0], 0
		c.mu.Unlock()
		c.spare = buf
		if len(buf) > 0 {
			conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
			if _, err := conn.Write(buf); err != nil {
				c.errs.Add(uint64(n))
				if stopping {
					return nil
				}
				return err
			}
			c.sent.Add(uint64(n))
		}
		if stopping {
			return nil
		}
	}
}

// collectorSet is the collectors in use, replaced whole on reload.
type collectorSet struct {
	list []*collector
}

// openCollectors opens the collectors of addrs, taking over the ones of
// old with the same address (their counters go on) and returning those of
// old no longer listed, for the caller to close.
func openCollectors(addrs []collectorAddr, old *collectorSet, warn func(string, ...any)) (*collectorSet, []*collector, error) {
	keep := map[string]*collector{}
	if old != nil {
		for _, c := range old.list {
			keep[c.name] = c
		}
	}
	set := &collectorSet{}
	var opened []*collector
	for i, a := range addrs {
		if c := keep[a.String()]; c != nil {
			delete(keep, a.String())
			set.list = append(set.list, c)
			continue
		}
		c, err := openCollector(a, warn)
		if err != nil {
			for _, o := range opened {
				o.close()
			}
			return nil, nil, errors.New("collectors[" + strconv.Itoa(i) + "] " + a.String() + ": " + err.Error())
		}
		opened = append(opened, c)
		set.list = append(set.list, c)
	}
	var gone []*collector
	for _, c := range keep {
		gone = append(gone, c)
	}
	return set, gone, nil
}
