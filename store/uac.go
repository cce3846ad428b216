package store

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"switchboard/parser"
)

// UACCredential is one row of the uac_credentials table: the credentials
// of one of our trunks, which the uac module answers a carrier's 401 or
// 407 with (OpenSIPS uac_auth's credentials). A row applies to challenges
// of its Realm ("" any realm) that come from its Gateway ("" any next hop);
// at least one of the two is set.
type UACCredential struct {
	ID int64
	// Realm is the realm of the challenge, as the carrier writes it; ""
	// matches any realm.
	Realm string
	// Gateway is the next hop the challenged request went to: an IP
	// address, or an address and port ("192.0.2.10", "192.0.2.10:5060",
	// "[2001:db8::1]:5060"); "" matches any next hop. Given, it binds the
	// password to that address: no other next hop can have us answer
	// its challenge with it.
	Gateway string
	// Username is the user of the trunk's account.
	Username string
	// Password, or HA1 (MD5(username:realm:password), hex) and/or
	// HA1SHA256 (SHA-256, hex): the HA1s need a Realm (they are computed
	// for one) and answer only the algorithms they are for.
	Password  string
	HA1       string
	HA1SHA256 string
	Created   int64 // unix seconds
}

// UACRegistration is one row of the uac_registrations table: a
// registration the server keeps with a carrier as a client (OpenSIPS
// uac_registrant's registrant table).
type UACRegistration struct {
	ID int64
	// AOR is the address-of-record registered (From and To):
	// "sip:+4930123@carrier.example".
	AOR string
	// Registrar is the Request-URI of the REGISTER: "sip:carrier.example"
	// (a port and ";transport=tcp" may follow).
	Registrar string
	// Proxy is where the REGISTER is sent when not to the Registrar
	// ("sip:192.0.2.10:5060", or "192.0.2.10:5060"); "" for none.
	Proxy string
	// Username and Password answer the registrar's challenge; Username
	// defaults to the AOR's user.
	Username string
	Password string
	// Expires is the registration's lifetime asked for, in seconds
	// (default 3600); it is refreshed before it runs out.
	Expires int
	// Contact is the Contact registered; "" is sip:<username>@ the
	// address the REGISTER leaves from.
	Contact string
	Created int64 // unix seconds
}

// Limits of the uac tables.
const (
	DefaultUACExpires = 3600
	MinUACExpires     = 60
	MaxUACExpires     = 86400
	maxUACText        = 255
)

// CheckUACCredential validates c and puts it in canonical form, naming the
// field at fault: `uac credential: gateway "x": ...`.
func CheckUACCredential(c *UACCredential) error {
	c.Realm = strings.TrimSpace(c.Realm)
	c.Gateway = strings.TrimSpace(c.Gateway)
	c.HA1 = strings.ToLower(strings.TrimSpace(c.HA1))
	c.HA1SHA256 = strings.ToLower(strings.TrimSpace(c.HA1SHA256))
	if err := quotable("realm", c.Realm); err != nil {
		return credErr(err)
	}
	if c.Gateway != "" {
		gw, err := ParseUACGateway(c.Gateway)
		if err != nil {
			return credErr(err)
		}
		c.Gateway = gw
	}
	if c.Realm == "" && c.Gateway == "" {
		return credErr(errors.New("realm and gateway: give one or both (a credential for every realm of every next hop would answer anyone's challenge)"))
	}
	if c.Username == "" {
		return credErr(errors.New("username: empty"))
	}
	if err := quotable("username", c.Username); err != nil {
		return credErr(err)
	}
	if len(c.Password) > maxUACText || hasLineBreakOrNUL(c.Password) {
		return credErr(errors.New("password: longer than 255 bytes or holds a line break"))
	}
	hasHA1 := c.HA1 != "" || c.HA1SHA256 != ""
	switch {
	case c.Password == "" && !hasHA1:
		return credErr(errors.New("password: give a password, or ha1 and/or ha1_sha256"))
	case c.Password != "" && hasHA1:
		return credErr(errors.New("password and ha1: give one, not both"))
	case c.HA1 != "" && !isHex(c.HA1, 32):
		return credErr(errors.New("ha1: must be 32 hex digits (MD5)"))
	case c.HA1SHA256 != "" && !isHex(c.HA1SHA256, 64):
		return credErr(errors.New("ha1_sha256: must be 64 hex digits (SHA-256)"))
	case hasHA1 && c.Realm == "":
		return credErr(errors.New("realm: an HA1 is computed for one realm: give it"))
	}
	return nil
}

func credErr(err error) error {
	return errorf(ErrMalformedUAC, "uac credential: %v", err)
}

// quotable checks text that goes into a quoted digest parameter.
func quotable(field, s string) error {
	if len(s) > maxUACText {
		return errors.New(field + ": longer than 255 bytes")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return errors.New(field + " " + quote(s) + ": quotes, backslashes and control characters are not allowed")
		}
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

// ParseUACGateway parses a gateway address, "192.0.2.10" or
// "192.0.2.10:5060" ("[2001:db8::1]:5060"), into its canonical form.
func ParseUACGateway(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", errors.New("gateway " + quote(s) + ": port 0")
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || a.Zone() != "" {
		return "", errors.New("gateway " + quote(s) + ": want an IP address, or an address and port (192.0.2.10, 192.0.2.10:5060, [2001:db8::1]:5060)")
	}
	return a.Unmap().String(), nil
}

// CheckUACRegistration validates r, fills its defaults and puts its URIs
// in canonical form, naming the field at fault.
func CheckUACRegistration(r *UACRegistration) error {
	r.AOR = strings.TrimSpace(r.AOR)
	aor, err := sipURI("aor", r.AOR, true)
	if err != nil {
		return regErr(err)
	}
	if r.Registrar, err = uriOrHost("registrar", r.Registrar); err != nil {
		return regErr(err)
	}
	if r.Registrar == "" {
		return regErr(errors.New("registrar: empty"))
	}
	if r.Proxy, err = uriOrHost("proxy", r.Proxy); err != nil {
		return regErr(err)
	}
	if r.Username == "" {
		r.Username = string(aor.User)
	}
	if err := quotable("username", r.Username); err != nil {
		return regErr(err)
	}
	if len(r.Password) > maxUACText || hasLineBreakOrNUL(r.Password) {
		return regErr(errors.New("password: longer than 255 bytes or holds a line break"))
	}
	if r.Expires == 0 {
		r.Expires = DefaultUACExpires
	}
	if r.Expires < MinUACExpires || r.Expires > MaxUACExpires {
		return regErr(errorf(ErrMalformedUAC, "expires %d: must be between %d and %d seconds", r.Expires, MinUACExpires, MaxUACExpires))
	}
	if r.Contact = strings.TrimSpace(r.Contact); r.Contact != "" {
		if _, err := sipURI("contact", r.Contact, false); err != nil {
			return regErr(err)
		}
	}
	return nil
}

func regErr(err error) error {
	return errorf(ErrMalformedUAC, "uac registration: %v", err)
}

// sipURI parses a sip: or sips: URI of at most 255 bytes (with a user part
// when user is true).
func sipURI(field, s string, user bool) (parser.URI, error) {
	if len(s) > maxUACText {
		return parser.URI{}, errors.New(field + ": longer than 255 bytes")
	}
	u, err := parser.ParseURI([]byte(s))
	if err != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) || len(u.Host) == 0 || len(u.Headers) > 0 {
		return u, errors.New(field + " " + quote(s) + ": want a sip: or sips: URI")
	}
	if user && len(u.User) == 0 {
		return u, errors.New(field + " " + quote(s) + ": the URI has no user part")
	}
	return u, nil
}

// uriOrHost takes "sip:host[:port][;params]" or "host[:port]" (which gets
// "sip:"); "" stays "".
func uriOrHost(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !strings.HasPrefix(strings.ToLower(s), "sip:") && !strings.HasPrefix(strings.ToLower(s), "sips:") {
		s = "sip:" + s
	}
	if _, err := sipURI(field, s, false); err != nil {
		return "", err
	}
	return s, nil
}

// AddUACCredential validates c and adds it; the stored row (with its ID)
// is returned.
func (s *Store) AddUACCredential(ctx context.Context, c UACCredential) (UACCredential, error) {
	c.ID = 0
	if err := CheckUACCredential(&c); err != nil {
		return c, err
	}
	if c.Created == 0 {
		c.Created = time.Now().Unix()
	}
	err := s.b.AddUACCredential(ctx, &c)
	if errors.Is(err, ErrUACExists) {
		return c, errorf(ErrUACExists, "a uac credential for realm %q and gateway %q exists already", c.Realm, c.Gateway)
	}
	return c, err
}

// DeleteUACCredential removes and returns the credential with id.
func (s *Store) DeleteUACCredential(ctx context.Context, id int64) (UACCredential, error) {
	c, err := s.b.DeleteUACCredential(ctx, id)
	if errors.Is(err, ErrNoUAC) {
		return c, errorf(ErrNoUAC, "uac credential %d does not exist", id)
	}
	return c, err
}

// ListUACCredentials returns every credential by realm, gateway and ID.
func (s *Store) ListUACCredentials(ctx context.Context) ([]UACCredential, error) {
	return s.b.ListUACCredentials(ctx)
}

// UACCredentialsVersion changes with every write to uac_credentials, by
// any process sharing the database: a running server reloads the table
// when it moves.
func (s *Store) UACCredentialsVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "uac_credentials")
}

// AddUACRegistration validates r and adds it; the stored row (with its ID
// and defaults) is returned.
func (s *Store) AddUACRegistration(ctx context.Context, r UACRegistration) (UACRegistration, error) {
	r.ID = 0
	if err := CheckUACRegistration(&r); err != nil {
		return r, err
	}
	if r.Created == 0 {
		r.Created = time.Now().Unix()
	}
	err := s.b.AddUACRegistration(ctx, &r)
	if errors.Is(err, ErrUACExists) {
		return r, errorf(ErrUACExists, "a uac registration of %s at %s exists already", r.AOR, r.Registrar)
	}
	return r, err
}

// DeleteUACRegistration removes and returns the registration with id.
func (s *Store) DeleteUACRegistration(ctx context.Context, id int64) (UACRegistration, error) {
	r, err := s.b.DeleteUACRegistration(ctx, id)
	if errors.Is(err, ErrNoUAC) {
		return r, errorf(ErrNoUAC, "uac registration %d does not exist", id)
	}
	return r, err
}

// ListUACRegistrations returns every registration by ID.
func (s *Store) ListUACRegistrations(ctx context.Context) ([]UACRegistration, error) {
	return s.b.ListUACRegistrations(ctx)
}

// UACRegistrationsVersion changes with every write to uac_registrations.
func (s *Store) UACRegistrationsVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "uac_registrations")
}
