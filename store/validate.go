package store

import "strings"

const (
	maxUserLen   = 128
	maxDomainLen = 253
)

// checkUser accepts the characters a SIP user part may carry (RFC 3261
// unreserved, escaped and user-unreserved), which excludes '@', ':' and
// whitespace, so a stored name can always be written back into a URI.
func checkUser(u string) error {
	if u == "" {
		return errorf(ErrMalformedUser, "empty username")
	}
	if len(u) > maxUserLen {
		return errorf(ErrMalformedUser, "username %.20q... longer than %d bytes", u, maxUserLen)
	}
	for i := 0; i < len(u); i++ {
		if !isUserChar(u[i]) {
			return errorf(ErrMalformedUser, "username %q has invalid character %q", u, u[i])
		}
	}
	return nil
}

func isUserChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()%&=+$,;?/", c) >= 0
}

// normDomain lower-cases a host name or IP literal and checks it. Ports are
// not part of a served domain.
func normDomain(d string) (string, error) {
	if d == "" {
		return "", errorf(ErrMalformedDomain, "empty domain")
	}
	if len(d) > maxDomainLen {
		return "", errorf(ErrMalformedDomain, "domain %.20q... longer than %d bytes", d, maxDomainLen)
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' || len(d) < 3 {
			return "", errorf(ErrMalformedDomain, "domain %q: unterminated IPv6 literal", d)
		}
		for i := 1; i < len(d)-1; i++ {
			c := d[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return "", errorf(ErrMalformedDomain, "domain %q: invalid character %q in IPv6 literal", d, c)
			}
		}
		return strings.ToLower(d), nil
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", errorf(ErrMalformedDomain, "domain %q has invalid character %q", d, c)
		}
	}
	if d[0] == '.' || d[0] == '-' || d[len(d)-1] == '-' || strings.Contains(d, "..") {
		return "", errorf(ErrMalformedDomain, "domain %q is not a valid host name", d)
	}
	return strings.ToLower(d), nil
}

// SplitAOR splits an address-of-record "user@domain" (no scheme, no
// parameters) and checks both parts. The domain is returned lower-cased.
func SplitAOR(aor string) (user, domain string, err error) {
	at := strings.LastIndexByte(aor, '@')
	if at < 0 {
		return "", "", errorf(ErrMalformedAOR, "AOR %q: missing '@' (want user@domain)", aor)
	}
	if strings.HasPrefix(aor, "sip:") || strings.HasPrefix(aor, "sips:") {
		return "", "", errorf(ErrMalformedAOR, "AOR %q: give user@domain without the URI scheme", aor)
	}
	user, domain = aor[:at], aor[at+1:]
	if err := checkUser(user); err != nil {
		return "", "", errorf(ErrMalformedAOR, "AOR %q: %v", aor, err)
	}
	d, err := normDomain(domain)
	if err != nil {
		return "", "", errorf(ErrMalformedAOR, "AOR %q: %v", aor, err)
	}
	return user, d, nil
}

// checkAOR is SplitAOR without results; the registrar keeps AORs already
// normalised, so only their shape is checked before queueing a write.
func checkAOR(aor string) error {
	_, d, err := SplitAOR(aor)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(aor, d) {
		return errorf(ErrMalformedAOR, "AOR %q: domain must be lower case", aor)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
