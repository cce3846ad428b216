package nathelper

import (
	"net/netip"

	"switchboard/parser"
	"switchboard/routing"
)

// FixNATedContact rewrites the host and port of every Contact URI of the
// request to the address and port the request came from (OpenSIPS and
// Kamailio fix_nated_contact()), in the copy relayed: the other side's
// requests in the dialog then come to the phone's NAT binding instead of
// its private address. User part, URI parameters, display name and header
// parameters stay. It reports whether a Contact was rewritten. For a
// REGISTER use FixNATedRegister: the registrar stores the source itself.
// Allocation-free.
func (n *NATHelper) FixNATedContact(c *routing.Ctx) bool {
	if n == nil {
		return false
	}
	var buf [64]byte
	hp := appendHostPort(buf[:0], c.SrcIP(), c.SrcPort())
	fixed := false
	var own []byte
	it := c.Msg().NameAddrs(parser.HdrContact)
	for n := 0; n < maxFixedContacts && it.Next(); n++ {
		view := hostPortView(&it.NameAddr)
		if view == nil {
			continue
		}
		if own == nil {
			own = c.R.Own(hp) // the editor keeps it until the relay
		}
		fixed = c.R.Editor().Replace(view, own) || fixed
	}
	if fixed {
		n.contactsFixed.Inc()
	}
	return fixed
}

// FixNATedContactReply is FixNATedContact in a reply route: the Contact of
// the response relayed upstream gets the address the response came from
// (a callee behind NAT answering a call; OpenSIPS fix_nated_contact() in
// onreply_route). Allocation-free.
func (n *NATHelper) FixNATedContactReply(c *routing.ReplyCtx) bool {
	if n == nil {
		return false
	}
	src := c.Source()
	if !src.IsValid() {
		return false
	}
	var buf [64]byte
	hp := appendHostPort(buf[:0], src.Addr(), src.Port())
	fixed := false
	var own []byte
	it := c.Msg().NameAddrs(parser.HdrContact)
	for n := 0; n < maxFixedContacts && it.Next(); n++ {
		view := hostPortView(&it.NameAddr)
		if view == nil {
			continue
		}
		if own == nil {
			own = c.Own(hp)
		}
		if ed := c.Editor(); ed != nil {
			fixed = ed.Replace(view, own) || fixed
		}
	}
	if fixed {
		n.contactsFixed.Inc()
	}
	return fixed
}

// maxFixedContacts is how many Contact values FixNATedContact rewrites:
// a dialog's request or response has one (OpenSIPS and Kamailio rewrite
// only that one), and each rewrite is an edit of the message's limited
// number (parser.MaxEdits), which a peer sending sixty would otherwise
// use up before the route's other edits.
const maxFixedContacts = 16

// hostPortView returns the "host[:port]" of a sip or sips Contact URI, a
// view into the message; nil for "*", other schemes or a bad URI.
func hostPortView(na *parser.NameAddr) []byte {
	if na.Star {
		return nil
	}
	var u parser.URI
	if u.Parse(na.URI) != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) || len(u.Host) == 0 {
		return nil
	}
	start := offsetIn(na.URI, u.Host)
	end := start + len(u.Host)
	if end < len(na.URI) && na.URI[end] == ':' {
		end++
		for end < len(na.URI) && na.URI[end] >= '0' && na.URI[end] <= '9' {
			end++
		}
	}
	return na.URI[start:end]
}

// appendHostPort writes "192.0.2.1:5060" or "[2001:db8::1]:5060".
func appendHostPort(dst []byte, a netip.Addr, port uint16) []byte {
	a = a.Unmap().WithZone("") // a zone means nothing to the other side
	if a.Is6() {
		dst = append(dst, '[')
		dst = a.AppendTo(dst)
		dst = append(dst, ']')
	} else {
		dst = a.AppendTo(dst)
	}
	dst = append(dst, ':')
	return appendUint(dst, uint64(port))
}

func appendUint(dst []byte, v uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// offsetIn returns the offset of sub, a sub-slice of b, inside b.
func offsetIn(b, sub []byte) int {
	return cap(b) - cap(sub)
}
