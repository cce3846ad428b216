package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// apiResult runs a management command and decodes its result into v.
func apiResult(t *testing.T, srv *testServer, cmd, args string, v any) {
	t.Helper()
	code, body := srv.api(cmd, args)
	var r struct {
		Result json.RawMessage `json:"result"`
	}
	if code != 200 || json.Unmarshal(body, &r) != nil || json.Unmarshal(r.Result, v) != nil {
		t.Fatalf("%s %s: %d %s", cmd, args, code, body)
	}
}

var e2eSeq struct {
	sync.Mutex
	n int
}

// uaRequest is a request from the peer (Via LOCALPORT) with a User-Agent.
func uaRequest(method, ruri, ua string) string {
	e2eSeq.Lock()
	e2eSeq.n++
	n := strconv.Itoa(e2eSeq.n)
	e2eSeq.Unlock()
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK.e2e" + n + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:someone@example.net>;tag=e" + n + "\r\n" +
		"To: <sip:nobody@localhost>\r\n" +
		"Call-ID: e2e-" + n + "@127.0.0.1\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:someone@127.0.0.1:LOCALPORT>\r\n" +
		"User-Agent: " + ua + "\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// TestE2EScannerUserAgent: a request with a scanner's User-Agent gets no
// answer at all, counted by pattern and listed by scanner.blocks; a
// phone's is served; scanner.patterns lists the rules.
func TestE2EScannerUserAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "")
	scan := newUDPPeerOn(t, "127.0.0.3")
	scan.send(srv.Port, uaRequest("OPTIONS", "sip:100@localhost", "friendly-scanner"))
	scan.send(srv.Port, uaRequest("INVITE", "sip:100@localhost", "VaxSIPUserAgent/3.1"))
	scan.send(srv.Port, uaRequest("REGISTER", "sip:localhost", "sipcli/v1.8"))
	phone := newUDPPeerOn(t, "127.0.0.2")
	phone.send(srv.Port, uaRequest("OPTIONS", "sip:localhost", "Linphonec/5.1.65"))
	phone.waitFor("SIP/2.0 200 ", 5*time.Second)
	if got := scan.take(2 * time.Second); len(got) != 0 {
		t.Fatalf("the scanner got answers: %q", got)
	}
	m := srv.metrics()
	for _, p := range []string{"friendly-scanner", "VaxSIPUserAgent", "^sipcli/"} {
		if v := m[`switchboard_scanner_blocked_total{pattern="`+p+`"}`]; v != 1 {
			t.Errorf("blocked by %s: %v", p, v)
		}
	}
	var blocks []struct {
		Source, Method, Rule string
		UserAgent            string `json:"user_agent"`
	}
	apiResult(t, srv, "scanner.blocks", `{"limit": 10}`, &blocks)
	if len(blocks) != 3 {
		t.Fatalf("scanner.blocks: %+v", blocks)
	}
	if b := blocks[2]; !strings.HasPrefix(b.Source, "127.0.0.3:") || b.Method != "OPTIONS" || b.Rule != "friendly-scanner" || b.UserAgent != "friendly-scanner" {
		t.Errorf("oldest block: %+v", b)
	}
	var pats struct {
		Action string
		Rules  []struct{ Rule, Kind string }
	}
	apiResult(t, srv, "scanner.patterns", "", &pats)
	if pats.Action != "drop" || len(pats.Rules) < 2 || pats.Rules[0].Rule != "friendly-scanner" || pats.Rules[len(pats.Rules)-1].Kind != "fingerprint" {
		t.Errorf("scanner.patterns: %+v", pats)
	}
}

// TestE2ESIPVicious runs SIPVicious 0.3.3 (Debian package sipvicious)
// against the binary, inside a network namespace of its own with only a
// loopback interface: every tool is pointed at the server's 127.0.0.1
// port, and nothing could leave if one were not. svmap, in normal and
// compact form (no User-Agent), finds no SIP device; svwar finds no
// extension; svcrack finds no password; each request they sent is
// counted.
func TestE2ESIPVicious(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	if _, err := exec.LookPath("svmap"); err != nil {
		t.Skip("svmap not installed (Debian package sipvicious; scripts/test-deps.sh installs it)")
	}
	if !inLoopbackNetns(t) {
		return
	}
	srv := startServer(t, "")
	target := "127.0.0.1"
	port := strconv.Itoa(srv.Port)
	run := func(tool string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// -b/-x: bind to and announce 127.0.0.1; -P: a free source port.
		args = append(args, "-b", target, "-x", target, "-P", strconv.Itoa(freeSIPPort(t)), "-p", port, target)
		out, _ := exec.CommandContext(ctx, tool, args...).CombinedOutput()
		t.Logf("%s %s:\n%s", tool, strings.Join(args, " "), out)
		return string(out)
	}
	if out := run("svmap"); strings.Contains(out, target+":"+port) || !strings.Contains(out, "found nothing") {
		t.Errorf("svmap found the server:\n%s", out)
	}
	if out := run("svmap", "-c"); strings.Contains(out, target+":"+port) || !strings.Contains(out, "found nothing") {
		t.Errorf("svmap -c found the server:\n%s", out)
	}
	if out := run("svwar", "-e100-102"); !strings.Contains(out, "found nothing") {
		t.Errorf("svwar found extensions:\n%s", out)
	}
	if out := run("svcrack", "-u100", "-r1-3"); strings.Contains(out, "The password for") || strings.Contains(out, "cracked users") {
		t.Errorf("svcrack found a password:\n%s", out)
	}
	m := srv.metrics()
	ua, fp := m[`switchboard_scanner_blocked_total{pattern="friendly-scanner"}`], m[`switchboard_scanner_blocked_total{fingerprint="sipvicious-tag"}`]
	// svmap once, svwar's probe, svcrack's first REGISTER at least; the
	// compact svmap has no User-Agent and is caught by its tag.
	if ua < 3 || fp < 1 {
		t.Errorf("blocked by User-Agent %v, by fingerprint %v", ua, fp)
	}
}

// TestE2ERateLimit: a burst over a pipe's limit from one source gets 503
// with Retry-After for what is over, the rest passes, another source is
// served; ratelimit.set through the management API changes the limit at
// once, ratelimit.reset lifts it, ratelimit.list and /metrics show it.
func TestE2ERateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, `ratelimit:
  pipes:
    - name: invite
      algorithm: TAILDROP
      limit: 5
      interval: 60s
      key: source
      methods: [INVITE]
`)
	flood := newUDPPeerOn(t, "127.0.0.3")
	burst := func(n int) (passed, limited int) {
		t.Helper()
		for i := 0; i < n; i++ {
			flood.send(srv.Port, uaRequest("INVITE", "sip:nobody@localhost", "Flood/1.0"))
		}
		deadline := time.Now().Add(5 * time.Second)
		var got []string
		for len(got) < n && time.Now().Before(deadline) {
			for _, m := range flood.take(20 * time.Millisecond) {
				if strings.HasPrefix(m, "SIP/2.0 1") {
					continue
				}
				got = append(got, m)
			}
		}
		for _, m := range got {
			switch {
			case strings.HasPrefix(m, "SIP/2.0 480 "):
				passed++
			case strings.HasPrefix(m, "SIP/2.0 503 Rate Limit Exceeded\r\n"):
				if !strings.Contains(m, "\r\nRetry-After: 60\r\n") {
					t.Fatalf("503 without Retry-After: %s", m)
				}
				limited++
			default:
				t.Fatalf("unexpected answer: %s", m)
			}
		}
		if passed+limited != n {
			t.Fatalf("%d answers to %d INVITEs", passed+limited, n)
		}
		return
	}
	if p, l := burst(12); p != 5 || l != 7 {
		t.Fatalf("burst of 12: %d passed, %d refused", p, l)
	}
	other := newUDPPeerOn(t, "127.0.0.2")
	other.send(srv.Port, uaRequest("INVITE", "sip:nobody@localhost", "Phone/1.0"))
	other.waitFor("SIP/2.0 480 ", 5*time.Second)

	var set struct{ Limit int }
	apiResult(t, srv, "ratelimit.set", `{"pipe": "invite", "limit": 20}`, &set)
	if set.Limit != 20 {
		t.Fatalf("ratelimit.set: %+v", set)
	}
	// 12 counted so far in this window: 8 more pass at once.
	if p, l := burst(10); p != 8 || l != 2 {
		t.Fatalf("after set 20: %d passed, %d refused", p, l)
	}
	var list []struct {
		Name    string
		Limit   int
		Passed  uint64
		Dropped uint64
		Limited []struct{ Key string }
	}
	apiResult(t, srv, "ratelimit.list", `{"pipe": "invite"}`, &list)
	if len(list) != 1 {
		t.Fatalf("ratelimit.list: %+v", list)
	}
	if l := list[0]; l.Limit != 20 || l.Passed != 14 || l.Dropped != 9 || len(l.Limited) != 1 || l.Limited[0].Key != "127.0.0.3" {
		t.Errorf("ratelimit.list: %+v", l)
	}
	m := srv.metrics()
	if m[`switchboard_ratelimit_dropped_total{pipe="invite"}`] != 9 || m[`switchboard_ratelimit_passed_total{pipe="invite"}`] != 14 || m[`switchboard_ratelimit_limit{pipe="invite"}`] != 20 {
		t.Errorf("metrics: dropped %v passed %v limit %v", m[`switchboard_ratelimit_dropped_total{pipe="invite"}`],
			m[`switchboard_ratelimit_passed_total{pipe="invite"}`], m[`switchboard_ratelimit_limit{pipe="invite"}`])
	}
	var reset struct{ Reset int }
	apiResult(t, srv, "ratelimit.reset", `{"pipe": "invite", "key": "127.0.0.3"}`, &reset)
	if reset.Reset != 1 {
		t.Fatalf("ratelimit.reset: %+v", reset)
	}
	if p, l := burst(3); p != 3 || l != 0 {
		t.Fatalf("after reset: %d passed, %d refused", p, l)
	}
	for _, bad := range []struct{ cmd, args string }{
		{"ratelimit.set", `{"pipe": "invite", "limit": 0}`},
		{"ratelimit.set", `{"pipe": "invite", "algorithm": "fast"}`},
		{"ratelimit.set", `{"pipe": "invite", "limt": 3}`},
		{"ratelimit.reset", `{"pipe": "invite", "key": "not-an-address"}`},
	} {
		if code, body := srv.api(bad.cmd, bad.args); code != 400 {
			t.Errorf("%s %s: %d %s", bad.cmd, bad.args, code, body)
		}
	}
	if code, _ := srv.api("ratelimit.set", `{"pipe": "nope", "limit": 3}`); code != 404 {
		t.Errorf("unknown pipe: %d", code)
	}
}

// TestE2EReloadScannerAndRateLimit: a SIGHUP applies changed patterns and
// pipes without a restart.
func TestE2EReloadScannerAndRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "scanner:\n  patterns: [friendly-scanner]\nratelimit:\n  pipes:\n    - {name: invite, limit: 100, interval: 60s, key: source, methods: [INVITE]}\n")
	peer := newUDPPeerOn(t, "127.0.0.3")
	peer.send(srv.Port, uaRequest("INVITE", "sip:nobody@localhost", "EvilDialer 2.0"))
	peer.waitFor("SIP/2.0 480 ", 5*time.Second)

	b, err := os.ReadFile(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "[friendly-scanner]", "[friendly-scanner, ^evildialer]", 1)
	cfg = strings.Replace(cfg, "limit: 100", "limit: 1", 1)
	if err := os.WriteFile(srv.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.Log.String(), "msg=reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload:\n%s", srv.Log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := srv.Log.String(); !strings.Contains(l, "scanner") || !strings.Contains(l[strings.Index(l, "msg=reloaded"):], "ratelimit") {
		t.Fatalf("reload did not apply both modules:\n%s", l)
	}
	peer.send(srv.Port, uaRequest("INVITE", "sip:nobody@localhost", "EvilDialer 2.0"))
	if got := peer.take(time.Second); len(got) != 0 {
		t.Fatalf("the new pattern did not apply: %q", got)
	}
	// The pipe kept its count (1 INVITE) and now allows 1.
	other := newUDPPeerOn(t, "127.0.0.3")
	other.send(srv.Port, uaRequest("INVITE", "sip:nobody@localhost", "Phone/1.0"))
	other.waitFor("SIP/2.0 503 ", 5*time.Second)
}
