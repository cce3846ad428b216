package dispatcher

import (
	"sync/atomic"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
)

// Lease is one call counted in a destination's calls in progress (the
// least_calls algorithm, the calls gauge). Release it once, when the call
// ends or moves to another destination.
type Lease struct {
	st *dstate
}

// Release takes the call off its destination's calls in progress. A
// destination removed from the table since keeps its count to itself.
func (l Lease) Release() {
	if l.st != nil {
		l.st.calls.Add(-1)
	}
}

// Tracker keeps the leases of calls in progress until the calls end. The
// module has its own (the call table below: released on a final non-2xx,
// a BYE or a timeout, since the proxy keeps no dialog state); a dialog
// module takes its place with SetTracker, keeping the lease with its
// dialog and releasing it when the dialog ends.
type Tracker interface {
	// Track is called for an initial INVITE each time SelectDst or
	// NextDst sends it to a destination, with that destination's lease.
	// A tracker keeps one lease per call: given another for a call it
	// holds (a fail-over), it releases the one it held. False means the
	// call is not tracked (the table is full, or the Call-ID belongs to
	// another call in progress): the caller releases the lease at once.
	Track(c *routing.Ctx, l Lease) bool
}

// call is a tracked call: its lease, the INVITE transaction that made it
// (only that transaction's failure releases it) and its safety deadline.
type call struct {
	lease    Lease
	txn      uint64
	deadline int64 // ms
}

// callTable is the built-in Tracker, keyed by Call-ID and bounded by
// max_calls.
type callTable struct {
	d        *Dispatcher
	tbl      *shards.Table[call]
	perShard int
	n        atomic.Int64 // calls tracked: lets untracked traffic skip the lookup
}

func newCallTable(d *Dispatcher, clock *shards.Clock, nshards, maxCalls int) (*callTable, error) {
	tbl, err := shards.New(shards.Config[call]{Clock: clock, Shards: nshards})
	if err != nil {
		return nil, err
	}
	per := (maxCalls + tbl.NumShards() - 1) / tbl.NumShards()
	return &callTable{d: d, tbl: tbl, perShard: max(per, 1)}, nil
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
	tx := txnID(c.Msg())
	s := t.tbl.Shard(h)
	s.Lock()
	e := s.Get(h, id)
	if e != nil {
		if e.Value.txn != tx {
			s.Unlock()
			return false
		}
		old := e.Value.lease
		e.Value.lease = l
		s.Unlock()
		old.Release()
		return true
	}
	if s.Len() >= t.perShard {
		s.Unlock()
		t.d.untracked.Inc()
		return false
	}
	e, _, err := s.GetOrInsert(h, id)
	if err != nil {
		s.Unlock()
		return false
	}
	e.Value = call{lease: l, txn: tx, deadline: s.Now() + t.d.timeout.Load()}
	s.Unlock()
	t.n.Add(1)
	return true
}

// end releases the call with callID; with txn != 0 only when it was
// made by that transaction.
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

// sweep releases the calls past their deadline, after unlocking each
// shard.
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
		t.d.timedOut.Inc()
	}
	return buf
}

// CallEnded releases the call of a BYE the route relays (in-dialog, after
// loose_route): the call is over whichever side hung up. It does nothing
// for other methods, or when the call is not tracked.
func (d *Dispatcher) CallEnded(c *routing.Ctx) {
	if d == nil || !c.IsMethod(parser.MethodBye) {
		return
	}
	d.calls.end(c.CallID(), 0)
}

// CallFailed releases the call of an INVITE that will not be answered 2xx:
// from the failure route when no other destination is tried, and from a
// route that refuses or fails to relay an INVITE after SelectDst. Only
// the transaction that SelectDst counted releases its call.
func (d *Dispatcher) CallFailed(c *routing.Ctx) {
	if d == nil || !c.IsMethod(parser.MethodInvite) {
		return
	}
	d.calls.end(c.CallID(), txnID(c.Msg()))
}

// Reply is for the reply route: a final response that ends an INVITE
// without a failure route running releases its call. The core skips the
// failure route after a 6xx or once the INVITE was canceled, so those are
// caught here.
func (d *Dispatcher) Reply(c *routing.ReplyCtx) {
	if d == nil || d.calls.n.Load() == 0 {
		return
	}
	st := c.Status()
	if st < 300 || !c.Req.IsMethod(parser.MethodInvite) {
		return
	}
	if st >= 600 || c.Req.Canceled() {
		d.calls.end(c.Req.CallID(), txnID(c.Req.Msg()))
	}
}
