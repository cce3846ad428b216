// Package dispatch registers the route set "dispatch": every initial
// request goes to a destination of one set of the dispatcher module, the
// set and the algorithm given by the settings dispatcher.dispatch_set and
// dispatcher.dispatch_algorithm, with fail-over to the set's other
// destinations on a timeout or a 5xx. It is what a load balancer in front
// of media servers or a PBX farm does, as the OpenSIPS script
//
//	route {
//	    if (has_totag()) {
//	        if (loose_route()) {                 # our signed Record-Route only
//	            if (is_method("BYE")) route(call_ended);
//	            t_relay(); exit;
//	        }
//	        if (!is_method("ACK")) sl_send_reply(404, "Not here");
//	        exit;
//	    }
//	    if ($route_kind != none && $route_kind != local) {
//	        sl_send_reply(403, "Preload Route denied"); exit;
//	    }
//	    if (is_method("ACK")) exit;              # stray ACK
//	    if (is_method("INVITE|SUBSCRIBE")) record_route();
//	    if (!ds_select_dst($dispatch_set, $dispatch_algorithm)) {
//	        sl_send_reply(503, "No Destination Available"); exit;
//	    }
//	    t_on_failure("next"); t_relay();
//	}
//	onreply_route { if (is_method("INVITE") && $rs >= 300) route(call_failed); }
//	failure_route[next] {
//	    if (t_was_cancelled()) { route(call_failed); exit; }
//	    if (t_check_status("408")) ds_mark_dst("p");   # counts toward probe_failures
//	    if (t_check_status("408|5[0-9][0-9]") && ds_next_dst()) { t_relay(); exit; }
//	    route(call_failed);
//	}
//
// where call_ended and call_failed release the call's count (the
// least_calls algorithm), which OpenSIPS does from dialog callbacks.
//
// It authenticates nobody and relays anyone's requests to the set: put it
// behind a proxy that does, or on a private network, never on the
// Internet as it is. It is the route set of the dispatcher's end-to-end
// tests and a starting point; a provider uses the dispatcher from its own
// route set (docs/routing.md).
package dispatch

import (
	"errors"

	"switchboard/modules/dispatcher"
	"switchboard/parser"
	"switchboard/routing"
)

func init() {
	routing.Register(routing.RouteSet{
		Name: "dispatch",
		Doc:  "every initial request to a dispatcher set (dispatcher.dispatch_set), fail-over on 408 and 5xx",
		New:  newRoutes,
	})
}

type routes struct {
	ds *dispatcher.Dispatcher
}

func newRoutes(env *routing.Env) (*routing.Routes, error) {
	ds, _ := env.Module("dispatcher").(*dispatcher.Dispatcher)
	if ds == nil {
		return nil, errors.New("the dispatch route set needs the dispatcher module")
	}
	r := &routes{ds: ds}
	return &routing.Routes{Request: r.request, Reply: r.reply, Failure: r.failure}, nil
}

func (r *routes) request(c *routing.Ctx) {
	if c.HasToTag() {
		if c.LooseRoute() {
			r.ds.CallEnded(c)
			if c.Relay() != nil && !c.IsMethod(parser.MethodAck) {
				c.ReplyStateless(500, "Relay Failed", nil)
			}
			return
		}
		if !c.IsMethod(parser.MethodAck) {
			c.ReplyStateless(404, "Not here", nil)
		}
		return
	}
	if k := c.RouteKind(); k != routing.RouteNone && k != routing.RouteLocal {
		c.ReplyStateless(403, "Preload Route denied", nil)
		return
	}
	if c.IsMethod(parser.MethodAck) {
		return
	}
	if c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
		c.RecordRoute()
	}
	set, alg := r.ds.Dispatch()
	if !r.ds.SelectDst(c, set, alg) {
		if r.ds.CallInUse(c) { // the Call-ID and From tag of a call in progress
			c.ReplyStateless(482, "Loop Detected", nil)
			return
		}
		c.ReplyStateless(503, "No Destination Available", nil)
		return
	}
	if c.Relay() != nil {
		r.ds.CallFailed(c)
		c.ReplyStateless(500, "Relay Failed", nil)
	}
}

func (r *routes) reply(c *routing.ReplyCtx) bool {
	r.ds.Reply(c)
	return true
}

func (r *routes) failure(c *routing.FailureCtx) {
	st := c.Status()
	if !c.Canceled() && (st == 408 || st >= 500 && st < 600) {
		if st == 408 {
			r.ds.MarkDst(c.Ctx, dispatcher.Probing)
		}
		if r.ds.NextDst(c) && c.Relay() == nil {
			return
		}
	}
	r.ds.CallFailed(c.Ctx)
}
