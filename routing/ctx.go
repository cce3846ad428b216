package routing

import (
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"switchboard/parser"
	"switchboard/transport"
	"switchboard/txn"
)

// Ctx is what a request route sees: the request, where it came from, and
// the actions a route can take. It is reused: valid only during the route
// call (use Suspend to act later).
//
// Read accessors return views into the request; they stay valid during the
// route call and must be copied to be kept.
type Ctx struct {
	// R is the transaction layer's handle, for what this vocabulary lacks.
	R   *txn.Request
	Env *Env

	ruri    parser.URI
	ruriSt  int8 // 0 not parsed, 1 parsed, -1 unparsable
	fromURI parser.URI
	fromSt  int8
	toURI   parser.URI
	toSt    int8
	buf     []byte // scratch for rewritten URIs
	hdr     []byte // scratch for reply headers
}

func (c *Ctx) reset(r *txn.Request, env *Env) {
	c.R, c.Env = r, env
	c.ruriSt, c.fromSt, c.toSt = 0, 0, 0
}

// Msg is the parsed request.
func (c *Ctx) Msg() *parser.Message { return c.R.Msg }

// ---- methods and headers ----

// Method returns the request method (OpenSIPS: $rm).
func (c *Ctx) Method() parser.Method { return c.R.Msg.Method() }

// IsMethod reports whether the method is one of ms (OpenSIPS:
// is_method("INVITE|BYE")).
func (c *Ctx) IsMethod(ms ...parser.Method) bool {
	m := c.R.Msg.Method()
	for _, x := range ms {
		if m == x {
			return true
		}
	}
	return false
}

// HasToTag reports whether the To header carries a tag, i.e. the request
// is inside a dialog (OpenSIPS: has_totag()).
func (c *Ctx) HasToTag() bool { return c.R.HasToTag() }

// Header returns the first value of the header called name, compact forms
// and case folded (OpenSIPS: $hdr(name)); nil when absent.
func (c *Ctx) Header(name string) []byte { return c.R.Msg.GetByName(sbytes(name)) }

// HasHeader reports whether the header is present (OpenSIPS:
// is_present_hf("name")).
func (c *Ctx) HasHeader(name string) bool { return c.Header(name) != nil }

// AppendHeader adds "name: value" to the relayed request (OpenSIPS:
// append_hf("name: value\r\n")).
func (c *Ctx) AppendHeader(name string, value []byte) bool {
	return c.R.Editor().AddHeader(name, value)
}

// RemoveHeader removes every header called name from the relayed request
// (OpenSIPS: remove_hf("name")).
func (c *Ctx) RemoveHeader(name string) bool {
	h := parser.LookupHeader(sbytes(name))
	if h != parser.HdrOther {
		return c.R.Editor().RemoveHeaders(h)
	}
	return c.R.Editor().RemoveHeadersByName(sbytes(name))
}

// ---- pseudo-variables ----

// RU is the Request-URI the request will be relayed with (OpenSIPS: $ru).
func (c *Ctx) RU() []byte { return c.R.RequestURI() }

func (c *Ctx) parsedRURI() *parser.URI {
	if c.ruriSt == 0 {
		c.ruriSt = 1
		if c.ruri.Parse(c.R.RequestURI()) != nil {
			c.ruriSt = -1
		}
	}
	if c.ruriSt < 0 {
		return nil
	}
	return &c.ruri
}

// RUser is the user part of the Request-URI (OpenSIPS: $rU).
func (c *Ctx) RUser() []byte {
	if u := c.parsedRURI(); u != nil {
		return u.User
	}
	return nil
}

// RDomain is the host of the Request-URI (OpenSIPS: $rd).
func (c *Ctx) RDomain() []byte {
	if u := c.parsedRURI(); u != nil {
		return u.Host
	}
	return nil
}

// RPort is the port of the Request-URI, 0 when absent (OpenSIPS: $rp).
func (c *Ctx) RPort() int {
	if u := c.parsedRURI(); u != nil {
		return u.Port
	}
	return 0
}

// RScheme is the Request-URI scheme (sip, sips, tel, or other).
func (c *Ctx) RScheme() parser.Scheme {
	if u := c.parsedRURI(); u != nil {
		return u.Scheme
	}
	return c.R.Msg.RURI().Scheme
}

// FU is the From URI (OpenSIPS: $fu).
func (c *Ctx) FU() []byte { return c.R.Msg.From().URI }

// FUser is the user part of the From URI (OpenSIPS: $fU).
func (c *Ctx) FUser() []byte {
	if u := parseOnce(&c.fromURI, &c.fromSt, c.R.Msg.From().URI); u != nil {
		return u.User
	}
	return nil
}

// FDomain is the host of the From URI (OpenSIPS: $fd).
func (c *Ctx) FDomain() []byte {
	if u := parseOnce(&c.fromURI, &c.fromSt, c.R.Msg.From().URI); u != nil {
		return u.Host
	}
	return nil
}

// FTag is the From tag (OpenSIPS: $ft).
func (c *Ctx) FTag() []byte { return c.R.Msg.FromTag() }

// TU is the To URI (OpenSIPS: $tu).
func (c *Ctx) TU() []byte { return c.R.Msg.To().URI }

// TUser is the user part of the To URI (OpenSIPS: $tU).
func (c *Ctx) TUser() []byte {
	if u := parseOnce(&c.toURI, &c.toSt, c.R.Msg.To().URI); u != nil {
		return u.User
	}
	return nil
}

// TDomain is the host of the To URI (OpenSIPS: $td).
func (c *Ctx) TDomain() []byte {
	if u := parseOnce(&c.toURI, &c.toSt, c.R.Msg.To().URI); u != nil {
		return u.Host
	}
	return nil
}

// TTag is the To tag (OpenSIPS: $tt).
func (c *Ctx) TTag() []byte { return c.R.Msg.ToTag() }

// CallID is the Call-ID (OpenSIPS: $ci).
func (c *Ctx) CallID() []byte { return c.R.Msg.CallID() }

// CSeq is the CSeq number and method (OpenSIPS: $cs and $rm).
func (c *Ctx) CSeq() parser.CSeq { return c.R.Msg.CSeq() }

// UserAgent is the User-Agent header (OpenSIPS: $ua).
func (c *Ctx) UserAgent() []byte { return c.R.Msg.UserAgent() }

// SrcIP is the source address the request came from (OpenSIPS: $si).
func (c *Ctx) SrcIP() netip.Addr { return c.R.Src.Addr() }

// SrcPort is the source port (OpenSIPS: $sp).
func (c *Ctx) SrcPort() uint16 { return c.R.Src.Port() }

// Proto is the transport the request came over (OpenSIPS: $pr / $proto).
func (c *Ctx) Proto() transport.Proto { return c.R.Proto }

// Listener is the local socket the request came in on (OpenSIPS: $socket_in).
func (c *Ctx) Listener() *transport.Listener { return c.R.Listener }

// ---- domains ----

// IsMyself reports whether host is a served domain or one of our own
// addresses (OpenSIPS: is_myself / is_domain_local).
func (c *Ctx) IsMyself(host []byte) bool {
	return c.Env != nil && c.Env.Domains != nil && c.Env.Domains.Has(host)
}

// IsURIHostLocal reports whether the Request-URI host is served here
// (OpenSIPS: is_uri_host_local()).
func (c *Ctx) IsURIHostLocal() bool { return c.IsMyself(c.RDomain()) }

// IsFromLocal reports whether the From host is served here (OpenSIPS:
// is_from_local()).
func (c *Ctx) IsFromLocal() bool { return c.IsMyself(c.FDomain()) }

// ---- rewriting ----

// SetRU replaces the Request-URI of the relayed request (OpenSIPS:
// $ru = "..." / rewriteuri). The bytes are copied.
func (c *Ctx) SetRU(uri []byte) {
	c.R.SetRequestURI(uri)
	c.ruriSt = 0
}

// SetRUser replaces the user part of the Request-URI, adding one when
// there is none (OpenSIPS: $rU = "..." / rewriteuser). False, and nothing
// changed, for a user a SIP URI cannot carry as it is (RFC 3261 §25.1:
// letters, digits, "-_.!~*'()&=+$,;?/" and %HH escapes): a value from a
// header or a dialplan rule that copies a caller's bytes must not break
// the request line or move the host ("0612@192.0.2.9:5098;x=").
func (c *Ctx) SetRUser(user []byte) bool {
	u := c.parsedRURI()
	if u == nil || u.Host == nil || !validURIUser(user) {
		return false
	}
	raw := u.Raw
	var start, end int
	if u.User != nil {
		start = offsetIn(raw, u.User)
		end = start + len(u.User)
		if u.Password != nil {
			end = offsetIn(raw, u.Password) + len(u.Password)
		}
	} else {
		start = len(u.SchemeRaw) + 1
		end = start
	}
	c.buf = append(c.buf[:0], raw[:start]...)
	c.buf = append(c.buf, user...)
	if u.User == nil {
		c.buf = append(c.buf, '@')
	}
	c.buf = append(c.buf, raw[end:]...)
	c.SetRU(c.buf)
	return true
}

// SetRDomain replaces the host of the Request-URI (OpenSIPS: $rd = "..." /
// rewritehost). False, and nothing changed, for what is no host: a name
// of letters, digits, "-" and ".", or an IP address (IPv6 in brackets).
func (c *Ctx) SetRDomain(host []byte) bool {
	u := c.parsedRURI()
	if u == nil || u.Host == nil || !validURIHost(host) {
		return false
	}
	start := offsetIn(u.Raw, u.Host)
	c.buf = append(c.buf[:0], u.Raw[:start]...)
	c.buf = append(c.buf, host...)
	c.buf = append(c.buf, u.Raw[start+len(u.Host):]...)
	c.SetRU(c.buf)
	return true
}

// validURIUser reports whether user can be a SIP URI's user part as it is.
func validURIUser(user []byte) bool {
	if len(user) == 0 {
		return false
	}
	for i := 0; i < len(user); i++ {
		switch ch := user[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case strings.IndexByte("-_.!~*'()&=+$,;?/", ch) >= 0:
		case ch == '%' && i+2 < len(user) && isHex(user[i+1]) && isHex(user[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

// validURIHost reports whether host can be a SIP URI's host as it is.
func validURIHost(host []byte) bool {
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		a, err := netip.ParseAddr(string(host[1 : len(host)-1]))
		return err == nil && a.Is6() && a.Zone() == ""
	}
	if len(host) == 0 || len(host) > 255 {
		return false
	}
	for _, ch := range host {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.') {
			return false
		}
	}
	return true
}

func isHex(ch byte) bool {
	return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F'
}

// SetDestination sends the request to dst over proto whatever the
// Request-URI says (OpenSIPS: $du = "sip:ip:port;transport=...").
func (c *Ctx) SetDestination(proto transport.Proto, dst netip.AddrPort) {
	c.R.SetDestination(proto, dst)
}

// Destination is what SetDestination set (OpenSIPS: $du); ok is false
// when the next hop comes from the Route set or the Request-URI.
func (c *Ctx) Destination() (proto transport.Proto, dst netip.AddrPort, ok bool) {
	return c.R.Destination()
}

// ---- flags and values ----

// SetFlag sets transaction flag n (0–63) (OpenSIPS: setflag(n)).
func (c *Ctx) SetFlag(n uint) { c.R.SetFlag(n) }

// ResetFlag clears transaction flag n (OpenSIPS: resetflag(n)).
func (c *Ctx) ResetFlag(n uint) { c.R.ResetFlag(n) }

// IsFlagSet tests transaction flag n (OpenSIPS: isflagset(n)).
func (c *Ctx) IsFlagSet(n uint) bool { return c.R.IsFlagSet(n) }

// Value returns per-transaction value i, 0 <= i < txn.NumValues (OpenSIPS:
// an integer $avp kept with the transaction).
func (c *Ctx) Value(i int) int64 { return c.R.Value(i) }

// SetValue sets per-transaction value i.
func (c *Ctx) SetValue(i int, v int64) { c.R.SetValue(i, v) }

// ---- proxy actions ----

// LooseRoute processes the Route headers (OpenSIPS: loose_route()): it
// removes our own entries and reports whether the request is to be routed
// by its Route set, which is true only when it carries a Record-Route we
// signed for its own dialog. A forged or copied Route, a Route preloaded
// to another proxy, and an outbound proxy's preloaded Route to us give
// false; RouteKind tells them apart. So an in-dialog request relayed on
// LooseRoute's word needs no authentication, and cannot be steered
// through us by anyone outside the dialog.
func (c *Ctx) LooseRoute() bool {
	ok := c.R.LooseRoute()
	c.ruriSt = 0 // a strict router's Request-URI may have been replaced
	return ok
}

// RouteKind classifies the Route set: RouteNone, RouteLocal (only our own
// unsigned values, which an outbound proxy setting preloads: they are
// removed and the request is routed as an initial one), RouteDialog (our
// signed Record-Route of this dialog: LooseRoute is true), RouteForged
// (our address with a signature that does not verify, or a route through
// us that we did not record) or RouteForeign (a route preloaded to another
// proxy).
func (c *Ctx) RouteKind() RouteKind {
	k := c.R.RouteKind()
	c.ruriSt = 0
	return k
}

// RouteKind is what a request's Route set says (see Ctx.RouteKind).
type RouteKind = txn.RouteKind

// The kinds of Route set.
const (
	RouteNone    = txn.RouteNone
	RouteLocal   = txn.RouteLocal
	RouteDialog  = txn.RouteDialog
	RouteForged  = txn.RouteForged
	RouteForeign = txn.RouteForeign
)

// ForceRPort sends the responses to the port the request came from, as
// if its top Via carried rport, and adds rport to that Via in the relayed
// copy (OpenSIPS: force_rport()): for a client behind NAT that did not
// ask for it.
func (c *Ctx) ForceRPort() { c.R.ForceRPort() }

// RecordRoute adds a Record-Route header to the relayed request, two when
// it leaves on another interface or transport (OpenSIPS: record_route()).
func (c *Ctx) RecordRoute() { c.R.RecordRoute() }

// AddPath adds our Path header to a REGISTER this proxy relays to a
// registrar elsewhere (RFC 3327; OpenSIPS: add_path()): with a flow token
// and ";ob" when the phone registers over a connection with RFC 5626
// outbound, so that the registrar's requests come back over it
// (docs/outbound.md).
func (c *Ctx) AddPath() { c.R.AddPath() }

// Flow returns the connection the request is to go over (an RFC 5626
// flow named by a verified flow token in our Route, or set by the
// registrar's Lookup), 0 when none.
func (c *Ctx) Flow() transport.ConnID { return c.R.Flow() }

// Reply answers the request statefully; reason "" uses the standard phrase
// (OpenSIPS: t_reply / sl_send_reply).
func (c *Ctx) Reply(code int, reason string) error {
	c.Env.countReply(code)
	return c.R.Reply(code, reason)
}

// ReplyWithHeaders answers with extra header lines, each ending in CRLF
// (OpenSIPS: append_to_reply + t_reply).
func (c *Ctx) ReplyWithHeaders(code int, reason string, headers []byte) error {
	c.Env.countReply(code)
	return c.R.ReplyWithHeaders(code, reason, headers)
}

// ReplyStateless answers without keeping a transaction to absorb
// retransmissions, as OpenSIPS sl_send_reply does: a retransmitted request
// is routed again. For cheap, repeatable answers (REGISTER saved,
// challenges) it saves a transaction's memory for 64·T1 per request.
func (c *Ctx) ReplyStateless(code int, reason string, headers []byte) error {
	c.Env.countReply(code)
	return c.R.ReplyStateless(code, reason, headers)
}

// CheckRequire is the UAS check of RFC 3261 §8.2.2.3 for a request the
// route answers itself (an OPTIONS to the proxy, a REGISTER the registrar
// saves): when Require lists option tags that are not in supported, it
// answers 420 Bad Extension with an Unsupported header naming them,
// statelessly, and returns false; otherwise it returns true. The Require
// of ACK and CANCEL is ignored (§8.2.2.3). Never check a request the route
// relays: a proxy honours Proxy-Require only (§16.3), which the core
// checks before the route runs. OpenSIPS scripts do this by hand:
// is_present_hf("Require"), then append_to_reply("Unsupported: ...") and
// sl_send_reply(420, "Bad Extension"). It allocates nothing.
func (c *Ctx) CheckRequire(supported ...string) bool {
	m := c.R.Msg
	if m.Method() == parser.MethodAck || m.Method() == parser.MethodCancel || !m.Has(parser.HdrRequire) {
		return true
	}
	c.hdr = append(c.hdr[:0], "Unsupported: "...)
	n := len(c.hdr)
	c.hdr = m.AppendUnsupported(c.hdr, parser.HdrRequire, supported)
	if len(c.hdr) == n {
		return true
	}
	c.hdr = append(c.hdr, "\r\n"...)
	c.ReplyStateless(420, "Bad Extension", c.hdr)
	return false
}

// Relay forwards the request statefully to the next hop, or to every branch
// added (OpenSIPS: t_relay()).
func (c *Ctx) Relay() error { return c.R.Relay() }

// Forward forwards the request statelessly (OpenSIPS: forward()).
func (c *Ctx) Forward() error { return c.R.Forward() }

// Drop ends the request without an answer (OpenSIPS: drop() / exit
// without a reply).
func (c *Ctx) Drop() { c.R.Drop() }

// AppendBranch adds a branch to uri; Relay sends all branches in parallel,
// or one at a time after SetSerial (OpenSIPS: append_branch("uri")).
func (c *Ctx) AppendBranch(uri []byte) error { return c.R.AddBranch(uri) }

// SetSerial makes added branches go one after another, each tried from the
// failure route (OpenSIPS: serialize_branches / t_next_contacts).
func (c *Ctx) SetSerial(serial bool) { c.R.SetSerial(serial) }

// SetTimeouts changes, for the branches relayed from now on, how long a
// branch waits for a first response (fr: timers.fr) and how long an INVITE
// branch waits for its final response after ringing (frInv:
// timers.timer_c); zero keeps the configured value (Kamailio:
// t_set_fr(fr_inv, fr); OpenSIPS: $T_fr_timeout, $T_fr_inv_timeout). A short
// fr moves calls to the next gateway quickly when one is silent.
func (c *Ctx) SetTimeouts(fr, frInv time.Duration) { c.R.SetTimeouts(fr, frInv) }

// Canceled reports whether a CANCEL for this request has arrived (OpenSIPS:
// t_was_cancelled()).
func (c *Ctx) Canceled() bool { return c.R.Canceled() }

// NextHopURI is the URI the request goes to next: the first Route value
// after ours (an in-dialog request loose-routed on), else the
// Request-URI (txn Request.NextHopURI). Destination, when set, goes
// before it.
func (c *Ctx) NextHopURI() []byte { return c.R.NextHopURI() }

// Answered reports whether a branch of the request got a 2xx already:
// in a reply route, a 6xx or 487 of another branch after it does not end
// the call (txn Request.Answered).
func (c *Ctx) Answered() bool { return c.R.Answered() }

// Suspend lets the route finish the request later, after work done off the
// receive path, through the returned handle's Reply or Relay (OpenSIPS:
// async()). Nil for an ACK.
func (c *Ctx) Suspend() *txn.Request { return c.R.Suspend() }

// SuspendAck is Suspend for an ACK, which has no transaction: the
// returned handle owns the ACK, and Resume on it forwards it later (the
// ACK of a late offer, whose SDP rtpengine answers first). Nil for a
// request with a transaction.
func (c *Ctx) SuspendAck() *txn.Request { return c.R.SuspendAck() }

func parseOnce(u *parser.URI, st *int8, raw []byte) *parser.URI {
	if *st == 0 {
		*st = 1
		if u.Parse(raw) != nil {
			*st = -1
		}
	}
	if *st < 0 {
		return nil
	}
	return u
}

// offsetIn returns the offset of sub inside b; sub must be a sub-slice of b.
func offsetIn(b, sub []byte) int {
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(sub))) - uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// sbytes views a string as bytes without copying; the callee must only read.
func sbytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
