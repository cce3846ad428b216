package main

import (
	"net/netip"

	"switchboard/cmd/switchboard/config"
	"switchboard/modules/registrar"
	"switchboard/transport"
	"switchboard/transport/anycast"
)

// foreignResponse is the core's ForeignResponse hook when the node is in
// an anycast group (anycast.relay): responses to another node's requests
// go to that node. The relay is built before the transport starts, so the
// hook never sees it nil once packets flow.
func (s *server) foreignResponse() func([]byte, []byte, netip.AddrPort, *transport.Listener, transport.Proto) bool {
	if s.cfg.Anycast.Relay == "" {
		return nil
	}
	return func(branch, data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto) bool {
		return s.relay.Forward(branch, data, src, l, proto)
	}
}

// startAnycast binds the relay socket and gives the core the flows the
// other nodes hold (requests for them are handed to their node); the
// registrar names the flows of the bindings it shares by their node.
// Call after the core is built and before the transport starts; start
// the relay (hellos, reader) after the transport.
func (s *server) startAnycast() error {
	a := &s.cfg.Anycast
	if a.Relay == "" {
		return nil
	}
	r, err := anycast.New(anycast.Config{
		Listen: a.RelayAddr(),
		Peers:  a.PeerAddrs(),
		Prefix: s.core.BranchPrefix(),
		Handle: s.core.HandleMessage,
		Listener: func(proto transport.Proto, local netip.AddrPort) *transport.Listener {
			// The listener a response reached, or the one that stands here
			// for the holder's: the same transport at the same address
			// (all nodes listen alike), else one of the same transport and
			// family (a wildcard bind); WS and WSS stand for each other (a
			// Route URI says transport=ws for both, RFC 7118 §5.2).
			var other *transport.Listener
			for _, l := range s.tr.Listeners() {
				same := l.Proto == proto || proto.WebSocket() && l.Proto.WebSocket()
				if !same {
					continue
				}
				if l.Proto == proto && l.Local == local {
					return l
				}
				if other == nil && (!local.IsValid() || l.Local.Addr().Is4() == local.Addr().Is4()) {
					other = l
				}
			}
			if proto == transport.UDP {
				return nil // a UDP response is for the listener it reached
			}
			return other
		},
		SendConn:   s.tr.SendConnTagged,
		FlowFailed: s.core.SendFailed,
		MaxFlows:   a.MaxFlows,
		Logger:     s.log,
	})
	if err != nil {
		return &config.Error{Key: "anycast.relay", Msg: err.Error()}
	}
	s.relay = r
	s.core.SetRemoteFlows(r)
	// A hand-off written here and lost when its connection closes is
	// reported to its sender; other late failures are the core's.
	s.tr.SetSendErrorHandler(r.SendErrors(s.core))
	if reg, ok := s.mods.Get("registrar").(*registrar.Registrar); ok {
		reg.SetFlowNames(s.core.FlowName, s.core.FlowByName)
	}
	set := s.mgmt.Metrics()
	set.NewGauge("switchboard_anycast_peers", func() float64 { return float64(r.Stats().Peers) })
	set.NewGauge("switchboard_anycast_relayed_total", func() float64 { return float64(r.Stats().Relayed) })
	set.NewGauge("switchboard_anycast_received_total", func() float64 { return float64(r.Stats().Received) })
	set.NewGauge("switchboard_anycast_refused_total", func() float64 { return float64(r.Stats().Refused) })
	set.NewGauge("switchboard_anycast_flows", func() float64 { return float64(r.Stats().Flows) })
	set.NewGauge("switchboard_anycast_flows_evicted_total", func() float64 { return float64(r.Stats().FlowsEvicted) })
	set.NewGauge("switchboard_anycast_flows_freed_total", func() float64 { return float64(r.Stats().FlowsFreed) })
	set.NewGauge("switchboard_anycast_handoffs_sent_total", func() float64 { return float64(r.Stats().HandoffsSent) })
	set.NewGauge("switchboard_anycast_handoffs_received_total", func() float64 { return float64(r.Stats().HandoffsReceived) })
	set.NewGauge("switchboard_anycast_handoffs_failed_total", func() float64 { return float64(r.Stats().HandoffsFailed) })
	set.NewGauge("switchboard_anycast_handoffs_dropped_total", func() float64 { return float64(r.Stats().HandoffsDropped) })
	return nil
}
