package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"switchboard/parser"
)

// Alias is one row of the aliases table (OpenSIPS alias_db's dbaliases):
// requests for AliasUser@AliasDomain (a DID, a short name) go to the
// subscriber User@Domain. The aliases module keeps the table in memory
// and rewrites the Request-URI before the location lookup.
type Alias struct {
	AliasUser, AliasDomain string // the name called; AliasDomain is served
	User, Domain           string // the subscriber it reaches
	Created                int64  // unix seconds
}

// AliasName is "alias@domain".
func (a *Alias) AliasName() string { return a.AliasUser + "@" + a.AliasDomain }

// Target is "user@domain", the subscriber reached.
func (a *Alias) Target() string { return a.User + "@" + a.Domain }

// NewAlias builds an Alias from "alias@domain" and "user@domain",
// checking both (as SplitAOR does; domains are lower-cased). The alias
// user is kept with its escapes decoded (see SplitAlias); the target is
// kept as written, since it is written into the Request-URI.
func NewAlias(alias, target string) (Alias, error) {
	var a Alias
	var err error
	if a.AliasUser, a.AliasDomain, err = SplitAlias(alias); err != nil {
		return a, err
	}
	if a.User, a.Domain, err = SplitAOR(strings.TrimSpace(target)); err != nil {
		return a, errorf(ErrMalformedAlias, "alias %s: target: %v", a.AliasName(), err)
	}
	return a, nil
}

// SplitAlias splits "alias@domain" as SplitAOR does and decodes the
// escapes of the alias user: "%2B33123456789@example.com" is the alias
// +33123456789 of example.com. An alias is a name a Request-URI's user is
// compared with once its escapes are decoded (the aliases module, as
// OpenSIPS's alias_db_lookup, compares the user un-escaped), so it is
// stored decoded, the form a request matches whether it writes the name
// escaped or not. An escape that does not stand for a character a SIP
// user part carries as it is ('@', ':', a space, '%', '#', a control
// character) is refused, the value named: no Request-URI user needs it.
func SplitAlias(alias string) (user, domain string, err error) {
	alias = strings.TrimSpace(alias)
	if user, domain, err = SplitAOR(alias); err != nil {
		return "", "", errorf(ErrMalformedAlias, "alias: %v", err)
	}
	if strings.IndexByte(user, '%') < 0 {
		return user, domain, nil
	}
	b := make([]byte, 0, len(user))
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		d, ok := parser.DecodeEscape([]byte(user), i)
		if !ok {
			return "", "", errorf(ErrMalformedAlias, "alias %q: %q in the user is not an escape (%% and two hex digits)", alias, user[i:min(i+3, len(user))])
		}
		if d == '%' || !isUserChar(d) {
			return "", "", errorf(ErrMalformedAlias, "alias %q: the escape %s in the user stands for %q, which an alias user cannot hold (letters, digits and -_.!~*'()&=+$,;?/)", alias, user[i:i+3], d)
		}
		b = append(b, d)
		i += 2
	}
	return string(b), domain, nil
}

func checkAlias(a *Alias) error {
	n, err := NewAlias(a.AliasName(), a.Target())
	if err != nil {
		return err
	}
	if n.AliasName() == n.Target() {
		return errorf(ErrMalformedAlias, "alias %s: it points at itself", n.AliasName())
	}
	a.AliasUser, a.AliasDomain, a.Domain = n.AliasUser, n.AliasDomain, n.Domain
	return nil
}

// AddAlias adds one alias. Its domain must be served (ErrUnknownDomain);
// the alias name taken already is ErrAliasExists.
func (s *Store) AddAlias(ctx context.Context, a Alias) (Alias, error) {
	as := []Alias{a}
	err := s.AddAliases(ctx, as, false)
	return as[0], err
}

// AddAliases validates and adds aliases in one transaction, all or none;
// with replace the aliases stored before are deleted in the same
// transaction (bulk provisioning: `switchboard aliases import --replace`).
func (s *Store) AddAliases(ctx context.Context, as []Alias, replace bool) error {
	now := time.Now().Unix()
	domains := map[string]bool{}
	for i := range as {
		a := &as[i]
		if err := checkAlias(a); err != nil {
			return indexedAlias(err, i, len(as))
		}
		if a.Created == 0 {
			a.Created = now
		}
		served, seen := domains[a.AliasDomain]
		if !seen {
			var err error
			if served, err = s.b.DomainExists(ctx, a.AliasDomain); err != nil {
				return err
			}
			domains[a.AliasDomain] = served
		}
		if !served {
			return indexedAlias(errorf(ErrUnknownDomain, "alias %s: domain %q is not served (add it first)", a.AliasName(), a.AliasDomain), i, len(as))
		}
	}
	if len(as) == 0 && !replace {
		return nil
	}
	err := s.b.AddAliases(ctx, as, replace)
	var dup *rowExistsError
	if errors.As(err, &dup) {
		a := &as[dup.index]
		return indexedAlias(errorf(ErrAliasExists, "alias %s exists already (it reaches %s)", a.AliasName(), dup.what), dup.index, len(as))
	}
	return err
}

func indexedAlias(err error, i, n int) error {
	if n <= 1 {
		return err
	}
	var we *wordedError
	if errors.As(err, &we) {
		return &wordedError{msg: "alias " + strconv.Itoa(i+1) + " of the batch: " + we.msg, sentinel: we.sentinel}
	}
	return err
}

// rowExistsError is how a backend says which row of a batch was a
// duplicate, and what the stored row says.
type rowExistsError struct {
	index int
	what  string
}

func (e *rowExistsError) Error() string { return "row exists" }

// DeleteAlias removes the alias "alias@domain" and returns it; the alias
// may be written with escapes (see SplitAlias). An alias stored with its
// escapes (before they were decoded on the way in) is found as written.
func (s *Store) DeleteAlias(ctx context.Context, alias string) (Alias, error) {
	user, domain, err := SplitAlias(alias)
	if err != nil {
		if raw, d, rawErr := SplitAOR(strings.TrimSpace(alias)); rawErr == nil {
			// Not an alias one can add now, but maybe one stored before.
			if a, err := s.b.DeleteAlias(ctx, raw, d); !errors.Is(err, ErrNoAlias) {
				return a, err
			}
		}
		return Alias{}, err
	}
	a, err := s.b.DeleteAlias(ctx, user, domain)
	if errors.Is(err, ErrNoAlias) {
		if raw, _, _ := SplitAOR(strings.TrimSpace(alias)); raw != user {
			if a, err := s.b.DeleteAlias(ctx, raw, domain); !errors.Is(err, ErrNoAlias) {
				return a, err
			}
		}
		return a, errorf(ErrNoAlias, "no alias %s@%s", user, domain)
	}
	return a, err
}

// ListAliases returns the aliases of one alias domain, or all for "", by
// domain and name.
func (s *Store) ListAliases(ctx context.Context, domain string) ([]Alias, error) {
	if domain != "" {
		d, err := normDomain(domain)
		if err != nil {
			return nil, err
		}
		domain = d
	}
	return s.b.ListAliases(ctx, domain)
}

// AliasesVersion changes with every write to the aliases table; the
// server polls it and reloads the aliases when it moves.
func (s *Store) AliasesVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "aliases")
}

// GroupMember is one row of the grp table (OpenSIPS group module):
// User@Domain belongs to Group ("pstn", "international"). The groups
// module keeps the table in memory and answers is_user_in from it.
type GroupMember struct {
	User, Domain string
	Group        string
	Created      int64 // unix seconds
}

// MaxGroupName is the longest group name.
const MaxGroupName = 64

// CheckGroupName accepts 1-64 letters, digits, '-', '_' and '.'.
func CheckGroupName(g string) error {
	if g == "" {
		return errorf(ErrMalformedGroup, "empty group name")
	}
	if len(g) > MaxGroupName {
		return errorf(ErrMalformedGroup, "group %.20q...: longer than %d bytes", g, MaxGroupName)
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errorf(ErrMalformedGroup, "group %q: invalid character %q (letters, digits, '-', '_', '.')", g, c)
		}
	}
	return nil
}

// NewGroupMember builds a member from "user@domain" and a group name.
func NewGroupMember(aor, group string) (GroupMember, error) {
	var m GroupMember
	var err error
	if m.User, m.Domain, err = SplitAOR(strings.TrimSpace(aor)); err != nil {
		return m, errorf(ErrMalformedGroup, "group member: %v", err)
	}
	m.Group = strings.TrimSpace(group)
	return m, CheckGroupName(m.Group)
}

// AddGroupMember puts m.User@m.Domain in m.Group; a member already in it
// is ErrGroupMemberExists.
func (s *Store) AddGroupMember(ctx context.Context, m GroupMember) (GroupMember, error) {
	n, err := NewGroupMember(m.User+"@"+m.Domain, m.Group)
	if err != nil {
		return m, err
	}
	n.Created = m.Created
	if n.Created == 0 {
		n.Created = time.Now().Unix()
	}
	err = s.b.AddGroupMember(ctx, &n)
	if errors.Is(err, ErrGroupMemberExists) {
		return n, errorf(ErrGroupMemberExists, "%s@%s is in group %q already", n.User, n.Domain, n.Group)
	}
	return n, err
}

// DeleteGroupMember takes user@domain out of group.
func (s *Store) DeleteGroupMember(ctx context.Context, aor, group string) (GroupMember, error) {
	m, err := NewGroupMember(aor, group)
	if err != nil {
		return m, err
	}
	err = s.b.DeleteGroupMember(ctx, m.User, m.Domain, m.Group)
	if errors.Is(err, ErrNoGroupMember) {
		return m, errorf(ErrNoGroupMember, "%s@%s is not in group %q", m.User, m.Domain, m.Group)
	}
	return m, err
}

// ListGroupMembers returns the members of group, or every membership for
// "", by group, domain and user.
func (s *Store) ListGroupMembers(ctx context.Context, group string) ([]GroupMember, error) {
	return s.b.ListGroupMembers(ctx, group)
}

// GroupsVersion changes with every write to the grp table; the server
// polls it and reloads the groups when it moves.
func (s *Store) GroupsVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "grp")
}
