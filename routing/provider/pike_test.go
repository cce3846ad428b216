package provider

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/modules/pike"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// newPikeHarness runs the provider route set with only the pike module.
func newPikeHarness(t *testing.T, s *pike.Settings) (*harness, *pike.Pike) {
	h := &harness{t: t}
	h.l = transport.Listener{Proto: transport.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"), AdvertisedHost: "127.0.0.1", AdvertisedPort: 5060}
	h.ls = []*transport.Listener{&h.l}
	h.clock = shards.NewManualClock(1_700_000_000_000)
	p, err := pike.New(h.clock, *s, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	env := &routing.Env{Domains: routing.NewDomains([]string{"example.com", "127.0.0.1"}), Modules: map[string]any{"pike": p}}
	rs, err := routing.Lookup("provider")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := routing.NewRouter(rs, env)
	if err != nil {
		t.Fatal(err)
	}
	h.core, err = txn.New(txn.Config{Sender: h, Listeners: h, Router: rt, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.core.Close)
	return h, p
}

// The route checks pike first: a source over max_requests gets no answer
// from then on, and so does a flood of requests that claim a dialog
// (a To tag) we do not have; other sources and the exempt host are
// served.
func TestPikeCheckedFirst(t *testing.T) {
	s := pike.DefaultSettings()
	s.MaxRequests = 5
	h, p := newPikeHarness(t, s)
	probe := func() string { return req("OPTIONS", "sip:127.0.0.1", "probe@example.net", "127.0.0.1", "") }
	forged := func() string {
		return strings.Replace(req("BYE", "sip:bob@127.0.0.1:5062", "probe@example.net", "bob@example.com", ""), "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=x", 1)
	}
	for i := 0; i < 5; i++ {
		if r := h.reply("192.0.2.7:5060", probe()); status(r) != "200 OK" {
			t.Fatalf("request %d: %s", i+1, r)
		}
		if r := h.reply("192.0.2.9:5060", forged()); status(r) != "404 Not here" {
			t.Fatalf("in-dialog request %d: %s", i+1, r)
		}
	}
	for _, c := range []struct{ src, msg string }{{"192.0.2.7:5060", probe()}, {"192.0.2.9:5060", forged()}} {
		h.sentNow(0)
		h.core.HandleMessage(&transport.Packet{Data: []byte(c.msg), Src: netip.MustParseAddrPort(c.src), Listener: &h.l, Proto: transport.UDP})
		if got := h.sentNow(time.Second); len(got) != 0 {
			t.Fatalf("over the limit, %s got %+v", c.src, got)
		}
		if !p.Banned(netip.MustParseAddrPort(c.src).Addr()) {
			t.Fatalf("%s not banned", c.src)
		}
	}
	if r := h.reply("192.0.2.8:5060", probe()); status(r) != "200 OK" {
		t.Fatalf("another source: %s", r)
	}
	for i := 0; i < 20; i++ { // pike.exempt: the host itself
		if r := h.reply("127.0.0.1:5070", probe()); status(r) != "200 OK" {
			t.Fatalf("exempt source, request %d: %s", i+1, r)
		}
	}
}
