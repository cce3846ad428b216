package txn

import (
	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// onResponse matches a response to its client branch by the top Via
// branch and the CSeq method (§17.1.3); without a match it is forwarded
// statelessly per the next Via.
func (c *Core) onResponse(x *ctx, p *transport.Packet) {
	m := &x.msg
	x.rsrc, x.pedUsed = p.Src, false
	h, id, idx, att, ok := c.parseBranch(m.TopVia().Branch)
	if !ok {
		if c.isLocalBranch(m.TopVia().Branch) {
			c.localResponse(m, p.Src)
			return
		}
		if f := c.cfg.ForeignResponse; f != nil && f(m.TopVia().Branch, p.Data, p.Src, p.Listener, p.Proto) {
			return
		}
		c.forwardResponse(x, m)
		return
	}
	s := c.tbl.Shard(shards.Sum(m.CallID()))
	s.Lock()
	e := s.Find(h, func(e *shards.Entry[txn]) bool { return e.Value.id == id })
	if e == nil || idx >= e.Value.nbr {
		s.Unlock()
		if m.CSeq().Method != parser.MethodInvite {
			// RFC 4320 §4.3: a response to a non-INVITE request we sent
			// statefully goes upstream only through its server
			// transaction; once that ended it is late, and dropped.
			return
		}
		c.forwardResponse(x, m)
		return
	}
	t := &e.Value
	b := t.branch(idx)
	cs := m.CSeq()
	switch {
	case att != b.fo.attempt():
		c.staleResponse(x, s, e, b, p, att, m.StatusCode())
	case cs.Method == parser.MethodCancel:
		if m.StatusCode() >= 200 && b.cancelSent && !b.cancelAcked {
			// The CANCEL is answered: no more retransmissions, but keep the
			// deadline after which the INVITE branch is given up (§9.1).
			b.cancelAcked = true
			s.StartTimerAt(e, &b.tCancel, b.idx<<4|kCancel, b.cancelStart+64*c.t1)
		}
	case string(cs.MethodRaw) == string(t.msg.MethodBytes()):
		c.branchResponse(x, s, e, b, m)
	}
	c.gc(s, e)
	s.Unlock()
}

// hook returns the goroutine's handle on transaction e for a Router hook.
func (c *Core) hook(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn]) *Request {
	r := &x.hreq
	r.bind(c, s.Ref(e), &e.Value, x)
	return r
}

// buildUp writes response m of branch b as it goes upstream: with the
// reply route's edits (Request.ResponseEditor), without our Via, with the
// From, To and CSeq its client sent (restore.go), and the request's
// Rewriter's edits.
func (c *Core) buildUp(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, m *parser.Message) []byte {
	t := &e.Value
	ed := c.responseEdits(x, m)
	ed.UseReserve() // the reply route may have taken every edit
	ed.RemoveTopVia()
	if t.restoring() {
		t.restoreUp(x, ed, m)
	}
	c.rewriteResponse(x, s, e, b, ed, m)
	x.out = ed.AppendTo(x.out[:0])
	return x.out
}

// responseEdits returns the editor holding the reply route's edits of m,
// or x.ed reset on m when the route made none. The edits are used once.
func (c *Core) responseEdits(x *ctx, m *parser.Message) *parser.Editor {
	if x.pedUsed && x.ped.Message() == m {
		x.pedUsed = false
		return &x.ped
	}
	x.ed.Reset(m)
	return &x.ed
}

// branchResponse runs the client state machine (§17.1.1, §17.1.2) and the
// response processing of §16.7 for one response on branch b. The shard is
// locked.
func (c *Core) branchResponse(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, m *parser.Message) {
	t := &e.Value
	code := m.StatusCode()
	kind := b.idx << 4
	switch b.state {
	case bCalling, bProceeding:
	case bCompleted:
		s.StopTimer(&b.tCancel)
		switch {
		case t.invite && code >= 300:
			c.sendAck(x, s, e, b, m) // a retransmitted final (our ACK was lost), or the one after timer C
		case t.invite && code >= 200:
			// A 2xx after timer C gave the branch up: the call was answered
			// after all, and the UAC must see it to ACK (and BYE) it.
			if c.callReply(c.hook(x, s, e), b, m); e.Live() && !x.rheld {
				c.serverSend(x, s, e, c.buildUp(x, s, e, b, m), code, b, m)
			}
		}
		return
	case bAccepted, bTerminated:
		if t.invite && code >= 200 && code < 300 {
			// 2xx retransmissions (and late 2xx) go upstream: the UAC's
			// ACK is end to end. The reply route sees each, so that its
			// edits (a NATed callee's Contact) are on every copy.
			x.rrepeat = true
			c.callReply(c.hook(x, s, e), b, m)
			x.rrepeat = false
			if e.Live() && !x.rheld && !t.heldLost { // not after the 500 of heldExpired
				c.sendUp(t, c.buildUp(x, s, e, b, m))
			}
		}
		return
	default:
		return
	}
	if code < 200 {
		if t.invite {
			s.StopTimer(&b.tRetr)
			s.StopTimer(&b.tTimeout)
			if code > 100 {
				s.StartTimer(e, &b.tC, kind|kC, msDur(c.timerCOf(t))) // §16.7 step 2
			}
		} else if b.state == bCalling {
			b.interval = c.t2 // timer E runs at T2 in Proceeding
		}
		b.state = bProceeding
		b.gotProv = true
		if b.cancelWant && !b.cancelSent {
			c.sendCancel(x, s, e, b)
		}
		if code == 100 || t.finalSent || t.canceled {
			return
		}
		if !c.callReply(c.hook(x, s, e), b, m) || x.rheld {
			return
		}
		c.serverSend(x, s, e, c.buildUp(x, s, e, b, m), code, b, m)
		return
	}

	// A final response ends the branch.
	s.StopTimer(&b.tRetr)
	s.StopTimer(&b.tTimeout)
	s.StopTimer(&b.tC)
	s.StopTimer(&b.tCancel)
	t.pending--
	b.code = code
	reliable := b.proto.Stream()
	switch {
	case t.invite && code >= 300:
		c.sendAck(x, s, e, b, m) // §17.1.1.3: hop-by-hop ACK, same branch
		b.state = bCompleted
		if reliable {
			b.state = bTerminated
		} else {
			s.StartTimer(e, &b.tRetr, kind|kD, msDur(c.wait)) // timer D
		}
	case t.invite:
		b.state = bAccepted
		s.StartTimer(e, &b.tRetr, kind|kD, msDur(c.wait)) // RFC 6026 timer M
	default:
		b.state = bCompleted
		if reliable {
			b.state = bTerminated
		} else {
			s.StartTimer(e, &b.tRetr, kind|kD, msDur(c.t4)) // timer K
		}
	}
	c.callReply(c.hook(x, s, e), b, m) // a final response always ends its branch
	if !e.Live() {
		return
	}
	if code < 300 {
		// §16.7 step 5: 2xx forwarded at once, for every branch; step 10:
		// the other branches are canceled.
		t.got2xx = true
		if !x.rheld {
			c.serverSend(x, s, e, c.buildUp(x, s, e, b, m), code, b, m)
		}
		if t.invite {
			c.cancelOthers(x, s, e, b)
		}
		return
	}
	if ed := c.responseEdits(x, m); ed == &x.ped {
		b.resp = ed.AppendTo(b.resp[:0]) // kept with the reply route's edits
	} else {
		b.resp = append(b.resp[:0], m.Bytes()...)
	}
	s.Charge(e, t.owned())
	if code >= 600 && t.invite {
		t.got6xx = true
		c.cancelOthers(x, s, e, b)
	}
	c.checkDone(x, s, e)
}

func (c *Core) cancelOthers(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], except *Branch) {
	t := &e.Value
	for i := 0; i < t.nbr; i++ {
		if b := t.branch(i); b != except {
			c.cancelBranch(x, s, e, b)
		}
	}
}

// cancelBranch cancels a pending INVITE branch (§9.1): at once when it had
// a provisional response, else when one arrives.
func (c *Core) cancelBranch(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch) {
	if !b.active() || !e.Value.invite {
		return
	}
	switch {
	case b.state == bResolving:
		c.branchFailed(s, e, b, 487) // never sent
	case b.gotProv:
		c.sendCancel(x, s, e, b)
	default:
		b.cancelWant = true
	}
}

// appendHopRequest writes a CANCEL or ACK for the branch request in
// x.aux (§9.1, §17.1.1.3): same Request-URI, top Via, From, Call-ID, CSeq
// number and Route; To from the response for an ACK.
func appendHopRequest(dst []byte, req *parser.Message, method string, to, via []byte) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, req.RequestURI()...)
	dst = append(dst, " SIP/2.0\r\nVia: "...)
	if via == nil {
		via = req.TopVia().Raw
	}
	dst = append(dst, via...)
	dst = append(dst, "\r\nMax-Forwards: 70\r\nFrom: "...)
	dst = append(dst, req.Get(parser.HdrFrom)...)
	dst = append(dst, "\r\nTo: "...)
	if to == nil {
		to = req.Get(parser.HdrTo)
	}
	dst = append(dst, to...)
	dst = append(dst, "\r\nCall-ID: "...)
	dst = append(dst, req.CallID()...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = appendUint(dst, uint64(req.CSeq().Num))
	dst = append(dst, ' ')
	dst = append(dst, method...)
	dst = append(dst, "\r\n"...)
	for i := 0; i < req.NumHeaders(); i++ {
		if h := req.HeaderAt(i); h.Name == parser.HdrRoute {
			dst = append(dst, "Route: "...)
			dst = append(dst, h.Value...)
			dst = append(dst, "\r\n"...)
		}
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

func (c *Core) sendCancel(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch) {
	if b.cancelSent || x.aux.Parse(b.out) != nil {
		return
	}
	b.cancel = appendHopRequest(b.cancel[:0], &x.aux, "CANCEL", nil, nil)
	if c.local != nil {
		c.callLocal(c.hook(x, s, e), b, parser.MethodCancel, b.cancel)
	}
	b.cancelSent = true
	b.cancelStart = s.Now()
	c.sendOnBranch(b, b.cancel)
	kind := b.idx<<4 | kCancel
	if b.proto.Stream() {
		b.cancelAcked = true
		s.StartTimerAt(e, &b.tCancel, kind, b.cancelStart+64*c.t1)
	} else {
		b.cancelInt = c.t1
		s.StartTimer(e, &b.tCancel, kind, msDur(c.t1))
	}
	s.Charge(e, e.Value.owned())
}

func (c *Core) sendAck(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, resp *parser.Message) {
	if x.aux.Parse(b.out) != nil {
		return
	}
	b.ack = appendHopRequest(b.ack[:0], &x.aux, "ACK", resp.Get(parser.HdrTo), nil)
	if c.local != nil {
		c.callLocal(c.hook(x, s, e), b, parser.MethodAck, b.ack)
	}
	c.sendOnBranch(b, b.ack)
}

// better reports whether final status a beats b in the §16.7 step 6 choice:
// 6xx first, then the lowest class; within 4xx the responses that let the
// client retry (401, 407, 415, 420, 484).
func better(a, b int) bool {
	if b == 0 {
		return true
	}
	if a6, b6 := a >= 600, b >= 600; a6 != b6 {
		return a6
	}
	if a/100 != b/100 {
		return a/100 < b/100
	}
	return retryable(a) && !retryable(b)
}

func retryable(code int) bool {
	switch code {
	case 401, 407, 415, 420, 484:
		return true
	}
	return false
}

func bestBranch(t *txn) int { return bestBranchFrom(t, 0) }

// bestBranchFrom is bestBranch among the branches from index from on: the
// failure route looks at those of the latest serial step (t.step), as
// OpenSIPS's and Kamailio's failure routes do, so that a request re-sent
// from it sees the answer to that attempt, not an older equal one.
func bestBranchFrom(t *txn, from int) int {
	best, code := -1, 0
	for i := from; i < t.nbr; i++ {
		b := t.branch(i)
		if b.code < 300 {
			continue
		}
		if !t.invite && (b.code == 408) != (code == 408) && code != 0 {
			// RFC 4320 §4.2: a non-INVITE request is never answered 408,
			// so any other final response of a branch goes upstream
			// instead of a timeout.
			if code == 408 {
				best, code = i, b.code
			}
			continue
		}
		if better(b.code, code) {
			best, code = i, b.code
		}
	}
	return best
}

// checkDone runs when a branch ended: with every branch ended and no 2xx,
// the failure route runs (unless the request was canceled or a 6xx
// arrived) and may start new branches; otherwise the best response goes
// upstream (§16.7 steps 4–6). The shard is locked.
func (c *Core) checkDone(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	if t.finalSent || t.got2xx || t.pending > 0 || t.inFailure || !e.Live() {
		return
	}
	if !t.canceled && !t.got6xx {
		t.inFailure = true
		best := c.bestMessage(x, e)
		c.callFailure(c.hook(x, s, e), best)
		t.inFailure = false
		if !e.Live() || t.finalSent || t.pending > 0 {
			return
		}
	}
	c.forwardBest(x, s, e)
}

// bestMessage parses the best response so far into x.best, generating it
// for local failures (timeouts, transport errors).
func (c *Core) bestMessage(x *ctx, e *shards.Entry[txn]) *parser.Message {
	t := &e.Value
	i := bestBranchFrom(t, t.step)
	if i < 0 {
		i = bestBranch(t)
	}
	if i >= 0 && len(t.branch(i).resp) > 0 && x.best.Parse(t.branch(i).resp) == nil {
		return &x.best
	}
	code := 500
	if i >= 0 {
		code = t.branch(i).code
	}
	x.key = appendHex(x.key[:0], e.Hash(), 16)
	x.synth = parser.AppendResponse(x.synth[:0], &t.msg, code, nil, x.key)
	x.best.Parse(x.synth)
	return &x.best
}

// forwardBest sends the chosen final response upstream: a 503 becomes 500
// (§16.7 step 6), challenges of every 401/407 are merged (step 7).
func (c *Core) forwardBest(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn]) {
	t := &e.Value
	i := bestBranch(t)
	if i < 0 {
		c.replyLocal(x, s, e, 500, "", nil)
		return
	}
	b := t.branch(i)
	code := b.code
	if t.canceled && code != 487 {
		// §16.10: a canceled request ends with 487 whatever a branch that
		// never rang (timer B) or gave up said.
		c.replyLocal(x, s, e, 487, "", nil)
		return
	}
	if code == 503 || len(b.resp) == 0 || x.aux.Parse(b.resp) != nil {
		if code == 503 {
			code = 500
		}
		c.replyLocal(x, s, e, code, "", nil)
		return
	}
	x.ed.Reset(&x.aux)
	x.ed.RemoveTopVia()
	if t.restoring() {
		t.restoreUp(x, &x.ed, &x.aux)
	}
	if code == 401 || code == 407 {
		c.mergeChallenges(x, t, i)
	}
	c.rewriteResponse(x, s, e, b, &x.ed, &x.aux)
	x.out = x.ed.AppendTo(x.out[:0])
	c.serverSend(x, s, e, x.out, code, b, &x.aux)
}

// mergeChallenges adds the WWW-Authenticate and Proxy-Authenticate headers
// of every other 401/407 branch to the response being edited in x.ed.
func (c *Core) mergeChallenges(x *ctx, t *txn, best int) {
	type hdr struct {
		proxy bool
		off   int
		n     int
	}
	var hs [16]hdr
	nh := 0
	x.auth = x.auth[:0]
	for j := 0; j < t.nbr; j++ {
		b := t.branch(j)
		if j == best || (b.code != 401 && b.code != 407) || len(b.resp) == 0 || x.best.Parse(b.resp) != nil {
			continue
		}
		for k := 0; k < x.best.NumHeaders() && nh < len(hs); k++ {
			h := x.best.HeaderAt(k)
			if h.Name != parser.HdrWWWAuthenticate && h.Name != parser.HdrProxyAuthenticate {
				continue
			}
			hs[nh] = hdr{h.Name == parser.HdrProxyAuthenticate, len(x.auth), len(h.Value)}
			nh++
			x.auth = append(x.auth, h.Value...)
		}
	}
	for k := 0; k < nh; k++ {
		v := x.auth[hs[k].off : hs[k].off+hs[k].n]
		if hs[k].proxy {
			x.ed.AddHeader("Proxy-Authenticate", v)
		} else {
			x.ed.AddHeader("WWW-Authenticate", v)
		}
	}
}

// onTimer runs every transaction timer, on the ticker goroutine with the
// shard locked.
func (c *Core) onTimer(s *shards.Shard[txn], e *shards.Entry[txn], tm *shards.Timer) {
	x := c.getCtx()
	defer c.putCtx(x)
	t := &e.Value
	b := t.branch(int(tm.Kind >> 4))
	kind := tm.Kind & 15
	switch kind {
	case kG: // retransmit the final response until the ACK
		if t.state != sCompleted || len(t.resp) == 0 {
			return
		}
		c.sendUp(t, t.resp)
		t.gInt = min(2*t.gInt, c.t2)
		s.StartTimer(e, &t.tG, kG, msDur(t.gInt))
	case kH: // H, I, J, L: the server transaction ends
		if !t.finalSent {
			// A suspended route did not act in time: 408 (for a
			// non-INVITE request the transaction ends silently, RFC 4320).
			c.warn("txn: suspended route did not act; request timed out", CallFields(&t.msg, t.src, "request")...)
			c.replyLocal(x, s, e, 408, "", nil)
			break
		}
		c.terminate(s, e)
	case kTrying:
		c.sendTrying(x, s, e)
	case kHeld:
		c.heldExpired(x, s, e)
	case kA: // A, E: retransmit the request
		if !b.active() {
			return
		}
		if b.conn&RemoteFlowBit != 0 {
			// A hand-off lost between the nodes: sent again once, tagged,
			// while no response came. The holder writes it on the phone's
			// connection as it is, where a second copy is a retransmission
			// the phone absorbs.
			if b.state == bCalling {
				c.sendBranchRequest(s, e, b)
			}
			return
		}
		c.sendOnBranch(b, b.out)
		switch {
		case t.invite:
			b.interval *= 2
		case b.state == bProceeding:
			b.interval = c.t2
		default:
			b.interval = min(2*b.interval, c.t2)
		}
		s.StartTimer(e, &b.tRetr, tm.Kind, msDur(b.interval))
	case kB: // B, F: no final response
		if !b.active() {
			return
		}
		if !c.failOver(x, s, e, b) { // RFC 3263 §4.3: silent target, try the next
			c.branchFailed(s, e, b, 408)
		}
		c.checkDone(x, s, e)
	case kC: // §16.8: CANCEL a branch that rang, and treat it as 408
		if !b.active() {
			return
		}
		if b.gotProv {
			c.sendCancel(x, s, e, b)
		}
		t.pending--
		s.StopTimer(&b.tRetr)
		s.StopTimer(&b.tTimeout)
		b.code = 408
		b.state = bCompleted // a late final still gets its ACK
		b.resp = b.resp[:0]
		s.StartTimer(e, &b.tRetr, b.idx<<4|kD, msDur(c.wait))
		c.checkDone(x, s, e)
	case kD: // D, K, M: the client transaction ends
		b.state = bTerminated
	case kCancel:
		if s.Now()-b.cancelStart >= 64*c.t1 {
			if b.active() {
				c.branchFailed(s, e, b, 487) // §9.1: give the branch up
				c.checkDone(x, s, e)
			}
			break
		}
		if b.cancelAcked {
			break
		}
		c.sendOnBranch(b, b.cancel)
		b.cancelInt = min(2*b.cancelInt, c.t2)
		s.StartTimer(e, &b.tCancel, tm.Kind, msDur(b.cancelInt))
	}
	c.gc(s, e)
}
