package txn

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/parser"
	"switchboard/transport"
)

// withContact adds a Contact header to a response built by respond.
func withContact(resp, contact string) string {
	return strings.Replace(resp, "Content-Length:", "Contact: "+contact+"\r\nContent-Length:", 1)
}

// fixContact is a reply route that rewrites the host:port of the
// response's Contact to where the response came from, as nathelper's
// fix_nated_contact does; it records the source it saw.
func fixContact(t *testing.T, seen *[]netip.AddrPort) func(r *Request, b *Branch, m *parser.Message) bool {
	return func(r *Request, b *Branch, m *parser.Message) bool {
		src := r.ResponseSource()
		*seen = append(*seen, src)
		var na parser.NameAddr
		if !m.Contact(&na) {
			return true
		}
		u, err := parser.ParseURI(na.URI)
		if err != nil {
			t.Errorf("contact: %v", err)
			return true
		}
		hostport := na.URI[len(u.SchemeRaw)+1+len(u.User)+1:]
		if i := strings.IndexAny(string(hostport), ";>"); i >= 0 {
			hostport = hostport[:i]
		}
		ed := r.ResponseEditor()
		if ed == nil || !ed.Replace(hostport, r.OwnResponse([]byte(src.String()))) {
			t.Errorf("the reply route could not edit the %d", m.StatusCode())
		}
		return true
	}
}

// TestReplyRouteEditsRelayed: a reply route's edits of a 180 and a 200
// reach the caller, with the core's own (our Via removed); the 200's
// retransmission runs the route again and gets the same edit; a non-2xx
// final is kept with its edit and forwarded as the best response.
// ResponseSource is the packet's source, and outside a Reply hook there is
// no response to edit.
func TestReplyRouteEditsRelayed(t *testing.T) {
	h := newHarness(t, nil)
	var seen []netip.AddrPort
	h.rt.request = func(r *Request) {
		if r.ResponseEditor() != nil || r.ResponseSource().IsValid() {
			t.Error("a request route has a response to edit")
		}
		r.Relay()
	}
	h.rt.reply = fixContact(t, &seen)
	h.in(uacAddr, invite("z9hG4bKe1", "edit1@x"))
	fwd := h.snd.take()[1].data
	for _, code := range []int{180, 200, 200} {
		h.in(uasAddr, withContact(respond(fwd, code, "b1"), "<sip:bob@192.168.1.10:5062;transport=udp>;expires=60"))
	}
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 180 Ringing", toUAC+"SIP/2.0 200 OK", toUAC+"SIP/2.0 200 OK")
	for i, m := range msgs {
		if c := header(m.data, "Contact"); c != "<sip:bob@127.0.0.1:5080;transport=udp>;expires=60" {
			t.Errorf("response %d relayed with Contact %q", i, c)
		}
		if v := headers(m.data, "Via"); len(v) != 1 || !strings.Contains(v[0], "z9hG4bKe1") {
			t.Errorf("response %d Vias %q", i, v)
		}
	}
	if len(seen) != 3 || seen[0] != uasAddr || seen[2] != uasAddr {
		t.Fatalf("the reply route saw the sources %v (and should run for the retransmitted 200)", seen)
	}

	// A 486 is kept with the edit until the best response goes upstream.
	h.in(uacAddr, invite("z9hG4bKe2", "edit2@x"))
	fwd = h.snd.take()[1].data
	h.in(uas2Addr, withContact(respond(fwd, 486, "b2"), "<sip:bob@10.0.0.7>"))
	msgs = h.snd.take()
	up := h.expectTo(msgs, uacAddr)
	if len(up) != 1 || up[0].StatusCode() != 486 {
		t.Fatalf("upstream:\n%s", describe(msgs))
	}
	var na parser.NameAddr
	if !up[0].Contact(&na) || string(na.URI) != "sip:bob@127.0.0.1:5090" {
		t.Fatalf("486 relayed with Contact %q", na.URI)
	}
}

// TestReplyRouteWithoutEditsUnchanged: a reply route that only looks
// leaves the response as it came (and a route's edits of one response do
// not leak into the next).
func TestReplyRouteWithoutEditsUnchanged(t *testing.T) {
	h := newHarness(t, nil)
	n := 0
	var seen []netip.AddrPort
	edit := fixContact(t, &seen)
	h.rt.reply = func(r *Request, b *Branch, m *parser.Message) bool {
		n++
		if n == 1 {
			return edit(r, b, m) // the 180 only
		}
		return true
	}
	h.in(uacAddr, invite("z9hG4bKe3", "edit3@x"))
	fwd := h.snd.take()[1].data
	h.in(uasAddr, withContact(respond(fwd, 180, "b1"), "<sip:bob@192.168.1.10:5062>"))
	h.in(uasAddr, withContact(respond(fwd, 200, "b1"), "<sip:bob@192.168.1.10:5062>"))
	msgs := h.snd.take()
	h.only(msgs, toUAC+"SIP/2.0 180 Ringing", toUAC+"SIP/2.0 200 OK")
	if c := header(msgs[0].data, "Contact"); c != "<sip:bob@127.0.0.1:5080>" {
		t.Fatalf("180 Contact %q", c)
	}
	if c := header(msgs[1].data, "Contact"); c != "<sip:bob@192.168.1.10:5062>" {
		t.Fatalf("200 Contact %q", c)
	}
}

// TestForceRPort: a request without rport from a port other than its
// Via's is answered at the Via's port, unless the route forces rport: then
// the answers go to the source port (statelessly answered REGISTERs too)
// and the relayed Via carries received and rport. A source that is our
// own address is never answered there.
func TestForceRPort(t *testing.T) {
	natSrc := netip.MustParseAddrPort("127.0.0.1:40000")
	for _, force := range []bool{false, true} {
		h := newHarness(t, nil)
		h.rt.request = func(r *Request) {
			if force {
				r.ForceRPort()
			}
			if r.Method() == parser.MethodRegister {
				r.ReplyStateless(200, "OK", nil)
				return
			}
			r.Relay()
		}
		h.in(natSrc, invite("z9hG4bKr1", "rport1@x"))
		msgs := h.snd.take()
		want := toUAC + "SIP/2.0 100 Trying"
		if force {
			want = "127.0.0.1:40000 SIP/2.0 100 Trying"
		}
		h.only(msgs, want, toUAS+"INVITE sip:bob@127.0.0.1:5080 SIP/2.0")
		vias := headers(msgs[1].data, "Via")
		wantVia := "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr1"
		if force {
			wantVia += ";received=127.0.0.1;rport=40000"
		}
		if len(vias) != 2 || vias[1] != wantVia {
			t.Fatalf("force %v: relayed Vias %q", force, vias)
		}
		h.in(uasAddr, respond(msgs[1].data, 200, "b1"))
		if got := firstLines(h.snd.take()); len(got) != 1 || !strings.HasPrefix(got[0], strings.TrimSuffix(want, "100 Trying")+"200 OK") {
			t.Fatalf("force %v: 200 sent %q", force, got)
		}
		h.in(natSrc, request("REGISTER", "z9hG4bKr2", "rport2@x", "sip:127.0.0.1", ""))
		got := firstLines(h.snd.take())
		if len(got) != 1 || (force && got[0] != "127.0.0.1:40000 SIP/2.0 200 OK") || (!force && got[0] != toUAC+"SIP/2.0 200 OK") {
			t.Fatalf("force %v: REGISTER answered %q", force, got)
		}
	}

	// Spoofed: the source is our own listener; its answers go to the Via.
	h := newHarness(t, nil)
	h.rt.request = func(r *Request) {
		r.ForceRPort()
		r.ReplyStateless(200, "OK", nil)
	}
	h.in(proxyAddr, request("REGISTER", "z9hG4bKr3", "rport3@x", "sip:127.0.0.1", ""))
	for _, m := range h.snd.take() {
		if m.dst == proxyAddr {
			t.Fatalf("answered ourselves: %s", firstLines([]sentMsg{m}))
		}
	}
}

// TestSendLocalFromSource: a local request leaves from the listener bound
// to Source (its Via names that listener), a Source no listener has falls
// back to the choice by destination, and a Timeout below 64·T1 ends the
// request with 408 at it.
func TestSendLocalFromSource(t *testing.T) {
	second := &transport.Listener{Index: 2, Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.2:5062"), AdvertisedHost: "127.0.0.2", AdvertisedPort: 5062}
	h := newHarness(t, nil)
	h.snd.ls = append(h.snd.ls, second)
	for _, tc := range []struct {
		source netip.AddrPort
		want   *transport.Listener
		via    string
	}{
		{second.Local, second, "SIP/2.0/UDP 127.0.0.2:5062;branch="},
		{netip.MustParseAddrPort("127.0.0.9:5060"), h.udp, "SIP/2.0/UDP 127.0.0.1:5060;branch="},
		{netip.AddrPort{}, h.udp, "SIP/2.0/UDP 127.0.0.1:5060;branch="},
	} {
		res := newLocalResult()
		start := time.Now()
		err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Source: tc.source, Timeout: 150 * time.Millisecond, Message: options("127.0.0.1:5080")}, res.cb)
		if err != nil {
			t.Fatal(err)
		}
		msgs := h.snd.take()
		if len(msgs) == 0 || msgs[0].l != tc.want || !strings.HasPrefix(header(msgs[0].data, "Via"), tc.via) {
			t.Fatalf("source %v: sent from %v with Via %q", tc.source, msgs[0].l.Local, header(msgs[0].data, "Via"))
		}
		if code := res.wait(t); code != 408 {
			t.Fatalf("unanswered: %d", code)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("408 after %v, not at the 150 ms timeout", d)
		}
	}
}

// TestSendKeepalive: the bytes go as they are from the listener bound to
// the source; a destination outside outbound.allow gets nothing.
func TestSendKeepalive(t *testing.T) {
	second := &transport.Listener{Index: 2, Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.2:5062"), AdvertisedHost: "127.0.0.2", AdvertisedPort: 5062}
	h := newHarness(t, nil)
	h.snd.ls = append(h.snd.ls, second)
	if err := h.core.SendKeepalive(transport.UDP, second.Local, uasAddr, []byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs := h.snd.take()
	if len(msgs) != 1 || msgs[0].l != second || msgs[0].dst != uasAddr || msgs[0].data != "\r\n\r\n" {
		t.Fatalf("sent %+v", msgs)
	}
	err := h.core.SendKeepalive(transport.UDP, second.Local, netip.MustParseAddrPort("192.168.1.10:5060"), []byte{0, 0, 0, 0})
	if !errors.Is(err, ErrNotAllowed) || len(h.snd.take()) != 0 {
		t.Fatalf("outside the allow-list: %v", err)
	}
}

// TestSendLocalOnce: a keepalive sent Once goes out once over UDP, with
// no timer E retransmission before its timeout; without Once it is
// retransmitted at T1.
func TestSendLocalOnce(t *testing.T) {
	for _, once := range []bool{true, false} {
		h := newHarness(t, func(c *Config) { c.T1 = 40 * time.Millisecond })
		res := newLocalResult()
		if err := h.core.SendLocal(LocalRequest{Proto: transport.UDP, Dst: uasAddr, Timeout: 300 * time.Millisecond, Once: once, Message: options("127.0.0.1:5080")}, res.cb); err != nil {
			t.Fatal(err)
		}
		if code := res.wait(t); code != 408 {
			t.Fatalf("once %v: %d", once, code)
		}
		n := len(h.snd.take())
		if once && n != 1 || !once && n < 3 {
			t.Fatalf("once %v: sent %d times in 300 ms with T1 40 ms", once, n)
		}
	}
}
