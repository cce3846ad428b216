package store

import (
	"fmt"
	"strings"
)

const (
	maxUserLen   = 128
	maxDomainLen = 253
)

// checkUser accepts the characters a SIP user part may carry (RFC 3261
// unreserved, escaped and user-unreserved), which excludes '@', ':' and
// whitespace, so a stored name can always be written back into a URI.
func checkUser(u string) error {
	if u == "" {
		return fmt.Errorf("empty username: %w", ErrMalformedUser)
	}
	if len(u) > maxUserLen {
		return fmt.Errorf("username %.20q... longer than %d bytes: %w", u, maxUserLen, ErrMalformedUser)
	}
	for i := 0; i < len(u); i++ {
		if !isUserChar(u[i]) {
			return fmt.Errorf("username %q has invalid character %q: %w", u, u[i], ErrMalformedUser)
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
		return "", fmt.Errorf("empty domain: %w", ErrMalformedDomain)
	}
	if len(d) > maxDomainLen {
		return "", fmt.Errorf("domain %.20q... longer than %d bytes: %w", d, maxDomainLen, ErrMalformedDomain)
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' || len(d) < 3 {
			return "", fmt.Errorf("domain %q: unterminated IPv6 literal: %w", d, ErrMalformedDomain)
		}
		for i := 1; i < len(d)-1; i++ {
			c := d[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return "", fmt.Errorf("domain %q: invalid character %q in IPv6 literal: %w", d, c, ErrMalformedDomain)
			}
		}
		return strings.ToLower(d), nil
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", fmt.Errorf("domain %q has invalid character %q: %w", d, c, ErrMalformedDomain)
		}
	}
	if d[0] == '.' || d[0] == '-' || d[len(d)-1] == '-' || strings.Contains(d, "..") {
		return "", fmt.Errorf("domain %q is not a valid host name: %w", d, ErrMalformedDomain)
	}
	return strings.ToLower(d), nil
}

// SplitAOR splits an address-of-record "user@domain" (no scheme, no
// parameters) and checks both parts. The domain is returned lower-cased.
func SplitAOR(aor string) (user, domain string, err error) {
	at := strings.LastIndexByte(aor, '@')
	if at < 0 {
		return "", "", fmt.Errorf("AOR %q: missing '@' (want user@domain): %w", aor, ErrMalformedAOR)
	}
	if strings.HasPrefix(aor, "sip:") || strings.HasPrefix(aor, "sips:") {
		return "", "", fmt.Errorf("AOR %q: give user@domain without the URI scheme: %w", aor, ErrMalformedAOR)
	}
	user, domain = aor[:at], aor[at+1:]
	if err := checkUser(user); err != nil {
		return "", "", fmt.Errorf("AOR %q: %v: %w", aor, err, ErrMalformedAOR)
	}
	d, err := normDomain(domain)
	if err != nil {
		return "", "", fmt.Errorf("AOR %q: %v: %w", aor, err, ErrMalformedAOR)
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
		return fmt.Errorf("AOR %q: domain must be lower case: %w", aor, ErrMalformedAOR)
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
