package dialog

import (
	"encoding/binary"
	"net/netip"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// States of a dialog. A dialog is removed from the table when it ends,
// so there is no ended state in the table; events carry the end.
const (
	stUnconfirmed uint8 = iota // the INVITE is on its way: nothing with a To tag yet
	stEarly                    // a 1xx with a To tag went upstream
	stConfirmed                // a 2xx went upstream
)

var stateNames = [...]string{"unconfirmed", "early", "confirmed"}

// Reason is why a dialog ended.
type Reason uint8

const (
	_ Reason = iota
	// ReasonBye: a BYE from one side.
	ReasonBye
	// ReasonTimeout: the dialog outlived its timeout; the proxy sent a
	// BYE to each side (one not answered yet: a CANCEL of its INVITE).
	ReasonTimeout
	// ReasonCanceled: the caller canceled the INVITE.
	ReasonCanceled
	// ReasonFailed: the INVITE got a final response of 300 or above.
	ReasonFailed
	// ReasonEnded: ended from the management API (dialog.end), with a
	// BYE to each side.
	ReasonEnded
	// ReasonDrain: ended with a BYE to each side when the server drained
	// (SIGTERM with dialog.drain_timeout).
	ReasonDrain
	// ReasonPing: a side did not answer the proxy's in-dialog OPTIONS
	// (or answered 481); ended with a BYE to each side. By is that side.
	ReasonPing
	numReasons
)

var reasonNames = [numReasons]string{"", "bye", "timeout", "canceled", "failed", "ended", "drain", "ping"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Side is a party to a dialog.
type Side uint8

const (
	// Proxy: the proxy itself (a timeout, the management API).
	Proxy Side = iota
	// Caller: the party that sent the INVITE (From).
	Caller
	// Callee: the party that answered it (To).
	Callee
)

var sideNames = [...]string{"proxy", "caller", "callee"}

func (s Side) String() string {
	if int(s) < len(sideNames) {
		return sideNames[s]
	}
	return "unknown"
}

// Limits of what one dialog stores: the parts of the INVITE and of the
// response that the BYEs and the listing need, in one buffer.
const (
	maxEarly      = 4    // To tags of forked early dialogs kept
	maxDlgProfile = 4    // profiles one dialog can be in
	maxStored     = 4096 // bytes of stored headers
	maxPart       = 1024 // bytes of one stored part (a header value, a route set)
)

// span is a part of a dialog's buffer.
type span struct{ off, n uint16 }

// profRef is the dialog's place in a profile: the profile's index and
// the value (in the dialog's buffer).
type profRef struct {
	idx uint8
	val span
}

// dlg is one dialog: the table entry's value. Its key is the Call-ID.
// Fields are ordered to leave no padding (256 + 16 bytes: the entry
// stays in the 384-byte size class).
type dlg struct {
	id     uint64
	state  uint8
	nearly uint8
	nprof  uint8
	peers  uint8 // bit k: early dialog k's Contact and route set follow its tag in buf (FlagPeers)
	// hasCallee: the 2xx's Contact and route set were stored, so a BYE
	// can be sent to the callee.
	hasCallee bool
	pflags    uint8              // fDirty, fStored, fPing..., fShared...
	proto     [2]transport.Proto // first hop towards the caller, the callee
	code      uint16             // status of the INVITE's final response (0: none yet)
	// sent: bit i, party i's target as the other party was given it
	// (its Contact as relayed, after a route's edits) differs from the
	// Contact it sent, and follows its target in buf (putTarget); bit
	// sentLost<<i, it differs and did not fit.
	sent   uint8
	flags  uint32      // SetFlag's bits
	cseq   [2]uint32   // highest CSeq seen from the caller, the callee
	start  int64       // ms: CreateDialog
	answer int64       // ms: confirmed
	hop    [2]addrPort // first hop towards the caller, the callee

	fromTag, toTag span
	from, to       span // the From and To values of the INVITE (From with its tag)
	phrase         span // the final response's reason phrase (with subscribers only)
	vals           span // SetValue's pairs, encoded (see values.go)
	target         [2]span
	route          [2]span // Route values towards the caller, the callee ("" none)
	early          [maxEarly]span
	profs          [maxDlgProfile]profRef
	// calleeFrom and calleeTo are the From and To as the callee has them
	// (its 2xx echoes them), when a route rewrote them in the relayed
	// INVITE (uac_replace_from/to); empty: the INVITE's. cseqOffset is
	// how far the callee's numbering of the caller's requests is above
	// the caller's own (the INVITE re-sent with credentials: uac_auth).
	// The proxy's requests to the callee use the callee's view.
	calleeFrom, calleeTo span
	cseqOffset           uint32
	// timeout is, until the answer, the route's (SetTimeout) in ms, 0:
	// the module's default; once confirmed, when the dialog's own timeout
	// ends it, in ms after the answer. sessEnd is, until the answer, the
	// session timer's interval (SetSessionTimer: RFC 4028's
	// Session-Expires and the sst module's grace) in ms; once confirmed
	// with FlagSessionTimer, when the session expires, in ms after the
	// answer. The dialog ends at the earlier of the two, so that a refresh
	// never carries a call past its own timeout. (One field each for both
	// meanings keeps the value within the entry's 384-byte size class.)
	timeout, sessEnd uint32

	buf   []byte
	timer shards.Timer
	// inv is the INVITE's transaction, which the proxy cancels when the
	// dialog times out, or is ended, before an answer.
	inv txn.Ref
}

// addrPort is a netip.AddrPort in 18 bytes, where netip's takes 32 (its
// zone handle), for the two first hops every dialog keeps. An IPv6 zone
// is not kept: first hops are not link-local addresses. An IPv4 address
// is kept in its IPv4-mapped form and read back unmapped, as the
// transport treats a mapped address (it sends to it as to the IPv4 one).
type addrPort struct {
	ip   [16]byte
	port uint16
}

func packAddr(ap netip.AddrPort) addrPort {
	return addrPort{ip: ap.Addr().As16(), port: ap.Port()}
}

func (a addrPort) AddrPort() netip.AddrPort {
	ip := netip.AddrFrom16(a.ip).Unmap()
	if a.port == 0 && ip.IsUnspecified() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, a.port)
}

// Flags of a dialog's persistence and pings (dlg.pflags).
const (
	// fDirty: a change is on the store writer's list (dialog.persist).
	fDirty uint8 = 1 << iota
	// fStored: the writer took a row of it, so its end deletes the row.
	fStored
	// fPingCaller, fPingCallee: an in-dialog OPTIONS of the proxy to
	// that side is unanswered (dialog.ping_interval).
	fPingCaller
	fPingCallee
	// fShareDirty: a change is on the Redis writer's list
	// (dialog.sharing: redis).
	fShareDirty
	// fShared: other nodes may hold the dialog (it was written to Redis,
	// or read from it): its end goes through Redis, so that one node
	// alone writes its record and sends its BYEs.
	fShared
	// fEnding: ended here, waiting for Redis to say whether this node is
	// the one that ends it; no request matches it meanwhile.
	fEnding
	// fRemote: a copy of another node's dialog, read from Redis when one
	// of its requests came here.
	fRemote
)

// Indexes of the per-side arrays.
const (
	toCaller = 0
	toCallee = 1
)

func resetDlg(v *dlg) {
	buf := v.buf[:0]
	if cap(buf) > maxStored {
		buf = nil
	}
	*v = dlg{buf: buf}
}

func (g *dlg) get(s span) []byte { return g.buf[s.off : s.off+s.n] }

// reserve makes room for n more bytes in the buffer in one step (rounded
// up to 64 bytes), rather than letting appends double it: what a dialog
// holds stays close to what it stores.
func (g *dlg) reserve(n int) {
	if need := len(g.buf) + n; need > cap(g.buf) && need <= maxStored {
		b := make([]byte, len(g.buf), (need+63)&^63)
		copy(b, g.buf)
		g.buf = b
	}
}

// put appends b to the buffer; false when it would pass maxStored or b
// is longer than maxPart.
func (g *dlg) put(b []byte, s *span) bool {
	if len(b) > maxPart || len(g.buf)+len(b) > maxStored {
		return false
	}
	s.off, s.n = uint16(len(g.buf)), uint16(len(b))
	g.buf = append(g.buf, b...)
	return true
}

// putString is put for a string.
func (g *dlg) putString(str string, s *span) bool {
	if len(str) > maxPart || len(g.buf)+len(str) > maxStored {
		return false
	}
	s.off, s.n = uint16(len(g.buf)), uint16(len(str))
	g.buf = append(g.buf, str...)
	return true
}

// putTarget stores uri as party i's target and, when the other party
// was given another (the Contact as relayed: fix_nated_contact wrote the
// party's source address in it), that one right after it: two bytes of
// length and the bytes. False when the target does not fit; a relayed
// one that does not fit is left out (the party's first hop still
// validates: atHop).
func (g *dlg) putTarget(i int, uri, sent []byte) bool {
	if !g.put(uri, &g.target[i]) {
		return false
	}
	g.sent &^= (1 | sentLost) << i
	if len(sent) == 0 || string(sent) == string(uri) {
		return true
	}
	if len(sent) > maxPart || len(g.buf)+2+len(sent) > maxStored {
		// The Contact as sent is not the party's as the other party
		// has it: only its first hop validates a request.
		g.sent |= sentLost << i
		return true
	}
	g.reserve(2 + len(sent))
	g.buf = binary.BigEndian.AppendUint16(g.buf, uint16(len(sent)))
	g.buf = append(g.buf, sent...)
	g.sent |= 1 << i
	return true
}

// setSent records party i's Contact as the other party was given it
// (sent), when it differs from the one kept: its target is stored again,
// the relayed one after it. Nothing for nil (not known).
func (g *dlg) setSent(i int, sent []byte) {
	if len(sent) == 0 || g.target[i].n == 0 || string(sent) == string(g.sentTarget(i)) && g.sent&(sentLost<<i) == 0 {
		return
	}
	if !g.putTarget(i, g.get(g.target[i]), sent) {
		g.sent |= sentLost << i
	}
}

// sentLost (shifted by the party's index) in dlg.sent: the party's
// Contact as relayed differs from the one it sent and was not kept.
const sentLost = 4

// sentTarget is party i's target as the other party has it: the Contact
// as relayed when the proxy changed it, else the Contact.
func (g *dlg) sentTarget(i int) []byte {
	t := g.get(g.target[i])
	if g.sent&(1<<i) == 0 {
		return t
	}
	b := g.buf[int(g.target[i].off)+int(g.target[i].n):]
	n := int(binary.BigEndian.Uint16(b))
	return b[2 : 2+n]
}

// relayedTarget is sentTarget when the proxy changed the Contact, nil
// otherwise: what a stored row keeps of it.
func (g *dlg) relayedTarget(i int) []byte {
	if g.sent&(1<<i) == 0 {
		return nil
	}
	return g.sentTarget(i)
}

// hasEarly reports whether tag is one of the early dialogs' To tags.
func (g *dlg) hasEarly(tag []byte) bool {
	for i := 0; i < int(g.nearly); i++ {
		if string(g.get(g.early[i])) == string(tag) {
			return true
		}
	}
	return false
}

// side returns which party sent a request with these tags: the caller
// (From tag is the dialog's From tag, To tag its To tag, or one of the
// early ones), the callee (swapped), or false.
func (g *dlg) side(fromTag, toTag []byte) (Side, bool) {
	ft := g.get(g.fromTag)
	if g.state == stConfirmed {
		tt := g.get(g.toTag)
		switch {
		case string(fromTag) == string(ft) && string(toTag) == string(tt):
			return Caller, true
		case string(fromTag) == string(tt) && string(toTag) == string(ft):
			return Callee, true
		}
		return 0, false
	}
	switch {
	case string(fromTag) == string(ft) && g.hasEarly(toTag):
		return Caller, true
	case string(toTag) == string(ft) && g.hasEarly(fromTag):
		return Callee, true
	}
	return 0, false
}

// routeValues appends the values of every header h of m to dst, joined
// with ", ", in message order, or in reverse order with reverse; only the
// values before the first one containing stop when stop is not nil.
func routeValues(dst []byte, m *parser.Message, h parser.HeaderName, stop []byte, reverse bool) []byte {
	var spans [32][]byte
	n := 0
	it := m.NameAddrs(h)
	for it.Next() && n < len(spans) {
		v := it.NameAddr.Raw
		if stop != nil && contains(v, stop) {
			break
		}
		spans[n] = v
		n++
	}
	for i := 0; i < n; i++ {
		j := i
		if reverse {
			j = n - 1 - i
		}
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, spans[j]...)
	}
	return dst
}

func contains(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return true
		}
	}
	return false
}
