package uac

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"

	"switchboard/modules/internal/rack"
	"switchboard/parser"
	"switchboard/routing"
)

// ReplaceFrom gives the relayed request the From a carrier wants: its
// display name and URI (OpenSIPS uac_replace_from(display, uri), restore
// mode "auto"). A nil display keeps the one the caller sent, an empty one
// removes it; an empty uri keeps the URI. The tag and other parameters
// stay. Only for a request outside a dialog; call it once per request
// (edits of one header do not add up), before Relay.
//
// The caller never sees the change: the transaction core gives every
// response to it the From it sent. For the dialog's later requests the
// original and the new URI travel in our Record-Route, encrypted (the
// carrier must not learn the caller's identity from it) and signed, and
// Restore uses them: the caller's requests get the new From, the
// carrier's get the original To. A dialog-forming request is
// record-routed for that. False when the request is inside a dialog, or
// display or uri would not make a valid header. Allocation-free.
func (u *UAC) ReplaceFrom(c *routing.Ctx, display, uri []byte) bool {
	return u.replace(c, parser.HdrFrom, paramFrom, display, uri)
}

// ReplaceTo is ReplaceFrom for the To header (OpenSIPS uac_replace_to):
// the caller's later requests get the new To, the carrier's the original
// From.
func (u *UAC) ReplaceTo(c *routing.Ctx, display, uri []byte) bool {
	return u.replace(c, parser.HdrTo, paramTo, display, uri)
}

func (u *UAC) replace(c *routing.Ctx, h parser.HeaderName, param string, display, uri []byte) bool {
	if u == nil {
		return false // the module is not loaded
	}
	m := c.Msg()
	if m.ToTag() != nil || !validDisplay(display) || !validURI(uri) {
		return false
	}
	na := m.From()
	if h == parser.HdrTo {
		na = m.To()
	}
	if len(na.URI) == 0 {
		return false
	}
	if display == nil {
		display = na.DisplayName
	}
	newURI := uri
	if len(newURI) == 0 {
		newURI = na.URI
	}
	sc := u.scratches.Get().(*scratch)
	defer u.scratches.Put(sc)
	sc.val = appendNameAddr(sc.val[:0], display, newURI, na.Params)
	r := c.R
	// Nothing is changed unless everything is: the dialog's parameter
	// first (it may not fit, and leaves nothing behind then), with room
	// for the header's edit checked before.
	if r.Editor().Room() < 1 {
		return false
	}
	if !bytes.Equal(newURI, na.URI) && formsDialog(m.Method()) {
		if !u.seal(sc, m, param, na.URI, newURI) || !r.SetRecordRouteParam([]byte(param), sc.tok) {
			return false
		}
		c.RecordRoute()
	}
	r.Editor().SetHeaderValue(h, r.Own(sc.val))
	u.replaced.Inc()
	return true
}

// Restore applies to a request inside a dialog, routed by our signed
// Route, what UACAuth, ReplaceFrom and ReplaceTo did to the dialog's first
// request; call it once LooseRoute returned true. From the caller (the
// direction of the first request): the CSeq offset of UACAuth (and the
// RAck of a PRACK), the From and the To the carrier knows. From the
// carrier: the caller's own From and To back (the CSeq numbers of this
// direction were never changed). The responses to the request go back to
// its sender as it sent it (the transaction core restores them). OpenSIPS
// restores these in the Record-Route callback of loose_route; Kamailio
// with its dialog or htable state. True when something was changed;
// false as well when a parameter did not decrypt (counted in
// switchboard_uac_bad_tokens_total: a secret that differs between nodes).
// Allocation-free; false on a nil *UAC.
func (u *UAC) Restore(c *routing.Ctx) bool {
	if u == nil {
		return false // the module is not loaded
	}
	r := c.R
	if r.RouteKind() != routing.RouteDialog {
		return false
	}
	down := r.Downstream()
	m := r.Msg
	changed := false
	if v := r.DialogRouteParam(paramCSeq); v != nil && down {
		if n, ok := parseUint(v, 1000); ok && n > 0 {
			ed := r.Editor()
			ed.SetCSeq(m.CSeq().Num + uint32(n))
			if m.Method() == parser.MethodPrack {
				rack.Shift(r, ed, m, uint32(n))
			}
			changed = true
		}
	}
	sc := u.scratches.Get().(*scratch)
	defer u.scratches.Put(sc)
	// uacf: the caller's requests get the new From, the carrier's the
	// original To; uact: the caller's the new To, the carrier's the
	// original From.
	for _, p := range [2]struct {
		param    string
		down, up parser.HeaderName
	}{{paramFrom, parser.HdrFrom, parser.HdrTo}, {paramTo, parser.HdrTo, parser.HdrFrom}} {
		tok := r.DialogRouteParam(p.param)
		if tok == nil {
			continue
		}
		orig, repl, ok := u.open(sc, m, p.param, tok, down)
		if !ok {
			u.badTokens.Inc()
			u.host.Warn("uac: a Record-Route parameter did not decrypt (uac.secret differs between nodes?)", "param", p.param, "call-id", string(m.CallID()))
			continue
		}
		h, want := p.up, orig
		if down {
			h, want = p.down, repl
		}
		na := m.From()
		if h == parser.HdrTo {
			na = m.To()
		}
		if bytes.Equal(na.URI, want) {
			continue
		}
		sc.val = appendNameAddr(sc.val[:0], na.DisplayName, want, na.Params)
		r.Editor().SetHeaderValue(h, r.Own(sc.val))
		changed = true
	}
	if changed {
		u.restored.Inc()
	}
	return changed
}

// parseUint parses decimal digits up to max.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n <= max
}

// appendNameAddr writes a From or To value: the display name (quoted
// unless it is quoted already), the URI in brackets, the parameters.
func appendNameAddr(dst, display, uri, params []byte) []byte {
	if len(display) > 0 {
		if display[0] == '"' {
			dst = append(dst, display...)
		} else {
			dst = append(dst, '"')
			dst = append(dst, display...)
			dst = append(dst, '"')
		}
		dst = append(dst, ' ')
	}
	dst = append(dst, '<')
	dst = append(dst, uri...)
	dst = append(dst, '>')
	if len(params) > 0 {
		dst = append(dst, ';')
		dst = append(dst, params...)
	}
	return dst
}

// validDisplay: printable text without quotes or backslashes (or a whole
// quoted string of such), at most 128 bytes; nil and empty are valid.
func validDisplay(d []byte) bool {
	if len(d) >= 2 && d[0] == '"' && d[len(d)-1] == '"' {
		d = d[1 : len(d)-1]
	}
	if len(d) > 128 {
		return false
	}
	for _, c := range d {
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validURI: empty, or a sip:, sips: or tel: URI of at most 255 bytes
// without brackets, quotes, spaces or commas (it goes inside "<" ">").
func validURI(uri []byte) bool {
	if len(uri) == 0 {
		return true
	}
	if len(uri) > 255 {
		return false
	}
	for _, c := range uri {
		if c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' {
			return false
		}
	}
	var u parser.URI
	return u.Parse(uri) == nil && u.Scheme != parser.SchemeOther
}

// A token is base64url(nonce | AES-GCM(len(orig) | orig | new)), the
// additional data the dialog (Call-ID, the caller's From tag) and which
// header it is for: copied into another dialog or swapped with the other
// header, it does not open. The Record-Route signature covers it too.

const tokenNonce = 12

// seal writes the token for orig and repl into sc.tok.
func (u *UAC) seal(sc *scratch, m *parser.Message, param string, orig, repl []byte) bool {
	sc.plain = binary.BigEndian.AppendUint16(sc.plain[:0], uint16(len(orig)))
	sc.plain = append(append(sc.plain, orig...), repl...)
	sc.in = appendAAD(sc.in[:0], m.CallID(), m.FromTag(), param)
	if _, err := rand.Read(sc.rnd[:tokenNonce]); err != nil {
		return false
	}
	sc.val2 = append(sc.val2[:0], sc.rnd[:tokenNonce]...)
	sc.val2 = u.aead.Seal(sc.val2, sc.rnd[:tokenNonce], sc.plain, sc.in)
	sc.tok = base64.RawURLEncoding.AppendEncode(sc.tok[:0], sc.val2)
	return true
}

// open decrypts a token of the request's dialog: orig and repl are views
// into sc.plain.
func (u *UAC) open(sc *scratch, m *parser.Message, param string, tok []byte, down bool) (orig, repl []byte, ok bool) {
	var err error
	if sc.val2, err = base64.RawURLEncoding.AppendDecode(sc.val2[:0], tok); err != nil || len(sc.val2) < tokenNonce+u.aead.Overhead() {
		return nil, nil, false
	}
	// The dialog's caller tag: the From tag on the caller's requests, the
	// To tag on the carrier's.
	tag := m.FromTag()
	if !down {
		tag = m.ToTag()
	}
	sc.in = appendAAD(sc.in[:0], m.CallID(), tag, param)
	if sc.plain, err = u.aead.Open(sc.plain[:0], sc.val2[:tokenNonce], sc.val2[tokenNonce:], sc.in); err != nil || len(sc.plain) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(sc.plain))
	if 2+n > len(sc.plain) {
		return nil, nil, false
	}
	return sc.plain[2 : 2+n], sc.plain[2+n:], true
}

func appendAAD(dst, callID, tag []byte, param string) []byte {
	dst = append(dst, callID...)
	dst = append(dst, 0)
	dst = append(dst, tag...)
	dst = append(dst, 0)
	return append(dst, param...)
}
