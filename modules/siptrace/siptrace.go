// Package siptrace sends the SIP messages the server receives and sends to
// HEP collectors (Homer, heplify-server, sngrep -L): OpenSIPS sip_trace
// with proto_hep, Kamailio siptrace with hep_mode_on.
//
// The capture point is the transaction core's tap (txn.Tap): every message
// the transport hands the core, and every message the core hands the
// transport, is offered to the module. What is traced depends on the mode:
// all of them, those of the transactions whose route called Trace, or
// those of a sample of Call-IDs. A traced message is copied into a slot of
// a bounded ring allocated at start (queue.go), with its time, and nothing
// else happens on the SIP path. One goroutine, waking every few
// milliseconds, encodes what accumulated as HEP3 packets into a buffer it
// reuses and sends them to every collector in batches (sendmmsg). A full
// ring drops the message and counts it: a dead or slow collector never
// slows SIP down. Without collectors, or in mode off, no tap is installed and
// the core pays one atomic load per message.
package siptrace

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/transport"
)

// Settings are the siptrace section of the configuration.
type Settings struct {
	// Collectors are the HEP destinations: "ip:port" or "udp:ip:port"
	// (HEP over UDP, the usual), "tcp:ip:port". Each must be inside
	// outbound.allow. Empty (the default): nothing is traced.
	Collectors []string `yaml:"collectors"`
	// Mode is all (every message), route (the transactions whose route
	// called Trace), sample (the messages of a share of the Call-IDs,
	// SampleRate) or off. Default all.
	Mode string `yaml:"mode"`
	// SampleRate is the share of Call-IDs traced in mode sample, above 0
	// and at most 1. Default 0.1.
	SampleRate float64 `yaml:"sample_rate"`
	// NodeID is the capture agent id in each packet (Homer's node;
	// OpenSIPS hep_capture_id, Kamailio hep_capture_id). Default 1.
	NodeID int64 `yaml:"node_id"`
	// Password is the capture password (HEP auth key) the collector
	// checks; empty sends none.
	Password string `yaml:"password"`
	// QueueSize is the number of messages that can wait for the sender
	// (rounded up to a power of two). Default 1024.
	QueueSize int `yaml:"queue_size"`
	// MaxMessage is the size of each queue slot: a longer message is
	// not traced (counted). Default 8192. The queue takes QueueSize ×
	// MaxMessage bytes (8 MiB by default), allocated when collectors are
	// configured.
	MaxMessage int `yaml:"max_message"`
	// Logs sends the server's log lines about a call (those with a
	// call_id: warnings, and every line of a trace.start trace) as HEP
	// type 100 packets correlated to the Call-ID, so that Homer shows
	// them with the call. Default false.
	Logs bool `yaml:"logs"`
}

// DefaultSettings are the defaults documented in docs/configuration.md.
func DefaultSettings() *Settings {
	return &Settings{Mode: "all", SampleRate: 0.1, NodeID: 1, QueueSize: 1024, MaxMessage: 8192}
}

// Limits of the settings.
const (
	maxCollectors = 16
	minQueue      = 16
	maxQueue      = 1 << 20
	minMessage    = 512
	// maxMessage leaves room in the 64 KiB HEP packet for the chunks and
	// a Call-ID of up to 1 KiB; a longer Call-ID in a message that long
	// is counted as too large.
	maxMessage  = 64000
	maxPassword = 256
)

type mode uint8

const (
	modeOff mode = iota
	modeAll
	modeRoute
	modeSample
)

var modeNames = [...]string{modeOff: "off", modeAll: "all", modeRoute: "route", modeSample: "sample"}

func (m mode) String() string { return modeNames[m] }

func parseMode(s string) (mode, bool) {
	for m, n := range modeNames {
		if n == s {
			return mode(m), true
		}
	}
	return 0, false
}

func checkSettings(v any) error {
	s := v.(*Settings)
	if _, err := parseCollectors(s.Collectors); err != nil {
		return err
	}
	switch {
	case !validMode(s.Mode):
		return modules.Errorf("mode", "must be all, route, sample or off, not %q", s.Mode)
	case !(s.SampleRate > 0 && s.SampleRate <= 1):
		return modules.Errorf("sample_rate", "must be above 0 and at most 1, not %v", s.SampleRate)
	case s.NodeID < 0 || s.NodeID > math.MaxUint32:
		return modules.Errorf("node_id", "must be between 0 and 4294967295, not %d", s.NodeID)
	case len(s.Password) > maxPassword:
		return modules.Errorf("password", "longer than %d bytes", maxPassword)
	case s.QueueSize < minQueue || s.QueueSize > maxQueue:
		return modules.Errorf("queue_size", "must be between %d and %d, not %d", minQueue, maxQueue, s.QueueSize)
	case s.MaxMessage < minMessage || s.MaxMessage > maxMessage:
		return modules.Errorf("max_message", "must be between %d and %d bytes, not %d", minMessage, maxMessage, s.MaxMessage)
	}
	return nil
}

func validMode(s string) bool { _, ok := parseMode(s); return ok }

// parseCollectors reads the collectors list; errors name the entry.
func parseCollectors(list []string) ([]collectorAddr, error) {
	if len(list) > maxCollectors {
		return nil, modules.Errorf("collectors", "at most %d collectors, not %d", maxCollectors, len(list))
	}
	out := make([]collectorAddr, 0, len(list))
	seen := map[string]int{}
	for i, s := range list {
		key := "collectors[" + strconv.Itoa(i) + "]"
		c, err := parseCollector(s)
		if err != nil {
			return nil, modules.Errorf(key, "%q: %v", s, err)
		}
		if j, dup := seen[c.String()]; dup {
			return nil, modules.Errorf(key, "%q is collectors[%d] again", s, j)
		}
		seen[c.String()] = i
		out = append(out, c)
	}
	return out, nil
}

func init() {
	modules.Register(modules.Definition{
		Name:     "siptrace",
		Doc:      "HEP v3 capture: the SIP messages received and sent, to Homer collectors over UDP or TCP",
		Settings: func() any { return DefaultSettings() },
		Check:    checkSettings,
		// At config load: a reload that leaves a collector outside
		// outbound.allow is refused whole, whether or not this section
		// changed (the list is applied live).
		CheckOutbound: checkOutbound,
		New:           newModule,
	})
}

// checkOutbound refuses a collector outside outbound.allow: the server
// sends nowhere else.
func checkOutbound(v any, allowed func(netip.Addr) bool) error {
	addrs, err := parseCollectors(v.(*Settings).Collectors)
	if err != nil {
		return err
	}
	for i, a := range addrs {
		if !allowed(a.addr.Addr()) {
			return modules.Errorf("collectors["+strconv.Itoa(i)+"]", "%s is outside outbound.allow: the server sends nowhere else", a.addr)
		}
	}
	return nil
}

// SipTrace is the module. It implements txn.Tap; Trace is its route
// function.
type SipTrace struct {
	host *modules.Host

	// state is what the tap reads per message, swapped whole.
	state atomic.Pointer[state]
	// colls are the open collectors, read by the sender per packet.
	colls  atomic.Pointer[collectorSet]
	traced *txSet

	// q is made the first time collectors are configured, and kept.
	q atomic.Pointer[queue]

	tooLarge, full, encodeErr atomic.Uint64
	// flushed counts the messages handed to the collectors: with
	// encodeErr, every message taken from the queue.
	flushed atomic.Uint64

	mu      sync.Mutex // Start, Stop, Reload, the set command
	cur     Settings   // as configured (New, Reload)
	tapOn   bool       // the tap is installed on the core
	started bool
	stop    chan struct{}
	done    chan struct{}
}

// state is the part of the settings the SIP path reads.
type state struct {
	mode      mode
	rate      float64
	threshold uint64 // sample: a Call-ID hashing below it is traced
	nodeID    uint32
	password  []byte
	logs      bool // send log lines (Log)
}

func newState(m mode, rate float64, nodeID int64, password string, logs bool) *state {
	st := &state{mode: m, rate: rate, nodeID: uint32(nodeID), password: []byte(password), logs: logs}
	if rate >= 1 {
		st.threshold = math.MaxUint64
	} else {
		st.threshold = uint64(rate * (1 << 64))
	}
	return st
}

func newModule(h *modules.Host, v any) (modules.Instance, error) {
	s := v.(*Settings)
	if h.Clock == nil {
		return nil, errors.New("siptrace needs the server's clock")
	}
	t := &SipTrace{host: h, traced: newTxSet(txSetSize), cur: *s}
	m, _ := parseMode(s.Mode)
	t.state.Store(newState(m, s.SampleRate, s.NodeID, s.Password, s.Logs))
	t.registerCommands(h)
	t.registerMetrics(h)
	return t, nil
}

// Start opens the collectors, starts the sender and installs the tap, when
// collectors are configured. A collector outside outbound.allow stops the
// start.
func (t *SipTrace) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	return t.applyLocked(&t.cur, t.state.Load())
}

// Stop removes the tap, sends what is queued and closes the collectors.
// The server calls it after the transport and the core have stopped.
func (t *SipTrace) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setTapLocked(false)
	if t.stop != nil {
		close(t.stop)
		<-t.done
		t.stop = nil
	}
	if set := t.colls.Swap(nil); set != nil {
		for _, c := range set.list {
			c.close()
		}
	}
	t.started = false
}

// CheckReload names queue_size and max_message once the queue exists
// (keepRestartKeysLocked), and refuses collectors that do not parse. Their
// addresses were checked against the new outbound.allow when the file was
// read (CheckOutbound); whether a new collector's socket opens is known
// only when Reload opens it.
func (t *SipTrace) CheckReload(v any) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := *v.(*Settings)
	keys := t.keepRestartKeysLocked(&s)
	if _, err := parseCollectors(s.Collectors); err != nil {
		return err
	}
	return modules.NeedRestart(keys...)
}

// keepRestartKeysLocked writes into s the values in force of queue_size
// and max_message where s changes them once the queue exists (it is made
// with them: before, they are taken with the first collector), and
// returns those keys. t.mu is held.
func (t *SipTrace) keepRestartKeysLocked(s *Settings) (keys []string) {
	if t.q.Load() == nil {
		return nil
	}
	keys = modules.KeepInForce(keys, "queue_size", &s.QueueSize, t.cur.QueueSize)
	keys = modules.KeepInForce(keys, "max_message", &s.MaxMessage, t.cur.MaxMessage)
	return keys
}

// Reload takes new settings (SIGHUP). queue_size and max_message keep
// their values in force once the queue exists (keepRestartKeysLocked); a
// collector that cannot be opened keeps the settings in force.
func (t *SipTrace) Reload(v any) error {
	s := v.(*Settings)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keepRestartKeysLocked(s)
	if _, err := parseCollectors(s.Collectors); err != nil {
		return err
	}
	m, _ := parseMode(s.Mode)
	if err := t.applyLocked(s, newState(m, s.SampleRate, s.NodeID, s.Password, s.Logs)); err != nil {
		return err
	}
	t.cur = *s
	return nil
}

// applyLocked opens the collectors of s (keeping those already open),
// makes the queue and the sender if they do not exist yet, and installs or
// removes the tap for st. t.mu is held.
func (t *SipTrace) applyLocked(s *Settings, st *state) error {
	if !t.started {
		t.state.Store(st)
		return nil
	}
	addrs, err := parseCollectors(s.Collectors)
	if err != nil {
		return err
	}
	for i, a := range addrs {
		if !t.host.Originator.Allowed(a.addr.Addr()) {
			return modules.Errorf("collectors["+strconv.Itoa(i)+"]", "%s is outside outbound.allow: the server sends nowhere else", a.addr)
		}
	}
	set, gone, err := openCollectors(addrs, t.colls.Load(), t.host.Warn)
	if err != nil {
		return err
	}
	if len(addrs) > 0 && t.q.Load() == nil {
		q := newQueue(ceilPow2(s.QueueSize), s.MaxMessage)
		t.stop, t.done = make(chan struct{}), make(chan struct{})
		go t.run(q, t.stop, t.done)
		t.q.Store(q)
	}
	t.colls.Store(set)
	for _, c := range gone {
		c.close()
	}
	t.state.Store(st)
	return t.setTapLocked(len(set.list) > 0 && st.mode != modeOff)
}

// setTapLocked installs or removes the core's tap.
func (t *SipTrace) setTapLocked(on bool) error {
	if on == t.tapOn {
		return nil
	}
	var err error
	if on {
		err = t.host.Originator.SetTap(t)
	} else {
		err = t.host.Originator.SetTap(nil)
	}
	if err != nil && !errors.Is(err, modules.ErrNoCore) {
		return err
	}
	t.tapOn = on
	return nil
}

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// ---- the tap: on the SIP path ----

// Received is the tap's view of a message the core received. Keep-alives
// (CRLFs, STUN) are not SIP and are not traced; a malformed message that
// looks like SIP is.
func (t *SipTrace) Received(data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto, m *parser.Message) {
	if m == nil && !looksLikeSIP(data) {
		return
	}
	if !t.wanted(data, m) {
		return
	}
	var local netip.AddrPort
	if l != nil {
		local = l.Local
	}
	t.capture(proto, src, local, data)
}

// looksLikeSIP reports whether data, after leading CRs and LFs, starts
// with a letter, as a request method or "SIP/2.0" does: a UDP keep-alive
// (CRLFs, a STUN binding request) does not.
func looksLikeSIP(data []byte) bool {
	for _, c := range data {
		switch {
		case c == '\r' || c == '\n':
			continue
		case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
			return true
		}
		return false
	}
	return false
}

// Sent is the tap's view of a message the core sent.
func (t *SipTrace) Sent(l *transport.Listener, dst netip.AddrPort, data []byte) {
	if !t.wanted(data, nil) {
		return
	}
	t.capture(l.Proto, l.Local, dst, data)
}

// wanted applies the mode to a message; m is its parse when the caller
// has one.
func (t *SipTrace) wanted(data []byte, m *parser.Message) bool {
	st := t.state.Load()
	switch st.mode {
	case modeAll:
		return true
	case modeSample, modeRoute:
		var callID []byte
		var cseq uint32
		if m != nil {
			callID, cseq = m.CallID(), m.CSeq().Num
		} else {
			callID, cseq = scanHeaders(data)
		}
		if len(callID) == 0 {
			return false
		}
		if st.mode == modeSample {
			return xxhash.Sum64(callID) < st.threshold
		}
		return t.traced.has(txKey(callID, cseq))
	}
	return false
}

// capture copies one message into the queue. It allocates nothing and
// never waits: a full queue or a message longer than a slot is counted
// and dropped. The capture time is read here, once per traced message,
// so that it is the time of the message and not of its turn in the queue;
// a message not traced reads no clock.
func (t *SipTrace) capture(proto transport.Proto, src, dst netip.AddrPort, data []byte) {
	q := t.q.Load()
	if q == nil {
		return
	}
	if len(data) > q.max {
		t.tooLarge.Add(1)
		return
	}
	now := time.Now()
	s, pos := q.claim()
	if s == nil {
		t.full.Add(1)
		return
	}
	s.proto, s.src, s.dst = proto, src, dst
	s.sec, s.nsec = now.Unix(), int32(now.Nanosecond())
	s.typ, s.cid = 0, 0
	s.buf = append(s.buf[:0], data...)
	q.publish(s, pos)
}

// LogsOn reports whether Log sends anything now: siptrace.logs is on, the
// mode is not off and a collector is set.
func (t *SipTrace) LogsOn() bool {
	st := t.state.Load()
	return st.logs && st.mode != modeOff && t.q.Load() != nil
}

// unspecified stands for the addresses of a log line that names none.
var unspecified = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)

// Log sends a log line about the call callID as a HEP type 100 packet
// correlated to it (OpenSIPS hep's log capture, Kamailio
// siptrace hlog()), when siptrace.logs is on and a collector is set: in
// modes all and route every call's lines, in mode sample those of the
// sampled Call-IDs, in mode off none. src is the address the line is
// about (the request's source), unspecified when none. The line is
// copied into the queue like a message, never waited for. Log lines are
// not the SIP path: the server logs them on error paths and traces.
func (t *SipTrace) Log(callID []byte, src netip.AddrPort, line []byte) {
	st := t.state.Load()
	if !st.logs || len(callID) == 0 || len(callID) > 1024 || st.mode == modeOff {
		return
	}
	if st.mode == modeSample && xxhash.Sum64(callID) >= st.threshold {
		return
	}
	q := t.q.Load()
	if q == nil {
		return
	}
	if len(callID)+len(line) > q.max {
		t.tooLarge.Add(1)
		return
	}
	if !src.IsValid() {
		src = unspecified
	}
	now := time.Now()
	s, pos := q.claim()
	if s == nil {
		t.full.Add(1)
		return
	}
	s.proto, s.src, s.dst = transport.UDP, src, unspecified
	s.sec, s.nsec = now.Unix(), int32(now.Nanosecond())
	s.typ, s.cid = ProtoTypeLog, uint16(len(callID))
	s.buf = append(append(s.buf[:0], callID...), line...)
	q.publish(s, pos)
}

// Trace is the route function of mode route (OpenSIPS sip_trace with
// the transaction scope "t", Kamailio sip_trace() with trace mode t): it
// traces the request being routed, as received, and every later message of
// its transaction (same Call-ID and CSeq number: the relayed request, the
// 100 Trying, the responses both ways, its CANCEL and ACK,
// retransmissions). Messages handled before the call are not traced: a
// route that suspends and calls Trace after the wait misses what came
// meanwhile. In the other modes it does nothing. Safe on a nil *SipTrace
// (the module not compiled in).
func (t *SipTrace) Trace(c *routing.Ctx) {
	if t == nil {
		return
	}
	if t.state.Load().mode != modeRoute {
		return
	}
	m := c.Msg()
	if !t.traced.add(txKey(m.CallID(), m.CSeq().Num), t.host.Clock.Now()/1000) {
		return // traced already: the tap copied it when it came in
	}
	var local netip.AddrPort
	if l := c.Listener(); l != nil {
		local = l.Local
	}
	t.capture(c.Proto(), c.R.Src, local, m.Buffer())
}

// txKey is the key of a transaction in the traced set.
func txKey(callID []byte, cseq uint32) uint64 {
	return xxhash.Sum64(callID) ^ uint64(cseq)*0x9e3779b97f4a7c15
}

// ---- the sender goroutine ----

// The sender does not wake per message: it sleeps flushMin between
// batches while there is traffic, longer (doubling up to flushMax) while
// there is none, and a producer wakes it early only when the queue is half
// full. Each wake-up sends what accumulated, in batches of up to batchMax
// packets per system call. The capture time is taken by the tap, so the
// wait does not change it.
const (
	flushMin = 2 * time.Millisecond
	flushMax = 100 * time.Millisecond
)

// run sends what producers queue until stop, then what is left.
func (t *SipTrace) run(q *queue, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	b := newBatch()
	wait := flushMin
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		n := t.drain(q, b)
		select {
		case <-stop:
			t.drain(q, b)
			return
		default:
		}
		if n > 0 {
			wait = flushMin
		} else {
			wait = min(2*wait, flushMax)
		}
		if !q.park() {
			continue // half full already
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-q.wake:
		case <-stop:
		}
		q.unpark()
	}
}

// drain encodes and sends everything queued, a batch at a time, and
// returns how many messages it took.
func (t *SipTrace) drain(q *queue, b *batch) int {
	total := 0
	for {
		b.reset()
		st := t.state.Load()
		for {
			s := q.peek()
			if s == nil || !t.encode(b, s, st) {
				break
			}
			q.release(s)
			total++
		}
		if b.len() == 0 {
			return total
		}
		t.flush(b)
		t.flushed.Add(uint64(b.len()))
	}
}

// encode appends the slot's packet to the batch, or reports that the
// batch is full. A message too large for a HEP packet is counted and
// skipped.
func (t *SipTrace) encode(b *batch, s *slot, st *state) bool {
	var callID, payload []byte
	if s.typ == ProtoTypeLog {
		callID, payload = s.buf[:s.cid], s.buf[s.cid:]
	} else {
		callID, _ = scanHeaders(s.buf)
		payload = s.buf
	}
	r := Record{
		Proto: s.proto, Src: s.src, Dst: s.dst,
		Sec: uint32(s.sec), Usec: uint32(s.nsec / 1000),
		NodeID: st.nodeID, Password: st.password, CallID: callID, Payload: payload, Type: s.typ,
	}
	n := EncodedLen(&r)
	if n > maxHEP {
		t.encodeErr.Add(1)
		return true
	}
	if !b.fits(n) {
		return false
	}
	b.buf, _ = AppendHEP3(b.buf, &r)
	b.ends = append(b.ends, len(b.buf))
	return true
}

// flush sends the batch to every collector. It allocates nothing
// (TestCaptureNoAllocs).
func (t *SipTrace) flush(b *batch) {
	set := t.colls.Load()
	if set == nil {
		return
	}
	now := time.Now()
	for _, c := range set.list {
		c.sendBatch(b, now)
	}
}
