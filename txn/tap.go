package txn

import (
	"net/netip"

	"switchboard/parser"
	"switchboard/transport"
)

// Tap sees every SIP message the core receives and every one it sends: the
// capture point of modules/siptrace (HEP to Homer). Its methods run on
// the goroutine that handles or sends the message, often with a shard
// locked: they must not block, must not call into the core, and should
// only copy what they keep (the views are valid during the call only).
type Tap interface {
	// Received is a message the transport handed the core (the Packet's
	// fields: its bytes as they came, its source, the listener and the
	// protocol), before anything is done with it; m is its parse, nil
	// when it did not parse. The fields come one by one: a *Packet handed
	// to an interface would make every caller's Packet escape to the
	// heap, tap or not.
	Received(data []byte, src netip.AddrPort, l *transport.Listener, proto transport.Proto, m *parser.Message)
	// Sent is a message the sender accepted for dst from listener l: a
	// datagram sent, or stream data queued on the connection to dst.
	// Sends refused (outbound.allow, a full socket buffer) are not seen.
	Sent(l *transport.Listener, dst netip.AddrPort, data []byte)
}

// tapBox holds the Tap behind an atomic pointer: the interface cannot be
// stored atomically itself, and a nil pointer is the one check a message
// pays when tracing is off.
type tapBox struct{ t Tap }

// SetTap installs t (nil removes it). Messages handled from then on are
// shown to it; one handled concurrently may or may not be.
func (c *Core) SetTap(t Tap) {
	if t == nil {
		c.tap.Store(nil)
		return
	}
	c.tap.Store(&tapBox{t})
}

// tapSent shows a message the sender accepted to the tap, if any.
func (c *Core) tapSent(l *transport.Listener, dst netip.AddrPort, data []byte) {
	if tb := c.tap.Load(); tb != nil {
		tb.t.Sent(l, dst, data)
	}
	if tr := c.trace.Load(); tr != nil {
		c.traceOut(tr, dst, data)
	}
}

// parsedOrNil is m when it parsed, for Tap.Received.
func parsedOrNil(m *parser.Message, err error) *parser.Message {
	if err != nil {
		return nil
	}
	return m
}

// Allowed reports whether a is inside the outbound allow-list
// (Config.AllowOutbound; everything when it is empty): for modules that
// send on their own sockets (HEP collectors) and must keep to it too.
func (c *Core) Allowed(a netip.Addr) bool { return c.allowed(a) }
