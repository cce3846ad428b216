package registrar

import (
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/transport"
)

// NATTests selects the tests that tell a phone behind NAT, whose requests
// must then go to the address its REGISTER came from rather than to its
// Contact. They are the tests of OpenSIPS/Kamailio nathelper's
// nat_uac_test(flags), named; any one that holds marks the contact.
type NATTests uint16

const (
	// NATPrivateContact: the Contact host is an RFC 1918 or RFC 6598
	// address (or IPv6 fc00::/7). nat_uac_test flag 1.
	NATPrivateContact NATTests = 1 << iota
	// NATViaReceived: the top Via's sent-by host is not the source
	// address (a host name counts as different). Flag 2.
	NATViaReceived
	// NATPrivateVia: the top Via's sent-by is a private address. Flag 4.
	NATPrivateVia
	// NATViaRPort: the top Via's sent-by port (5060, 5061 for TLS, when
	// absent) is not the source port. Flag 16.
	NATViaRPort
	// NATContactPort: the Contact's port is not the source port. Flag 64
	// in OpenSIPS (diff-port-src-contact), 128 in Kamailio.
	NATContactPort
	// NATFlow: the phone asks to be reached over its flow (RFC 5626: the
	// Contact URI has ;ob, or the contact has +sip.instance and reg-id).
	NATFlow

	// NATNone turns every test off (a zero NATTests in Config means
	// DefaultNATTests).
	NATNone NATTests = 1 << 15
)

// DefaultNATTests is what a provider with no edge proxy in front wants:
// nat_uac_test("19") (private Contact, Via received, Via rport), the usual
// choice of OpenSIPS and Kamailio scripts, plus RFC 5626 flows.
const DefaultNATTests = NATPrivateContact | NATViaReceived | NATViaRPort | NATFlow

var natTestNames = []struct {
	name string
	t    NATTests
}{
	{"private_contact", NATPrivateContact},
	{"via_received", NATViaReceived},
	{"private_via", NATPrivateVia},
	{"via_rport", NATViaRPort},
	{"contact_port", NATContactPort},
	{"flow", NATFlow},
}

// ParseNATTests turns the names of the configuration key registrar.nat_tests
// into NATTests; an empty list is NATNone.
func ParseNATTests(names []string) (NATTests, error) {
	var t NATTests
	for _, n := range names {
		found := false
		for _, x := range natTestNames {
			if n == x.name {
				t |= x.t
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown NAT test %q; known: %s", n, strings.Join(NATTestNames(), ", "))
		}
	}
	if t == 0 {
		t = NATNone
	}
	return t, nil
}

// NATTestNames lists the names ParseNATTests knows.
func NATTestNames() []string {
	var out []string
	for _, x := range natTestNames {
		out = append(out, x.name)
	}
	return out
}

// Names returns the names of the tests in t.
func (t NATTests) Names() []string {
	out := []string{}
	for _, x := range natTestNames {
		if t&x.t != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// natted decides whether requests to contact u go to the REGISTER's
// source: the configured tests for an authenticated REGISTER without Path;
// never for an authenticated REGISTER with Path (the edge proxy that added
// it deals with its side, and requests follow the Path); and always, for a
// REGISTER that was not authenticated, when the contact or a Path points
// anywhere but the source, so that nobody can make this proxy send calls
// to an address of their choosing.
func (r *Registrar) natted(c *routing.Ctx, u *parser.URI, ob, flow, hasPath, authenticated bool) bool {
	if !authenticated {
		return hasPath || !contactIsSource(u, c.SrcIP(), c.SrcPort())
	}
	if hasPath {
		return false
	}
	t := r.natTests
	src := c.SrcIP().Unmap()
	switch {
	case t&NATPrivateContact != 0 && isPrivate(hostAddr(u.Host)):
		return true
	case t&NATContactPort != 0 && uriPort(u) != c.SrcPort():
		return true
	case t&NATFlow != 0 && (ob || flow):
		return true
	}
	if t&(NATViaReceived|NATPrivateVia|NATViaRPort) != 0 {
		v := c.Msg().TopVia()
		via := hostAddr(v.Host)
		port := uint16(v.Port)
		if port == 0 {
			port = 5060
			if parser.EqualFold(v.Transport, []byte("TLS")) {
				port = 5061
			}
		}
		switch {
		case t&NATViaReceived != 0 && via != src:
			return true
		case t&NATPrivateVia != 0 && isPrivate(via):
			return true
		case t&NATViaRPort != 0 && port != c.SrcPort():
			return true
		}
	}
	return false
}

// contactIsSource reports whether the contact's host and port are where
// the REGISTER came from.
func contactIsSource(u *parser.URI, src netip.Addr, srcPort uint16) bool {
	a := hostAddr(u.Host)
	return a.IsValid() && a == src.Unmap() && uriPort(u) == srcPort
}

// hostAddr parses an IP host (IPv6 with or without brackets); the zero
// Addr for a host name.
func hostAddr(host []byte) netip.Addr {
	if len(host) > 1 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	if len(host) == 0 || !(host[0] >= '0' && host[0] <= '9' || host[0] == ':' || strings.IndexByte(unsafe.String(unsafe.SliceData(host), len(host)), ':') >= 0) {
		return netip.Addr{}
	}
	// A string view of the message bytes: a converted copy would escape
	// into ParseAddr's error and allocate.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(host), len(host)))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// uriPort is the URI's port, or the default of its scheme.
func uriPort(u *parser.URI) uint16 {
	if u.Port != 0 {
		return uint16(u.Port)
	}
	if u.Scheme == parser.SchemeSIPS {
		return 5061
	}
	return 5060
}

// shared is RFC 6598's carrier-grade NAT range.
var shared = netip.MustParsePrefix("100.64.0.0/10")

// isPrivate: RFC 1918, RFC 6598 and IPv6 unique local addresses.
func isPrivate(a netip.Addr) bool {
	return a.IsValid() && (a.IsPrivate() || shared.Contains(a))
}

// pathHop is where a request to a binding with Path goes: the first Path
// URI (RFC 3327: the Path becomes the request's Route set, and the next hop
// is its first entry). ok is false when the first URI does not name an IP
// address; the REGISTER's source is used then.
func pathHop(path []byte) (transport.Proto, netip.AddrPort, bool) {
	u, err := parser.ParseURI(firstPathURI(path))
	if err != nil {
		return 0, netip.AddrPort{}, false
	}
	a := hostAddr(u.Host)
	if !a.IsValid() {
		return 0, netip.AddrPort{}, false
	}
	proto := transport.UDP
	if u.Scheme == parser.SchemeSIPS {
		proto = transport.TLS
	}
	if tp := u.Transport(); tp != nil {
		p, ok := transport.ParseProto(string(tp))
		if !ok {
			return 0, netip.AddrPort{}, false
		}
		proto = p
	}
	return proto, netip.AddrPortFrom(a, uriPort(&u)), true
}

// firstPathURI returns the URI of the first Path value: a Path value is
// always a name-addr (RFC 3327 §4), so it is the text inside the first
// "<" ">" outside a quoted display name.
func firstPathURI(path []byte) []byte {
	quoted := false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			for j := i + 1; j < len(path); j++ {
				if path[j] == '>' {
					return path[i+1 : j]
				}
			}
			return nil
		}
	}
	return nil
}
