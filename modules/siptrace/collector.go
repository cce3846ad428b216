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
	"time"
)

// Collector sockets. A UDP collector gets one datagram per packet from the
// sender goroutine on a connected socket: a collector that is down
// answers with ICMP port unreachable, which the kernel reports as
// ECONNREFUSED on a later send; it is counted and nothing waits. A TCP
// collector (HEP over TCP: packets back to back, framed by their length
// field) has a writer goroutine of its own and a bounded buffer between:
// the sender goroutine appends to it and moves on, so a TCP collector that
// is slow or gone never holds up the others. While it is not connected,
// or its buffer is full, packets for it are counted as errors and
// dropped; it is dialled again with a backoff.
const (
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

	udp *net.UDPConn

	// TCP only.
	mu      sync.Mutex
	up      bool
	pending []byte // under mu: packets waiting for the writer
	npend   int
	spare   []byte // the writer's: the buffer being written
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// openCollector opens a's socket (UDP) or starts its writer (TCP).
func openCollector(a collectorAddr, warn func(string, ...any)) (*collector, error) {
	c := &collector{collectorAddr: a, name: a.String(), warn: warn}
	if !a.tcp {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a.addr))
		if err != nil {
			return nil, err
		}
		c.udp = conn
		return c, nil
	}
	c.pending = make([]byte, 0, tcpBuffer)
	c.spare = make([]byte, 0, tcpBuffer)
	c.kick = make(chan struct{}, 1)
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	go c.runTCP()
	return c, nil
}

// send hands one HEP packet to the collector. Sender goroutine only; it
// never blocks for long (a UDP send, or an append for TCP).
func (c *collector) send(pkt []byte) {
	if c.udp != nil {
		if _, err := c.udp.Write(pkt); err != nil {
			c.errs.Add(1)
			if !c.failing.Swap(true) {
				c.warn("siptrace: sending to a collector failed", "collector", c.name, "err", err)
			}
			return
		}
		c.sent.Add(1)
		c.failing.Store(false)
		return
	}
	c.mu.Lock()
	if !c.up || len(c.pending)+len(pkt) > cap(c.pending) {
		c.mu.Unlock()
		c.errs.Add(1)
		return
	}
	c.pending = append(c.pending, pkt...)
	c.npend++
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// close releases the socket or stops the writer.
func (c *collector) close() {
	if c.udp != nil {
		c.udp.Close()
		return
	}
	close(c.stop)
	<-c.done
}

// runTCP dials, writes what is queued, and dials again after a failure.
func (c *collector) runTCP() {
	defer close(c.done)
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
