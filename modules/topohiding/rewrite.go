package topohiding

import (
	"strconv"

	"switchboard/modules/dialog"
	"switchboard/parser"
	"switchboard/transport"
	"switchboard/txn"
)

// rewriter is the txn.Rewriter of the requests of a hidden call that come
// from one party (from): what it relays goes to the other party, whose
// Contact of ours names it; what it sends back goes to from.
type rewriter struct {
	th   *TopoHiding
	from dialog.Side
}

func other(s dialog.Side) dialog.Side {
	if s == dialog.Caller {
		return dialog.Callee
	}
	return dialog.Caller
}

// RewriteRequest implements txn.Rewriter: the relayed copy keeps only the
// Via the core adds, loses every Record-Route (the core adds none of
// ours: TopologyHiding dropped it), and its Contact, if it has one, is
// the proxy's for the other party.
func (w *rewriter) RewriteRequest(r *txn.Request, _ *txn.Branch, out *transport.Listener, ed *parser.Editor, buf []byte) []byte {
	ed.DropHeaders(parser.HdrVia)
	ed.DropHeaders(parser.HdrRecordRoute)
	if r.Msg.Has(parser.HdrContact) {
		n := len(buf)
		buf = w.th.appendContact(buf, out, other(w.from), r)
		ed.ReplaceHeaders(parser.HdrContact, buf[n:])
	}
	return buf
}

// RewriteResponse implements txn.Rewriter: the response gets the Vias and
// the Record-Route of the request as its sender sent them (the other
// party's are dropped), and a Contact of a 1xx or 2xx is the proxy's for
// the sender. The Contacts of a 3xx, which name where to retry, and of
// other finals go as they are.
func (w *rewriter) RewriteResponse(r *txn.Request, _ *txn.Branch, ed *parser.Editor, resp *parser.Message, buf []byte) []byte {
	ed.DropHeaders(parser.HdrVia)
	n := len(buf)
	buf = appendLines(buf, r.Msg, parser.HdrVia)
	ed.InsertVia(buf[n:])
	ed.DropHeaders(parser.HdrRecordRoute)
	if r.Msg.Has(parser.HdrRecordRoute) {
		n = len(buf)
		buf = appendLines(buf, r.Msg, parser.HdrRecordRoute)
		ed.InsertRecordRoute(buf[n:])
	}
	if code := resp.StatusCode(); code < 300 && resp.Has(parser.HdrContact) {
		n = len(buf)
		buf = w.th.appendContact(buf, r.Listener, w.from, r)
		ed.ReplaceHeaders(parser.HdrContact, buf[n:])
	}
	return buf
}

// appendContact appends the proxy's Contact on listener l for party side
// of r's dialog: "<sip:[user@]host:port[;transport=x];param=token>".
func (th *TopoHiding) appendContact(dst []byte, l *transport.Listener, side dialog.Side, r *txn.Request) []byte {
	dst = append(dst, "<sip:"...)
	if th.user != "" {
		dst = append(dst, th.user...)
		dst = append(dst, '@')
	}
	dst = append(dst, l.AdvertisedHost...)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, uint64(l.AdvertisedPort), 10)
	switch l.Proto {
	case transport.TCP:
		dst = append(dst, ";transport=tcp"...)
	case transport.TLS:
		dst = append(dst, ";transport=tls"...)
	case transport.UDP:
	default:
		dst = append(dst, ";transport=ws"...)
	}
	dst = append(dst, ';')
	dst = append(dst, th.param...)
	dst = append(dst, '=')
	dst = th.appendToken(dst, side, uint64(r.Value(dialog.SlotDialog)), r.Msg.CallID())
	return append(dst, '>')
}

// appendLines appends the values of every line of header h of m as they
// are (a line may hold several), joined with ", ": what the core's own
// responses copy of the request's Vias.
func appendLines(dst []byte, m *parser.Message, h parser.HeaderName) []byte {
	n := len(dst)
	for i := 0; i < m.NumHeaders(); i++ {
		x := m.HeaderAt(i)
		if x.Name != h || len(x.Value) == 0 {
			continue
		}
		if len(dst) > n {
			dst = append(dst, ", "...)
		}
		dst = append(dst, x.Value...)
	}
	return dst
}
