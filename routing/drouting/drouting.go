// Package drouting registers the route set "drouting": every initial
// request goes to a PSTN gateway chosen by the drouting module's rules
// (routing group drouting.group, longest prefix of the Request-URI user,
// time and priority), with fail-over to the next gateway of the rule's
// list on a timeout or a 5xx. It is what a pure trunking or least cost
// routing proxy in front of carriers does, as the OpenSIPS script
//
//	route {
//	    if (has_totag()) {
//	        if (loose_route()) { t_relay(); exit; }  # our signed Record-Route only
//	        if (!is_method("ACK")) sl_send_reply(404, "Not here");
//	        exit;
//	    }
//	    if ($route_kind != none && $route_kind != local) {
//	        sl_send_reply(403, "Preload Route denied"); exit;
//	    }
//	    if (is_method("ACK")) exit;              # stray ACK
//	    if (is_method("INVITE|SUBSCRIBE")) record_route();
//	    if (!do_routing($drouting_group)) {
//	        if ($rc == no_gateway) { sl_send_reply(503, "No Gateway Available"); exit; }
//	        sl_send_reply(404, "No Route"); exit;
//	    }
//	    t_on_failure("next_gw"); t_relay();
//	}
//	failure_route[next_gw] {
//	    if (t_was_cancelled()) exit;
//	    if (t_check_status("408|5[0-9][0-9]") && use_next_gw()) t_relay();
//	}
//
// It authenticates nobody: anyone who can reach it can call any number
// its rules route, on the carriers' bill. Put it behind a proxy that
// authenticates (the provider route set does, and has drouting built in),
// or on a private network that only trusted switches reach, never on the
// Internet as it is.
package drouting

import (
	"errors"

	dr "switchboard/modules/drouting"
	"switchboard/parser"
	"switchboard/routing"
)

func init() {
	routing.Register(routing.RouteSet{
		Name: "drouting",
		Doc:  "every initial request to a PSTN gateway by the drouting rules (drouting.group), fail-over on 408 and 5xx",
		New:  newRoutes,
	})
}

type routes struct {
	dr *dr.Drouting
}

func newRoutes(env *routing.Env) (*routing.Routes, error) {
	d, _ := env.Module("drouting").(*dr.Drouting)
	if d == nil {
		return nil, errors.New("the drouting route set needs the drouting module")
	}
	r := &routes{dr: d}
	return &routing.Routes{Request: r.request, Failure: r.failure}, nil
}

func (r *routes) request(c *routing.Ctx) {
	if c.HasToTag() {
		if c.LooseRoute() {
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
	// The group is read per request: a SIGHUP that changes drouting.group
	// applies to the next call.
	switch r.dr.Route(c, r.dr.Group()) {
	case dr.NoGateway:
		c.ReplyStateless(503, "No Gateway Available", nil)
		return
	case dr.NoRule:
		c.ReplyStateless(404, "No Route", nil)
		return
	}
	if c.Relay() != nil {
		c.ReplyStateless(500, "Relay Failed", nil)
	}
}

// failure moves the call to the next gateway of its list when the one
// tried last answered 408 or 5xx (or nothing); UseNextGW relays, and
// leaves a canceled call, a 4xx or 6xx and an exhausted list alone, so
// that the best response goes back to the caller.
func (r *routes) failure(c *routing.FailureCtx) {
	r.dr.UseNextGW(c)
}
