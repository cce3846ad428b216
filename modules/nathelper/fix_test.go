package nathelper

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/parser/sdp"
	"switchboard/routing"
)

// TestFixNATedContact: the relayed request's Contact URIs get the source
// address and port; user, URI parameters, display name and header
// parameters stay; an IPv6 source is bracketed; a request without a
// Contact is left alone.
func TestFixNATedContact(t *testing.T) {
	f := build(t, nil, nil)
	fix := func(c *routing.Ctx) {
		if !f.n.FixNATedContact(c) {
			t.Error("nothing fixed")
		}
	}
	out := f.relayed(t, "127.0.0.1:40000", req("INVITE", "sip:bob@127.0.0.5:5080", "192.168.1.10:5062",
		"Contact: \"Alice\" <sip:alice@192.168.1.10:5062;transport=udp;ob>;+sip.instance=\"<urn:uuid:1>\";expires=60\r\n", ""), fix)
	if c := header(out, "Contact"); c != `"Alice" <sip:alice@127.0.0.1:40000;transport=udp;ob>;+sip.instance="<urn:uuid:1>";expires=60` {
		t.Fatalf("Contact %q", c)
	}
	// No port, no user, two values on one line.
	out = f.relayed(t, "127.0.0.1:40001", req("SUBSCRIBE", "sip:bob@127.0.0.5:5080", "192.168.1.10:5062",
		"Contact: <sip:192.168.1.10>, <sips:a@10.0.0.1:5061>\r\n", ""), fix)
	if c := header(out, "Contact"); c != "<sip:127.0.0.1:40001>, <sips:a@127.0.0.1:40001>" {
		t.Fatalf("Contact %q", c)
	}
	// IPv6 source.
	out = f.relayed(t, "[::1]:40002", req("INVITE", "sip:bob@127.0.0.5:5080", "[fd00::10]:5062",
		"Contact: <sip:alice@[fd00::10]:5062>\r\n", ""), fix)
	if c := header(out, "Contact"); c != "<sip:alice@[::1]:40002>" {
		t.Fatalf("Contact %q", c)
	}
	// No Contact: nothing to do.
	if f.inRoute(t, "127.0.0.1:40003", req("MESSAGE", "sip:bob@127.0.0.5", "192.168.1.10:5062", "", ""), f.n.FixNATedContact) {
		t.Fatal("fixed a request without Contact")
	}
	if n := f.counter("switchboard_nathelper_contacts_fixed_total"); n != 3 {
		t.Fatalf("contacts_fixed_total %d", n)
	}
}

// TestFixNATedContactReply: in the reply route, the Contact of a 180 and a
// 200 from a callee behind NAT gets the address the response came from,
// in the copy that goes upstream.
func TestFixNATedContactReply(t *testing.T) {
	f := build(t, nil, nil)
	f.h.Reply = func(c *routing.ReplyCtx) bool {
		if f.n.NATUACTestReply(c, ReplyFlags) {
			f.n.FixNATedContactReply(c)
		}
		return true
	}
	fwd := f.relayed(t, "127.0.0.1:5070", req("INVITE", "sip:bob@127.0.0.5:5080", "127.0.0.1:5070", "Contact: <sip:alice@127.0.0.1:5070>\r\n", ""), func(*routing.Ctx) {})
	f.h.Receive("127.0.0.5:5080", response(t, fwd, 180, "Contact: <sip:bob@192.168.1.20:5060>\r\n", ""))
	f.h.Receive("127.0.0.5:5080", response(t, fwd, 200, "Contact: <sip:bob@127.0.0.5:5080>\r\n", ""))
	var up []string
	for _, s := range f.h.Take() {
		if s.Dst.String() == "127.0.0.1:5070" && !strings.HasPrefix(s.Data, "SIP/2.0 100") {
			up = append(up, header(s.Data, "Contact"))
		}
	}
	// The 180's private Contact is fixed; the 200's names its source, so
	// no test holds and it goes as it came.
	if len(up) != 2 || up[0] != "<sip:bob@127.0.0.5:5080>" || up[1] != "<sip:bob@127.0.0.5:5080>" {
		t.Fatalf("upstream Contacts %q", up)
	}
}

// TestFixNATedSDP: c= and o= of a request's SDP get its source address
// (Content-Length follows), a held stream's 0.0.0.0 stays unless
// rewrite-null-ip, direction and nortpproxy are added, and a response's
// SDP gets the address it came from.
func TestFixNATedSDP(t *testing.T) {
	f := build(t, nil, nil)
	sdpBody := phoneSDP("192.168.1.10") + "m=video 4002 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n"
	out := f.relayed(t, "127.0.0.1:40000", req("INVITE", "sip:bob@127.0.0.5:5080", "192.168.1.10:5062", "", sdpBody), func(c *routing.Ctx) {
		if !f.n.FixNATedSDP(c, DefaultSDPFlags) {
			t.Error("nothing fixed")
		}
	})
	want := phoneSDP("127.0.0.1") + "m=video 4002 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n"
	if b := bodyOf(t, out); b != want {
		t.Fatalf("body:\n%s\nwant:\n%s", b, want)
	}
	out = f.relayed(t, "127.0.0.1:40001", req("INVITE", "sip:bob@127.0.0.5:5080", "192.168.1.10:5062", "", sdpBody), func(c *routing.Ctx) {
		f.n.FixNATedSDP(c, RewriteMediaIP|RewriteNullIP|AddDirActive|AddNoRTPProxy)
	})
	b := bodyOf(t, out)
	if strings.Count(b, "c=IN IP4 127.0.0.1") != 2 || !strings.Contains(b, "o=phone 1 1 IN IP4 192.168.1.10") ||
		!strings.Contains(b, "a=direction:active\r\n") || !strings.Contains(b, "a=nortpproxy:yes\r\n") {
		t.Fatalf("body:\n%s", b)
	}
	// Not SDP: left alone.
	msg := strings.Replace(req("MESSAGE", "sip:bob@127.0.0.5", "192.168.1.10:5062", "", "c=IN IP4 192.168.1.10\r\n"), "application/sdp", "text/plain", 1)
	if f.inRoute(t, "127.0.0.1:40002", msg, func(c *routing.Ctx) bool { return f.n.FixNATedSDP(c, DefaultSDPFlags) }) {
		t.Fatal("rewrote a text/plain body")
	}

	// The callee's answer.
	f.h.Reply = func(c *routing.ReplyCtx) bool {
		f.n.FixNATedSDPReply(c, DefaultSDPFlags)
		return true
	}
	fwd := f.relayed(t, "127.0.0.1:5070", req("INVITE", "sip:bob@127.0.0.5:5080", "127.0.0.1:5070", "", phoneSDP("127.0.0.1")), func(*routing.Ctx) {})
	f.h.Receive("127.0.0.5:5080", response(t, fwd, 200, "Contact: <sip:bob@192.168.1.20>\r\n", phoneSDP("192.168.1.20")))
	for _, s := range f.h.Take() {
		if strings.HasPrefix(s.Data, "SIP/2.0 200") {
			if b := bodyOf(t, s.Data); b != phoneSDP("127.0.0.5") {
				t.Fatalf("answer relayed with\n%s", b)
			}
			return
		}
	}
	t.Fatal("no 200 relayed")
}

// TestFixNATedRegisterForged: a phone writes addresses of its choosing
// into its REGISTER: a Contact naming a third party (198.51.100.66), a Via
// claiming a private address, a received parameter. nat_uac_test holds
// (the Via is private and is not the source), fix_nated_register marks
// the REGISTER, and what the registrar keeps as the address to reach the
// binding at is the packet's source: the INVITE for the AOR and the
// keepalive go there, never to an address a header named.
func TestFixNATedRegisterForged(t *testing.T) {
	f := build(t, nil, nil)
	f.h.Route = func(c *routing.Ctx) {
		if c.IsMethod(parser.MethodRegister) {
			var o registrar.SaveOptions
			o.Authenticated = true
			if f.n.NATUACTest(c, DefaultFlags) {
				f.n.FixNATedRegister(c, &o)
			}
			f.reg.SaveWith(c, o)
			return
		}
		if f.reg.Lookup(c) {
			c.Relay()
			return
		}
		c.Reply(480, "")
	}
	reg := req("REGISTER", "sip:example.com", "192.168.1.10:5062",
		"Contact: <sip:alice@198.51.100.66:5060>;received=\"sip:198.51.100.66:5060\"\r\nExpires: 600\r\n", "")
	reg = strings.Replace(reg, "To: <sip:bob@example.com>", "To: <sip:alice@example.com>", 1)
	if got := f.h.Answer("127.0.0.1:40000", reg); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("REGISTER: %q", got)
	}
	l := f.reg.List("alice@example.com")
	if len(l) != 1 || !l[0].NAT || l[0].Received != "udp:127.0.0.1:40000" {
		t.Fatalf("stored %+v", l)
	}
	f.h.Receive("127.0.0.1:5070", req("INVITE", "sip:alice@example.com", "127.0.0.1:5070", "Contact: <sip:bob@127.0.0.1:5070>\r\n", ""))
	sent := f.h.Take()
	var inv []string
	for _, s := range sent {
		if strings.HasPrefix(s.Data, "INVITE ") {
			inv = append(inv, s.Dst.String())
		}
		if s.Dst.Addr().String() == "198.51.100.66" {
			t.Fatalf("sent to the forged address: %s", s.Data)
		}
	}
	if len(inv) != 1 || inv[0] != "127.0.0.1:40000" {
		t.Fatalf("INVITE sent to %v", inv)
	}
	if n := f.counter("switchboard_nathelper_registers_fixed_total"); n != 1 {
		t.Fatalf("registers_fixed_total %d", n)
	}

	// With Path (an edge proxy in front): not marked, reached through the
	// Path.
	var o registrar.SaveOptions
	path := req("REGISTER", "sip:example.com", "192.168.1.10:5062", "Path: <sip:127.0.0.7:5070;lr>\r\nContact: <sip:alice@192.168.1.10:5062>\r\n", "")
	if f.inRoute(t, "127.0.0.1:40001", path, func(c *routing.Ctx) bool { return f.n.FixNATedRegister(c, &o) }) || o.NAT {
		t.Fatal("a REGISTER with Path was marked")
	}
	// Not a REGISTER.
	if f.inRoute(t, "127.0.0.1:40001", req("INVITE", "sip:a@example.com", "192.168.1.10:5062", "", ""), func(c *routing.Ctx) bool { return f.n.AddRcvParam(c, &o) }) {
		t.Fatal("an INVITE was marked")
	}
}

// TestNilNATHelper: a route set built without the module calls nil.
func TestNilNATHelper(t *testing.T) {
	f := build(t, nil, nil)
	var n *NATHelper
	msg := req("INVITE", "sip:bob@example.com", "192.168.1.10:5062", "Contact: <sip:a@192.168.1.10>\r\n", phoneSDP("192.168.1.10"))
	if f.inRoute(t, "127.0.0.1:40000", msg, func(c *routing.Ctx) bool {
		var o registrar.SaveOptions
		return n.NATUACTest(c, allFlags) || n.FixNATedContact(c) || n.FixNATedSDP(c, DefaultSDPFlags) || n.FixNATedRegister(c, &o)
	}) || n.Enabled() || n.Tests() != 0 || n.SDPFlags() != 0 {
		t.Fatal("a nil module did something")
	}
}

// TestManyContacts: a response with 47 Contact values from behind NAT,
// its Contacts and SDP fixed: FixNATedContactReply rewrites 16 of them
// (maxFixedContacts), the SDP is rewritten, and what goes upstream is a
// whole message: its Content-Length the length of its body, our Via off
// it. So is a request with 47.
func TestManyContacts(t *testing.T) {
	f := build(t, nil, nil)
	f.h.Reply = func(c *routing.ReplyCtx) bool {
		f.n.FixNATedContactReply(c)
		f.n.FixNATedSDPReply(c, RewriteMediaIP|RewriteOriginIP|AddNoRTPProxy)
		return true
	}
	var cs []string
	for i := 0; i < parser.MaxEdits-1; i++ {
		cs = append(cs, "<sip:b"+strconv.Itoa(i)+"@192.168.1.20:5060>")
	}
	contacts := "Contact: " + strings.Join(cs, ", ") + "\r\n"
	fwd := f.relayed(t, "127.0.0.1:5070", req("INVITE", "sip:bob@127.0.0.5:5080", "127.0.0.1:5070", contacts, phoneSDP("192.168.1.10")), func(c *routing.Ctx) {
		f.n.FixNATedContact(c)
		f.n.FixNATedSDP(c, RewriteMediaIP|RewriteOriginIP)
	})
	checkWhole(t, "INVITE relayed", fwd, 16)
	f.h.Receive("127.0.0.5:5080", response(t, fwd, 180, contacts, phoneSDP("192.168.1.20")))
	for _, s := range f.h.Take() {
		if s.Dst.String() == "127.0.0.1:5070" && strings.HasPrefix(s.Data, "SIP/2.0 180") {
			checkWhole(t, "180 upstream", s.Data, 16)
			if v := header(s.Data, "Via"); !strings.Contains(v, "127.0.0.1:5070") {
				t.Fatalf("180 upstream with Via %q on top", v)
			}
			return
		}
	}
	t.Fatal("no 180 upstream")
}

// checkWhole fails unless msg's Content-Length is its body's length, its
// SDP rewritten, and fixed of its Contacts name 127.0.0.x.
func checkWhole(t *testing.T, what, msg string, fixed int) {
	t.Helper()
	_, body, _ := strings.Cut(msg, "\r\n\r\n")
	if cl := header(msg, "Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Fatalf("%s: Content-Length %s, body %d bytes", what, cl, len(body))
	}
	if strings.Contains(body, "192.168.1.") || !strings.HasSuffix(body, "\r\n") {
		t.Fatalf("%s: body not rewritten:\n%s", what, body)
	}
	if n := strings.Count(header(msg, "Contact"), "@127.0.0."); n != fixed {
		t.Fatalf("%s: %d Contacts rewritten, want %d", what, n, fixed)
	}
}

// TestHostPortWithoutZone: a link-local IPv6 source keeps no zone in the
// Contact written for it (fe80::1%eth0 means nothing to the other side).
func TestHostPortWithoutZone(t *testing.T) {
	a := netip.MustParseAddr("fe80::1%eth0")
	if got := string(appendHostPort(nil, a, 5060)); got != "[fe80::1]:5060" {
		t.Fatalf("%s", got)
	}
}

// TestFixNATedSDPBounded: what a body built to make the rewrite costly
// gets. Sixteen m= sections (parser/sdp's MaxMedia) each with a private
// c= are all rewritten; a seventeenth section, or more lines than
// MaxLines, makes a body the SDP parser refuses: it is relayed as it
// came, untouched, and PrivateSDP does not hold for it (the proxy spends
// one bounded parse on it, nothing more). A second c= in a section is
// refused the same way. An IPv6 source gets c=IN IP6 in brackets-free
// form.
func TestFixNATedSDPBounded(t *testing.T) {
	f := build(t, nil, nil)
	sections := func(n int) string {
		var b strings.Builder
		b.WriteString("v=0\r\no=phone 1 1 IN IP4 192.168.1.10\r\ns=-\r\nt=0 0\r\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "m=audio %d RTP/AVP 0\r\nc=IN IP4 192.168.1.10\r\n", 4000+2*i)
		}
		return b.String()
	}
	via := "192.168.1.10:5062"
	out := f.relayed(t, "127.0.0.1:40100", req("INVITE", "sip:bob@127.0.0.5:5080", via, "", sections(sdp.MaxMedia)), func(c *routing.Ctx) {
		f.n.FixNATedSDP(c, DefaultSDPFlags)
	})
	if b := bodyOf(t, out); strings.Count(b, "c=IN IP4 127.0.0.1\r\n") != sdp.MaxMedia || strings.Contains(b, "192.168.1.10") {
		t.Fatalf("%d sections: body\n%s", sdp.MaxMedia, b)
	}
	manyLines := sections(1) + strings.Repeat("a=x\r\n", sdp.MaxLines)
	twoC := sections(1) + "c=IN IP4 192.168.1.11\r\n"
	for name, body := range map[string]string{"17 sections": sections(sdp.MaxMedia + 1), "too many lines": manyLines, "two c= in a section": twoC} {
		msg := req("INVITE", "sip:bob@127.0.0.5:5080", via, "", body)
		if f.inRoute(t, "127.0.0.1:40101", msg, func(c *routing.Ctx) bool { return f.n.NATUACTest(c, PrivateSDP) }) {
			t.Errorf("%s: PrivateSDP holds for a body that does not parse", name)
		}
		var fixed bool
		out := f.relayed(t, "127.0.0.1:40102", req("INVITE", "sip:bob@127.0.0.5:5080", via, "", body), func(c *routing.Ctx) {
			fixed = f.n.FixNATedSDP(c, DefaultSDPFlags|AddNoRTPProxy)
		})
		if fixed || bodyOf(t, out) != body {
			t.Errorf("%s: fixed %v, body relayed changed", name, fixed)
		}
	}
	out = f.relayed(t, "[::1]:40103", req("INVITE", "sip:bob@127.0.0.5:5080", via, "", sections(1)), func(c *routing.Ctx) {
		f.n.FixNATedSDP(c, DefaultSDPFlags)
	})
	if b := bodyOf(t, out); !strings.Contains(b, "o=phone 1 1 IN IP6 ::1\r\n") || !strings.Contains(b, "c=IN IP6 ::1\r\n") {
		t.Fatalf("IPv6 source: body\n%s", b)
	}
}
