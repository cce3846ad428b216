package provider

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"switchboard/store"
	"switchboard/transport"
)

// selfAddr is the harness's listener: where a relay to ourselves goes.
var selfAddr = netip.MustParseAddrPort("127.0.0.1:5060")

// inviteToAlice sends one INVITE for alice from outside (no credentials
// needed to call a subscriber) with Max-Forwards mf, feeds every INVITE
// the proxy relays to its own address back to it, as the network would,
// until none is left, and returns how many there were and how many the
// first lookup sent.
func (h *harness) inviteToAlice(t *testing.T, mf int) (relayed, first int) {
	t.Helper()
	inv := strings.Replace(req("INVITE", "sip:alice@example.com", "mallory@evil.example", "alice@example.com", ""),
		"Max-Forwards: 70", fmt.Sprintf("Max-Forwards: %d", mf), 1)
	h.mu.Lock()
	h.sent = nil
	h.mu.Unlock()
	h.core.HandleMessage(&transport.Packet{Data: []byte(inv), Src: netip.MustParseAddrPort("192.0.2.66:5060"), Listener: &h.l, Proto: transport.UDP})
	for round := 0; round < 100; round++ {
		h.mu.Lock()
		out := h.sent
		h.sent = nil
		h.mu.Unlock()
		n := 0
		for _, s := range out {
			if s.dst != selfAddr.String() || !strings.HasPrefix(s.data, "INVITE ") {
				continue
			}
			n++
			h.core.HandleMessage(&transport.Packet{Data: []byte(s.data), Src: selfAddr, Listener: &h.l, Proto: transport.UDP})
		}
		if round == 0 {
			first = n
		}
		relayed += n
		if n == 0 {
			return relayed, first
		}
	}
	t.Fatalf("INVITEs to ourselves still going after 100 rounds (%d so far)", relayed)
	return
}

// TestRegisterContactLoopingBackRefused: an authenticated subscriber
// registers contacts that lead back to the proxy (RFC 5393 §3): its own
// AOR with a parameter to make each one distinct, or any URI whose maddr
// or host is our domain or our listener's address and port. Before, they
// were stored, and one INVITE to the AOR from anyone spiralled through the
// location lookup, forking eight ways each time (the loop hash covers the
// Request-URI, so seven of eight branches were new): one INVITE with
// Max-Forwards 4 made the proxy relay 3,208 INVITEs to itself, and a
// phone's 70 has no practical end. Now the REGISTER is refused with 403
// and nothing is stored; removing such a contact, and contacts on another
// port of our address (a phone or PBX on this host), still work.
func TestRegisterContactLoopingBackRefused(t *testing.T) {
	h := newHarness(t, true, Options{TrustedGroup: 1, DialplanID: -1})
	phone := "127.0.0.1:5062"
	register := func(contacts string) string {
		t.Helper()
		r := h.reply(phone, req("REGISTER", "sip:example.com", "alice@example.com", "alice@example.com", contacts))
		return h.reply(phone, req("REGISTER", "sip:example.com", "alice@example.com", "alice@example.com",
			contacts+creds(r, "Authorization", "alice", "alice-pw", "REGISTER", "sip:example.com")))
	}

	// The attack as reported: eight distinct contacts, all for us.
	var contacts string
	for i := 1; i <= 8; i++ {
		contacts += fmt.Sprintf("Contact: <sip:alice@example.com;maddr=127.0.0.1;x=%d>\r\n", i)
	}
	if r := register(contacts); status(r) != "403 Contact Loops Back" {
		t.Fatalf("REGISTER of eight contacts leading back here: %s", r)
	}
	if h.reg.Registered([]byte("alice@example.com")) {
		t.Fatal("a refused REGISTER stored a binding")
	}
	if relayed, _ := h.inviteToAlice(t, 4); relayed != 0 {
		t.Fatalf("one INVITE made the proxy relay %d INVITEs to itself", relayed)
	}

	for _, c := range []string{
		"sip:alice@example.com",                   // our domain (its DNS leads here)
		"sip:alice@EXAMPLE.com;x=1",               // case-insensitively
		"sip:alice@192.0.2.9;maddr=example.com",   // maddr: where the request goes
		"sip:alice@example.com;maddr=192.0.2.9",   // and the host, which the next hop routes by
		"sip:alice@127.0.0.1",                     // our listener, by the default port
		"sip:alice@127.0.0.1:5060;transport=udp",  // and by its port
		"sip:alice@192.0.2.9;maddr=127.0.0.1;x=1", // our listener as maddr
		"sip:alice@[::ffff:127.0.0.1]:5060",       // an IPv4-mapped form of it
		"sip:bob@example.com",                     // another subscriber of ours
	} {
		if r := register("Contact: <" + c + ">\r\n"); status(r) != "403 Contact Loops Back" {
			t.Errorf("REGISTER of %s: %s", c, status(r))
		}
	}
	if st := h.reg.Stats(); st.Bindings != 0 || st.LoopContacts != 10 {
		t.Fatalf("stats %+v", st)
	}

	// Not us: another port of our address, or another host.
	for _, c := range []string{"sip:alice@127.0.0.1:5062", "sip:alice@192.0.2.9", "sips:alice@127.0.0.1"} {
		if r := register("Contact: <" + c + ">\r\n"); status(r) != "200 OK" {
			t.Errorf("REGISTER of %s: %s", c, r)
		}
	}
	// A looping contact may be removed (one stored before the check).
	if r := register("Contact: <sip:alice@example.com;x=1>;expires=0\r\n"); status(r) != "200 OK" {
		t.Errorf("removing a contact that loops back: %s", r)
	}
}

// TestSpiralForksOnce: contacts leading back here that Save never stored
// (a location table loaded from a store written before the check, or a
// host name that resolves to us without being a served domain) must not
// turn a call into a fork bomb either. The first lookup forks to every
// contact as usual; each request that comes back (a spiral: it carries our
// Via) gets only the best contact, so the branches go on as chains that
// loop detection ends within two more hops, whatever the Max-Forwards.
// Before, the same eight contacts and Max-Forwards 4 gave 3,208 INVITEs.
func TestSpiralForksOnce(t *testing.T) {
	h := newHarness(t, true, Options{TrustedGroup: 1, DialplanID: -1})
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const k = 8
	now := h.clock.Now() / 1000
	var ops []store.BindingOp
	for i := 1; i <= k; i++ {
		ops = append(ops, store.BindingOp{Kind: store.OpUpsert, Binding: store.Binding{
			AOR: "alice@example.com", Contact: fmt.Sprintf("sip:alice@example.com;maddr=127.0.0.1;x=%d", i),
			Received: "udp:127.0.0.1:5062", Q: 1000, Expires: now + 3600, CallID: "stale", CSeq: uint32(i),
			LastModified: now - int64(i),
		}})
	}
	ctx := context.Background()
	if err := st.ApplyBindings(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if n, err := h.reg.Load(ctx, st); n != k || err != nil {
		t.Fatalf("Load: %d, %v", n, err)
	}
	for _, mf := range []int{4, 70} {
		relayed, first := h.inviteToAlice(t, mf)
		// k from the first lookup, k from the spirals (one each), k-1
		// from those whose Request-URI had not been the best contact's.
		if first != k || relayed > 3*k {
			t.Fatalf("Max-Forwards %d: %d INVITEs relayed to ourselves, %d by the first lookup", mf, relayed, first)
		}
		t.Logf("Max-Forwards %d: %d INVITEs relayed to ourselves", mf, relayed)
	}
	if st := h.reg.Stats(); st.Spirals == 0 {
		t.Fatalf("no spiral counted: %+v", st)
	}
}
