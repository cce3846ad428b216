package modules

import (
	"errors"
	"net/netip"
	"sync/atomic"

	"switchboard/transport"
	"switchboard/txn"
)

// Originator sends the requests the proxy originates itself, for modules:
// a registrant's REGISTER to a carrier, OPTIONS probes of gateways. It is
// the transaction core's SendLocal (txn/local.go), handed over by the
// server once the core exists, which is after the modules are built and
// before they start: use it from Start on.
type Originator struct {
	core  atomic.Pointer[txn.Core]
	allow []netip.Prefix // outbound.allow, for Allowed before the core exists
}

// ErrNoCore is returned before the server handed the core over (in New,
// or in a test without one).
var ErrNoCore = errors.New("modules: no transaction core to send requests with yet")

// Ready reports whether the core was handed over: a module built alone
// (tests) has none, and may send its requests another way.
func (o *Originator) Ready() bool { return o.core.Load() != nil }

// SetCore hands the core over; the server calls it (Set.SetCore) before
// Start.
func (o *Originator) SetCore(c *txn.Core) { o.core.Store(c) }

// SendLocal sends r as a client transaction of the proxy's own and calls
// done with its outcome (txn.Core.SendLocal).
func (o *Originator) SendLocal(r txn.LocalRequest, done txn.LocalDone) error {
	c := o.core.Load()
	if c == nil {
		return ErrNoCore
	}
	return c.SendLocal(r, done)
}

// SendKeepalive sends data (a CRLF CRLF or four-byte NAT keep-alive) to
// dst from the listener bound to source, without a transaction
// (txn.Core.SendKeepalive).
func (o *Originator) SendKeepalive(proto transport.Proto, source, dst netip.AddrPort, data []byte) error {
	c := o.core.Load()
	if c == nil {
		return ErrNoCore
	}
	return c.SendKeepalive(proto, source, dst, data)
}

// Cancel cancels the pending INVITE of ref as the proxy's own CANCEL
// (txn.Core.Cancel): false when there is nothing to cancel, or no core.
// Not with a lock a transaction hook takes held.
func (o *Originator) Cancel(ref txn.Ref) bool {
	c := o.core.Load()
	return c != nil && c.Cancel(ref)
}

// Listener returns the listener a request to dst over proto leaves from,
// nil when there is none (or no core yet): for a Contact naming us.
func (o *Originator) Listener(proto transport.Proto, dst netip.Addr) *transport.Listener {
	c := o.core.Load()
	if c == nil {
		return nil
	}
	return c.ListenerFor(proto, dst)
}

// SetTap installs t as the core's message tap (txn.Core.SetTap; nil
// removes it): every message the core receives and sends is shown to it.
// The siptrace module's capture point. ErrNoCore before the core was
// handed over.
func (o *Originator) SetTap(t txn.Tap) error {
	c := o.core.Load()
	if c == nil {
		return ErrNoCore
	}
	c.SetTap(t)
	return nil
}

// Allowed reports whether the proxy may send to a (outbound.allow), for a
// module that sends on sockets of its own (HEP collectors, rtpengine's
// control socket): everything the server sends keeps to the allow-list.
// Before the core is handed over it answers from the list the server
// built the modules with (Services.AllowOutbound), so that New can refuse
// a destination; true without either (a module built alone in a test).
func (o *Originator) Allowed(a netip.Addr) bool {
	if c := o.core.Load(); c != nil {
		return c.Allowed(a)
	}
	return AllowedBy(o.allow, a)
}

// AllowedBy reports whether a is inside the allow-list l (an empty list
// allows everything), as the transaction core decides it.
func AllowedBy(l []netip.Prefix, a netip.Addr) bool {
	if len(l) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
