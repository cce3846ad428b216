package auth

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/store"
)

func TestChallengeOffersBothAlgorithms(t *testing.T) {
	h := newHarness(t, Config{})
	u := &ua{user: "alice", method: "REGISTER"}
	resp := h.request(u.msg(""))
	if status(resp) != "401 Unauthorized" {
		t.Fatalf("no credentials: %s", resp)
	}
	chs := challenges(resp)
	if len(chs) != 2 || chs[0].alg != "SHA-256" || chs[1].alg != "MD5" || chs[0].realm != "example.com" || chs[0].nonce != chs[1].nonce || chs[0].stale {
		t.Fatalf("challenges %+v in\n%s", chs, resp)
	}
	u2 := &ua{user: "alice", method: "INVITE", to: "bob"}
	resp = h.request(u2.msg(""))
	if status(resp) != "407 Proxy Authentication Required" || len(challenges(resp)) != 2 || challenges(resp)[0].header != "Proxy" {
		t.Fatalf("INVITE without credentials: %s", resp)
	}
}

func TestRegisterBothAlgorithms(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			h := newHarness(t, Config{})
			u := &ua{user: "alice", method: "REGISTER", password: "secret"}
			ch := pick(t, h.request(u.msg("")), alg)
			// First answer: a cache miss, answered from a worker.
			resp := h.request(u.msg(u.answer(ch, 1, "secret")))
			if status(resp) != "200 OK" || !strings.Contains(resp, "Contact: <sip:alice@127.0.0.1:5062>;expires=") {
				t.Fatalf("right password: %s", resp)
			}
			h.a.cache.Wait()
			// Second: from the cache, with the next nonce-count.
			resp = h.request(u.msg(u.answer(ch, 2, "secret")))
			if status(resp) != "200 OK" {
				t.Fatalf("cached, nc=2: %s", resp)
			}
			if st := h.a.Stats(); st.Authorized != 2 || st.CacheMisses != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestWrongPasswordLooksLikeUnknownUser(t *testing.T) {
	h := newHarness(t, Config{})
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	wrong := h.request(u.msg(u.answer(ch, 1, "not-the-password")))

	ghost := &ua{user: "ghost", method: "REGISTER"}
	ch2 := pick(t, h.request(ghost.msg("")), "MD5")
	unknown := h.request(ghost.msg(ghost.answer(ch2, 1, "whatever")))

	for _, r := range []string{wrong, unknown} {
		if status(r) != "401 Unauthorized" || len(challenges(r)) != 2 || challenges(r)[0].stale {
			t.Fatalf("refusal: %s", r)
		}
	}
	// Same response but for the tags, branch, Call-ID, CSeq and nonce.
	norm := func(r string, u *ua) string {
		var keep []string
		for _, line := range strings.Split(r, "\r\n") {
			switch {
			case strings.HasPrefix(line, "Via:"), strings.HasPrefix(line, "From:"), strings.HasPrefix(line, "To:"),
				strings.HasPrefix(line, "Call-ID:"), strings.HasPrefix(line, "CSeq:"):
				continue
			}
			keep = append(keep, challengeRE.ReplaceAllString(line+"\r\n", "challenge\r\n"))
		}
		return strings.Join(keep, "|")
	}
	if a, b := norm(wrong, u), norm(unknown, ghost); a != b {
		t.Fatalf("wrong password and unknown user differ:\n%s\n%s", a, b)
	}
	// Both are cached now (the unknown one negatively): still the same.
	h.a.cache.Wait()
	wrong = h.request(u.msg(u.answer(ch, 2, "not-the-password")))
	unknown = h.request(ghost.msg(ghost.answer(ch2, 2, "whatever")))
	if norm(wrong, u) != norm(unknown, ghost) || status(wrong) != "401 Unauthorized" {
		t.Fatalf("cached refusals differ:\n%s\n%s", wrong, unknown)
	}
}

func TestNonceReplayFails(t *testing.T) {
	h := newHarness(t, Config{})
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), "SHA-256")
	creds := u.answer(ch, 1, "secret")
	if r := h.request(u.msg(creds)); status(r) != "200 OK" {
		t.Fatalf("first use: %s", r)
	}
	// The same credentials again (a captured request replayed as a new
	// transaction): refused, with stale=true so a real phone just retries.
	r := h.request(u.msg(creds))
	if status(r) != "401 Unauthorized" || !challenges(r)[0].stale {
		t.Fatalf("replay: %s", r)
	}
	// A lower count than one used is a replay too; a higher one is fine.
	if r := h.request(u.msg(u.answer(ch, 5, "secret"))); status(r) != "200 OK" {
		t.Fatalf("nc=5: %s", r)
	}
	if r := h.request(u.msg(u.answer(ch, 3, "secret"))); status(r) != "401 Unauthorized" {
		t.Fatalf("nc=3 after 5: %s", r)
	}
	// A forged nonce is refused without stale.
	forged := ch
	forged.nonce = strings.Repeat("A", len(ch.nonce))
	if r := h.request(u.msg(u.answer(forged, 1, "secret"))); status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("forged nonce: %s", r)
	}
}

func TestStaleNonce(t *testing.T) {
	h := newHarness(t, Config{NonceLifetime: 30 * time.Second})
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	h.clock.Advance(31 * time.Second)
	r := h.request(u.msg(u.answer(ch, 1, "secret")))
	if status(r) != "401 Unauthorized" || !challenges(r)[0].stale {
		t.Fatalf("expired nonce: %s", r)
	}
	// A wrong password with an expired nonce is not stale: it is wrong.
	ch = pick(t, r, "MD5")
	h.clock.Advance(31 * time.Second)
	r = h.request(u.msg(u.answer(ch, 1, "bad")))
	if status(r) != "401 Unauthorized" || challenges(r)[0].stale {
		t.Fatalf("expired nonce, wrong password: %s", r)
	}
	ch = pick(t, r, "MD5")
	if r := h.request(u.msg(u.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatalf("fresh nonce: %s", r)
	}
}

func TestForbiddenOtherUser(t *testing.T) {
	h := newHarness(t, Config{})
	// alice's correct credentials, registering bob's AOR.
	u := &ua{user: "alice", method: "REGISTER", to: "bob"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	if r := h.request(u.msg(u.answer(ch, 1, "secret"))); status(r) != "403 Forbidden" {
		t.Fatalf("other user's AOR: %s", r)
	}
	// A call from alice authenticated as alice is fine.
	inv := &ua{user: "alice", method: "INVITE", to: "bob"}
	ch = pick(t, h.request(inv.msg("")), "SHA-256")
	if r := h.request(inv.msg(inv.answer(ch, 1, "secret"))); status(r) != "200 Authorized" {
		t.Fatalf("INVITE: %s", r)
	}
}

func TestPasswordChangeFromAnotherProcess(t *testing.T) {
	h := newHarness(t, Config{})
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	if r := h.request(u.msg(u.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	h.a.cache.Wait()
	// What `switchboard user passwd` does: its own handle on the file.
	cli, err := store.Open(filepath.Dir(h.dbPath()), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, cli.SetPassword(context.Background(), "alice", "example.com", "new-secret"))
	cli.Close()
	deadline := time.Now().Add(3 * time.Second)
	nc := 2
	for {
		r := h.request(u.msg(u.answer(ch, nc, "new-secret")))
		nc++
		if status(r) == "200 OK" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new password not accepted: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := h.request(u.msg(u.answer(ch, nc, "secret"))); status(r) != "401 Unauthorized" {
		t.Fatalf("old password still accepted: %s", r)
	}
}

// The change log also carries the permissions module's address changes:
// they do not concern credentials and must not empty the cache (a
// provider adding gateways would otherwise send every subscriber's next
// request to the store).
func TestAddressChangesKeepTheCache(t *testing.T) {
	h := newHarness(t, Config{})
	alice := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(alice.msg("")), "MD5")
	if r := h.request(alice.msg(alice.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	bob := &ua{user: "bob", method: "REGISTER"}
	bch := pick(t, h.request(bob.msg("")), "MD5")
	if r := h.request(bob.msg(bob.answer(bch, 1, "hunter2"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	h.a.cache.Wait()
	ctx := context.Background()
	if _, err := h.st.AddAddress(ctx, store.Address{Group: 1, IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	// A subscriber change logged after it: once the poller has dropped
	// bob, it has read the address change too.
	must(t, h.st.SetPassword(ctx, "bob", "example.com", "new-secret"))
	deadline := time.Now().Add(3 * time.Second)
	for nc := 2; status(h.request(bob.msg(bob.answer(bch, nc, "new-secret")))) != "200 OK"; nc++ {
		if time.Now().After(deadline) {
			t.Fatal("bob's new password never accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	misses := h.a.Stats().CacheMisses
	if r := h.request(alice.msg(alice.answer(ch, 2, "secret"))); status(r) != "200 OK" {
		t.Fatal(r)
	}
	if got := h.a.Stats().CacheMisses; got != misses {
		t.Fatalf("alice's credentials were read from the store again (misses %d -> %d): the address change emptied the cache", misses, got)
	}
}

func (h *harness) dbPath() string {
	// The store was opened on the harness's temporary directory.
	return filepath.Join(h.dir(), store.DefaultFileName)
}

func TestSecretSurvivesRestart(t *testing.T) {
	s1, err := store.LoadSecret(filepath.Join(t.TempDir(), "auth.secret"), "nonce secret")
	if err != nil {
		t.Fatal(err)
	}

	// A nonce from one server is accepted by the next with the same secret.
	h1 := newHarness(t, Config{Secret: s1})
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h1.request(u.msg("")), "MD5")
	h2 := newHarness(t, Config{Secret: s1})
	if r := h2.request(u.msg(u.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatalf("nonce after restart: %s", r)
	}
	h3 := newHarness(t, Config{Secret: []byte("another secret, another server!")})
	if r := h3.request(u.msg(u.answer(ch, 2, "secret"))); status(r) != "401 Unauthorized" {
		t.Fatalf("nonce under another secret: %s", r)
	}
}

func TestConfigErrors(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newHarness(t, Config{})
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Clock: h.clock, Secret: make([]byte, 32)}, "required"},
		{Config{Store: st, Clock: h.clock, Secret: make([]byte, 8)}, "at least 16 bytes"},
		{Config{Store: st, Clock: h.clock, Secret: make([]byte, 32), Algorithms: []string{"SHA-512"}}, `unknown algorithm "SHA-512"`},
		{Config{Store: st, Clock: h.clock, Secret: make([]byte, 32), Algorithms: []string{"MD5", "md5"}}, "listed twice"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg.Algorithms, err, tc.want)
		}
	}
}

// TestDigestURIMustBeTheRequestURI: credentials computed for another URI
// are refused with 400 before the subscriber is looked up (RFC 7616
// §3.4.6), for REGISTER and for a call; the forms RFC 3261 §19.1.4 calls
// equal are accepted.
func TestDigestURIMustBeTheRequestURI(t *testing.T) {
	h := newHarness(t, Config{})
	for _, tc := range []struct {
		method, ruri, duri string
	}{
		{"REGISTER", "", "sip:other.example.org"},
		{"REGISTER", "", "sip:example.com:5060"}, // an explicit default port is another URI
		{"REGISTER", "", "sips:example.com"},
		{"INVITE", "", "sip:carol@example.com"},
		{"INVITE", "", "sip:BOB@example.com"}, // the user part has case
		{"INVITE", "sip:bob@example.com;user=phone", "sip:bob@example.com"},
	} {
		u := &ua{user: "alice", method: tc.method, ruri: tc.ruri, duri: tc.duri}
		if tc.method == "INVITE" {
			u.to = "bob"
		}
		ch := pick(t, h.request(u.msg("")), "SHA-256")
		r := h.request(u.msg(u.answer(ch, 1, "secret")))
		if status(r) != "400 Digest URI Mismatch" {
			t.Errorf("%s %q for uri %q: %s", tc.method, tc.ruri, tc.duri, status(r))
		}
	}
	if st := h.a.Stats(); st.BadURI != 6 || st.Authorized != 0 || st.CacheMisses != 0 {
		t.Errorf("stats %+v", st)
	}
	if l := h.reg.List(""); len(l) != 0 {
		t.Fatalf("a REGISTER with another uri was saved: %+v", l)
	}
	for _, tc := range []struct {
		method, ruri, duri string
	}{
		{"REGISTER", "", ""},
		{"REGISTER", "sip:example.com;transport=udp", "SIP:EXAMPLE.COM"}, // a parameter in one only, case of scheme and host
		{"INVITE", "sip:%62ob@example.com", "sip:bob@example.com;lr"},    // escapes are their characters
		{"INVITE", "sip:bob@example.com;user=phone;x=1", "sip:bob@Example.COM;X=1;USER=phone"},
	} {
		// seq: every REGISTER shares alice's Call-ID, so its CSeq must grow.
		u := &ua{user: "alice", method: tc.method, ruri: tc.ruri, duri: tc.duri, seq: h.cseq()}
		if tc.method == "INVITE" {
			u.to = "bob"
		}
		ch := pick(t, h.request(u.msg("")), "MD5")
		r := h.request(u.msg(u.answer(ch, 1, "secret")))
		if status(r) != "200 OK" && status(r) != "200 Authorized" {
			t.Errorf("%s %q for uri %q: %s", tc.method, tc.ruri, tc.duri, status(r))
		}
	}
}

// TestSkipURICheck: auth.check_uri false accepts credentials computed for
// another URI, as OpenSIPS and Kamailio do (sipp needs it).
func TestSkipURICheck(t *testing.T) {
	h := newHarness(t, Config{SkipURICheck: true})
	u := &ua{user: "alice", method: "REGISTER", duri: "sip:127.0.0.1:5060"}
	ch := pick(t, h.request(u.msg("")), "MD5")
	if r := h.request(u.msg(u.answer(ch, 1, "secret"))); status(r) != "200 OK" {
		t.Fatalf("uri not checked: %s", r)
	}
}

func TestSameResource(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"sip:alice@example.com", "sip:alice@example.com", true},
		{"sip:alice@example.com", "sip:ALICE@example.com", false},
		{"sip:alice@EXAMPLE.com", "SIP:alice@example.COM", true},
		{"sip:alice@example.com", "sip:alice@example.com:5060", false},
		{"sip:alice@example.com:5080", "sip:alice@example.com:5080", true},
		{"sip:%61lice@example.com", "sip:alice@example.com", true},
		{"sip:alice@example.com;transport=tcp", "sip:alice@example.com", true},
		{"sip:alice@example.com;transport=tcp", "sip:alice@example.com;transport=udp", false},
		{"sip:alice@example.com;maddr=192.0.2.1", "sip:alice@example.com", false},
		{"sip:alice@example.com", "sip:alice@example.com;ttl=1", false},
		{"sip:alice@example.com;a=1;b=2", "sip:alice@example.com;b=2;a=1", true},
		{"sip:alice@example.com?subject=x&priority=urgent", "sip:alice@example.com?priority=urgent&subject=x", true},
		{"sip:alice@example.com?subject=x", "sip:alice@example.com", false},
		{"sip:alice@example.com", "sips:alice@example.com", false},
		{"tel:+15551234", "tel:+15551234", true},
		{"tel:+15551234", "TEL:+15551234", false},
		{"", "sip:example.com", false},
		{"sip:alice@example.com;a=%zz", "sip:alice@example.com;a=%zz", true},
		// A parameter or header given twice counts once, with its first
		// value, in both URIs.
		{"sip:alice@example.com;a=1;a=2", "SIP:alice@example.com;a=1;a=2", true},
		{"sip:alice@example.com;a=1;A=2", "sip:alice@example.com;a=1", true},
		{"sip:alice@example.com;a=2;a=1", "sip:alice@example.com;a=1", false},
		{"sip:alice@example.com?s=1&s=2", "SIP:alice@example.com?s=1&s=2", true},
	} {
		if got := sameResource([]byte(tc.a), []byte(tc.b)); got != tc.same {
			t.Errorf("sameResource(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// TestSameResourceManyParameters: a digest uri and Request-URI of 10,000
// parameters each (40 KB, one datagram, no credentials needed to get
// there) are not compared parameter by parameter, each looked for among
// the other's, which took seconds of CPU: they are the same resource
// only byte for byte (the sender gets 400 Digest URI Mismatch
// otherwise). 32 parameters are still compared as RFC 3261 §19.1.4 says.
func TestSameResourceManyParameters(t *testing.T) {
	many := "sip:alice@example.com" + strings.Repeat(";a", 10000)
	start := time.Now()
	if sameResource([]byte(many), []byte("sip:alice@example.com"+strings.Repeat(";b", 10000))) {
		t.Error("10,000 parameters, none in both: the same resource")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("10,000 parameters compared in %v", d)
	}
	if sameResource([]byte(many), []byte("SIP"+many[3:])) {
		t.Error("10,000 parameters spelt otherwise: the same resource")
	}
	if !sameResource([]byte(many), []byte(many)) {
		t.Error("10,000 parameters byte for byte: not the same resource")
	}
	headers := "sip:alice@example.com?" + strings.Repeat("a=1&", 32) + "b=2"
	if sameResource([]byte(headers), []byte("SIP"+headers[3:])) {
		t.Error("33 headers spelt otherwise: the same resource")
	}
	for _, n := range []int{31, 32} {
		params := "sip:alice@example.com" + strings.Repeat(";p", n)
		if !sameResource([]byte(params), []byte("SIP"+params[3:])) {
			t.Errorf("%d parameters spelt otherwise: not the same resource", n)
		}
	}
	if sameResource([]byte("sip:alice@example.com"+strings.Repeat(";p", 33)), []byte("SIP:alice@example.com"+strings.Repeat(";p", 33))) {
		t.Error("33 parameters spelt otherwise: the same resource")
	}
}

// TestRegisterRetransmission: a REGISTER is answered statelessly, so its
// retransmission (the same bytes, same branch, same nonce-count) reaches
// the route again and must get the 200 again, not 401 stale; the same
// nonce-count in any other request is still a replay.
func TestRegisterRetransmission(t *testing.T) {
	h := newHarness(t, Config{})
	u, ch := warm(t, h, "SHA-256")
	msg := u.msg(u.answer(ch, 2, "secret"))
	if r := h.request(msg); status(r) != "200 OK" {
		t.Fatalf("first: %s", r)
	}
	h.clock.Advance(time.Second) // the stateless answer's transaction ends
	if r := h.request(msg); status(r) != "200 OK" {
		t.Fatalf("retransmission: %s", r)
	}
	if st := h.a.Stats(); st.Retransmits != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The same credentials in a new request (new branch and CSeq).
	replays := map[string]string{
		"new request":     u.msg(u.answer(ch, 2, "secret")),
		"another contact": strings.Replace(msg, "Contact: <sip:alice@127.0.0.1:5062>", "Contact: <sip:alice@192.0.2.66:5062>", 1),
		"another branch":  strings.Replace(msg, ";branch=z9hG4bK-a", ";branch=z9hG4bK-b", 1),
	}
	for name, m := range replays {
		if m == msg {
			t.Fatalf("%s: not changed", name)
		}
		h.clock.Advance(time.Second)
		if r := h.request(m); status(r) != "401 Unauthorized" || !challenges(r)[0].stale {
			t.Errorf("%s with a used nonce-count: %s", name, status(r))
		}
	}
	h.clock.Advance(time.Second)
	if r := h.requestFrom("127.0.0.1:5999", msg); status(r) != "401 Unauthorized" {
		t.Errorf("the same bytes from another source: %s", status(r))
	}
	// Still a retransmission after the refusals; not after 64·T1.
	h.clock.Advance(time.Second)
	if r := h.request(msg); status(r) != "200 OK" {
		t.Fatalf("retransmission after the replays: %s", r)
	}
	h.clock.Advance(retransmitWindow * time.Second)
	if r := h.request(msg); status(r) != "401 Unauthorized" {
		t.Errorf("the same bytes after %d s: %s", retransmitWindow+5, status(r))
	}
}

// TestRetransmittedRegisterAfterUnregister: the retransmission rule above
// must not undo what came after the request. A phone registers (#1, nonce
// N1), then unregisters with "Contact: *" (#2, a higher CSeq, nonce N2).
// Within 32 s the bytes of #1 arrive again from the phone's address: a
// late UDP duplicate, or an attacker replaying a captured REGISTER from
// the spoofed source. Auth accepts them as a retransmission; the
// registrar, which had dropped the binding and with it the Call-ID and
// CSeq that would show #1 is old (RFC 3261 §10.3 step 7), answered 200 and
// the binding was back: calls to alice went to an address she had left.
// Now the registrar's tombstone of the Call-ID refuses it (400 Out of
// Order CSeq), and a duplicate of #2 changes nothing.
func TestRetransmittedRegisterAfterUnregister(t *testing.T) {
	h := newHarness(t, Config{})
	u := &ua{user: "alice", method: "REGISTER"}
	ch := pick(t, h.request(u.msg("")), "SHA-256")
	first := u.msg(u.answer(ch, 1, "secret"))
	if r := h.request(first); status(r) != "200 OK" {
		t.Fatalf("register: %s", r)
	}
	h.clock.Advance(time.Second)
	unreg := func(auth string) string {
		return strings.Replace(u.msg(auth), "Contact: <sip:alice@127.0.0.1:5062>\r\n", "Contact: *\r\nExpires: 0\r\n", 1)
	}
	ch2 := pick(t, h.request(unreg("")), "SHA-256")
	second := unreg(u.answer(ch2, 1, "secret"))
	if r := h.request(second); status(r) != "200 OK" {
		t.Fatalf("unregister: %s", r)
	}
	if h.reg.Registered([]byte("alice@example.com")) {
		t.Fatal("still registered after Contact: *")
	}
	h.clock.Advance(5 * time.Second)
	r := h.request(first)
	if h.reg.Registered([]byte("alice@example.com")) {
		t.Fatalf("the old REGISTER, accepted as a retransmission (%s), re-created the binding", status(r))
	}
	if status(r) != "400 Out of Order CSeq" {
		t.Fatalf("the old REGISTER again: %s", r)
	}
	if st := h.a.Stats(); st.Retransmits != 1 {
		t.Fatalf("auth took it for something else than a retransmission: %+v", st)
	}
	h.clock.Advance(time.Second)
	if r := h.request(second); status(r) != "200 OK" || h.reg.Registered([]byte("alice@example.com")) {
		t.Fatalf("the unregistration again: %s", r)
	}
}
