package provider

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/uac"
	"switchboard/shards"
	"switchboard/store"
)

// withUAC adds the uac module, built as the server builds it, on a store
// of its own with a credential for the realm carrier.example alone (no
// gateway: OpenSIPS's uac_auth credential, any next hop) and one for the
// peer 127.0.0.22:5090, realm peer.example.
func withUAC(t *testing.T, next func(*shards.Clock) map[string]any) func(*shards.Clock) map[string]any {
	return func(clock *shards.Clock) map[string]any {
		mods := next(clock)
		ctx := context.Background()
		st, err := store.Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		for _, cr := range []store.UACCredential{
			{Realm: "carrier.example", Username: "trunk1", Password: "s3cret"},
			{Realm: "peer.example", Gateway: "127.0.0.22:5090", Username: "trunk2", Password: "pw2"},
		} {
			if _, err := st.AddUACCredential(ctx, cr); err != nil {
				t.Fatal(err)
			}
		}
		set, err := modules.Build(modules.Services{Store: st, Clock: clock, Metrics: metrics.NewSet(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			map[string]any{}, "uac")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(set.Stop)
		mods["uac"] = set.Get("uac").(*uac.UAC)
		return mods
	}
}

// TestTrunkCredentialsOnlyToGateways: the failure route answers a 401/407
// with a trunk's credentials only for a branch that went to a gateway of
// the drouting tables. A subscriber who calls an address of his own as
// another domain, or whose phone is called, and answers 407 with the
// carrier's realm and a nonce of his choosing (one the carrier just gave
// him, say) got an INVITE carrying a digest of the trunk's password for
// it: a dictionary attack offline, or the answer replayed to the carrier
// to call on the trunk's account. Now the 407 goes to the caller; the
// gateway's own challenge is still answered, and so is a peer's called as
// another domain with a credential stored for its address.
func TestTrunkCredentialsOnlyToGateways(t *testing.T) {
	h := newHarnessWith(t, true, Options{TrustedGroup: 1}, withUAC(t, withDrouting(t)))
	const alice, mallory = "127.0.0.1:6100", "127.0.0.20:5090"
	const challenge = "Proxy-Authenticate: Digest realm=\"carrier.example\", nonce=\"carrier-nonce\", qop=\"auth\"\r\n"
	challenged := func(inv sentMsg, challenge string) sentMsg {
		t.Helper()
		return h.send(inv.dst, strings.Replace(respond(inv.data, 407), "Content-Length:", challenge+"Content-Length:", 1),
			func(s sentMsg) bool { return isINVITE(s) || s.dst == alice && final(s) })
	}

	// A foreign domain: mallory's own address.
	inv := aliceDials(h, "sip:x@"+mallory, "")
	if inv.dst != mallory || !isINVITE(inv) {
		t.Fatalf("alice's call to %s: %+v", mallory, inv)
	}
	if got := challenged(inv, challenge); got.dst != alice || status(got.data) != "407 Whatever" {
		t.Fatalf("mallory's 407 got %s:\n%s", got.dst, got.data)
	}

	// A subscriber's phone.
	const bobPhone = "127.0.0.21:5062"
	if r := registerBob(t, h, bobPhone, "sip:bob@"+bobPhone); status(r) != "200 OK" {
		t.Fatalf("bob's REGISTER: %s", r)
	}
	inv = aliceDials(h, "sip:bob@example.com", "")
	if inv.dst != bobPhone || !isINVITE(inv) {
		t.Fatalf("alice's call to bob: %+v", inv)
	}
	if got := challenged(inv, challenge); got.dst != alice || status(got.data) != "407 Whatever" {
		t.Fatalf("bob's phone's 407 got %s:\n%s", got.dst, got.data)
	}

	// The gateway's challenge is answered, to the gateway.
	inv = aliceDials(h, "sip:+4930123@example.com", "")
	if inv.dst != "127.0.0.7:5070" || !isINVITE(inv) {
		t.Fatalf("alice's PSTN call: %+v", inv)
	}
	if got := challenged(inv, challenge); got.dst != inv.dst || !strings.Contains(got.data, "Proxy-Authorization: Digest username=\"trunk1\", realm=\"carrier.example\", nonce=\"carrier-nonce\"") {
		t.Fatalf("the gateway's 407 answered to %s:\n%s", got.dst, got.data)
	}
	inv = aliceDials(h, "sip:x@127.0.0.22:5090", "")
	got := challenged(inv, "Proxy-Authenticate: Digest realm=\"peer.example\", nonce=\"peer-nonce\"\r\n")
	if got.dst != inv.dst || !strings.Contains(got.data, "Proxy-Authorization: Digest username=\"trunk2\", realm=\"peer.example\"") {
		t.Fatalf("the peer's 407 answered to %s:\n%s", got.dst, got.data)
	}
}
