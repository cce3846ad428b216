package ng

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Errors a command can end with.
var (
	// ErrTimeout: no answer after the retransmissions, on every instance
	// tried.
	ErrTimeout = errors.New("rtpengine: no answer")
	// ErrNoInstance: every instance is down or disabled.
	ErrNoInstance = errors.New("rtpengine: no instance available")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("rtpengine: closed")
	// ErrTooBig: the command does not fit a datagram.
	ErrTooBig = errors.New("rtpengine: command too large")
)

// MaxDatagram is the largest command or answer (rtpengine's own limit for
// one ng message over UDP).
const MaxDatagram = 65000

// Config says how commands are sent.
type Config struct {
	// Timeout is how long an answer is waited for before the command is
	// sent again (OpenSIPS rtpengine_tout).
	Timeout time.Duration
	// Retries is how many times a command is sent again to one instance
	// before the instance counts as down (rtpengine_retr).
	Retries int
	// DisableFor is how long an instance that did not answer stays out
	// of the selection before it is pinged again (rtpengine_disable_tout).
	DisableFor time.Duration
	// PingInterval: every instance in service is pinged this often, and a
	// down one once its DisableFor has passed; 0 pings only the down ones,
	// every DisableFor.
	PingInterval time.Duration
	// Observe, when set, is told of every command that ended: the
	// instance that answered (nil when none did), the command, the round
	// trip of the answer, and the error. Called on the client's goroutines.
	Observe func(inst *Instance, cmd string, rtt time.Duration, err error)
	// StateChanged, when set, is told when an instance goes up or down.
	StateChanged func(inst *Instance, up bool)
}

// Instance is one rtpengine control socket. Its fields do not change
// once the instance is handed to a Client; a new weight is a new Instance
// (WithWeight) sharing the state of the old one.
type Instance struct {
	URL    string // as configured: "udp:127.0.0.1:2223"
	Addr   netip.AddrPort
	Weight int
	// Local is the address commands to the instance leave from (the
	// client binds a socket to it, an ephemeral port). Zero: the address
	// the kernel would choose to reach Addr (LocalFor), filled in when
	// the instance is handed to the client.
	Local netip.Addr

	*health
}

// health is an instance's state, shared by its copies (WithWeight) so
// that a reload that changes a weight keeps it.
type health struct {
	disabled  atomic.Bool  // by the operator (rtpengine.disable)
	downUntil atomic.Int64 // unix ms; 0: up
	down      atomic.Bool
	checking  atomic.Bool // a health ping is in flight
}

// WithWeight returns a copy of in with another weight and the same state
// (up, down, disabled).
func (in *Instance) WithWeight(w int) *Instance {
	cp := *in
	cp.Weight = w
	return &cp
}

// Same reports whether a and b are one instance (the same state), whatever
// their weights.
func (in *Instance) Same(o *Instance) bool { return in != nil && o != nil && in.health == o.health }

// LocalFor returns the address the kernel chooses to reach a: loopback
// for an instance on loopback, the address of the outgoing interface
// otherwise. No packet is sent (a UDP socket is connected and closed).
func LocalFor(a netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// ParseInstance reads "udp:host:port" (or "host:port", or
// "udp:[v6]:port"), optionally followed by "=weight" as OpenSIPS writes
// rtpengine_sock. The host must be an IP address.
func ParseInstance(s string) (*Instance, error) {
	in := &Instance{URL: s, Weight: 1, health: new(health)}
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		w, err := strconv.Atoi(s[i+1:])
		if err != nil || w < 1 || w > 1000 {
			return nil, errors.New("weight after '=' must be 1-1000")
		}
		in.Weight, s = w, s[:i]
		in.URL = s
	}
	if rest, ok := strings.CutPrefix(s, "udp:"); ok {
		s = rest
	} else if strings.HasPrefix(s, "udp6:") {
		s = s[len("udp6:"):]
	} else if i := strings.IndexByte(s, ':'); i > 0 && strings.Count(s, ":") == 2 && !strings.Contains(s[:i], ".") {
		return nil, errors.New("only udp: control sockets are supported")
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, errors.New("want udp:IP:port (an IP address, not a name)")
	}
	if ap.Port() == 0 {
		return nil, errors.New("port 0")
	}
	in.Addr = ap
	return in, nil
}

// Up reports whether the instance is in service: not disabled by the
// operator and not down.
func (in *Instance) Up() bool { return !in.disabled.Load() && !in.down.Load() }

// Disabled reports whether the operator took the instance out of service.
func (in *Instance) Disabled() bool { return in.disabled.Load() }

// Down reports whether the instance stopped answering, and until when it
// stays out before the next check.
func (in *Instance) Down() (bool, time.Time) {
	if !in.down.Load() {
		return false, time.Time{}
	}
	return true, time.UnixMilli(in.downUntil.Load())
}

// call is one command in flight.
type call struct {
	cookie  string
	cmd     string
	payload []byte // cookie, space, bencoded command
	key     uint64
	inst    *Instance
	set     []*Instance // the list the command selects from (fail-over)
	tried   []*Instance
	tries   int
	sent    time.Time
	timer   *time.Timer
	pinned  bool // a ping: no fail-over to another instance
	cb      func(inst *Instance, answer Value, err error)
	// timedOut (DoInWatched) learns each instance given up on.
	timedOut func(inst *Instance, first bool)
}

// Client sends commands to a set of instances and matches the answers by
// cookie, by the instance's address and by the socket they come in on:
// an answer from elsewhere is ignored. Commands leave from one UDP socket
// per local address (Instance.Local), each bound to that address, never
// to the wildcard one: a socket bound to loopback for an rtpengine on
// loopback cannot be reached from the network at all.
type Client struct {
	cfg    Config
	prefix string
	seq    atomic.Uint64

	insts atomic.Pointer[[]*Instance]

	// setMu orders SetInstances and closeUnusedLocked: a socket
	// SetInstances has just bound is not closed before its instance is
	// in the list.
	setMu   sync.Mutex
	sweep   atomic.Bool // sockets unused but still awaited (closeUnusedLocked)
	mu      sync.Mutex
	conns   map[netip.Addr]*net.UDPConn // by local address
	pending map[string]*call
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// BindError is a socket that could not be opened for an instance.
type BindError struct {
	Inst *Instance
	Err  error
}

func (e *BindError) Error() string {
	return "control socket for " + e.Inst.URL + " on " + e.Inst.Local.String() + ": " + e.Err.Error()
}
func (e *BindError) Unwrap() error { return e.Err }

// New opens the sockets of insts (SetInstances) and starts the health
// checks.
func New(cfg Config, insts []*Instance) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.DisableFor <= 0 {
		cfg.DisableFor = time.Minute
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	c := &Client{cfg: cfg, prefix: hex.EncodeToString(r[:]) + "_", conns: map[netip.Addr]*net.UDPConn{},
		pending: map[string]*call{}, done: make(chan struct{})}
	empty := []*Instance{}
	c.insts.Store(&empty)
	if err := c.SetInstances(insts); err != nil {
		c.Close()
		return nil, err
	}
	c.wg.Add(1)
	go c.health()
	return c, nil
}

// Bind opens the socket of local address a (an ephemeral port), unless it
// is open already: Instance.Local of the instances to come.
func (c *Client) Bind(a netip.Addr) error {
	a = a.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.conns[a] != nil {
		return nil
	}
	network := "udp4"
	if a.Is6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		return err
	}
	c.conns[a] = conn
	c.wg.Add(1)
	go c.read(conn)
	return nil
}

// Locals are the bound addresses of the control sockets.
func (c *Client) Locals() []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(c.conns))
	for _, conn := range c.conns {
		out = append(out, conn.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	return out
}

// SetInstances replaces the list of instances Do selects from and the
// health checks ping (a reload); commands in flight finish on the
// instance they were sent to. An instance without Local gets the address
// the kernel chooses for it; the socket of each local address is opened
// first, and on error (a *BindError) the list in use stays.
func (c *Client) SetInstances(insts []*Instance) error {
	c.setMu.Lock()
	defer c.setMu.Unlock()
	for _, in := range insts {
		if !in.Local.IsValid() {
			l, err := LocalFor(in.Addr)
			if err != nil {
				return &BindError{Inst: in, Err: err}
			}
			in.Local = l
		}
		if err := c.Bind(in.Local); err != nil {
			return &BindError{Inst: in, Err: err}
		}
	}
	cp := append([]*Instance(nil), insts...)
	c.insts.Store(&cp)
	c.closeUnusedLocked()
	return nil
}

// closeUnusedLocked closes the sockets of the local addresses that no
// instance in the list uses (a reload removed the instances they were
// opened for) and that no command in flight awaits an answer on; one
// still awaited is closed by the health checks once its commands are
// done. setMu is held.
func (c *Client) closeUnusedLocked() {
	used := map[netip.Addr]bool{}
	for _, in := range c.Instances() {
		used[in.Local.Unmap()] = true
	}
	var gone []*net.UDPConn
	awaited := false
	c.mu.Lock()
	busy := map[netip.Addr]bool{}
	for _, cl := range c.pending {
		busy[cl.inst.Local.Unmap()] = true
	}
	for a, conn := range c.conns {
		switch {
		case used[a]:
		case busy[a]:
			awaited = true
		default:
			gone = append(gone, conn)
			delete(c.conns, a)
		}
	}
	c.mu.Unlock()
	c.sweep.Store(awaited)
	for _, conn := range gone {
		conn.Close() // its reader returns
	}
}

// Instances is the current list.
func (c *Client) Instances() []*Instance { return *c.insts.Load() }

// Close stops the client; commands in flight end with ErrClosed.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	pend := c.pending
	c.pending = map[string]*call{}
	conns := c.conns
	c.mu.Unlock()
	close(c.done)
	for _, conn := range conns {
		conn.Close()
	}
	c.wg.Wait()
	for _, cl := range pend {
		cl.timer.Stop()
		cl.cb(nil, Value{}, ErrClosed)
	}
}

// Pending is the number of commands waiting for an answer.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Select returns the instance a call with this key (its Call-ID) goes to
// among all instances (SelectIn with the whole list).
func (c *Client) Select(key []byte) *Instance {
	return selectFrom(*c.insts.Load(), xxhash.Sum64(key), nil)
}

// SelectIn returns the instance of set a call with this key (its Call-ID)
// goes to: a weighted choice by the key's hash, so that the offer, the
// answer and the delete of a call reach the same rtpengine; when that one
// is out of service, the next one in the list that is in (as OpenSIPS
// does). Nil when none is.
func SelectIn(set []*Instance, key []byte) *Instance {
	return selectFrom(set, xxhash.Sum64(key), nil)
}

func selectFrom(insts []*Instance, h uint64, skip []*Instance) *Instance {
	total := 0
	for _, in := range insts {
		total += in.Weight
	}
	if total == 0 {
		return nil
	}
	pick := int(h % uint64(total))
	start := 0
	for i, in := range insts {
		if pick < in.Weight {
			start = i
			break
		}
		pick -= in.Weight
	}
	for k := range insts {
		in := insts[(start+k)%len(insts)]
		if in.Up() && !contains(skip, in) {
			return in
		}
	}
	return nil
}

func contains(l []*Instance, in *Instance) bool {
	for _, x := range l {
		if x.Same(in) {
			return true
		}
	}
	return false
}

// Do sends the bencoded command dictionary cmd (named name, for Observe)
// to the instance chosen for key among all instances, and calls cb once
// with its answer (a view valid only during cb) or an error: after
// Timeout without an answer it is sent again, Retries times; then the
// instance is marked down and the command goes to the next instance in
// service. cb runs on one of the client's goroutines, never on the
// caller's.
func (c *Client) Do(key []byte, name string, cmd []byte, cb func(inst *Instance, answer Value, err error)) {
	c.DoIn(*c.insts.Load(), nil, key, name, cmd, cb)
}

// DoIn is Do among the instances of set (a snapshot the caller does not
// change: fail-over walks it), sent to prefer when it is in service (the
// instance a call's session was created on, whether still in set or
// not).
func (c *Client) DoIn(set []*Instance, prefer *Instance, key []byte, name string, cmd []byte, cb func(inst *Instance, answer Value, err error)) {
	c.DoInWatched(set, prefer, key, name, cmd, nil, cb)
}

// DoInWatched is DoIn, and timedOut (when not nil) learns each instance
// the command was given up on, no answer after Retries resends, before
// the command goes to the next instance or ends with ErrTimeout; first
// says it was the first instance tried. Such an instance may have carried
// the command out all the same, its answer late or lost: an offer may
// have opened a session there that the caller alone knows to delete.
// timedOut runs on one of the client's goroutines and must not block.
func (c *Client) DoInWatched(set []*Instance, prefer *Instance, key []byte, name string, cmd []byte,
	timedOut func(inst *Instance, first bool), cb func(inst *Instance, answer Value, err error)) {
	h := xxhash.Sum64(key)
	in := prefer
	if in == nil || !in.Up() {
		in = selectFrom(set, h, nil)
	}
	if in == nil {
		go cb(nil, Value{}, ErrNoInstance)
		return
	}
	c.start(&call{cmd: name, key: h, inst: in, set: set, cb: cb, timedOut: timedOut}, cmd)
}

// DoOn sends cmd to one instance, without fail-over (health checks,
// rtpengine.ping).
func (c *Client) DoOn(in *Instance, name string, cmd []byte, cb func(inst *Instance, answer Value, err error)) {
	c.start(&call{cmd: name, inst: in, cb: cb, pinned: true}, cmd)
}

func (c *Client) start(cl *call, cmd []byte) {
	cl.cookie = c.prefix + strconv.FormatUint(c.seq.Add(1), 36)
	if len(cl.cookie)+1+len(cmd) > MaxDatagram {
		go cl.cb(nil, Value{}, ErrTooBig)
		return
	}
	cl.payload = make([]byte, 0, len(cl.cookie)+1+len(cmd))
	cl.payload = append(append(append(cl.payload, cl.cookie...), ' '), cmd...)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		go cl.cb(nil, Value{}, ErrClosed)
		return
	}
	c.pending[cl.cookie] = cl
	cl.sent = time.Now()
	cl.timer = time.AfterFunc(c.cfg.Timeout, func() { c.expired(cl) })
	conn, to := c.conns[cl.inst.Local], cl.inst.Addr
	c.mu.Unlock()
	send(conn, cl.payload, to)
}

func send(conn *net.UDPConn, payload []byte, to netip.AddrPort) {
	if conn == nil {
		return // an instance whose socket is not open: the timer decides
	}
	// An error (no route, a refused port reported by ICMP) is treated like
	// silence: the retransmission timer decides.
	_, _ = conn.WriteToUDPAddrPort(payload, to)
}

// expired runs when Timeout passed without an answer.
func (c *Client) expired(cl *call) {
	c.mu.Lock()
	if c.pending[cl.cookie] != cl {
		c.mu.Unlock()
		return // answered meanwhile
	}
	if cl.tries < c.cfg.Retries {
		cl.tries++
		cl.timer.Reset(c.cfg.Timeout)
		conn, to := c.conns[cl.inst.Local], cl.inst.Addr
		c.mu.Unlock()
		send(conn, cl.payload, to)
		return
	}
	// The instance did not answer: out of service for DisableFor, and
	// the command goes to the next one.
	c.markDown(cl.inst)
	gaveUp, first := cl.inst, len(cl.tried) == 0
	var next *Instance
	if !cl.pinned {
		cl.tried = append(cl.tried, cl.inst)
		next = selectFrom(cl.set, cl.key, cl.tried)
	}
	if next == nil {
		delete(c.pending, cl.cookie)
		c.mu.Unlock()
		if cl.timedOut != nil {
			cl.timedOut(gaveUp, first)
		}
		if c.cfg.Observe != nil {
			c.cfg.Observe(nil, cl.cmd, 0, ErrTimeout)
		}
		cl.cb(nil, Value{}, ErrTimeout)
		return
	}
	cl.inst, cl.tries, cl.sent = next, 0, time.Now()
	cl.timer.Reset(c.cfg.Timeout)
	conn := c.conns[next.Local]
	c.mu.Unlock()
	if cl.timedOut != nil {
		cl.timedOut(gaveUp, first)
	}
	send(conn, cl.payload, next.Addr)
}

func (c *Client) markDown(in *Instance) {
	in.downUntil.Store(time.Now().Add(c.cfg.DisableFor).UnixMilli())
	if !in.down.Swap(true) && c.cfg.StateChanged != nil {
		c.cfg.StateChanged(in, false)
	}
}

func (c *Client) markUp(in *Instance) {
	if in.down.Swap(false) && c.cfg.StateChanged != nil {
		c.cfg.StateChanged(in, true)
	}
}

// read receives the answers on conn: "<cookie> <bencoded dictionary>".
func (c *Client) read(conn *net.UDPConn) {
	defer c.wg.Done()
	buf := make([]byte, MaxDatagram+1)
	var d Decoder
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return // Close, or a socket no instance uses any more
			}
			select {
			case <-c.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			continue // ICMP port unreachable and the like: retransmission decides
		}
		c.answer(&d, buf[:n], src, conn)
	}
}

func (c *Client) answer(d *Decoder, b []byte, src netip.AddrPort, conn *net.UDPConn) {
	sp := -1
	for i := 0; i < len(b) && i < 128; i++ {
		if b[i] == ' ' {
			sp = i
			break
		}
	}
	if sp <= 0 {
		return
	}
	c.mu.Lock()
	cl := c.pending[string(b[:sp])]
	if cl == nil || !sameAddr(cl.inst.Addr, src) || c.conns[cl.inst.Local] != conn {
		c.mu.Unlock()
		return // late (a retransmission's answer), unknown, or forged
	}
	delete(c.pending, cl.cookie)
	cl.timer.Stop()
	inst, rtt := cl.inst, time.Since(cl.sent)
	c.mu.Unlock()
	c.markUp(inst)
	v, err := d.Decode(b[sp+1:])
	if err == nil && v.Kind() != KindDict {
		err = ErrSyntax
	}
	if c.cfg.Observe != nil {
		c.cfg.Observe(inst, cl.cmd, rtt, err)
	}
	cl.cb(inst, v, err)
}

func sameAddr(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

var pingCmd = []byte("d7:command4:pinge")

// health pings the instances: those in service every PingInterval, a
// down one once its DisableFor has passed (rtpengine_disable_tout).
func (c *Client) health() {
	defer c.wg.Done()
	tick := c.cfg.PingInterval
	if tick <= 0 || tick > c.cfg.DisableFor {
		tick = c.cfg.DisableFor
	}
	if tick > time.Second {
		tick = time.Second // a down instance is rechecked within a second of its time
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastPing := time.Now()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			if c.sweep.Load() {
				c.setMu.Lock()
				c.closeUnusedLocked()
				c.setMu.Unlock()
			}
			periodic := c.cfg.PingInterval > 0 && now.Sub(lastPing) >= c.cfg.PingInterval
			if periodic {
				lastPing = now
			}
			for _, in := range c.Instances() {
				if in.disabled.Load() {
					continue
				}
				down, until := in.Down()
				if (down && !now.Before(until)) || (!down && periodic) {
					c.Ping(in, nil)
				}
			}
		}
	}
}

// Ping sends a ping to in; done (optional) learns whether it answered
// "pong". A silent instance is marked down by the retransmission logic.
func (c *Client) Ping(in *Instance, done func(ok bool)) {
	if done == nil && !in.checking.CompareAndSwap(false, true) {
		return // the previous health ping is still waiting
	}
	c.DoOn(in, "ping", pingCmd, func(_ *Instance, v Value, err error) {
		if done == nil {
			in.checking.Store(false)
		}
		ok := err == nil && string(v.Get("result").Bytes()) == "pong"
		if done != nil {
			done(ok)
		}
	})
}

// SetDisabled takes an instance out of service, or puts it back
// (rtpengine.disable / rtpengine.enable; OpenSIPS rtpengine_enable). An
// instance put back is pinged at once.
func (c *Client) SetDisabled(in *Instance, disabled bool) {
	in.disabled.Store(disabled)
	if !disabled && in.down.Load() {
		in.downUntil.Store(0) // the next health tick pings it
	}
}
