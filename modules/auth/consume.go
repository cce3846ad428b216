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
// for another realm, meant for a proxy or UAS further on, stay. It reports
// whether a header was removed.
func ConsumeCredentials(c *routing.Ctx) bool {
	m := c.Msg()
	if !m.Has(parser.HdrProxyAuthorization) && !m.Has(parser.HdrAuthorization) {
		return false
	}
	var cr parser.Auth
	removed := false
	for i, n := 0, m.NumHeaders(); i < n; i++ {
		h := m.HeaderAt(i)
		if h.Name != parser.HdrProxyAuthorization && h.Name != parser.HdrAuthorization {
			continue
		}
		// One credential per line: RFC 3261 §7.3.1 forbids combining them.
		if parser.ParseAuth(h.Value, &cr) && cr.IsDigest() && c.IsMyself(cr.Realm) {
			removed = c.R.Editor().RemoveHeaderAt(i) || removed
		}
	}
	return removed
}
