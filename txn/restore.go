package txn

import (
	"bytes"

	"switchboard/parser"
)

// A route may change From, To and CSeq in the copies it relays: a carrier
// wants to see its trunk's identity (uac_replace_from), a request re-sent
// with credentials needs the next CSeq number (RFC 3261 §22.2, uac_auth).
// The client that sent the request must not see those changes: every
// response it gets carries the From, To and CSeq number of its own request
// (§8.2.6.2; it matches responses and dialogs by them). So the transaction
// keeps what the client sent when the route's edits change it, and the
// responses going upstream get it back: relayed from downstream (the 1xx,
// the 2xx and its retransmissions, the best final), and the core's own
// (100, 408, 487, 500...). A response forwarded without a transaction (a
// 2xx retransmitted after the transaction ended) is not restored.

// keepOriginal records, before the route's edits replace the transaction's
// request, the From and To values the client sent, the first time an edit
// changes them. old is the request before the edits, m after.
func (t *txn) keepOriginal(old, m *parser.Message) {
	if t.upSet {
		return
	}
	from, to := old.Get(parser.HdrFrom), old.Get(parser.HdrTo)
	if bytes.Equal(from, m.Get(parser.HdrFrom)) && bytes.Equal(to, m.Get(parser.HdrTo)) {
		return
	}
	t.up = append(append(t.up[:0], from...), to...)
	t.upFrom = len(from)
	t.upTag = len(old.ToTag()) > 0
	t.upSet = true
}

// restoring reports whether responses upstream need restoreUp.
func (t *txn) restoring() bool { return t.upSet || t.msg.CSeq().Num != t.cseq }

// restoreUp adds to ed, reset on response m as it goes upstream, the edits
// that give it back the From, To and CSeq number of the request as its
// client sent it. A To the client sent without a tag gets the tag the
// response carries.
func (t *txn) restoreUp(x *ctx, ed *parser.Editor, m *parser.Message) {
	if m.CSeq().Num != t.cseq {
		ed.SetCSeq(t.cseq)
	}
	if !t.upSet {
		return
	}
	from, to := t.up[:t.upFrom], t.up[t.upFrom:]
	if !bytes.Equal(m.Get(parser.HdrFrom), from) {
		ed.SetHeaderValue(parser.HdrFrom, from)
	}
	v := to
	if tag := m.ToTag(); !t.upTag && len(tag) > 0 {
		x.upTo = append(append(append(x.upTo[:0], to...), ";tag="...), tag...)
		v = x.upTo
	}
	if !bytes.Equal(m.Get(parser.HdrTo), v) {
		ed.SetHeaderValue(parser.HdrTo, v)
	}
}

// appendLocal appends a response of the core's own to the transaction's
// request (AppendResponseHeaders) with the From, To and CSeq its client
// sent.
func (c *Core) appendLocal(x *ctx, dst []byte, t *txn, code int, reason, tag, extra []byte) []byte {
	if !t.restoring() {
		return parser.AppendResponseHeaders(dst, &t.msg, code, reason, tag, extra)
	}
	x.lout = parser.AppendResponseHeaders(x.lout[:0], &t.msg, code, reason, tag, extra)
	if x.lmsg.Parse(x.lout) != nil {
		return append(dst, x.lout...)
	}
	x.led.Reset(&x.lmsg)
	t.restoreUp(x, &x.led, &x.lmsg)
	return x.led.AppendTo(dst)
}
