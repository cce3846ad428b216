package dialplan

import (
	"testing"

	"switchboard/modules/internal/routetest"
	"switchboard/routing"
	"switchboard/store"
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
