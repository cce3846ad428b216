package txn

import (
	"net/netip"
	"strings"
	"testing"

	"switchboard/parser"
)

// TestSetRouteSet: a loose-routed in-dialog request whose sender wrote
// its own Request-URI and Route after ours (a proxy of hers) is sent, once
// the route gave it a Request-URI and a route set (SetRequestURI,
// SetRouteSet: what the dialog module's FixRouteDialog does), with that
// Request-URI and exactly that Route set, ours removed as before and
// hers gone, to the first of the set or, with an empty set, to the
// Request-URI: statefully (with other edits of the route, which parse
// the request again before it goes) and as an ACK forwarded statelessly.
// NextHopURI and the dialog's Route parameters follow at once. A set
// whose first hop is a strict router gets the Request-URI at its end. A
// request that came through a strict router (our Route as its
// Request-URI) keeps the Request-URI the route set.
func TestSetRouteSet(t *testing.T) {
	h := newHarness(t, nil)
	var ruri, set string
	var edit bool
	var next []string
	var downs []bool
	h.rt.request = func(r *Request) {
		if !r.HasToTag() {
			r.RecordRoute()
			r.SetRecordRouteParam([]byte("did"), []byte("7"))
			r.Relay()
			return
		}
		if !r.LooseRoute() {
			t.Errorf("%s not loose-routed", r.Msg.RequestURI())
			return
		}
		r.SetRequestURI([]byte(ruri))
		r.SetRouteSet([]byte(set))
		next = append(next, string(r.NextHopURI()))
		if edit {
			r.Editor().AddHeader("X-Edited", []byte("1"))
		}
		downs = append(downs, r.Downstream() && string(r.DialogRouteParam("did")) == "7")
		if r.Method() == parser.MethodAck {
			r.Forward()
		} else {
			r.Relay()
		}
	}
	h.in(uacAddr, invite("z9hG4bKrs1", "rs@x"))
	msgs := h.snd.take()
	rr := header(msgs[len(msgs)-1].data, "Record-Route")
	inDialog := func(method, branch, ruri, route string) string {
		return method + " " + ruri + " SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=" + branch + "\nMax-Forwards: 70\n" +
			"Route: " + route + "\nFrom: <sip:alice@127.0.0.1>;tag=a1\nTo: <sip:bob@127.0.0.1>;tag=b1\nCall-ID: rs@x\nCSeq: 5 " + method + "\n\n"
	}
	hers := rr + ", <sip:127.0.0.1:6666;lr>"
	for i, c := range []struct {
		name, method, ruri, route, set string
		edit                           bool
		dst, wantURI, wantRoute, next  string
	}{
		{"BYE with a route set", "BYE", "sip:alice@127.0.0.1:5070", hers,
			"<sip:127.0.0.2:5090;lr;p=1>, \"x,y\" <sip:127.0.0.3;lr>", true,
			"127.0.0.2:5090", "sip:bob@127.0.0.1:5080", "<sip:127.0.0.2:5090;lr;p=1>, \"x,y\" <sip:127.0.0.3;lr>", "sip:127.0.0.2:5090;lr;p=1"},
		{"BYE without", "BYE", "sip:alice@127.0.0.1:5070", hers, "", false,
			"127.0.0.1:5080", "sip:bob@127.0.0.1:5080", "", "sip:bob@127.0.0.1:5080"},
		{"BYE without, edited", "BYE", "sip:alice@127.0.0.1:5070", hers, "", true,
			"127.0.0.1:5080", "sip:bob@127.0.0.1:5080", "", "sip:bob@127.0.0.1:5080"},
		{"ACK with a route set", "ACK", "sip:alice@127.0.0.1:5070", hers, "<sip:127.0.0.2:5090;lr>", true,
			"127.0.0.2:5090", "sip:bob@127.0.0.1:5080", "<sip:127.0.0.2:5090;lr>", "sip:127.0.0.2:5090;lr"},
		{"ACK without", "ACK", "sip:alice@127.0.0.1:5070", hers, "", false,
			"127.0.0.1:5080", "sip:bob@127.0.0.1:5080", "", "sip:bob@127.0.0.1:5080"},
		{"a strict router first in the set", "INFO", "sip:alice@127.0.0.1:5070", hers, "<sip:127.0.0.2:5090>, <sip:127.0.0.3;lr>", true,
			"127.0.0.2:5090", "sip:127.0.0.2:5090", "<sip:127.0.0.3;lr>, <sip:bob@127.0.0.1:5080>", "sip:127.0.0.2:5090"},
		{"through a strict router", "INFO", strings.Trim(rr, "<>"), "<sip:127.0.0.1:6666;lr>, <sip:alice@127.0.0.1:6667>", "", true,
			"127.0.0.1:5080", "sip:bob@127.0.0.1:5080", "", "sip:bob@127.0.0.1:5080"},
	} {
		ruri, set, edit = "sip:bob@127.0.0.1:5080", c.set, c.edit
		h.in(uacAddr, inDialog(c.method, "z9hG4bKrs2"+itoa(i), c.ruri, c.route))
		var out *sentMsg
		for _, m := range h.snd.take() {
			if strings.HasPrefix(m.data, c.method+" ") {
				m := m
				out = &m
			}
		}
		if out == nil {
			t.Fatalf("%s: not sent", c.name)
		}
		if out.dst != netip.MustParseAddrPort(c.dst) {
			t.Errorf("%s: sent to %s, want %s", c.name, out.dst, c.dst)
		}
		if line, _, _ := strings.Cut(out.data, "\r\n"); line != c.method+" "+c.wantURI+" SIP/2.0" {
			t.Errorf("%s: request line %q", c.name, line)
		}
		if got := strings.Join(headers(out.data, "Route"), " | "); got != c.wantRoute {
			t.Errorf("%s: Route %q, want %q", c.name, got, c.wantRoute)
		}
		if c.edit && header(out.data, "X-Edited") != "1" {
			t.Errorf("%s: the route's edit is lost", c.name)
		}
		if next[len(next)-1] != c.next {
			t.Errorf("%s: NextHopURI %q, want %q", c.name, next[len(next)-1], c.next)
		}
		if !downs[len(downs)-1] {
			t.Errorf("%s: the dialog's Route parameters or direction lost", c.name)
		}
	}
}
