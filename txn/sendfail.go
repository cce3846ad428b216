package txn

import (
	"net/netip"

	"switchboard/shards"
	"switchboard/transport"
)

// A stream send can fail after it returned nil: the request waits on a
// connection being opened, and the connect or the TLS handshake fails.
// The transport then hands back the request's tag (SendFailed), and the
// branch ends with 503 as if the send had failed at once (§8.1.3.1:
// a transport error is a 503), instead of waiting for timer B, F or C.
//
// The tag finds the branch the way a response does, without a table scan:
// the shard, the transaction's hash and id, and the branch index. Like the
// resolver's callback, the completion checks under the shard lock that the
// transaction is still the one that sent, and that the branch still waits
// for an answer from that destination.

// branchTag encodes where branch idx of transaction id (hash h, in shard
// si) lives; slot is the branch index, plus the fail-over attempt times 16
// (srvcore.go). The top bit keeps every branch tag non-zero.
func branchTag(si int, h uint64, id uint32, slot int) transport.Tag {
	return transport.Tag{h, 1<<63 | uint64(slot>>4&15)<<59 | uint64(si&(1<<23-1))<<36 | uint64(id)<<4 | uint64(slot&15)}
}

func parseBranchTag(tag transport.Tag) (si int, h uint64, id uint32, slot int, ok bool) {
	w := tag[1]
	if w>>63 == 0 {
		return 0, 0, 0, 0, false
	}
	return int(w >> 36 & (1<<23 - 1)), tag[0], uint32(w >> 4), int(w>>59&15)<<4 | int(w&15), true
}

// watchSendFailures makes the core the sender's SendErrorHandler when the
// sender reports late failures (New).
func (c *Core) watchSendFailures() {
	if ts, ok := c.send.(TaggedSender); ok {
		ts.SetSendErrorHandler(c)
	}
}

// sendBranchRequest sends b.out to the branch's destination: tagged when
// it goes over a stream and the sender reports late failures. The shard is
// locked.
func (c *Core) sendBranchRequest(s *shards.Shard[txn], e *shards.Entry[txn], b *Branch) error {
	if b.conn&RemoteFlowBit != 0 {
		// Another node holds the connection: it says when it is gone.
		return c.sendRemoteFlow(b.conn, b.l, b.dst, b.out, branchTag(s.Index(), e.Hash(), e.Value.id, b.fo.attempt()<<4|int(b.idx)))
	}
	if b.conn != 0 {
		return c.sendFlow(b.conn, b.l, b.dst, b.out)
	}
	if !b.l.Proto.Stream() {
		return c.sendTo(b.l, b.dst, b.out)
	}
	ts, ok := c.send.(TaggedSender)
	if !ok {
		return c.sendTo(b.l, b.dst, b.out)
	}
	if !b.dst.IsValid() || !c.allowed(b.dst.Addr()) {
		c.stats.sendErrs.Add(1)
		return ErrNotAllowed
	}
	tag := branchTag(s.Index(), e.Hash(), e.Value.id, b.fo.attempt()<<4|int(b.idx))
	if err := ts.SendTagged(b.l, b.dst, b.out, tag); err != nil {
		c.stats.sendErrs.Add(1)
		return err
	}
	c.tapSent(b.l, b.dst, b.out)
	return nil
}

// SendFailed implements transport.SendErrorHandler: a branch request the
// transport accepted was not delivered. The branch fails with 503 and the
// transaction goes on as for any final response: other branches keep
// running, or the failure route runs, or the best response goes upstream
// (a lone 503 as 500, §16.7 step 6). Stale reports (the transaction ended,
// the branch already answered or moved on) are ignored.
func (c *Core) SendFailed(f transport.SendFailure) {
	si, h, id, slot, ok := parseBranchTag(f.Tag)
	idx, att := slot&15, slot>>4
	if !ok || si >= c.tbl.NumShards() {
		return
	}
	s := c.tbl.ShardAt(si)
	s.Lock()
	defer s.Unlock()
	e := s.Find(h, func(e *shards.Entry[txn]) bool { return e.Value.id == id })
	if e == nil || !e.Live() || idx >= e.Value.nbr {
		return
	}
	t := &e.Value
	b := t.branch(idx)
	if (b.state != bCalling && b.state != bProceeding) || b.fo.attempt() != att {
		return
	}
	if f.Conn != 0 {
		// A flow another node holds, which it found closed: RFC 5626
		// §5.3, no other way reaches the phone.
		if b.conn != f.Conn {
			return
		}
		c.stats.sendErrs.Add(1)
		x := c.getCtx()
		defer c.putCtx(x)
		c.branchFailed(s, e, b, 430)
		c.checkDone(x, s, e)
		c.gc(s, e)
		return
	}
	if b.proto != f.Proto || unmap(b.dst) != unmap(f.Dst) {
		return
	}
	c.stats.sendErrs.Add(1)
	c.warn("txn: next hop unreachable", append(CallFields(&t.msg, t.src, "request"), "proto", f.Proto.String(), "dst", f.Dst.String(), "err", f.Err)...)
	x := c.getCtx()
	defer c.putCtx(x)
	if !c.failOver(x, s, e, b) { // RFC 3263 §4.3: try the next target
		c.branchFailed(s, e, b, 503)
	}
	c.checkDone(x, s, e)
	c.gc(s, e)
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
