package topohiding

import (
	"crypto/subtle"
	"encoding/binary"
	"net/netip"

	"switchboard/modules/dialog"
	"switchboard/modules/internal/rack"
	"switchboard/parser"
	"switchboard/routing"
)

// The token in the proxy's Contact names the dialog and the party the
// Contact was given to, and proves both came from us for this call:
//
//	<sip:192.0.2.1:5060;thinfo=c41ddda19405287657a0c93a2be4d7e61>
//	                           | dialog id      | MAC
//	                           c: given to the caller, e: to the callee
//
// The MAC is 64 bits of HMAC-SHA256 of the party, the dialog id and the
// Call-ID, keyed with topohiding.secret. A token copied into another call
// (another Call-ID), or edited, does not verify; one of an ended call
// names no dialog; one used by the other party of its own call (whose
// tags are the other way round) matches nothing either.

const (
	idHex    = 16
	macHex   = 16
	tokenLen = 1 + idHex + macHex

	sideCaller = 'c' // the Contact given to the caller: its requests carry it
	sideCallee = 'e'
)

const hexDigits = "0123456789abcdef"

func appendHex(dst []byte, v uint64) []byte {
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hexDigits[(v>>uint(i))&15])
	}
	return dst
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func sideByte(s dialog.Side) byte {
	if s == dialog.Caller {
		return sideCaller
	}
	return sideCallee
}

// mac returns the token's MAC for the party side, dialog id and Call-ID.
func (th *TopoHiding) mac(side byte, id uint64, callID []byte) uint64 {
	s := th.macs.Get().(*signer)
	s.mac.Reset()
	s.in[0] = side
	binary.BigEndian.PutUint64(s.in[1:], id)
	s.mac.Write(s.in[:])
	s.mac.Write(callID)
	sum := s.mac.Sum(s.sum[:0])
	v := binary.BigEndian.Uint64(sum)
	th.macs.Put(s)
	return v
}

// appendToken appends the token of dialog id, Call-ID callID, for the
// Contact given to party side.
func (th *TopoHiding) appendToken(dst []byte, side dialog.Side, id uint64, callID []byte) []byte {
	b := sideByte(side)
	dst = append(dst, b)
	dst = appendHex(dst, id)
	return appendHex(dst, th.mac(b, id, callID))
}

// openToken checks a token against the request's Call-ID and returns the
// party it was given to and the dialog id.
func (th *TopoHiding) openToken(tok, callID []byte) (dialog.Side, uint64, bool) {
	if len(tok) != tokenLen || (tok[0] != sideCaller && tok[0] != sideCallee) {
		return 0, 0, false
	}
	id, ok1 := parseHex(tok[1 : 1+idHex])
	mac, ok2 := parseHex(tok[1+idHex:])
	if !ok1 || !ok2 || id == 0 {
		return 0, 0, false
	}
	var got, want [8]byte
	binary.BigEndian.PutUint64(got[:], mac)
	binary.BigEndian.PutUint64(want[:], th.mac(tok[0], id, callID))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return 0, 0, false
	}
	side := dialog.Callee
	if tok[0] == sideCaller {
		side = dialog.Caller
	}
	return side, id, true
}

// TopologyHiding hides the parties of the call an initial INVITE starts
// from each other (OpenSIPS topology_hiding(), Kamailio topoh/topos).
// Call it after dialog's CreateDialog and before Relay. The INVITE goes
// on with the proxy's Via alone, none of the caller side's Record-Route
// and no Record-Route of ours, and a Contact of the proxy's own in place
// of the caller's; the responses reach the caller with its own Vias and
// Record-Route and the proxy's Contact in place of the callee's. The
// dialog keeps both parties' real Contacts and route sets (and those of
// each early dialog of a forked call); the parties' in-dialog requests
// come to the proxy's Contact, for Match. False, changing nothing, for
// anything but an initial INVITE with a dialog. Allocation-free.
func (th *TopoHiding) TopologyHiding(c *routing.Ctx) bool {
	if th == nil {
		return false
	}
	m := c.Msg()
	if m.Method() != parser.MethodInvite || m.ToTag() != nil || c.Value(dialog.SlotDialog) == 0 {
		return false
	}
	if !th.dlg.SetFlag(c, dialog.FlagPeers) {
		return false
	}
	c.R.DropRecordRoute()
	c.R.SetRewriter(&th.fromCaller)
	th.hidden.Inc()
	return true
}

// Verdict is what Match found.
type Verdict uint8

const (
	// NotHidden: the Request-URI carries no token of ours; the route
	// goes on (LooseRoute).
	NotHidden Verdict = iota
	// Matched: the request is ready to be relayed (Relay) to the other
	// party.
	Matched
	// Forged: a token that does not verify for this Call-ID (made up,
	// edited, copied from another call), or one on a request outside a
	// dialog; counted in switchboard_topohiding_forged_total. The route
	// refuses: 403.
	Forged
	// NoDialog: a token of ours for this call, but no dialog of the
	// request's tags and party (the call ended, the other party's
	// token); counted in switchboard_topohiding_unmatched_total. The
	// route answers 481.
	NoDialog
	// Elsewhere: a token of ours, no dialog here, and the dialog module
	// shares its dialogs (dialog.sharing): the call may be another
	// node's. The route hands the request to Fetch with itself, and
	// runs again once the dialog is read; when Fetch cannot, it answers
	// 481 as for NoDialog.
	Elsewhere
)

var verdictNames = [...]string{"not hidden", "matched", "forged", "no dialog", "elsewhere"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// Match prepares an in-dialog request of a hidden call for Relay
// (OpenSIPS topology_hiding_match()): its Request-URI is the proxy's
// Contact with a token; the token must verify for the request's Call-ID,
// and the dialog it names must be the request's (its tags, from the party
// the Contact was given to: dialog.MatchDialogID, which also ends the
// dialog on a BYE and follows target refreshes). The request then gets
// the other party's Contact as Request-URI and its route set as Route
// (the Route it came with goes), and its relayed copy and responses are
// hidden as the INVITE's were. An ACK is forwarded the same way. Call it
// for every request, before LooseRoute: a token on a request outside a
// dialog is Forged, and NotHidden costs a look for one URI parameter.
// Allocation-free but for the rate-limited warning of a forged token.
func (th *TopoHiding) Match(c *routing.Ctx) Verdict {
	if th == nil {
		return NotHidden
	}
	m := c.Msg()
	tok, ok := m.RURI().Param(th.param)
	if !ok {
		return NotHidden
	}
	side, id, ok := th.openToken(tok, m.CallID())
	if !ok || m.ToTag() == nil {
		th.forged.Inc()
		th.h.Warn("topohiding: a token that does not verify", "src", c.SrcIP().String(), "call-id", string(m.CallID()))
		return Forged
	}
	var buf [2 * 1024]byte
	peer, ok := th.dlg.MatchDialogID(c, id, side, buf[:0])
	if !ok {
		if th.dlg.Shared() && !c.R.Suspended() && !c.IsMethod(parser.MethodAck, parser.MethodCancel) {
			return Elsewhere
		}
		th.unmatched.Inc()
		return NoDialog
	}
	c.SetRU(peer.Target)
	hop := peer.Target
	ed := c.R.Editor()
	if len(peer.Route) == 0 {
		ed.DropHeaders(parser.HdrRoute)
	} else {
		ed.ReplaceHeaders(parser.HdrRoute, c.R.Own(peer.Route))
		if u := routeURI(peer.Route); u != nil {
			hop = u
		}
	}
	if peer.HopSet {
		// Behind NAT: its Contact names an address we cannot reach; its
		// first hop (where its INVITE came from, where the answered
		// branch went) is the way in.
		c.R.SetDestination(peer.Proto, detached(peer.Hop))
	} else {
		c.R.SetNextHop(hop)
	}
	if peer.CSeqOffset != 0 && m.Method() != parser.MethodCancel {
		// The INVITE reached the callee re-sent with credentials
		// (uac_auth), one CSeq up: the caller's later requests (and the
		// ACKs of its re-INVITEs) follow its numbering. The caller gets
		// its own number back (the core restores it in the responses);
		// a CANCEL is the core's own, built from the transaction.
		ed.SetCSeq(m.CSeq().Num + peer.CSeqOffset)
		if m.Method() == parser.MethodPrack {
			rack.Shift(c.R, ed, m, peer.CSeqOffset) // its RAck names the INVITE by the callee's number
		}
	}
	if side == dialog.Caller {
		c.R.SetRewriter(&th.fromCaller)
	} else {
		c.R.SetRewriter(&th.fromCallee)
	}
	th.matched.Inc()
	return Matched
}

// Fetch is for a request Match found Elsewhere: it suspends the request,
// reads its dialog from Redis off the receive path (dialog.FetchDialogID)
// and runs then, the route's request function, on the resumed request;
// Match then finds the dialog here (Matched), or answers NoDialog when
// Redis had none for this call and these tags. A hidden call's requests
// thus reach the other party whichever node of an anycast group they
// land on. False: the read cannot be made now (Redis down, too many
// waiting); counted as unmatched, and the route answers 481.
func (th *TopoHiding) Fetch(c *routing.Ctx, then func(c *routing.Ctx)) bool {
	m := c.Msg()
	tok, _ := m.RURI().Param(th.param)
	side, id, ok := th.openToken(tok, m.CallID()) // verified by Match already
	if ok && th.dlg.FetchDialogID(c, id, side, then) {
		th.fetched.Inc()
		return true
	}
	th.unmatched.Inc()
	return false
}

// detached returns ap rebuilt from its bytes. Escape analysis does not
// tell a struct's fields apart: handing peer.Hop itself (a netip.Addr
// holds a pointer) to the transaction would move the buffer peer's views
// point into to the heap, an allocation per request.
func detached(ap netip.AddrPort) netip.AddrPort {
	a := ap.Addr()
	ip := netip.AddrFrom16(a.As16())
	if a.Is4() {
		ip = ip.Unmap()
	}
	return netip.AddrPortFrom(ip, ap.Port())
}

// routeURI returns the URI of the first value of a route set: values
// joined with commas, each a name-addr (RFC 3261 rec-route), its URI in
// angle brackets. Nil when the first value has none.
func routeURI(b []byte) []byte {
	quoted := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == ',':
			return nil
		case c == '<':
			for j := i + 1; j < len(b); j++ {
				if b[j] == '>' {
					return b[i+1 : j]
				}
			}
			return nil
		}
	}
	return nil
}
