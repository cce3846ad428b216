package dialog

import (
	"encoding/binary"
	"net/netip"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/transport"
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

// FlagCallerNAT and FlagCalleeNAT (SetFlag) say that a party is behind
// NAT: the Contact it sent names an address the other side cannot reach
// (a private one, or a port its NAT did not open). MatchDialogID then
// gives, for a party without a route set, its first hop (where its
// INVITE came from, where the answered branch went) in Peer.Hop, the
// address a route sends its requests to instead of the Contact's. A route
// sets the caller's flag when it found the INVITE's source behind NAT
// (nathelper's NAT test), the callee's when the branch went to a contact
// registered behind NAT.
const (
	FlagCallerNAT uint32 = 1 << 29
	FlagCalleeNAT uint32 = 1 << 28
)

// FlagSessionTimer marks a dialog whose end is set by a session timer
// (SetSessionTimer, the sst module): its stored timeout is the session's
// expiry, and a refresh after a restart moves it.
const FlagSessionTimer uint32 = 1 << 27

// Peer is a party of a dialog as another party's requests reach it: its
// Contact URI (the latest target refresh) and the route set towards it
// (Route values joined with ", "; empty: none).
type Peer struct {
	Target []byte
	Route  []byte
	// HopSet: the party is behind NAT (FlagCallerNAT, FlagCalleeNAT) and
	// has no route set; reach it at Proto and Hop, not at Target's
	// address.
	HopSet bool
	Proto  transport.Proto
	Hop    netip.AddrPort
	// CSeqOffset is what the callee's numbering of the caller's requests
	// is above the caller's own (the INVITE was re-sent with credentials,
	// uac_auth): added to the CSeq of a request from the caller.
	CSeqOffset uint32
}

// MatchDialogID is MatchDialog for an in-dialog request that names its
// dialog by id some other way than the id in our Record-Route: a token
// of a module that verified it (topology hiding's Contact). The request
// must come from side from (Caller: the From tag is the dialog's caller
// tag; Callee: swapped) with the dialog's tags, or an early dialog's
// while it is early. It does what MatchDialog does (CSeq, a BYE ends the
// confirmed dialog, a re-INVITE or UPDATE refreshes the targets from its
// 2xx), puts
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
	return d.match(c, id, from, buf, nil, nil)
}

// FetchDialogID is for a request MatchDialogID did not match because
// this node does not hold its dialog: with dialog.sharing the call may
// be another node's (the callee's flow reached this node, the caller's
// the one that set the call up). It suspends the request, reads dialog
// id from Redis off the receive path, keeps a copy here, and runs then
// on the resumed request (the route again), where MatchDialogID matches
// the copy as it matches this node's own dialogs; a dialog Redis does
// not hold, has ended, or whose Call-ID or tags are not the request's
// matches nothing then, and the route answers as it does for no dialog.
// False, nothing done: no sharing, Redis down, too many reads waiting
// (switchboard_dialog_redis_reads_total{result="dropped"}), an ACK or
// CANCEL, a request resumed already (read once).
func (d *Dialog) FetchDialogID(c *routing.Ctx, id uint64, from Side, then func(c *routing.Ctx)) bool {
	if d.share == nil || c.R.Suspended() {
		return false
	}
	return d.share.fetchResume(c, id, from, then)
}

// Shared reports whether the module shares its dialogs with other nodes
// (dialog.sharing): a request naming a dialog not held here may be read
// with FetchDialogID.
func (d *Dialog) Shared() bool { return d.share != nil }

// peer copies into buf the party a request from side from with To tag
// toTag goes to: the caller's, or the callee's of the confirmed dialog,
// or of the early dialog with that tag.
func (g *dlg) peer(from Side, toTag []byte, buf []byte) (Peer, bool) {
	var target, route []byte
	to, nat := -1, false
	switch {
	case from == Callee:
		target, route = g.get(g.target[toCaller]), g.get(g.route[toCaller])
		to, nat = toCaller, g.flags&FlagCallerNAT != 0
	case g.state == stConfirmed:
		if !g.hasCallee {
			return Peer{}, false
		}
		target, route = g.get(g.target[toCallee]), g.get(g.route[toCallee])
		to, nat = toCallee, g.flags&FlagCalleeNAT != 0
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
	p := Peer{Target: buf[:len(target):len(target)], Route: buf[len(target):]}
	if from == Caller {
		p.CSeqOffset = g.cseqOffset
	}
	if nat && len(route) == 0 {
		if hop := g.hop[to].AddrPort(); hop.IsValid() {
			p.HopSet, p.Proto, p.Hop = true, g.proto[to], hop
		}
	}
	return p, true
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
