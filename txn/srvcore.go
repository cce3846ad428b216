package txn

import (
	"net/netip"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/sipdns"
	"switchboard/transport"
)

// MaxAttempts bounds the targets of a resolved next hop that one branch
// tries (RFC 3263 §4.3 fail-over), of the sipdns.MaxTargets resolution
// gives.
const MaxAttempts = 4

// A branch whose next hop is a hostname gets the list of targets RFC 3263
// resolution gave (package sipdns) and tries them in order (§4.3): when a target
// cannot be sent to (a send error at once, or a stream connection that
// could not be opened, sendfail.go), or stays silent until timer B/F, the
// branch moves on to the next target as a new client transaction: new Via
// branch (the attempt is part of it), timers started again. Only when no
// target is left (at most MaxAttempts are tried) does the branch end,
// with 503 or 408, for the route's failure handling. A branch that
// received anything, was canceled, or belongs to a request already
// answered does not move.

// failover is a branch's resolved targets and how many it tried.
type failover struct {
	targets []sipdns.Target // shared with nobody: a fresh list per resolution
	next    uint8           // index of the next target in targets
	tried   uint8           // targets sent to (or attempted)
}

// attempt is the number of the current try (0 for the first), carried in
// the branch parameter.
func (f *failover) attempt() int { return max(int(f.tried)-1, 0) }

// triedFrom reports whether src is the address of a target tried so far.
func (f *failover) triedFrom(src netip.AddrPort) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	for _, tg := range f.targets[:min(int(f.next), len(f.targets))] {
		if netip.AddrPortFrom(tg.Addr.Addr().Unmap(), tg.Addr.Port()) == src {
			return true
		}
	}
	return false
}

// nextHopQuery turns a URI's next hop into a resolver query, with the
// transports we have listeners for.
func (c *Core) nextHopQuery(h *hop) sipdns.NextHop {
	var sup sipdns.Protos
	for _, l := range c.ls.Listeners() {
		sup = sup.With(l.Proto)
	}
	if sup == 0 {
		sup = sup.With(transport.UDP) // no listener yet: the send will fail anyway
	}
	return sipdns.NextHop{Host: string(h.host), Port: h.port, Proto: h.proto, ProtoSet: h.protoSet, Secure: h.secure, Supported: sup}
}

// resolve resolves a branch's next hop off the locked path and resumes
// the branch. The shard is locked by the caller; the callback locks it
// again and checks the transaction and branch are still the same.
func (c *Core) resolve(ref shards.Ref[txn], id uint32, idx int, q sipdns.NextHop) {
	c.res.Resolve(q, func(ts []sipdns.Target, err error) {
		s := ref.Shard()
		s.Lock()
		defer s.Unlock()
		e := ref.Entry()
		if e == nil || e.Value.id != id || idx >= e.Value.nbr {
			return
		}
		t := &e.Value
		b := t.branch(idx)
		if b.state != bResolving {
			return
		}
		x := c.getCtx()
		defer c.putCtx(x)
		switch {
		case err != nil:
			c.warn("txn: next hop did not resolve", append(CallFields(&t.msg, t.src, "request"), "host", q.Host, "err", err)...)
			c.branchFailed(s, e, b, 503)
		case t.canceled:
			c.branchFailed(s, e, b, 487)
		default:
			c.sendTargets(x, s, e, c.hook(x, s, e), b, ts)
		}
		c.checkDone(x, s, e)
		c.gc(s, e)
	})
}

// sendTargets sends branch b to the first usable of ts, failing over on
// send errors. The shard is locked.
func (c *Core) sendTargets(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request, b *Branch, ts []sipdns.Target) bool {
	b.fo = failover{targets: ts}
	if !c.nextTarget(e, b) {
		c.warn("txn: no usable target for next hop", append(CallFields(&e.Value.msg, e.Value.src, "request"), "host", string(b.host), "targets", len(ts))...)
		c.branchFailed(s, e, b, 503)
		return false
	}
	return c.sendBranch(x, s, e, r, b)
}

// nextTarget points b at its next target. Targets we cannot send to (no
// listener for the transport and address family, or outside
// Config.AllowOutbound) are skipped without counting as an attempt. It
// reports false when no target is left or MaxAttempts were made.
func (c *Core) nextTarget(e *shards.Entry[txn], b *Branch) bool {
	f := &b.fo
	for int(f.next) < len(f.targets) && f.tried < MaxAttempts {
		tg := f.targets[f.next]
		f.next++
		a := tg.Addr.Addr()
		if !c.allowed(a) {
			c.stats.sendErrs.Add(1)
			continue
		}
		if c.ls.Listener(tg.Proto, a) == nil {
			continue
		}
		f.tried++
		b.proto, b.dst = tg.Proto, tg.Addr
		return true
	}
	return false
}

// failOver moves branch b to its next target after a transport error or
// a timeout with nothing received. It reports false, leaving the branch
// alone, when the branch must end instead: no target left, a response
// came, the request was canceled or answered. When every remaining
// target fails at once the branch ends with 503 here and the result is
// still true. The shard is locked; the caller runs checkDone.
func (c *Core) failOver(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch) bool {
	t := &e.Value
	if b.gotProv || b.fo.targets == nil || t.canceled || b.cancelWant || t.got2xx || t.got6xx || t.finalSent {
		return false
	}
	from := b.dst
	if !c.nextTarget(e, b) {
		return false
	}
	c.warn("txn: next hop target failed, trying the next", append(CallFields(&t.msg, t.src, "request"), "host", string(b.host), "from", from.String(), "to", b.dst.String())...)
	s.StopTimer(&b.tRetr)
	s.StopTimer(&b.tTimeout)
	s.StopTimer(&b.tC)
	c.sendBranch(x, s, e, c.hook(x, s, e), b)
	return true
}

// staleResponse handles a response to an attempt the branch failed over
// from (a client transaction given up): a 2xx to an INVITE goes upstream
// like any late 2xx (the caller ACKs it and ends that dialog); anything
// else is dropped. Only an earlier attempt's, from one of the targets
// tried before: the attempt is one digit of a branch every relayed
// request shows, and the ACK of a forged final, sent to its source with
// the request's whole Route set, would make the proxy a reflector.
func (c *Core) staleResponse(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, p *transport.Packet, att, code int) {
	t := &e.Value
	if att >= b.fo.attempt() || !b.fo.triedFrom(p.Src) {
		c.stats.staleForged.Add(1)
		return
	}
	switch {
	case !t.invite || code < 200:
	case code < 300:
		if t.respL != nil {
			c.sendUp(t, c.buildUp(x, s, e, b, &x.msg))
		}
	case x.aux.Parse(b.out) == nil:
		// The given-up attempt's client transaction would ACK its final
		// response (§17.1.1.3); unanswered, the target retransmits it for
		// 64·T1. The ACK is the current attempt's request turned into an
		// ACK with the old attempt's Via, sent where the response came from.
		m := &x.msg
		x.tmp = appendHopRequest(x.tmp[:0], &x.aux, "ACK", m.Get(parser.HdrTo), m.TopVia().Raw)
		c.sendTo(p.Listener, p.Src, x.tmp)
	}
}
