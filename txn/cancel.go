package txn

import "switchboard/shards"

// Ref names a request's transaction as a value that outlives the route
// hook, for state kept beside transactions that acts on them later (the
// dialog module cancels the INVITE of a dialog that timed out before an
// answer). It holds no memory of the transaction: once the transaction
// ended, and its pooled entry was reused, the Ref names nothing. The
// zero Ref names nothing.
type Ref struct{ ref shards.Ref[txn] }

// Ref returns the request's transaction as a Ref (the zero Ref for an
// ACK, which has none). It allocates nothing.
func (r *Request) Ref() Ref {
	if r.t == nil {
		return Ref{}
	}
	return Ref{r.ref}
}

// Cancel cancels the INVITE of ref from the proxy itself, as a CANCEL
// from its client does (§16.10; OpenSIPS t_cancel_trans): a CANCEL on
// every branch still pending, and 487 Request Terminated to the client
// once they have ended; Canceled() is then true. It returns false, doing
// nothing, when the transaction ended or got its final response, was
// canceled already, or is not an INVITE's. Call it from any goroutine
// without holding a lock that a transaction hook takes (a Watcher's
// table): it locks the transaction's shard.
func (c *Core) Cancel(ref Ref) bool {
	s := ref.ref.Shard()
	if s == nil {
		return false
	}
	x := c.getCtx()
	defer c.putCtx(x)
	s.Lock()
	defer s.Unlock()
	e := ref.ref.Entry()
	if e == nil {
		return false
	}
	t := &e.Value
	if !t.invite || t.finalSent || t.canceled {
		return false
	}
	t.canceled = true
	for i := 0; i < t.nbr; i++ {
		c.cancelBranch(x, s, e, t.branch(i))
	}
	if t.pending == 0 {
		c.replyLocal(x, s, e, 487, "Request Terminated", nil)
	}
	return true
}
