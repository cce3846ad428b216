package uac

import (
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
)

// The carrier sees the identity it wants, the caller its own, in the
// responses to the INVITE and in both directions of the dialog's later
// requests; the caller's identity never reaches the carrier.
func TestReplaceFromAndTo(t *testing.T) {
	f := build(t, nil, nil, nil)
	h := routetest.New(t, nil)
	trunkRoutes(h, f.u, func(c *routing.Ctx) {
		if !f.u.ReplaceFrom(c, []byte("Trunk"), []byte("sip:+4930100@carrier.example")) ||
			!f.u.ReplaceTo(c, nil, []byte("sip:+4930999@carrier.example")) {
			t.Error("replace refused")
		}
	})
	inv := strings.Replace(invite("sip:+4930999@"+carrier), "From: <sip:alice@example.com>", `From: "Alice" <sip:alice@example.com>`, 1)
	h.Receive(caller, inv)
	sent := h.Take()
	fwd := one(t, sent, carrier, "INVITE ")
	tag := strings.TrimPrefix(header(inv, "From"), `"Alice" <sip:alice@example.com>;tag=`)
	if header(fwd, "From") != `"Trunk" <sip:+4930100@carrier.example>;tag=`+tag || header(fwd, "To") != "<sip:+4930999@carrier.example>" {
		t.Fatalf("the carrier sees From %q To %q", header(fwd, "From"), header(fwd, "To"))
	}
	for _, who := range []string{"alice@example.com", "bob@example.com", "Alice"} {
		if strings.Contains(fwd, who) {
			t.Errorf("%q reaches the carrier:\n%s", who, fwd)
		}
	}
	rr := header(fwd, "Record-Route")
	if !strings.Contains(rr, ";uacf=") || !strings.Contains(rr, ";uact=") {
		t.Fatalf("Record-Route %s", rr)
	}
	if r := one(t, sent, caller, "SIP/2.0 100"); header(r, "From") != header(inv, "From") {
		t.Errorf("100 Trying From %q", header(r, "From"))
	}
	h.Receive(carrier, respond(t, fwd, 200, "c1", "Record-Route: "+rr+"\r\nContact: <sip:gw@"+carrier+">\r\n"))
	ok := one(t, h.Take(), caller, "SIP/2.0 200")
	if header(ok, "From") != header(inv, "From") || header(ok, "To") != header(inv, "To")+";tag=c1" {
		t.Fatalf("the caller's 200: From %q To %q", header(ok, "From"), header(ok, "To"))
	}

	callID := header(inv, "Call-ID")
	callerFrom, callerTo := header(inv, "From"), header(inv, "To")+";tag=c1"
	h.Receive(caller, inDialog("BYE", "sip:gw@"+carrier, "rb1", callerFrom, callerTo, callID, "2", rr))
	bye := one(t, h.Take(), carrier, "BYE ")
	if header(bye, "From") != `"Alice" <sip:+4930100@carrier.example>;tag=`+tag || header(bye, "To") != "<sip:+4930999@carrier.example>;tag=c1" {
		t.Errorf("the caller's BYE reaches the carrier with From %q To %q", header(bye, "From"), header(bye, "To"))
	}
	h.Receive(carrier, respond(t, bye, 200, "", ""))
	if r := one(t, h.Take(), caller, "SIP/2.0 200"); header(r, "From") != callerFrom || header(r, "To") != callerTo {
		t.Errorf("200 to the caller's BYE: From %q To %q", header(r, "From"), header(r, "To"))
	}
	carrierFrom, carrierTo := "<sip:+4930999@carrier.example>;tag=c1", `"Trunk" <sip:+4930100@carrier.example>;tag=`+tag
	h.Receive(carrier, inDialog("BYE", "sip:alice@"+caller, "rb2", carrierFrom, carrierTo, callID, "9", rr))
	bye = one(t, h.Take(), caller, "BYE ")
	if header(bye, "From") != "<sip:bob@example.com>;tag=c1" || header(bye, "To") != `"Trunk" <sip:alice@example.com>;tag=`+tag {
		t.Errorf("the carrier's BYE reaches the caller with From %q To %q", header(bye, "From"), header(bye, "To"))
	}
	if f.counter("switchboard_uac_restored_total") != 2 || f.counter("switchboard_uac_replaced_total") != 2 {
		t.Errorf("restored %d replaced %d", f.counter("switchboard_uac_restored_total"), f.counter("switchboard_uac_replaced_total"))
	}

	// A token sealed under another secret (a node whose uac.secret
	// differs) opens nowhere else: counted, the request goes on as sent.
	g := build(t, nil, nil, nil)
	trunkRoutes(h, g.u, nil)
	h.Receive(caller, inDialog("BYE", "sip:gw@"+carrier, "rb3", callerFrom, callerTo, callID, "3", rr))
	if bye := one(t, h.Take(), carrier, "BYE "); header(bye, "From") != callerFrom {
		t.Errorf("From %q after a token that does not open", header(bye, "From"))
	}
	if g.counter("switchboard_uac_bad_tokens_total") != 2 {
		t.Errorf("bad tokens %d", g.counter("switchboard_uac_bad_tokens_total"))
	}
}

// Requests inside a dialog and values that would break the header are
// refused; a URI left empty keeps the URI, a display left nil keeps it.
func TestReplaceRefusals(t *testing.T) {
	f := build(t, nil, nil, nil)
	h := routetest.New(t, nil)
	for _, c := range []struct {
		display, uri string
		nilDisplay   bool
		ok           bool
		from         string
	}{
		{"", "sip:x@y", true, true, "<sip:x@y>;tag="},
		{"", "", false, true, "<sip:alice@example.com>;tag="},
		{"New", "", false, true, `"New" <sip:alice@example.com>;tag=`},
		{`"Quoted Name"`, "sip:x@y", false, true, `"Quoted Name" <sip:x@y>;tag=`},
		{"a\"b", "sip:x@y", false, false, ""},
		{"", "sip:x@y>, <sip:evil@z", true, false, ""},
		{"", "sip:x@y\r\nX: 1", true, false, ""},
		{"", "http://x", true, false, ""},
	} {
		var ok bool
		h.InRoute(t, caller, invite("sip:+1@"+carrier), func(rc *routing.Ctx) {
			var d []byte
			if !c.nilDisplay {
				d = []byte(c.display)
			}
			ok = f.u.ReplaceFrom(rc, d, []byte(c.uri))
			rc.Relay()
		})
		sent := h.Take()
		if ok != c.ok {
			t.Errorf("ReplaceFrom(%q, %q) = %v", c.display, c.uri, ok)
			continue
		}
		if ok {
			fwd := one(t, sent, carrier, "INVITE ")
			if !strings.HasPrefix(header(fwd, "From"), c.from) {
				t.Errorf("ReplaceFrom(%q, %q): From %q", c.display, c.uri, header(fwd, "From"))
			}
		}
	}
	h.InRoute(t, caller, strings.Replace(invite("sip:+1@"+carrier), "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=x", 1), func(rc *routing.Ctx) {
		if f.u.ReplaceFrom(rc, nil, []byte("sip:x@y")) {
			t.Error("replaced inside a dialog")
		}
	})
}

// TestReplaceAllOrNothing: ReplaceFrom on a From whose original cannot go
// into our Record-Route (a URI of 700 bytes: the dialog's parameters are
// at most 1 KiB) returns false and changes nothing; so it does when the
// route's edits left no room.
func TestReplaceAllOrNothing(t *testing.T) {
	f := build(t, nil, nil, nil)
	h := routetest.New(t, nil)
	long := "sip:alice@example.com;x=" + strings.Repeat("a", 700)
	inv := strings.Replace(invite("sip:+1@"+carrier), "<sip:alice@example.com>", "<"+long+">", 1)
	var ok bool
	h.InRoute(t, caller, inv, func(c *routing.Ctx) {
		ok = f.u.ReplaceFrom(c, []byte("Trunk"), []byte("sip:+4930100@carrier.example"))
		c.Relay()
	})
	if fwd := one(t, h.Take(), carrier, "INVITE "); ok || strings.Contains(header(fwd, "From"), "+4930100") {
		t.Fatalf("ReplaceFrom returned %v; the carrier got From %q", ok, header(fwd, "From"))
	}
	h.InRoute(t, caller, invite("sip:+1@"+carrier), func(c *routing.Ctx) {
		for c.R.Editor().AddHeader("X-Filler", []byte("1")) {
		}
		ok = f.u.ReplaceFrom(c, []byte("Trunk"), []byte("sip:+4930100@carrier.example"))
		c.Relay()
	})
	if fwd := one(t, h.Take(), carrier, "INVITE "); ok || strings.Contains(fwd, "uacf=") {
		t.Fatalf("ReplaceFrom with no edit left returned %v:\n%s", ok, fwd)
	}
}

// A route set written for the module runs without it: every method of a
// nil *UAC does nothing.
func TestNilModule(t *testing.T) {
	var u *UAC
	h := routetest.New(t, nil)
	h.InRoute(t, caller, invite("sip:+1@"+carrier), func(c *routing.Ctx) {
		if u.ReplaceFrom(c, nil, []byte("sip:x@y")) || u.ReplaceTo(c, nil, []byte("sip:x@y")) || u.Restore(c) {
			t.Error("a nil module did something")
		}
	})
	h.Failure = func(c *routing.FailureCtx) {
		if u.UACAuth(c) {
			t.Error("a nil module answered")
		}
	}
	h.Route = func(c *routing.Ctx) { c.Relay() }
	h.Receive(caller, invite("sip:+1@"+carrier))
	fwd := one(t, h.Take(), carrier, "INVITE ")
	h.Receive(carrier, respond(t, fwd, 407, "c", "Proxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n"))
	one(t, h.Take(), caller, "SIP/2.0 407")
}
