package main

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the registrar and digest authentication: the real
// binary on the provider route set, subscribers added with the real CLI,
// phones played by sipp (whose [authentication] keyword answers MD5
// challenges) and by a small digest client below for what sipp cannot do
// (SHA-256, replaying a nonce, comparing refusals byte for byte).

// addUser runs `switchboard user add` on the server's configuration, as an
// operator would while the server runs.
func addUser(t *testing.T, srv *testServer, aor, password string) {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), "user", "add", aor, "--password", password, "-c", srv.Config).CombinedOutput()
	if err != nil {
		t.Fatalf("user add %s: %v\n%s", aor, err, out)
	}
}

// mgmtCall runs a management API command and returns the result.
func mgmtCall(t *testing.T, srv *testServer, cmd, args string) json.RawMessage {
	t.Helper()
	code, body := srv.api(cmd, args)
	var out struct {
		Result json.RawMessage `json:"result"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &out); err != nil || code != 200 {
		t.Fatalf("%s %s: %d %s", cmd, args, code, body)
	}
	return out.Result
}

type bindingInfo struct {
	AOR, Contact string
	Expires      int
}

func bindings(t *testing.T, srv *testServer, aor string) []bindingInfo {
	t.Helper()
	var l []bindingInfo
	if err := json.Unmarshal(mgmtCall(t, srv, "registrations.list", `{"aor":"`+aor+`"}`), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// sippUA runs one sipp scenario as user@localhost from port against srv.
func sippUA(t *testing.T, srv *testServer, scenario string, port int, user, password string, keys ...string) sippResult {
	t.Helper()
	args := []string{"-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1",
		"-key", "domain", "localhost", "-key", "user", user, "-au", user, "-ap", password}
	for i := 0; i+1 < len(keys); i += 2 {
		args = append(args, "-key", keys[i], keys[i+1])
	}
	return runSipp(t, 20*time.Second, append(args, "127.0.0.1:"+strconv.Itoa(srv.Port))...)
}

// TestE2ERegistrarWithSipp: registration with digest authentication, its
// refusals, unregistration, calls between registered phones, 404 and 480,
// a restart that keeps the registrations, and expiry on time.
func TestE2ERegistrarWithSipp(t *testing.T) {
	t.Parallel()
	needSipp(t)
	// sipp 3.6 answers MD5 challenges only, and reads the first one; its
	// digest uri is sip:<server address>:<port>, not the Request-URI.
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\nregistrar:\n  min_expires: 2s\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	addUser(t, srv, "carol@localhost", "carol-pw")
	alicePort, bobPort := freeSIPPort(t), freeSIPPort(t)

	// The right password: 200 listing the binding (the scenario checks the
	// Contact with its expires), and the registrar has it.
	if r := sippUA(t, srv, "register.xml", alicePort, "alice", "alice-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register alice: exit %d\n%s", r.Code, r.Output)
	}
	l := bindings(t, srv, "alice@localhost")
	if len(l) != 1 || l[0].Contact != "sip:alice@127.0.0.1:"+strconv.Itoa(alicePort) || l[0].Expires < 298 || l[0].Expires > 300 {
		t.Fatalf("alice's bindings: %+v", l)
	}

	// A wrong password gets another 401, never a 200.
	r := sippUA(t, srv, "register.xml", freeSIPPort(t), "bob", "not-bobs", "expires", "300")
	if r.Code == 0 || !strings.Contains(r.Output, "401 Unauthorized") {
		t.Fatalf("wrong password: exit %d\n%s", r.Code, r.Output)
	}
	if l := bindings(t, srv, "bob@localhost"); len(l) != 0 {
		t.Fatalf("a wrong password registered: %+v", l)
	}

	// Below registrar.min_expires: 423 with Min-Expires (the scenario
	// checks the header).
	if r := sippUA(t, srv, "register_brief.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "1"); r.Code != 0 {
		t.Fatalf("423: exit %d\n%s", r.Code, r.Output)
	}

	// Contact: * with Expires: 0 removes every binding of the AOR.
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register carol: exit %d\n%s", r.Code, r.Output)
	}
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register carol again: exit %d\n%s", r.Code, r.Output)
	}
	if l := bindings(t, srv, "carol@localhost"); len(l) != 2 {
		t.Fatalf("carol should have two bindings: %+v", l)
	}
	if r := sippUA(t, srv, "unregister.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "0"); r.Code != 0 {
		t.Fatalf("unregister: exit %d\n%s", r.Code, r.Output)
	}
	if l := bindings(t, srv, "carol@localhost"); len(l) != 0 {
		t.Fatalf("after unregister: %+v", l)
	}

	// bob registers from the port his phone (a sipp UAS) will answer on;
	// alice calls him: 407, the INVITE again with credentials, and the call
	// goes through the proxy (Record-Route, ACK and BYE along the route).
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	startSipp(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "2")
	time.Sleep(200 * time.Millisecond)
	before := srv.metrics()
	call := func() {
		t.Helper()
		r := sippUA(t, srv, "uac_auth_call.xml", alicePort, "alice", "alice-pw", "callee", "bob")
		if r.Code != 0 {
			t.Fatalf("call alice -> bob: exit %d\n%s", r.Code, r.Output)
		}
	}
	call()
	after := srv.metrics()
	if d := after["switchboard_auth_challenges_total"] - before["switchboard_auth_challenges_total"]; d != 1 {
		t.Errorf("challenges during the call +%v, want +1 (the 407)", d)
	}
	if d := after["switchboard_auth_authorized_total"] - before["switchboard_auth_authorized_total"]; d != 1 {
		t.Errorf("authorized during the call +%v, want +1", d)
	}

	// carol is a subscriber but not registered, dave is nobody: both 480
	// (provider.reveal_unknown_users is off).
	if r := sippUA(t, srv, "uac_auth_call_480.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "carol"); r.Code != 0 {
		t.Fatalf("call to an unregistered subscriber: exit %d\n%s", r.Code, r.Output)
	}
	if r := sippUA(t, srv, "uac_auth_call_480.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "dave"); r.Code != 0 {
		t.Fatalf("call to a non-subscriber: exit %d\n%s", r.Code, r.Output)
	}

	// A restart keeps the registrations, and bob is still reachable.
	srv.restart()
	if l := bindings(t, srv, ""); len(l) != 2 {
		t.Fatalf("after restart: %+v", l)
	}
	call()

	// Expiry: a 3 s registration is listed until 3 s after it was made and
	// gone 0.4 s after that. It was made between start and done.
	start := time.Now()
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "3"); r.Code != 0 {
		t.Fatalf("short registration: exit %d\n%s", r.Code, r.Output)
	}
	done := time.Now()
	if done.Sub(start) < 2500*time.Millisecond {
		time.Sleep(time.Until(start.Add(2700 * time.Millisecond)))
		if l := bindings(t, srv, "carol@localhost"); len(l) != 1 {
			t.Fatalf("expired early: %+v", l)
		}
	}
	time.Sleep(time.Until(done.Add(3400 * time.Millisecond)))
	if l := bindings(t, srv, "carol@localhost"); len(l) != 0 {
		t.Fatalf("not expired 3.4 s after registering for 3 s: %+v", l)
	}
}

// digestUA is a digest client written from RFC 7616 for the tests.
type digestUA struct {
	user, password string
	seq            int
}

var chRE = regexp.MustCompile(`WWW-Authenticate: Digest realm="([^"]*)", nonce="([^"]*)", qop="auth", algorithm=([A-Z0-9-]+)(, stale=true)?\r\n`)

type digestChallenge struct {
	realm, nonce, alg string
	stale             bool
}

func parseChallenges(resp string) []digestChallenge {
	var out []digestChallenge
	for _, m := range chRE.FindAllStringSubmatch(resp, -1) {
		out = append(out, digestChallenge{m[1], m[2], m[3], m[4] != ""})
	}
	return out
}

func (u *digestUA) register(ch *digestChallenge, nc int, password string) string {
	u.seq++
	m := "REGISTER sip:localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + u.user + "@localhost>;tag=t1\r\n" +
		"To: <sip:" + u.user + "@localhost>\r\n" +
		"Call-ID: reg-" + u.user + "@test\r\n" +
		"CSeq: " + strconv.Itoa(u.seq) + " REGISTER\r\n" +
		"Contact: <sip:" + u.user + "@127.0.0.1:5999>\r\n" +
		"Expires: 300\r\n"
	if ch != nil {
		h := func(s string) string {
			if ch.alg == "SHA-256" {
				x := sha256.Sum256([]byte(s))
				return hex.EncodeToString(x[:])
			}
			x := md5.Sum([]byte(s))
			return hex.EncodeToString(x[:])
		}
		ha1 := h(u.user + ":" + ch.realm + ":" + password)
		ha2 := h("REGISTER:sip:localhost")
		ncs := fmt.Sprintf("%08x", nc)
		resp := h(ha1 + ":" + ch.nonce + ":" + ncs + ":abc123:auth:" + ha2)
		m += fmt.Sprintf("Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"sip:localhost\", response=\"%s\", algorithm=%s, cnonce=\"abc123\", qop=auth, nc=%s\r\n",
			u.user, ch.realm, ch.nonce, resp, ch.alg, ncs)
	}
	return m + "Content-Length: 0\r\n\r\n"
}

func pickChallenge(t *testing.T, resp, alg string) *digestChallenge {
	t.Helper()
	for _, c := range parseChallenges(resp) {
		if c.alg == alg {
			return &c
		}
	}
	t.Fatalf("no %s challenge in:\n%s", alg, resp)
	return nil
}

// TestE2EDigest: both algorithms, a replayed nonce, a stale nonce, and the
// same refusal for an unknown user as for a wrong password, against the
// binary on its default algorithms (SHA-256 offered first, then MD5).
func TestE2EDigest(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  nonce_lifetime: 10s\n")
	addUser(t, srv, "erin@localhost", "erin-pw")
	send := func(msg string) string {
		t.Helper()
		r := sendUDP(t, srv.Port, msg, 3*time.Second)
		if r == "" {
			t.Fatalf("no answer to\n%s", msg)
		}
		return r
	}
	u := &digestUA{user: "erin"}
	first := send(u.register(nil, 0, ""))
	chs := parseChallenges(first)
	if statusLine(first) != "SIP/2.0 401 Unauthorized" || len(chs) != 2 || chs[0].alg != "SHA-256" || chs[1].alg != "MD5" || chs[0].realm != "localhost" {
		t.Fatalf("challenge: %+v\n%s", chs, first)
	}
	for _, alg := range []string{"SHA-256", "MD5"} {
		ch := pickChallenge(t, send(u.register(nil, 0, "")), alg)
		if r := send(u.register(ch, 1, "erin-pw")); statusLine(r) != "SIP/2.0 200 OK" {
			t.Fatalf("%s: %s", alg, r)
		}
		// Replayed: the same nonce and nonce-count in a new request.
		r := send(u.register(ch, 1, "erin-pw"))
		if statusLine(r) != "SIP/2.0 401 Unauthorized" || !parseChallenges(r)[0].stale {
			t.Fatalf("%s replay: %s", alg, r)
		}
		if r := send(u.register(ch, 2, "erin-pw")); statusLine(r) != "SIP/2.0 200 OK" {
			t.Fatalf("%s nc=2: %s", alg, r)
		}
	}

	// Unknown user and wrong password: the same answer but for the nonce
	// (and the tags and branch the request chose).
	norm := func(r string) string {
		r = regexp.MustCompile(`nonce="[^"]*"`).ReplaceAllString(r, `nonce=""`)
		r = regexp.MustCompile(`(?m)^(Via|Call-ID|To|From|CSeq):.*\r\n`).ReplaceAllString(r, "")
		return r
	}
	ch := pickChallenge(t, send(u.register(nil, 0, "")), "SHA-256")
	wrong := send(u.register(ch, 1, "guess"))
	ghost := &digestUA{user: "ghost"}
	unknown := send(ghost.register(ch, 1, "guess"))
	if norm(wrong) != norm(unknown) || statusLine(wrong) != "SIP/2.0 401 Unauthorized" {
		t.Fatalf("refusals differ:\n%s\n---\n%s", wrong, unknown)
	}

	// Stale: the right password after the 10 s nonce lifetime gets a new
	// challenge with stale=true.
	ch = pickChallenge(t, send(u.register(nil, 0, "")), "MD5")
	time.Sleep(11 * time.Second)
	r := send(u.register(ch, 1, "erin-pw"))
	if statusLine(r) != "SIP/2.0 401 Unauthorized" || !parseChallenges(r)[0].stale {
		t.Fatalf("stale nonce: %s", r)
	}
	ch = pickChallenge(t, r, "MD5")
	if r := send(u.register(ch, 1, "erin-pw")); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("after stale: %s", r)
	}

	// A password changed with the CLI while the server runs takes effect.
	out, err := exec.Command(switchboardBinary(t), "user", "passwd", "erin@localhost", "--password", "new-pw", "-c", srv.Config).CombinedOutput()
	if err != nil {
		t.Fatalf("user passwd: %v\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ch = pickChallenge(t, send(u.register(nil, 0, "")), "MD5")
		if statusLine(send(u.register(ch, 1, "new-pw"))) == "SIP/2.0 200 OK" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new password is not accepted 5 s after user passwd")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ch = pickChallenge(t, send(u.register(nil, 0, "")), "MD5")
	if r := send(u.register(ch, 1, "erin-pw")); statusLine(r) != "SIP/2.0 401 Unauthorized" {
		t.Fatalf("old password after passwd: %s", r)
	}
}

// TestE2EManagementCommands: subscribers, domains and registrations
// through the management API of the running binary.
func TestE2EManagementCommands(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  register: false\n")
	mgmtCall(t, srv, "domains.add", `{"domain":"example.com"}`)
	mgmtCall(t, srv, "users.add", `{"user":"fay@example.com","password":"pw1"}`)
	var users []struct{ User string }
	json.Unmarshal(mgmtCall(t, srv, "users.list", `{"domain":"example.com"}`), &users)
	if len(users) != 1 || users[0].User != "fay@example.com" {
		t.Fatalf("users.list: %+v", users)
	}
	var domains []string
	json.Unmarshal(mgmtCall(t, srv, "domains.list", ""), &domains)
	if strings.Join(domains, ",") != "127.0.0.1,example.com,localhost" {
		t.Fatalf("domains.list: %v", domains)
	}
	mgmtCall(t, srv, "users.passwd", `{"user":"fay@example.com","password":"pw2"}`)

	// auth.register: false (the benchmark hook) saves without a challenge,
	// for a domain added through the API a moment ago.
	reg := func(user, contact string) string {
		msg := (&digestUA{user: user}).register(nil, 0, "")
		msg = strings.ReplaceAll(msg, "@localhost>", "@example.com>")
		msg = strings.Replace(msg, "sip:localhost", "sip:example.com", 1)
		msg = strings.Replace(msg, "<sip:"+user+"@127.0.0.1:5999>", "<"+contact+">", 1)
		return sendUDP(t, srv.Port, msg, 3*time.Second)
	}
	deadline := time.Now().Add(5 * time.Second)
	for statusLine(reg("fay", "sip:fay@127.0.0.1:5999")) != "SIP/2.0 200 OK" {
		if time.Now().After(deadline) {
			t.Fatal("REGISTER for a domain added through the API not accepted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	reg("gus", "sip:gus@127.0.0.1:5998")
	if l := bindings(t, srv, ""); len(l) != 2 {
		t.Fatalf("registrations.list: %+v", l)
	}
	mgmtCall(t, srv, "registrations.delete", `{"aor":"fay@example.com","contact":"sip:fay@127.0.0.1:5999"}`)
	if l := bindings(t, srv, "fay@example.com"); len(l) != 0 {
		t.Fatalf("after registrations.delete: %+v", l)
	}
	var flushed map[string]int
	json.Unmarshal(mgmtCall(t, srv, "registrations.flush", ""), &flushed)
	if flushed["removed"] != 1 || len(bindings(t, srv, "")) != 0 {
		t.Fatalf("registrations.flush: %v", flushed)
	}
	// Errors: a missing binding is 404, bad arguments 400.
	for _, c := range []struct {
		cmd, args string
		code      int
	}{
		{"registrations.delete", `{"aor":"nobody@example.com"}`, 404},
		{"users.add", `{"user":"no-domain"}`, 400},
		{"users.del", `{"user":"nobody@example.com"}`, 404},
		{"domains.add", `{"domain":"example.com"}`, 400},
		{"registrations.list", `{"aor":1}`, 400},
	} {
		if code, body := srv.api(c.cmd, c.args); code != c.code {
			t.Errorf("%s %s: %d %s, want %d", c.cmd, c.args, code, body, c.code)
		}
	}
	mgmtCall(t, srv, "users.del", `{"user":"fay@example.com"}`)
	mgmtCall(t, srv, "domains.del", `{"domain":"example.com"}`)
}
