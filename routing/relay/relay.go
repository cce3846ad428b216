// Package relay registers two minimal route sets:
//
//   - "relay": every request is relayed statefully to its Request-URI (or
//     its Route set), initial INVITE and SUBSCRIBE with Record-Route. It is
//     the proxy of the stateful-relay benchmark and of end-to-end tests.
//     With rtpengine.instances set, its calls go through rtpengine_manage
//     (request, reply and failure routes): the media relay benchmark.
//   - "stateless": every request is forwarded statelessly (OpenSIPS
//     forward()), the stateless-relay benchmark.
//
// They serve no domain and authenticate nobody: never expose them to the
// Internet.
package relay

import (
	"switchboard/modules/rtpengine"
	"switchboard/parser"
	"switchboard/routing"
)

func init() {
	routing.Register(routing.RouteSet{
		Name: "relay",
		Doc:  "stateful relay of every request to its Request-URI, with Record-Route",
		New: func(env *routing.Env) (*routing.Routes, error) {
			if rtp, _ := env.Module("rtpengine").(*rtpengine.Engine); rtp.Enabled() {
				return mediaRelay(rtp), nil
			}
			return &routing.Routes{Request: statefulRelay}, nil
		},
	})
	routing.Register(routing.RouteSet{
		Name: "stateless",
		Doc:  "stateless forwarding of every request to its Request-URI",
		New: func(*routing.Env) (*routing.Routes, error) {
			return &routing.Routes{Request: statelessRelay}, nil
		},
	})
}

func statefulRelay(c *routing.Ctx) {
	c.LooseRoute()
	if !c.HasToTag() && c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
		c.RecordRoute()
	}
	if err := c.Relay(); err != nil {
		c.Reply(500, "Relay Failed")
	}
}

func statelessRelay(c *routing.Ctx) {
	c.LooseRoute()
	if err := c.Forward(); err != nil {
		c.Reply(500, "Forward Failed")
	}
}

// mediaRelay is "relay" with rtpengine_manage: the SDP of each call goes
// through rtpengine before the INVITE is relayed and before the answer
// goes back; BYE, CANCEL and failures delete the session.
func mediaRelay(rtp *rtpengine.Engine) *routing.Routes {
	relayed := func(c *routing.Ctx, err error) {
		if err != nil && rtp.Refuse(c, err) {
			return
		}
		if err := c.Relay(); err != nil {
			c.Reply(500, "Relay Failed")
		}
	}
	return &routing.Routes{
		Request: func(c *routing.Ctx) {
			c.LooseRoute()
			if !c.HasToTag() && c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
				c.RecordRoute()
			}
			rtp.Manage(c, nil, relayed)
		},
		Reply:   func(c *routing.ReplyCtx) bool { rtp.ManageReply(c, nil); return true },
		Failure: func(c *routing.FailureCtx) { rtp.ManageFailure(c, nil) },
	}
}
