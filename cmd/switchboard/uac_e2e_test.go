package main

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/parser"
)

// The uac module end to end: a carrier that challenges the calls of our
// trunk, written as a raw UDP peer that checks the digest with the trunk's
// password (sipp's UAS [authentication] cannot verify one), and a
// carrier's registrar the registrant keeps a registration with.

// sipAnswer builds a response to req as a UAS does: every Via, From, To
// with toTag, Call-ID, CSeq, then extra lines.
func sipAnswer(req, status, toTag, extra string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, v := range headerValues(req, "Via") {
		b.WriteString("Via: " + v + "\r\n")
	}
	to := headerValue(req, "To")
	if toTag != "" && !strings.Contains(to, ";tag=") {
		to += ";tag=" + toTag
	}
	b.WriteString("From: " + headerValue(req, "From") + "\r\nTo: " + to + "\r\nCall-ID: " + headerValue(req, "Call-ID") +
		"\r\nCSeq: " + headerValue(req, "CSeq") + "\r\n" + extra + "Content-Length: 0\r\n\r\n")
	return b.String()
}

// digestOK checks credentials with the password, as a carrier does.
func digestOK(value, method, user, realm, password, nonce string) bool {
	var a parser.Auth
	if !parser.ParseAuth([]byte(value), &a) || string(a.Username) != user || string(a.Realm) != realm || string(a.Nonce) != nonce {
		return false
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1, ha2 := h(user+":"+realm+":"+password), h(method+":"+string(a.URI))
	want := h(ha1 + ":" + nonce + ":" + ha2)
	if len(a.QOP) > 0 {
		want = h(ha1 + ":" + nonce + ":" + string(a.NC) + ":" + string(a.CNonce) + ":" + string(a.QOP) + ":" + ha2)
	}
	return string(a.Response) == want
}

// challengingCarrier answers INVITEs without credentials with 407 and
// those with valid ones with 180 and 200; it records what it saw.
type challengingCarrier struct {
	conn *net.UDPConn
	mu   sync.Mutex
	log  []string // "INVITE 1 unauthenticated", "INVITE 2 ok", "ACK 2", "BYE 3"...
	bad  []string // what a carrier would refuse
	n    int
}

func startChallengingCarrier(t *testing.T, ip string) *challengingCarrier {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	c := &challengingCarrier{conn: conn}
	t.Cleanup(func() { conn.Close() })
	go c.serve()
	return c
}

func (c *challengingCarrier) addr() string { return c.conn.LocalAddr().String() }

func (c *challengingCarrier) note(bad bool, s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bad {
		c.bad = append(c.bad, s)
	} else {
		c.log = append(c.log, s)
	}
}

func (c *challengingCarrier) seen() (log, bad []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...), append([]string(nil), c.bad...)
}

func (c *challengingCarrier) serve() {
	buf := make([]byte, 65535)
	var lastInvite uint64 // the CSeq number of the last INVITE taken
	for {
		n, from, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		method, _, _ := strings.Cut(msg, " ")
		cseq, _, _ := strings.Cut(headerValue(msg, "CSeq"), " ")
		num, _ := strconv.ParseUint(cseq, 10, 32)
		send := func(s string) { c.conn.WriteToUDP([]byte(s), from) }
		switch method {
		case "INVITE":
			pa := headerValue(msg, "Proxy-Authorization")
			if pa == "" {
				c.mu.Lock()
				c.n++
				nonce := "cn" + strconv.Itoa(c.n)
				c.mu.Unlock()
				c.note(false, "INVITE "+cseq+" unauthenticated")
				lastInvite = num
				send(sipAnswer(msg, "407 Proxy Authentication Required", "gw407",
					`Proxy-Authenticate: Digest realm="carrier.example", nonce="`+nonce+`", qop="auth", algorithm=MD5`+"\r\n"))
				continue
			}
			var a parser.Auth
			parser.ParseAuth([]byte(pa), &a)
			if !digestOK(pa, "INVITE", "trunk1", "carrier.example", "trunk-pw", string(a.Nonce)) {
				c.note(true, "INVITE with bad credentials: "+pa)
				send(sipAnswer(msg, "403 Forbidden", "gw403", ""))
				continue
			}
			if num != lastInvite+1 {
				c.note(true, "INVITE re-sent with CSeq "+cseq+" after "+strconv.FormatUint(lastInvite, 10))
			}
			lastInvite = num
			c.note(false, "INVITE "+cseq+" ok")
			rr := ""
			for _, v := range headerValues(msg, "Record-Route") {
				rr += "Record-Route: " + v + "\r\n"
			}
			send(sipAnswer(msg, "180 Ringing", "gw1", ""))
			send(sipAnswer(msg, "200 OK", "gw1", rr+"Contact: <sip:gw@"+c.addr()+">\r\n"))
		case "ACK":
			if headerValue(msg, "To") != "" && strings.Contains(headerValue(msg, "To"), "tag=gw1") && num != lastInvite {
				c.note(true, "ACK of the 200 with CSeq "+cseq+", the INVITE had "+strconv.FormatUint(lastInvite, 10))
			}
			c.note(false, "ACK "+cseq)
		case "BYE":
			if num <= lastInvite {
				c.note(true, "BYE with CSeq "+cseq+", not above the INVITE's "+strconv.FormatUint(lastInvite, 10))
			}
			c.note(false, "BYE "+cseq)
			send(sipAnswer(msg, "200 OK", "", ""))
		}
	}
}

func uacCLI(t *testing.T, srv *testServer, args ...string) string {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{"uac"}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard uac %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestE2EUACAuthTrunk: a subscriber (sipp, authenticating to us) calls a
// number at a carrier through the provider route set; the carrier
// challenges our INVITE, the server answers with the trunk's credentials
// (added with the CLI while it runs) and the next CSeq, the carrier
// checks the digest with the password; the caller's 200 and the 200 of
// its BYE carry the caller's own CSeq numbers while the carrier sees its
// numbering continued on the ACK and the BYE.
func TestE2EUACAuthTrunk(t *testing.T) {
	t.Parallel()
	needSipp(t)
	// sipp answers the first challenge, MD5, with a digest uri that is not
	// the Request-URI.
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\nuac:\n  poll_interval: 50ms\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	carrier := startChallengingCarrier(t, "127.0.0.5")
	out := uacCLI(t, srv, "cred-add", "trunk1", "--gateway", carrier.addr(), "--realm", "carrier.example", "--password", "trunk-pw")
	if !strings.HasPrefix(out, "added credential 1: user trunk1") {
		t.Fatalf("cred-add: %s", out)
	}
	time.Sleep(200 * time.Millisecond) // the server reloads within poll_interval

	r := sippUA(t, srv, "uac_trunk_call.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "+4930123456", "carrier", carrier.addr())
	log, bad := carrier.seen()
	if r.Code != 0 || len(bad) > 0 {
		t.Fatalf("sipp exit %d, carrier saw %q, refused %q\n%s", r.Code, log, bad, r.Output)
	}
	want := []string{"INVITE 2 unauthenticated", "ACK 2", "INVITE 3 ok", "ACK 3", "BYE 4"}
	if strings.Join(log, ", ") != strings.Join(want, ", ") {
		t.Errorf("the carrier saw %q, want %q", log, want)
	}
	m := srv.metrics()
	if m["switchboard_uac_auth_answered_total"] != 1 || m["switchboard_uac_restored_total"] != 2 || m["switchboard_uac_credentials"] != 1 {
		t.Errorf("metrics: answered %v restored %v credentials %v", m["switchboard_uac_auth_answered_total"],
			m["switchboard_uac_restored_total"], m["switchboard_uac_credentials"])
	}

	// The management commands: listed without the secret, deleted; a
	// call then gets the carrier's 407 relayed (nothing to answer with).
	var creds []struct {
		ID                       int64
		Realm, Gateway, Username string
		Secret                   string
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "uac.credentials.list", `{}`), &creds); err != nil || len(creds) != 1 ||
		creds[0].Gateway != carrier.addr() || creds[0].Secret != "password" {
		t.Fatalf("uac.credentials.list: %+v %v", creds, err)
	}
	if code, body := srv.api("uac.credentials.list", `{}`); code != 200 || strings.Contains(string(body), "trunk-pw") {
		t.Fatalf("the list shows the password: %s", body)
	}
	if code, body := srv.api("uac.credentials.add", `{"username":"x","gateway":"gw.example","password":"p"}`); code != 400 || !strings.Contains(string(body), `gateway \"gw.example\"`) {
		t.Errorf("bad gateway: %d %s", code, body)
	}
	mgmtCall(t, srv, "uac.credentials.del", `{"id":1}`)
	if code, _ := srv.api("uac.credentials.del", `{"id":1}`); code != 404 {
		t.Errorf("second delete: %d", code)
	}
	// sipp waits in vain for its 200 (the carrier's 407 is relayed to it).
	r = runSipp(t, 3*time.Second, "-sf", "uac_trunk_call.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)), "-m", "1",
		"-key", "domain", "localhost", "-key", "user", "alice", "-au", "alice", "-ap", "alice-pw",
		"-key", "callee", "+4930123456", "-key", "carrier", carrier.addr(), "127.0.0.1:"+strconv.Itoa(srv.Port))
	log, _ = carrier.seen()
	if r.Code == 0 || len(log) != len(want)+2 || log[len(want)] != "INVITE 2 unauthenticated" || log[len(want)+1] != "ACK 2" {
		t.Errorf("without the credential: sipp exit %d, the carrier saw %q", r.Code, log)
	}
	if srv.metrics()["switchboard_uac_auth_no_credentials_total"] != 1 {
		t.Error("the unanswered challenge is not counted")
	}
}

// goRegistrar is a carrier's registrar: it challenges, checks the digest,
// grants a short lifetime; down, it answers nothing.
type goRegistrar struct {
	conn *net.UDPConn
	down atomic.Bool
	mu   sync.Mutex
	ok   []string // Call-ID|CSeq|Expires of the REGISTERs it accepted
}

func startGoRegistrar(t *testing.T, grant int) *goRegistrar {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 6)})
	if err != nil {
		t.Fatal(err)
	}
	g := &goRegistrar{conn: conn}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 65535)
		nonce := 0
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if !strings.HasPrefix(msg, "REGISTER ") || g.down.Load() {
				continue
			}
			auth := headerValue(msg, "Authorization")
			var a parser.Auth
			parser.ParseAuth([]byte(auth), &a)
			var reply string
			switch {
			case auth == "" || !strings.HasPrefix(string(a.Nonce), "r"):
				nonce++
				reply = sipAnswer(msg, "401 Unauthorized", "r1", `WWW-Authenticate: Digest realm="reg.example", nonce="r`+strconv.Itoa(nonce)+`", qop="auth"`+"\r\n")
			case digestOK(auth, "REGISTER", "+4930999", "reg.example", "reg-pw", string(a.Nonce)):
				g.mu.Lock()
				g.ok = append(g.ok, headerValue(msg, "Call-ID")+"|"+headerValue(msg, "CSeq")+"|"+headerValue(msg, "Expires"))
				g.mu.Unlock()
				reply = sipAnswer(msg, "200 OK", "r1", "Contact: "+headerValue(msg, "Contact")+";expires="+strconv.Itoa(grant)+"\r\n")
			default:
				reply = sipAnswer(msg, "403 Forbidden", "r1", "")
			}
			conn.WriteToUDP([]byte(reply), from)
		}
	}()
	return g
}

func (g *goRegistrar) accepted() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.ok...)
}

type uacRegView struct {
	ID       int64
	AOR      string
	State    string
	Code     int
	Failures int
	Until    string `json:"registered_until"`
}

func uacRegistrations(t *testing.T, srv *testServer) []uacRegView {
	t.Helper()
	var l []uacRegView
	if err := json.Unmarshal(mgmtCall(t, srv, "uac.registrations", `{}`), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func waitState(t *testing.T, srv *testServer, d time.Duration, state string) uacRegView {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		l := uacRegistrations(t, srv)
		if len(l) == 1 && l[0].State == state {
			return l[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration not %s within %s: %+v", state, d, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestE2ERegistrant: a registration added with the management API
// registers to the carrier's registrar (answering its challenge), is
// refreshed before the granted time runs out, fails while the registrar
// is down and registers again when it is back; state in uac.registrations
// and the metrics; deleted with the CLI, it is unregistered.
func TestE2ERegistrant(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "uac:\n  poll_interval: 50ms\n  retry_min: 200ms\n  retry_max: 400ms\n")
	reg := startGoRegistrar(t, 2)
	mgmtCall(t, srv, "uac.registrations.add", `{"aor":"sip:+4930999@reg.example","registrar":"reg.example","proxy":"`+reg.conn.LocalAddr().String()+`","password":"reg-pw"}`)
	v := waitState(t, srv, 5*time.Second, "registered")
	if v.Code != 200 || v.Until == "" {
		t.Errorf("registered: %+v", v)
	}
	if m := srv.metrics(); m[`switchboard_uac_registrations{state="registered"}`] != 1 || m["switchboard_uac_register_sent_total"] < 2 {
		t.Errorf("metrics: %v registered, %v sent", m[`switchboard_uac_registrations{state="registered"}`], m["switchboard_uac_register_sent_total"])
	}
	deadline := time.Now().Add(4 * time.Second)
	for len(reg.accepted()) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	acc := reg.accepted()
	if len(acc) < 2 {
		t.Fatalf("not refreshed within the 2s granted: %q", acc)
	}
	first, second := strings.Split(acc[0], "|"), strings.Split(acc[1], "|")
	if first[0] != second[0] || first[1] >= second[1] || first[2] != "3600" {
		t.Errorf("refresh: %q then %q (same Call-ID, CSeq going on, Expires asked 3600)", acc[0], acc[1])
	}

	reg.down.Store(true) // the refresh times out (64·T1 = 6.4s here), the binding runs out
	v = waitState(t, srv, 12*time.Second, "failed")
	if v.Code != 408 || v.Failures < 1 || srv.metrics()[`switchboard_uac_registrations{state="failed"}`] != 1 {
		t.Errorf("while the registrar is down: %+v", v)
	}
	reg.down.Store(false)
	waitState(t, srv, 10*time.Second, "registered")

	n := len(reg.accepted())
	out := uacCLI(t, srv, "reg-del", strconv.FormatInt(v.ID, 10))
	if !strings.HasPrefix(out, "deleted registration") {
		t.Fatalf("reg-del: %s", out)
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		acc := reg.accepted()
		if len(acc) > n && strings.HasSuffix(acc[len(acc)-1], "|0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not unregistered: %q", acc[n:])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := uacRegistrations(t, srv); len(l) != 0 {
		t.Errorf("still listed: %+v", l)
	}
}
