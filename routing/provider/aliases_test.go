package provider

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
)

// withAliases builds the aliases module, as the server does, on a store
// with two DIDs of bob's.
func withAliases(t *testing.T) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		ctx := context.Background()
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st.AddDomain(ctx, "example.com")
		for _, did := range []string{"+33123456789", "200"} {
			if _, err := st.AddAlias(ctx, store.Alias{AliasUser: did, AliasDomain: "example.com", User: "bob", Domain: "example.com"}); err != nil {
				t.Fatal(err)
			}
		}
		set, err := modules.Build(modules.Services{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, "aliases")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { set.Stop(); st.Close() })
		return map[string]any{"aliases": set.Get("aliases")}
	}
}

// TestAliases: a call to a DID of bob's, from a trusted gateway or from
// an authenticated subscriber, reaches bob's registered phone; a number
// that is no alias still gets 480. With reveal_unknown_users the alias is
// resolved before the subscriber check, so a DID is not a 404.
func TestAliases(t *testing.T) {
	for _, reveal := range []bool{false, true} {
		h := newHarnessWith(t, true, Options{TrustedGroup: 1, RevealUnknownUsers: reveal}, withAliases(t))
		const phone = "127.0.0.1:6000"
		r := h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com", ""))
		r = h.reply(phone, req("REGISTER", "sip:example.com", "bob@example.com", "bob@example.com",
			"Contact: <sip:bob@127.0.0.1:6000>\r\n"+creds(r, "Authorization", "bob", "bob-pw", "REGISTER", "sip:example.com")))
		if status(r) != "200 OK" {
			t.Fatalf("REGISTER: %s", r)
		}
		isInvite := func(s sentMsg) bool { return strings.HasPrefix(s.data, "INVITE ") }

		inv := h.send("127.0.0.2:5060", req("INVITE", "sip:+33123456789@example.com;user=phone", "+4930123456@example.com", "+33123456789@example.com", ""), isInvite)
		if inv.dst != phone || !strings.HasPrefix(inv.data, "INVITE sip:bob@127.0.0.1:6000 ") {
			t.Fatalf("reveal %v: the gateway's call to the DID: %+v", reveal, inv)
		}
		if got := h.call("alice", "sip:200@example.com"); got != "relayed" {
			t.Fatalf("reveal %v: alice's call to 200: %s", reveal, got)
		}
		want := "480 Temporarily Unavailable"
		if reveal {
			want = "404 Not Found"
		}
		if r := h.reply("127.0.0.2:5060", req("INVITE", "sip:+33999@example.com", "+4930123456@example.com", "+33999@example.com", "")); status(r) != want {
			t.Fatalf("reveal %v: a number that is no alias: %s, want %s", reveal, status(r), want)
		}
	}
}
