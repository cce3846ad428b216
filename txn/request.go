package txn

import (
	"net/netip"
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// Router makes the routing decisions. The core calls it:
//
//   - Request for every new request, and for ACKs of 2xx responses and
//     unmatched ACKs (which have no transaction);
//   - Branch before each branch is sent (it may edit the branch's copy);
//   - Reply for every response on a branch (false drops a provisional);
//   - Failure when every branch ended without a 2xx; it may AddBranch and
//     Relay again (serial forking), Reply, or do nothing (the best
//     response is forwarded).
//
// Locking: every hook of a request with a transaction runs with that
// transaction's shard locked (on a transport reader, the timer goroutine or
// a resolver goroutine). A hook may use the Request and Branch it is given
// and any other table, but must not block, must not call into the Core
// (HandleMessage, another Request's methods) and must not be called while
// the caller holds a lock of another table that a transaction path might
// take. Work that waits (database, HTTP) goes off the goroutine: call
// Suspend, keep the returned *Request, and call Reply or Relay on it later
// from any goroutine. The ACK hook runs without a lock.
type Router interface {
	Request(r *Request)
	Branch(r *Request, b *Branch)
	Reply(r *Request, b *Branch, resp *parser.Message) bool
	Failure(r *Request, best *parser.Message)
}

// LocalRouter is implemented by a Router that wants to see the requests
// the core generates itself (OpenSIPS local_route): the CANCEL and the ACK
// of a non-2xx response sent on branch b. It runs with the shard locked,
// just before the send; req is the message as it goes out, valid only
// during the call. It cannot change or stop the message.
type LocalRouter interface {
	Local(r *Request, b *Branch, method parser.Method, req []byte)
}

// Watcher is told of every response a request's server transaction sends
// upstream, for state that lives beside transactions (dialogs: a 1xx
// with a To tag makes an early dialog, a 2xx confirms it, a final
// response of 300 or above ends it). A route sets it with Request.Watch.
//
// Sent runs with the transaction's shard locked, after the response was
// sent: b and resp are the branch and the response from downstream that
// was relayed (resp still carries our Via), both nil for a response of
// our own (the route's Reply, a 408 of timer C, a 487 after CANCEL, a
// 500). code is the status sent. Every 2xx of a forked INVITE is seen,
// as is each provisional relayed. r is valid during the call only; Sent
// may read it (Msg, Value, Canceled) and must not act on it (Reply,
// Relay) nor block. The rules of Router hooks hold (locking, no call
// into the Core).
type Watcher interface {
	Sent(r *Request, b *Branch, code int, resp *parser.Message)
}

// Watch makes w see the responses the request's transaction sends
// upstream from now on (nil: none). One per transaction; a later call
// replaces it. Nothing for an ACK, which has no transaction. It
// allocates nothing when w is a pointer.
func (r *Request) Watch(w Watcher) {
	if r.t != nil {
		r.st.watch = w
	}
}

// SentResponse returns, inside Watcher.Sent, the response from
// downstream as it went upstream: with the reply route's edits, the
// core's and the Rewriter's (a Contact rewritten by fix_nated_contact is
// what the requester's later requests are addressed to). Nil for a
// response of our own, and outside Sent. Read-only, valid during the
// call.
func (r *Request) SentResponse() []byte {
	if r.x == nil {
		return nil
	}
	return r.x.upSent
}

// Rewriter edits what a request's transaction sends on, beyond the
// core's own edits: the copy of the request relayed on each branch, and
// each response from downstream relayed upstream. A topology-hiding
// module sets one (Request.SetRewriter) to take the parties' Via,
// Record-Route and Contact out of what the other party sees and put the
// proxy's in.
//
// Both methods run with the transaction's shard locked (the rules of
// Router hooks hold: no blocking, no call into the Core), after the core
// recorded its edits on ed and before the message is written. ed edits
// the message as the core holds it: the request as received (with the
// route's edits), the response from downstream with our Via, which an
// edit of the core removes. The values handed to ed must stay as they
// are until the message is written, after the method returns: buf is
// scratch space of the goroutine for them, to append to and return (it
// allocates nothing once grown). r is valid during the call only and
// must not be acted on (Reply, Relay).
type Rewriter interface {
	// RewriteRequest edits the copy of r sent on branch b from our
	// listener out. b is nil for a request forwarded statelessly (an
	// ACK of a 2xx).
	RewriteRequest(r *Request, b *Branch, out *transport.Listener, ed *parser.Editor, buf []byte) []byte
	// RewriteResponse edits resp, a response from downstream on branch
	// b, as it goes upstream to r's sender (over r.Listener): each
	// relayed provisional, every 2xx and its retransmissions, the final.
	// The core's own responses (100, 408, 487, 500...), written from r's
	// Via, From, To, Call-ID and CSeq alone, do not come here.
	RewriteResponse(r *Request, b *Branch, ed *parser.Editor, resp *parser.Message, buf []byte) []byte
}

// SetRewriter makes w edit the request's relayed copies and the
// responses its transaction relays upstream from now on (nil: none). One
// per request; a later call replaces it. For an ACK (no transaction) it
// applies to the ACK forwarded. It allocates nothing when w is a
// pointer.
func (r *Request) SetRewriter(w Rewriter) { r.st.rw = w }

// Rewriter returns what SetRewriter set (nil: none): a failure route
// asks it to know whether the call it retries is hidden.
func (r *Request) Rewriter() Rewriter { return r.st.rw }

// NumValues is the number of per-transaction values a route can keep.
const NumValues = 8

// actions recorded on a transaction's route state.
const (
	actReply uint8 = 1 << iota
	actRelay
	actForward
	actDrop
	actSuspend
)

// routeState is what the route decided for a request; it lives in the
// transaction (or in the goroutine's scratch state for an ACK).
type routeState struct {
	flags   uint64
	values  [NumValues]int64
	acted   uint8
	edUsed  bool
	rr      bool
	serial  bool
	routed  bool // Route preprocessing done
	skip    int  // own Route values at the top to remove
	strict  bool // the previous hop was a strict router (§16.4)
	nroutes int
	kind    RouteKind
	rport   bool // ForceRPort
	ruriSet bool
	destSet bool
	proto   transport.Proto
	dst     netip.AddrPort
	flow    transport.ConnID // SetFlow, or a flow token in our Route (flow.go)
	flowSet bool
	path    bool   // AddPath (flow.go)
	loop    uint32 // loop-detection hash of the request as received
	fr      int64  // ms, 0: Config.FR (SetTimeouts)
	frInv   int64  // ms, 0: Config.TimerC (SetTimeouts)
	ruri    []byte // replacement Request-URI (owned)
	rrx     []byte // parameters for our Record-Route, each with its ";" (owned)
	dlgx    []byte // those of our verified Route of an in-dialog request (owned)
	down    bool   // that Route verified for the From tag: from the dialog's caller
	watch   Watcher
	rw      Rewriter
	hop     []byte // SetNextHop's URI (owned)
	hopSet  bool
	rset    []byte // SetRouteSet's Route values after ours (owned)
	rsetSet bool
}

// Request is a handle on a request for the Router. Handles are scratch
// state of the goroutine calling the hook and valid only during the hook,
// except the one Suspend returns, which stays valid until the transaction
// ends. No handle is allocated per message.
type Request struct {
	// Msg is the parsed request (the transaction's own copy).
	Msg *parser.Message
	// Src, Listener, Proto and Conn say where the request came from.
	Src      netip.AddrPort
	Listener *transport.Listener
	Proto    transport.Proto
	Conn     transport.ConnID

	c      *Core
	ref    shards.Ref[txn]
	t      *txn
	st     *routeState
	x      *ctx
	locked bool // the caller holds the shard lock (inside a hook)
	own    bool // a request without a transaction kept for later: x is its own (SuspendAck)
}

// HasTransaction reports whether the request has a transaction (false for
// ACK).
func (r *Request) HasTransaction() bool { return r.t != nil }

// HasToTag reports whether the To header has a tag (an in-dialog request).
func (r *Request) HasToTag() bool { return r.Msg.ToTag() != nil }

// Method returns the request method.
func (r *Request) Method() parser.Method { return r.Msg.Method() }

// Flags returns the route's flags; SetFlag, ResetFlag and IsFlagSet work
// on single bits (0–63).
func (r *Request) Flags() uint64         { return r.st.flags }
func (r *Request) SetFlags(f uint64)     { r.st.flags = f }
func (r *Request) SetFlag(n uint)        { r.st.flags |= 1 << (n & 63) }
func (r *Request) ResetFlag(n uint)      { r.st.flags &^= 1 << (n & 63) }
func (r *Request) IsFlagSet(n uint) bool { return r.st.flags&(1<<(n&63)) != 0 }

// Value returns per-transaction value i (0 <= i < NumValues); SetValue
// sets it. The routing layer names the slots.
func (r *Request) Value(i int) int64 {
	if uint(i) >= NumValues {
		return 0
	}
	return r.st.values[i]
}

// SetValue sets value i.
func (r *Request) SetValue(i int, v int64) {
	if uint(i) < NumValues {
		r.st.values[i] = v
	}
}

// RequestURI returns the Request-URI the request will be relayed with.
func (r *Request) RequestURI() []byte {
	if r.st.ruriSet {
		return r.st.ruri
	}
	return r.Msg.RequestURI()
}

// SetRequestURI replaces the Request-URI of the next branch sent to the
// Request-URI (the URI is copied).
func (r *Request) SetRequestURI(uri []byte) {
	r.st.ruri = append(r.st.ruri[:0], uri...)
	r.st.ruriSet = true
}

// SetDestination sends the Request-URI branch to dst over proto instead of
// the next hop from Route or the Request-URI (OpenSIPS $du).
func (r *Request) SetDestination(proto transport.Proto, dst netip.AddrPort) {
	r.st.destSet, r.st.proto, r.st.dst = true, proto, dst
	r.st.flowSet = false
}

// Destination returns what SetDestination set, ok false when it was not
// called (the next hop then comes from Route or the Request-URI).
func (r *Request) Destination() (proto transport.Proto, dst netip.AddrPort, ok bool) {
	return r.st.proto, r.st.dst, r.st.destSet
}

// LastBranch returns the final status of the branch started last (0 while
// it is pending, or when there is none) and whether its next hop answered
// at all (a provisional or a final response), as opposed to a 408 or 503
// generated here for silence or a transport error. In a failure route
// after serial relays it is the target tried last, whose answer may not
// be the best response.
func (r *Request) LastBranch() (code int, answered bool) {
	if r.t == nil || r.t.nbr == 0 {
		return 0, false
	}
	b := r.t.branch(r.t.nbr - 1)
	return b.code, b.gotProv || len(b.resp) > 0
}

// ForceRPort treats the request as if its top Via carried rport (RFC
// 3581), as OpenSIPS and Kamailio force_rport() do for a client behind NAT
// that did not ask for it: the responses go to the port the request came
// from rather than the Via's, and the relayed copy's Via gets
// received=<source address>;rport=<source port>. Over TCP and TLS the
// responses go back on the connection anyway. A source that is one of our
// own addresses (spoofed) keeps the Via's port: the answers must not come
// back to us.
func (r *Request) ForceRPort() {
	r.st.rport = true
	r.Msg.SetSource(r.Src, true) // and in the responses we build ourselves
	if t := r.t; t != nil && !t.proto.Stream() && !r.c.isOwnAddr(t.src) {
		t.respDst = t.src
	}
}

// ResponseEditor returns, inside Router.Reply, an editor on the response
// the hook runs for: its edits go into the copy relayed upstream (a 1xx or
// 2xx at once; a non-2xx final is kept with them for the best-response
// choice), with the core's own edits (our Via removed, the From, To and
// CSeq its client sent). Nil outside a Reply hook. The editor keeps
// references to the bytes it is given: build new values with OwnResponse.
func (r *Request) ResponseEditor() *parser.Editor {
	x := r.x
	if x == nil || x.resp == nil {
		return nil
	}
	if !x.pedUsed {
		x.ped.Reset(x.resp)
		x.pedUsed = true
	}
	return &x.ped
}

// OwnResponse copies b into memory that lives until the response the
// Reply hook runs for is sent, for values given to ResponseEditor.
// Allocation-free once the goroutine's buffer has grown to its size.
func (r *Request) OwnResponse(b []byte) []byte {
	x := r.x
	if x == nil {
		return append([]byte(nil), b...)
	}
	if cap(x.pown)-len(x.pown) < len(b) {
		// A new array: views handed out before keep the old one.
		x.pown = make([]byte, 0, max(2*cap(x.pown), len(b), 256))
	}
	n := len(x.pown)
	x.pown = append(x.pown, b...)
	return x.pown[n:len(x.pown):len(x.pown)]
}

// ResponseSource returns, inside Router.Reply, the address the response
// came from (not a header's word: the packet's source); the zero value
// elsewhere.
func (r *Request) ResponseSource() netip.AddrPort {
	if r.x == nil || r.x.resp == nil {
		return netip.AddrPort{}
	}
	return r.x.rsrc
}

// RecordRoute asks for a Record-Route header on the relayed request (two
// when the outgoing interface or transport differs from the incoming one).
func (r *Request) RecordRoute() { r.st.rr = true }

// DropRecordRoute takes back RecordRoute: the request is relayed without
// a Record-Route of ours. A topology-hiding module, whose Contact brings
// the dialog's requests back to the proxy, calls it after the dialog
// module asked for one.
func (r *Request) DropRecordRoute() { r.st.rr = false }

// SetNextHop sends the request to the next hop of uri (its transport,
// port, maddr or host, resolved per RFC 3263 when it is a name) instead
// of the first Route value or the Request-URI, which stay as they are in
// the message: OpenSIPS's $du given a URI. For the Request-URI branch,
// and an ACK forwarded statelessly. False, changing nothing, for a URI
// that is not sip: or sips: with a host. SetDestination wins over it.
func (r *Request) SetNextHop(uri []byte) bool {
	// Checked on the copy: nextHop's views would make uri escape.
	r.st.hop = append(r.st.hop[:0], uri...)
	if _, ok := nextHop(r.st.hop); !ok {
		r.st.hop = r.st.hop[:0]
		return false
	}
	r.st.hopSet = true
	return true
}

// SetRouteSet replaces the Route values after ours, those LooseRoute
// leaves for the next hops, with set: values as one Route line holds them
// ("<sip:p1;lr>, <sip:p2;lr>"), empty for none (the Request-URI is then
// the next hop). Our own values are still removed, and NextHopURI and
// every branch (an ACK forwarded statelessly too) follow set at once; the
// message keeps its Route lines until it is sent, so our signed value,
// and with it the dialog's parameters, the direction and a flow token,
// stay what LooseRoute verified. For a request whose sender wrote another
// route set than its dialog's: OpenSIPS fix_route_dialog, with
// SetRequestURI (the dialog module's FixRouteDialog). It edits nothing
// the route's Editor counts: the core rewrites the Route set with its own
// edits. set is copied.
func (r *Request) SetRouteSet(set []byte) {
	r.c.preprocessRoutes(r)
	r.st.rset = append(r.st.rset[:0], set...)
	r.st.rsetSet = true
}

// SetSerial makes branches added with AddBranch go one at a time: the
// first Relay sends the Request-URI branch, each later Relay (from
// Router.Failure) the next added one. The default is parallel.
func (r *Request) SetSerial(serial bool) { r.st.serial = serial }

// SetTimeouts changes, for the branches this request starts from now on,
// how long a branch waits for a first response (fr: Config.FR, timers B
// and F) and how long an INVITE branch waits for its final response
// after a provisional (frInv: Config.TimerC, reset by each provisional).
// Zero keeps the configured value. Kamailio's t_set_fr(fr_inv, fr).
func (r *Request) SetTimeouts(fr, frInv time.Duration) {
	if fr > 0 {
		r.st.fr = ms(fr)
	}
	if frInv > 0 {
		r.st.frInv = ms(frInv)
	}
}

// Editor returns an editor on Msg for changes to every relayed copy; they
// are applied by the next Relay or Forward in the same hook call.
func (r *Request) Editor() *parser.Editor {
	ed := r.editor()
	if !r.st.edUsed {
		ed.Reset(r.Msg)
		r.st.edUsed = true
	}
	return ed
}

// editor is the route's editor: the goroutine's inside a hook, the
// transaction's own for a suspended handle (allocated once per pooled
// transaction, on that slow path only).
func (r *Request) editor() *parser.Editor {
	if r.x != nil {
		return &r.x.red
	}
	if r.t.ed == nil {
		r.t.ed = new(parser.Editor)
	}
	return r.t.ed
}

// ClientCSeq returns the CSeq number of the request as its client sent
// it. Msg's differs once a route gave the relayed copies another (an
// INVITE re-sent with credentials, uac_auth): the far side counts from
// that one. Inside a hook only.
func (r *Request) ClientCSeq() uint32 {
	if r.t == nil {
		return r.Msg.CSeq().Num
	}
	return r.t.cseq
}

// Canceled reports whether a CANCEL for the request arrived.
func (r *Request) Canceled() bool {
	if r.t == nil {
		return false
	}
	if r.locked {
		return r.t.canceled
	}
	s := r.ref.Shard()
	s.Lock()
	defer s.Unlock()
	return r.ref.Entry() != nil && r.t.canceled
}

// Answered reports whether a branch of the request got a 2xx already
// (not counting the response a reply hook is running for): a final
// response of another branch after it ends that branch, not the call.
func (r *Request) Answered() bool {
	if r.t == nil {
		return false
	}
	if r.locked {
		return r.t.got2xx
	}
	s := r.ref.Shard()
	s.Lock()
	defer s.Unlock()
	return r.ref.Entry() != nil && r.t.got2xx
}

// PassedThrough reports whether the request came back to us after
// transaction ref relayed it: a Via of ours in it (the top one when we
// sent it to ourselves, below another proxy's otherwise) carries the
// branch of one of ref's client branches, and it has the CSeq number
// ref's client sent or the one a route gave the relayed copies
// (uac_auth): proxies do not change it. That is a spiral (RFC 3261
// §16.3 step 4, §16.6 step 8; a loop, which comes back unchanged, is
// answered 482 before the route runs), as opposed to another request
// that only reuses the Call-ID and From tag of ref's (a second call
// made to look like the first one's second pass). The Via proves
// little on its own: whoever ref's request reached has it, and can copy
// it and the CSeq into a request of its own; a module that counts calls
// also checks the caller is ref's (the dialog module: its From). ref
// must be a transaction of the request's own Call-ID, whose shard the
// hook holds: false otherwise, for the request's own transaction, and
// outside a hook. It allocates nothing.
func (r *Request) PassedThrough(ref Ref) bool {
	s := ref.ref.Shard()
	if !r.locked || r.t == nil || s == nil || s != r.ref.Shard() {
		return false
	}
	e := ref.ref.Entry()
	if e == nil || e == r.ref.Entry() {
		return false
	}
	t := &e.Value
	if n := r.Msg.CSeq().Num; n != t.cseq && n != t.msg.CSeq().Num {
		return false
	}
	it := r.Msg.Vias()
	for it.Next() {
		v := &it.Via
		h, id, idx, _, ok := r.c.parseBranch(v.Branch)
		if ok && h == e.Hash() && id == t.id && idx < t.nbr && r.c.isUsHostPort(v.Host, v.Port, v.Transport) {
			return true
		}
	}
	return false
}

// LooseRoute processes the Route headers (RFC 3261 §16.4, OpenSIPS
// loose_route) and reports whether the request is to be routed by them: it
// carries a Record-Route value we signed for its dialog (RouteDialog). Our
// own values at the top are removed from the relayed copy; a Request-URI
// that is ours, left by a strict router, is replaced by the last Route
// value. The next hop is then the first remaining Route, or the
// Request-URI. Any other Route set gives false: RouteKind says which.
// Relay does the same processing when the route did not call it.
func (r *Request) LooseRoute() bool { return r.RouteKind() == RouteDialog }

// RouteKind classifies the request's Route set: none, only our own
// unsigned values (an outbound proxy's preloaded Route), our signed
// Record-Route of this dialog, a forged one, or a Route to another proxy.
func (r *Request) RouteKind() RouteKind {
	r.c.preprocessRoutes(r)
	return r.st.kind
}

// NextHopURI is the URI the request goes to next by its Route set and
// Request-URI (§16.6 step 6, §16.12): the first Route value after ours,
// else the Request-URI (the route's, when it set one). A destination set
// with SetDestination or SetNextHop goes before it. The Route set is
// read once (RouteKind). Inside a hook only.
func (r *Request) NextHopURI() []byte {
	r.c.preprocessRoutes(r)
	if hop := firstRoute(r.st, r.Msg); hop != nil {
		return hop
	}
	return r.RequestURI()
}

// AddBranch adds a branch to uri (copied). Relay sends it in parallel with
// the Request-URI branch, or after it with SetSerial(true).
func (r *Request) AddBranch(uri []byte) error {
	if r.t == nil {
		return ErrStateless
	}
	t := r.t
	main := 0
	if !t.relayed {
		main = 1 // the first Relay starts the Request-URI branch too
	}
	if t.nbr+main+t.nq-t.qi >= MaxBranches || t.nq >= MaxBranches {
		return ErrTooManyBranches
	}
	off := len(t.uris)
	t.uris = append(t.uris, uri...)
	t.queue[t.nq] = span{int32(off), int32(len(uri))}
	t.nq++
	return nil
}

// Reply answers the request statefully. A reason of "" uses the standard
// phrase.
func (r *Request) Reply(code int, reason string) error {
	return r.ReplyWithHeaders(code, reason, nil)
}

// ReplyWithHeaders is Reply with extra header lines (each ending in CRLF).
func (r *Request) ReplyWithHeaders(code int, reason string, headers []byte) error {
	if r.t == nil {
		r.st.acted |= actReply
		return ErrStateless // an ACK is never answered
	}
	x, s, e, err := r.enter(actReply)
	if err != nil {
		return err
	}
	defer r.leave(x, s)
	if e.Value.finalSent {
		return ErrFinal
	}
	r.c.replyLocal(x, s, e, code, reason, headers)
	return nil
}

// ReplyStateless answers a final response the way OpenSIPS sl_send_reply
// does: the response is sent and the transaction ends at once, instead of
// staying Completed for 64·T1 (32 s by default) to answer retransmissions;
// a retransmitted request is routed again. Use it for answers that are
// cheap and harmless to compute twice — a REGISTER the registrar saved,
// an authentication challenge — where holding a transaction per request
// for 32 s would cost far more memory than the rare retransmission costs
// CPU. A provisional code is sent statefully, as Reply does.
func (r *Request) ReplyStateless(code int, reason string, headers []byte) error {
	if code < 200 {
		return r.ReplyWithHeaders(code, reason, headers)
	}
	if r.t == nil {
		r.st.acted |= actReply
		return ErrStateless
	}
	x, s, e, err := r.enter(actReply)
	if err != nil {
		return err
	}
	defer r.leave(x, s)
	t := &e.Value
	if t.finalSent {
		return ErrFinal
	}
	r.c.replyLocal(x, s, e, code, reason, headers)
	if t.state == sTerminated || r.ref.Entry() == nil {
		// Over a stream the answer ended a non-INVITE transaction
		// (timer J is 0): the hook holding it removes it when it
		// returns, or it is gone already. Nothing is left to end.
		return nil
	}
	s.StopTimer(&t.tG)
	if r.locked {
		// Inside a hook the caller still uses the entry: end it on the
		// next tick, as Forward does.
		t.state = sCompleted
		s.StartTimer(e, &t.tH, kH, 0)
	} else {
		r.c.terminate(s, e)
	}
	return nil
}

// Drop ends the request without an answer. The transaction stays for
// 64·T1 to absorb retransmissions.
func (r *Request) Drop() {
	if r.t == nil {
		r.st.acted |= actDrop
		return
	}
	x, s, e, err := r.enter(actDrop)
	if err != nil {
		return
	}
	defer r.leave(x, s)
	t := &e.Value
	if !t.finalSent && t.pending == 0 {
		t.finalSent = true
		t.state = sCompleted
		t.resp = t.resp[:0]
		s.StopTimer(&t.tG)
		s.StartTimer(e, &t.tH, kH, msDur(r.c.wait))
	}
}

// Suspend tells the core the route will act later, after work done off
// the receive path, by calling Reply or Relay on the returned handle from
// any goroutine, or better through Resume, which also makes reading Msg
// safe. The handle refers to this transaction only: once it ended, its
// methods return ErrNoTransaction. Nil for an ACK.
func (r *Request) Suspend() *Request {
	r.st.acted |= actSuspend
	if r.t == nil {
		return nil
	}
	// The handle is allocated, not kept in the pooled entry: it must stay
	// a handle on this transaction even after the entry is reused, so that
	// a late continuation is refused (the Ref's generation check) instead
	// of acting on another request. Suspending is the slow path.
	h := new(Request)
	*h = *r
	h.x, h.locked = nil, false
	if r.st.edUsed {
		// Edits made before suspending carry over to the handle.
		*h.editor() = r.x.red
	}
	return h
}

// Suspended reports whether the route suspended this request before: true
// on the handle Resume gives, so that a route run again after a
// suspension (a dialog read from another node) does not wait a second
// time.
func (r *Request) Suspended() bool { return r.st.acted&actSuspend != 0 }

// SuspendAck is Suspend for a request without a transaction, an ACK of
// a 2xx: the route forwards it later, after work done off the receive
// path (rtpengine answering the SDP of a late offer), through Resume on
// the returned handle. The handle owns the message, the route's state and
// its edits so far, taken from the goroutine's scratch state (whose
// buffers the next message reuses); the hook's own handle stays readable
// until it returns, with a copy of the message, but must not act. Resume
// runs its function once; a handle never resumed drops the ACK. Nil for a
// request with a transaction (Suspend is for those) and for a handle
// already suspended.
func (r *Request) SuspendAck() *Request {
	if r.t != nil || r.x == nil || r.own || r.c == nil || r.st.acted&actSuspend != 0 {
		return nil
	}
	x := r.c.getCtx()
	y := r.x
	// The handle takes the buffer the message and the route's edits point
	// into; the hook keeps a copy, parsed again, for what it still reads.
	x.in, y.in = y.in, append(x.in[:0], y.in...)
	x.msg = y.msg
	if err := y.msg.Parse(y.in); err != nil {
		// The same bytes parsed before: cannot fail. Keep the hook's view.
		y.msg = x.msg
	}
	y.msg.SetSource(r.Src, r.st.rport) // Parse forgot it
	x.red = y.red
	x.red.Retarget(&x.msg)
	// The route's state, with its owned bytes copied into the handle's
	// own arrays (the hook's stay with the goroutine), and the arena of
	// Own, whose bytes the edits may point into.
	old := x.rs
	x.rs = *r.st
	x.rs.ruri = append(old.ruri[:0], r.st.ruri...)
	x.rs.rrx = append(old.rrx[:0], r.st.rrx...)
	x.rs.dlgx = append(old.dlgx[:0], r.st.dlgx...)
	x.rs.hop = append(old.hop[:0], r.st.hop...)
	x.rs.rset = append(old.rset[:0], r.st.rset...)
	x.kept, y.kept = y.kept, x.kept[:0]
	x.loop = y.loop
	r.st.acted |= actSuspend
	h := new(Request)
	*h = Request{Msg: &x.msg, Src: r.Src, Listener: r.Listener, Proto: r.Proto, Conn: r.Conn, c: r.c, st: &x.rs, x: x, own: true}
	return h
}

// Resume continues a suspended request. Call it on the handle Suspend
// returned, from any goroutine, when the work the route waited for is
// done: it locks the transaction's shard, checks that the transaction is
// still alive (it may have timed out, and its pooled entry been reused,
// while the route waited), and runs fn with a handle that behaves as
// inside a hook: Msg is safe to read and every action works. Edits made
// before Suspend carry over. When the transaction has ended it returns
// ErrNoTransaction without calling fn.
func (r *Request) Resume(fn func(h *Request)) error {
	if r.t == nil && r.own {
		// An ACK kept by SuspendAck: no transaction to find, nothing
		// locked; its scratch state goes back to the pool after fn.
		x := r.x
		if x == nil {
			return ErrNoTransaction // resumed already
		}
		r.x = nil
		h := *r
		h.x, h.own = x, false
		fn(&h)
		r.c.putCtx(x)
		return nil
	}
	if r.t == nil || r.c == nil {
		return ErrStateless
	}
	s := r.ref.Shard()
	x := r.c.getCtx()
	s.Lock()
	defer func() {
		s.Unlock()
		r.c.putCtx(x)
	}()
	e := r.ref.Entry()
	if e == nil {
		return ErrNoTransaction
	}
	t := &e.Value
	if t.rs.edUsed && t.ed != nil {
		x.red = *t.ed
	}
	var h Request
	h.bind(r.c, r.ref, t, x)
	t.held = true
	fn(&h)
	t.held = false
	if t.state == sTerminated {
		// Answered over a stream, or forwarded statelessly, by fn.
		r.c.terminate(s, e)
	}
	return nil
}

// Relay relays the request statefully: one branch to the Request-URI (or
// the destination set), plus the branches added with AddBranch (in
// parallel, or one per Relay when serial). From Router.Failure it sends the
// next added branch, or a new branch to the Request-URI when none is left
// (serial forking). An ACK is forwarded statelessly.
func (r *Request) Relay() error {
	if r.t == nil {
		return r.Forward()
	}
	x, s, e, err := r.enter(actRelay)
	if err != nil {
		return err
	}
	defer r.leave(x, s)
	return r.c.relay(x, s, e, r)
}

// Forward forwards the request statelessly (§16.11): no client
// transaction, a branch computed from the incoming one so retransmissions
// get the same. A request that had a transaction loses it.
func (r *Request) Forward() error {
	if r.t == nil {
		r.st.acted |= actForward
		return r.c.forwardStateless(r.x, r)
	}
	x, s, e, err := r.enter(actForward)
	if err != nil {
		return err
	}
	defer r.leave(x, s)
	err = r.c.forwardStateless(x, r)
	t := &e.Value
	t.finalSent = true
	t.state = sTerminated
	s.StopTimer(&t.tG)
	if !r.locked {
		// Inside a hook the caller still uses the entry: runRequest
		// removes it when the hook returns.
		r.c.gc(s, e)
	}
	return err
}

// enter locks the shard unless a hook holds it and returns a scratch
// context and the live entry.
func (r *Request) enter(act uint8) (*ctx, *shards.Shard[txn], *shards.Entry[txn], error) {
	s := r.ref.Shard()
	x := r.x
	if !r.locked {
		x = r.c.getCtx()
		s.Lock()
	}
	e := r.ref.Entry()
	if e == nil {
		r.leave(x, s)
		return nil, nil, nil, ErrNoTransaction
	}
	r.st.acted |= act
	return x, s, e, nil
}

func (r *Request) leave(x *ctx, s *shards.Shard[txn]) {
	if !r.locked {
		s.Unlock()
		r.c.putCtx(x)
	}
}

// bind makes h a hook handle on transaction e; the shard is locked.
func (h *Request) bind(c *Core, ref shards.Ref[txn], t *txn, x *ctx) {
	*h = Request{Msg: &t.msg, Src: t.src, Listener: t.respL, Proto: t.proto, Conn: t.conn,
		c: c, ref: ref, t: t, st: &t.rs, x: x, locked: true}
}

// BestBranch returns, inside Router.Failure, the branch whose final
// response is the best one (the response Failure receives): where a
// challenge came from, the branch to re-send to. Nil elsewhere, or when
// no branch ended with a final status.
func (r *Request) BestBranch() *Branch {
	if r.t == nil || !r.t.inFailure {
		return nil
	}
	i := bestBranchFrom(r.t, r.t.step)
	if i < 0 {
		i = bestBranch(r.t)
	}
	if i < 0 {
		return nil
	}
	return r.t.branch(i)
}

// SetRecordRouteParam puts ";name=value" in the Record-Route values this
// request gets from now on (RecordRoute; those of branches already sent
// stay as they were), replacing one of that name. It goes inside what the
// Record-Route signature covers, so neither party to the dialog can change
// or remove it, and DialogRouteParam reads it back from every request of
// the dialog routed by that Route: state a module keeps in the dialog's
// route set instead of in memory (routesig.go). Name and value may hold
// letters, digits and "-_.~" (base64url); false refuses anything else.
func (r *Request) SetRecordRouteParam(name, value []byte) bool {
	if !validRouteParam(name, value) || len(r.st.rrx)+len(name)+len(value) > maxRouteParams {
		return false
	}
	r.st.rrx = setParam(r.st.rrx, name, value)
	return true
}

// maxRouteParams bounds what SetRecordRouteParam adds to a Record-Route.
const maxRouteParams = 1024

// DialogRouteParam returns the value of a parameter SetRecordRouteParam
// put in our Record-Route of the request's dialog, read from the Route
// value of ours whose signature verified (RouteKind RouteDialog); nil when
// the request is not routed by such a Route or the parameter is absent.
func (r *Request) DialogRouteParam(name string) []byte {
	if r.RouteKind() != RouteDialog {
		return nil
	}
	return paramValue(r.st.dlgx, name)
}

// Downstream reports whether a request routed by our signed Route
// (RouteDialog) comes from the party that sent the dialog's first request
// (the caller: its From tag is the tag the Route was signed for), false
// when it comes from the other party, or is not routed by such a Route
// (OpenSIPS is_direction("downstream")).
func (r *Request) Downstream() bool {
	return r.RouteKind() == RouteDialog && r.st.down
}

// RecordRouteParam returns the value SetRecordRouteParam gave name for
// this request's Record-Route, nil when none.
func (r *Request) RecordRouteParam(name string) []byte {
	return paramValue(r.st.rrx, name)
}

// Own copies b into memory the request owns for as long as its route may
// still use it (until the transaction ends; for an ACK, until the hook
// returns) and returns the copy. The Editor keeps references to the bytes
// it is given until the request is relayed, possibly after a Suspend: a
// module that builds a header value in a scratch buffer of its own hands
// the editor b's copy instead. Allocation-free once the transaction's
// buffer has grown to its size.
func (r *Request) Own(b []byte) []byte {
	arena := &r.x.kept
	if r.t != nil {
		arena = &r.t.kept
	}
	if cap(*arena)-len(*arena) < len(b) {
		// A new array: slices handed out before keep the old one, whose
		// bytes never change.
		*arena = make([]byte, 0, max(2*cap(*arena), len(b), 256))
	}
	n := len(*arena)
	*arena = append(*arena, b...)
	return (*arena)[n:len(*arena):len(*arena)]
}

// Spiral reports whether the request has been through this server
// already: one of its Vias is ours (our branch prefix, sent-by one of our
// listeners). Our own relay to a contact that leads back to us, directly
// or through other proxies, comes back so (RFC 5393 §3: a spiral, which
// loop detection lets through because its Request-URI changed). Scans
// the Vias, allocates nothing.
func (r *Request) Spiral() bool { return r.c.spiral(r.Msg) }

// SendsToUs reports whether a request relayed to host (an IP address or
// a name) and port (0: the transport's default, 5061 for TLS) would reach
// one of our own listeners: its bound address and port (a listener bound
// to the unspecified address also receives what is sent to a loopback
// address or an address of the host), or its advertised host and port.
// Names are not resolved: a served domain that is no listener's advertised
// name is not recognised here (routing.Ctx.IsMyself knows those).
func (r *Request) SendsToUs(host []byte, port int, proto transport.Proto) bool {
	if port == 0 {
		port = defaultPort(proto)
	}
	if ip, ok := parser.ParseIP(host); ok && port < 1<<16 && r.c.isOwnAddr(netip.AddrPortFrom(ip, uint16(port))) {
		return true
	}
	return r.c.isUsHostPort(host, port, nil)
}
