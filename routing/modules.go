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
// credential lookup on disk, for example). The context is built for this
// one call; it is not pooled, since resuming is the slow path.
func Resume(env *Env, r *txn.Request, fn func(c *Ctx)) {
	c := &Ctx{}
	c.reset(r, env)
	fn(c)
}

// Txn is the transaction layer's branch, for what this vocabulary lacks
// (per-branch destination, URI and header edits by modules).
func (b *Branch) Txn() *txn.Branch { return b.b }
