// Package calls registers the route set "calls": the stateful relay of
// the relay route set (every request to its Request-URI, or its Route
// set) with a dialog for every call, as the OpenSIPS script
//
//	route {
//	    if (topology_hiding_match()) { t_relay(); exit; }   # to a hidden call's Contact
//	    # a token of ours that does not verify: 403; of a call that ended: 481
//	    if (has_totag()) {
//	        if (loose_route()) {                 # our signed Record-Route only
//	            if (!validate_dialog() && !fix_route_dialog()) {  # R-URI or next Route not the
//	                # other party's, sent there instead; its target not known:
//	                if (!is_method("ACK")) sl_send_reply(403, "Forbidden (not the dialog's target)");
//	                exit;
//	            }
//	            match_dialog();                  # CSeq, BYE ends the call, target refresh
//	            t_relay(); exit;
//	        }
//	        if (!is_method("ACK")) sl_send_reply(404, "Not here");
//	        exit;
//	    }
//	    if ($route_kind != none && $route_kind != local) {
//	        sl_send_reply(403, "Preload Route denied"); exit;
//	    }
//	    if (is_method("ACK")) exit;              # stray ACK
//	    if (is_method("INVITE")) {
//	        if (!create_dialog()) { sl_send_reply(503, "Too Many Calls"); exit; }  # dialog.max_dialogs
//	        # each profile of dialog.profiles with a value, within its limit:
//	        if (get_profile_size("caller", "$fU") >= 2) { t_reply(486, "Too Many Calls"); exit; }
//	        set_dlg_profile("caller", "$fU");
//	        if ($topohiding_calls) topology_hiding();   # topohiding.calls
//	    }
//	    if (is_method("SUBSCRIBE")) record_route();   # create_dialog adds it for an INVITE
//	    t_relay();
//	}
//
// With topohiding.calls every call is hidden (modules/topohiding): each
// party sees the proxy's Via and Contact and no Record-Route of the
// other side, and the parties' in-dialog requests come to the proxy's
// Contact, matched by its token. Requests to a hidden call's Contact are
// matched whatever the setting, so calls set up before it was turned off
// still end.
//
// Dialogs end on a BYE from either side, on the INVITE's failure or
// CANCEL, and after dialog.default_timeout with a BYE from the proxy to
// each side; `switchboard ctl dialog.list` shows them. It authenticates
// nobody and relays anyone's requests: it is the route set of the dialog
// module's end-to-end tests and of benchmarks with dialogs, never for the
// Internet as it is; a provider calls the dialog module from its own
// route set (docs/routing.md).
package calls

import (
	"errors"

	"switchboard/modules/dialog"
	"switchboard/modules/topohiding"
	"switchboard/parser"
	"switchboard/routing"
)

func init() {
	routing.Register(routing.RouteSet{
		Name: "calls",
		Doc:  "stateful relay with a dialog for every call (timeouts, profiles with limits), no authentication",
		New:  newRoutes,
	})
}

type routes struct {
	dlg *dialog.Dialog
	th  *topohiding.TopoHiding // nil when the module is not compiled in
	// again is request, kept as a value once: the continuation of a
	// hidden call's request suspended while its dialog is read from
	// another node (a method value made per request would allocate).
	again func(c *routing.Ctx)
}

func newRoutes(env *routing.Env) (*routing.Routes, error) {
	d, _ := env.Module("dialog").(*dialog.Dialog)
	if d == nil {
		return nil, errors.New("the calls route set needs the dialog module")
	}
	r := &routes{dlg: d}
	r.th, _ = env.Module("topohiding").(*topohiding.TopoHiding)
	r.again = r.request
	return &routing.Routes{Request: r.request}, nil
}

func (r *routes) request(c *routing.Ctx) {
	v := r.th.Match(c)
	if v == topohiding.Elsewhere && r.th.Fetch(c, r.again) {
		return // suspended: this route runs again once the dialog is read
	}
	switch v {
	case topohiding.Matched:
		relay(c)
		return
	case topohiding.Forged:
		if !c.IsMethod(parser.MethodAck) {
			c.ReplyStateless(403, "Forbidden", nil)
		}
		return
	case topohiding.NoDialog, topohiding.Elsewhere:
		if !c.IsMethod(parser.MethodAck) {
			c.ReplyStateless(481, "Call/Transaction Does Not Exist", nil)
		}
		return
	}
	if c.HasToTag() {
		if c.LooseRoute() {
			if !r.dlg.ValidateDialog(c) && !r.dlg.FixRouteDialog(c) {
				// Not to the other party as the dialog knows it (a BYE
				// the caller addressed to herself), and that party's
				// target not known to send it there instead: it ends
				// nothing and goes nowhere.
				if !c.IsMethod(parser.MethodAck) {
					c.ReplyStateless(403, "Forbidden (not the dialog's target)", nil)
				}
				return
			}
			r.dlg.MatchDialog(c)
			relay(c)
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
	switch {
	case c.IsMethod(parser.MethodAck):
		return
	case c.IsMethod(parser.MethodInvite):
		if !r.dlg.CreateDialog(c) {
			c.ReplyStateless(503, "Too Many Calls", nil)
			return
		}
		if ok, _ := r.dlg.ApplyProfiles(c); !ok {
			// A reply of the transaction: the dialog sees it and ends,
			// leaving the profiles it was put in.
			c.Reply(486, "Too Many Calls")
			return
		}
		if r.th.HideCalls() {
			r.th.TopologyHiding(c)
		}
	case c.IsMethod(parser.MethodSubscribe):
		c.RecordRoute()
	}
	relay(c)
}

func relay(c *routing.Ctx) {
	if c.Relay() != nil && !c.IsMethod(parser.MethodAck) {
		c.ReplyStateless(500, "Relay Failed", nil)
	}
}
