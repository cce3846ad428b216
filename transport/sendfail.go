package transport

import (
	"errors"
	"net/netip"
)

// ErrConnClosed is the SendFailure error for a message that was still
// queued when its connection closed without an error of its own (the peer
// hung up, the idle sweep, CloseConn).
var ErrConnClosed = errors.New("transport: connection closed before the message was written")

// Tag identifies a message given to SendTagged, for the sender's own use:
// the transport only stores it and hands it back in a SendFailure. The
// zero Tag means untagged: no failure is reported for the message.
type Tag [2]uint64

// SendFailure describes a message that Send accepted (returned nil) and
// then dropped: the connection it was queued on could not be opened (the
// TCP connect, the TLS handshake, or the dial timeout failed) or closed
// before the message was written.
type SendFailure struct {
	Listener *Listener
	Dst      netip.AddrPort // the destination given to SendTagged
	Proto    Proto
	Tag      Tag
	// Conn is the flow the message was sent over, when it went over one
	// held by another node of an anycast group (package anycast reports
	// those); 0 otherwise.
	Conn ConnID
	Err  error // the connect or handshake error, or ErrConnClosed
}

// SendErrorHandler receives the failures of tagged messages. SendFailed is
// called once per dropped message, on a goroutine of the transport that is
// neither a receive event loop nor holding a transport lock, so it may
// take its own locks and call Send. It is never called for a message
// whose Send returned an error, nor while the transport is closing.
type SendErrorHandler interface {
	SendFailed(f SendFailure)
}

// errHandler boxes the handler for the atomic pointer.
type errHandler struct{ h SendErrorHandler }

// SetSendErrorHandler makes h the receiver of send failures (nil: none).
// It replaces the Handler given to New when that implements
// SendErrorHandler: the layer that tags messages may be created after the
// transport. Safe to call at any time.
func (t *Transport) SetSendErrorHandler(h SendErrorHandler) {
	if h == nil {
		t.onSendErr.Store(nil)
		return
	}
	t.onSendErr.Store(&errHandler{h})
}

// SendTagged is Send with a tag. When the message is queued on a stream
// connection that is still being opened and the connection then fails,
// the SendErrorHandler gets a SendFailure with tag, instead of the message
// disappearing silently. UDP sends fail (or not) before SendTagged
// returns, so the tag is not kept for them.
func (t *Transport) SendTagged(l *Listener, dst netip.AddrPort, data []byte, tag Tag) error {
	if t.closing.Load() {
		return ErrClosed
	}
	if l == nil {
		return ErrNoListener
	}
	if len(data) > t.cfg.MaxMessageSize {
		return ErrTooLarge
	}
	if l.Proto == UDP {
		return t.sendUDP(l, dst, data)
	}
	return t.sendStream(l, dst, data, tag)
}

// dropped is a tagged message that a closing connection did not write.
type dropped struct {
	dst netip.AddrPort
	tag Tag
}

// taggedOf lists the tagged messages among ws (nil when none: no
// allocation for untagged traffic).
func taggedOf(ws []*wbuf) []dropped {
	var lost []dropped
	for _, w := range ws {
		if w.tag != (Tag{}) {
			lost = append(lost, dropped{w.dst, w.tag})
		}
	}
	return lost
}

// reportDropped tells the SendErrorHandler about msgs, which were queued on
// c. It runs without any lock of the transport held.
func (s *streams) reportDropped(c *streamConn, msgs []dropped, err error) {
	t := s.t
	eh := t.onSendErr.Load()
	if eh == nil || t.closing.Load() {
		return
	}
	if err == nil {
		err = ErrConnClosed
	}
	for _, m := range msgs {
		eh.h.SendFailed(SendFailure{Listener: c.l, Dst: m.dst, Proto: c.proto, Tag: m.tag, Err: err})
	}
}
