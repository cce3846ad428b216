package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fraudCLI runs `switchboard fraud ARGS -c config` and returns its output.
func fraudCLI(t *testing.T, srv *testServer, args ...string) string {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{"fraud"}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("fraud %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFraudRules waits until the server has loaded n fraud rules.
func waitFraudRules(t *testing.T, srv *testServer, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.metrics()["switchboard_fraud_rules"] != n {
		if time.Now().After(deadline) {
			t.Fatalf("the server has %v fraud rules, want %v", srv.metrics()["switchboard_fraud_rules"], n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fraudCall places an INVITE from alice@localhost to ruri through the
// server, answering its 407, and returns the final answer's status line
// and the Call-ID it was sent with.
func fraudCall(t *testing.T, srv *testServer, ruri string) (string, string) {
	t.Helper()
	msg := func(extra string) string {
		m := request("INVITE", ruri, "To: <"+ruri+">\r\nMax-Forwards: 70\r\nContact: <sip:alice@127.0.0.1:LOCALPORT>\r\n"+extra)
		return strings.Replace(m, "From: <sip:bob@example.org>", "From: <sip:alice@localhost>", 1)
	}
	ch := sendUDP(t, srv.Port, msg(""), 3*time.Second)
	if statusLine(ch) != "SIP/2.0 407 Proxy Authentication Required" {
		t.Fatalf("INVITE to %s: %q, want 407", ruri, statusLine(ch))
	}
	m := msg(proxyCredentials(t, ch, "alice", "alice-pw", "INVITE", ruri))
	callID := headerValue(m, "Call-ID")
	return statusLine(sendUDP(t, srv.Port, m, 3*time.Second)), callID
}

// TestE2EFraudLimits: a rule added with the CLI while the server runs is
// loaded; a subscriber calling a premium prefix past the critical calls
// per minute gets 403 and the event is listed by fraud.events, counted in
// the metrics and logged; calls to other numbers still go through;
// fraud.reset lifts the block. Then concurrent calls: the second call in
// progress is refused until the BYE of the first, relayed on our signed
// Record-Route, ends it.
func TestE2EFraudLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "fraud:\n  timezone: UTC\n  poll_interval: 50ms\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	gw := startRawUAS(t, "127.0.0.2:0") // a gateway in another domain: answers 200
	gwAddr := "@127.0.0.2:" + strconv.Itoa(gw.port())

	out := fraudCLI(t, srv, "add", "--prefix", "0900", "--cpm-warning", "2", "--cpm-critical", "3")
	if !strings.Contains(out, "added fraud rule 1") {
		t.Fatalf("fraud add: %s", out)
	}
	waitFraudRules(t, srv, 1)
	if out := fraudCLI(t, srv, "list"); !strings.Contains(out, "0900") || !strings.Contains(out, "2/3") {
		t.Fatalf("fraud list:\n%s", out)
	}

	for i, c := range []struct{ number, want string }{
		{"0900123", "SIP/2.0 200 OK"},
		{"0900456", "SIP/2.0 200 OK"}, // warning: goes on
		{"0900789", "SIP/2.0 403 Forbidden"},
		{"0800123", "SIP/2.0 200 OK"}, // another number: no rule
		{"0900123", "SIP/2.0 403 Forbidden"},
		{"0044123", "SIP/2.0 200 OK"},
	} {
		if got, _ := fraudCall(t, srv, "sip:"+c.number+gwAddr); got != c.want {
			t.Fatalf("call %d to %s: %q, want %q", i, c.number, got, c.want)
		}
	}
	var events []struct {
		Level, Param, User, Number, Prefix string
		Value, Threshold                   int
		Rule                               int
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "fraud.events", `{}`), &events); err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0].Level != "critical" || events[0].Number != "0900123" || events[0].User != "alice@localhost" ||
		events[0].Param != "cpm" || events[0].Value != 4 || events[0].Threshold != 3 || events[0].Rule != 1 || events[2].Level != "warning" {
		t.Fatalf("fraud.events: %+v", events)
	}
	m := srv.metrics()
	if m[`switchboard_fraud_events_total{level="critical"}`] != 2 || m[`switchboard_fraud_events_total{level="warning"}`] != 1 {
		t.Fatalf("event metrics: %v, %v", m[`switchboard_fraud_events_total{level="critical"}`], m[`switchboard_fraud_events_total{level="warning"}`])
	}
	if !srv.logged("fraud threshold reached") {
		t.Error("no log line for the events")
	}

	// fraud.reset lifts the block at once.
	mgmtCall(t, srv, "fraud.reset", `{"user":"alice@localhost"}`)
	if got, _ := fraudCall(t, srv, "sip:0900123"+gwAddr); got != "SIP/2.0 200 OK" {
		t.Fatalf("after fraud.reset: %q", got)
	}

	// Concurrent calls, a rule added through the management API.
	mgmtCall(t, srv, "fraud.rules.add", `{"profile":1,"prefix":"0033","concurrent_calls_critical":2}`)
	got, callID := fraudCall(t, srv, "sip:0033111"+gwAddr)
	if got != "SIP/2.0 200 OK" {
		t.Fatalf("first call: %q", got)
	}
	var relayed string
	for relayed == "" || !strings.Contains(relayed, callID) {
		relayed = gw.next(t, 3*time.Second)
	}
	if got, _ := fraudCall(t, srv, "sip:0033222"+gwAddr); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("second call while the first is up: %q", got)
	}
	// alice hangs up the first call: a BYE on the Route the gateway was
	// given, the way a phone sends it.
	bye := "BYE sip:0033111" + gwAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-bye" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"Route: " + headerValue(relayed, "Record-Route") + "\r\n" +
		"From: <sip:alice@localhost>;tag=f1\r\n" +
		"To: <sip:0033111" + gwAddr + ">;tag=uas\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 2 BYE\r\n" +
		"Content-Length: 0\r\n\r\n"
	if got := statusLine(sendUDP(t, srv.Port, bye, 3*time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("BYE: %q", got)
	}
	if got, _ := fraudCall(t, srv, "sip:0033222"+gwAddr); got != "SIP/2.0 200 OK" {
		t.Fatalf("second call after the BYE: %q", got)
	}
	if n := srv.metrics()["switchboard_fraud_calls"]; n < 1 {
		t.Errorf("switchboard_fraud_calls = %v", n)
	}
}

// TestFraudCLI: `switchboard fraud` on the store of the configuration: a
// bad value is refused naming the field, bad usage exits 2 with the usage.
func TestFraudCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	os.WriteFile(cfg, []byte("storage:\n  dir: "+filepath.Join(dir, "data")+"\n"), 0o644)
	if code, out, errs := runCLI(t, "", "fraud", "add", "--prefix", "0900", "--cpm-critical", "10", "-c", cfg); code != 0 || out != "added fraud rule 1\n" {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "", "fraud", "add", "--prefix", "09a", "-c", cfg); code != 1 || !strings.Contains(errs, `fraud rule: prefix: "09a"`) {
		t.Errorf("bad prefix: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "", "fraud", "add", "--cpm-critical", "ten", "-c", cfg); code != 2 ||
		!strings.Contains(errs, "cpm-critical") || !strings.Contains(errs, "usage: switchboard fraud add [--profile N]") {
		t.Errorf("bad flag: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "", "fraud", "del", "7", "-c", cfg); code != 1 || !strings.Contains(errs, "fraud rule 7 does not exist") {
		t.Errorf("del 7: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "", "fraud", "list", "-c", cfg); code != 0 || !strings.Contains(out, "-/10") {
		t.Errorf("list: %d %q", code, out)
	}
}
