package txn

import (
	"runtime/debug"
	"strings"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
)

// The Router is code outside the core, run with a shard locked. A panic in
// it must not take the shard lock (and the process) with it: each call is
// guarded, the panic logged with its stack, and the core goes on as if the
// hook had done nothing more (a request then gets its 500).

func (c *Core) hookPanicked(hook string, v any, r *Request) {
	args := []any{"hook", hook, "panic", v, "stack", string(debug.Stack())}
	if r != nil {
		args = append(args, CallFields(r.Msg, r.Src, strings.ToLower(hook))...)
	}
	c.cfg.Logger.Error("txn: router hook panicked", args...)
}

func (c *Core) callRequest(r *Request) {
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Request", v, r)
		}
	}()
	if c.trace.Load() != nil {
		c.traceRoute("request", r)
	}
	c.router.Request(r)
}

func (c *Core) callBranch(r *Request, b *Branch) {
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Branch", v, r)
		}
	}()
	if c.trace.Load() != nil {
		c.traceRoute("branch", r)
	}
	c.router.Branch(r, b)
}

func (c *Core) callReply(r *Request, b *Branch, m *parser.Message) (keep bool) {
	x := r.x
	x.resp, x.pedUsed, x.pown, x.rbr, x.rheld = m, false, x.pown[:0], b, false
	defer func() {
		x.resp, x.rbr = nil, nil
		if v := recover(); v != nil {
			c.hookPanicked("Reply", v, r)
			keep = true
		}
	}()
	if c.trace.Load() != nil {
		c.traceRoute("reply", r)
	}
	return c.router.Reply(r, b, m)
}

func (c *Core) callFailure(r *Request, best *parser.Message) {
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Failure", v, r)
		}
	}()
	if c.trace.Load() != nil {
		c.traceRoute("failure", r)
	}
	c.router.Failure(r, best)
}

func (c *Core) callLocal(r *Request, b *Branch, method parser.Method, req []byte) {
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Local", v, r)
		}
	}()
	c.local.Local(r, b, method, req)
}

// watchSent tells the request's Watcher (Request.Watch) of a response
// just sent upstream. The shard is locked. Without a watcher it costs a
// nil check.
func (c *Core) watchSent(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, code int, resp *parser.Message, data []byte) {
	w := e.Value.rs.watch
	if w == nil {
		return
	}
	h := &x.wreq
	h.bind(c, s.Ref(e), &e.Value, x)
	if resp != nil {
		x.upSent = data
	}
	c.callWatch(w, h, b, code, resp)
	x.upSent = nil
}

func (c *Core) callWatch(w Watcher, r *Request, b *Branch, code int, resp *parser.Message) {
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Watcher", v, r)
		}
	}()
	w.Sent(r, b, code, resp)
}

// rewriteRequest lets the request's Rewriter edit the copy about to be
// sent on branch b (nil: forwarded statelessly) from listener out. s and
// e are nil for a request without a transaction (an ACK), whose handle r
// is used as it is. The shard is locked.
func (c *Core) rewriteRequest(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], r *Request, b *Branch, out *transport.Listener, ed *parser.Editor) {
	w := r.st.rw
	if w == nil {
		return
	}
	h := r
	if e != nil {
		h = &x.rwreq
		h.bind(c, s.Ref(e), &e.Value, x)
	}
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Rewriter", v, h)
		}
	}()
	x.rwbuf = w.RewriteRequest(h, b, out, ed, x.rwbuf[:0])
}

// rewriteResponse lets the request's Rewriter edit resp, from branch b,
// on its way upstream. The shard is locked.
func (c *Core) rewriteResponse(x *ctx, s *shards.Shard[txn], e *shards.Entry[txn], b *Branch, ed *parser.Editor, resp *parser.Message) {
	w := e.Value.rs.rw
	if w == nil {
		return
	}
	h := &x.rwreq
	h.bind(c, s.Ref(e), &e.Value, x)
	defer func() {
		if v := recover(); v != nil {
			c.hookPanicked("Rewriter", v, h)
		}
	}()
	x.rwbuf = w.RewriteResponse(h, b, ed, resp, x.rwbuf[:0])
}
