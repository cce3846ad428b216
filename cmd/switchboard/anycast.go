package main

import (
	"net/netip"

	"switchboard/cmd/switchboard/config"
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

// startAnycast binds the relay socket and starts the hellos to the peers.
// Call after the core is built and before the transport starts.
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
		Listener: func(local netip.AddrPort) *transport.Listener {
			for _, l := range s.tr.Listeners() {
				if l.Proto == transport.UDP && l.Local == local {
					return l
				}
			}
			return nil
		},
		Logger: s.log,
	})
	if err != nil {
		return &config.Error{Key: "anycast.relay", Msg: err.Error()}
	}
	s.relay = r
	r.Start()
	set := s.mgmt.Metrics()
	set.NewGauge("switchboard_anycast_peers", func() float64 { return float64(r.Stats().Peers) })
	set.NewGauge("switchboard_anycast_relayed_total", func() float64 { return float64(r.Stats().Relayed) })
	set.NewGauge("switchboard_anycast_received_total", func() float64 { return float64(r.Stats().Received) })
	set.NewGauge("switchboard_anycast_refused_total", func() float64 { return float64(r.Stats().Refused) })
	return nil
}
