// Package txn is the stateful SIP proxy core: RFC 3261 §17 transactions
// (server and client, INVITE and non-INVITE, timers A–K), §16 proxy
// behaviour (Max-Forwards, loop detection, Via, Record-Route, loose and
// strict routing, forking, best-response selection, CANCEL, hop-by-hop ACK)
// and RFC 3581. It receives every message from the transport, keeps state
// in a shards table, and calls a Router for routing decisions. See
// README.md for the API, the locking rules and the figures.
package txn

import (
	"crypto/rand"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/sipdns"
	"switchboard/transport"
)

// Errors returned by Request actions.
var (
	ErrNotAllowed      = errors.New("txn: destination outside the outbound allow-list")
	ErrNoDestination   = errors.New("txn: no usable destination")
	ErrFinal           = errors.New("txn: a final response was already sent")
	ErrCanceled        = errors.New("txn: the request was canceled")
	ErrTooManyBranches = errors.New("txn: too many branches")
	ErrStateless       = errors.New("txn: no transaction for this request (ACK)")
	ErrNoTransaction   = errors.New("txn: the transaction has ended")
	ErrSend            = errors.New("txn: every branch failed to send")
	ErrRelayed         = errors.New("txn: already relayed, and no new branch was added")
)

// Core is the proxy core. It implements transport.Handler.
type Core struct {
	cfg    Config
	tbl    *shards.Table[txn]
	clock  *shards.Clock
	own    bool // clock created (and stopped) by the core
	router Router
	local  LocalRouter // the Router, when it implements LocalRouter
	send   Sender
	conns  ConnSender // the Sender, when it implements ConnSender
	flows  FlowSender // the Sender, when it implements FlowSender (flow.go)
	ls     ListenerSet
	res    *sipdns.Resolver

	perShardMax int
	t1, t2, t4  int64 // ms
	timerC      int64
	wait        int64    // ms: timers J, L, D, M
	fr          int64    // ms: timers B and F unless the route set its own
	tryingAfter int64    // ms: when a non-INVITE request still unanswered gets 100 (RFC 4320 §4.1)
	prefix      [13]byte // "z9hG4bK" + 6 random characters
	nextID      atomic.Uint32
	pool        sync.Pool
	stats       counters
	warns       warnLimiter
	sigs        routeSigners                   // Record-Route signatures
	locals      localTable                     // requests the proxy originates (SendLocal)
	tap         atomic.Pointer[tapBox]         // message capture (SetTap); nil when off
	trace       atomic.Pointer[tracer]         // debug trace (StartTrace); nil when off
	remote      atomic.Pointer[remoteFlowsBox] // flows other nodes hold (SetRemoteFlows; remoteflow.go)
	// allow is the outbound allow-list in force: Config.AllowOutbound,
	// then what SetAllowOutbound put (a reload); never nil.
	allow atomic.Pointer[[]netip.Prefix]

	// hostAddrs are the addresses of the host's interfaces, read at New
	// when a listener is bound to a wildcard address (isOwnAddr).
	hostAddrs []netip.Addr
}

type counters struct {
	requests, responses, retrans, malformed, stateless, full, loops, sendErrs, selfLoops, forgedLocal, staleForged, heldExpired atomic.Uint64
}

// Stats are the core's counters.
type Stats struct {
	Requests, Responses uint64 // messages handled
	Retransmissions     uint64 // requests absorbed or answered by a transaction
	Malformed           uint64 // messages that did not parse
	Stateless           uint64 // responses forwarded without a transaction
	Full                uint64 // requests refused with 503 at the memory or count cap
	Loops               uint64 // 482 sent
	SendErrors          uint64 // sends refused by the allow-list or the transport
	// ResponseLoops counts what was dropped because a response would have
	// gone to one of our own listeners: a response without transaction
	// whose next Via is ours again, and a request from our own address
	// that we did not send (a spoofed source, which would make us answer
	// ourselves).
	ResponseLoops uint64
	// ForgedResponses counts responses dropped as forged: to a request of
	// the proxy's own from elsewhere than where it went, or naming
	// another Call-ID or CSeq; or answering an earlier attempt of a
	// branch from another address than that attempt's.
	ForgedResponses uint64
	// HeldExpired counts 2xx responses a Reply hook held
	// (Request.HoldResponse) and did not release within 64·T1: the
	// transaction answered the caller 500 instead.
	HeldExpired  uint64
	Transactions int   // live transactions
	Bytes        int64 // bytes accounted to them
	MaxBytes     int64 // the cap on Bytes (Config.MaxBytes; 0: none)
}

// New creates a core. Call Close when done.
func New(cfg Config) (*Core, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	c := &Core{cfg: cfg, router: cfg.Router, send: cfg.Sender, ls: cfg.Listeners, res: cfg.Resolver}
	c.SetAllowOutbound(cfg.AllowOutbound)
	c.local, _ = cfg.Router.(LocalRouter)
	c.conns, _ = cfg.Sender.(ConnSender)
	c.flows, _ = cfg.Sender.(FlowSender)
	c.clock = cfg.Clock
	if c.clock == nil {
		c.clock = shards.NewClock()
		c.own = true
	}
	tbl, err := shards.New(shards.Config[txn]{
		Clock:    c.clock,
		Shards:   cfg.Shards,
		MaxBytes: cfg.MaxBytes,
		OnTimer:  c.onTimer,
		Reset:    resetTxn,
	})
	if err != nil {
		return nil, err
	}
	c.tbl = tbl
	if cfg.MaxTransactions > 0 {
		n := tbl.NumShards()
		c.perShardMax = (cfg.MaxTransactions + n - 1) / n
	}
	c.t1, c.t2, c.t4 = ms(cfg.T1), ms(cfg.T2), ms(cfg.T4)
	c.timerC = ms(cfg.TimerC)
	c.wait = ms(cfg.Wait)
	c.fr = ms(cfg.FR)
	c.tryingAfter = timerEAtT2(c.t1, c.t2)
	copy(c.prefix[:], parser.MagicCookie)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i, b := range rnd {
		c.prefix[7+i] = alphabet[int(b)%len(alphabet)]
	}
	c.nextID.Store(uint32(rnd[0])<<24 | uint32(rnd[1])<<16)
	c.pool.New = func() any { return newCtx() }
	c.sigs.init(cfg.RouteSecret)
	if c.res == nil {
		c.res = sipdns.New(sipdns.Config{})
	}
	if c.own {
		if err := c.clock.Start(0); err != nil {
			return nil, err
		}
	}
	c.watchSendFailures()
	c.hostAddrs = wildcardHostAddrs(c.ls.Listeners())
	return c, nil
}

// Close stops the timers (and the clock when New created it).
func (c *Core) Close() {
	c.closeLocals()
	c.tbl.Close()
	if c.own {
		c.clock.Stop()
	}
}

// Stats returns the counters and table figures.
func (c *Core) Stats() Stats {
	ts := c.tbl.Stats()
	return Stats{
		Requests: c.stats.requests.Load(), Responses: c.stats.responses.Load(),
		Retransmissions: c.stats.retrans.Load(), Malformed: c.stats.malformed.Load(),
		Stateless: c.stats.stateless.Load(), Full: c.stats.full.Load(), Loops: c.stats.loops.Load(),
		SendErrors: c.stats.sendErrs.Load(), ResponseLoops: c.stats.selfLoops.Load(),
		ForgedResponses: c.stats.forgedLocal.Load() + c.stats.staleForged.Load(),
		HeldExpired:     c.stats.heldExpired.Load(),
		Transactions:    ts.Entries, Bytes: ts.Bytes, MaxBytes: ts.MaxBytes,
	}
}

// Table returns the transaction table (for metrics and listings).
func (c *Core) Table() *shards.Table[txn] { return c.tbl }

// timerEAtT2 is how long after sending a non-INVITE request a client's
// timer E, starting at T1 and doubling, takes to reach T2: 3.5 s with the
// default T1 and T2. RFC 4320 §4.1 forbids a 100 over UDP before then (it
// would slow the client's retransmissions) and requires one after it when
// nothing else was sent.
func timerEAtT2(t1, t2 int64) int64 {
	at := int64(0)
	for e := max(t1, 1); e < t2; e *= 2 {
		at += e
	}
	return at
}

func ms(d time.Duration) int64 { return int64((d + time.Millisecond - 1) / time.Millisecond) }

// ctx is the scratch state of one goroutine handling a message: a reader,
// the ticker or a resolver callback. It comes from a sync.Pool, so readers
// running concurrently never share one and steady state allocates nothing.
type ctx struct {
	msg   parser.Message // the message being handled
	best  parser.Message // the response handed to Router.Failure
	aux   parser.Message // a stored branch request or response, reparsed
	ed    parser.Editor  // responses forwarded upstream, stateless requests
	bed   parser.Editor  // branch requests
	red   parser.Editor  // the route's edits
	in    []byte         // copy of the message being handled
	out   []byte
	key   []byte
	via   []byte
	rr    []byte
	sig   []byte
	sig2  []byte // the second signature of a double Record-Route with a flow token
	fx    []byte // Record-Route parameters with a flow token
	recv  []byte
	tmp   []byte
	auth  []byte
	rt    []byte
	synth []byte
	lmsg  parser.Message // a response of the core's own, being restored (restore.go)
	led   parser.Editor
	lout  []byte
	upTo  []byte
	kept  []byte  // Request.Own for a request without a transaction (ACK)
	hreq  Request // the handle given to hooks
	// The response a Reply hook runs for, where it came from, and the
	// hook's edits of it (Request.ResponseEditor): buildUp (or the copy
	// kept of a non-2xx final) applies them. pown holds the bytes those
	// edits refer to (Request.OwnResponse).
	resp    *parser.Message
	rsrc    netip.AddrPort
	ped     parser.Editor
	pedUsed bool
	pown    []byte
	rbr     *Branch    // the branch the response came on
	rheld   bool       // the Reply hook held the response (Request.HoldResponse)
	rrepeat bool       // the response is a repeated 2xx of its branch
	wreq    Request    // the handle given to a Watcher (a hook's may be in use)
	upSent  []byte     // the response a Watcher is told of, as it went upstream (Request.SentResponse)
	rwreq   Request    // the handle given to a Rewriter
	rwbuf   []byte     // a Rewriter's values, until the message is written
	rs      routeState // route state of a request without a transaction (ACK)
	loop    uint32     // loop hash of the request being handled
}

func newCtx() *ctx {
	return &ctx{
		in: make([]byte, 0, 4096), out: make([]byte, 0, 4096), key: make([]byte, 0, 256), via: make([]byte, 0, 256),
		rr: make([]byte, 0, 512), sig: make([]byte, 0, routeSigLen), recv: make([]byte, 0, 64), tmp: make([]byte, 0, 512),
		auth: make([]byte, 0, 1024), rt: make([]byte, 0, 1024),
	}
}

func (c *Core) getCtx() *ctx  { return c.pool.Get().(*ctx) }
func (c *Core) putCtx(x *ctx) { c.pool.Put(x) }

// BranchPrefix is how every branch this core makes starts: "z9hG4bK" and
// six characters chosen at random per process, which tell its responses
// from another node's (anycast/).
func (c *Core) BranchPrefix() string { return string(c.prefix[:]) }

// HandleMessage is the transport handler: one message from the network.
// It runs on the transport's reader goroutines, concurrently.
func (c *Core) HandleMessage(p *transport.Packet) {
	// A tick due wakes the clock's ticker from this awake thread rather
	// than from its own timer (shards.Clock.Poke).
	c.clock.Poke()
	x := c.getCtx()
	c.handle(x, p)
	c.putCtx(x)
}

func (c *Core) handle(x *ctx, p *transport.Packet) {
	m := &x.msg
	// Parse the goroutine's own copy of the message: a new transaction
	// takes that buffer, with the parsed views, instead of copying and
	// parsing again (see onRequest).
	x.in = append(x.in[:0], p.Data...)
	err := m.Parse(x.in)
	m.SetSource(p.Src, false) // received/rport in the responses we build (§18.2.1)
	if tb := c.tap.Load(); tb != nil {
		tb.t.Received(p.Data, p.Src, p.Listener, p.Proto, parsedOrNil(m, err))
	}
	if tr := c.trace.Load(); tr != nil {
		c.traceIn(tr, p, m, err)
	}
	if err != nil {
		c.stats.malformed.Add(1)
		if pe, ok := err.(*parser.Error); ok && m.IsRequest() && m.Method() != parser.MethodAck {
			x.tmp = pe.AppendReason(x.tmp[:0])
			if c.isOwnAddr(p.Src) {
				c.stats.selfLoops.Add(1) // never answer ourselves
				return
			}
			x.out = parser.AppendResponse(x.out[:0], m, pe.Status(), x.tmp, nil)
			c.sendResponse(p.Listener, p.Src, p.Conn, x.out)
		}
		return
	}
	if !m.IsRequest() {
		c.stats.responses.Add(1)
		c.onResponse(x, p)
		return
	}
	c.stats.requests.Add(1)
	switch m.Method() {
	case parser.MethodAck:
		c.onAck(x, p)
	case parser.MethodCancel:
		c.onCancel(x, p)
	default:
		c.onRequest(x, p)
	}
}

// SetAllowOutbound replaces the outbound allow-list (Config.AllowOutbound;
// empty: anywhere): every send checked from then on keeps to the new one,
// on connections already open too.
func (c *Core) SetAllowOutbound(l []netip.Prefix) {
	l = append([]netip.Prefix(nil), l...)
	c.allow.Store(&l)
}

// allowed reports whether dst is inside the outbound allow-list.
func (c *Core) allowed(a netip.Addr) bool {
	allow := *c.allow.Load()
	if len(allow) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sendTo sends after the allow-list check. Every send goes through it.
func (c *Core) sendTo(l *transport.Listener, dst netip.AddrPort, data []byte) error {
	if !dst.IsValid() || !c.allowed(dst.Addr()) {
		c.stats.sendErrs.Add(1)
		return ErrNotAllowed
	}
	if err := c.send.Send(l, dst, data); err != nil {
		c.stats.sendErrs.Add(1)
		return err
	}
	c.tapSent(l, dst, data)
	return nil
}

// respDest is where responses to a request go (RFC 3261 §18.2.2, RFC
// 3581): the connection for streams; the source address, with the source
// port when the Via asked for rport, else the Via port (5060 by default).
func respDest(p *transport.Packet, v *parser.Via) netip.AddrPort {
	if p.Proto.Stream() || v.HasRPort {
		return p.Src
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(p.Src.Addr(), uint16(port))
}

// replyStateless answers a request without a transaction.
func (c *Core) replyStateless(x *ctx, p *transport.Packet, code int, reason string, extra []byte) {
	m := &x.msg
	dst := respDest(p, m.TopVia())
	if c.isOwnAddr(dst) && !c.sentByUsUnlocked(m) {
		c.stats.selfLoops.Add(1) // a spoofed source: never answer ourselves
		return
	}
	x.tmp = append(x.tmp[:0], reason...)
	var tag []byte
	if code > 100 && m.ToTag() == nil {
		x.key = appendHex(x.key[:0], shards.Sum(m.TopVia().Branch)^shards.Sum(m.CallID()), 16)
		tag = x.key
	}
	x.out = parser.AppendResponseHeaders(x.out[:0], m, code, x.tmp, tag, extra)
	c.sendResponse(p.Listener, dst, p.Conn, x.out)
}

// sentByUsUnlocked is sentByUs for a caller that holds no shard lock.
func (c *Core) sentByUsUnlocked(m *parser.Message) bool {
	s := c.tbl.Shard(shards.Sum(m.CallID()))
	s.Lock()
	defer s.Unlock()
	return c.sentByUs(s, m)
}

// sendResponse sends a response to a request received on l from dst
// (respDest) over stream connection conn (0 for UDP): on that connection
// (§18.2.2), or, when it has closed, to dst, where the transport opens a
// new one. The allow-list applies as to every send.
func (c *Core) sendResponse(l *transport.Listener, dst netip.AddrPort, conn transport.ConnID, data []byte) error {
	if conn != 0 && c.conns != nil && dst.IsValid() && c.allowed(dst.Addr()) {
		err := c.conns.SendConn(conn, data)
		if err != transport.ErrNoConn {
			if err != nil {
				c.stats.sendErrs.Add(1)
			} else {
				c.tapSent(l, dst, data)
			}
			return err
		}
	}
	return c.sendTo(l, dst, data)
}

// replyFull answers 503 with Retry-After when the table is at its cap.
func (c *Core) replyFull(x *ctx, p *transport.Packet) {
	c.stats.full.Add(1)
	x.rt = append(x.rt[:0], "Retry-After: "...)
	x.rt = appendUint(x.rt, uint64(c.cfg.RetryAfter))
	x.rt = append(x.rt, "\r\n"...)
	c.replyStateless(x, p, 503, "Service Unavailable", x.rt)
}

const hexDigits = "0123456789abcdef"

func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(uint(i)*4))&15])
	}
	return dst
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, ch := range b {
		switch {
		case ch >= '0' && ch <= '9':
			v = v<<4 | uint64(ch-'0')
		case ch >= 'a' && ch <= 'f':
			v = v<<4 | uint64(ch-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func appendUint(dst []byte, n uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
