package fraud

import (
	"sync/atomic"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
)

// Lease is one call counted in its caller's concurrent calls. Release it
// once, when the call ends. A lease whose counter was dropped since
// (fraud.reset, eviction) releases nothing.
type Lease struct {
	ref shards.Ref[counter]
}

// Release takes the call off its caller's concurrent calls.
func (l Lease) Release() {
	s := l.ref.Shard()
	if s == nil {
		return
	}
	s.Lock()
	if e := l.ref.Entry(); e != nil && e.Value.conc > 0 {
		e.Value.conc--
	}
	s.Unlock()
}

// Tracker keeps the leases of calls in progress until the calls end. The
// module has its own (the call table below: release on a final non-2xx,
// a BYE or a timeout, since the proxy keeps no dialog state); a dialog
// module can take its place with SetTracker, keeping the lease with its
// dialog and releasing it when the dialog ends.
type Tracker interface {
	// Track is called by Check for an initial INVITE it let through,
	// after counting it. False means the call is not tracked (the table is
	// full, or the call is counted already): Check releases the lease at
	// once.
	Track(c *routing.Ctx, l Lease) bool
}

// SetTracker replaces the module's call table as the keeper of leases;
// call it while the server is being built (a module's New), before calls
// arrive. The table's release functions (CallEnded, CallFailed, Reply)
// then find nothing to release.
func (f *Fraud) SetTracker(t Tracker) { f.tracker = t }

// call is a tracked call: its lease, the INVITE transaction that created
// it (so that only that transaction's failure releases it) and its
// safety deadline.
type call struct {
	lease    Lease
	txn      uint64
	deadline int64 // ms
}

// callTable is the built-in Tracker, keyed by Call-ID.
type callTable struct {
	f        *Fraud
	tbl      *shards.Table[call]
	perShard int
	n        atomic.Int64 // calls tracked: lets untracked traffic skip the lookup
}

func newCallTable(f *Fraud, clock *shards.Clock, nshards, max int) (*callTable, error) {
	tbl, err := shards.New(shards.Config[call]{Clock: clock, Shards: nshards})
	if err != nil {
		return nil, err
	}
	return &callTable{f: f, tbl: tbl, perShard: perShard(max, tbl.NumShards())}, nil
}

// txnID identifies an INVITE transaction: the top Via branch and the CSeq
// number. A second INVITE with the Call-ID of a call in progress is
// another transaction, and its failure must not release that call.
func txnID(m *parser.Message) uint64 {
	return shards.Sum(m.TopVia().Branch) ^ uint64(m.CSeq().Num)*0x9e3779b97f4a7c15
}

// Track implements Tracker.
func (t *callTable) Track(c *routing.Ctx, l Lease) bool {
	id := c.CallID()
	h := shards.Sum(id)
	s := t.tbl.Shard(h)
	s.Lock()
	if s.Len() >= t.perShard {
		s.Unlock()
		t.f.untracked.Inc()
		return false
	}
	e, found, err := s.GetOrInsert(h, id)
	if err != nil || found {
		s.Unlock()
		return false
	}
	e.Value = call{lease: l, txn: txnID(c.Msg()), deadline: s.Now() + t.f.timeout.Load()}
	s.Unlock()
	t.n.Add(1)
	return true
}

// end releases the call with callID; with txn != 0 only when it was
// created by that transaction.
func (t *callTable) end(callID []byte, txn uint64) bool {
	if t.n.Load() == 0 {
		return false
	}
	h := shards.Sum(callID)
	s := t.tbl.Shard(h)
	s.Lock()
	e := s.Get(h, callID)
	if e == nil || txn != 0 && e.Value.txn != txn {
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

// sweep releases the calls past their deadline. Leases are released after
// the shard is unlocked: a call shard lock is never held while a counter
// shard is taken.
func (t *callTable) sweep(now int64, buf []Lease) []Lease {
	buf = buf[:0]
	t.tbl.Range(func(s *shards.Shard[call], e *shards.Entry[call]) bool {
		if e.Value.deadline <= now {
			buf = append(buf, e.Value.lease)
			s.Remove(e)
		}
		return true
	})
	for _, l := range buf {
		t.n.Add(-1)
		l.Release()
		t.f.timedOut.Inc()
	}
	return buf
}

// CallEnded releases the call of a BYE the route relays (in-dialog, after
// loose_route): the call is over whichever side hung up. It does nothing
// for other methods, or when the call is not tracked.
func (f *Fraud) CallEnded(c *routing.Ctx) {
	if f == nil || !c.IsMethod(parser.MethodBye) {
		return
	}
	f.calls.end(c.CallID(), 0)
}

// CallFailed releases the call of an INVITE that will not be answered 2xx:
// called from the failure route when no other branch is tried, and by a
// route that refuses or fails to relay an INVITE after Check let it
// through. Only the transaction that Check counted releases its call.
func (f *Fraud) CallFailed(c *routing.Ctx) {
	if f == nil || !c.IsMethod(parser.MethodInvite) {
		return
	}
	f.calls.end(c.CallID(), txnID(c.Msg()))
}

// Reply is for the reply route: a final response that ends an INVITE
// without a failure route running releases its call. The core skips the
// failure route after a 6xx or once the INVITE was canceled, so those are
// caught here (a 200 that crosses the CANCEL makes a call that is no longer
// counted; its BYE then finds nothing to release).
func (f *Fraud) Reply(c *routing.ReplyCtx) {
	if f == nil || f.calls.n.Load() == 0 {
		return
	}
	st := c.Status()
	if st < 300 || !c.Req.IsMethod(parser.MethodInvite) {
		return
	}
	if st >= 600 || c.Req.Canceled() {
		f.calls.end(c.Req.CallID(), txnID(c.Req.Msg()))
	}
}

// sweep releases calls past their timeout and, once a minute, drops
// counters idle for a day.
func (f *Fraud) sweep() {
	now := f.clock.Now()
	f.sweepBuf = f.calls.sweep(now, f.sweepBuf)
	if now-f.lastCounterSweep >= 60_000 {
		f.lastCounterSweep = now
		f.sweepCounters(now / 1000)
	}
}
