package nathelper

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"switchboard/parser"
	"switchboard/parser/sdp"
	"switchboard/routing"
)

// Flags select the tests of NATUACTest, with the bit values of OpenSIPS's
// nat_uac_test (whose 3.x scripts name them, as the configuration does
// here); any test that holds makes the result true.
type Flags uint16

const (
	// PrivateContact (1, "private-contact"): a Contact URI's host is a
	// private address: RFC 1918, RFC 6598 (100.64/10), IPv6 fc00::/7,
	// and 127/8 and ::1 when nathelper.private_loopback is on.
	PrivateContact Flags = 1
	// DiffIPSrcVia (2, "diff-ip-src-via"): the top Via's sent-by host is
	// not the source address (a host name never is): the received test.
	DiffIPSrcVia Flags = 2
	// PrivateVia (4, "private-via"): the top Via's sent-by is a private
	// address.
	PrivateVia Flags = 4
	// PrivateSDP (8, "private-sdp"): a c= line of the SDP body names a
	// private address.
	PrivateSDP Flags = 8
	// DiffPortSrcVia (16, "diff-port-src-via"): the top Via's port (5060,
	// 5061 over TLS, when absent) is not the source port.
	DiffPortSrcVia Flags = 16
	// DiffIPSrcContact (32, "diff-ip-src-contact"): a Contact URI's host
	// is not the source address.
	DiffIPSrcContact Flags = 32
	// DiffPortSrcContact (64, "diff-port-src-contact"): a Contact URI's
	// port (5060, 5061 for sips, when absent) is not the source port.
	DiffPortSrcContact Flags = 64
	// CarrierGradeNAT (128, "carrier-grade-nat"): the private tests also
	// count RFC 6333's 192.0.0.0/29 (DS-Lite) as private.
	CarrierGradeNAT Flags = 128
	// Flow (256, "flow"): RFC 5626, the phone asks to be reached over the
	// flow it registered on: a Contact URI with ";ob", or a Contact with
	// +sip.instance and reg-id. Not an OpenSIPS flag.
	Flow Flags = 256
)

// DefaultFlags are the tests the provider route set runs on requests:
// nat_uac_test("19") of the OpenSIPS and Kamailio NAT scripts (private
// Contact, received, rport) and RFC 5626 flows, the tests the registrar
// runs on its own (registrar.nat_tests).
const DefaultFlags = PrivateContact | DiffIPSrcVia | DiffPortSrcVia | Flow

// ReplyFlags are the tests that mean something for a response: its
// Contact and SDP against the address it came from. The Via tests look at
// the top Via, which in a response is ours.
const ReplyFlags = PrivateContact | PrivateSDP | DiffIPSrcContact | DiffPortSrcContact | CarrierGradeNAT

var flagNames = []struct {
	name string
	f    Flags
}{
	{"private-contact", PrivateContact},
	{"diff-ip-src-via", DiffIPSrcVia},
	{"private-via", PrivateVia},
	{"private-sdp", PrivateSDP},
	{"diff-port-src-via", DiffPortSrcVia},
	{"diff-ip-src-contact", DiffIPSrcContact},
	{"diff-port-src-contact", DiffPortSrcContact},
	{"carrier-grade-nat", CarrierGradeNAT},
	{"flow", Flow},
}

// ParseFlags turns names ("private-contact") or OpenSIPS's old decimal
// values ("19") into Flags.
func ParseFlags(names []string) (Flags, error) {
	var f Flags
	for _, n := range names {
		if v, err := strconv.ParseUint(n, 10, 16); err == nil {
			if Flags(v)&^allFlags != 0 {
				return 0, fmt.Errorf("nat_uac_test value %s has bits no test has (known: 1-256)", n)
			}
			f |= Flags(v)
			continue
		}
		found := false
		for _, x := range flagNames {
			if n == x.name {
				f |= x.f
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown nat_uac_test flag %q; known: %s", n, strings.Join(FlagNames(), ", "))
		}
	}
	return f, nil
}

const allFlags = PrivateContact | DiffIPSrcVia | PrivateVia | PrivateSDP | DiffPortSrcVia | DiffIPSrcContact | DiffPortSrcContact | CarrierGradeNAT | Flow

// FlagNames lists the names ParseFlags knows.
func FlagNames() []string {
	out := make([]string, 0, len(flagNames))
	for _, x := range flagNames {
		out = append(out, x.name)
	}
	return out
}

// Names returns the names of the tests in f.
func (f Flags) Names() []string {
	out := []string{}
	for _, x := range flagNames {
		if f&x.f != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// NATUACTest reports whether the request comes from behind NAT by the
// tests in f (OpenSIPS/Kamailio nat_uac_test(flags)). It reads only the
// request and its source; every header can be forged, so a true result
// is taken to mean one thing only: requests and responses for this peer
// go to the address its packet came from, which no header chooses. It
// allocates nothing.
func (n *NATHelper) NATUACTest(c *routing.Ctx, f Flags) bool {
	if n == nil {
		return false
	}
	m := c.Msg()
	src := netip.AddrPortFrom(c.SrcIP().Unmap(), c.SrcPort())
	loop := n.privateLoopback.Load()
	if f&(DiffIPSrcVia|PrivateVia|DiffPortSrcVia) != 0 && n.viaTest(m, src, f, loop) {
		return n.nated(true)
	}
	if f&(PrivateContact|DiffIPSrcContact|DiffPortSrcContact|Flow) != 0 && contactTest(m, src, f, loop) {
		return n.nated(true)
	}
	return n.nated(f&PrivateSDP != 0 && n.sdpTest(m, f, loop))
}

// NATUACTestReply is NATUACTest for a response, against the address it
// came from: its Contact and SDP tests (the flags of ReplyFlags; the Via
// tests are false, since a response's top Via is ours).
func (n *NATHelper) NATUACTestReply(c *routing.ReplyCtx, f Flags) bool {
	if n == nil {
		return false
	}
	m := c.Msg()
	src := c.Source()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	loop := n.privateLoopback.Load()
	if f&(PrivateContact|DiffIPSrcContact|DiffPortSrcContact|Flow) != 0 && contactTest(m, src, f, loop) {
		return true
	}
	return f&PrivateSDP != 0 && n.sdpTest(m, f, loop)
}

// nated counts a request found behind NAT.
func (n *NATHelper) nated(yes bool) bool {
	if yes {
		n.natedTotal.Inc()
	}
	return yes
}

func (n *NATHelper) viaTest(m *parser.Message, src netip.AddrPort, f Flags, loop bool) bool {
	v := m.TopVia()
	host := hostAddr(v.Host)
	switch {
	case f&DiffIPSrcVia != 0 && host != src.Addr():
		return true
	case f&PrivateVia != 0 && isPrivate(host, f, loop):
		return true
	}
	if f&DiffPortSrcVia != 0 {
		port := uint16(v.Port)
		if port == 0 {
			port = 5060
			if parser.EqualFold(v.Transport, []byte("TLS")) {
				port = 5061
			}
		}
		return port != src.Port()
	}
	return false
}

// contactTest runs the Contact tests on every Contact value.
func contactTest(m *parser.Message, src netip.AddrPort, f Flags, loop bool) bool {
	it := m.NameAddrs(parser.HdrContact)
	for it.Next() {
		na := &it.NameAddr
		if na.Star {
			continue
		}
		var u parser.URI
		if u.Parse(na.URI) != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) {
			continue
		}
		host := hostAddr(u.Host)
		switch {
		case f&PrivateContact != 0 && isPrivate(host, f, loop):
			return true
		case f&DiffIPSrcContact != 0 && host != src.Addr():
			return true
		case f&DiffPortSrcContact != 0 && uriPort(&u) != src.Port():
			return true
		case f&Flow != 0 && isFlow(na, &u):
			return true
		}
	}
	return false
}

// isFlow: RFC 5626 §4.2, a Contact URI with ";ob", or +sip.instance with
// reg-id.
func isFlow(na *parser.NameAddr, u *parser.URI) bool {
	if _, ob := u.Param("ob"); ob {
		return true
	}
	return na.Instance() != nil && na.RegID() > 0
}

// sdpTest reports whether a c= line of the SDP body names a private
// address. A body that is no SDP, or does not parse, holds none.
func (n *NATHelper) sdpTest(m *parser.Message, f Flags, loop bool) bool {
	body := m.Body()
	if len(body) == 0 || !isSDP(m) {
		return false
	}
	w := n.sdpWork.Get().(*sdpWork)
	defer n.sdpWork.Put(w)
	s := &w.s
	if s.Parse(body) != nil {
		return false
	}
	if c, ok := s.Connection(); ok && privateConn(c, f, loop) {
		return true
	}
	for i := 0; i < s.NumMedia(); i++ {
		md := s.Media(i)
		if !md.HasConnection() {
			continue
		}
		if c, ok := md.Connection(); ok && privateConn(c, f, loop) {
			return true
		}
	}
	return false
}

func privateConn(c sdp.Connection, f Flags, loop bool) bool {
	a, ok := c.Addr()
	return ok && isPrivate(a.Unmap(), f, loop)
}

// isSDP: Content-Type application/sdp (parameters and case aside).
func isSDP(m *parser.Message) bool {
	return parser.EqualFold(m.MediaType(), sbSDP)
}

var (
	shared = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
	dsLite = netip.MustParsePrefix("192.0.0.0/29")  // RFC 6333
)

// isPrivate: RFC 1918, RFC 6598 and IPv6 unique local addresses; RFC 6333
// with CarrierGradeNAT; loopback when configured.
func isPrivate(a netip.Addr, f Flags, loop bool) bool {
	switch {
	case !a.IsValid():
		return false
	case a.IsPrivate() || shared.Contains(a):
		return true
	case f&CarrierGradeNAT != 0 && dsLite.Contains(a):
		return true
	}
	return loop && a.IsLoopback()
}

// hostAddr parses an IP host (IPv6 with or without brackets), unmapped;
// the zero Addr for a host name.
func hostAddr(host []byte) netip.Addr {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	a, ok := sdp.ParseAddr(host)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// uriPort is the URI's port, or its scheme's default.
func uriPort(u *parser.URI) uint16 {
	if u.Port != 0 {
		return uint16(u.Port)
	}
	if u.Scheme == parser.SchemeSIPS {
		return 5061
	}
	return 5060
}
