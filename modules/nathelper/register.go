package nathelper

import (
	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/routing"
)

// FixNATedRegister marks a REGISTER found behind NAT for the registrar
// (OpenSIPS and Kamailio fix_nated_register(), then save()): o.NAT makes
// every contact of it reached at the address the REGISTER came from and
// pinged by the keepalive (nathelper.ping_interval), whatever the
// registrar's own tests say. Call it before reg.SaveWith(c, *o).
//
// The registrar already keeps the REGISTER's source with every binding
// (registrations.list shows it as "received", the store as its received
// column): the packet's source address and port, never a header's word,
// so a phone cannot make the proxy send calls or pings to a third
// address by writing one into its Contact, Via or a received parameter.
// What fix_nated_register adds in OpenSIPS (the source in an AVP that
// save() stores) is there already; what it decides here is that lookup
// uses that address.
//
// Path-aware: a REGISTER with a Path header came through an edge proxy,
// whose address is the source; its contacts are stored as registered and
// reached through the Path (the edge faces the phone's NAT and pings it),
// and FixNATedRegister returns false.
func (n *NATHelper) FixNATedRegister(c *routing.Ctx, o *registrar.SaveOptions) bool {
	if n == nil || !c.IsMethod(parser.MethodRegister) || c.Msg().Has(parser.HdrPath) {
		return false
	}
	o.NAT = true
	n.registersFixed.Inc()
	return true
}

// AddRcvParam is OpenSIPS's add_rcv_param(): there it adds the source
// address as a received parameter to each Contact for save() to store and
// lookup() to use. The registrar here stores the source with every
// binding whatever the route does, so add_rcv_param is fix_nated_register:
// the bindings are reached at that source (see FixNATedRegister). A
// received parameter a phone writes itself is kept as one of its contact
// parameters and never used.
func (n *NATHelper) AddRcvParam(c *routing.Ctx, o *registrar.SaveOptions) bool {
	return n.FixNATedRegister(c, o)
}
