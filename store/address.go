package store

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Address is one row of the address table (OpenSIPS permissions'
// `address` table): a source address or subnet that belongs to a group,
// optionally only on one port and transport and only for requests whose
// From (or Request-URI) matches a pattern. The permissions module keeps
// the table in memory and answers check_source_address from it.
type Address struct {
	ID int64
	// Group is the group the address belongs to, 1-65535 (grp). The
	// provider route set treats group 1 as its trusted gateways.
	Group int
	// IP is the address, or the network address of a subnet, in its
	// canonical text form ("192.0.2.0", "2001:db8::"). Given to
	// AddAddress it may carry the prefix length: "192.0.2.0/24".
	IP string
	// Mask is the prefix length: 32 (IPv4) or 128 (IPv6) for one address.
	// Given to AddAddress, 0 means "not given": the length in IP, or one
	// address (write 0.0.0.0/0 for everything). In a stored row (what
	// ListAddresses returns) it is the length as it is: 0 is /0.
	Mask int
	// Port is the source port to match; 0 matches any.
	Port int
	// Proto is the transport to match: "udp", "tcp", "tls", "ws" or "any".
	Proto string
	// Pattern, when not empty, is a regular expression (Go RE2 syntax)
	// the request must also match (the module's pattern_on setting says
	// against what). It narrows what an address may do; it never makes
	// an address match.
	Pattern string
	// ContextInfo is free text handed to the route on a match
	// (context_info): a customer name, a tariff, a note.
	ContextInfo string
	Created     int64 // unix seconds
}

// Prefix returns the address as a prefix ("192.0.2.0/24"). a must have
// been validated (as every stored Address is).
func (a *Address) Prefix() string {
	return a.IP + "/" + strconv.Itoa(a.Mask)
}

// Limits of the address table's text columns.
const (
	MaxAddressGroup   = 65535
	MaxPatternLen     = 512 // bytes of Address.Pattern
	maxContextInfoLen = 255
)

// AddressProtos are the accepted values of Address.Proto.
var AddressProtos = []string{"any", "udp", "tcp", "tls", "ws"}

// ParseAddressPrefix parses an address ("192.0.2.7", "2001:db8::1") or a
// subnet in CIDR notation ("192.0.2.0/24", "2001:db8::/32") into the
// canonical address text and prefix length of an Address. IPv4-mapped
// IPv6 addresses are taken as the IPv4 address they carry (sources are
// seen that way). A subnet with bits set after its prefix is refused: it
// is almost always a typo, and the error says which subnet was meant.
func ParseAddressPrefix(s string) (ip string, mask int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", 0, errorf(ErrMalformedAddress, "empty address")
	}
	if strings.IndexByte(s, '%') >= 0 {
		return "", 0, errorf(ErrMalformedAddress, "address %q: zones (%%eth0) are not supported", s)
	}
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil {
		return "", 0, errorf(ErrMalformedAddress, "address %q: not an IPv4 or IPv6 address", s)
	}
	mapped := a.Is4In6()
	a = a.Unmap()
	max := a.BitLen()
	mask = max
	if hasBits {
		n, err := strconv.Atoi(bitsPart)
		if err != nil || bitsPart == "" || bitsPart[0] == '+' || bitsPart[0] == '-' {
			return "", 0, errorf(ErrMalformedAddress, "address %q: prefix length %q is not a number", s, bitsPart)
		}
		if mapped {
			// ::ffff:192.0.2.0/120 is 192.0.2.0/24.
			n -= 96
		}
		if n < 0 || n > max {
			return "", 0, errorf(ErrMalformedAddress, "address %q: prefix length %s out of range for %s (0-%d)", s, bitsPart, family(a), max)
		}
		mask = n
	}
	p := netip.PrefixFrom(a, mask)
	if m := p.Masked(); m.Addr() != a {
		return "", 0, errorf(ErrMalformedAddress, "address %q: bits set after the /%d prefix (the subnet is %s)", s, mask, m)
	}
	return a.String(), mask, nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// NormalizeAddress checks every field of a and puts it in canonical form
// (address text, proto lower-case, "any" for an empty proto). Errors name
// the field and the value at fault and wrap ErrMalformedAddress.
//
// a is input (the CLI's, the management API's): a Mask of 0 means "not
// given", the prefix length is then the one in IP, or a single address.
// A row read from the table is checked with NormalizeStoredAddress.
func NormalizeAddress(a *Address) error {
	return normalizeAddress(a, a.Mask != 0)
}

// NormalizeStoredAddress is NormalizeAddress for a row as the table holds
// it: Mask is the mask column, the prefix length whatever its value, so
// a row of mask 0 is the /0 it was stored as (0.0.0.0/0 matches every
// IPv4 source), not a single address.
func NormalizeStoredAddress(a *Address) error {
	return normalizeAddress(a, true)
}

func normalizeAddress(a *Address, maskGiven bool) error {
	if a.Group < 1 || a.Group > MaxAddressGroup {
		return errorf(ErrMalformedAddress, "group %d out of range (1-%d)", a.Group, MaxAddressGroup)
	}
	text := a.IP
	if maskGiven {
		// The mask given apart, as the table's own column.
		if strings.IndexByte(text, '/') >= 0 {
			if _, bits, _ := strings.Cut(text, "/"); bits != strconv.Itoa(a.Mask) {
				return errorf(ErrMalformedAddress, "address %q with mask %d: two different prefix lengths", a.IP, a.Mask)
			}
		} else {
			text += "/" + strconv.Itoa(a.Mask)
		}
	}
	ip, mask, err := ParseAddressPrefix(text)
	if err != nil {
		return err
	}
	a.IP, a.Mask = ip, mask
	if a.Port < 0 || a.Port > 65535 {
		return errorf(ErrMalformedAddress, "port %d out of range (1-65535, or 0 for any)", a.Port)
	}
	proto := strings.ToLower(strings.TrimSpace(a.Proto))
	if proto == "" {
		proto = "any"
	}
	ok := false
	for _, p := range AddressProtos {
		ok = ok || p == proto
	}
	if !ok {
		return errorf(ErrMalformedAddress, "proto %q: want one of %s", a.Proto, strings.Join(AddressProtos, ", "))
	}
	a.Proto = proto
	if len(a.Pattern) > MaxPatternLen {
		return errorf(ErrMalformedAddress, "pattern %.20q... longer than %d bytes", a.Pattern, MaxPatternLen)
	}
	if a.Pattern != "" {
		if _, err := regexp.Compile(a.Pattern); err != nil {
			return errorf(ErrMalformedAddress, "pattern %q: %v", a.Pattern, err)
		}
	}
	if len(a.ContextInfo) > maxContextInfoLen {
		return errorf(ErrMalformedAddress, "context info %.20q... longer than %d bytes", a.ContextInfo, maxContextInfoLen)
	}
	if !utf8.ValidString(a.ContextInfo) || strings.ContainsFunc(a.ContextInfo, isControl) {
		return errorf(ErrMalformedAddress, "context info %q: control characters or invalid UTF-8", a.ContextInfo)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// AddAddress validates a (see NormalizeAddress), stores it and returns it
// as stored, with its ID. The same address, mask, port, proto and pattern
// twice in one group is ErrAddressExists.
func (s *Store) AddAddress(ctx context.Context, a Address) (Address, error) {
	as := []Address{a}
	if err := s.AddAddresses(ctx, as); err != nil {
		return Address{}, err
	}
	return as[0], nil
}

// AddAddresses validates and stores every address of as in one
// transaction (all or none), filling in their IDs: for imports, where
// one change-log entry (one reload of the running server) is better than
// thousands.
func (s *Store) AddAddresses(ctx context.Context, as []Address) error {
	now := time.Now().Unix()
	for i := range as {
		if err := NormalizeAddress(&as[i]); err != nil {
			if len(as) > 1 {
				return errorf(ErrMalformedAddress, "entry %d: %v", i+1, err)
			}
			return err
		}
		if as[i].Created == 0 {
			as[i].Created = now
		}
	}
	if err := s.b.AddAddresses(ctx, as); err != nil {
		var i *addressExistsError
		if errors.As(err, &i) {
			a := &as[i.index]
			return errorf(ErrAddressExists, "address %s port %d proto %s pattern %q is already in group %d (id %d)",
				a.Prefix(), a.Port, a.Proto, a.Pattern, a.Group, i.id)
		}
		return err
	}
	return nil
}

// addressExistsError is how a backend says which entry of AddAddresses
// was a duplicate, and of which stored row.
type addressExistsError struct {
	index int
	id    int64
}

func (e *addressExistsError) Error() string { return ErrAddressExists.Error() }
func (e *addressExistsError) Unwrap() error { return ErrAddressExists }

// DeleteAddress removes the entry with id; ErrNoAddress when there is none.
func (s *Store) DeleteAddress(ctx context.Context, id int64) (Address, error) {
	a, err := s.b.DeleteAddress(ctx, id)
	if errors.Is(err, ErrNoAddress) {
		return a, errorf(ErrNoAddress, "no address entry with id %d", id)
	}
	return a, err
}

// DeleteAddressesOf removes every entry of group for the address or
// subnet prefix (whatever their port, proto and pattern) and returns
// them; ErrNoAddress when there was none.
func (s *Store) DeleteAddressesOf(ctx context.Context, group int, prefix string) ([]Address, error) {
	a := Address{Group: group, IP: prefix}
	if err := NormalizeAddress(&a); err != nil {
		return nil, err
	}
	del, err := s.b.DeleteAddressesOf(ctx, a.Group, a.IP, a.Mask)
	if errors.Is(err, ErrNoAddress) {
		return nil, errorf(ErrNoAddress, "no entry for %s in group %d", a.Prefix(), a.Group)
	}
	return del, err
}

// ListAddresses returns the entries of group, or of every group when
// group is 0, ordered by group and id. The permissions module loads the
// whole table with it.
func (s *Store) ListAddresses(ctx context.Context, group int) ([]Address, error) {
	if group < 0 || group > MaxAddressGroup {
		return nil, errorf(ErrMalformedAddress, "group %d out of range (1-%d, or 0 for all)", group, MaxAddressGroup)
	}
	return s.b.ListAddresses(ctx, group)
}
