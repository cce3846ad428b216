package dialog

import (
	"encoding/binary"

	"switchboard/parser"
	"switchboard/routing"
)

// A module that relays a dialog's requests to the parties itself, instead
// of letting them follow our Record-Route, needs what the dialog knows of
// each party: topology hiding gives each party a Contact of the proxy's
// own, so their in-dialog requests come to the proxy addressed to it, and
// the proxy sends them on to the other party's real Contact along its
// real route set. The dialog keeps both (the INVITE's, the 2xx's, and
// the latest target refresh); with FlagPeers it also keeps those of each
// early dialog of a forked call, for requests inside an early dialog
// (PRACK, UPDATE) to the branch that sent it.

// FlagPeers is the dialog flag (SetFlag) that makes the dialog keep the
// Contact and route set of each early dialog (a 1xx with a To tag), for
// MatchDialogID. Set it before the INVITE is relayed.
const FlagPeers uint32 = 1 << 30

// Peer is a party of a dialog as another party's requests reach it: its
// Contact URI (the latest target refresh) and the route set towards it
// (Route values joined with ", "; empty: none).
type Peer struct {
	Target []byte
	Route  []byte
}

// MatchDialogID is MatchDialog for an in-dialog request that names its
// dialog by id some other way than the id in our Record-Route: a token
// of a module that verified it (topology hiding's Contact). The request
// must come from side from (Caller: the From tag is the dialog's caller
// tag; Callee: swapped) with the dialog's tags, or an early dialog's
// while it is early. It does what MatchDialog does (CSeq, a BYE ends the
// dialog, a re-INVITE or UPDATE refreshes the targets from its 2xx), puts
// the id in SlotDialog for every method, and returns the other party,
// copied into buf (2 KiB holds any), views valid as long as buf. False,
// changing nothing: no such dialog, the tags or side are not its
// (switchboard_dialog_mismatched_total), or the other party is not known
// (an INVITE or 2xx without Contact, an early dialog kept without
// FlagPeers). It allocates nothing when buf has room.
func (d *Dialog) MatchDialogID(c *routing.Ctx, id uint64, from Side, buf []byte) (Peer, bool) {
	if buf == nil {
		buf = []byte{}
	}
	return d.match(c, id, from, buf)
}

// peer copies into buf the party a request from side from with To tag
// toTag goes to: the caller's, or the callee's of the confirmed dialog,
// or of the early dialog with that tag.
func (g *dlg) peer(from Side, toTag []byte, buf []byte) (Peer, bool) {
	var target, route []byte
	switch {
	case from == Callee:
		target, route = g.get(g.target[toCaller]), g.get(g.route[toCaller])
	case g.state == stConfirmed:
		if !g.hasCallee {
			return Peer{}, false
		}
		target, route = g.get(g.target[toCallee]), g.get(g.route[toCallee])
	default:
		k := -1
		for i := 0; i < int(g.nearly); i++ {
			if string(g.get(g.early[i])) == string(toTag) {
				k = i
			}
		}
		var ok bool
		if k < 0 || g.peers&(1<<k) == 0 {
			return Peer{}, false
		}
		if target, route, ok = g.earlyPeer(k); !ok {
			return Peer{}, false
		}
	}
	if len(target) == 0 {
		return Peer{}, false
	}
	buf = append(append(buf[:0], target...), route...)
	return Peer{Target: buf[:len(target):len(target)], Route: buf[len(target):]}, true
}

// putEarlyPeer stores, right after early dialog k's tag (the last bytes
// put in the buffer), the Contact URI and the route set of its 1xx: two
// bytes of length and the bytes, each. Nothing when they do not fit.
func (g *dlg) putEarlyPeer(k int, id uint64, resp *parser.Message) {
	var na parser.NameAddr
	if !resp.Contact(&na) || len(na.URI) > maxPart {
		return
	}
	var mark [4 + idLen]byte
	stop := appendID(append(mark[:0], "did="...), id)
	var scratch [maxPart]byte
	rs := routeValues(scratch[:0], resp, parser.HdrRecordRoute, stop, true)
	n := 4 + len(na.URI) + len(rs)
	if len(g.buf)+n > maxStored {
		return
	}
	g.reserve(n)
	g.buf = binary.BigEndian.AppendUint16(g.buf, uint16(len(na.URI)))
	g.buf = append(g.buf, na.URI...)
	g.buf = binary.BigEndian.AppendUint16(g.buf, uint16(len(rs)))
	g.buf = append(g.buf, rs...)
	g.peers |= 1 << k
}

// earlyPeer reads what putEarlyPeer stored for early dialog k.
func (g *dlg) earlyPeer(k int) (target, route []byte, ok bool) {
	sp := g.early[k]
	b := g.buf[int(sp.off)+int(sp.n):]
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 4+n {
		return nil, nil, false
	}
	target, b = b[2:2+n], b[2+n:]
	m := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+m {
		return nil, nil, false
	}
	return target, b[2 : 2+m], true
}
