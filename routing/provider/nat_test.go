package provider

import (
	"strconv"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/modules/nathelper"
	"switchboard/modules/registrar"
	"switchboard/shards"
)

// withNAT builds the registrar and nathelper as the server does (the
// keepalive is left out: nothing here answers it).
func withNAT(t *testing.T, enabled bool) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		s := nathelper.DefaultSettings()
		s.Enabled, s.PingInterval, s.FixSDP = enabled, 0, []string{"rewrite-media-ip"}
		rs := registrar.DefaultSettings()
		rs.NATTests = nil // only nathelper marks contacts here
		set, err := modules.Build(modules.Services{Clock: clock}, map[string]any{"nathelper": s, "registrar": rs}, "nathelper")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		return map[string]any{"registrar": set.Get("registrar"), "nathelper": set.Get("nathelper")}
	}
}

// behindNAT makes a request of req() come from a phone behind NAT: its
// Via and Contact name its private address, without rport.
func behindNAT(msg, private string) string {
	msg = strings.Replace(msg, "Via: SIP/2.0/UDP 127.0.0.1:5062;", "Via: SIP/2.0/UDP "+private+";", 1)
	msg = strings.Replace(msg, ";rport\r\n", "\r\n", 1)
	return strings.Replace(msg, "@127.0.0.1:5062>", "@"+private+">", 1)
}

// TestNATScript: the provider's NAT steps. A phone behind NAT registers
// (answers go to its source port although its Via has no rport; the
// binding is reached at its source); a caller behind NAT calls it (the
// INVITE reaches the callee at its source with the caller's Contact and
// SDP fixed and the dialog marked in our Record-Route); the callee's 200
// goes upstream with its Contact fixed.
func TestNATScript(t *testing.T) {
	h := newHarnessWith(t, true, Options{}, withNAT(t, true))
	const bobPhone, alicePhone = "127.0.0.1:6000", "127.0.0.1:6100"

	reg := behindNAT(req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", "Contact: <sip:bob@127.0.0.1:5062>\r\n"), "192.168.1.10:5062")
	r := h.send(bobPhone, reg, final)
	if r.dst != bobPhone || status(r.data) != "401 Unauthorized" {
		t.Fatalf("challenge sent to %s: %s", r.dst, r.data)
	}
	reg = behindNAT(req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
		"Contact: <sip:bob@127.0.0.1:5062>\r\n"+creds(r.data, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")), "192.168.1.10:5062")
	if r = h.send(bobPhone, reg, final); r.dst != bobPhone || status(r.data) != "200 OK" {
		t.Fatalf("REGISTER answered at %s: %s", r.dst, r.data)
	}

	sdp := "v=0\r\no=a 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	withSDP := func(m string) string {
		return strings.Replace(m, "Content-Length: 0\r\n\r\n", "Content-Type: application/sdp\r\nContent-Length: "+strconv.Itoa(len(sdp))+"\r\n\r\n"+sdp, 1)
	}
	inv := withSDP(behindNAT(req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com", ""), "10.0.0.5:5062"))
	r = h.send(alicePhone, inv, final)
	if r.dst != alicePhone || status(r.data) != "407 Proxy Authentication Required" {
		t.Fatalf("407 sent to %s: %s", r.dst, r.data)
	}
	inv = withSDP(behindNAT(req("INVITE", "sip:bob@example.com", "alice@example.com", "bob@example.com",
		creds(r.data, "Proxy-Authorization", "alice", "alice-pw", "INVITE", "sip:bob@example.com")), "10.0.0.5:5062"))
	out := h.send(alicePhone, inv, func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") })
	if out.dst != bobPhone || !strings.HasPrefix(out.data, "INVITE sip:bob@192.168.1.10:5062 SIP/2.0") {
		t.Fatalf("INVITE sent to %s:\n%s", out.dst, out.data)
	}
	if c := hdr(out.data, "Contact"); c != "<sip:x@127.0.0.1:6100>" {
		t.Fatalf("caller's Contact relayed as %q", c)
	}
	if rr := hdr(out.data, "Record-Route"); !strings.Contains(rr, ";nat=yes") {
		t.Fatalf("Record-Route %q", rr)
	}
	if !strings.Contains(out.data, "\r\nc=IN IP4 127.0.0.1\r\n") || !strings.Contains(out.data, "o=a 1 1 IN IP4 10.0.0.5") {
		t.Fatalf("SDP relayed:\n%s", out.data)
	}

	ok := strings.Replace(respond(out.data, 200), "Content-Length: 0", "Contact: <sip:bob@192.168.1.10:5062>\r\nContent-Length: 0", 1)
	up := h.send(bobPhone, ok, func(s sentMsg) bool { return strings.HasPrefix(s.data, "SIP/2.0 200") })
	if up.dst != alicePhone || hdr(up.data, "Contact") != "<sip:bob@127.0.0.1:6000>" {
		t.Fatalf("200 to %s with Contact %q", up.dst, hdr(up.data, "Contact"))
	}
}

// TestNATScriptOff: nathelper.enabled false changes nothing: the 401
// goes to the Via's port, the Contact is relayed as sent.
func TestNATScriptOff(t *testing.T) {
	h := newHarnessWith(t, true, Options{}, withNAT(t, false))
	reg := behindNAT(req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", "Contact: <sip:bob@127.0.0.1:5062>\r\n"), "127.0.0.9:5062")
	if r := h.send("127.0.0.1:6000", reg, final); r.dst != "127.0.0.1:5062" {
		t.Fatalf("challenge sent to %s", r.dst)
	}
	inv := behindNAT(req("INVITE", "sip:x@127.0.0.2:5090", "someone@example.net", "x@127.0.0.2", ""), "10.0.0.5:5062")
	if r := h.send("127.0.0.1:6100", inv, final); r.dst != "127.0.0.1:5062" {
		t.Fatalf("403 sent to %s", r.dst)
	}
}

// hdr returns the value of the first header called name.
func hdr(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestSpoofedRegisterReachesNoVictim: a subscriber who wants the proxy's
// keepalives and calls sent to a victim's address fetches a nonce at his
// own address and sends his REGISTER, password right, with the victim's
// source address (UDP, no ingress filtering). The nonce is good only
// from the address it was sent to (auth.check_source): the forged
// REGISTER gets one 401, at the victim, no binding is stored, so nothing
// is pinged there and a call to him goes nowhere (480). His Contact,
// Via and received parameter naming the victim from his own address
// store his own source (TestFixNATedRegisterForged).
func TestSpoofedRegisterReachesNoVictim(t *testing.T) {
	h := newHarnessWith(t, true, Options{}, withNAT(t, true))
	const own, victim = "127.0.0.1:6000", "127.0.0.99:5060"
	reg := func(extra string) string {
		return behindNAT(req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", "Contact: <sip:bob@127.0.0.1:5062>\r\n"+extra), "192.168.1.10:5062")
	}
	r := h.send(own, reg(""), final)
	if status(r.data) != "401 Unauthorized" {
		t.Fatalf("REGISTER: %s", r.data)
	}
	forged := h.send(victim, reg(creds(r.data, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")), final)
	if forged.dst != victim || status(forged.data) != "401 Unauthorized" {
		t.Fatalf("the spoofed REGISTER got %s at %s", status(forged.data), forged.dst)
	}
	if s := h.send("127.0.0.1:7000", req("INVITE", "sip:bob@example.com", "x@example.net", "bob@example.com", ""), finalOrRequest); status(s.data) != "480 Temporarily Unavailable" {
		t.Fatalf("a call to bob after the spoofed REGISTER went to %s: %q", s.dst, strings.SplitN(s.data, "\r\n", 2)[0])
	}
}
