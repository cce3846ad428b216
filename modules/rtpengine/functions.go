package rtpengine

import (
	"errors"
	"net/netip"
	"strconv"

	"switchboard/modules/rtpengine/ng"
	"switchboard/parser"
	"switchboard/parser/sdp"
	"switchboard/routing"
)

// FlagOffered is the transaction flag Offer sets on a request whose SDP
// went through rtpengine: the reply route's Manage then asks for the
// answer (OpenSIPS keeps the same state in the transaction).
const FlagOffered = 61

// FlagLateOffer is the transaction flag Manage sets on an INVITE without
// SDP (a late offer): the reply route's Manage then offers the SDP of its
// 1xx/2xx, and the ACK (or PRACK) that carries the answer is answered.
const FlagLateOffer = 60

// Errors the continuation of Offer and Manage can get.
var (
	// ErrBadSDP: the body says application/sdp but does not parse.
	ErrBadSDP = errors.New("rtpengine: malformed SDP")
	// ErrDisabled: the module has no instance.
	ErrDisabled = errors.New("rtpengine: no instance configured")
	// ErrEdits: the route's edits of the request left no room for
	// rtpengine's SDP (parser.MaxEdits); the session it opened is deleted.
	ErrEdits = errors.New("rtpengine: the request has too many edits to take rtpengine's SDP")
)

// NGError is rtpengine's refusal of a command ("result": "error"), with
// its "error-reason".
type NGError struct{ Reason string }

func (e *NGError) Error() string { return "rtpengine: " + e.Reason }

// Unavailable reports whether err means no rtpengine answered (as opposed
// to one refusing the SDP).
func Unavailable(err error) bool {
	return errors.Is(err, ng.ErrTimeout) || errors.Is(err, ng.ErrNoInstance) ||
		errors.Is(err, ng.ErrClosed) || errors.Is(err, ErrDisabled)
}

// Refuse answers a request whose Offer failed, as the configuration says,
// and reports whether it did: a malformed SDP gets 488 "Malformed SDP",
// an SDP rtpengine refused 488 with its reason, and no rtpengine
// answering 503 "Media Relay Unavailable" (on_unavailable: reject) or
// nothing (relay: false, the route relays the call with its own SDP).
func (e *Engine) Refuse(c *routing.Ctx, err error) bool {
	var ne *NGError
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrBadSDP):
		c.Reply(488, "Malformed SDP")
	case errors.Is(err, ErrEdits):
		c.Reply(500, "Server Internal Error (too many edits)")
	case errors.As(err, &ne):
		c.Reply(488, "Not Acceptable Here (media relay: "+sanitize(ne.Reason)+")")
	case Unavailable(err) && e.relayOnFail.Load():
		return false
	default:
		c.Reply(503, "Media Relay Unavailable")
	}
	return true
}

// sanitize keeps a reason phrase on one line of printable text.
func sanitize(s string) string {
	b := []byte(s)
	if len(b) > 80 {
		b = b[:80]
	}
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = ' '
		}
	}
	return string(b)
}

func isSDP(m *parser.Message) bool {
	_, _, ok := sdpPart(m)
	return ok
}

// sdpOf returns the SDP m carries: its body, or the application/sdp part
// of a multipart body (SDP beside ISUP from a SIP-I trunk), as OpenSIPS
// and Kamailio find it; nil when it has none.
func sdpOf(m *parser.Message) []byte {
	if start, end, ok := sdpPart(m); ok {
		return m.Body()[start:end]
	}
	return nil
}

// sdpPart returns where m's SDP is in its body.
func sdpPart(m *parser.Message) (start, end int, ok bool) {
	body := m.Body()
	if len(body) == 0 {
		return 0, 0, false
	}
	if parser.EqualFold(m.MediaType(), []byte("application/sdp")) {
		return 0, len(body), true
	}
	start, end, ok = parser.BodyPart(body, m.Get(parser.HdrContentType), "application/sdp")
	return start, end, ok && end > start
}

// bodyWith returns m's body with its SDP replaced by sdp: sdp itself for
// an SDP body, the multipart body with that part's content replaced
// (allocated) otherwise.
func bodyWith(m *parser.Message, sdp []byte) []byte {
	start, end, ok := sdpPart(m)
	body := m.Body()
	if !ok || start == 0 && end == len(body) {
		return sdp
	}
	b := make([]byte, 0, len(body)-(end-start)+len(sdp))
	return append(append(append(b, body[:start]...), sdp...), body[end:]...)
}

// checkSDP: a body that is not SDP is no business of ours (false, nil);
// SDP that does not parse is refused.
func checkSDP(m *parser.Message) (bool, error) {
	if !isSDP(m) {
		return false, nil
	}
	var s sdp.Session
	if s.Parse(sdpOf(m)) != nil {
		return false, ErrBadSDP
	}
	return true, nil
}

// tags returns the from-tag and to-tag of an offer or answer carried by
// m, oriented as Kamailio's and OpenSIPS's rtpengine modules do it: the
// from-tag is the party that made the offer. An offer in a request and
// an answer in a response keep the message's tags; an offer in a
// response (a late offer in the 2xx) and an answer in a request (the ACK
// or PRACK answering it) swap them.
func tags(m *parser.Message, cmd string) (from, to []byte) {
	if m.IsRequest() == (cmd == "answer") {
		return m.ToTag(), m.FromTag()
	}
	return m.FromTag(), m.ToTag()
}

// command builds an offer, answer or delete dictionary in a pooled buffer.
func (e *Engine) command(name string, callID, fromTag, toTag []byte, src netip.Addr, body []byte, f *Flags) *[]byte {
	bp := e.bufs.Get().(*[]byte)
	b := ng.AppendDict((*bp)[:0])
	b = ng.AppendKeyStr(b, "command", name)
	b = ng.AppendKeyString(b, "call-id", callID)
	b = ng.AppendKeyString(b, "from-tag", fromTag)
	if len(toTag) > 0 {
		b = ng.AppendKeyString(b, "to-tag", toTag)
	}
	if body != nil {
		b = ng.AppendKeyString(b, "sdp", body)
	}
	if src.IsValid() {
		// Where the message came from, so that without trust-address
		// rtpengine expects the media from the signalling address (a
		// phone behind NAT), as OpenSIPS sends it.
		var a [64]byte
		b = ng.AppendList(ng.AppendStr(b, "received-from"))
		if src = src.Unmap(); src.Is4() {
			b = ng.AppendStr(b, "IP4")
		} else {
			b = ng.AppendStr(b, "IP6")
		}
		b = ng.AppendString(b, src.AppendTo(a[:0]))
		b = ng.AppendEnd(b)
	}
	if f != nil {
		b = append(b, f.frag...)
	}
	b = ng.AppendEnd(b)
	*bp = b
	return bp
}

// flagsFor resolves the flags a command carries (rtpengine.flags for nil,
// or for InSet on nil) and the set it goes to.
func (e *Engine) flagsFor(f *Flags) (*Flags, int) {
	set := f.Set()
	if set < 0 {
		set = int(e.defaultSet.Load())
	}
	if f == nil || f.dflt {
		f = e.flags.Load()
	}
	return f, set
}

// send sends a command of the call callID: to the instance its
// session was created on when that one is remembered and in service,
// else to the instance of set its Call-ID hashes to. An offer or answer
// rtpengine accepted remembers the instance for the call; a delete
// forgets it. opens, for an offer, names the session it opens, deleted on
// each instance that does not answer in time (see opensSession).
func (e *Engine) send(callID []byte, set int, name string, cmd []byte, opens *opensSession, cb func(v ng.Value, err error)) {
	sn := e.snap.Load()
	prefer := e.calls.get(callID)
	id := string(callID) // the message may be gone when the answer comes
	var timedOut func(in *ng.Instance, first bool)
	if opens != nil {
		fromTag, toTag, inDialog := string(opens.fromTag), string(opens.toTag), opens.inDialog
		timedOut = func(in *ng.Instance, first bool) {
			// A re-offer's call has its session where it is remembered
			// (or, not remembered, where its commands went first): that
			// one carries the call's media until the re-offer is
			// answered, and for good when it is refused.
			if inDialog && (in.Same(prefer) || prefer == nil && first) {
				return
			}
			e.queueDelete(in, id, fromTag, toTag)
		}
	}
	e.client.DoInWatched(sn.sets[set], prefer, callID, name, cmd, timedOut, func(in *ng.Instance, v ng.Value, err error) {
		switch {
		case name == "delete":
			e.calls.del([]byte(id))
		case err == nil && in != nil && string(v.Get("result").Bytes()) == "ok":
			e.calls.put([]byte(id), in)
		}
		cb(v, err)
	})
}

// opensSession is what an offer opens in rtpengine: the session of its
// Call-ID, from-tag and to-tag (as the offer names them), a new one when
// the call has none yet (inDialog false: an initial INVITE's offer, or the
// late offer in a response to one).
//
// An instance that did not answer an offer in time (the proxy resent it
// retries times, then gave up: rtpengine slow, or its answers lost) may
// have opened that session all the same. Nothing else would delete it:
// the call fails (or goes on through another instance of the set), and
// rtpengine keeps a one-sided call for its offer-timeout, an hour by
// default, its ports allocated. So the module deletes it there
// (queueDelete). OpenSIPS and Kamailio leave it. An answer opens no
// session (rtpengine refuses one for a Call-ID it does not know), so it
// needs no such delete.
type opensSession struct {
	fromTag, toTag []byte
	inDialog       bool
}

// Deletes of sessions timed-out offers may have opened wait in a queue of
// maxTimeoutDeletes, off the timer that gave up on the offer, and one
// goroutine sends them with at most maxTimeoutDeletesInFlight awaiting
// their answers (each resent, like any command, until timeout ×
// (retries + 1)). Past the queue's bound a delete is dropped and counted
// (switchboard_rtpengine_timeout_deletes_dropped_total): a wedged
// rtpengine with calls arriving by the thousand costs no more than that.
const (
	maxTimeoutDeletes         = 4096
	maxTimeoutDeletesInFlight = 64
)

type timedOutDelete struct {
	in                     *ng.Instance
	callID, fromTag, toTag string
}

// queueDelete queues the delete of a session on in; it never blocks.
func (e *Engine) queueDelete(in *ng.Instance, callID, fromTag, toTag string) {
	select {
	case e.deletes <- timedOutDelete{in: in, callID: callID, fromTag: fromTag, toTag: toTag}:
	default:
		e.timeoutDeletesDropped.Inc()
	}
}

// sendTimeoutDeletes sends the queued deletes, each to its instance alone
// (the one that may have the session, whatever its state).
func (e *Engine) sendTimeoutDeletes() {
	defer e.stopped.Done()
	inFlight := make(chan struct{}, maxTimeoutDeletesInFlight)
	for {
		select {
		case <-e.stop:
			return
		case inFlight <- struct{}{}:
		}
		var d timedOutDelete
		select {
		case <-e.stop:
			return
		case d = <-e.deletes:
		}
		bp := e.command("delete", []byte(d.callID), []byte(d.fromTag), []byte(d.toTag), netip.Addr{}, nil, nil)
		e.timeoutDeletes.Inc()
		// Any answer will do: "Unknown call-id" says the offer never
		// reached it.
		e.client.DoOn(d.in, "delete", *bp, func(*ng.Instance, ng.Value, error) { <-inFlight })
		e.putBuf(bp)
	}
}

func (e *Engine) putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		e.bufs.Put(bp)
	}
}

// result reads an answer: its SDP when rtpengine said ok, an error
// otherwise.
func (e *Engine) result(v ng.Value, err error) ([]byte, error) {
	if err != nil {
		if errors.Is(err, ng.ErrNoInstance) {
			e.errors["no_instance"].Inc()
		}
		return nil, err
	}
	switch string(v.Get("result").Bytes()) {
	case "ok":
		if s := v.Get("sdp").Bytes(); len(s) > 0 {
			return s, nil
		}
		e.errors["malformed"].Inc()
		return nil, &NGError{Reason: "answer without SDP"}
	case "error":
		e.errors["error"].Inc()
		return nil, &NGError{Reason: string(v.Get("error-reason").Bytes())}
	}
	e.errors["malformed"].Inc()
	return nil, &NGError{Reason: "unexpected result " + sanitize(string(v.Get("result").Bytes()))}
}

// Offer sends the request's SDP to rtpengine as an offer (OpenSIPS
// rtpengine_offer(flags)) and calls next once the relayed request carries
// rtpengine's SDP instead, or with the error (Refuse answers it as
// configured). The request is suspended meanwhile: next runs later on
// another goroutine, inside the transaction (routing.Resume), where the
// route relays it. A request without an SDP body goes to next at once;
// flags nil takes rtpengine.flags.
func (e *Engine) Offer(c *routing.Ctx, f *Flags, next func(c *routing.Ctx, err error)) {
	e.exchange(c, "offer", f, next)
}

// Answer is Offer with rtpengine's "answer" command, for a request that
// carries an SDP answer (OpenSIPS rtpengine_answer on a request: a PRACK
// or UPDATE answering the callee's offer).
func (e *Engine) Answer(c *routing.Ctx, f *Flags, next func(c *routing.Ctx, err error)) {
	e.exchange(c, "answer", f, next)
}

func (e *Engine) exchange(c *routing.Ctx, cmd string, f *Flags, next func(c *routing.Ctx, err error)) {
	if !e.Enabled() {
		next(c, ErrDisabled)
		return
	}
	m := c.Msg()
	ok, err := checkSDP(m)
	if err != nil {
		e.errors["bad_sdp"].Inc()
		next(c, err)
		return
	}
	if !ok {
		next(c, nil)
		return
	}
	if c.Method() == parser.MethodAck {
		e.answerAck(c, f, next)
		return
	}
	f, set := e.flagsFor(f)
	h := c.Suspend()
	if h == nil { // no transaction, not an ACK: nothing can wait
		next(c, nil)
		return
	}
	from, to := tags(m, cmd)
	bp := e.command(cmd, m.CallID(), from, to, c.SrcIP(), sdpOf(m), f)
	env := c.Env
	// A call's first offer opens its session: if the transaction is gone
	// when rtpengine answers (the INVITE was canceled, its ACK came, timer
	// I ran out), nothing would ever delete it.
	var callID, fromTag []byte
	var opens *opensSession
	if cmd == "offer" {
		if len(to) == 0 {
			callID, fromTag = append([]byte(nil), m.CallID()...), append([]byte(nil), from...)
		}
		opens = &opensSession{fromTag: from, toTag: to, inDialog: len(to) > 0}
	}
	e.send(m.CallID(), set, cmd, *bp, opens, func(v ng.Value, err error) {
		body, err := e.result(v, err)
		gone := routing.Resume(env, h, func(c *routing.Ctx) {
			if err == nil && !c.R.Editor().SetBody(c.R.Own(bodyWith(c.Msg(), body)), nil) {
				err = ErrEdits
				if callID != nil {
					e.deleteSession(callID, fromTag, nil, set)
				}
			}
			if err == nil && cmd == "offer" {
				c.SetFlag(FlagOffered)
			}
			next(c, err)
		})
		if gone != nil && err == nil && callID != nil {
			e.orphans.Inc()
			e.deleteSession(callID, fromTag, nil, set)
		}
	})
	e.putBuf(bp)
}

// answerAck answers the SDP of an ACK, the answer of a late offer (the
// INVITE had none, its 2xx carried the offer): the ACK is kept
// (SuspendAck) while rtpengine answers and forwarded with rtpengine's SDP
// by next. An ACK cannot be refused: when rtpengine refuses or does not
// answer, next gets no error and forwards the ACK with its own SDP
// (counted, and logged), since the call is up either way.
func (e *Engine) answerAck(c *routing.Ctx, f *Flags, next func(c *routing.Ctx, err error)) {
	// An ACK has no transaction, so limits.max_transactions does not
	// bound the ACKs kept: a party of a call could send ACKs with SDP
	// as fast as it likes, each holding the receive loop's buffers for
	// up to timeout × (retries + 1). Past maxHeldAcks the ACK goes on
	// with its own SDP at once (counted).
	if e.heldAcks.Add(1) > e.maxHeldAcks {
		e.heldAcks.Add(-1)
		e.acksNotHeld.Inc()
		next(c, nil)
		return
	}
	h := c.SuspendAck()
	if h == nil {
		e.heldAcks.Add(-1)
		next(c, nil)
		return
	}
	f, set := e.flagsFor(f)
	m := h.Msg
	from, to := tags(m, "answer")
	bp := e.command("answer", m.CallID(), from, to, c.SrcIP(), sdpOf(m), f)
	env := c.Env
	e.send(m.CallID(), set, "answer", *bp, nil, func(v ng.Value, err error) {
		body, err := e.result(v, err)
		routing.Resume(env, h, func(c *routing.Ctx) {
			if err == nil && !c.R.Editor().SetBody(c.R.Own(bodyWith(c.Msg(), body)), nil) {
				err = ErrEdits
			}
			if err != nil {
				e.h.Warn("rtpengine: ACK relayed with its own SDP (no media relay for the answer)", "call-id", string(c.Msg().CallID()), "error", err.Error())
			}
			next(c, nil)
		})
		e.heldAcks.Add(-1)
	})
	e.putBuf(bp)
}

// AnswerReply sends the SDP of a provisional or 2xx response to rtpengine
// as the answer to the request's offer (OpenSIPS rtpengine_answer in
// onreply_route), and relays the response with rtpengine's SDP. The
// response is held (txn HoldResponse) meanwhile, off the receive path.
// When rtpengine refuses or does not answer, the response goes upstream
// with its own SDP (counted in switchboard_rtpengine_errors_total): a
// call already answered is not turned down. It reports whether the
// response was held.
func (e *Engine) AnswerReply(rc *routing.ReplyCtx, f *Flags) bool {
	return e.replyExchange(rc, "answer", f)
}

// OfferReply is AnswerReply with rtpengine's "offer" command: a 1xx or
// 2xx that carries the offer of a call whose INVITE had no SDP (a late
// offer). The answer then comes in the ACK (or a PRACK), which Manage
// answers before forwarding it.
func (e *Engine) OfferReply(rc *routing.ReplyCtx, f *Flags) bool {
	return e.replyExchange(rc, "offer", f)
}

func (e *Engine) replyExchange(rc *routing.ReplyCtx, cmd string, f *Flags) bool {
	if !e.Enabled() {
		return false
	}
	m := rc.Msg()
	if ok, err := checkSDP(m); !ok {
		if err != nil {
			e.errors["bad_sdp"].Inc()
			e.h.Warn("rtpengine: response with malformed SDP relayed as it is", "call-id", string(m.CallID()))
		}
		return false
	}
	held, err := rc.Req.R.HoldResponse()
	if err != nil {
		return false
	}
	// A retransmission of a response whose answer is on its way (the UAS
	// repeats a 2xx every T1 until the ACK, and the ACK waits for us) is
	// dropped: the copy released with rtpengine's SDP stands for it. Not
	// asking again keeps a slow rtpengine from getting a command per
	// retransmission.
	key := pendingKey(m)
	if _, busy := e.answering.LoadOrStore(key, struct{}{}); busy {
		e.dedup.Inc()
		return true
	}
	f, set := e.flagsFor(f)
	e.held.Inc()
	// An answer from the callee keeps the response's tags (from-tag the
	// caller's); a late offer from the callee swaps them (see tags). The
	// Call-ID and the caller's tag are the request's: a response is matched
	// to its transaction by its branch, and one naming another call's
	// Call-ID and tags must not have rtpengine change that call.
	req := rc.Req.Msg()
	from, to := req.FromTag(), m.ToTag()
	if cmd == "offer" {
		from, to = to, from
	}
	bp := e.command(cmd, req.CallID(), from, to, rc.Source().Addr(), sdpOf(m), f)
	var opens *opensSession
	if cmd == "offer" {
		opens = &opensSession{fromTag: from, toTag: to, inDialog: rc.Req.HasToTag()}
	}
	e.send(req.CallID(), set, cmd, *bp, opens, func(v ng.Value, err error) {
		body, err := e.result(v, err)
		if err != nil && held.Retransmission() {
			// A repeated 2xx rtpengine no longer knows (the BYE deleted
			// the session meanwhile): the first copy went up already.
			e.answering.Delete(key)
			return
		}
		if err != nil {
			e.h.Warn("rtpengine: response relayed without media relay", "error", err.Error())
		}
		held.Release(func(m *parser.Message, ed *parser.Editor) {
			if err == nil && !ed.SetBody(bodyWith(m, body), nil) {
				e.h.Warn("rtpengine: response relayed without media relay", "error", ErrEdits.Error())
			}
		})
		e.answering.Delete(key)
	})
	e.putBuf(bp)
	return true
}

// Delete ends the call's session in rtpengine (OpenSIPS
// rtpengine_delete()): sent without waiting, the request goes on at once.
func (e *Engine) Delete(c *routing.Ctx) {
	if !e.Enabled() {
		return
	}
	m := c.Msg()
	e.deleteCall(m, m.ToTag(), nil)
}

// deleteCall deletes the session of m's call, in the set of f (nil: the
// default set) when the instance the call's session is on is not
// remembered (after a restart, a call longer than call_timeout).
func (e *Engine) deleteCall(m *parser.Message, toTag []byte, f *Flags) {
	_, set := e.flagsFor(f)
	e.deleteSession(m.CallID(), m.FromTag(), toTag, set)
}

// deleteSession sends a delete of the call's session to set, or to the
// instance the call is remembered on.
func (e *Engine) deleteSession(callID, fromTag, toTag []byte, set int) {
	bp := e.command("delete", callID, fromTag, toTag, netip.Addr{}, nil, nil)
	e.send(callID, set, "delete", *bp, nil, func(v ng.Value, err error) {
		if err != nil {
			return // counted by observe
		}
		// Any result but ok is "Unknown call-id": a session rtpengine
		// timed out already, or a second delete (each branch of a
		// canceled fork answers 487). Nothing to end.
		_ = v
	})
	e.putBuf(bp)
}

// Manage is OpenSIPS's rtpengine_manage(flags) for a request: an INVITE
// or UPDATE with SDP is offered (an initial call and a re-INVITE alike),
// an INVITE without SDP is marked as a late offer (its 2xx is offered by
// ManageReply); an ACK or PRACK with SDP is answered (the answer to a
// late offer: the ACK is kept and forwarded with rtpengine's SDP); a BYE
// or CANCEL deletes the session; anything else goes to next at once.
// next gets the error of an offer (Refuse answers it).
func (e *Engine) Manage(c *routing.Ctx, f *Flags, next func(c *routing.Ctx, err error)) {
	if !e.Enabled() {
		next(c, nil)
		return
	}
	switch c.Method() {
	case parser.MethodInvite, parser.MethodUpdate:
		if c.Method() == parser.MethodInvite && !isSDP(c.Msg()) {
			c.SetFlag(FlagLateOffer)
		}
		e.Offer(c, f, next)
		return
	case parser.MethodAck:
		e.Answer(c, f, next)
		return
	case parser.MethodPrack:
		// The PRACK of a reliable 1xx that carried the callee's offer
		// (the INVITE had none) carries the answer; any other PRACK's
		// SDP is an offer, answered in the 2xx to the PRACK (RFC 3262
		// §5).
		if isSDP(c.Msg()) && e.provisional.answers(c.Msg()) {
			e.Answer(c, f, next)
		} else {
			e.Offer(c, f, next)
		}
		return
	case parser.MethodBye, parser.MethodCancel:
		m := c.Msg()
		e.deleteCall(m, m.ToTag(), f)
	}
	next(c, nil)
}

// ManageReply is rtpengine_manage in onreply_route: a 6xx, or a final
// response after a CANCEL, to an initial INVITE that was offered (or
// whose response was) deletes the session (the failure route does not
// run for them); a provisional or 2xx response with SDP to an INVITE or
// UPDATE that was offered gets rtpengine's answer, and one to an INVITE
// without SDP (a late offer) is offered (the response is held until then).
// It reports whether the response was held.
func (e *Engine) ManageReply(rc *routing.ReplyCtx, f *Flags) bool {
	if !e.Enabled() {
		return false
	}
	st := rc.Status()
	method := rc.Req.Method()
	offered := rc.Req.IsFlagSet(FlagOffered)
	late := rc.Req.IsFlagSet(FlagLateOffer)
	if st >= 300 && method == parser.MethodInvite && (offered || late) && !rc.Req.HasToTag() &&
		(st >= 600 || rc.Req.Canceled()) {
		// A call ended without the failure route (a 6xx, a CANCEL): its
		// session ends here (ManageFailure does it for the others). Not
		// when another branch answered first: a fork's other phone that
		// declines, or answers the CANCEL of the answered call's other
		// branches, ends its branch, not the call.
		if !rc.Req.Answered() {
			e.deleteCall(rc.Req.Msg(), nil, f)
		}
		return false
	}
	switch {
	case st <= 100 || st >= 300:
		return false
	case method == parser.MethodUpdate || method == parser.MethodPrack:
		// An UPDATE's offer, or a PRACK's, is answered in its 2xx.
		if st < 200 {
			return false
		}
	case method != parser.MethodInvite:
		return false
	}
	switch {
	case offered:
		return e.AnswerReply(rc, f)
	case late:
		if st < 200 && isSDP(rc.Msg()) {
			// The callee's offer in a reliable 1xx: its PRACK answers.
			e.provisional.offered(rc.Req.Msg(), rc.Msg())
		}
		return e.OfferReply(rc, f)
	}
	return false
}

// ManageFailure is rtpengine_manage in failure_route once the call is
// given up (the route relays no other branch): the session the offer
// opened is deleted. An in-dialog request that failed (a re-INVITE
// refused with 488 or 491) keeps the call's session.
func (e *Engine) ManageFailure(c *routing.FailureCtx, f *Flags) {
	if !e.Enabled() || !(c.IsFlagSet(FlagOffered) || c.IsFlagSet(FlagLateOffer)) || c.HasToTag() {
		return
	}
	e.deleteCall(c.Msg(), nil, f)
}

// pendingKey names a response whose answer is being asked for: its
// Call-ID, To tag, status and CSeq (a 183 and the 200 after it are two).
func pendingKey(m *parser.Message) string {
	var b []byte
	b = append(b, m.CallID()...)
	b = append(b, 0)
	b = append(b, m.ToTag()...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(m.StatusCode()), 10)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(m.CSeq().Num), 10)
	return string(b)
}
