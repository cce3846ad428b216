package dialog

import (
	"net/netip"
	"time"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/txn"
)

// didParam is our Record-Route parameter that carries the dialog id, in
// what the Record-Route signature covers.
const didParam = "did"

// idLen is the length of a dialog id in hexadecimal.
const idLen = 16

// maxCSeq is the highest CSeq number a dialog records (RFC 3261
// §8.1.1.5: a CSeq is below 2^31). The proxy's own requests of a dialog
// are numbered one above the last it recorded: an in-dialog request
// numbered 4294967295 made the proxy's BYE wrap to 0, which the callee
// answers 500 (out of order), and the call went on, its record ended.
// A number above it is relayed and not recorded; the INVITE of a dialog
// must be below it (CreateDialog).
const maxCSeq = 1<<31 - 1

func appendID(dst []byte, id uint64) []byte {
	const hex = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hex[(id>>uint(i))&15])
	}
	return dst
}

func parseID(b []byte) (uint64, bool) {
	if len(b) != idLen {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, v != 0
}

// CreateDialog makes a dialog of an initial INVITE (OpenSIPS
// create_dialog(), Kamailio dlg_manage() on an initial INVITE): the
// request gets our Record-Route (RecordRoute is implied), with the
// dialog's id in a parameter the signature covers, and the module follows
// the INVITE's responses from there. It returns false, creating nothing,
// for anything but an INVITE without a To tag, when the table holds
// dialog.max_dialogs (counted in switchboard_dialog_refused_total: the
// route decides, e.g. 503), when the INVITE's headers are too large to
// keep, or when its CSeq is 2^31 or above (maxCSeq). A second pass of the same INVITE through the proxy (a spiral:
// same Call-ID, From tag and From URI while the first is unanswered, a
// Via of ours with the branch the first pass relayed it on and the same
// CSeq number, txn.Request.PassedThrough) makes no second dialog; true.
// Another INVITE with the Call-ID and From tag of a call still ringing,
// which did not pass through that call's INVITE (the caller reusing them
// for a second call), or another caller's with a copy of our Via (the
// call's callee has it), gets a dialog of its own: counted in its
// profiles, recorded, timed out. Taken for a spiral, it was relayed with
// none, past its caller's limits, and its call went unrecorded.
func (d *Dialog) CreateDialog(c *routing.Ctx) bool {
	m := c.Msg()
	if m.Method() != parser.MethodInvite || m.ToTag() != nil || len(m.FromTag()) == 0 {
		return false
	}
	if c.Value(SlotDialog) != 0 {
		return true // called twice in one route
	}
	if m.CSeq().Num > maxCSeq {
		// No request of the call after it could be numbered above it,
		// the proxy's BYE included.
		d.refused.Inc()
		d.h.Warn("dialog: INVITE numbered 2^31 or above (RFC 3261 §8.1.1.5), dialog refused", "cseq", m.CSeq().Num)
		return false
	}
	callID := m.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	if e := s.Find(h, func(e *shards.Entry[dlg]) bool {
		g := &e.Value
		return g.state != stConfirmed && string(e.Key()) == string(callID) &&
			string(g.get(g.fromTag)) == string(m.FromTag()) && g.sameFrom(m) && c.R.PassedThrough(g.inv)
	}); e != nil {
		s.Unlock()
		d.recordRoute(c, e.Value.id, false)
		return true
	}
	if s.Len() >= d.perShard {
		s.Unlock()
		d.refused.Inc()
		d.h.Warn("dialog: table full, dialog refused", "max_dialogs", d.perShard*d.tbl.NumShards())
		return false
	}
	e, err := s.Insert(h, callID)
	if err != nil {
		s.Unlock()
		d.refused.Inc()
		return false
	}
	g := &e.Value
	id := d.nextID.Add(1)
	if id == 0 {
		id = d.nextID.Add(1)
	}
	g.id = id
	g.inv = c.R.Ref()
	g.start = s.Now()
	g.proto[toCaller], g.hop[toCaller] = c.Proto(), packAddr(c.R.Src)
	g.cseq[toCaller] = m.CSeq().Num
	var na parser.NameAddr
	hasContact := m.Contact(&na)
	var scratch [maxPart]byte
	rs := routeValues(scratch[:0], m, parser.HdrRecordRoute, nil, false)
	// Room for the answer too: the callee's tag, Contact and route set
	// are usually about the size of the caller's.
	g.reserve(len(m.FromTag()) + len(m.From().Raw) + len(m.To().Raw) + 2*(len(na.URI)+len(rs)) + 2*len(m.FromTag()))
	ok := g.put(m.FromTag(), &g.fromTag) && g.put(m.From().Raw, &g.from) && g.put(m.To().Raw, &g.to) &&
		(!hasContact || g.putTarget(toCaller, na.URI, nil)) && g.put(rs, &g.route[toCaller])
	if !ok {
		s.Remove(e)
		s.Unlock()
		d.refused.Inc()
		return false
	}
	s.Account(e, cap(g.buf))
	d.unconfirmed.Add(1)
	// Until it is answered, the dialog is kept at most the default
	// timeout: a route that drops the INVITE does not leak it.
	s.StartTimer(e, &g.timer, 0, time.Duration(d.timeout.Load())*time.Millisecond)
	if len(d.subs) > 0 {
		d.emit(s, e, EventCreated, 0, Proxy)
	}
	s.Unlock()
	d.recordRoute(c, id, true)
	return true
}

// sameFrom reports whether m's From URI is that of g's INVITE (RFC 3261
// §19.1.4): the spiral of g's INVITE has it, proxies do not change it.
// Our Via with the branch g's INVITE went out on is no proof of a
// spiral: its callee has it in the INVITE it received, and copied it
// into INVITEs of its own (as itself, to other numbers) that went
// through uncounted and unrecorded. A route that authenticates From
// (the provider's ProxyAuthorize) makes the From the caller's account.
func (g *dlg) sameFrom(m *parser.Message) bool {
	na, ok := parser.ParseNameAddr(g.get(g.from))
	var a, b parser.URI
	return ok && a.Parse(na.URI) == nil && b.Parse(m.From().URI) == nil && sameURI(&a, &b, true)
}

// recordRoute puts the dialog id in our Record-Route and, for the
// dialog's own INVITE, watches its responses.
func (d *Dialog) recordRoute(c *routing.Ctx, id uint64, watch bool) {
	var b [idLen]byte
	c.R.SetRecordRouteParam([]byte(didParam), appendID(b[:0], id))
	c.RecordRoute()
	if watch {
		c.SetValue(SlotDialog, int64(id))
		c.R.Watch(d)
	}
}

// IsInDialog reports whether the request's dialog is one the module
// holds: the id in our verified Route names a live dialog of its Call-ID
// and the tags are its own. It changes nothing (OpenSIPS: is_in_dialog
// semantics of match_dialog without the side effects).
func (d *Dialog) IsInDialog(c *routing.Ctx) bool {
	id, ok := parseID(c.R.DialogRouteParam(didParam))
	if !ok {
		return false
	}
	m := c.Msg()
	callID := m.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	e := find(s, h, callID, id)
	found := false
	if e != nil {
		_, found = e.Value.side(m.FromTag(), m.ToTag())
	}
	s.Unlock()
	return found
}

// DialogEnded is for a route that keeps a count of its own for each call
// (the provider's fraud limits; OpenSIPS's fraud_detection counts a call
// until the dialog's end callback): after MatchDialog, or MatchDialogID
// (topology hiding's Match), on an in-dialog request, hasDialog reports
// whether the request names a dialog of ours (the id in our verified
// Route, or the one MatchDialogID put in SlotDialog; the requests of a
// call relayed without CreateDialog name none) and ended whether that
// dialog is no longer held. For a BYE they matched, ended is whether
// the BYE ended the dialog: the confirmed dialog's BYE does, a BYE while
// it is early does not. A BYE they did not match (another To tag, sent
// elsewhere than to the other party, a dialog ended already) ended
// nothing, whatever ended says. It changes nothing and allocates nothing.
func (d *Dialog) DialogEnded(c *routing.Ctx) (hasDialog, ended bool) {
	id, ok := parseID(c.R.DialogRouteParam(didParam))
	if !ok {
		if id = uint64(c.Value(SlotDialog)); id == 0 {
			return false, false
		}
	}
	callID := c.Msg().CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	e := find(s, h, callID, id)
	s.Unlock()
	return true, e == nil
}

// MatchDialog finds the dialog of an in-dialog request loose-routed by
// our Record-Route (OpenSIPS match_dialog(), which loose_route does on
// its own there): the id in our Route, whose signature the core verified
// for this Call-ID and these tags, names the dialog; the request's
// Call-ID and tags must then be the dialog's (those of the caller, or
// swapped for the callee; an early dialog's To tags while it is early).
// It records the request's CSeq for the BYEs the proxy may have to send,
// ends the confirmed dialog on a BYE (either side; a BYE in the early
// state is matched and ends nothing; one from elsewhere than the side's
// first hop also gets the proxy's BYE to that side, byeFromElsewhere), and for a re-INVITE or UPDATE
// watches the 2xx to refresh both targets. Any other request's route may
// then change the dialog (SetTimeout, SetValue, SetFlag, SetProfile).
// A request of the confirmed dialog that does not go to the other
// party's target as the dialog knows it (ValidateDialog false: a BYE the
// caller addressed to herself) matches nothing and changes nothing: no
// end, no record, no CSeq (switchboard_dialog_misrouted_total).
// False: no dialog of ours (a Route without id, a dialog ended or
// unknown, tags of another call: switchboard_dialog_mismatched_total),
// or a request that goes elsewhere; the route decides what to do (the
// provider answers the latter 403, having asked ValidateDialog, and
// relays the rest on LooseRoute's word as before). It allocates
// nothing.
func (d *Dialog) MatchDialog(c *routing.Ctx) bool {
	id, ok := parseID(c.R.DialogRouteParam(didParam))
	if !ok {
		return false
	}
	from := Callee
	if c.R.Downstream() {
		from = Caller
	}
	_, ok = d.match(c, id, from, nil, c.RU(), c.NextHopURI())
	return ok
}

// match is MatchDialog for dialog id and a request that must come from
// side from. With buf, the request's peer (the other side) is copied into
// buf first, and the request must have one (MatchDialogID). With ruri,
// a request of the confirmed dialog must go to the peer with that
// Request-URI and next hop (goesTo); MatchDialogID's requests are sent to
// the peer by the module that matched them.
func (d *Dialog) match(c *routing.Ctx, id uint64, from Side, buf, ruri, next []byte) (peer Peer, ok bool) {
	m := c.Msg()
	callID := m.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	e := find(s, h, callID, id)
	if e == nil {
		s.Unlock()
		if d.share != nil && buf == nil {
			// Perhaps a call another node set up: read from Redis off
			// the receive path, and the request's effect (its CSeq, a
			// BYE's end) applied once it is here. The request itself is
			// relayed on the verified Route meanwhile.
			d.share.fetch(c, h, id, from, ruri, next)
		}
		return Peer{}, false
	}
	g := &e.Value
	side, ok := g.side(m.FromTag(), m.ToTag())
	if !ok || side != from {
		s.Unlock()
		d.mismatched.Inc()
		return Peer{}, false
	}
	if ruri != nil && g.state == stConfirmed && !g.goesTo(peerOf(side), ruri, next) {
		s.Unlock()
		d.misrouted.Inc()
		return Peer{}, false
	}
	if buf != nil {
		if peer, ok = g.peer(side, m.ToTag(), buf); !ok {
			s.Unlock()
			return Peer{}, false
		}
		c.SetValue(SlotDialog, int64(id))
	}
	meth := m.Method()
	if meth != parser.MethodAck && meth != parser.MethodCancel {
		i := toCaller
		if side == Callee {
			i = toCallee
		}
		if n := m.CSeq().Num; n > g.cseq[i] && n <= maxCSeq {
			g.cseq[i] = n
			if meth != parser.MethodBye {
				d.changed(s, e) // the BYEs after a restart need it
			}
		}
	}
	switch meth {
	case parser.MethodBye:
		// Only the confirmed dialog's BYE ends it. A BYE in the early
		// state (the caller's, with the To tag of a 1xx: RFC 3261 §15;
		// or a forked callee's) is relayed and ends nothing, as in
		// Kamailio and OpenSIPS: the INVITE's final response does. It
		// need not even reach the callee (the caller picks its
		// Request-URI), and ending the dialog on it left the call
		// answered next without a dialog: no record, its profiles'
		// places free, no timeout.
		if g.state == stConfirmed {
			d.byeFromElsewhere(e, side, c.R.Src)
			d.finish(s, e, ReasonBye, side, false)
		}
		s.Unlock()
		return peer, true
	case parser.MethodInvite, parser.MethodUpdate:
		c.R.Watch(d)
	}
	// The route's functions on the dialog (SetTimeout, SetValue,
	// SetFlag, SetProfile) work in every in-dialog request it matched, as
	// OpenSIPS's $DLG_timeout and set_dlg_profile do after match_dialog.
	c.SetValue(SlotDialog, int64(id))
	s.Unlock()
	return peer, true
}

// find returns the live dialog id of callID in shard s, locked. A
// dialog ended here and waiting for Redis to confirm it (fEnding) is no
// longer live.
func find(s *shards.Shard[dlg], h uint64, callID []byte, id uint64) *shards.Entry[dlg] {
	return s.Find(h, func(e *shards.Entry[dlg]) bool {
		return e.Value.id == id && e.Value.pflags&fEnding == 0 && string(e.Key()) == string(callID)
	})
}

// SetTimeout sets the timeout of the request's dialog, created by
// CreateDialog in this route or matched by MatchDialog (OpenSIPS
// $DLG_timeout): a confirmed dialog is ended that long after it was
// answered (from now, when it is answered already); at most 168h, and
// never later than 168h after the answer, the bound a restart restores
// (restoredTimeout). False: the request has no dialog, or t is not
// positive.
func (d *Dialog) SetTimeout(c *routing.Ctx, t time.Duration) bool {
	id := uint64(c.Value(SlotDialog))
	if id == 0 || t <= 0 {
		return false
	}
	t = min(t, maxTimeout)
	callID := c.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := find(s, h, callID, id)
	if e == nil {
		return false
	}
	g := &e.Value
	g.timeout = uint32(t.Milliseconds())
	if g.state == stConfirmed {
		// The timer started with t itself, unbounded, while the
		// dialog kept the bounded value.
		when := min(s.Now()+t.Milliseconds(), g.answer+maxTimeout.Milliseconds())
		g.timeout = uint32(when - g.answer) // confirmed: from the answer
		if g.flags&FlagSessionTimer != 0 {
			// The session's expiry still ends the call first if it
			// comes first; a later refresh is bounded by the new value.
			when = min(when, g.answer+int64(g.sessEnd))
		}
		s.StartTimerAt(e, &g.timer, 0, when)
		d.changed(s, e)
	}
	return true
}

// SetSessionTimer arms the session timer of the request's dialog (RFC
// 4028; the sst module calls it on the 2xx of the INVITE, re-INVITE or
// UPDATE that set or refreshed the session): the dialog is ended, with a
// BYE each way, t after the answer (after now, for a refresh of a dialog
// answered already) unless another refresh comes first, and never later
// than its own timeout (default_timeout or SetTimeout, as it stood when
// the session timer was first armed or set since): a refresh cannot make a
// call outlive its timeout, nor a prepaid limit. t of 0 stops the
// session timer (a refresh answered without Session-Expires): the dialog
// ends at its own timeout again. The session timer is kept with the
// dialog (FlagSessionTimer; its expiry is the stored timeout), so a
// restart keeps it. False, nothing changed: the request has no dialog,
// the 2xx is another fork's of an INVITE already answered, or the
// dialog is shared with other nodes (dialog.sharing: redis), whose owner
// would not see a refresh that lands on another node and would end a
// call that is alive.
func (d *Dialog) SetSessionTimer(c *routing.Ctx, t time.Duration) bool {
	id := uint64(c.Value(SlotDialog))
	if id == 0 || d.share != nil {
		return false
	}
	t = max(min(t, maxTimeout), 0)
	callID := c.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := find(s, h, callID, id)
	if e == nil {
		return false
	}
	g := &e.Value
	ms := uint32(t.Milliseconds())
	if g.state != stConfirmed {
		// The answer starts it (confirm).
		g.sessEnd = ms
		if ms == 0 {
			g.flags &^= FlagSessionTimer
		} else {
			g.flags |= FlagSessionTimer
		}
		return true
	}
	if !c.HasToTag() {
		return false // another fork's 2xx: its caller ends that dialog
	}
	if g.flags&FlagSessionTimer == 0 {
		if ms == 0 {
			return true
		}
		// The deadline as it stands is the dialog's own.
		g.timeout = uint32(max(g.timer.When()-g.answer, 0))
	}
	var when int64
	if ms == 0 {
		g.flags &^= FlagSessionTimer
		g.sessEnd = 0
		when = g.answer + int64(g.timeout)
	} else {
		g.flags |= FlagSessionTimer
		g.sessEnd = uint32(min(s.Now()+int64(ms), g.answer+maxTimeout.Milliseconds()) - g.answer)
		when = g.answer + int64(min(g.sessEnd, g.timeout))
	}
	s.StartTimerAt(e, &g.timer, 0, when)
	d.changed(s, e)
	return true
}

// Sent implements txn.Watcher: the responses the dialog's INVITE (or a
// re-INVITE or UPDATE inside it) sends upstream.
func (d *Dialog) Sent(r *txn.Request, b *txn.Branch, code int, resp *parser.Message) {
	id := uint64(r.Value(SlotDialog))
	if id == 0 {
		return
	}
	callID := r.Msg.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := find(s, h, callID, id)
	if e == nil {
		return
	}
	if r.HasToTag() {
		if code >= 200 && code < 300 && resp != nil {
			d.refresh(e, r, b, resp)
			d.changed(s, e)
		}
		return
	}
	g := &e.Value
	switch {
	case code < 200:
		if resp == nil || resp.ToTag() == nil || g.state == stConfirmed {
			return
		}
		tag := resp.ToTag()
		// The callee's numbering, known from its first reliable or
		// early response: a PRACK or UPDATE before the 2xx needs it too
		// (topology hiding shifts their CSeq and RAck by it).
		if n := resp.CSeq().Num; n <= maxCSeq {
			g.cseqOffset = n - r.ClientCSeq()
		}
		if !g.hasEarly(tag) && int(g.nearly) < maxEarly && g.put(tag, &g.early[g.nearly]) {
			if g.flags&FlagPeers != 0 {
				g.putEarlyPeer(int(g.nearly), g.id, resp)
			}
			g.nearly++
			s.Account(e, cap(g.buf))
		}
		if g.state == stUnconfirmed {
			g.state = stEarly
			d.unconfirmed.Add(-1)
			d.early.Add(1)
		}
	case code < 300:
		if g.state == stConfirmed {
			return // the 2xx of another fork: its UAC ends it itself
		}
		if resp == nil || !d.confirm(s, e, r, b, resp) {
			d.unkept(s, e, code, resp)
		}
	default:
		if g.state == stConfirmed {
			return
		}
		// Who ended the call: the caller who canceled it, the callee
		// whose final was relayed (busy, declined), or the proxy whose own
		// answer it was (the route's refusal, timer C's 408).
		reason, by := ReasonFailed, Callee
		if resp == nil {
			by = Proxy
		}
		if r.Canceled() {
			reason, by = ReasonCanceled, Caller
		}
		d.final(e, code, resp)
		d.end(s, e, reason, by)
	}
}

// final records the status and reason phrase of the INVITE's final
// response for the events: the phrase relayed, or the standard one for a
// response of our own (resp nil). A phrase that does not fit is left out.
func (d *Dialog) final(e *shards.Entry[dlg], code int, resp *parser.Message) {
	g := &e.Value
	g.code = uint16(code)
	if len(d.subs) == 0 {
		return
	}
	if resp != nil {
		g.reserve(len(resp.Reason()))
		g.put(resp.Reason(), &g.phrase)
		return
	}
	text := parser.StatusText(code)
	g.reserve(len(text))
	g.putString(text, &g.phrase)
}

// confirm records the 2xx of the dialog's INVITE: the callee's tag, its
// Contact, the route set towards it (the Record-Route values above ours,
// in reverse) and where the branch went. False, changing nothing: the
// 2xx has no To tag, or one too large to keep (unkept).
func (d *Dialog) confirm(s *shards.Shard[dlg], e *shards.Entry[dlg], r *txn.Request, b *txn.Branch, resp *parser.Message) bool {
	g := &e.Value
	tag := resp.ToTag()
	if len(tag) == 0 || len(tag) > maxPart || len(g.buf)+len(tag) > maxStored {
		return false
	}
	var na parser.NameAddr
	hasContact := resp.Contact(&na)
	var mark [4 + idLen]byte
	stop := appendID(append(mark[:0], "did="...), g.id)
	var scratch [maxPart]byte
	rs := routeValues(scratch[:0], resp, parser.HdrRecordRoute, stop, true)
	g.reserve(len(tag) + len(na.URI) + len(rs) + len(resp.Reason()))
	g.put(tag, &g.toTag) // fits: checked above
	if g.state == stEarly {
		d.early.Add(-1)
	} else {
		d.unconfirmed.Add(-1)
	}
	d.confirmed.Add(1)
	g.state = stConfirmed
	g.answer = s.Now()
	g.code = uint16(resp.StatusCode())
	if !hasContact && b != nil {
		// RFC 3261 §12.1.1 wants a Contact in the 2xx; without one (a
		// broken gateway), the Request-URI the answered branch was sent
		// with stands for it: the caller's requests, and the proxy's,
		// go where the INVITE went.
		na.URI, hasContact = b.URI(), len(b.URI()) > 0
	}
	if hasContact && b != nil {
		if g.putTarget(toCallee, na.URI, relayedContact(r, r.SentResponse())) && g.put(rs, &g.route[toCallee]) {
			proto, dst := b.Destination()
			g.proto[toCallee], g.hop[toCallee] = proto, packAddr(dst)
			g.hasCallee = true
		}
		// The caller's Contact as the callee has it: the INVITE as the
		// answered branch sent it, after the route's edits.
		g.setSent(toCaller, relayedContact(r, b.Sent()))
	}
	d.calleeView(g, r, resp)
	if len(d.subs) > 0 {
		g.put(resp.Reason(), &g.phrase) // for the events; the BYEs come first
	}
	s.Account(e, cap(g.buf))
	t := int64(g.timeout)
	if t == 0 {
		t = d.timeout.Load()
	}
	// From now on timeout is the dialog's own end after the answer (now),
	// and sessEnd, holding the session's interval until now, the
	// session's expiry.
	g.timeout = uint32(min(t, maxTimeout.Milliseconds()))
	if g.flags&FlagSessionTimer != 0 {
		t = min(t, int64(g.sessEnd))
	}
	s.StartTimer(e, &g.timer, 0, time.Duration(t)*time.Millisecond)
	d.changed(s, e)
	if len(d.subs) > 0 {
		d.emit(s, e, EventAnswered, 0, Proxy)
	}
	return true
}

// unkept ends a dialog whose INVITE got a 2xx the dialog cannot keep:
// one of our own (a route's), or one without a To tag, or with a To tag
// past what a dialog stores (1 KiB a part, 4 KiB in all). No in-dialog
// request could match such a dialog, nor the proxy's BYEs name it, and
// nothing but its timeout (12 h by default) would end it, holding its
// profiles' places and billed that long: it ends at once (failed, by the
// proxy), its profiles released, and the call goes on without a dialog,
// as one CreateDialog refused. Counted in
// switchboard_dialog_unkept_answers_total and logged. The shard is
// locked.
func (d *Dialog) unkept(s *shards.Shard[dlg], e *shards.Entry[dlg], code int, resp *parser.Message) {
	d.unkeptAnswers.Inc()
	tag := -1 // our own 2xx: no tag to read
	if resp != nil {
		tag = len(resp.ToTag())
	}
	d.h.Warn("dialog: a 2xx the dialog cannot keep (ours, no To tag, or one too large): dialog ended, the call goes on without it",
		"id", e.Value.id, "call_id", string(e.Key()), "code", code, "to_tag_bytes", tag)
	d.final(e, code, resp)
	d.end(s, e, ReasonFailed, Proxy)
}

// calleeView keeps what a route changed in the relayed INVITE as the
// callee has it, from the 2xx, which echoes the request's From, To and
// CSeq: the From and To when they differ from the caller's (a route's
// uac_replace_from/to), and how far the callee's CSeq numbers are above
// the caller's (the INVITE re-sent with credentials). Without it the
// proxy's BYE would reach the callee with identities, or a CSeq, that
// are not its dialog's.
func (d *Dialog) calleeView(g *dlg, r *txn.Request, resp *parser.Message) {
	if f := resp.From().Raw; string(f) != string(g.get(g.from)) {
		g.put(f, &g.calleeFrom)
	}
	if t := resp.To().Raw; !sameWithTag(t, g.get(g.to), g.get(g.toTag)) {
		g.put(t, &g.calleeTo)
	}
	if n := resp.CSeq().Num; n <= maxCSeq {
		g.cseqOffset = n - r.ClientCSeq()
	}
}

// sameWithTag reports whether v is base;tag=tag.
func sameWithTag(v, base, tag []byte) bool {
	return len(v) == len(base)+5+len(tag) && string(v[:len(base)]) == string(base) &&
		string(v[len(base):len(base)+5]) == ";tag=" && string(v[len(base)+5:]) == string(tag)
}

// refresh takes the targets of a 2xx to a re-INVITE or UPDATE (a target
// refresh, RFC 3261 §12.2): the requester's Contact and the responder's,
// each with the Contact as the other party was given it (the request as
// branch b sent it, the 2xx as it went upstream).
func (d *Dialog) refresh(e *shards.Entry[dlg], r *txn.Request, b *txn.Branch, resp *parser.Message) {
	g := &e.Value
	req := r.Msg
	side, ok := g.side(req.FromTag(), req.ToTag())
	if !ok || g.state != stConfirmed {
		return
	}
	reqSide, respSide := toCaller, toCallee
	if side == Callee {
		reqSide, respSide = toCallee, toCaller
	}
	// Other nodes may end a shared dialog: they learn its new targets.
	shared := d.share != nil && g.pflags&fShared != 0
	var sent []byte
	if b != nil {
		sent = relayedContact(r, b.Sent())
	}
	var na parser.NameAddr
	if req.Contact(&na) && d.retarget(g, reqSide, na.URI, sent) && shared {
		d.share.refreshed(e.Hash(), g.id, reqSide, na.URI)
	}
	if resp.Contact(&na) && (respSide == toCaller || g.hasCallee) &&
		d.retarget(g, respSide, na.URI, relayedContact(r, r.SentResponse())) && shared {
		d.share.refreshed(e.Hash(), g.id, respSide, na.URI)
	}
}

// retarget replaces a side's target, with the Contact as relayed (sent;
// nil: not known, or the same), and says whether the target changed. The
// old bytes stay in the buffer (a target refresh is rare); past maxStored
// the old target is kept (and the change still reported: the nodes
// sharing the call learn it), and only the side's first hop validates
// its requests from then on (sentLost).
func (d *Dialog) retarget(g *dlg, i int, uri, sent []byte) bool {
	changed := string(g.get(g.target[i])) != string(uri)
	if !changed && (len(sent) == 0 || string(sent) == string(g.sentTarget(i)) && g.sent&(sentLost<<i) == 0) {
		return false
	}
	if !g.putTarget(i, uri, sent) {
		g.sent |= sentLost << i
	}
	return changed
}

// relayedContact is the first Contact URI of data, a message the proxy
// sent for r's transaction (a view into data); nil for a hidden call
// (topology hiding's Rewriter put the proxy's own Contact there: its
// parties' requests come to the proxy and are sent on by the module).
func relayedContact(r *txn.Request, data []byte) []byte {
	if r.Rewriter() != nil {
		return nil
	}
	return contactSent(data)
}

// onTimer ends a dialog at its timeout: a confirmed one with a BYE to
// each side, one not answered yet with a CANCEL of its INVITE (the
// caller gets 487; nothing when the INVITE is no longer pending: a route
// dropped it). Ticker goroutine, shard locked.
func (d *Dialog) onTimer(s *shards.Shard[dlg], e *shards.Entry[dlg], _ *shards.Timer) {
	d.finish(s, e, ReasonTimeout, Proxy, true)
}

// finish ends e for reason why, by side by; with byes, the proxy ends it
// on the wire too (queueEnd: a BYE each way, or the CANCEL of an INVITE
// not answered). A dialog other nodes may hold (dialog.sharing: redis)
// ends through Redis instead: it waits, out of reach of requests, until
// Redis says whether this node is the one that ends it; only that node
// sends the BYEs and tells the subscribers (the call's record). The
// shard is locked.
func (d *Dialog) finish(s *shards.Shard[dlg], e *shards.Entry[dlg], why Reason, by Side, byes bool) {
	if d.share != nil && e.Value.pflags&fShared != 0 {
		d.share.end(s, e, why, by, byes)
		return
	}
	if byes {
		d.queueEnd(e)
	}
	d.end(s, e, why, by)
}

// byeFromElsewhere is for the BYE of side that ends confirmed dialog e,
// received from src: when src is not the address of that side's first
// hop (where the proxy's own requests to it go: the address the caller's
// INVITE came from, the callee's the INVITE was relayed to), the proxy
// also sends its own BYE to that side. Nothing tells a party's BYE from
// one the other party sent with the tags swapped, as if from it,
// addressed to herself: that BYE goes to her as the dialog's, and ended
// the dialog (its record written, her place under the fraud limits and
// in the profiles freed) while the side it claims to come from never had
// a BYE, the call going on there (a gateway billing it). A party that
// did send it answers the proxy's BYE 481. The shard is locked.
func (d *Dialog) byeFromElsewhere(e *shards.Entry[dlg], side Side, src netip.AddrPort) {
	g := &e.Value
	i := toCaller
	if side == Callee {
		if !g.hasCallee {
			return
		}
		i = toCallee
	}
	hop := g.hop[i].AddrPort()
	if !hop.IsValid() || !src.IsValid() || hop.Addr() == src.Addr().Unmap() {
		return
	}
	d.byeElsewhere.Inc()
	d.byes.push(bye{proto: g.proto[i], dst: hop, msg: d.appendBye(nil, e, i)})
}

// queueEnd queues what ends e on the wire: a BYE to each side of a
// confirmed dialog, the CANCEL of the INVITE of one not answered. The
// shard is locked.
func (d *Dialog) queueEnd(e *shards.Entry[dlg]) {
	if e.Value.state == stConfirmed {
		d.queueByes(e)
		return
	}
	d.byes.push(bye{cancel: e.Value.inv})
}

// end removes a dialog, releases its profiles and tells the subscribers.
// The shard is locked.
func (d *Dialog) end(s *shards.Shard[dlg], e *shards.Entry[dlg], why Reason, by Side) {
	d.endAt(s, e, why, by, s.Now())
}

// endAt is end for a dialog that ended at the time at (ms): a dialog
// ended through Redis is told to the subscribers once Redis answered,
// with the time its BYE came.
func (d *Dialog) endAt(s *shards.Shard[dlg], e *shards.Entry[dlg], why Reason, by Side, at int64) {
	g := &e.Value
	d.ended[why].Inc()
	d.uncount(g)
	if len(d.subs) > 0 {
		d.emitAt(s, e, EventEnded, why, by, at)
	}
	d.remove(s, e)
}

// uncount takes a dialog off the counts and releases its profiles.
func (d *Dialog) uncount(g *dlg) {
	switch {
	case g.pflags&fRemote != 0:
		d.remote.Add(-1)
	case g.state == stUnconfirmed:
		d.unconfirmed.Add(-1)
	case g.state == stEarly:
		d.early.Add(-1)
	case g.state == stConfirmed:
		d.confirmed.Add(-1)
	}
	for i := 0; i < int(g.nprof); i++ {
		d.profiles[g.profs[i].idx].release(g.get(g.profs[i].val))
	}
	g.nprof = 0
}

// remove takes a dialog out of the table (and of the store).
func (d *Dialog) remove(s *shards.Shard[dlg], e *shards.Entry[dlg]) {
	d.forget(s, e)
	s.StopTimer(&e.Value.timer)
	s.Remove(e)
}

// drop removes a dialog that another node ended: no event, no BYE, not
// counted as ended here. The shard is locked.
func (d *Dialog) drop(s *shards.Shard[dlg], e *shards.Entry[dlg]) {
	d.uncount(&e.Value)
	d.remove(s, e)
}
