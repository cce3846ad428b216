package auth

import (
	"switchboard/parser"
	"switchboard/routing"
)

// ConsumeCredentials removes from the relayed request the credentials
// meant for us: every Proxy-Authorization and Authorization header whose
// Digest realm is one of our domains (OpenSIPS and Kamailio:
// consume_credentials()). Call it once the request is authorized and
// before Relay: the next hop has no use for a digest answered to us, and
// must not learn the user name, the nonce and the response. Credentials
// for another realm, meant for a proxy or UAS further on, stay, unless the
// request carries more than four for us: then every credential goes. It
// reports whether a header was removed.
func ConsumeCredentials(c *routing.Ctx) bool {
	m := c.Msg()
	if !m.Has(parser.HdrProxyAuthorization) && !m.Has(parser.HdrAuthorization) {
		return false
	}
	var cr parser.Auth
	var ours [maxOwnCredentials]int // the lines of our credentials
	n := 0
	for i, nh := 0, m.NumHeaders(); i < nh; i++ {
		h := m.HeaderAt(i)
		if h.Name != parser.HdrProxyAuthorization && h.Name != parser.HdrAuthorization {
			continue
		}
		// One credential per line: RFC 3261 §7.3.1 forbids combining them.
		if parser.ParseAuth(h.Value, &cr) && cr.IsDigest() && c.IsMyself(cr.Realm) {
			if n == len(ours) {
				// More than a UA sends: each line's removal would be one
				// of the message's limited edits (parser.MaxEdits), so
				// every credential line goes, in two edits.
				ed := c.R.Editor()
				return ed.DropHeaders(parser.HdrProxyAuthorization) && ed.DropHeaders(parser.HdrAuthorization)
			}
			ours[n] = i
			n++
		}
	}
	removed := false
	for _, i := range ours[:n] {
		removed = c.R.Editor().RemoveHeaderAt(i) || removed
	}
	return removed
}

// maxOwnCredentials is how many credentials for us ConsumeCredentials
// removes one by one: a UA sends one, or one per realm of ours it was
// challenged for.
const maxOwnCredentials = 4
