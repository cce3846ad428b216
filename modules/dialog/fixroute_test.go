package dialog

import (
	"context"
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/store"
)

// fixRoutes makes e's route send what ValidateDialog refuses to the
// dialog's other party (the provider's "if (!validate_dialog() &&
// !fix_route_dialog()) 403"), and returns ValidateDialog's answers before
// FixRouteDialog and after it (for the requests fixed or valid).
func (e *env) fixRoutes() (before, after *[]bool) {
	var b, a []bool
	e.Route = func(c *routing.Ctx) {
		if c.HasToTag() && c.LooseRoute() {
			v := e.d.ValidateDialog(c)
			b = append(b, v)
			if !v && !e.d.FixRouteDialog(c) {
				if !c.IsMethod(parser.MethodAck) {
					c.ReplyStateless(403, "Forbidden (not the dialog's target)", nil)
				}
				return
			}
			a = append(a, e.d.ValidateDialog(c))
		}
		e.route(c)
	}
	return &b, &a
}

// endedBy subscribes to e's end events and returns who ended each.
func (e *env) endedBy() *[]Side {
	var by []Side
	e.d.Subscribe(func(ev *Event) {
		if ev.Kind == EventEnded {
			by = append(by, ev.By)
		}
	})
	return &by
}

// sentRequest returns the request of method among sent (the last one),
// failing when there is none.
func sentRequest(t *testing.T, sent []routetest.Sent, method string) routetest.Sent {
	t.Helper()
	var out *routetest.Sent
	for i := range sent {
		if strings.HasPrefix(sent[i].Data, method+" ") {
			out = &sent[i]
		}
	}
	if out == nil {
		t.Fatalf("no %s sent: %v", method, sent)
	}
	return *out
}

// wantRelayed checks that s went to dst with Request-URI ruri and the
// Route set route ("" none).
func wantRelayed(t *testing.T, what string, s routetest.Sent, dst, ruri, route string) {
	t.Helper()
	line, _, _ := strings.Cut(s.Data, "\r\n")
	if s.Dst.String() != dst || !strings.HasSuffix(line, " "+ruri+" SIP/2.0") ||
		strings.Join(headerValues(s.Data, "Route"), ", ") != route {
		t.Fatalf("%s went to %s as %q with Route %q; want %s, %s, %q", what, s.Dst, line, headerValues(s.Data, "Route"), dst, ruri, route)
	}
}

// TestFixRouteDialog: a party's request with our signed Route that does
// not go to the other party as the dialog knows it (the caller's INFO
// addressed to herself through a proxy of hers, to a host of hers, to
// the callee with a maddr of hers, past the callee's proxy; the callee's
// to itself,
// the ACK of a re-INVITE addressed to the caller herself, the caller's
// BYE to herself, the callee's BYE to itself) is sent to the other
// party: its target as relayed for Request-URI and its route set (the
// proxy on its side) as Route, to that proxy. ValidateDialog is true for
// it then, MatchDialog matches it (the CSeq recorded) and each BYE ends
// its call, by the side that sent it, as a BYE to the right address
// does; switchboard_dialog_route_fixed_total counts them, misrouted_total
// once each (ValidateDialog's). A callee whose target the dialog could
// not keep (a Contact over 1 KiB) is reached by no fix: the caller's BYE
// to herself is answered 403 and ends nothing.
func TestFixRouteDialog(t *testing.T) {
	e := newEnv(t, nil)
	before, after := e.fixRoutes()
	by := e.endedBy()
	const toCallerSide, toCalleeSide = "10.0.0.9:5060", "10.0.0.7:5060"
	const callerRoute, calleeRoute = "<sip:10.0.0.9;lr;caller-side>", "<sip:10.0.0.7;lr;callee-side>"
	calleeTarget, callerTarget := "sip:bob@"+calleeAddr+";transport=udp", "sip:alice@"+callerAddr
	wantFixed := func(what string, n int) {
		t.Helper()
		b, a := *before, *after
		if b[len(b)-1] || !a[len(a)-1] || !e.matched[len(e.matched)-1] {
			t.Fatalf("%s: valid %v, after the fix %v, matched %v", what, b, a, e.matched)
		}
		if f, m := e.d.routeFixed.Get(), e.d.misrouted.Get(); f != uint64(n) || m != uint64(n) {
			t.Fatalf("%s: route_fixed_total %d, misrouted_total %d, want %d", what, f, m, n)
		}
	}

	c := e.invite("fix-1")
	c.respond(0, 200, "b1")
	c.inDialog("ACK", true, "b1", 10)
	hers := append(c.routeFrom(true)[:len(c.routeFrom(true))-1], "<sip:127.0.0.1:6666;lr>")
	wantRelayed(t, "the caller's INFO to herself through a proxy of hers",
		sentRequest(t, c.inDialogTo("INFO", true, "b1", 11, "sip:alice@"+callerAddr, hers, ""), "INFO"),
		toCalleeSide, calleeTarget, calleeRoute)
	wantFixed("the caller's INFO", 1)
	if g := e.only(t); g.cseq[toCaller] != 11 {
		t.Fatalf("the caller's CSeq after her fixed INFO: %d", g.cseq[toCaller])
	}
	ours := c.routeFrom(true)[:len(c.routeFrom(true))-1]
	for i, f := range []struct {
		name  string
		ruri  string
		route []string
	}{
		{"to a host of hers", "sip:bob@127.0.0.1:6666;transport=udp", nil},
		{"with a maddr of hers", calleeTarget + ";maddr=127.0.0.66", nil},
		{"past the callee's proxy", "", ours},
	} {
		wantRelayed(t, "the caller's INFO "+f.name,
			sentRequest(t, c.inDialogTo("INFO", true, "b1", 100+i, f.ruri, f.route, ""), "INFO"),
			toCalleeSide, calleeTarget, calleeRoute)
	}
	e.d.routeFixed.Set(1)
	e.d.misrouted.Set(1)
	wantRelayed(t, "the callee's INFO to itself",
		sentRequest(t, c.inDialogTo("INFO", false, "b1", 3, "sip:bob@"+calleeAddr, nil, ""), "INFO"),
		toCallerSide, callerTarget, callerRoute)
	wantFixed("the callee's INFO", 2)

	// The ACK of a re-INVITE, addressed to the caller herself.
	reinvite := sentRequest(t, c.inDialog("INVITE", true, "b1", 12), "INVITE")
	var m parser.Message
	if err := m.Parse([]byte(reinvite.Data)); err != nil {
		t.Fatal(err)
	}
	c.send(calleeAddr, string(parser.AppendResponseHeaders(nil, &m, 200, nil, nil, []byte("Contact: <"+calleeTarget+">\r\n"))))
	wantRelayed(t, "the caller's ACK to herself",
		sentRequest(t, c.inDialogTo("ACK", true, "b1", 12, "sip:alice@"+callerAddr, nil, ""), "ACK"),
		toCalleeSide, calleeTarget, calleeRoute)
	wantFixed("the ACK", 3)
	e.wantCount(t, 0, 0, 1)

	wantRelayed(t, "the caller's BYE to herself",
		sentRequest(t, c.inDialogTo("BYE", true, "b1", 13, "sip:alice@"+callerAddr, nil, ""), "BYE"),
		toCalleeSide, calleeTarget, calleeRoute)
	wantFixed("the caller's BYE", 4)
	e.wantCount(t, 0, 0, 0)
	if e.ended(ReasonBye) != 1 || len(*by) != 1 || (*by)[0] != Caller {
		t.Fatalf("the caller's fixed BYE: %d ended by BYE, by %v", e.ended(ReasonBye), *by)
	}

	c = e.invite("fix-2")
	c.respond(0, 200, "b2")
	wantRelayed(t, "the callee's BYE to itself",
		sentRequest(t, c.inDialogTo("BYE", false, "b2", 1, "sip:bob@"+calleeAddr+";transport=udp", nil, ""), "BYE"),
		toCallerSide, callerTarget, callerRoute)
	wantFixed("the callee's BYE", 5)
	if e.ended(ReasonBye) != 2 || len(*by) != 2 || (*by)[1] != Callee {
		t.Fatalf("the callee's fixed BYE: %d ended by BYE, by %v", e.ended(ReasonBye), *by)
	}
	e.wantCount(t, 0, 0, 0)

	// A callee's Contact the dialog could not keep: its target is not
	// known, and no request of the caller is sent to it.
	c = e.invite("fix-3")
	var inv parser.Message
	if err := inv.Parse([]byte(c.fwd)); err != nil {
		t.Fatal(err)
	}
	extra := ""
	for _, v := range c.rr {
		extra += "Record-Route: " + v + "\r\n"
	}
	extra += "Contact: <sip:bob@" + calleeAddr + ";x=" + strings.Repeat("a", maxPart) + ">\r\n"
	c.send(calleeAddr, string(parser.AppendResponseHeaders(nil, &inv, 200, nil, []byte("b3"), []byte(extra))))
	e.wantCount(t, 0, 0, 1)
	sent := c.inDialogTo("BYE", true, "b3", 11, "sip:alice@"+callerAddr, c.routeFrom(true)[:1], "")
	if len(sent) != 1 || !strings.HasPrefix(sent[0].Data, "SIP/2.0 403 ") || sent[0].Dst.String() != callerAddr {
		t.Fatalf("the caller's BYE to a callee not known: %v", sent)
	}
	e.wantCount(t, 0, 0, 1)
	if e.ended(ReasonBye) != 2 || e.d.routeFixed.Get() != 5 {
		t.Fatalf("the caller's BYE to a callee not known: %d ended by BYE, %d fixed", e.ended(ReasonBye), e.d.routeFixed.Get())
	}
}

// TestFixRouteDialogNAT: parties behind NAT without a proxy of their
// own (no route set), each Contact rewritten on its way as
// fix_nated_contact does (the caller's 10.1.1.1 to the address it sends
// from, the callee's 10.8.8.8 likewise). The caller's INFO to the
// callee's Contact as the callee sent it (private) is sent to the callee's
// Contact as relayed, at its address, with no Route; the callee's BYE to
// the caller's private Contact goes to the caller's Contact as relayed
// and ends the call, by the callee.
func TestFixRouteDialogNAT(t *testing.T) {
	e := newEnv(t, nil)
	before, after := e.fixRoutes()
	by := e.endedBy()
	e.beforeRelay = func(c *routing.Ctx) bool {
		natContact(t, c.Msg(), c.R.Editor(), c.R.Own([]byte(callerAddr)))
		return true
	}
	e.Reply = func(c *routing.ReplyCtx) bool {
		if c.Msg().Has(parser.HdrContact) {
			natContact(t, c.Msg(), c.Editor(), c.Own([]byte(calleeAddr)))
		}
		return true
	}
	inv := strings.Replace(allocInvite, "00000000", "fixnat01", -1)
	inv = strings.Replace(inv, "Contact: <sip:alice@"+callerAddr+">", "Contact: <sip:alice@10.1.1.1:5070>", 1)
	e.Receive(callerAddr, inv)
	fwd := sentRequest(t, e.Take(), "INVITE")
	if header(fwd.Data, "Contact") != "<sip:alice@"+callerAddr+">" {
		t.Fatalf("INVITE relayed with Contact %q", header(fwd.Data, "Contact"))
	}
	var m parser.Message
	if err := m.Parse([]byte(fwd.Data)); err != nil {
		t.Fatal(err)
	}
	e.Receive(calleeAddr, string(parser.AppendResponseHeaders(nil, &m, 200, nil, []byte("b1"),
		[]byte("Record-Route: "+string(m.Get(parser.HdrRecordRoute))+"\r\nContact: <sip:bob@10.8.8.8:5080>\r\n"))))
	e.Take()
	rr := string(m.Get(parser.HdrRecordRoute))
	request := func(method string, fromCaller bool, ruri string, cseq int) []routetest.Sent {
		from, to, src := string(m.From().Raw), "<sip:bob@example.com>;tag=b1", callerAddr
		if !fromCaller {
			from, to, src = to, from, calleeAddr
		}
		e.Receive(src, method+" "+ruri+" SIP/2.0\r\nVia: SIP/2.0/UDP "+src+";branch=z9hG4bK-fn"+itoa(cseq)+"\r\n"+
			"Max-Forwards: 70\r\nRoute: "+rr+"\r\nFrom: "+from+"\r\nTo: "+to+"\r\nCall-ID: cfixnat01@phone\r\n"+
			"CSeq: "+itoa(cseq)+" "+method+"\r\nContent-Length: 0\r\n\r\n")
		return e.Take()
	}
	wantRelayed(t, "the caller's INFO to the callee's private Contact",
		sentRequest(t, request("INFO", true, "sip:bob@10.8.8.8:5080", 2), "INFO"), calleeAddr, "sip:bob@"+calleeAddr, "")
	wantRelayed(t, "the callee's BYE to the caller's private Contact",
		sentRequest(t, request("BYE", false, "sip:alice@10.1.1.1:5070", 1), "BYE"), callerAddr, "sip:alice@"+callerAddr, "")
	if b, a := *before, *after; len(b) != 2 || b[0] || b[1] || !a[0] || !a[1] {
		t.Fatalf("valid %v, after the fix %v", b, a)
	}
	if e.ended(ReasonBye) != 1 || len(*by) != 1 || (*by)[0] != Callee {
		t.Fatalf("the callee's fixed BYE: %d ended by BYE, by %v", e.ended(ReasonBye), *by)
	}
}

// TestFixRouteDialogAfterRestart: a dialog restored from the store is
// fixed as the live one was: the caller's BYE to herself goes to the
// callee's Contact as relayed (kept in the store) through the callee's
// proxy and ends the call. A row without the Contacts as relayed (the
// OpenSIPS schema) of a caller without a proxy, behind NAT (Contact
// 10.1.1.1): the callee's BYE to another address of hers goes to her
// Contact as the dialog knows it, sent to her first hop (the address her
// INVITE came from), as the proxy's own BYE would be, and ends the call.
func TestFixRouteDialogAfterRestart(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e1 := newEnvWith(t, persistSettings(), envOptions{store: st, secret: testSecret})
	const calleeNAT = "192.0.2.80:8080"
	e1.Reply = func(c *routing.ReplyCtx) bool {
		if c.Msg().Has(parser.HdrContact) {
			natContact(t, c.Msg(), c.Editor(), c.Own([]byte(calleeNAT)))
		}
		return true
	}
	c := e1.invite("restart-fix")
	c.respond(0, 200, "b1")
	// The caller-less call of the second part, answered before the stop.
	inv := strings.Replace(allocInvite, "00000000", "restfix1", -1)
	inv = strings.Replace(inv, "Contact: <sip:alice@"+callerAddr+">", "Contact: <sip:alice@10.1.1.1:5070>", 1)
	e1.Receive(callerAddr, inv)
	var fwd parser.Message
	if err := fwd.Parse([]byte(sentRequest(t, e1.Take(), "INVITE").Data)); err != nil {
		t.Fatal(err)
	}
	e1.Receive(calleeAddr, string(parser.AppendResponseHeaders(nil, &fwd, 200, nil, []byte("b2"),
		[]byte("Record-Route: "+string(fwd.Get(parser.HdrRecordRoute))+"\r\nContact: <sip:bob@"+calleeAddr+">\r\n"))))
	e1.mods.Stop()
	r := stored(t, st)["crestfix1@phone"]
	r.CallerContactSent, r.CalleeContactSent = "", ""
	if err := st.ApplyDialogs(context.Background(), []store.DialogOp{{Kind: store.DialogUpsert, Dialog: r}}); err != nil {
		t.Fatal(err)
	}

	e2 := newEnvWith(t, persistSettings(), envOptions{store: st, clock: e1.clock, secret: testSecret})
	before, after := e2.fixRoutes()
	by := e2.endedBy()
	c.e = e2
	wantRelayed(t, "after the restart, the caller's BYE to herself",
		sentRequest(t, c.inDialogTo("BYE", true, "b1", 11, "sip:alice@"+callerAddr, nil, ""), "BYE"),
		"10.0.0.7:5060", "sip:bob@"+calleeNAT+";transport=udp", "<sip:10.0.0.7;lr;callee-side>")
	if e2.ended(ReasonBye) != 1 || len(*by) != 1 || (*by)[0] != Caller {
		t.Fatalf("the restored call after the fixed BYE: %d ended by BYE, by %v", e2.ended(ReasonBye), *by)
	}

	e2.Take()
	e2.Receive(calleeAddr, "BYE sip:alice@127.0.0.1:6666 SIP/2.0\r\nVia: SIP/2.0/UDP "+calleeAddr+";branch=z9hG4bK-rf1\r\n"+
		"Max-Forwards: 70\r\nRoute: "+string(fwd.Get(parser.HdrRecordRoute))+"\r\nFrom: <sip:bob@example.com>;tag=b2\r\n"+
		"To: "+string(fwd.From().Raw)+"\r\nCall-ID: crestfix1@phone\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
	wantRelayed(t, "the callee's BYE to another address of the caller's (a row without the Contacts as relayed)",
		sentRequest(t, e2.Take(), "BYE"), callerAddr, "sip:alice@10.1.1.1:5070", "")
	if b, a := *before, *after; len(b) != 2 || b[0] || b[1] || len(a) != 2 || !a[0] || !a[1] {
		t.Fatalf("valid %v, after the fix %v", b, a)
	}
	if e2.ended(ReasonBye) != 2 || (*by)[1] != Callee {
		t.Fatalf("the restored call without relayed Contacts: %d ended by BYE, by %v", e2.ended(ReasonBye), *by)
	}
}
