package routing

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/parser"
	"switchboard/txn"
)

// Branch is the outgoing branch a branch route or reply route sees.
type Branch struct {
	b *txn.Branch
}

// Index is the branch number, 0 for the first (OpenSIPS: $T_branch_idx).
func (b *Branch) Index() int { return b.b.Index() }

// ReplyCtx is what a reply route sees: the response and the request it
// answers.
type ReplyCtx struct {
	// Req is the request the response answers; its actions (Reply, Relay)
	// must not be used from a reply route.
	Req    *Ctx
	Branch Branch
	resp   *parser.Message
}

// Msg is the response.
func (c *ReplyCtx) Msg() *parser.Message { return c.resp }

// Status is the response code (OpenSIPS: $rs).
func (c *ReplyCtx) Status() int { return c.resp.StatusCode() }

// Reason is the reason phrase (OpenSIPS: $rr).
func (c *ReplyCtx) Reason() []byte { return c.resp.Reason() }

// Header returns the first value of a response header (OpenSIPS:
// $hdr(name) in onreply_route).
func (c *ReplyCtx) Header(name string) []byte { return c.resp.GetByName(sbytes(name)) }

// Source is the address the response came from (OpenSIPS: $si and $sp in
// onreply_route): the packet's, never a header's.
func (c *ReplyCtx) Source() netip.AddrPort { return c.Req.R.ResponseSource() }

// Editor returns an editor on the response for changes to the copy
// relayed upstream (OpenSIPS: the lumps of fix_nated_contact and
// fix_nated_sdp in onreply_route): a 1xx or 2xx is sent with them, a
// non-2xx final kept with them for the best-response choice. Give it
// values copied with Own.
func (c *ReplyCtx) Editor() *parser.Editor { return c.Req.R.ResponseEditor() }

// Own copies b into memory that lives until the response is sent, for
// values given to Editor. Allocation-free once warm.
func (c *ReplyCtx) Own(b []byte) []byte { return c.Req.R.OwnResponse(b) }

// FailureCtx is what a failure route sees: the request, with every request
// action (AppendBranch, Relay, Reply), and the best response received.
type FailureCtx struct {
	*Ctx
	best *parser.Message
}

// Best is the best final response collected from the branches (OpenSIPS:
// the reply in failure_route, $T_reply_code); nil when every branch failed
// locally (timeout or transport error).
func (c *FailureCtx) Best() *parser.Message { return c.best }

// Status is the code of the best response (OpenSIPS: $T_reply_code); 408
// or 503 for local failures without a response.
func (c *FailureCtx) Status() int {
	if c.best == nil {
		return 408
	}
	return c.best.StatusCode()
}

// LastBranch is the final status of the branch started last and whether
// its next hop answered at all (a provisional or a final response) rather
// than staying silent or failing to be reached (the 408 and 503 generated
// here). With serial forking it is the target tried last, which the best
// response (Status) need not come from.
func (c *FailureCtx) LastBranch() (code int, answered bool) { return c.R.LastBranch() }

// LocalCtx is what a local route sees: a request the proxy generated on
// its own (a CANCEL for a pending branch, an ACK for a non-2xx final).
type LocalCtx struct {
	// Req is the original request the generated one belongs to; its
	// actions must not be used from a local route.
	Req    *Ctx
	Branch Branch
	method parser.Method
	raw    []byte
}

// Method is the generated request's method (CANCEL or ACK).
func (c *LocalCtx) Method() parser.Method { return c.method }

// Raw is the generated request as it will be sent; read only, valid
// during the call.
func (c *LocalCtx) Raw() []byte { return c.raw }

// Router adapts a route set to the transaction layer (it implements
// txn.Router). Contexts are pooled: a route call allocates nothing.
type Router struct {
	routes *Routes
	env    *Env

	ctxs     sync.Pool
	calls    atomic.Uint64
	draining atomic.Bool
	latency  *metrics.Histogram
	byMeth   [numMethods]*metrics.Counter // new requests routed
	relayed  [numMethods]*metrics.Counter // branches sent
	repIn    [7]*metrics.Counter          // replies received on branches, by class
	repLocal [7]*metrics.Counter          // replies the route set sent, by class
}

// numMethods is one past the last known method.
const numMethods = parser.MethodPublish + 1

// latencySample is how often a route call is timed: 1 in latencySample,
// so the clock is read far less often than once per message.
const latencySample = 64

// NewRouter builds the route functions of rs with env.
func NewRouter(rs RouteSet, env *Env) (*Router, error) {
	routes, err := rs.New(env)
	if err != nil {
		return nil, err
	}
	if routes == nil || routes.Request == nil {
		return nil, &setupError{rs.Name}
	}
	rt := &Router{routes: routes, env: env}
	rt.ctxs.New = func() any { return new(frame) }
	set := env.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	rt.latency = set.NewHistogram(`switchboard_route_duration_seconds{route="request"}`)
	for m := parser.Method(0); m < numMethods; m++ {
		name := m.String()
		if m == parser.MethodOther {
			name = "other"
		}
		rt.byMeth[m] = set.NewCounter(`switchboard_requests_routed_total{method="` + name + `"}`)
		rt.relayed[m] = set.NewCounter(`switchboard_requests_relayed_total{method="` + name + `"}`)
	}
	for class := 1; class <= 6; class++ {
		l := `{class="` + string(rune('0'+class)) + `xx"}`
		rt.repIn[class] = set.NewCounter(`switchboard_replies_received_total` + l)
		rt.repLocal[class] = set.NewCounter(`switchboard_replies_local_total` + l)
	}
	env.replyCounters = &rt.repLocal
	return rt, nil
}

type setupError struct{ name string }

func (e *setupError) Error() string { return "route set " + e.name + " has no request route" }

// frame holds every context a route call may need, pooled as one object so
// that passing them to route functions (which makes them escape) costs no
// allocation.
type frame struct {
	ctx Ctx
	br  Branch
	rc  ReplyCtx
	fc  FailureCtx
	lc  LocalCtx
}

func (rt *Router) get(r *txn.Request) *frame {
	f := rt.ctxs.Get().(*frame)
	f.ctx.reset(r, rt.env)
	return f
}

func (rt *Router) put(f *frame) {
	f.ctx.R = nil
	f.br.b = nil
	f.rc = ReplyCtx{}
	f.fc = FailureCtx{}
	f.lc = LocalCtx{}
	rt.ctxs.Put(f)
}

// SetDraining makes the router refuse new dialogs and out-of-dialog
// requests with 503 and Retry-After while requests inside dialogs (BYE,
// re-INVITE, ACK) still reach the route set, so calls in progress can end
// during a graceful shutdown.
func (rt *Router) SetDraining(v bool) { rt.draining.Store(v) }

var drainingHeaders = []byte("Retry-After: 5\r\n")

// Request implements txn.Router.
func (rt *Router) Request(r *txn.Request) {
	m := r.Msg.Method()
	if m < numMethods {
		rt.byMeth[m].Inc()
	}
	if rt.draining.Load() && !r.HasToTag() && m != parser.MethodAck {
		r.ReplyWithHeaders(503, "Shutting Down", drainingHeaders)
		return
	}
	f := rt.get(r)
	if rt.calls.Add(1)%latencySample == 0 {
		start := time.Now()
		rt.request(&f.ctx)
		rt.latency.UpdateDuration(start)
	} else {
		rt.request(&f.ctx)
	}
	rt.put(f)
}

// request runs the request route, handing a panic to the error route when
// there is one (the transaction layer recovers it otherwise).
func (rt *Router) request(c *Ctx) {
	if rt.routes.Error != nil {
		defer func() {
			if v := recover(); v != nil {
				rt.routes.Error(c, v)
			}
		}()
	}
	rt.routes.Request(c)
}

// Local implements txn.LocalRouter.
func (rt *Router) Local(r *txn.Request, b *txn.Branch, method parser.Method, req []byte) {
	if rt.routes.Local == nil {
		return
	}
	f := rt.get(r)
	f.lc = LocalCtx{Req: &f.ctx, Branch: Branch{b: b}, method: method, raw: req}
	rt.routes.Local(&f.lc)
	rt.put(f)
}

// Branch implements txn.Router.
func (rt *Router) Branch(r *txn.Request, b *txn.Branch) {
	if m := r.Msg.Method(); m < numMethods {
		rt.relayed[m].Inc()
	}
	if rt.routes.Branch == nil {
		return
	}
	f := rt.get(r)
	f.br.b = b
	rt.routes.Branch(&f.ctx, &f.br)
	rt.put(f)
}

// Reply implements txn.Router.
func (rt *Router) Reply(r *txn.Request, b *txn.Branch, resp *parser.Message) bool {
	if class := resp.StatusCode() / 100; class >= 1 && class <= 6 {
		rt.repIn[class].Inc()
	}
	if rt.routes.Reply == nil {
		return true
	}
	f := rt.get(r)
	f.rc = ReplyCtx{Req: &f.ctx, Branch: Branch{b: b}, resp: resp}
	ok := rt.routes.Reply(&f.rc)
	rt.put(f)
	return ok
}

// Failure implements txn.Router.
func (rt *Router) Failure(r *txn.Request, best *parser.Message) {
	if rt.routes.Failure == nil {
		return
	}
	f := rt.get(r)
	f.fc = FailureCtx{Ctx: &f.ctx, best: best}
	rt.routes.Failure(&f.fc)
	rt.put(f)
}
