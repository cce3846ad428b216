package txn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
	"sync"

	"switchboard/parser"
)

// Signed Record-Route.
//
// Any request with a To tag looks like an in-dialog request, and an
// in-dialog request is routed by its Route set without authentication. If
// every Route value naming us were taken at its word, anyone could send a
// request "inside a dialog" through us to any address: an open relay (toll
// fraud, caller-ID spoofing, requests written to any TCP port). So the
// Record-Route values we add carry a signature, a MAC of the dialog's
// Call-ID and the tag of the party that sent the dialog-forming request,
// keyed with a secret kept in the data directory:
//
//	Record-Route: <sip:192.0.2.1:5060;lr;sig=1f0c93a2be4d7e61>
//
// An in-dialog request is loose-routed only when one of our Route values at
// the top carries a signature that verifies for its own Call-ID and one of
// its tags (From or To: requests from the callee have them swapped). A
// Route value copied from another call, or made up, does not verify. The
// check needs no dialog state, so it holds across restarts (the secret is
// on disk) and on every node that shares the secret.
//
// The signature binds the route to the dialog, not the Request-URI: a
// party to a dialog can still address its own in-dialog requests where it
// likes, as with OpenSIPS's and Kamailio's loose_route. The dialog module
// adds that check with state.

// routeSigParam is the URI parameter of our Record-Route that carries the
// signature.
const routeSigParam = "sig"

// routeSigLen is the signature's length in hexadecimal characters: 64 bits
// of HMAC-SHA256, beyond reach of online guessing.
const routeSigLen = 16

// RouteKind is what the Route set of a request says about how it may be
// routed (RFC 3261 §16.4, and the signature above).
type RouteKind uint8

const (
	// RouteNone: the request has no Route header.
	RouteNone RouteKind = iota
	// RouteLocal: every Route value names us and none is signed: the
	// Route an outbound proxy setting preloads (RFC 3261 §8.1.2, RFC
	// 5626). The values are removed and the request is routed as an
	// initial one, by its Request-URI.
	RouteLocal
	// RouteDialog: a Route value of ours at the top carries a signature
	// that verifies for this request's Call-ID and tags: a Record-Route we
	// added to this dialog. The request goes on along the rest of the
	// Route set, or to its Request-URI.
	RouteDialog
	// RouteForged: a Route value of ours carries a signature that does
	// not verify (made up, or copied from another dialog), or unsigned
	// values of ours lead on to another hop: a route through us that we
	// never recorded.
	RouteForged
	// RouteForeign: the first Route value is not ours: a route preloaded
	// to another proxy.
	RouteForeign
)

var routeKindNames = [...]string{"none", "local", "dialog", "forged", "foreign"}

func (k RouteKind) String() string {
	if int(k) < len(routeKindNames) {
		return routeKindNames[k]
	}
	return "unknown"
}

// routeSigner computes route signatures; one per goroutine at a time, from
// a pool, so that signing allocates nothing.
type routeSigner struct {
	mac hash.Hash
	sum [sha256.Size]byte
	buf []byte // what a flow token's MAC covers (flow.go)
}

type routeSigners struct {
	pool sync.Pool
}

// init keys the signers. A nil secret gets a random key: signatures then
// hold only as long as the process runs.
func (rs *routeSigners) init(secret []byte) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	key := append([]byte(nil), secret...)
	rs.pool.New = func() any { return &routeSigner{mac: hmac.New(sha256.New, key), buf: make([]byte, 0, 64)} }
}

// appendSig appends the signature of a dialog (its Call-ID and the tag of
// one party) in hexadecimal.
func (rs *routeSigners) appendSig(dst, callID, tag []byte) []byte {
	return rs.appendSigExtra(dst, callID, tag, nil)
}

// appendSigExtra appends the signature of a dialog and of the parameters a
// route function added to our Record-Route (extra, see routeExtra). Without
// extra it is appendSig's, so the Record-Routes of calls set up before
// extra parameters existed still verify.
func (rs *routeSigners) appendSigExtra(dst, callID, tag, extra []byte) []byte {
	s := rs.pool.Get().(*routeSigner)
	s.mac.Reset()
	s.mac.Write(callID)
	s.mac.Write(zeroByte)
	s.mac.Write(tag)
	if len(extra) > 0 {
		s.mac.Write(zeroByte)
		s.mac.Write(extra)
	}
	sum := s.mac.Sum(s.sum[:0])
	dst = appendHexBytes(dst, sum[:routeSigLen/2])
	rs.pool.Put(s)
	return dst
}

// verify reports whether sig is the signature of the request's dialog for
// its From tag or its To tag.
func (rs *routeSigners) verify(sig []byte, m *parser.Message) bool {
	ok, _ := rs.verifyExtra(sig, m, nil)
	return ok
}

// verifyExtra reports whether sig is the signature of the request's dialog
// and extra for its From tag (down: the request comes from the party that
// sent the dialog-forming request) or its To tag (from the other party).
func (rs *routeSigners) verifyExtra(sig []byte, m *parser.Message, extra []byte) (ok, down bool) {
	if len(sig) != routeSigLen {
		return false, false
	}
	var buf [routeSigLen]byte
	if subtle.ConstantTimeCompare(rs.appendSigExtra(buf[:0], m.CallID(), m.FromTag(), extra), sig) == 1 {
		return true, true
	}
	to := m.ToTag()
	return to != nil && subtle.ConstantTimeCompare(rs.appendSigExtra(buf[:0], m.CallID(), to, extra), sig) == 1, false
}

// appendViaMAC appends, in 16 hexadecimal digits, a MAC of the Via a
// request came with (v: its branch, sent-by; for an RFC 2543 Via without
// a branch of the magic cookie, its whole value, the Call-ID and CSeq
// number too): the tail of the branch a stateless forward gives the
// request (§16.11: the same branch for its retransmissions). The response
// carries that Via below ours: forwardResponse relays a response that
// matches no transaction only when the MAC verifies, so no one can make
// the proxy send a response of their making where they like.
func (rs *routeSigners) appendViaMAC(dst []byte, v *parser.Via, m *parser.Message) []byte {
	s := rs.pool.Get().(*routeSigner)
	s.mac.Reset()
	s.buf = append(s.buf[:0], "via"...)
	s.buf = append(s.buf, 0, byte(v.Port>>8), byte(v.Port))
	s.mac.Write(s.buf)
	s.mac.Write(v.Branch)
	s.mac.Write(zeroByte)
	s.mac.Write(v.Host)
	if !v.RFC3261Branch() {
		n := m.CSeq().Num
		s.buf = append(s.buf[:0], 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		s.mac.Write(s.buf)
		s.mac.Write(v.Raw)
		s.mac.Write(zeroByte)
		s.mac.Write(m.CallID())
	}
	sum := s.mac.Sum(s.sum[:0])
	dst = appendHexBytes(dst, sum[:8])
	rs.pool.Put(s)
	return dst
}

var zeroByte = []byte{0} // a separator; a literal would escape through hash.Hash

func appendHexBytes(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// ourRoute reports whether a Route (or Request-URI) value names one of our
// listeners, and returns its signature parameter, nil when it has none,
// and the parameters the signature covers beside the dialog (routeExtra).
func (c *Core) ourRoute(uri []byte) (ours bool, sig, extra []byte) {
	var u parser.URI
	if u.Parse(uri) != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) {
		return false, nil, nil
	}
	tp := u.Transport()
	if tp == nil && u.Scheme == parser.SchemeSIPS {
		tp = []byte("tls")
	}
	if !c.isUsHostPort(u.Host, u.Port, tp) {
		return false, nil, nil
	}
	sig, _ = u.Param(routeSigParam)
	return true, sig, routeExtra(u.Params)
}

// Parameters of a dialog in our Record-Route.
//
// A route function may put data of its own in our Record-Route
// (Request.SetRecordRouteParam): a module that changed the CSeq or the
// From of the dialog's first request finds there, in every later request
// of the dialog, what to change again, without keeping dialog state
// (uac_auth, uac_replace_from). They go between "lr" and the signature,
// which covers them:
//
//	Record-Route: <sip:192.0.2.1:5060;lr;uacc=1;sig=7a0c93a2be4d7e61>
//
// so neither party can change or remove them: a value that was edited
// makes the route a forged one.

// routeExtra returns the parameters between "lr" and the signature in the
// parameters of one of our Route values (without the leading ";" of the
// URI's parameters), each with its leading ";"; empty when there are none
// or the signature does not come after "lr".
func routeExtra(params []byte) []byte {
	lrEnd, sigStart := -1, -1
	for i := 0; i <= len(params); {
		j := i
		for j < len(params) && params[j] != ';' {
			j++
		}
		name := params[i:j]
		for k, ch := range name {
			if ch == '=' {
				name = name[:k]
				break
			}
		}
		switch {
		case lrEnd < 0 && parser.EqualFold(name, []byte("lr")):
			lrEnd = j
		case i > 0 && parser.EqualFold(name, []byte(routeSigParam)):
			sigStart = i - 1
		}
		i = j + 1
	}
	if lrEnd < 0 || sigStart < lrEnd {
		return nil
	}
	return params[lrEnd:sigStart]
}

// paramValue returns the value of ";name=value" in params (each parameter
// with its leading ";"), nil when absent.
func paramValue(params []byte, name string) []byte {
	for i := 0; i < len(params); {
		if params[i] != ';' {
			return nil
		}
		j := i + 1
		for j < len(params) && params[j] != ';' {
			j++
		}
		p := params[i+1 : j]
		if len(p) > len(name) && p[len(name)] == '=' && parser.EqualFold(p[:len(name)], []byte(name)) {
			return p[len(name)+1:]
		}
		i = j
	}
	return nil
}

// validRouteParam reports whether name and value may go into a URI
// parameter as they are: letters, digits and "-_.~" (base64url, numbers,
// tokens), the value possibly empty.
func validRouteParam(name, value []byte) bool {
	if len(name) == 0 || parser.EqualFold(name, []byte(routeSigParam)) || parser.EqualFold(name, []byte("lr")) {
		return false
	}
	for _, b := range [2][]byte{name, value} {
		for _, ch := range b {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
				return false
			}
		}
	}
	return true
}

// setParam sets ";name=value" in params (each with its leading ";"),
// replacing one of that name.
func setParam(params, name, value []byte) []byte {
	for i := 0; i < len(params); {
		j := i + 1
		for j < len(params) && params[j] != ';' {
			j++
		}
		p := params[i+1 : j]
		if len(p) > len(name) && p[len(name)] == '=' && parser.EqualFold(p[:len(name)], name) {
			params = append(params[:i], params[j:]...)
			break
		}
		i = j
	}
	params = append(params, ';')
	params = append(params, name...)
	params = append(params, '=')
	return append(params, value...)
}
