package routing

import "switchboard/txn"

// Module returns the module registered under name in Env.Modules, or nil.
func (e *Env) Module(name string) any {
	if e == nil || e.Modules == nil {
		return nil
	}
	return e.Modules[name]
}

// Resume runs fn with a context on r, a handle returned by Ctx.Suspend,
// from the goroutine that finished the work the route waited for (a
// credential lookup on disk, for example). It goes through
// txn.Request.Resume: the transaction is locked and checked to be alive
// first, so a continuation that comes after the transaction timed out is
// not run (the result is txn.ErrNoTransaction). The context is built for
// this one call; it is not pooled, since resuming is the slow path.
func Resume(env *Env, r *txn.Request, fn func(c *Ctx)) error {
	return r.Resume(func(h *txn.Request) {
		c := &Ctx{}
		c.reset(h, env)
		fn(c)
	})
}

// Txn is the transaction layer's branch, for what this vocabulary lacks
// (per-branch destination, URI and header edits by modules).
func (b *Branch) Txn() *txn.Branch { return b.b }
