package txn

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// Requests the proxy originates itself: OPTIONS probes of gateways and
// dispatcher destinations, a registrant's REGISTER to a carrier. They are
// few (a handful a second at most) and off the receive path, so they get a
// simple client transaction of their own (RFC 3261 §17.1.2, non-INVITE):
// a map of live requests under one lock and time.AfterFunc timers, not the
// sharded table. Their Via branch carries a marker of its own so that a
// response is told apart from the responses of relayed requests before any
// table is searched.

// LocalRequest is a request the proxy sends as a user agent client.
type LocalRequest struct {
	// Proto and Dst are where it goes; Dst must be inside the outbound
	// allow-list.
	Proto transport.Proto
	Dst   netip.AddrPort
	// Message is the whole request without a Via header, CRLF line ends,
	// Content-Length included: the core adds the top Via of the listener
	// it sends from, with a branch of its own. Methods other than INVITE
	// and ACK (non-INVITE transaction rules: retransmitted on UDP every
	// T1 doubling to T2, given up after 64·T1).
	Message []byte
	// Source, when set, is the local address of the listener to send
	// from (of Proto): a NAT keepalive must leave from the socket the
	// phone registered to, the only one its NAT lets in. The zero value,
	// or an address no listener of Proto has, lets the core choose by
	// the destination's address family.
	Source netip.AddrPort
	// Timeout, when above zero and below 64·T1, ends the request with
	// 408 after it (a keepalive that waits for the next one rather than
	// for 32 s); retransmissions stop with it.
	Timeout time.Duration
	// Once sends the request once over UDP, without timer E's
	// retransmissions: a keepalive whose retry is the next keepalive, and
	// which must not send a peer several packets for one (a REGISTER
	// from a spoofed source makes the proxy ping that source).
	Once bool
}

// LocalDone receives the outcome of a local request once: the final
// response (resp valid only during the call), or code 408 with a nil resp
// when no final response came within 64·T1, or 503 when it could not be
// sent.
type LocalDone func(code int, resp *parser.Message)

// ErrLocalMethod is returned for an INVITE or ACK given to SendLocal.
var ErrLocalMethod = errors.New("txn: SendLocal sends non-INVITE requests only")

// localMarker follows the core's branch prefix in the branch of a local
// request; stateful branches have a hex digit there.
const localMarker = 'L'

type localTxn struct {
	l        *transport.Listener
	dst      netip.AddrPort
	callID   string // what a response must carry, beside its branch
	cseq     uint32
	data     []byte
	done     LocalDone
	interval time.Duration
	retr     *time.Timer
	timeout  *time.Timer
}

type localTable struct {
	mu   sync.Mutex
	live map[string]*localTxn
}

// SendLocal sends r as a client transaction of the proxy's own and calls
// done with its outcome, from another goroutine. An error means nothing
// was sent and done will not be called.
func (c *Core) SendLocal(r LocalRequest, done LocalDone) error {
	method, _, _ := bytes.Cut(r.Message, []byte(" "))
	if string(method) == "INVITE" || string(method) == "ACK" || bytes.HasPrefix(method, []byte("SIP/")) {
		return ErrLocalMethod
	}
	eol := bytes.Index(r.Message, []byte("\r\n"))
	if eol < 0 {
		return parser.ErrBadStartLine
	}
	if !r.Dst.IsValid() || !c.allowed(r.Dst.Addr()) {
		return ErrNotAllowed
	}
	l := c.sourceListener(r.Proto, r.Source, r.Dst.Addr())
	if l == nil {
		return ErrNoDestination
	}
	t := &localTxn{l: l, dst: r.Dst, done: done, interval: msDur(c.t1)}
	timeout := msDur(64 * c.t1)
	if r.Timeout > 0 && r.Timeout < timeout {
		timeout = r.Timeout
	}
	lt := &c.locals
	lt.mu.Lock()
	if lt.live == nil {
		lt.live = map[string]*localTxn{}
	}
	// The branch is random, not a count: the prefix is in the Via of every
	// request we relay, and a response with a branch an attacker could
	// guess would end a gateway's probe as it likes (localResponse checks
	// where it came from too).
	var branch []byte
	for branch == nil || lt.live[string(branch)] != nil {
		var r [8]byte
		_, _ = rand.Read(r[:])
		branch = append(append(c.prefix[:len(c.prefix):len(c.prefix)], localMarker), appendHex(nil, binary.LittleEndian.Uint64(r[:]), 16)...)
	}
	key := string(branch)
	via := appendVia(nil, l, func(dst []byte) []byte { return append(dst, branch...) })
	t.data = make([]byte, 0, len(r.Message)+len(via)+8)
	t.data = append(t.data, r.Message[:eol+2]...)
	t.data = append(t.data, "Via: "...)
	t.data = append(t.data, via...)
	t.data = append(t.data, "\r\n"...)
	t.data = append(t.data, r.Message[eol+2:]...)
	var m parser.Message
	if err := m.Parse(t.data); err != nil {
		lt.mu.Unlock()
		return err
	}
	t.callID, t.cseq = string(m.CallID()), m.CSeq().Num
	lt.live[key] = t
	if !l.Proto.Stream() && !r.Once {
		t.retr = time.AfterFunc(t.interval, func() { c.retransmitLocal(key) })
	}
	t.timeout = time.AfterFunc(timeout, func() { c.endLocal(key, 408, nil) })
	lt.mu.Unlock()
	if err := c.sendTo(l, r.Dst, t.data); err != nil {
		c.endLocal(key, 503, nil)
	}
	return nil
}

// retransmitLocal resends a local request over UDP (timer E).
func (c *Core) retransmitLocal(key string) {
	lt := &c.locals
	lt.mu.Lock()
	t := lt.live[key]
	if t == nil {
		lt.mu.Unlock()
		return
	}
	t.interval = min(2*t.interval, msDur(c.t2))
	t.retr.Reset(t.interval)
	lt.mu.Unlock()
	c.sendTo(t.l, t.dst, t.data)
}

// endLocal ends a local request once and reports its outcome.
func (c *Core) endLocal(key string, code int, resp *parser.Message) {
	lt := &c.locals
	lt.mu.Lock()
	t := lt.live[key]
	if t != nil {
		delete(lt.live, key)
		if t.retr != nil {
			t.retr.Stop()
		}
		t.timeout.Stop()
	}
	lt.mu.Unlock()
	if t != nil {
		t.done(code, resp)
	}
}

// isLocalBranch reports whether a response's top branch is one of our
// local requests'.
func (c *Core) isLocalBranch(b []byte) bool {
	return len(b) > len(c.prefix) && string(b[:len(c.prefix)]) == string(c.prefix[:]) && b[len(c.prefix)] == localMarker
}

// localResponse handles a response to a local request: a provisional
// slows the retransmissions to T2 (§17.1.2.2), a final one ends it. It
// counts only when it comes from where the request went (over a stream,
// the connection's peer) and names the request's Call-ID and CSeq: a
// probe's outcome (a gateway up or down) is not anyone's to forge.
func (c *Core) localResponse(m *parser.Message, src netip.AddrPort) {
	if !c.isUsHostPort(m.TopVia().Host, m.TopVia().Port, m.TopVia().Transport) {
		return
	}
	key := string(m.TopVia().Branch)
	lt := &c.locals
	lt.mu.Lock()
	t := lt.live[key]
	if t == nil || src.Addr().Unmap() != t.dst.Addr().Unmap() || src.Port() != t.dst.Port() ||
		string(m.CallID()) != t.callID || m.CSeq().Num != t.cseq {
		lt.mu.Unlock()
		if t != nil {
			c.stats.forgedLocal.Add(1)
		}
		return
	}
	if code := m.StatusCode(); code < 200 {
		if t.retr != nil {
			t.interval = msDur(c.t2)
			t.retr.Reset(t.interval)
		}
		lt.mu.Unlock()
		return
	}
	lt.mu.Unlock()
	c.endLocal(key, m.StatusCode(), m)
}

// closeLocals ends every local request (the core is closing): each gets
// 503, as when its send failed.
func (c *Core) closeLocals() {
	lt := &c.locals
	lt.mu.Lock()
	keys := make([]string, 0, len(lt.live))
	for k := range lt.live {
		keys = append(keys, k)
	}
	lt.mu.Unlock()
	for _, k := range keys {
		c.endLocal(k, 503, nil)
	}
}

// sourceListener returns the listener of proto bound to source, or, when
// source is zero or no listener has it, the one chosen by dst.
func (c *Core) sourceListener(proto transport.Proto, source netip.AddrPort, dst netip.Addr) *transport.Listener {
	if source.IsValid() {
		for _, l := range c.ls.Listeners() {
			if l.Proto == proto && l.Local == source {
				return l
			}
		}
	}
	return c.ls.Listener(proto, dst)
}

// SendKeepalive sends data as it is, without a transaction, to dst over
// proto from the listener bound to source (chosen by dst when none is):
// the keep-alives of RFC 5626 §4.4.1 and nathelper (CRLF CRLF, four zero
// bytes) that hold a NAT binding open. dst must be inside the outbound
// allow-list.
func (c *Core) SendKeepalive(proto transport.Proto, source, dst netip.AddrPort, data []byte) error {
	l := c.sourceListener(proto, source, dst.Addr())
	if l == nil {
		return ErrNoDestination
	}
	return c.sendTo(l, dst, data)
}

// ListenerFor returns the listener a local request to dst over proto
// leaves from, nil when there is none: a module writes a Contact naming it
// into the request it gives SendLocal.
func (c *Core) ListenerFor(proto transport.Proto, dst netip.Addr) *transport.Listener {
	return c.ls.Listener(proto, dst)
}
