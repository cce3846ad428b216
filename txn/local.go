package txn

import (
	"errors"
	"net/netip"
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// Requests the proxy originates itself: an OPTIONS probe to a gateway, a
// REGISTER to a carrier. They are client transactions of their own (RFC
// 3261 §17.1.2, non-INVITE only), with no server transaction above them:
// the final response, or a timeout, goes to a callback instead of
// upstream. They live in a small table apart from the proxied
// transactions, and their branch says so ("z9hG4bK", the process's six
// characters, "l" and a sequence number), so that onResponse sends their
// responses here.

// OutRequest describes a request for Core.SendRequest. Its strings are
// copied into the transaction's own buffer.
type OutRequest struct {
	// Method is the request method, "OPTIONS" or another non-INVITE one.
	Method string
	// URI is the Request-URI, and the To URI unless To is set.
	URI string
	// Proto and Dst are where the request goes.
	Proto transport.Proto
	Dst   netip.AddrPort
	// From is the From URI; "" is sip:switchboard@ the sending
	// listener's advertised host.
	From string
	// To is the To URI; "" is URI.
	To string
	// Headers are extra header lines, each ending in CRLF.
	Headers string
	// Timeout is how long to wait for a final response (0: Config.FR).
	Timeout time.Duration
}

// Done receives the outcome of a request sent with SendRequest: the final
// status, and the response (valid only during the call), or 408 and nil
// when none came in time. It runs on a transport or timer goroutine, with
// a lock of the core held: it must return quickly and must not call into
// the core.
type Done func(code int, resp *parser.Message)

// ErrOwnAddress is SendRequest's answer for a destination that is one of
// our own listeners.
var ErrOwnAddress = errors.New("txn: the destination is one of our own addresses")

// localReq is one request the proxy originated.
type localReq struct {
	done     Done
	method   []byte // as in the CSeq, for matching responses
	l        *transport.Listener
	dst      netip.AddrPort
	stream   bool
	out      []byte // the request as sent
	interval int64  // ms: the next retransmission interval (timer E)
	proc     bool   // a provisional arrived: retransmit every T2
	tRetr    shards.Timer
	tTimeout shards.Timer
}

// The local branch: prefix, 'l', 16 hex digits of a sequence number.
const (
	localMark      = 'l'
	localBranchLen = prefixLen + 1 + 16
)

// Timer kinds of the local table.
const (
	kLocalRetr uint8 = iota + 1
	kLocalTimeout
)

func resetLocal(r *localReq) {
	*r = localReq{out: r.out[:0], method: r.method[:0]}
}

func (c *Core) newLocalTable() (*shards.Table[localReq], error) {
	return shards.New(shards.Config[localReq]{
		Clock:   c.clock,
		Shards:  4,
		OnTimer: c.onLocalTimer,
		Reset:   resetLocal,
	})
}

// isLocalBranch reports whether b is the branch of a request we originated.
func (c *Core) isLocalBranch(b []byte) bool {
	return len(b) == localBranchLen && b[prefixLen] == localMark && string(b[:prefixLen]) == string(c.prefix[:])
}

// SendRequest sends a request the proxy originates and calls done once
// with its final response, or with 408 when none came within the timeout.
// Requests over UDP are retransmitted (timer E). The destination must be
// inside Config.AllowOutbound and not one of our own listeners, and a
// listener must exist for its transport and address family; otherwise
// SendRequest returns an error and done is not called. INVITE is not
// supported (it would need an ACK and a CANCEL of its own).
//
// It is meant for background work (probes, registrations), not for the
// path of every message; it allocates only while the local table grows.
func (c *Core) SendRequest(req *OutRequest, done Done) error {
	switch {
	case req.Method == "" || req.Method == "INVITE" || req.Method == "ACK" || req.Method == "CANCEL":
		return errors.New("txn: SendRequest sends non-INVITE requests only, not " + req.Method)
	case req.URI == "" || done == nil:
		return errors.New("txn: SendRequest needs a URI and a done function")
	case !req.Dst.IsValid() || !c.allowed(req.Dst.Addr()):
		c.stats.sendErrs.Add(1)
		return ErrNotAllowed
	case c.isOwnAddr(req.Dst):
		return ErrOwnAddress
	}
	l := c.ls.Listener(req.Proto, req.Dst.Addr())
	if l == nil {
		return ErrNoDestination
	}
	seq := uint64(c.localSeq.Add(1))
	x := c.getCtx()
	defer c.putCtx(x)
	x.key = append(x.key[:0], c.prefix[:]...)
	x.key = append(x.key, localMark)
	x.key = appendHex(x.key, seq, 16)
	h := shards.Sum(x.key)
	s := c.locals.Shard(h)
	s.Lock()
	e, err := s.Insert(h, x.key)
	if err != nil {
		s.Unlock()
		return err
	}
	r := &e.Value
	r.done, r.l, r.dst, r.stream = done, l, req.Dst, req.Proto.Stream()
	r.method = append(r.method[:0], req.Method...)
	r.out = c.appendLocalRequest(r.out[:0], req, l, x.key, seq)
	if err := c.sendTo(l, r.dst, r.out); err != nil {
		s.Remove(e)
		s.Unlock()
		return err
	}
	if !r.stream {
		r.interval = c.t1
		s.StartTimer(e, &r.tRetr, kLocalRetr, msDur(c.t1))
	}
	timeout := c.fr
	if req.Timeout > 0 {
		timeout = ms(req.Timeout)
	}
	s.StartTimer(e, &r.tTimeout, kLocalTimeout, msDur(timeout))
	s.Unlock()
	return nil
}

// appendLocalRequest writes the request: a Via of listener l with the
// local branch, and a Call-ID and From tag made of the process prefix and
// the sequence number (unique for the process's life).
func (c *Core) appendLocalRequest(dst []byte, req *OutRequest, l *transport.Listener, branch []byte, seq uint64) []byte {
	dst = append(dst, req.Method...)
	dst = append(dst, ' ')
	dst = append(dst, req.URI...)
	dst = append(dst, " SIP/2.0\r\nVia: "...)
	dst = appendVia(dst, l, func(d []byte) []byte { return append(d, branch...) })
	dst = append(dst, ";rport\r\nMax-Forwards: 70\r\nFrom: <"...)
	if req.From != "" {
		dst = append(dst, req.From...)
	} else {
		dst = append(dst, "sip:switchboard@"...)
		dst = append(dst, l.AdvertisedHost...)
	}
	dst = append(dst, ">;tag="...)
	dst = appendHex(dst, seq, 16)
	dst = append(dst, "\r\nTo: <"...)
	if req.To != "" {
		dst = append(dst, req.To...)
	} else {
		dst = append(dst, req.URI...)
	}
	dst = append(dst, ">\r\nCall-ID: "...)
	dst = append(dst, c.prefix[prefixLen-6:]...)
	dst = append(dst, '-')
	dst = appendHex(dst, seq, 16)
	dst = append(dst, '@')
	dst = append(dst, l.AdvertisedHost...)
	dst = append(dst, "\r\nCSeq: 1 "...)
	dst = append(dst, req.Method...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, req.Headers...)
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// onLocalResponse handles a response to a request we originated: a
// provisional slows the retransmissions to T2 (§17.1.2.2), a final one
// ends the transaction and is handed to its done function.
func (c *Core) onLocalResponse(m *parser.Message) {
	branch := m.TopVia().Branch
	h := shards.Sum(branch)
	s := c.locals.Shard(h)
	s.Lock()
	e := s.Get(h, branch)
	if e == nil || string(m.CSeq().MethodRaw) != string(e.Value.method) {
		s.Unlock()
		return // late, or not ours: never forwarded
	}
	r := &e.Value
	code := m.StatusCode()
	if code < 200 {
		r.proc = true
		s.Unlock()
		return
	}
	done := r.done
	s.StopTimer(&r.tRetr)
	s.StopTimer(&r.tTimeout)
	s.Remove(e)
	s.Unlock()
	done(code, m)
}

func (c *Core) onLocalTimer(s *shards.Shard[localReq], e *shards.Entry[localReq], tm *shards.Timer) {
	r := &e.Value
	switch tm.Kind {
	case kLocalRetr:
		c.sendTo(r.l, r.dst, r.out)
		if r.proc {
			r.interval = c.t2
		} else {
			r.interval = min(2*r.interval, c.t2)
		}
		s.StartTimer(e, &r.tRetr, kLocalRetr, msDur(r.interval))
	case kLocalTimeout:
		done := r.done
		s.StopTimer(&r.tRetr)
		s.Remove(e)
		done(408, nil)
	}
}
