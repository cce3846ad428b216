package store

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DispatcherDest is one row of the dispatcher table, the destinations of
// the dispatcher module (OpenSIPS: a row of its dispatcher table): an
// address in a set, with the state the operator gave it, a weight, a
// priority, attributes handed to routes and whether it is probed.
type DispatcherDest struct {
	ID int64
	// SetID is the set the destination belongs to, 0-65535 (setid).
	SetID int
	// Destination is where requests are sent, a SIP URI without user
	// part whose host is an IP address: "sip:192.0.2.10",
	// "sip:[2001:db8::1]:5080;transport=tcp", "sips:192.0.2.10". It is
	// stored in canonical form (ParseDispatcherURI): the port written
	// out, the transport parameter only when it is not the scheme's.
	Destination string
	// Socket is the local address OPTIONS probes are sent from,
	// "proto:ip[:port]" as OpenSIPS writes it ("udp:192.0.2.1:5060"), or
	// "" for the address the kernel picks. Its transport must be the
	// destination's.
	Socket string
	// State is the state the operator gave the destination:
	// DispatcherActive, DispatcherInactive or DispatcherProbing.
	State int
	// Weight is the destination's share in the weighted algorithms,
	// 1-1000.
	Weight int
	// Priority orders the set, higher first, 0-65535: the "first"
	// algorithm takes the highest active one, and fail-over tries the
	// others in this order.
	Priority int
	// Attrs is opaque text handed to routes with the destination
	// (attrs), at most 255 bytes.
	Attrs string
	// ProbeMode 1 probes the destination with OPTIONS while it is active
	// too; 0 only while it is probing (after failures).
	ProbeMode int
	// Description is free text for operators, at most 255 bytes.
	Description string
	Created     int64 // unix seconds
}

// The states of a dispatcher destination, numbered as OpenSIPS's state
// column.
const (
	// DispatcherActive: selected by the algorithms.
	DispatcherActive = 0
	// DispatcherInactive: disabled by an operator; never selected nor
	// probed until an operator activates it again.
	DispatcherInactive = 1
	// DispatcherProbing: considered down; not selected, probed with
	// OPTIONS until it answers.
	DispatcherProbing = 2
)

// DispatcherStateNames are the states by number, as the CLI, the
// management API and the CSV files write them.
var DispatcherStateNames = [3]string{"active", "inactive", "probing"}

// ParseDispatcherState parses a state name ("active", "inactive",
// "probing"), OpenSIPS's letters ("a", "i", "p") or its numbers ("0",
// "1", "2").
func ParseDispatcherState(s string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "active", "a", "0":
		return DispatcherActive, nil
	case "inactive", "i", "1":
		return DispatcherInactive, nil
	case "probing", "p", "2":
		return DispatcherProbing, nil
	}
	return 0, errorf(ErrMalformedDispatcher, "state %q: want active, inactive or probing", s)
}

// Limits of dispatcher fields.
const (
	MaxDispatcherSet      = 65535
	MaxDispatcherWeight   = 1000
	MaxDispatcherPriority = 65535
	maxDispatcherText     = 255
	maxDispatcherURI      = 128
)

// DispatcherTarget is a parsed destination: the transport and the address
// requests go to.
type DispatcherTarget struct {
	Proto string // "udp", "tcp" or "tls"
	Addr  netip.AddrPort
}

// ParseDispatcherURI parses a destination ("sip:192.0.2.10:5060",
// "sip:[2001:db8::1];transport=tcp", "sips:192.0.2.10") and returns where
// it points and its canonical text: lower-case scheme, the address in
// canonical form, the port written out (5060, or 5061 for TLS), and
// ";transport=" only for TCP, or for TLS under the sip scheme. Host names
// are refused: the dispatcher sends to addresses and resolves nothing.
func ParseDispatcherURI(s string) (DispatcherTarget, string, error) {
	var t DispatcherTarget
	raw := strings.TrimSpace(s)
	bad := func(format string, args ...any) (DispatcherTarget, string, error) {
		return t, "", errorf(ErrMalformedDispatcher, "destination %q: "+format, append([]any{s}, args...)...)
	}
	if raw == "" {
		return bad("empty")
	}
	if len(raw) > maxDispatcherURI {
		return bad("longer than %d bytes", maxDispatcherURI)
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	scheme = strings.ToLower(scheme)
	if !ok || scheme != "sip" && scheme != "sips" {
		return bad("want a sip: or sips: URI such as sip:192.0.2.10:5060")
	}
	if strings.ContainsAny(rest, "@?") {
		return bad("a destination has no user part nor headers: sip:host[:port][;transport=udp|tcp|tls]")
	}
	hostport, params, _ := strings.Cut(rest, ";")
	t.Proto = "udp"
	if scheme == "sips" {
		t.Proto = "tls"
	}
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			name, value, _ := strings.Cut(p, "=")
			if !strings.EqualFold(name, "transport") {
				return bad("parameter %q: only transport=udp|tcp|tls is accepted", p)
			}
			v := strings.ToLower(value)
			switch {
			case v != "udp" && v != "tcp" && v != "tls":
				return bad("transport %q: want udp, tcp or tls", value)
			case scheme == "sips" && v != "tls" && v != "tcp":
				return bad("a sips: destination is reached over TLS, not %s", v)
			case scheme == "sips":
				v = "tls"
			}
			t.Proto = v
		}
	}
	host, portText := hostport, ""
	if !strings.HasPrefix(hostport, "[") && strings.Count(hostport, ":") > 1 {
		return bad("write IPv6 addresses in brackets: sip:[2001:db8::1]:5060")
	}
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return bad("unclosed [ in the IPv6 address")
		}
		host, portText = hostport[1:end], hostport[end+1:]
		if portText != "" && portText[0] != ':' {
			return bad("unexpected %q after the IPv6 address", portText)
		}
		portText = strings.TrimPrefix(portText, ":")
	} else if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		host, portText = hostport[:i], hostport[i+1:]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return bad("host %q is not an IP address (the dispatcher sends to addresses; it does not resolve names)", host)
	}
	if strings.Contains(hostport, "[") != a.Is6() || a.Is4In6() {
		return bad("write IPv4 addresses plainly and IPv6 addresses in brackets")
	}
	port := 5060
	if t.Proto == "tls" {
		port = 5061
	}
	if portText != "" || strings.HasSuffix(hostport, ":") {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 || portText[0] == '+' {
			return bad("port %q: want 1-65535", portText)
		}
		port = n
	}
	t.Addr = netip.AddrPortFrom(a, uint16(port))
	canon := scheme + ":" + t.Addr.String()
	switch {
	case t.Proto == "tcp":
		canon += ";transport=tcp"
	case t.Proto == "tls" && scheme == "sip":
		canon += ";transport=tls"
	}
	return t, canon, nil
}

// ParseDispatcherSocket parses a socket ("udp:192.0.2.1:5060",
// "tcp:[2001:db8::1]", "udp:192.0.2.1") into its transport and address
// (port 0 when not given) and returns its canonical text.
func ParseDispatcherSocket(s string) (proto string, addr netip.AddrPort, canon string, err error) {
	bad := func(format string, args ...any) (string, netip.AddrPort, string, error) {
		return "", netip.AddrPort{}, "", errorf(ErrMalformedDispatcher, "socket %q: "+format, append([]any{s}, args...)...)
	}
	p, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	p = strings.ToLower(p)
	if !ok || p != "udp" && p != "tcp" && p != "tls" {
		return bad("want proto:ip[:port] such as udp:192.0.2.1:5060")
	}
	if ap, err := netip.ParseAddrPort(rest); err == nil && ap.Addr().Zone() == "" && !ap.Addr().Is4In6() {
		return p, ap, p + ":" + ap.String(), nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || a.Is4In6() || a.Is6() != strings.HasPrefix(rest, "[") {
		return bad("%q is not an IP address with an optional port (IPv6 in brackets)", rest)
	}
	canon = p + ":" + a.String()
	if a.Is6() {
		canon = p + ":[" + a.String() + "]"
	}
	return p, netip.AddrPortFrom(a, 0), canon, nil
}

// CheckDispatcherDest validates d and puts its destination and socket in
// canonical form. Errors name the field and wrap ErrMalformedDispatcher:
// `dispatcher destination: weight: 0: must be between 1 and 1000`.
func CheckDispatcherDest(d *DispatcherDest) error {
	if d.SetID < 0 || d.SetID > MaxDispatcherSet {
		return dispatcherErr("setid", "%d: must be between 0 and %d", d.SetID, MaxDispatcherSet)
	}
	t, canon, err := ParseDispatcherURI(d.Destination)
	if err != nil {
		return dispatcherErr("destination", "%s", strings.TrimPrefix(err.Error(), "destination "))
	}
	d.Destination = canon
	if strings.TrimSpace(d.Socket) != "" {
		proto, addr, canon, err := ParseDispatcherSocket(d.Socket)
		if err != nil {
			return dispatcherErr("socket", "%s", strings.TrimPrefix(err.Error(), "socket "))
		}
		if proto != t.Proto {
			return dispatcherErr("socket", "%q is %s but the destination is reached over %s", d.Socket, proto, t.Proto)
		}
		if addr.Addr().Is4() != t.Addr.Addr().Is4() {
			return dispatcherErr("socket", "%q is not of the destination's address family", d.Socket)
		}
		d.Socket = canon
	} else {
		d.Socket = ""
	}
	if d.State < DispatcherActive || d.State > DispatcherProbing {
		return dispatcherErr("state", "%d: want 0 (active), 1 (inactive) or 2 (probing)", d.State)
	}
	if d.Weight < 1 || d.Weight > MaxDispatcherWeight {
		return dispatcherErr("weight", "%d: must be between 1 and %d", d.Weight, MaxDispatcherWeight)
	}
	if d.Priority < 0 || d.Priority > MaxDispatcherPriority {
		return dispatcherErr("priority", "%d: must be between 0 and %d", d.Priority, MaxDispatcherPriority)
	}
	if d.ProbeMode != 0 && d.ProbeMode != 1 {
		return dispatcherErr("probe_mode", "%d: want 0 (probe while probing) or 1 (probe always)", d.ProbeMode)
	}
	if err := checkDispatcherText("attrs", d.Attrs); err != nil {
		return err
	}
	return checkDispatcherText("description", d.Description)
}

func checkDispatcherText(field, v string) error {
	if len(v) > maxDispatcherText {
		return dispatcherErr(field, "%.20q...: longer than %d bytes", v, maxDispatcherText)
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, isControl) {
		return dispatcherErr(field, "%q: control characters or invalid UTF-8", v)
	}
	return nil
}

func dispatcherErr(field, format string, args ...any) error {
	return errorf(ErrMalformedDispatcher, "dispatcher destination: "+field+": "+format, args...)
}

// dispatcherExistsError is a backend's report that row index of a batch
// is already in its set, as the stored row id.
type dispatcherExistsError struct {
	index int
	id    int64
}

func (e *dispatcherExistsError) Error() string { return "dispatcher destination exists" }
func (e *dispatcherExistsError) Unwrap() error { return ErrDispatcherExists }

// AddDispatcherDest validates d (CheckDispatcherDest), stores it and
// returns it as stored, with its ID. A destination already in the set is
// ErrDispatcherExists.
func (s *Store) AddDispatcherDest(ctx context.Context, d DispatcherDest) (DispatcherDest, error) {
	ds := []DispatcherDest{d}
	if err := s.AddDispatcherDests(ctx, ds); err != nil {
		return DispatcherDest{}, err
	}
	return ds[0], nil
}

// AddDispatcherDests validates and stores every destination of ds in one
// transaction (all or none), filling in their IDs: for imports, where one
// version change (one reload of the running server) is better than
// thousands.
func (s *Store) AddDispatcherDests(ctx context.Context, ds []DispatcherDest) error {
	if err := prepareDispatcherDests(ds); err != nil {
		return err
	}
	return s.dispatcherExists(s.b.AddDispatcherDests(ctx, ds, false), ds)
}

// ReplaceDispatcherDests replaces the whole table by ds in one transaction:
// a running server loads the new table at once, never an empty one in
// between. Destinations that stay keep their runtime state there (it is
// keyed by set and destination, not by row id).
func (s *Store) ReplaceDispatcherDests(ctx context.Context, ds []DispatcherDest) error {
	if err := prepareDispatcherDests(ds); err != nil {
		return err
	}
	return s.dispatcherExists(s.b.AddDispatcherDests(ctx, ds, true), ds)
}

func prepareDispatcherDests(ds []DispatcherDest) error {
	now := time.Now().Unix()
	for i := range ds {
		if err := CheckDispatcherDest(&ds[i]); err != nil {
			if len(ds) > 1 {
				return errorf(ErrMalformedDispatcher, "entry %d: %v", i+1, err)
			}
			return err
		}
		if ds[i].Created == 0 {
			ds[i].Created = now
		}
	}
	return nil
}

func (s *Store) dispatcherExists(err error, ds []DispatcherDest) error {
	var e *dispatcherExistsError
	if !errors.As(err, &e) {
		return err
	}
	d := ds[e.index]
	msg := "destination " + d.Destination + " is already in set " + strconv.Itoa(d.SetID)
	if e.id != 0 {
		msg += " (id " + strconv.FormatInt(e.id, 10) + ")"
	}
	if len(ds) > 1 {
		msg = "entry " + strconv.Itoa(e.index+1) + ": " + msg
	}
	return errorf(ErrDispatcherExists, "%s", msg)
}

// DeleteDispatcherDest removes the destination with id and returns it.
func (s *Store) DeleteDispatcherDest(ctx context.Context, id int64) (DispatcherDest, error) {
	d, err := s.b.DeleteDispatcherDest(ctx, id, 0, "")
	if errors.Is(err, ErrNoDispatcher) {
		return d, errorf(ErrNoDispatcher, "no dispatcher destination with id %d", id)
	}
	return d, err
}

// DeleteDispatcherDestOf removes destination (in any form
// ParseDispatcherURI takes) from set and returns it.
func (s *Store) DeleteDispatcherDestOf(ctx context.Context, set int, destination string) (DispatcherDest, error) {
	_, canon, err := ParseDispatcherURI(destination)
	if err != nil {
		return DispatcherDest{}, err
	}
	d, err := s.b.DeleteDispatcherDest(ctx, 0, set, canon)
	if errors.Is(err, ErrNoDispatcher) {
		return d, errorf(ErrNoDispatcher, "destination %s is not in set %d", canon, set)
	}
	return d, err
}

// SetDispatcherState stores the state an operator gave destination of set
// (OpenSIPS persistent_state) and returns the row.
func (s *Store) SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error) {
	_, canon, err := ParseDispatcherURI(destination)
	if err != nil {
		return DispatcherDest{}, err
	}
	if state < DispatcherActive || state > DispatcherProbing {
		return DispatcherDest{}, dispatcherErr("state", "%d: want 0 (active), 1 (inactive) or 2 (probing)", state)
	}
	d, err := s.b.SetDispatcherState(ctx, set, canon, state)
	if errors.Is(err, ErrNoDispatcher) {
		return d, errorf(ErrNoDispatcher, "destination %s is not in set %d", canon, set)
	}
	return d, err
}

// ListDispatcherDests returns every destination by set, priority (highest
// first) and ID.
func (s *Store) ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error) {
	return s.b.ListDispatcherDests(ctx)
}

// DispatcherVersion is a number that changes with every write to the
// dispatcher table, by this process or another sharing the database: the
// server polls it and reloads the table when it moves.
func (s *Store) DispatcherVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "dispatcher")
}
