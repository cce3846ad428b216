package transport

import (
	"net"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// tcpEvents is the gnet event handler for every TCP connection, accepted
// or dialed. Its callbacks run on gnet's event loops.
type tcpEvents struct {
	gnet.BuiltinEventEngine
	s      *streams
	eng    gnet.Engine
	ready  chan gnet.Engine
	booted bool
}

func (s *streams) startTCP() error {
	ev := &tcpEvents{s: s, ready: make(chan gnet.Engine, 1)}
	s.engDone = make(chan error, 1)
	cfg := &s.t.cfg
	go func() {
		s.engDone <- gnet.Rotate(ev, s.tcpAddrs,
			gnet.WithNumEventLoop(cfg.StreamLoops),
			// Register (outbound connections) is racy with RoundRobin.
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithReusePort(cfg.StreamReusePort),
			// Connections this server closed sit in TIME-WAIT on the
			// SIP port for a minute; without SO_REUSEADDR on the
			// listener (which they inherit) a restart cannot bind it.
			// Go's net.Listen (TLS, and the check in bindStreams) sets
			// it already.
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(quietLogger{}),
			gnet.WithTicker(true),
		)
	}()
	select {
	case eng := <-ev.ready:
		s.eng = eng
		s.engRunning.Store(true)
		return nil
	case err := <-s.engDone:
		return &ConfigError{"listeners", err}
	}
}

func (ev *tcpEvents) OnBoot(eng gnet.Engine) gnet.Action {
	ev.eng = eng
	return gnet.None
}

// OnTick first runs once the event loops are registered (OnBoot runs
// before): only then may Engine.Register be called from other goroutines.
func (ev *tcpEvents) OnTick() (time.Duration, gnet.Action) {
	if !ev.booted {
		ev.booted = true
		ev.ready <- ev.eng
	}
	return time.Hour, gnet.None
}

func (ev *tcpEvents) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := ev.s
	if c, ok := gc.Context().(*streamConn); ok {
		// An outbound connection enrolled by dialTCP: flush what was
		// queued while connecting, then let senders write directly.
		c.mu.Lock()
		if c.state == connClosed {
			c.mu.Unlock()
			gc.SetContext(nil)
			return nil, gnet.Close
		}
		q := c.queue
		c.queue = nil
		c.queuedBytes = 0
		c.pongBuf = nil
		c.flushPending = false
		c.gc = gc
		c.state = connOpen
		c.mu.Unlock()
		// Written outside c.mu: a failed write closes the connection
		// through OnClose, which takes c.mu. Later sends are flushed by the
		// loop after this callback, so the order holds.
		var werr error
		for i, w := range q {
			if werr == nil {
				if _, werr = gc.Write(w.b); werr != nil {
					// gnet closes the connection; the rest is lost.
					s.t.stats.sendDrops.Add(uint64(len(q) - i))
					if lost := taggedOf(q[i:]); len(lost) > 0 && s.t.onSendErr.Load() != nil {
						go s.reportDropped(c, lost, werr)
					}
				}
			}
			putWbuf(w)
			q[i] = nil
		}
		c.lastRead.Store(s.now.Load())
		s.t.stats.connsDialed.Add(1)
		return nil, gnet.None
	}
	ra, _ := gc.RemoteAddr().(*net.TCPAddr)
	la, _ := gc.LocalAddr().(*net.TCPAddr)
	if ra == nil || la == nil {
		return nil, gnet.Close
	}
	remote := unmapAP(ra.AddrPort())
	if admit := s.t.cfg.Admit; admit != nil && !admit(remote.Addr()) {
		// A reset rather than a FIN: no TIME-WAIT socket is left on the
		// SIP port for each connection a banned source opens.
		_ = gc.SetLinger(0)
		s.t.stats.admitRefused.Add(1)
		return nil, gnet.Close
	}
	l := s.tcpByLocal[unmapAP(la.AddrPort())]
	if l == nil {
		s.t.stats.errors.Add(1)
		return nil, gnet.Close
	}
	c := s.newConn(TCP, l, remote, true)
	c.state = connOpen
	c.gc = gc
	if _, err := s.table.admit(c, s.limits); err != nil {
		s.t.stats.rejected(err)
		return nil, gnet.Close
	}
	s.t.stats.connsOpen.Add(1)
	s.t.stats.connsAccepted.Add(1)
	gc.SetContext(c)
	return nil, gnet.None
}

func (ev *tcpEvents) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*streamConn)
	if c == nil {
		return gnet.Close
	}
	buf, _ := gc.Peek(-1)
	if len(buf) > c.unread {
		// New bytes (OnTraffic also runs for Wake, which sends use).
		c.lastRead.Store(ev.s.now.Load())
	}
	used, err := c.consume(buf)
	c.unread = len(buf) - used
	c.partial(c.unread > 0)
	if used > 0 {
		_, _ = gc.Discard(used)
	}
	if err != nil {
		if err != errRefused {
			ev.s.t.stats.connsOversize.Add(1)
			ev.s.t.stats.errors.Add(1)
		}
		return gnet.Close
	}
	return gnet.None
}

func (ev *tcpEvents) OnClose(gc gnet.Conn, _ error) gnet.Action {
	if c, ok := gc.Context().(*streamConn); ok {
		gc.SetContext(nil)
		c.close()
	}
	return gnet.None
}

// dialTCP connects in the background and hands the socket to gnet; OnOpen
// then flushes the queue.
func (s *streams) dialTCP(c *streamConn) {
	defer s.wg.Done()
	d := net.Dialer{Timeout: s.t.cfg.DialTimeout}
	nc, err := d.DialContext(s.ctx, "tcp", c.remote.String())
	if err != nil {
		s.t.stats.errors.Add(1)
		c.fail(err, true)
		return
	}
	ctx := gnet.NewContext(gnet.NewNetConnContext(s.ctx, nc), c)
	ch, err := s.eng.Register(ctx)
	if err != nil {
		nc.Close()
		c.fail(err, true)
		return
	}
	var res gnet.RegisteredResult
	select {
	case res = <-ch:
	case <-s.ctx.Done():
		// The engine stops: the registration may never be answered.
		c.close()
		return
	}
	c.mu.Lock()
	opened := c.state == connOpen
	c.mu.Unlock()
	if res.Err != nil || !opened {
		if res.Err != nil {
			s.t.stats.errors.Add(1)
		}
		c.fail(res.Err, true)
	}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// quietLogger drops gnet's log lines; failures reach the counters.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}
