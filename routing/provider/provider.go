// Package provider is the default route set "provider": the small VoIP
// provider of "Building Telephony Systems with OpenSIPS" written as Go.
// Copy this package to start a route set of your own (docs/routing.md).
//
// The OpenSIPS script it follows, step by step:
//
//	route {
//	    # the core already answered 400 (malformed), 483 (Max-Forwards),
//	    # 482 (loop), 416, 420 and 505 before the route runs
//	    if (has_totag()) {                       # in-dialog
//	        if (loose_route()) { t_relay(); exit; }
//	        if (is_method("ACK")) exit;          # stray ACK: drop
//	        sl_send_reply(404, "Not here"); exit;
//	    }
//	    if (loose_route()) { sl_send_reply(403, "Preload Route denied"); exit; }
//	    if (is_method("OPTIONS") && $rU == NULL && is_uri_host_local()) {
//	        sl_send_reply(200, "OK"); exit;       # keep-alive probes to the proxy
//	    }
//	    if (is_method("INVITE|SUBSCRIBE")) record_route();
//	    if (!is_uri_host_local()) {              # to another domain
//	        if (!is_from_local()) { sl_send_reply(403, "Relay Forbidden"); exit; }
//	        if (!proxy_authorize("", "subscriber")) { proxy_challenge("", "auth"); exit; }
//	        t_relay(); exit;
//	    }
//	    if (is_method("REGISTER")) {
//	        if (!www_authorize("", "subscriber")) { www_challenge("", "auth"); exit; }
//	        save("location"); exit;
//	    }
//	    if (is_from_local() && !proxy_authorize("", "subscriber")) { proxy_challenge(...); exit; }
//	    if (!does_uri_exist()) { sl_send_reply(404, "Not Found"); exit; }
//	    if (!lookup("location")) { sl_send_reply(480, "Temporarily Unavailable"); exit; }
//	    t_relay();
//	}
//
// The registrar and authentication steps run when those modules are
// configured in routing.Env; without them REGISTER gets 501 and calls to
// served domains 480, so the rest of the route set still works.
package provider

import (
	"switchboard/parser"
	"switchboard/routing"
)

func init() {
	routing.Register(routing.RouteSet{
		Name: "provider",
		Doc:  "small VoIP provider: registrar, authenticated calls, location lookup, loose routing",
		New:  newRoutes,
	})
}

func newRoutes(env *routing.Env) (*routing.Routes, error) {
	return &routing.Routes{Request: request}, nil
}

func request(c *routing.Ctx) {
	if c.HasToTag() {
		inDialog(c)
		return
	}
	if c.LooseRoute() {
		c.Reply(403, "Preload Route denied")
		return
	}
	if c.IsMethod(parser.MethodAck) {
		// An ACK for a non-2xx final was absorbed by its transaction; one
		// that reaches the route matches nothing here.
		c.Drop()
		return
	}
	if c.IsMethod(parser.MethodOptions) && len(c.RUser()) == 0 && c.IsURIHostLocal() {
		c.Reply(200, "OK")
		return
	}
	if c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
		c.RecordRoute()
	}
	if !c.IsURIHostLocal() {
		toForeignDomain(c)
		return
	}
	if c.IsMethod(parser.MethodRegister) {
		register(c)
		return
	}
	toLocalUser(c)
}

// inDialog routes requests inside a dialog by their Route set.
func inDialog(c *routing.Ctx) {
	if c.LooseRoute() {
		if err := c.Relay(); err != nil {
			c.Reply(500, "Relay Failed")
		}
		return
	}
	if c.IsMethod(parser.MethodAck) {
		c.Drop() // a stray ACK cannot be answered
		return
	}
	c.Reply(404, "Not here")
}

// toForeignDomain relays a request for another domain, only for
// authenticated local subscribers.
func toForeignDomain(c *routing.Ctx) {
	if !c.IsFromLocal() {
		c.Reply(403, "Relay Forbidden")
		return
	}
	if !authorize(c) {
		return
	}
	if err := c.Relay(); err != nil {
		c.Reply(500, "Relay Failed")
	}
}

// register handles REGISTER for a served domain.
func register(c *routing.Ctx) {
	c.Reply(501, "Registrar Not Configured")
}

// authorize checks the caller's credentials, challenging when needed. It
// returns true when the request may proceed.
func authorize(c *routing.Ctx) bool {
	c.Reply(403, "Authentication Not Configured")
	return false
}

// toLocalUser delivers a request to a subscriber of a served domain
// through the location service.
func toLocalUser(c *routing.Ctx) {
	c.Reply(480, "Temporarily Unavailable")
}
