package uac

import (
	"strconv"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/txn"
)

// UACAuth answers the challenge of the failure route's best response, a
// 401 or 407 from the next hop, with a trunk's credentials (OpenSIPS and
// Kamailio uac_auth()): it finds the credential for the branch's
// destination and the challenged realm, adds Authorization or
// Proxy-Authorization to the request, gives it the next CSeq number
// (RFC 3261 §22.2) and aims the next Relay at the challenged branch's
// Request-URI and destination. The route then relays:
//
//	if u.UACAuth(c) { c.Relay(); return }
//
// The caller never sees the new number: the transaction core gives every
// response to it the CSeq it sent. The dialog's later requests from the
// caller need the new numbering too (the callee has seen N+1): UACAuth
// records the offset in our Record-Route ("uacc", signed), and Restore
// applies it to them; a dialog-forming request is record-routed for that.
//
// False, and nothing changed, when the best response is no 401/407, no
// challenge has a credential for its realm from that destination, the
// request already carried credentials for that realm (they were refused;
// a challenge with stale=true is answered again), or the request is
// inside a dialog and not a BYE: the offset of a dialog's later requests
// is fixed in its route set at the first request, so a challenged
// re-INVITE would put them out of step (that needs the dialog module).
// Allocation-free; false on a nil *UAC (a route set without the module).
func (u *UAC) UACAuth(c *routing.FailureCtx) bool {
	return u.uacAuth(c, true)
}

// UACAuthOwnGateway is UACAuth with only the credentials stored for the
// challenged branch's destination (their gateway column): a credential
// for a realm alone, which answers any next hop, is not used. For a
// branch whose destination the route does not know for a carrier's (a
// subscriber's phone, an address called as another domain): whoever is
// there can challenge with the carrier's realm and a nonce of its
// choosing. Allocation-free; false on a nil *UAC.
func (u *UAC) UACAuthOwnGateway(c *routing.FailureCtx) bool {
	return u.uacAuth(c, false)
}

// uacAuth is UACAuth; anyHop says whether credentials for a realm alone
// may answer.
func (u *UAC) uacAuth(c *routing.FailureCtx, anyHop bool) bool {
	if u == nil {
		return false // the module is not loaded
	}
	code := c.Status()
	best := c.Best()
	if best == nil || (code != 401 && code != 407) {
		return false
	}
	r := c.R
	b := r.BestBranch()
	if b == nil {
		return false
	}
	m := r.Msg
	if m.ToTag() != nil && m.Method() != parser.MethodBye {
		u.authRefused.Inc()
		u.host.Warn("uac: challenge to a request inside a dialog not answered: its later requests would be out of step without the dialog module", "method", string(m.MethodBytes()), "call-id", string(m.CallID()))
		return false
	}
	chName, ansName, ansHdr := parser.HdrWWWAuthenticate, "Authorization", parser.HdrAuthorization
	if code == 407 {
		chName, ansName, ansHdr = parser.HdrProxyAuthenticate, "Proxy-Authorization", parser.HdrProxyAuthorization
	}
	proto, dst := b.Destination()
	if answersSoFar(r) >= maxAuthAnswers {
		// A next hop
		// that challenges every answer again (a nonce called stale each
		// time, a new realm for a credential of any realm) would
		// otherwise get a digest of the trunk's password for a nonce of
		// its choosing per attempt, up to txn.MaxBranches.
		u.authRejected.Inc()
		u.host.Warn("uac: the next hop keeps challenging our credentials", "dst", dst.String(), "answers", maxAuthAnswers)
		return false
	}
	sc := u.scratches.Get().(*scratch)
	defer u.scratches.Put(sc)
	t := u.creds.Load()
	for i := 0; i < best.NumHeaders(); i++ {
		h := best.HeaderAt(i)
		if h.Name != chName || !parser.ParseAuth(h.Value, &sc.ch) || !sc.ch.IsDigest() || !validChallengeText(&sc.ch) {
			continue
		}
		alg, ok := parseAlgorithm(sc.ch.Algorithm)
		if !ok {
			continue
		}
		cr := t.lookup(dst, sc.ch.Realm, anyHop)
		if cr == nil || !cr.usable(alg, sc.ch.Realm) {
			continue
		}
		prev := credentialsFor(m, ansHdr, sc.ch.Realm)
		if prev >= 0 && !parser.EqualFold(sc.ch.Stale, []byte("true")) {
			u.authRejected.Inc()
			u.host.Warn("uac: the next hop refused our credentials", "realm", string(sc.ch.Realm), "dst", dst.String(), "credential", cr.id)
			return false
		}
		hdr, ok := sc.answer(&sc.ch, alg, cr, m.MethodBytes(), b.URI(), m.Body())
		if !ok {
			continue
		}
		ed := r.Editor()
		if prev >= 0 {
			ed.RemoveHeaderAt(prev)
		}
		ed.AddHeader(ansName, r.Own(hdr))
		ed.SetCSeq(m.CSeq().Num + 1)
		r.SetRequestURI(b.URI())
		r.SetDestination(proto, dst)
		if m.ToTag() == nil && formsDialog(m.Method()) {
			c.RecordRoute()
			n := 1
			if k, ok := parseUint(r.RecordRouteParam(paramCSeq), 1000); ok {
				n += int(k)
			}
			sc.val = strconv.AppendInt(sc.val[:0], int64(n), 10)
			r.SetRecordRouteParam([]byte(paramCSeq), sc.val)
		}
		u.authAnswered.Inc()
		return true
	}
	u.authNoCreds.Inc()
	return false
}

// formsDialog reports whether a request outside a dialog can create one
// whose later requests pass through us.
func formsDialog(m parser.Method) bool {
	return m == parser.MethodInvite || m == parser.MethodSubscribe || m == parser.MethodRefer
}

// credentialsFor returns the index of the header line h whose digest
// credentials are for realm, -1 when there is none.
func credentialsFor(m *parser.Message, h parser.HeaderName, realm []byte) int {
	var a parser.Auth
	for i := 0; i < m.NumHeaders(); i++ {
		hd := m.HeaderAt(i)
		if hd.Name == h && parser.ParseAuth(hd.Value, &a) && string(a.Realm) == string(realm) {
			return i
		}
	}
	return -1
}

// Names of our Record-Route parameters (signed, see txn.Request.SetRecordRouteParam).
const (
	paramCSeq = "uacc" // the CSeq offset of the caller's requests after UACAuth
	paramFrom = "uacf" // the From replaced: original and new URI, encrypted
	paramTo   = "uact" // the To replaced
)

// maxAuthAnswers is how many challenges UACAuth answers for one request:
// one, and two more for a stale nonce or a second realm.
const maxAuthAnswers = 3

// answersSoFar is how many challenges UACAuth answered for the request:
// each gave it the next CSeq number, counted from the one its client sent
// plus, for the caller's request inside a dialog, the offset Restore
// added (uacc).
func answersSoFar(r *txn.Request) int64 {
	base := int64(r.ClientCSeq())
	if r.Msg.ToTag() != nil && r.Downstream() {
		if n, ok := parseUint(r.DialogRouteParam(paramCSeq), 1000); ok {
			base += int64(n)
		}
	}
	return int64(r.Msg.CSeq().Num) - base
}
