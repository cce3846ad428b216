// Package provider is the default route set "provider": the small VoIP
// provider of "Building Telephony Systems with OpenSIPS" written as Go.
// Copy this package to start a route set of your own (docs/routing.md).
//
// The OpenSIPS script it follows, step by step:
//
//	route {
//	    # the core already answered 400 (malformed), 483 (Max-Forwards),
//	    # 482 (loop), 416, 420 and 505 before the route runs
//	    if ($ua =~ "friendly-scanner" || ...) drop;  # scanner: patterns and fingerprints, no answer
//	    if (is_method("INVITE") || has_totag()) sip_trace("hep", "t");  # siptrace.mode: route
//	    if (topology_hiding_match()) {           # to the Contact of a hidden call: the other party
//	        route(nat_detect); route(fraud_release) for a BYE of a call without its dialog bound; t_relay(); exit;
//	    }                                        # a token that does not verify: 403; of a call that ended: 481
//	    if (has_totag()) {                       # in-dialog
//	        if (loose_route()) {                 # our signed Record-Route only
//	            if (has_dialog() && !validate_dialog() && !fix_route_dialog()) {
//	                # R-URI or next Route not the other party's as the dialog knows
//	                # them, and its target not known to send it there instead
//	                if (is_method("ACK")) exit;
//	                sl_send_reply(403, "Forbidden (not the dialog's target)"); exit;
//	            }
//	            if (goes_to_gw_host() && !check_route_param("trk")) {  # checked on the fixed request
//	                sl_send_reply(403, "Forbidden (gateway)"); exit;
//	            }
//	            route(nat_detect);
//	            if (check_route_param("nat=yes")) setflag(NAT_REPLIES);
//	            match_dialog();                  # a BYE ends the call's dialog (its record written)
//	            if (is_method("BYE") && ($DLG_ended_by_it || !$DLG_did)) route(fraud_release);
//	            # a call bound to its dialog is freed by the dialog's end (route[acc]), not
//	            # here; one with a dialog not bound: this BYE ended it; without a dialog: any BYE
//	            uac_restore_from(); uac_restore_to();   # and the CSeq after uac_auth
//	            t_relay(); exit;
//	        }
//	        if (!pike_check_req()) drop;         # not ours: counted as a flood would be
//	        if (is_method("ACK")) exit;          # stray ACK: drop
//	        if ($route_kind == forged) { sl_send_reply(403, "Forbidden Route"); exit; }
//	        sl_send_reply(404, "Not here"); exit;
//	    }
//	    if (!pike_check_req()) drop;             # over the rate: banned, no answer
//	    if (!rl_check()) {                       # ratelimit: the pipes of this method
//	        append_to_reply("Retry-After: 10\r\n");  # (INVITE, REGISTER per source)
//	        sl_send_reply(503, "Rate Limit Exceeded"); exit;
//	    }
//	    # an outbound proxy's Route to us was removed; any other Route set:
//	    if ($route_kind != none && $route_kind != local) {
//	        sl_send_reply(403, "Preload Route denied"); exit;
//	    }
//	    route(nat_detect);
//	    if (is_method("OPTIONS") && $rU == NULL && is_uri_host_local()) {
//	        if (is_present_hf("Require")) { sl_send_reply(420, "Bad Extension"); exit; }
//	        sl_send_reply(200, "OK"); exit;       # keep-alive probes to the proxy
//	    }
//	    if (is_method("INVITE|SUBSCRIBE")) record_route();
//	    if (!is_uri_host_local()) {              # to another domain
//	        if (!is_from_local()) { sl_send_reply(403, "Relay Forbidden"); exit; }
//	        if (!proxy_authorize("", "subscriber")) { proxy_challenge("", "auth"); exit; }
//	        consume_credentials(); route(fraud); t_relay(); exit;
//	    }
//	    if (is_method("REGISTER")) {
//	        if (!www_authorize("", "subscriber")) { www_challenge("", "auth"); exit; }
//	        if (isflagset(NAT)) fix_nated_register();  # reached at its source, pinged
//	        save("location"); exit;
//	    }
//	    if (is_from_local() && !check_source_address($trusted_group) && !is_from_gw()) {
//	        # trusted gateways (permissions, drouting) call our users without a digest
//	        if (!proxy_authorize("", "subscriber")) { proxy_challenge(...); exit; }
//	        consume_credentials();
//	        if ($dialplan_id >= 0) dp_translate($dialplan_id, "$rU", "$rU");  # normalise
//	    }
//	    if ($reveal_unknown_users && !does_uri_exist()) { sl_send_reply(404, "Not Found"); exit; }
//	    if (!lookup("location")) {
//	        if (is_method("INVITE") && $authenticated && !does_uri_exist()) route(pstn);
//	        sl_send_reply(480, "Temporarily Unavailable"); exit;
//	    }
//	    if (is_from_local() && !check_source_address($trusted_group) && !is_from_gw())
//	        route(fraud);                        # authenticated above
//	    route(acc_missed);                       # a call to a subscriber: its failure is a missed call
//	    t_on_failure("next_contacts"); t_on_branch("contact");
//	    t_relay();
//	}
//	route[pstn] {                                # a number, no subscriber of ours
//	    if (!do_routing($drouting_group)) {      # drouting.group, 0 by default
//	        if ($rc == no_gateway) { sl_send_reply(503, "No Gateway Available"); exit; }
//	        sl_send_reply(480, "Temporarily Unavailable"); exit;  # 404: reveal_unknown_users
//	    }
//	    $trunk = 1; route(fraud); t_on_failure("next_contacts"); t_relay(); exit;
//	}
//	route[fraud] {                               # fraud_detection, fraud.profile
//	    if (is_method("INVITE") && $fraud_profile != 0) {
//	        check_fraud("$fU@$fd", "$oU", $fraud_profile);  # the dialled number
//	        if ($rc == -2) { sl_send_reply(403, "Forbidden"); exit; }  # critical
//	        # (the Call-ID and From tag of a call in progress: 482 Loop Detected)
//	        if ($rc != 2 && $fraud_concurrent) $counted = 1;  # a rule of the profile has a
//	    }                                        # concurrent_calls threshold; -1, warning: goes on
//	    route(acc);
//	    route(hide);
//	}
//	route[acc] {                                 # accounting on (acc.store or acc.file), or $counted
//	    if (is_method("INVITE")) {
//	        if (!create_dialog()) { sl_send_reply(503, "Too Many Calls"); exit; }  # dialog.max_dialogs
//	        if ($counted) fraud_bind_dialog();   # the dialog's end frees its place, whatever
//	                                             # ends it (DLGCB_TERMINATED, DLGCB_EXPIRED)
//	        if ($acc) do_accounting("db", "cdr|failed");  # the record is written when the dialog ends
//	    }
//	}
//	# sst.enabled: every INVITE relayed gets a dialog, around its create_dialog():
//	#   if (sstCheckMin("1")) exit;  (422 + Min-SE, 400 for a malformed header)
//	#   and the sst flag (Session-Expires raised to min_se or sst.interval added);
//	#   onreply_route: a 2xx's Session-Expires times the dialog (modules/sst)
//	route[acc_missed] { if (is_method("INVITE")) do_accounting("db", "missed"); }
//	route[hide] {                                # topohiding.calls, or .trunks for a call to a
//	    if (is_method("INVITE") && ($topohiding_calls || $topohiding_trunks && ($trunk || is_from_gw()))) {
//	        if (!has_dialog() && !create_dialog()) { sl_send_reply(503, "Too Many Calls"); exit; }
//	        topology_hiding();                   # gateway or from a trusted one
//	        if (isflagset(NAT)) set_dlg_flag(CALLER_NAT);  # its requests go to its source
//	    }
//	}
//	branch_route[contact] {                      # NAT destination and Path of each contact
//	    if (isbflagset(NAT)) {                   # a callee registered behind NAT
//	        setflag(NAT_REPLIES); add_rr_param(";nat=yes");
//	        if (topology_hidden()) set_dlg_flag(CALLEE_NAT);
//	    }
//	}
//	onreply_route {
//	    if (is_method("INVITE") && $rs >= 300) route(fraud_release);  # 6xx, or a final after CANCEL
//	    if (isflagset(NAT_REPLIES) && $rs =~ "[12][0-9][0-9]" && nat_uac_test("private-contact,private-sdp,diff-ip-src-contact,diff-port-src-contact")) {
//	        fix_nated_contact();
//	        if ($fix_sdp) fix_nated_sdp($fix_sdp);
//	    }
//	}
//	route[nat_detect] {                          # nathelper.enabled
//	    if (nat_uac_test($nat_tests)) {          # nathelper.nat_tests, "19" and RFC 5626 flows
//	        force_rport(); setflag(NAT);
//	        if (!is_method("REGISTER")) {
//	            fix_nated_contact();
//	            if ($fix_sdp) fix_nated_sdp($fix_sdp);  # nathelper.fix_sdp, off by default
//	            if (is_method("INVITE|SUBSCRIBE") && !has_totag()) add_rr_param(";nat=yes");
//	        }
//	    }
//	}
//	failure_route[next_contacts] {               # lower-q contacts, one group at a time
//	    if (t_check_status("401|407") && uac_auth()) { t_relay(); exit; }  # a trunk's challenge (hidden: the offset in the dialog);
//	                                             # realm-only credentials only for a branch to a gateway (goes_to_gw)
//	    if (t_next_contacts()) { t_relay(); exit; }
//	    if (t_check_status("408|5[0-9][0-9]") && use_next_gw()) { t_relay(); exit; }
//	    route(fraud_release);                    # the call failed
//	}
//
// route(nat_detect) and the NAT steps of the branch and reply routes run
// when the nathelper module is there with nathelper.enabled (the default):
// modules/nathelper. The flags are nathelper.FlagNAT and
// nathelper.FlagNATReplies; the Record-Route parameter, signed with our
// Record-Route, is nathelper.RouteParam. Every address these steps write
// is the source of the packet, never one a header named.
//
// route(acc) and route(acc_missed) run when the acc module is on
// (modules/acc: acc.store or acc.file) with the dialog module: every
// INVITE relayed (to a subscriber, to another domain, to the PSTN) gets a
// dialog, whose end writes the call's record; a call to a registered
// subscriber is marked so that its failure (busy, no answer, declined,
// canceled) is a missed call (the missed_calls table). A call refused
// before it is relayed (a challenge, 480, 403) has no dialog and no
// record. Without accounting, topology hiding, session timers or a
// concurrent-call limit no dialog is created: a provider that wants
// dialogs for other reasons (timeouts, profiles) adds CreateDialog itself
// (docs/routing.md).
//
// route(hide) is topology hiding (modules/topohiding), off by default:
// with topohiding.trunks the calls to the PSTN gateways of the drouting
// module and the calls from trusted gateways (the permissions group
// provider.trusted_group, the drouting gateways) are hidden, with
// topohiding.calls every call the route set relays. A hidden call gets a
// dialog even without accounting; the gateway sees the proxy's Via and
// Contact and none of the caller side's Via, Record-Route or Contact, the
// caller none of the carrier's. The parties' in-dialog requests come to
// the proxy's Contact and are matched by its token before anything else
// (a forged token: 403; a call that ended: 481). A party found behind
// NAT (nathelper) is reached at its source, not at its Contact; a
// trunk's challenge answered with uac_auth keeps its CSeq offset in the
// dialog. The From rewritten with uac_replace_from is not restored on a
// hidden call's in-dialog requests (it lives in our Record-Route).
//
// route(fraud_release) ends a call counted in the caller's concurrent
// calls. OpenSIPS's fraud_detection counts them through the dialog
// module (it does not load without it), and so does this route set: a
// call Check counted ($rc 1 or -1) under a profile with a
// concurrent_calls threshold gets a dialog even without accounting, and
// is bound to it (fraud BindDialog): the fraud module follows the dialog
// module's events, and the dialog's end frees the place, whatever ended
// it: a BYE that reached the other party, the dialog's timeout, the
// session timer, a failed ping, dialog.end, a drain. The proxy's own
// BYEs do not pass through this route: freed only by BYEs, such a call
// stayed counted until fraud.call_timeout (4 h), its caller refused all
// that time under a limit of one call. A BYE while the call rings, with
// another To tag, one the dialog module did not let reach the other
// party, or one on the Route of another call with the same Call-ID
// frees nothing. Without the dialog, any BYE on the call's signed Route
// freed it, wherever it went and whatever its To tag: a caller with
// concurrent_calls_critical 3 sent a BYE addressed to herself for each
// call and had any number up. A call that has no dialog (counted while
// its profile had no such threshold: the rules changed since) is freed
// by any BYE, as before.
// Calls are not given dialogs for rules without concurrent thresholds
// (calls per minute, of the day, sequential), nor when the profile is 0
// or no rule matched. The route set is not built with the fraud module
// and without the dialog module (a binary built without modules/dialog).
//
// validate_dialog and fix_route_dialog are the dialog module's
// ValidateDialog and FixRouteDialog, when calls have dialogs (accounting,
// topology hiding, session timers or a concurrent-call limit on). Our
// signed Record-Route binds an in-dialog
// request to its dialog, not to where it goes: the party sending it picks
// the Request-URI and any Route after ours. A request of an answered call
// whose Request-URI is not the other party's target as the dialog knows
// it (its Contact as the proxy relayed it, after fix_nated_contact; or,
// for a party without a route set, its first hop), or whose next Route is
// not the first of that party's route set, is sent there instead: the
// target as Request-URI, the party's route set as Route. A caller's BYE
// addressed to herself ended the dialog, wrote the call's record and
// freed her place under the fraud limits while the callee never had it
// and the call went on unbilled; answered 403 instead, a legitimate BYE
// the check refused (a phone's quirk, a target refresh the dialog did not
// see) hung up the caller's phone and left the callee's leg up and billed
// until the dialog's timeout. Fixed, it reaches the callee and ends the
// call as any BYE does. Only a request whose party's target the dialog
// does not know (a Contact too large to keep) gets 403 (an ACK is
// dropped) and changes nothing. The gateway check runs on the request as
// fixed: it goes where the call's own requests go, a gateway only for a
// trunk's call. A BYE frees the fraud count only when it ended the dialog
// (an early dialog's BYE ends nothing; the INVITE's failure frees it),
// which is why every call counted under a concurrent limit has one.
// Hidden calls are sent to the other party's stored target by topology
// hiding itself, and their BYEs follow the same rule.
//
// Every refusal is a stateless reply (sl_send_reply): one response packet
// for one request, no transaction held and no retransmissions, so a
// spoofed request cannot make the server send more than it received. An
// INVITE gets 100 Trying only when it is relayed or waits for the store.
//
// A call to a subscriber who is not registered and a call to a name that is
// no subscriber get the same answer, 480, by default: a scanner cannot tell
// which extensions exist. Options.RevealUnknownUsers (the configuration key
// provider.reveal_unknown_users) answers 404 to names that are not
// subscribers, at the cost of a store look-up per unknown name.
//
// Trusted gateways: a request for a served domain from a source in the
// permissions module's group Options.TrustedGroup (provider.trusted_group,
// 1 by default; OpenSIPS check_source_address("1")) is not challenged even
// when its From names one of our domains, as PSTN gateways' calls in do
// (a gateway has no password, and its From is often a number "at" our
// domain); it goes to the location service like any call to our users.
// A source that is a gateway of the drouting tables (is_from_gw: the
// address of a gateway in dr_gateways, whatever its port) is trusted the
// same way: one concept, two places to provision it. The trust ends there. A gateway's REGISTER is authenticated as anyone's,
// and its requests for other domains are refused or challenged as
// anyone's: trust lets a gateway reach our subscribers, not use us as a
// relay to the PSTN or other providers, which is what a UDP source
// spoofed to look like the gateway would try. The source address decides,
// never a header: a From that names the gateway (or matches an entry's
// pattern) from another address is challenged as usual.
//
// proxy_authorize, www_authorize and does_uri_exist read the store only on
// a credential-cache miss, and then off the receive path: the request is
// suspended and the route carries on from a worker (see modules/auth).
//
// pike_check_req is the pike module's Check (modules/pike): for an initial
// request, and for an in-dialog one that is not of a dialog of ours; a
// source over its rate is banned and the transport drops its datagrams
// before parsing from then on. Without the module the step is skipped.
//
// The scanner block list and the rate limits apply when those modules are
// in routing.Env.Modules ("scanner", "ratelimit"): a request from a
// scanner is dropped before anything else, so it is never answered, and an
// initial request over a pipe's limit gets one stateless 503 with
// Retry-After (modules/scanner, modules/ratelimit).
//
// sip_trace is the siptrace module's Trace (modules/siptrace): in mode
// route, the transactions of calls (an INVITE, and every request inside a
// dialog) are sent to the HEP collectors; registrations, OPTIONS and
// refused scanners are not. In the modes all and sample the module traces
// by itself and the step does nothing.
//
// alias_db_lookup is the aliases module's AliasLookup (modules/aliases):
// a request for a served domain whose user@domain is in the aliases table
// (a DID) has its Request-URI rewritten to the subscriber the alias
// reaches, before does_uri_exist and the location lookup, so a DID is
// delivered to its subscriber's phones. Without the module the step is
// skipped.
// Calls to the PSTN (route[pstn]) need the drouting module: an INVITE of
// an authenticated subscriber to a served domain whose Request-URI user,
// translated by the dialplan Options.DialplanID first when the dialplan
// module is there (dp_translate), is not registered and is no
// subscriber's name is routed by the rules of the group drouting.group
// (do_routing): to the first usable gateway, with
// the next ones tried from the failure route on 408 and 5xx (use_next_gw).
// A name that is no number, or a number no rule matches, gets the answer
// of an unknown user; a rule whose gateways are all down or disabled, 503.
// Calls from outside and from trusted gateways never go to the PSTN: a
// gateway may reach our subscribers, not other gateways through us.
//
// Nothing else reaches a gateway (goes_to_gw, by the next hop's address
// whatever its port): a subscriber's request to a gateway's address as if
// to another domain gets 403, so does a REGISTER whose Contact or Path
// (or a maddr) names a gateway's address (every call to that subscriber,
// an outsider's too, would go there), and a request inside a dialog whose
// Request-URI, or a Route after ours, is a gateway's, unless our
// Record-Route of the dialog, signed, marks a call to or from a trunk
// (the "trk" parameter relayCall adds): the signature binds our Route to
// a dialog, not to where its requests go.
//
// Identities only a trusted node may assert (P-Asserted-Identity,
// P-Preferred-Identity, Remote-Party-ID) are removed from every request
// not from a trusted gateway (remove_hf at the edge): a subscriber does
// not reach the carrier asserting another number, nor an outsider a
// phone as a subscriber. The fraud limits check the number as routed
// (after the dial plan), as the drouting rules and the carrier see it.
//
// The registrar and authentication steps run when those modules are in
// routing.Env.Modules ("registrar", "auth"); without them REGISTER gets 501,
// requests for other domains 403 and calls to served domains 480, so the rest
// of the route set still works. With Options.RegisterWithoutAuth (the
// configuration key auth.register: false) REGISTER is saved without
// www_authorize: for registration benchmarks only.
package provider

import (
	"errors"

	"switchboard/modules/acc"
	"switchboard/modules/aliases"
	"switchboard/modules/auth"
	"switchboard/modules/dialog"
	"switchboard/modules/dialplan"
	"switchboard/modules/drouting"
	"switchboard/modules/fraud"
	"switchboard/modules/nathelper"
	"switchboard/modules/permissions"
	"switchboard/modules/pike"
	"switchboard/modules/ratelimit"
	"switchboard/modules/registrar"
	"switchboard/modules/rtpengine"
	"switchboard/modules/scanner"
	"switchboard/modules/siptrace"
	"switchboard/modules/sst"
	"switchboard/modules/topohiding"
	"switchboard/modules/uac"
	"switchboard/parser"
	"switchboard/routing"
)

// Options are the route set's own settings, passed as
// routing.Env.Modules["provider"].
type Options struct {
	// RegisterWithoutAuth saves REGISTER without authentication. Only for
	// benchmarks of the registrar: anyone could take over any AOR.
	RegisterWithoutAuth bool
	// RevealUnknownUsers answers 404 to a call for a name that is no
	// subscriber of a served domain, instead of the 480 a subscriber who
	// is not registered gets. Off by default: the difference tells a
	// scanner which extensions exist.
	RevealUnknownUsers bool
	// TrustedGroup is the permissions group whose sources call served
	// domains without digest authentication (trusted gateways); 0 trusts
	// no one. The configuration key provider.trusted_group defaults to 1.
	TrustedGroup int
	// DialplanID is the dialplan (modules/dialplan) that translates the
	// Request-URI user of an authenticated subscriber's request for a
	// served domain before the location lookup and the PSTN (dp_translate
	// into $rU), when that module is compiled in; -1 (the configuration
	// key provider.dialplan_id's default) or below translates nothing. The
	// zero Options translate with dialplan 0: set -1 for none.
	DialplanID int
}

func init() {
	routing.Register(routing.RouteSet{
		Name: "provider",
		Doc:  "small VoIP provider: registrar, authenticated calls, location lookup, loose routing",
		New:  newRoutes,
	})
}

// routes holds the modules and the continuations, built once so that
// passing them to the modules allocates nothing.
type routes struct {
	aliases *aliases.Aliases
	reg     *registrar.Registrar
	auth    *auth.Auth
	fraud   *fraud.Fraud
	perms   *permissions.Permissions
	pike    *pike.Pike
	scanner *scanner.Scanner
	rl      *ratelimit.RateLimit
	uac     *uac.UAC
	dr      *drouting.Drouting
	dp      *dialplan.Dialplan
	acc     *acc.Acc
	dlg     *dialog.Dialog // set with accounting, topology hiding, session timers or the fraud module: calls get dialogs
	sst     *sst.SST       // session timers (RFC 4028), with sst.enabled
	th      *topohiding.TopoHiding
	accOn   bool // acc.store or acc.file: every INVITE relayed gets a dialog
	nh      *nathelper.NATHelper
	rtp     *rtpengine.Engine // does nothing while rtpengine.instances is empty
	trace   *siptrace.SipTrace
	opts    Options

	afterRegisterAuth auth.Next
	afterForeignAuth  auth.Next
	afterLocalAuth    auth.Next
	afterExists       func(c *routing.Ctx, exists bool, err error)
	afterPSTNCheck    func(c *routing.Ctx, exists bool, err error)
	afterCallMedia    func(c *routing.Ctx, err error)
	afterDialogMedia  func(c *routing.Ctx, err error)
	// again is request: a hidden call's request suspended while its
	// dialog is read from another node runs the route again.
	again func(c *routing.Ctx)
}

func newRoutes(env *routing.Env) (*routing.Routes, error) {
	p := &routes{}
	p.reg, _ = env.Module("registrar").(*registrar.Registrar)
	p.auth, _ = env.Module("auth").(*auth.Auth)
	p.perms, _ = env.Module("permissions").(*permissions.Permissions)
	p.pike, _ = env.Module("pike").(*pike.Pike)
	p.scanner, _ = env.Module("scanner").(*scanner.Scanner)
	p.rl, _ = env.Module("ratelimit").(*ratelimit.RateLimit)
	p.opts, _ = env.Module("provider").(Options)
	p.fraud, _ = env.Module("fraud").(*fraud.Fraud)
	p.uac, _ = env.Module("uac").(*uac.UAC)
	p.aliases, _ = env.Module("aliases").(*aliases.Aliases)
	p.dr, _ = env.Module("drouting").(*drouting.Drouting)
	p.dp, _ = env.Module("dialplan").(*dialplan.Dialplan)
	p.acc, _ = env.Module("acc").(*acc.Acc)
	p.th, _ = env.Module("topohiding").(*topohiding.TopoHiding)
	p.accOn = p.acc.Enabled()
	if m, _ := env.Module("sst").(*sst.SST); m.Enabled() {
		p.sst = m
	}
	if p.accOn || p.th.HideCalls() || p.th.HideTrunks() || p.sst != nil || p.fraud != nil {
		p.dlg, _ = env.Module("dialog").(*dialog.Dialog)
	}
	if p.fraud != nil && p.dlg == nil {
		// As OpenSIPS's fraud_detection, which does not load without the
		// dialog module: only a dialog's end tells a BYE that ended the
		// call from one that went elsewhere, and without it any BYE
		// freed the caller's place under the concurrent-call limits.
		return nil, errors.New("provider: the fraud module counts concurrent calls by their dialogs: the dialog module (modules/dialog) must be compiled in with it")
	}
	p.nh, _ = env.Module("nathelper").(*nathelper.NATHelper)
	p.trace, _ = env.Module("siptrace").(*siptrace.SipTrace)
	p.rtp, _ = env.Module("rtpengine").(*rtpengine.Engine)
	if p.auth != nil && p.auth.RegisterWithoutAuth() {
		p.opts.RegisterWithoutAuth = true // auth.register: false
	}
	p.afterRegisterAuth = p.registerAuthorized
	p.afterForeignAuth = p.foreignAuthorized
	p.afterLocalAuth = p.localAuthorized
	p.afterExists = p.userChecked
	p.afterPSTNCheck = p.numberChecked
	p.afterCallMedia = p.callMediaDone
	p.afterDialogMedia = p.dialogMediaDone
	p.again = p.request
	rs := &routing.Routes{Request: p.request, Failure: p.failure}
	if p.reg != nil {
		rs.Branch = p.branch
	}
	if p.fraud != nil || p.nh != nil || p.rtp != nil || p.sst != nil {
		rs.Reply = p.reply
	}
	return rs, nil
}

func (p *routes) request(c *routing.Ctx) {
	if p.scanner != nil && p.scanner.Blocked(c) {
		return // dropped unanswered: a scanner learns nothing
	}
	if (c.HasToTag() || c.IsMethod(parser.MethodInvite)) && !c.R.Suspended() {
		p.trace.Trace(c) // mode route: calls are traced, registrations not (once: not again after Fetch)
	}
	p.screenIdentity(c)
	if v := p.th.Match(c); v != topohiding.NotHidden {
		p.hiddenCall(c, v)
		return
	}
	if c.HasToTag() {
		p.inDialog(c)
		return
	}
	if !p.pikeCheck(c) {
		return
	}
	if p.rl != nil && p.rl.Limited(c) {
		return // answered 503 with Retry-After
	}
	switch c.RouteKind() {
	case routing.RouteNone, routing.RouteLocal:
		// No Route, or only the Route to us that a phone's outbound proxy
		// setting preloads (RFC 3261 §8.1.2, RFC 5626): ours are removed
		// and the request is routed by its Request-URI.
	default:
		// A Route to another proxy, or through us to somewhere we never
		// recorded: relaying it would make us an open relay.
		refuse(c, 403, "Preload Route denied")
		return
	}
	if c.IsMethod(parser.MethodAck) {
		// An ACK for a non-2xx final was absorbed by its transaction; one
		// that reaches the route matches nothing here.
		c.Drop()
		return
	}
	p.natDetect(c)
	if c.IsMethod(parser.MethodOptions) && len(c.RUser()) == 0 && c.IsURIHostLocal() {
		if c.CheckRequire() { // we answer as the UAS: no extension supported
			c.ReplyStateless(200, "OK", nil)
		}
		return
	}
	if c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
		c.RecordRoute()
	}
	if !c.IsURIHostLocal() {
		p.toForeignDomain(c)
		return
	}
	if c.IsMethod(parser.MethodRegister) {
		p.register(c)
		return
	}
	if c.IsFromLocal() && !p.trustedGateway(c) {
		if p.auth == nil {
			refuse(c, 403, "Authentication Not Configured")
			return
		}
		p.auth.ProxyAuthorize(c, p.afterLocalAuth)
		return
	}
	p.toLocalUser(c)
}

// screenIdentity removes the identities only a trusted node may assert
// (RFC 3325 P-Asserted-Identity and P-Preferred-Identity, the older
// Remote-Party-ID) from a request that does not come from a trusted
// gateway: asserted by a subscriber or an outsider, they reached the
// carrier as the caller's number (screen=yes) and the callee's phone as
// who was calling. Kamailio and OpenSIPS scripts remove_hf them at the
// edge the same way.
func (p *routes) screenIdentity(c *routing.Ctx) {
	m := c.Msg()
	if !m.Has(parser.HdrPAssertedIdentity) && !m.Has(parser.HdrPPreferredIdentity) && m.GetByName(remotePartyID) == nil {
		return
	}
	if p.trustedGateway(c) {
		return
	}
	ed := c.R.Editor()
	ed.RemoveHeaders(parser.HdrPAssertedIdentity)
	ed.RemoveHeaders(parser.HdrPPreferredIdentity)
	ed.RemoveHeadersByName(remotePartyID)
}

var remotePartyID = []byte("Remote-Party-ID")

// trustedGateway reports whether the request comes from a trusted
// gateway: a source of the trusted group (check_source_address: address,
// port, transport and the entry's pattern) or a gateway of the drouting
// tables (is_from_gw: its address).
func (p *routes) trustedGateway(c *routing.Ctx) bool {
	return p.perms != nil && p.opts.TrustedGroup > 0 && p.perms.CheckSourceAddress(c, p.opts.TrustedGroup) ||
		p.dr.IsFromGW(c)
}

// inDialog routes requests inside a dialog by their Route set: only on a
// Record-Route we signed for this dialog. Anything else is not relayed:
// a Route of ours that does not verify gets 403, a request with no Route
// of ours (a stray BYE, a request "inside a dialog" made up to reach some
// address through us) 404. Credentials for our realm a phone may still
// send on in-dialog requests are not passed on.
func (p *routes) inDialog(c *routing.Ctx) {
	if c.LooseRoute() {
		if p.dlg != nil && !p.dlg.ValidateDialog(c) && !p.dlg.FixRouteDialog(c) {
			// The signature binds our Route to the dialog, not to where
			// the request goes: a caller's BYE addressed to herself
			// ended the dialog (the record closed, her place under the
			// fraud limits freed) while the callee never had it. Sent
			// to the other party instead (FixRouteDialog), it ends the
			// call for both; only one whose target the dialog does not
			// know is refused.
			if c.IsMethod(parser.MethodAck) {
				c.Drop()
				return
			}
			refuse(c, 403, "Forbidden (not the dialog's target)")
			return
		}
		if p.dr.GoesToGWHost(c) && c.R.DialogRouteParam(trunkParam) == nil {
			// The signature binds our Route to the dialog, not to where
			// its requests go: a party to any call could address a
			// request "inside" it to a gateway. Only a trunk call's
			// requests go there (its Record-Route says so, signed).
			// Checked where the request goes now, after FixRouteDialog.
			refuse(c, 403, "Forbidden (gateway)")
			return
		}
		p.natDetect(c)
		if p.nh.Enabled() && c.R.DialogRouteParam(nathelper.RouteParam) != nil {
			c.SetFlag(nathelper.FlagNATReplies) // the dialog has a side behind NAT
		}
		matched := p.dlg != nil && p.dlg.MatchDialog(c) // a BYE ends the dialog: the call's record is written
		auth.ConsumeCredentials(c)
		if c.IsMethod(parser.MethodBye) && p.byeEndedCall(c, matched) {
			p.fraud.CallEnded(c)
		}
		p.uac.Restore(c) // what uac_auth and uac_replace_* did to the dialog's first request
		if p.rtp.Enabled() {
			p.rtp.Manage(c, nil, p.afterDialogMedia) // re-INVITE offered, BYE deleted
			return
		}
		relay(c)
		return
	}
	// Not a dialog of ours: counted like an initial request, or a To tag
	// would be all a flood needs to go unnoticed.
	if !p.pikeCheck(c) {
		return
	}
	if c.IsMethod(parser.MethodAck) {
		c.Drop() // a stray ACK cannot be answered
		return
	}
	switch c.RouteKind() {
	case routing.RouteForged, routing.RouteForeign:
		refuse(c, 403, "Forbidden Route")
	default:
		refuse(c, 404, "Not here")
	}
}

// hiddenCall routes a request to the Contact the proxy gave a party of a
// hidden call (topology_hiding_match): Match verified the token and the
// dialog's tags and made the request ready for the other party. A token
// that does not verify for the request's Call-ID gets 403, one of a call
// that ended (or of the other party) 481; both are counted by pike as a
// request that is not of a dialog of ours would be, and an ACK is
// dropped.
func (p *routes) hiddenCall(c *routing.Ctx, v topohiding.Verdict) {
	if v == topohiding.Matched {
		p.natDetect(c) // force_rport and the SDP of a party behind NAT
		auth.ConsumeCredentials(c)
		if c.IsMethod(parser.MethodBye) && p.byeEndedCall(c, true) {
			p.fraud.CallEnded(c) // Match ended the dialog: not while it rings
		}
		if p.rtp.Enabled() {
			p.rtp.Manage(c, nil, p.afterDialogMedia)
			return
		}
		relay(c)
		return
	}
	if !p.pikeCheck(c) {
		return
	}
	if v == topohiding.Elsewhere && p.th.Fetch(c, p.again) {
		return // suspended: the route runs again once the dialog is read
	}
	if c.IsMethod(parser.MethodAck) {
		c.Drop()
		return
	}
	if v == topohiding.Forged {
		refuse(c, 403, "Forbidden")
		return
	}
	refuse(c, 481, "Call/Transaction Does Not Exist")
}

// byeEndedCall reports whether a BYE, matched to its dialog or not
// (MatchDialog, topology hiding's Match), ends the call the fraud limits
// count (route(fraud_release)): one of a call with a dialog only when it
// ended that dialog, so not a BYE while the call rings, with another To
// tag, or one the dialog module did not let reach the other party; any
// BYE of a call without one (relayed while its profile had no
// concurrent_calls threshold: nothing else tells them apart). A call
// bound to its dialog (BindDialog) is left by CallEnded whatever this
// says: the dialog's end frees it, once.
func (p *routes) byeEndedCall(c *routing.Ctx, matched bool) bool {
	if p.dlg == nil {
		return true
	}
	hasDialog, ended := p.dlg.DialogEnded(c)
	return !hasDialog || matched && ended
}

// pikeCheck is pike_check_req: a source over its rate (now banned: the
// transport drops what follows) or banned already gets no answer at all.
// Trusted sources (pike.exempt, the permissions module's group) pass.
func (p *routes) pikeCheck(c *routing.Ctx) bool {
	if p.pike == nil || p.pike.Check(c) {
		return true
	}
	c.Drop()
	return false
}

// refuse answers statelessly (OpenSIPS sl_send_reply): one packet for one
// request, nothing held, nothing retransmitted.
func refuse(c *routing.Ctx, code int, reason string) {
	c.ReplyStateless(code, reason, nil)
}

// toForeignDomain relays a request for another domain, only for
// authenticated local subscribers.
func (p *routes) toForeignDomain(c *routing.Ctx) {
	if !c.IsFromLocal() {
		refuse(c, 403, "Relay Forbidden")
		return
	}
	if p.dr.GoesToGWHost(c) {
		// A gateway named as "another domain": calls to the PSTN go by
		// the drouting rules (prefixes, gateway states, fraud) or not at
		// all (OpenSIPS: goes_to_gw() refused).
		refuse(c, 403, "Forbidden (gateway)")
		return
	}
	if p.auth == nil {
		refuse(c, 403, "Authentication Not Configured")
		return
	}
	p.auth.ProxyAuthorize(c, p.afterForeignAuth)
}

func (p *routes) foreignAuthorized(c *routing.Ctx, res auth.Result) {
	if p.refused(c, res, true) {
		return
	}
	auth.ConsumeCredentials(c)
	p.relayCall(c, true, false, false)
}

// register handles REGISTER for a served domain.
func (p *routes) register(c *routing.Ctx) {
	if p.reg == nil {
		refuse(c, 501, "Registrar Not Configured")
		return
	}
	if p.opts.RegisterWithoutAuth {
		p.reg.SaveWith(c, p.natRegister(c, registrar.SaveOptions{}))
		return
	}
	if p.auth == nil {
		refuse(c, 403, "Authentication Not Configured")
		return
	}
	p.auth.WWWAuthorize(c, p.afterRegisterAuth)
}

func (p *routes) registerAuthorized(c *routing.Ctx, res auth.Result) {
	if p.refused(c, res, false) {
		return
	}
	if p.contactAtGateway(c) {
		// Anyone's call to the subscriber would go to that gateway,
		// trusted by it as our trunk: a way to the PSTN for anyone.
		refuse(c, 403, "Forbidden (contact at a gateway)")
		return
	}
	p.reg.SaveWith(c, p.natRegister(c, registrar.SaveOptions{Authenticated: true}))
}

// contactAtGateway reports whether a Contact of a REGISTER, or a URI of
// its Path, names the address of a drouting gateway. The registrar sends
// calls to a binding with Path through the Path's URIs, and a phone can
// write a Path as easily as an edge proxy.
func (p *routes) contactAtGateway(c *routing.Ctx) bool {
	if p.dr == nil {
		return false
	}
	for _, h := range [2]parser.HeaderName{parser.HdrContact, parser.HdrPath} {
		it := c.Msg().NameAddrs(h)
		for it.Next() {
			var u parser.URI
			if it.NameAddr.Star || u.Parse(it.NameAddr.URI) != nil {
				continue
			}
			host := u.Host
			if m, ok := u.Param("maddr"); ok {
				host = m
			}
			if a, ok := parser.ParseIP(host); ok && p.dr.IsGWAddr(a) { // brackets or not, no allocation
				return true
			}
		}
	}
	return false
}

// refused answers a failed authorization (challenge, 403 or 500) and
// reports whether it did.
func (p *routes) refused(c *routing.Ctx, res auth.Result, proxy bool) bool {
	switch res {
	case auth.Authorized:
		return false
	case auth.Forbidden:
		refuse(c, 403, "Forbidden")
	case auth.Unavailable:
		refuse(c, 500, "Server Internal Error")
	default:
		p.auth.Challenge(c, auth.Options{Proxy: proxy}, res == auth.StaleNonce)
	}
	return true
}

func (p *routes) localAuthorized(c *routing.Ctx, res auth.Result) {
	if p.refused(c, res, true) {
		return
	}
	auth.ConsumeCredentials(c)
	if p.dp != nil && p.opts.DialplanID >= 0 {
		// The number as the lookup and the gateways want it (0301234 →
		// +49301234), and as the fraud check reads it.
		p.dp.TranslateRUser(c, p.opts.DialplanID)
	}
	p.toLocalUser(c)
}

// toLocalUser delivers a request to a subscriber of a served domain
// through the location service, after the aliases module turned an alias
// (a DID) into the subscriber it reaches. A name that is no subscriber
// gets the 480 of a subscriber who is not registered, on the same path
// and with the same timing (no store look-up), unless RevealUnknownUsers
// asks for 404.
func (p *routes) toLocalUser(c *routing.Ctx) {
	if p.aliases != nil {
		p.aliases.AliasLookup(c)
	}
	if p.auth != nil && p.opts.RevealUnknownUsers {
		p.auth.SubscriberExists(c, c.RUser(), c.RDomain(), p.afterExists)
		return
	}
	p.deliver(c)
}

func (p *routes) userChecked(c *routing.Ctx, exists bool, err error) {
	switch {
	case err != nil:
		refuse(c, 500, "Server Internal Error")
	case !exists && p.mayCallPSTN(c):
		p.toPSTN(c)
	case !exists:
		refuse(c, 404, "Not Found")
	default:
		p.deliver(c)
	}
}

// deliver relays the request to the registered contacts of its
// Request-URI, or, for a number that is no subscriber's name, to the
// PSTN, or answers 480.
func (p *routes) deliver(c *routing.Ctx) {
	if p.reg == nil || !p.reg.Lookup(c) {
		if p.reg != nil && p.reg.FlowFailed(c) {
			// RFC 5626: the phone's only way in, its connection, closed.
			refuse(c, 430, "Flow Failed")
			return
		}
		if p.mayCallPSTN(c) {
			p.auth.SubscriberExists(c, c.RUser(), c.RDomain(), p.afterPSTNCheck)
			return
		}
		refuse(c, 480, "Temporarily Unavailable")
		return
	}
	// Requests from our domains were authenticated, but for a trusted
	// gateway's: the caller there is no subscriber of ours, the call
	// comes from a trunk.
	fromGW := p.trustedGateway(c)
	p.relayCall(c, c.IsFromLocal() && !fromGW, true, fromGW)
}

// mayCallPSTN reports whether the request may go to the PSTN: an INVITE
// of an authenticated subscriber (not a trusted gateway's), with the
// drouting module there.
func (p *routes) mayCallPSTN(c *routing.Ctx) bool {
	return p.dr != nil && p.auth != nil && c.IsMethod(parser.MethodInvite) && c.IsFromLocal() && !p.trustedGateway(c)
}

// numberChecked carries on deliver once the store said whether the
// Request-URI user is a subscriber: one who is not registered gets 480,
// anything else is a number for the PSTN.
func (p *routes) numberChecked(c *routing.Ctx, exists bool, err error) {
	switch {
	case err != nil:
		refuse(c, 500, "Server Internal Error")
	case exists:
		refuse(c, 480, "Temporarily Unavailable")
	default:
		p.toPSTN(c)
	}
}

// toPSTN is route[pstn]: do_routing with the group drouting.group, then
// the fraud limits and the relay; use_next_gw in the failure route.
func (p *routes) toPSTN(c *routing.Ctx) {
	switch p.dr.Route(c, p.dr.Group()) {
	case drouting.Routed:
		p.relayCall(c, true, false, true)
	case drouting.NoGateway:
		refuse(c, 503, "No Gateway Available")
	default: // no number, or no rule for it: as for any name that is no subscriber
		if p.opts.RevealUnknownUsers {
			refuse(c, 404, "Not Found")
			return
		}
		refuse(c, 480, "Temporarily Unavailable")
	}
}

// failure tries the next q-group of contacts, or the next gateway of a
// call to the PSTN, if any; otherwise the best response goes upstream.
func (p *routes) failure(c *routing.FailureCtx) {
	if !c.Canceled() && p.answerChallenge(c) {
		if p.th.Hidden(c.Ctx) {
			// uac_auth record-routes the INVITE to keep the CSeq offset;
			// a hidden call has no Record-Route of ours: its dialog
			// keeps the offset (from the 2xx) instead.
			c.R.DropRecordRoute()
		}
		if c.Relay() == nil {
			return // a trunk's challenge answered with its credentials (modules/uac)
		}
	}
	if !c.Canceled() && p.reg != nil && p.reg.NextContacts(c) {
		return
	}
	if p.dr.UseNextGW(c) {
		return
	}
	p.fraud.CallFailed(c.Ctx)
	p.rtp.ManageFailure(c, nil) // the call failed: its media session ends
}

// answerChallenge answers the best response's 401/407 with a trunk's
// credentials (uac_auth): any credential for a branch to a gateway of the
// drouting tables (by its address, any port), only one stored for the
// branch's own address otherwise (a peer called as another domain). A
// credential stored for a realm alone (uac_auth's, any next hop) would
// answer a 407 with the carrier's realm from anyone a call reaches: a
// subscriber's phone, an address a subscriber calls as another domain,
// each getting a digest of the trunk's password for a nonce of its
// choosing (a dictionary attack offline, or the carrier's own nonce
// answered for it to call on the trunk's account).
func (p *routes) answerChallenge(c *routing.FailureCtx) bool {
	if b := c.R.BestBranch(); b != nil {
		if _, dst := b.Destination(); p.dr.IsGWAddr(dst.Addr()) {
			return p.uac.UACAuth(c)
		}
	}
	return p.uac.UACAuthOwnGateway(c)
}

// reply is the reply route: finals that end an INVITE without the failure
// route (6xx, after a CANCEL) end the call the fraud limits count; the
// responses of a callee behind NAT get its source as their Contact.
func (p *routes) reply(c *routing.ReplyCtx) bool {
	p.fraud.Reply(c)
	p.natReply(c)
	p.rtp.ManageReply(c, nil) // the SDP answer through rtpengine; a 6xx or canceled call deleted
	p.sst.Reply(c)            // a 2xx's Session-Expires times the dialog (a refresh's too)
	return true
}

// natDetect is route(nat_detect) of the OpenSIPS and Kamailio NAT
// scripts: a request from behind NAT (nathelper.nat_tests) has its
// responses sent to its source port (force_rport) and is flagged; its
// Contact (and SDP, with nathelper.fix_sdp) get its source address, and a
// dialog it starts is marked in our Record-Route so that its later
// requests know. A REGISTER's contacts are fixed by the registrar at
// save (natRegister).
func (p *routes) natDetect(c *routing.Ctx) {
	if !p.nh.Enabled() || !p.nh.NATUACTest(c, p.nh.Tests()) {
		return
	}
	c.ForceRPort()
	c.SetFlag(nathelper.FlagNAT)
	if c.IsMethod(parser.MethodRegister) {
		return
	}
	p.nh.FixNATedContact(c)
	if f := p.nh.SDPFlags(); f != 0 {
		p.nh.FixNATedSDP(c, f)
	}
	if !c.HasToTag() && c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
		c.R.SetRecordRouteParam(natParam, natYes)
	}
}

var natParam, natYes = []byte(nathelper.RouteParam), []byte("yes")

// trunkParam marks our Record-Route of a call to or from a trunk: its
// in-dialog requests may go to a gateway.
const trunkParam = "trk"

var trunkParamB = []byte(trunkParam)

// natRegister is fix_nated_register for a REGISTER natDetect flagged.
func (p *routes) natRegister(c *routing.Ctx, o registrar.SaveOptions) registrar.SaveOptions {
	if c.IsFlagSet(nathelper.FlagNAT) {
		p.nh.FixNATedRegister(c, &o)
	}
	return o
}

// branch is the branch route: each contact's NAT destination and Path
// (registrar); a branch to a callee registered behind NAT has the
// responses fixed (the NAT branch flag) and marks the dialog.
func (p *routes) branch(c *routing.Ctx, b *routing.Branch) {
	if p.reg.BranchRouteNAT(c, b) && p.nh.Enabled() {
		c.SetFlag(nathelper.FlagNATReplies)
		if !c.HasToTag() && c.IsMethod(parser.MethodInvite, parser.MethodSubscribe) {
			c.R.SetRecordRouteParam(natParam, natYes)
			if p.th.Hidden(c) {
				// The caller's requests reach the callee at the address
				// its contact was registered from, not at its Contact.
				p.dlg.SetFlag(c, dialog.FlagCalleeNAT)
			}
		}
	}
}

// natReply fixes a provisional or 2xx response from behind NAT on a
// transaction flagged for it: its Contact (and SDP, with
// nathelper.fix_sdp) get the address it came from.
func (p *routes) natReply(c *routing.ReplyCtx) {
	if !p.nh.Enabled() || !c.Req.IsFlagSet(nathelper.FlagNATReplies) || c.Status() >= 300 {
		return
	}
	if !p.nh.NATUACTestReply(c, nathelper.ReplyFlags) {
		return
	}
	p.nh.FixNATedContactReply(c)
	if f := p.nh.SDPFlags(); f != 0 {
		p.nh.FixNATedSDPReply(c, f)
	}
}

// relayCall relays a new request after the fraud limits (route[fraud]):
// an INVITE of an authenticated local subscriber is checked against the
// profile fraud.profile; critical gets 403 (482 when the INVITE has the
// Call-ID and From tag of a call in progress), a warning goes on; one
// it counted under a profile with a concurrent_calls threshold gets its
// dialog, bound to it: the dialog's end alone frees its place. With
// accounting on, an INVITE gets its dialog (route[acc]), marked for a
// missed call when it goes to a subscriber's phones (toSubscriber). An
// INVITE to or from a trunk (trunk: to a drouting gateway, from a
// trusted gateway) is hidden with topohiding.trunks, any INVITE with
// topohiding.calls (route[hide]): it gets its dialog for that too.
func (p *routes) relayCall(c *routing.Ctx, authenticated, toSubscriber, trunk bool) {
	counted := false // in the caller's concurrent calls, under a limit of them
	if profile := p.fraud.Profile(); profile != 0 && authenticated && c.IsMethod(parser.MethodInvite) {
		var buf [256]byte
		caller := fraud.AppendCaller(buf[:0], c)
		// The number as routed (after the dial plan), as the drouting
		// rules and the carrier see it: as dialled, a rule for +49900
		// was passed by dialling 0900.
		res := p.fraud.Check(c, caller, c.RUser(), profile)
		counted = res != fraud.NoRule && res != fraud.Critical && p.fraud.CountsConcurrent(profile)
		if res == fraud.Critical {
			if p.fraud.CallInUse(c, caller) {
				// The Call-ID and From tag of a call in progress: a
				// merged request (RFC 3261 §8.2.2.2), a second call
				// made to look like the first, or another subscriber's
				// made to look like its spiral.
				refuse(c, 482, "Loop Detected")
				return
			}
			refuse(c, 403, "Forbidden")
			return
		}
	}
	if trunk {
		// The dialog's requests may go to the gateway (inDialog).
		c.R.SetRecordRouteParam(trunkParamB, natYes)
	}
	hide := p.th.HideCalls() || trunk && p.th.HideTrunks()
	// A call counted under a concurrent limit gets its dialog too: only
	// the dialog's end frees its place (BindDialog).
	if p.dlg != nil && c.IsMethod(parser.MethodInvite) && (p.accOn || hide || p.sst != nil || counted) {
		if !p.sst.CheckMin(c) { // sstCheckMin(1): 422 or 400, before there is a dialog to record
			p.fraud.CallFailed(c)
			return
		}
		if !p.dlg.CreateDialog(c) {
			p.fraud.CallFailed(c)
			refuse(c, 503, "Too Many Calls") // dialog.max_dialogs
			return
		}
		if counted {
			// Its place is freed when the dialog ends, whatever ends
			// it: a BYE, its timeout, the session timer, a failed ping,
			// dialog.end, a drain.
			p.fraud.BindDialog(c, p.dlg)
		}
		p.sst.Manage(c) // Session-Expires raised to min_se, or sst.interval added
		if toSubscriber && p.accOn {
			p.acc.MarkMissed(c)
		}
		if hide && p.th.TopologyHiding(c) && c.IsFlagSet(nathelper.FlagNAT) {
			// The callee's requests reach the caller at the address its
			// INVITE came from, not at its (private) Contact.
			p.dlg.SetFlag(c, dialog.FlagCallerNAT)
		}
	}
	if p.rtp.Enabled() {
		p.rtp.Manage(c, nil, p.afterCallMedia) // rtpengine_manage: the offer, then the relay
		return
	}
	if err := c.Relay(); err != nil {
		p.fraud.CallFailed(c)
		refuse(c, 500, "Relay Failed")
	}
}

// callMediaDone relays a new request once rtpengine_manage is done with
// its SDP, or answers it when media relay failed (rtpengine.Refuse: 488
// for an SDP that is malformed or refused, 503 when no rtpengine answers
// unless rtpengine.on_unavailable is relay).
func (p *routes) callMediaDone(c *routing.Ctx, err error) {
	if err != nil && p.rtp.Refuse(c, err) {
		p.fraud.CallFailed(c)
		return
	}
	if err := c.Relay(); err != nil {
		p.fraud.CallFailed(c)
		p.rtp.Delete(c)
		c.Reply(500, "Relay Failed")
	}
}

// dialogMediaDone is callMediaDone for a request inside a dialog.
func (p *routes) dialogMediaDone(c *routing.Ctx, err error) {
	if err != nil && p.rtp.Refuse(c, err) {
		return
	}
	relay(c)
}

func relay(c *routing.Ctx) {
	if err := c.Relay(); err != nil {
		refuse(c, 500, "Relay Failed")
	}
}
