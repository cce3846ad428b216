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
// transaction waits for it. Edits made with ResponseEditor before the
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
	return h, nil
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
