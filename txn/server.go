package txn

import (
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// serverKey builds the key of a server transaction into x.key: the method
// class, then the RFC 3261 branch and sent-by (§17.2.3), or, for RFC 2543
// peers without the magic cookie, the Request-URI, From tag, CSeq number
// Call-ID and top Via (§17.2.3, last paragraphs; the To tag is left out
// so the ACK of a non-2xx response, which carries the tag, still
// matches). Without the Call-ID two calls from one legacy UA to one URI
// were one transaction: the second answered as the first's
// retransmission, a CANCEL of one canceling the other.
func serverKey(x *ctx, m *parser.Message, class byte) []byte {
	v := m.TopVia()
	k := append(x.key[:0], class)
	if v.RFC3261Branch() {
		k = append(k, v.Branch...)
		k = append(k, '|')
		k = append(k, v.Host...)
		k = append(k, ':')
		k = appendUint(k, uint64(v.Port))
	} else {
		k = append(k, '#')
		k = append(k, m.RequestURI()...)
		k = append(k, '|')
		k = append(k, m.FromTag()...)
		k = append(k, '|')
		k = appendUint(k, uint64(m.CSeq().Num))
		k = append(k, '|')
		k = append(k, m.CallID()...)
		k = append(k, '|')
		k = append(k, v.Raw...)
	}
	x.key = k
	return k
}

func classOf(m parser.Method) byte {
	if m == parser.MethodInvite || m == parser.MethodAck || m == parser.MethodCancel {
		return 'I'
	}
	return 'N'
}

// onRequest handles a request other than ACK and CANCEL: a retransmission
// is answered by its transaction; a new request passes the proxy checks
// (§16.3), gets a server transaction and goes to Router.Request. An INVITE
// gets 100 Trying when the route relays or suspends it (see trying).
func (c *Core) onRequest(x *ctx, p *transport.Packet) {
	m := &x.msg
	if v := m.ProxyVerdict(c.cfg.Supported, x.auth[:0]); v.Code != 0 {
		var extra []byte
		if v.Code == 420 {
			x.rt = append(x.rt[:0], "Unsupported: "...)
			x.rt = append(x.rt, v.Unsupported...)
			x.rt = append(x.rt, "\r\n"...)
			extra = x.rt
		}
		c.replyStateless(x, p, v.Code, v.Reason, extra)
		return
	}
	key := serverKey(x, m, classOf(m.Method()))
	h := shards.Sum(key)
	s := c.tbl.Shard(shards.Sum(m.CallID()))
	s.Lock()
	if e := s.Get(h, key); e != nil {
		c.retransmitted(e)
		s.Unlock()
		return
	}
	dst := respDest(p, m.TopVia())
	if c.isOwnAddr(dst) && !c.sentByUs(s, m) {
		// A spoofed source: every answer would go to ourselves.
		s.Unlock()
		c.stats.selfLoops.Add(1)
		return
	}
	if c.isLoop(x, m) {
		s.Unlock()
		c.stats.loops.Add(1)
		c.replyStateless(x, p, 482, "Loop Detected", nil)
		return
	}
	if c.perShardMax > 0 && s.Len() >= c.perShardMax {
		s.Unlock()
		c.replyFull(x, p)
		return
	}
	e, err := s.Insert(h, key)
	if err == shards.ErrKeyTooLong {
		s.Unlock()
		c.replyStateless(x, p, 400, "Bad Request - Transaction Key Too Long", nil)
		return
	}
	if err != nil {
		s.Unlock()
		c.replyFull(x, p)
		return
	}
	t := &e.Value
	t.id = c.nextID.Add(1)
	t.invite = m.Method() == parser.MethodInvite
	t.proto = p.Proto
	// The transaction takes the buffer the request was parsed in, and the
	// parsed views with it; the goroutine gets the transaction's previous
	// buffer for the next message. No second copy, no second parse.
	t.buf, x.in = x.in, t.buf[:0]
	t.msg = *m
	t.cseq = m.CSeq().Num
	t.respL = p.Listener
	t.respDst = dst
	if s.Account(e, t.admission()) != nil {
		s.Remove(e)
		s.Unlock()
		c.replyFull(x, p)
		return
	}
	t.src, t.conn = p.Src, p.Conn
	t.rs.loop = x.loop
	if !t.invite {
		s.StartTimer(e, &t.tG, kTrying, msDur(c.tryingAfter))
	}
	r := &x.hreq
	r.bind(c, s.Ref(e), t, x)
	c.runRequest(x, s, e, r)
	s.Unlock()
}

// sendUp sends a response of server transaction t: on the connection
// its request came in on for a stream, else to t.respDst.
func (c *Core) sendUp(t *txn, data []byte) error {
	return c.sendResponse(t.respL, t.respDst, t.conn, data)
}

// sentByUs reports whether a request whose answers would go to one of our
// own listeners is one we sent ourselves (a spiral, or a loop back to us):
// its top Via is ours and carries the branch of a client transaction alive
// here, or a branch this process forwarded statelessly. Anything else
// coming from our own address has a spoofed source. s is the shard of the
// request's Call-ID (a spiral keeps the Call-ID), locked.
func (c *Core) sentByUs(s *shards.Shard[txn], m *parser.Message) bool {
	v := m.TopVia()
	if !c.isUsHostPort(v.Host, v.Port, v.Transport) {
		return false
	}
	b := v.Branch
	if len(b) == statelessLen && string(b[:prefixLen]) == string(c.prefix[:]) && b[loopEnd] == 's' {
		// Forwarded statelessly by us: the branch's MAC covers the Via
		// below ours (a made-up branch of the right shape, from our own
		// address, would have us answer ourselves).
		it := m.Vias()
		return it.Next() && it.Next() && c.statelessBranchOf(b, &it.Via, m)
	}
	h, id, idx, _, ok := c.parseBranch(b)
	if !ok {
		return false
	}
	e := s.Find(h, func(e *shards.Entry[txn]) bool { return e.Value.id == id })
	return e != nil && idx < e.Value.nbr
}

// trying sends 100 Trying on an INVITE server transaction that is going to
// wait: relayed, or suspended while its route waits for the store (§16.2,
// §17.2.1). It is not sent ahead of the route: a route that refuses at once
// answers with its final response alone, so that a spoofed INVITE gets one
// packet back, not two. The shard is locked.
func (c *Core) trying(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	if !t.invite || t.finalSent || len(t.resp) > 0 || t.state == sTerminated {
		return // not an INVITE, answered, or a provisional went out already
	}
	t.resp = c.appendLocal(x, t.resp[:0], t, 100, nil, nil, nil)
	t.state = sProceeding
	c.sendUp(t, t.resp)
	// Not below the room reserved at admission: the relayed copy, which
	// it is for, does not exist yet (a suspended route relays later).
	s.Charge(e, max(t.owned(), int(e.Extra())))
}

// retransmitted answers a retransmitted request with the last response
// (§17.2.1, §17.2.2); with none yet it is absorbed.
func (c *Core) retransmitted(e *shards.Entry[txn]) {
	c.stats.retrans.Add(1)
	t := &e.Value
	if len(t.resp) > 0 && t.state != sAccepted && t.state != sTerminated {
		c.sendUp(t, t.resp)
	}
}

// runRequest calls Router.Request with the shard locked, then makes sure
// the request was dealt with: a route that did nothing gets a 500.
func (c *Core) runRequest(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request) {
	t := &e.Value
	t.held = true
	c.callRequest(r)
	if !e.Live() || r.ref.Entry() == nil {
		return
	}
	t.held = false
	acted := t.rs.acted
	switch {
	case t.state == sTerminated:
		c.terminate(s, e) // forwarded statelessly, or answered over a stream
	case t.finalSent || t.pending > 0:
	case acted&actSuspend != 0 && acted&(actRelay|actReply|actForward|actDrop) == 0:
		c.trying(x, s, e)
		// A route that never comes back must not leak the transaction:
		// after Timer C (INVITE) or 64·T1 it is answered 408.
		d := 64 * c.t1
		if t.invite {
			d = c.timerC
		}
		s.StartTimer(e, &t.tH, kH, msDur(d))
	case t.relayed:
		c.checkDone(x, s, e)
	default:
		if acted == 0 {
			c.warn("txn: route did nothing with the request; answering 500", CallFields(&t.msg, t.src, "request")...)
		}
		c.replyLocal(x, s, e, 500, "Server Internal Error", nil)
	}
}

// onAck: the ACK of a non-2xx final response ends the INVITE server
// transaction (§17.2.1); any other ACK (for a 2xx, or unmatched) goes to
// the Router as a request to forward statelessly.
func (c *Core) onAck(x *ctx, p *transport.Packet) {
	m := &x.msg
	key := serverKey(x, m, 'I')
	h := shards.Sum(key)
	s := c.tbl.Shard(shards.Sum(m.CallID()))
	s.Lock()
	if e := s.Get(h, key); e != nil {
		t := &e.Value
		switch t.state {
		case sCompleted:
			c.stats.retrans.Add(1)
			t.state = sConfirmed
			s.StopTimer(&t.tG)
			if t.proto.Stream() {
				c.terminate(s, e)
			} else {
				s.StartTimer(e, &t.tH, kH, time.Duration(c.t4)*time.Millisecond) // timer I
			}
			s.Unlock()
			return
		case sConfirmed:
			c.stats.retrans.Add(1)
			s.Unlock()
			return
		}
	}
	s.Unlock()
	if n, ok := m.MaxForwards(); ok && n == 0 {
		return // an ACK cannot be answered: drop it
	}
	if c.isLoop(x, m) {
		c.stats.loops.Add(1)
		return
	}
	x.rs = routeState{ruri: x.rs.ruri[:0], rrx: x.rs.rrx[:0], dlgx: x.rs.dlgx[:0], hop: x.rs.hop[:0], rset: x.rs.rset[:0], loop: x.loop}
	x.kept = x.kept[:0]
	r := &x.hreq
	*r = Request{Msg: m, Src: p.Src, Listener: p.Listener, Proto: p.Proto, Conn: p.Conn, c: c, st: &x.rs, x: x}
	c.callRequest(r)
}

// onCancel: 200 to the CANCEL, CANCEL on every pending branch, 487 to the
// INVITE once they end (§16.10); 481 without a matching INVITE. The CANCEL
// is answered statelessly: a retransmission finds the INVITE again.
func (c *Core) onCancel(x *ctx, p *transport.Packet) {
	m := &x.msg
	key := serverKey(x, m, 'I')
	h := shards.Sum(key)
	s := c.tbl.Shard(shards.Sum(m.CallID()))
	s.Lock()
	dst := respDest(p, m.TopVia())
	if c.isOwnAddr(dst) && !c.sentByUs(s, m) {
		s.Unlock()
		c.stats.selfLoops.Add(1)
		return
	}
	e := s.Get(h, key)
	if e == nil || !e.Value.invite {
		s.Unlock()
		c.replyStateless(x, p, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	t := &e.Value
	x.tmp = appendHex(x.tmp[:0], e.Hash(), 16)
	x.out = parser.AppendResponse(x.out[:0], m, 200, nil, x.tmp)
	c.sendResponse(p.Listener, dst, p.Conn, x.out)
	if !t.finalSent && !t.canceled {
		t.canceled = true
		for i := 0; i < t.nbr; i++ {
			c.cancelBranch(x, s, e, t.branch(i))
		}
		if t.pending == 0 {
			c.replyLocal(x, s, e, 487, "Request Terminated", nil)
		}
	}
	s.Unlock()
}

// replyLocal sends a response generated from the transaction's request.
// The shard is locked.
func (c *Core) replyLocal(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], code int, reason string, extra []byte) {
	t := &e.Value
	var tag []byte
	if code > 100 && t.msg.ToTag() == nil {
		x.key = appendHex(x.key[:0], e.Hash(), 16)
		tag = x.key
	}
	x.tmp = append(x.tmp[:0], reason...)
	if reason == "" {
		x.tmp = append(x.tmp, parser.StatusText(code)...)
	}
	x.out = c.appendLocal(x, x.out[:0], t, code, x.tmp, tag, extra)
	c.serverSend(x, s, e, x.out, code, nil, nil)
}

// serverSend sends a response on the server transaction and moves its
// state machine (§17.2.1, §17.2.2, RFC 6026). b and resp are the branch
// and the response from downstream it relays, nil for a response of our
// own; a Watcher of the request sees what goes upstream. The shard is
// locked.
func (c *Core) serverSend(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], data []byte, code int, b *Branch, resp *parser.Message) {
	t := &e.Value
	if t.state == sTerminated {
		return
	}
	if code < 200 {
		if t.finalSent || !t.invite {
			// RFC 4320 §4.1: a non-INVITE request gets no provisional
			// response but the 100 sent when the client's timer E reached
			// T2 (sendTrying); neither one relayed from downstream nor a
			// route's.
			return
		}
		t.resp = append(t.resp[:0], data...)
		t.state = sProceeding
		c.sendUp(t, data)
		s.Charge(e, t.owned())
		c.watchSent(x, s, e, b, code, resp, data)
		return
	}
	if t.finalSent {
		if t.invite && code < 300 && (t.state == sAccepted || t.state == sTerminated) {
			// §16.7 step 5: every 2xx goes upstream, not just the first.
			c.sendUp(t, data)
			c.watchSent(x, s, e, b, code, resp, data)
		}
		return
	}
	if code == 408 && !t.invite {
		// RFC 4320 §4.2: no 408 to a non-INVITE request. The client's own
		// timer F has fired by now, so the 408 would only add load (one per
		// hop): the transaction ends without a response.
		c.endSilently(s, e)
		return
	}
	t.finalSent = true
	s.StopTimer(&t.tG) // a non-INVITE's 100 is no longer due, nor a held 2xx's deadline
	c.sendUp(t, data)
	c.watchSent(x, s, e, b, code, resp, data)
	if code < 300 && t.invite {
		// Accepted: absorb INVITE retransmissions (timer L).
		t.state = sAccepted
		t.resp = t.resp[:0]
		s.StartTimer(e, &t.tH, kH, msDur(c.wait))
		return
	}
	t.resp = append(t.resp[:0], data...)
	s.Charge(e, t.owned())
	t.state = sCompleted
	reliable := t.proto.Stream()
	switch {
	case t.invite:
		if !reliable {
			t.gInt = c.t1
			s.StartTimer(e, &t.tG, kG, time.Duration(c.t1)*time.Millisecond)
		}
		s.StartTimer(e, &t.tH, kH, time.Duration(64*c.t1)*time.Millisecond) // timer H
	case reliable:
		c.terminate(s, e) // timer J is 0 over a reliable transport (§17.2.2)
	default:
		s.StartTimer(e, &t.tH, kH, msDur(c.wait)) // timer J
	}
}

// endSilently ends the server side without a response: the transaction
// stays Completed for Config.Wait (timer J) to absorb retransmissions, or
// ends at once over a reliable transport. The shard is locked.
func (c *Core) endSilently(s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	t.finalSent = true
	t.state = sCompleted
	t.resp = t.resp[:0]
	s.StopTimer(&t.tG)
	if t.proto.Stream() {
		c.terminate(s, e)
		return
	}
	s.StartTimer(e, &t.tH, kH, msDur(c.wait))
}

// sendTrying sends the 100 of RFC 4320 §4.1 to a non-INVITE request that
// nothing was sent to by the time the client's timer E reached T2. The
// shard is locked.
func (c *Core) sendTrying(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	if t.invite || t.finalSent || t.state != sTrying {
		return
	}
	t.resp = c.appendLocal(x, t.resp[:0], t, 100, nil, nil, nil)
	t.state = sProceeding
	c.sendUp(t, t.resp)
	s.Charge(e, max(t.owned(), int(e.Extra()))) // as trying: keep the room reserved at admission
}

// terminate ends the server side and removes the transaction when no
// branch needs it any more.
func (c *Core) terminate(s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	t.state = sTerminated
	s.StopTimer(&t.tG)
	s.StopTimer(&t.tH)
	c.gc(s, e)
}

// gc removes the transaction once its server side and every branch have
// terminated.
func (c *Core) gc(s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	if t.state != sTerminated || !e.Live() || t.held {
		return // a held transaction is removed by its holder (runRequest, Resume)
	}
	for i := 0; i < t.nbr; i++ {
		if st := t.branch(i).state; st != bTerminated && st != bNone {
			return
		}
	}
	s.Remove(e)
}
