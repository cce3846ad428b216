// Package calltrack keeps the calls a module counts until they end, for
// modules that count calls in progress without the dialog module: the
// dispatcher's calls per destination (least_calls) and fraud's concurrent
// calls per caller. Each tracked call holds the module's lease (what
// Release takes off its counter); the proxy keeps no dialog state, so a
// call ends when the route relays its BYE (CallEnded), when its INVITE
// will not be answered 2xx (CallFailed from the failure route, Reply for
// the finals that skip it) or when its safety timeout passes (Sweep). A
// call the route gave a dialog can be bound to it (Bind): it then ends
// with that dialog, whatever ended it (EndDialog, from the dialog
// module's events), and a BYE no longer ends it: only the dialog module
// tells a BYE that ended the call from one that went elsewhere.
//
// A call is a dialog as its INVITE starts it: the Call-ID and the From
// tag. Calls that share a Call-ID but not a From tag are calls apart (a
// caller who sent every call with one Call-ID had them counted as one); a
// BYE, and the responses to the INVITE, carry both (a BYE from the callee
// has the caller's tag in its To). The table keeps the two hashed with a
// seed chosen at random when it is made (hash/maphash), 16 bytes whatever
// their length, so a caller can neither choose a Call-ID and tag that
// collide with another call's nor send one too long to be tracked (a
// Call-ID past the table's key limit was never tracked).
//
// One call holds a Call-ID and From tag at a time. Another initial INVITE
// with them while the call is in progress (another transaction, and not
// the call's INVITE passing through the proxy again, a spiral: RFC 3261
// §8.2.2.2's merged request, or a caller reusing them for a second call)
// is InUse: not counted, and the module has the route refuse it (482
// Loop Detected; counted in <prefix>_in_use_total). Counted as the first
// call, as it was, a caller had any number of calls up on one Call-ID
// and From tag, counted once: without dialog state the table cannot tell
// which of them a BYE ends. A spiral is the call's only when it is the
// same caller's (Claim's caller: the user the module counts the call
// for): the callee of a call still ringing has our Via, with the branch
// the call's INVITE was relayed on, in the INVITE it received, and a
// callee who copied it into INVITEs of his own had each taken for the
// call's spiral and relayed uncounted. A user agent sends the Call-ID
// and From tag again only after the first INVITE's final response (a
// retry with credentials, RFC 3261 §22.2; a redirect), by when its call
// has been released. It is sharded
// like the transaction table and bounded: a call past the bound is not
// tracked (the module releases its lease at once and the call goes on
// uncounted), counted in <prefix>_untracked_total. Calls released by the
// timeout are counted in <prefix>_timed_out_total. Nothing on the request
// path allocates.
package calltrack

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/txn"
)

// Lease is one call counted by a module. Release is called once, when the
// call ends or (with Config.FailOver) its lease is replaced.
type Lease interface {
	Release()
}

// Config sets up a Table.
type Config struct {
	Clock    *shards.Clock
	Shards   int
	MaxCalls int // the most calls tracked at once (spread over the shards)
	// Timeout is each call's safety deadline in ms, read when the call is
	// tracked: the module's setting, reloadable.
	Timeout *atomic.Int64
	// FailOver: a lease given for a call already tracked by the same
	// INVITE transaction replaces the one held, which is released (the
	// dispatcher moving a call to another destination). Without it a call
	// is tracked once and Track refuses it again. Either way an INVITE of
	// another transaction with the call's Call-ID and From tag is not
	// tracked: InUse, or a spiral of the call.
	FailOver bool
	// Metrics and Prefix name the counters, e.g.
	// switchboard_dispatcher_calls_untracked_total for the prefix
	// switchboard_dispatcher_calls.
	Metrics *metrics.Set
	Prefix  string
}

// Table is a module's calls in progress.
type Table[L Lease] struct {
	tbl                 *shards.Table[call[L]]
	perShard            int
	timeout             *atomic.Int64
	failOver            bool
	n                   atomic.Int64 // calls tracked: lets untracked traffic skip the lookup
	untracked, timedOut *metrics.Counter
	inUse               *metrics.Counter
	swept               []L // Sweep's, kept between sweeps
	seed                maphash.Seed
}

// call is a tracked call: its lease, the INVITE transaction that made it
// (only that transaction's failure releases it; a request of the same
// caller that passed through it is its spiral), the hash of its caller,
// its deadline and the dialog it is bound to (Bind; 0: none).
type call[L Lease] struct {
	lease    L
	inv      txn.Ref
	caller   uint64
	deadline int64 // ms
	dialog   uint64
}

// Tracking is what Claim did with an initial INVITE.
type Tracking int8

const (
	// NotTracked: the table is full, or the INVITE is counted already (its
	// own transaction again without FailOver, or its second pass through
	// the proxy, a spiral). The module releases the lease; the call goes
	// on.
	NotTracked Tracking = iota
	// Tracked: the table keeps the lease until the call ends.
	Tracked
	// InUse: another INVITE holds the Call-ID and From tag, in progress.
	// The module releases the lease and the route refuses the request
	// (482 Loop Detected).
	InUse
)

// New makes a Table.
func New[L Lease](cfg Config) (*Table[L], error) {
	tbl, err := shards.New(shards.Config[call[L]]{Clock: cfg.Clock, Shards: cfg.Shards})
	if err != nil {
		return nil, err
	}
	per := (cfg.MaxCalls + tbl.NumShards() - 1) / tbl.NumShards()
	return &Table[L]{tbl: tbl, perShard: max(per, 1), timeout: cfg.Timeout, failOver: cfg.FailOver, seed: maphash.MakeSeed(),
		untracked: cfg.Metrics.GetOrCreateCounter(cfg.Prefix + "_untracked_total"),
		timedOut:  cfg.Metrics.GetOrCreateCounter(cfg.Prefix + "_timed_out_total"),
		inUse:     cfg.Metrics.GetOrCreateCounter(cfg.Prefix + "_in_use_total")}, nil
}

// Close frees the table's memory.
func (t *Table[L]) Close() { t.tbl.Close() }

// Len is the number of calls tracked.
func (t *Table[L]) Len() int64 { return t.n.Load() }

// sameTxn reports whether a and b name one INVITE transaction. The
// transaction's Ref, not its branch and CSeq: a caller who copies her
// call's branch and CSeq into another INVITE with another sent-by makes
// another transaction (RFC 3261 §17.2.3 matches on the sent-by too), which
// was taken for the call's own: relayed uncounted, and its failure
// released the call. The zero Ref (no transaction) is no transaction's.
func sameTxn(a, b txn.Ref) bool { return a == b && a != txn.Ref{} }

// key is a call's key in the table: the hashes of its Call-ID and From
// tag.
type key [16]byte

// key returns the key of the call with callID and the From tag fromTag,
// and the hash that places it in the table.
func (t *Table[L]) key(callID, fromTag []byte) (uint64, key) {
	a, b := maphash.Bytes(t.seed, callID), maphash.Bytes(t.seed, fromTag)
	var k key
	binary.LittleEndian.PutUint64(k[:8], a)
	binary.LittleEndian.PutUint64(k[8:], b)
	return (a^0x9e3779b97f4a7c15)*0xbf58476d1ce4e5b9 ^ b, k
}

// Track is Claim for a Tracker, with no caller: whether l is kept.
func (t *Table[L]) Track(c *routing.Ctx, l L) bool { return t.Claim(c, l, nil) == Tracked }

// spiral reports whether c is the INVITE of the tracked call v passing
// through the proxy again, who being c's caller hashed: a Via of ours in
// it carries the branch of one of v's INVITE's client branches, and it
// comes from the caller v was counted for. The Via alone proves nothing:
// the call's callee has it in the INVITE it received.
func spiral[L Lease](c *routing.Ctx, v *call[L], who uint64) bool {
	return v.caller == who && c.R.PassedThrough(v.inv)
}

// Claim keeps l until the call of c's initial INVITE ends (Tracked).
// caller is whom the module counts the call for (fraud: its user), nil
// for a module that knows no caller; c is a spiral of a call only when
// it has that call's caller. When Claim does not keep l, the module
// releases it at once: NotTracked (the table is full, or c is counted
// already: its transaction again without FailOver, or its spiral), or
// InUse (c has the Call-ID and From tag of another call in progress; the
// route refuses it). With FailOver, l given again by the transaction
// tracked replaces the lease held, which is released.
func (t *Table[L]) Claim(c *routing.Ctx, l L, caller []byte) Tracking {
	h, k := t.key(c.CallID(), c.FTag())
	id := k[:]
	tx := c.R.Ref()
	who := maphash.Bytes(t.seed, caller)
	s := t.tbl.Shard(h)
	s.Lock()
	if e := s.Get(h, id); e != nil {
		own := sameTxn(e.Value.inv, tx)
		switch {
		case own && t.failOver:
			old := e.Value.lease
			e.Value.lease = l
			s.Unlock()
			old.Release()
			return Tracked
		case own || spiral(c, &e.Value, who):
			s.Unlock()
			return NotTracked
		}
		s.Unlock()
		t.inUse.Inc()
		return InUse
	}
	if s.Len() >= t.perShard {
		s.Unlock()
		t.untracked.Inc()
		return NotTracked
	}
	e, _, err := s.GetOrInsert(h, id)
	if err != nil {
		s.Unlock()
		return NotTracked
	}
	e.Value = call[L]{lease: l, inv: tx, caller: who, deadline: s.Now() + t.timeout.Load()}
	s.Unlock()
	t.n.Add(1)
	return Tracked
}

// InUse reports whether c, an initial INVITE of caller (as given to
// Claim), has the Call-ID and From tag of a call in progress that another
// INVITE made and that c is not the spiral of: what Claim answers InUse.
// For the route, to answer 482 after a module refused c for it.
func (t *Table[L]) InUse(c *routing.Ctx, caller []byte) bool {
	if t.n.Load() == 0 || c.HasToTag() || !c.IsMethod(parser.MethodInvite) {
		return false
	}
	h, k := t.key(c.CallID(), c.FTag())
	s := t.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, k[:])
	return e != nil && !sameTxn(e.Value.inv, c.R.Ref()) && !spiral(c, &e.Value, maphash.Bytes(t.seed, caller))
}

// End releases the call with callID and the From tag fromTag; with inv
// not the zero Ref only when that INVITE transaction made it. With the
// zero Ref (a BYE), not a call bound to a dialog: only that dialog's end
// releases it (EndDialog), or its INVITE's failure.
func (t *Table[L]) End(callID, fromTag []byte, inv txn.Ref) bool {
	return t.end(callID, fromTag, func(v *call[L]) bool {
		if inv == (txn.Ref{}) {
			return v.dialog == 0
		}
		return sameTxn(v.inv, inv)
	})
}

// Bind binds the call of c, an initial INVITE the table tracks for its
// transaction, to dialog, the id of the dialog a dialog module made of
// it: from then on a BYE (CallEnded) releases it no more, the dialog's
// end does (EndDialog), whatever ended it. The table cannot tell a BYE
// that ended the call from one sent elsewhere, with another To tag, or
// on the signed Route of another call with the same Call-ID; the dialog
// module can. False: c's transaction tracks no call here (c is a
// spiral, the table was full, the call was released already).
func (t *Table[L]) Bind(c *routing.Ctx, dialog uint64) bool {
	tx := c.R.Ref()
	if dialog == 0 || t.n.Load() == 0 || tx == (txn.Ref{}) {
		return false
	}
	h, k := t.key(c.CallID(), c.FTag())
	s := t.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, k[:])
	if e == nil || !sameTxn(e.Value.inv, tx) {
		return false
	}
	e.Value.dialog = dialog
	return true
}

// EndDialog releases the call with callID and the From tag fromTag when
// it is bound to dialog (Bind): the dialog ended. A dialog of another
// INVITE with the same Call-ID and From tag (one the module did not
// count, given a dialog of its own) releases nothing.
func (t *Table[L]) EndDialog(callID, fromTag []byte, dialog uint64) bool {
	return dialog != 0 && t.end(callID, fromTag, func(v *call[L]) bool { return v.dialog == dialog })
}

// end releases the call with callID and the From tag fromTag when ok
// says it is the one to end.
func (t *Table[L]) end(callID, fromTag []byte, ok func(*call[L]) bool) bool {
	if t.n.Load() == 0 {
		return false
	}
	h, k := t.key(callID, fromTag)
	s := t.tbl.Shard(h)
	s.Lock()
	e := s.Get(h, k[:])
	if e == nil || !ok(&e.Value) {
		s.Unlock()
		return false
	}
	l := e.Value.lease
	s.Remove(e)
	s.Unlock()
	t.n.Add(-1)
	l.Release()
	return true
}

// Sweep releases the calls whose deadline is now or past. Leases are
// released after the shards are unlocked: a module's Release may take a
// lock of its own (a counter's shard), never under a call shard's. One
// goroutine at a time (the module's sweeper).
func (t *Table[L]) Sweep(now int64) {
	buf := t.swept[:0]
	t.tbl.Range(func(s *shards.Shard[call[L]], e *shards.Entry[call[L]]) bool {
		if e.Value.deadline <= now {
			buf = append(buf, e.Value.lease)
			s.Remove(e)
		}
		return true
	})
	for _, l := range buf {
		t.n.Add(-1)
		l.Release()
		t.timedOut.Inc()
	}
	clear(buf) // the leases' references
	t.swept = buf[:0]
}

// CallEnded releases the call of a BYE the route relays (in-dialog, after
// loose_route): the call is over whichever side hung up. The caller's BYE
// has the call's From tag in its From, the callee's in its To. It does
// nothing for other methods, when the call is not tracked, or when it is
// bound to a dialog (Bind: that dialog's end releases it).
func (t *Table[L]) CallEnded(c *routing.Ctx) {
	if c.IsMethod(parser.MethodBye) && !t.End(c.CallID(), c.FTag(), txn.Ref{}) {
		t.End(c.CallID(), c.TTag(), txn.Ref{})
	}
}

// CallFailed releases the call of an INVITE that will not be answered 2xx:
// from the failure route when no other branch is tried, and from a route
// that refuses or fails to relay an INVITE it counted. Only the
// transaction that was tracked releases its call.
func (t *Table[L]) CallFailed(c *routing.Ctx) {
	if c.IsMethod(parser.MethodInvite) {
		if tx := c.R.Ref(); tx != (txn.Ref{}) {
			t.End(c.CallID(), c.FTag(), tx)
		}
	}
}

// Reply is for the reply route: a final response that ends an INVITE
// without a failure route running releases its call. The core skips the
// failure route after a 6xx or once the INVITE was canceled, so those are
// caught here (a 200 that crosses the CANCEL makes a call that is no
// longer counted; its BYE then finds nothing to release).
func (t *Table[L]) Reply(c *routing.ReplyCtx) {
	if t.n.Load() == 0 {
		return
	}
	st := c.Status()
	if st < 300 || !c.Req.IsMethod(parser.MethodInvite) {
		return
	}
	if st >= 600 || c.Req.Canceled() {
		if tx := c.Req.R.Ref(); tx != (txn.Ref{}) {
			t.End(c.Req.CallID(), c.Req.FTag(), tx)
		}
	}
}
