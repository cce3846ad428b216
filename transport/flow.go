package transport

import "net/netip"

// ConnInfo returns the listener and the remote address of stream
// connection id, ok false when it is closed. An RFC 5626 flow is a
// connection: the registrar and the proxy core ask this before they send
// over one, so that a closed flow is seen as failed instead of being
// dialed again (a phone's source port accepts no connections).
func (t *Transport) ConnInfo(id ConnID) (l *Listener, remote netip.AddrPort, ok bool) {
	if t.streams == nil || id == 0 {
		return nil, netip.AddrPort{}, false
	}
	c := t.streams.table.get(id)
	if c == nil {
		return nil, netip.AddrPort{}, false
	}
	return c.l, c.remote, true
}
