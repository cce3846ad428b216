package dialplan

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/store"
	"switchboard/transport"
)

func (e *env) add(rs ...store.DialplanRule) {
	e.t.Helper()
	if err := e.st.AddDialplanRules(ctx, rs, false); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.d.Load(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func TestTranslateRUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.add(
		store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: `+33\2`, Attrs: "national"},
		store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "+"},
		store.DialplanRule{DPID: 2, MatchOp: "exact", MatchExp: "conf", ReplExp: "conf room@1"},
	)
	h := routetest.New(t, nil)
	for _, c := range []struct {
		ruri, want string
		dpid       int
		ok         bool
		attrs      string
	}{
		{"sip:0612345678@example.com;user=phone", "sip:+33612345678@example.com;user=phone", 1, true, "national"},
		// An escaped user part is matched as the next hop reads it.
		{"sip:%30612345678@example.com", "sip:+33612345678@example.com", 1, true, "national"},
		{"sip:%2B33612345678@example.com:5070", "sip:+33612345678@example.com:5070", 1, true, ""},
		// Characters a user part cannot carry are escaped.
		{"sip:conf@example.com", "sip:conf%20room%401@example.com", 2, true, ""},
		{"sip:alice@example.com", "sip:alice@example.com", 1, false, ""},
		{"sip:example.com", "sip:example.com", 1, false, ""},
		{"sip:0612@example.com", "sip:0612@example.com", 9, false, ""},
	} {
		h.InRoute(t, "127.0.0.1:5070", routetest.Request("INVITE", c.ruri, ""), func(rc *routing.Ctx) {
			attrs, ok := e.d.TranslateRUserAttrs(rc, c.dpid)
			if ok != c.ok || attrs != c.attrs || string(rc.RU()) != c.want {
				t.Errorf("%s, dialplan %d: %s, %v, attrs %q; want %s, %v, %q", c.ruri, c.dpid, rc.RU(), ok, attrs, c.want, c.ok, c.attrs)
			}
		})
	}
}

func TestTranslateTo(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.add(store.DialplanRule{DPID: 3, MatchOp: "exact", MatchExp: "alice", ReplExp: "gw.example.net", Attrs: "carrier-a"})
	h := routetest.New(t, nil)
	h.InRoute(t, "127.0.0.1:5070", routetest.Request("INVITE", "sip:bob@example.com", ""), func(c *routing.Ctx) {
		// The From user chooses the Request-URI's host.
		attrs, ok := e.d.TranslateTo(c, 3, c.FUser(), (*routing.Ctx).SetRDomain)
		if !ok || attrs != "carrier-a" || string(c.RU()) != "sip:bob@gw.example.net" {
			t.Errorf("%s %v %q", c.RU(), ok, attrs)
		}
		if _, ok := e.d.TranslateTo(c, 3, c.TUser(), (*routing.Ctx).SetRDomain); ok {
			t.Error("bob matched")
		}
		if _, ok := e.d.TranslateTo(c, 3, c.FUser(), func(*routing.Ctx, []byte) bool { return false }); ok {
			t.Error("a setter's false was not passed on")
		}
	})
}

// TestTranslateToRefusesWhatNoUserIs: a rule that copies the caller's
// bytes (a prefix rule's \2) into the Request-URI user through
// TranslateTo with SetRUser: a header value holding a folded line or an
// '@' and a host is refused by the setter (false), and the request is
// relayed with its Request-URI as it was: the request line stays whole
// and the host stays the one routed to.
func TestTranslateToRefusesWhatNoUserIs(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.add(store.DialplanRule{DPID: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: `+33\2`})
	h := routetest.New(t, nil)
	var oks []bool
	h.Route = func(c *routing.Ctx) {
		_, ok := e.d.TranslateTo(c, 1, c.Header("X-Number"), (*routing.Ctx).SetRUser)
		oks = append(oks, ok)
		c.SetDestination(transport.UDP, netip.MustParseAddrPort("127.0.0.1:5099"))
		c.Relay()
	}
	for _, number := range []string{"0612\r\n X-Injected: yes", "0612@127.0.0.1:5098;x=", "0612 x", "0612"} {
		h.Receive("127.0.0.1:5070", routetest.Request("INVITE", "sip:bob@example.com", "X-Number: "+number+"\r\n"))
		for _, s := range h.Take() {
			line, _, _ := strings.Cut(s.Data, "\r\n")
			if !strings.HasPrefix(line, "INVITE ") {
				continue
			}
			want := "INVITE sip:bob@example.com SIP/2.0"
			if number == "0612" {
				want = "INVITE sip:+33612@example.com SIP/2.0"
			}
			if line != want {
				t.Errorf("X-Number %q: relayed %q, want %q", number, line, want)
			}
		}
	}
	if want := []bool{false, false, false, true}; fmt.Sprint(oks) != fmt.Sprint(want) {
		t.Fatalf("TranslateTo returned %v, want %v", oks, want)
	}
}
