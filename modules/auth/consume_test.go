package auth

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"switchboard/routing"
	"switchboard/transport"
)

// TestConsumeCredentials: after proxy authorization the relayed copy keeps
// no credentials for our realm (Proxy-Authorization or Authorization, any
// letter case), and keeps those for other realms and other schemes.
func TestConsumeCredentials(t *testing.T) {
	h := newHarness(t, Config{})
	next := netip.MustParseAddrPort("127.0.0.1:5090")
	var removed []bool
	h.inRoute = func(c *routing.Ctx) {
		h.a.ProxyAuthorize(c, func(c *routing.Ctx, res Result) {
			if res != Authorized {
				h.a.ProxyChallenge(c, res == StaleNonce)
				return
			}
			removed = append(removed, ConsumeCredentials(c))
			c.SetDestination(transport.UDP, next)
			if err := c.Relay(); err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	u := &ua{user: "alice", method: "MESSAGE", to: "bob"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	others := "Proxy-Authorization: Digest username=\"acct\", realm=\"carrier.example\", nonce=\"n\", uri=\"sip:x@carrier.example\", response=\"r\"\r\n" +
		"Authorization: Digest username=\"alice\", realm=\"bob-pbx.example\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"r\"\r\n" +
		"Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
	ours := u.answer(ch, 1, "secret") + "\r\n" +
		"Authorization: Digest username=\"alice\", realm=\"EXAMPLE.com\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"r\"\r\n"
	relayed := h.relayed(u.msg(strings.TrimSuffix(ours+others, "\r\n")))
	for _, line := range strings.Split(others, "\r\n") {
		if line != "" && !strings.Contains(relayed, line+"\r\n") {
			t.Errorf("%q not relayed:\n%s", line, relayed)
		}
	}
	if strings.Contains(strings.ToLower(relayed), `realm="example.com"`) {
		t.Errorf("our credentials relayed:\n%s", relayed)
	}

	// From the cache (no suspension) the same holds, and a request with
	// nothing to consume is relayed as it came.
	h.a.cache.Wait()
	relayed = h.relayed(u.msg(u.answer(ch, 2, "secret")))
	if strings.Contains(relayed, "Authorization") {
		t.Errorf("cached path: credentials relayed:\n%s", relayed)
	}
	if len(removed) != 2 || !removed[0] || !removed[1] {
		t.Fatalf("ConsumeCredentials reported %v", removed)
	}

	// More than four credentials for us (a UA sends one): every
	// credential line goes, in two edits, so that removing them cannot
	// use up the edits the rest of the route needs.
	many := strings.Repeat("Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"r\"\r\n", 5)
	relayed = h.relayed(u.msg(u.answer(ch, 3, "secret") + "\r\n" + many + strings.TrimSuffix(others, "\r\n")))
	if strings.Contains(relayed, "Authorization") {
		t.Errorf("five credentials for us: credentials relayed:\n%s", relayed)
	}
	if len(removed) != 3 || !removed[2] {
		t.Fatalf("ConsumeCredentials reported %v", removed)
	}
}

// relayed sends msg and returns the request relayed for it.
func (h *harness) relayed(msg string) string {
	h.t.Helper()
	h.mu.Lock()
	h.sent = nil
	h.mu.Unlock()
	h.core.HandleMessage(&transport.Packet{Data: []byte(msg), Src: netip.MustParseAddrPort("127.0.0.1:5062"), Listener: &h.l, Proto: transport.UDP})
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		for _, s := range h.sent {
			if !strings.HasPrefix(s, "SIP/2.0 ") {
				h.mu.Unlock()
				return s
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			h.t.Fatalf("nothing relayed for:\n%s", msg)
		}
		time.Sleep(time.Millisecond)
	}
}
