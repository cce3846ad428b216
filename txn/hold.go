package txn

import (
	"errors"
	"net/netip"

	"switchboard/parser"
	"switchboard/shards"
)

// ErrNotHeld: HoldResponse was asked outside a Reply hook, or for a
// response that cannot be held (not a 101-299 to an INVITE, nor a 2xx to
// another request).
var ErrNotHeld = errors.New("txn: response cannot be held")

// ErrHoldExpired: Release came after the transaction gave the held
// response up at its deadline (holdDeadline); nothing is sent.
var ErrHoldExpired = errors.New("txn: held response given up at its deadline")

// HeldResponse is a provisional or 2xx response to an INVITE, or a 2xx to
// another request (an UPDATE's or PRACK's carrying an SDP answer), that a
// Reply hook kept back (Request.HoldResponse) while work off the receive path
// decides how it goes upstream: a media relay asked for the SDP answer
// the caller must see. Release sends it, with the edits of its choosing,
// from any goroutine. Allocated: holding is the slow path.
type HeldResponse struct {
	c       *Core
	ref     shards.Ref[txn]
	branch  int
	code    int
	retrans bool // a 2xx that came after the first (a retransmission, another fork)
	data    []byte
	src     netip.AddrPort
}

// HoldResponse, inside Router.Reply, keeps the response the hook runs for
// from going upstream now: the core does everything else it does for the
// response (a 2xx still ends its branch and cancels the others) but does
// not send it. The holder must call Release on the returned handle
// exactly once, soon: until then the caller sees no answer, and a 2xx's
// transaction waits for it, at most 64·T1 from the first 2xx held: then
// the caller is answered 500 and the held responses are dropped
// (holdDeadline, Stats.HeldExpired). Edits made with ResponseEditor before the
// hold are carried into the held copy. Only a 101-299 response to an
// INVITE, or a 2xx to another request, can be held (ErrNotHeld otherwise;
// a non-2xx final waits for the best-response choice, and is edited in
// place; a non-INVITE's provisional is not relayed). A 2xx that is not the
// first of its branch (the UAS's retransmission) may also be dropped by
// never releasing it: nothing waits for it.
func (r *Request) HoldResponse() (*HeldResponse, error) {
	x := r.x
	if x == nil || x.resp == nil || x.rbr == nil || r.t == nil {
		return nil, ErrNotHeld
	}
	code := x.resp.StatusCode()
	if code <= 100 || code >= 300 || !r.t.invite && code < 200 {
		return nil, ErrNotHeld
	}
	h := &HeldResponse{c: r.c, ref: r.ref, branch: int(x.rbr.idx), code: code, src: x.rsrc,
		retrans: x.rrepeat}
	if x.pedUsed && x.ped.Message() == x.resp {
		h.data = x.ped.AppendTo(nil)
		x.pedUsed = false
	} else {
		h.data = append([]byte(nil), x.resp.Bytes()...)
	}
	x.rheld = true
	if code >= 200 && !r.t.finalSent {
		r.c.startHoldDeadline(r.ref)
	}
	return h, nil
}

// holdDeadline is how long a held 2xx may wait for its Release, from the
// first 2xx held on the transaction: 64·T1, the time the callee
// retransmits a 2xx that gets no ACK before it gives the call up and
// sends BYE (RFC 3261 §13.3.1.4). Nothing else ends a transaction whose
// 2xx is held (it waits for the response it must relay, and no timer of
// its own runs), so a holder that never releases would keep it for ever.
func (c *Core) holdDeadline() int64 { return 64 * c.t1 }

// startHoldDeadline starts the deadline of a held 2xx on timer G, which an
// INVITE uses only once a non-2xx final was sent, and a non-INVITE for its
// late 100 (RFC 4320 §4.1): that 100 is given up for the deadline, the
// final being there already, only held. A second 2xx held (a
// retransmission, another fork) does not push it back. Inside a Reply
// hook: the shard is locked.
func (c *Core) startHoldDeadline(ref shards.Ref[txn]) {
	e := ref.Entry()
	if e == nil || e.Value.tG.Active() && e.Value.tG.Kind == kHeld {
		return
	}
	ref.Shard().StartTimer(e, &e.Value.tG, kHeld, msDur(c.holdDeadline()))
}

// heldExpired runs at the deadline of a held 2xx not released: the
// caller is answered 500 and every response held on the transaction is
// dropped (heldLost). The held 2xx is not sent as it was: its holder
// never approved it (a media relay's SDP missing, which would send the
// caller's media past the relay), and by now its callee has stopped
// retransmitting it and ends the call, so relaying it would connect the
// caller to a call already being torn down. The 500 ends the caller's
// INVITE; the transaction then ends by its own timers. The shard is
// locked.
func (c *Core) heldExpired(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	if t.finalSent || t.state == sTerminated {
		return // released, or another fork's 2xx went up
	}
	t.heldLost = true
	c.stats.heldExpired.Add(1)
	c.warn("txn: held response not released in time; caller answered 500", CallFields(&t.msg, t.src, "reply")...)
	c.replyLocal(x, s, e, 500, "", nil)
}

// Code is the held response's status.
func (h *HeldResponse) Code() int { return h.code }

// Retransmission reports whether the held response is a 2xx that is not
// the first of its branch (the UAS repeating it until the ACK).
func (h *HeldResponse) Retransmission() bool { return h.retrans }

// Source is the address the held response came from.
func (h *HeldResponse) Source() netip.AddrPort { return h.src }

// Bytes is the held response as received (with the hook's edits before
// the hold); read-only.
func (h *HeldResponse) Bytes() []byte { return h.data }

// Release sends the held response upstream as the core would have sent it
// (our Via removed, the client's From, To and CSeq restored, the request's
// Rewriter and Watcher), after edit, when not nil, made its changes with
// ed on m (the held copy, parsed; values given to ed must stay valid until
// Release returns). It locks the transaction's shard: call it from any
// goroutine but a hook's. ErrNoTransaction when the transaction ended
// meanwhile; the response is then lost (the UAS retransmits a 2xx).
// ErrHoldExpired, nothing sent, when a 2xx held on the transaction was not
// released within 64·T1 and the caller was answered 500 (holdDeadline).
func (h *HeldResponse) Release(edit func(m *parser.Message, ed *parser.Editor)) error {
	c := h.c
	x := c.getCtx()
	s := h.ref.Shard()
	s.Lock()
	defer func() {
		s.Unlock()
		c.putCtx(x)
	}()
	e := h.ref.Entry()
	if e == nil {
		return ErrNoTransaction
	}
	t := &e.Value
	if t.heldLost {
		return ErrHoldExpired
	}
	if h.branch >= t.nbr {
		return ErrNoTransaction
	}
	m := &x.msg // the goroutine's: nothing else is being handled on x
	if err := m.Parse(h.data); err != nil {
		return err
	}
	b := t.branch(h.branch)
	x.ped.Reset(m)
	x.pedUsed = true
	if edit != nil {
		edit(m, &x.ped)
	}
	data := c.buildUp(x, s, e, b, m)
	if h.retrans && t.finalSent {
		c.sendUp(t, data) // as a repeated 2xx is relayed: no new state
	} else {
		c.serverSend(x, s, e, data, h.code, b, m)
	}
	c.gc(s, e)
	return nil
}
