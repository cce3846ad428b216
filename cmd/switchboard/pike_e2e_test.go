package main

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The flood and authentication-failure bans (modules/pike, modules/authban)
// against the binary, from several loopback source addresses: 127.0.0.1 is
// pike.exempt by default (the host itself), 127.0.0.2 and up are not.

// sourcePeer is a raw UDP peer bound to a loopback source address.
type sourcePeer struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
}

func newSourcePeer(t *testing.T, ip string, srvPort int) *sourcePeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sourcePeer{t: t, conn: c, srv: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srvPort}}
}

func (p *sourcePeer) port() string { return strconv.Itoa(p.conn.LocalAddr().(*net.UDPAddr).Port) }

// send sends msg (LOCALPORT filled) and returns the first final answer, ""
// when none comes within wait.
func (p *sourcePeer) send(msg string, wait time.Duration) string {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "LOCALPORT", p.port())
	if _, err := p.conn.WriteTo([]byte(msg), p.srv); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return ""
		}
		if r := string(buf[:n]); !strings.HasPrefix(r, "SIP/2.0 1") {
			return r
		}
	}
}

func optionsFrom(ip string, n int) string {
	return "OPTIONS sip:localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + ip + ":LOCALPORT;branch=z9hG4bK-fl" + strconv.Itoa(n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:flood@example.net>;tag=fl" + strconv.Itoa(n) + "\r\n" +
		"To: <sip:localhost>\r\n" +
		"Call-ID: flood-" + strconv.Itoa(n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

var sippCallsRE = regexp.MustCompile(`(Successful|Failed) call\s*\|\s*\d+\s*\|\s*(\d+)`)

// sippCalls reads the successful and failed call counts of sipp's final
// statistics.
func sippCalls(out string) (ok, failed int) {
	for _, m := range sippCallsRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "Successful" {
			ok = n
		} else {
			failed = n
		}
	}
	return ok, failed
}

type banInfo struct {
	Source    string `json:"source"`
	Reason    string `json:"reason"`
	Remaining int64  `json:"remaining_s"`
}

func pikeBans(t *testing.T, srv *testServer) []banInfo {
	t.Helper()
	var l []banInfo
	if err := json.Unmarshal(mgmtCall(t, srv, "pike.bans", ""), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestE2EPikeFloodBanned: a flood of OPTIONS from 127.0.0.3 at ten times
// pike's limit is banned within the window and then gets nothing (not even
// its TCP connections), while alice on 127.0.0.2 calls bob and registers
// through the proxy at the same time and sees at least 99% of it succeed;
// after ban_time the flooder is served again.
func TestE2EPikeFloodBanned(t *testing.T) {
	needSipp(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\npike:\n  window: 1s\n  max_requests: 20\n  ban_time: 4s\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	const calls, regs = 40, 10
	startSipp(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", strconv.Itoa(calls))
	time.Sleep(200 * time.Millisecond)

	// alice: 4 calls a second (8 INVITEs counted by pike: each is
	// challenged once) and a registration every second (2 REGISTERs),
	// about half the limit of 20 per second.
	var wg sync.WaitGroup
	var callRes, regRes sippResult
	wg.Add(2)
	go func() {
		defer wg.Done()
		callRes = runSipp(t, 60*time.Second, "-sf", "uac_auth_call.xml", "-i", "127.0.0.2", "-p", strconv.Itoa(freeSIPPort(t)),
			"-m", strconv.Itoa(calls), "-r", "4", "-key", "domain", "localhost", "-key", "user", "alice", "-key", "callee", "bob",
			"-au", "alice", "-ap", "alice-pw", "127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	go func() {
		defer wg.Done()
		regRes = runSipp(t, 60*time.Second, "-sf", "register.xml", "-i", "127.0.0.2", "-p", strconv.Itoa(freeSIPPort(t)),
			"-m", strconv.Itoa(regs), "-r", "1", "-key", "domain", "localhost", "-key", "user", "alice", "-key", "expires", "300",
			"-au", "alice", "-ap", "alice-pw", "127.0.0.1:"+strconv.Itoa(srv.Port))
	}()

	// The flooder: 200 OPTIONS a second for 3 s, ten times the limit,
	// counting the answers it gets and when the last came.
	flooder := newSourcePeer(t, "127.0.0.3", srv.Port)
	var answers atomic.Int64
	var lastAnswer atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := flooder.conn.ReadFrom(buf); err != nil {
				return
			}
			answers.Add(1)
			lastAnswer.Store(time.Now().UnixNano())
		}
	}()
	time.Sleep(500 * time.Millisecond) // alice's traffic is under way
	start := time.Now()
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		msg := strings.ReplaceAll(optionsFrom("127.0.0.3", i), "LOCALPORT", flooder.port())
		flooder.conn.WriteTo([]byte(msg), flooder.srv)
		time.Sleep(5 * time.Millisecond)
	}

	// Banned within the window: the answers stop less than 1 s (the
	// window) after the flood began, at about the limit.
	if n := answers.Load(); n < 15 || n > 25 {
		t.Errorf("the flooder got %d answers, want about max_requests (20)", n)
	}
	if d := time.Duration(lastAnswer.Load() - start.UnixNano()); d > time.Second {
		t.Errorf("the flooder was answered until %v after it began, beyond the 1 s window", d)
	}
	bans := pikeBans(t, srv)
	if len(bans) != 1 || bans[0].Source != "127.0.0.3" || bans[0].Reason != "flood" {
		t.Fatalf("pike.bans: %+v", bans)
	}
	// Its TCP connections are refused at accept.
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 2 * time.Second}).Dial("tcp", "127.0.0.1:"+strconv.Itoa(srv.Port)); err == nil {
		c.Write([]byte(strings.ReplaceAll(optionsFrom("127.0.0.3", -1), "LOCALPORT", "5060")))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1024)); err == nil {
			t.Errorf("a banned source's TCP connection got %d bytes", n)
		}
		c.Close()
	}

	m := srv.metrics()
	for name, min := range map[string]float64{
		"switchboard_transport_refused_datagrams_total":        400,
		`switchboard_connections_refused_total{when="accept"}`: 1,
		`switchboard_pike_bans_total{reason="flood"}`:          1,
		"switchboard_pike_checks_total":                        40,
		"switchboard_pike_over_limit_total":                    1,
	} {
		if m[name] < min {
			t.Errorf("%s = %v, want at least %v", name, m[name], min)
		}
	}
	if m["switchboard_pike_bans_active"] != 1 {
		t.Errorf("bans active %v, want 1 (the flooder)", m["switchboard_pike_bans_active"])
	}

	wg.Wait()
	for name, r := range map[string]sippResult{"calls": callRes, "registrations": regRes} {
		ok, failed := sippCalls(r.Output)
		want := calls
		if name == "registrations" {
			want = regs
		}
		if ok+failed != want || ok*100 < want*99 {
			t.Errorf("alice's %s during the flood: %d succeeded, %d failed of %d (exit %d)\n%s", name, ok, failed, want, r.Code, r.Output)
		}
	}

	// alice's calls took 10 s: the 4 s ban is over, the flooder is
	// served again.
	if time.Since(start) < 5*time.Second {
		time.Sleep(time.Until(start.Add(5 * time.Second)))
	}
	before := answers.Load()
	deadline := time.Now().Add(3 * time.Second)
	for answers.Load() == before && time.Now().Before(deadline) {
		flooder.conn.WriteTo([]byte(strings.ReplaceAll(optionsFrom("127.0.0.3", 100000), "LOCALPORT", flooder.port())), flooder.srv)
		time.Sleep(200 * time.Millisecond)
	}
	if answers.Load() == before {
		t.Fatal("the flooder is not served after ban_time")
	}
	if l := pikeBans(t, srv); len(l) != 0 {
		t.Fatalf("bans after ban_time: %+v", l)
	}
}

// TestE2EPikeManagement: pike.ban, pike.bans and pike.unban on the
// running server, for an address the route would serve.
func TestE2EPikeManagement(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "")
	p := newSourcePeer(t, "127.0.0.4", srv.Port)
	if r := p.send(optionsFrom("127.0.0.4", 1), 2*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("before the ban: %q", r)
	}
	mgmtCall(t, srv, "pike.ban", `{"address":"127.0.0.4","duration":"1h"}`)
	if l := pikeBans(t, srv); len(l) != 1 || l[0].Source != "127.0.0.4" || l[0].Reason != "manual" || l[0].Remaining != 3600 {
		t.Fatalf("pike.bans: %+v", l)
	}
	if r := p.send(optionsFrom("127.0.0.4", 2), 500*time.Millisecond); r != "" {
		t.Fatalf("a banned source was answered: %q", r)
	}
	mgmtCall(t, srv, "pike.unban", `{"address":"127.0.0.4"}`)
	if r := p.send(optionsFrom("127.0.0.4", 3), 2*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("after pike.unban: %q", r)
	}
	if code, body := srv.api("pike.unban", `{"address":"127.0.0.4"}`); code != 404 {
		t.Fatalf("unban of an address not banned: %d %s", code, body)
	}
}

// register builds a REGISTER for user@localhost from a peer (the source
// address in Via), answering ch with password when ch is not nil.
func (u *digestUA) registerFrom(ip string, ch *digestChallenge, nc int, password string) string {
	return strings.Replace(u.register(ch, nc, password), "127.0.0.1:LOCALPORT", ip+":LOCALPORT", 1)
}

// TestE2EAuthFailureBans: a password-guessing loop from one address is
// banned at authban.max_failures and then gets no answer at all; wrong
// passwords for one account from several addresses, each under that
// limit, lock it: the right password then fails too, with the same answer
// as a wrong one, until lock_time has passed.
func TestE2EAuthFailureBans(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "authban:\n  max_failures: 5\n  window: 1m\n  ban_time: 30s\n  account_sources: 3\n  account_window: 1m\n  lock_time: 3s\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "carol@localhost", "carol-pw")

	// One address guessing alice's password.
	g := newSourcePeer(t, "127.0.0.5", srv.Port)
	u := &digestUA{user: "alice"}
	ch := pickChallenge(t, g.send(u.registerFrom("127.0.0.5", nil, 0, ""), 2*time.Second), "MD5")
	tries := 0
	for i := 0; i < 20; i++ {
		r := g.send(u.registerFrom("127.0.0.5", ch, i+1, "guess-"+strconv.Itoa(i)), time.Second)
		if r == "" {
			break
		}
		tries++
		if statusLine(r) != "SIP/2.0 401 Unauthorized" {
			t.Fatalf("guess %d: %s", i, r)
		}
		ch = pickChallenge(t, r, "MD5")
	}
	if tries != 5 {
		t.Fatalf("the guessing address was answered %d times, want authban.max_failures (5)", tries)
	}
	if r := g.send(u.registerFrom("127.0.0.5", ch, 50, "alice-pw"), time.Second); r != "" {
		t.Fatalf("the banned address, right password: %q", r)
	}
	bans := pikeBans(t, srv)
	if len(bans) != 1 || bans[0].Source != "127.0.0.5" || bans[0].Reason != "auth" {
		t.Fatalf("pike.bans: %+v", bans)
	}

	// Three addresses, two wrong passwords each, for carol.
	c := &digestUA{user: "carol"}
	for _, ip := range []string{"127.0.0.6", "127.0.0.7", "127.0.0.8"} {
		p := newSourcePeer(t, ip, srv.Port)
		ch := pickChallenge(t, p.send(c.registerFrom(ip, nil, 0, ""), 2*time.Second), "MD5")
		for i := 1; i <= 2; i++ {
			r := p.send(c.registerFrom(ip, ch, i, "guess"), 2*time.Second)
			if statusLine(r) != "SIP/2.0 401 Unauthorized" {
				t.Fatalf("%s guess %d: %q", ip, i, r)
			}
		}
	}
	var locks []struct {
		Account   string `json:"account"`
		Remaining int64  `json:"remaining_s"`
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "authban.locks", ""), &locks); err != nil || len(locks) != 1 || locks[0].Account != "carol@localhost" {
		t.Fatalf("authban.locks: %+v %v", locks, err)
	}
	lockedAt := time.Now()
	// carol's own phone, on an address that never failed: the right
	// password gets the answer a wrong one gets.
	phone := newSourcePeer(t, "127.0.0.9", srv.Port)
	norm := func(r string) string {
		r = regexp.MustCompile(`nonce="[^"]*"`).ReplaceAllString(r, `nonce=""`)
		return regexp.MustCompile(`(?m)^(Via|Call-ID|To|From|CSeq):.*\r\n`).ReplaceAllString(r, "")
	}
	ch = pickChallenge(t, phone.send(c.registerFrom("127.0.0.9", nil, 0, ""), 2*time.Second), "MD5")
	right := phone.send(c.registerFrom("127.0.0.9", ch, 1, "carol-pw"), 2*time.Second)
	wrong := phone.send(c.registerFrom("127.0.0.9", ch, 2, "not-carols"), 2*time.Second)
	if statusLine(right) != "SIP/2.0 401 Unauthorized" || norm(right) != norm(wrong) || parseChallenges(right)[0].stale {
		t.Fatalf("locked account, right password:\n%s\nwrong password:\n%s", right, wrong)
	}
	// After lock_time the right password works again.
	time.Sleep(time.Until(lockedAt.Add(3200 * time.Millisecond)))
	ch = pickChallenge(t, phone.send(c.registerFrom("127.0.0.9", nil, 0, ""), 2*time.Second), "MD5")
	if r := phone.send(c.registerFrom("127.0.0.9", ch, 1, "carol-pw"), 2*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("after lock_time: %s", r)
	}
	m := srv.metrics()
	for name, want := range map[string]float64{
		`switchboard_pike_bans_total{reason="auth"}`:       1,
		"switchboard_authban_bans_total":                   1,
		"switchboard_authban_locks_total":                  1,
		"switchboard_authban_locks_active":                 0,
		`switchboard_authban_failures_total{why="locked"}`: 1,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
	// authban.unlock and pike.unban lift what is left.
	mgmtCall(t, srv, "authban.lock", `{"user":"carol@localhost"}`)
	mgmtCall(t, srv, "authban.unlock", `{"user":"carol@localhost"}`)
	mgmtCall(t, srv, "pike.unban", `{"address":"127.0.0.5"}`)
	ch = pickChallenge(t, g.send(u.registerFrom("127.0.0.5", nil, 0, ""), 2*time.Second), "MD5")
	if r := g.send(u.registerFrom("127.0.0.5", ch, 1, "alice-pw"), 2*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("after pike.unban: %q", r)
	}
	ch = pickChallenge(t, phone.send(c.registerFrom("127.0.0.9", nil, 0, ""), 2*time.Second), "MD5")
	if r := phone.send(c.registerFrom("127.0.0.9", ch, 1, "carol-pw"), 2*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("after authban.unlock: %s", r)
	}
}

// TestE2ESvcrackBanned: sipvicious svcrack guessing a four-digit password
// (the 42nd it would try) is banned at authban.max_failures (10) and
// never finds it. svcrack sends from 127.0.0.1 whatever its --bindingip
// says, so the host is not exempt in this test; the scanner block list,
// which would drop svcrack before authentication, is emptied so that this
// is authban's doing.
func TestE2ESvcrackBanned(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	if _, err := exec.LookPath("svcrack"); err != nil {
		t.Skip("svcrack not installed (Debian package sipvicious)")
	}
	srv := startServer(t, "auth:\n  algorithms: [MD5]\npike:\n  exempt: []\nscanner:\n  patterns: []\n  fingerprints: []\n")
	addUser(t, srv, "1000@127.0.0.1", "0042")
	time.Sleep(1200 * time.Millisecond) // the server serves the new user after its poll
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "svcrack", "-u", "1000", "-r", "1-9999", "-z", "4", "--maximumtime=5",
		"udp://127.0.0.1:"+strconv.Itoa(srv.Port)).CombinedOutput()
	// "0042" as a word of its own: svcrack's timing lines ("5.004223...
	// seconds since we last received a response") hold it too.
	if regexp.MustCompile(`(^|[^0-9.])0042([^0-9]|$)`).Match(out) {
		t.Fatalf("svcrack found the password:\n%s", out)
	}
	bans := pikeBans(t, srv)
	if len(bans) != 1 || bans[0].Source != "127.0.0.1" || bans[0].Reason != "auth" {
		t.Fatalf("pike.bans: %+v\nsvcrack:\n%s", bans, out)
	}
	m := srv.metrics()
	if got := m[`switchboard_authban_failures_total{why="password"}`]; got != 10 {
		t.Errorf("password failures %v, want exactly max_failures (10): nothing after the ban reached auth", got)
	}
	if m["switchboard_transport_refused_datagrams_total"] < 1 {
		t.Errorf("no datagram of svcrack's was refused after the ban")
	}
}
