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
