package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func txnScenario(t *testing.T, name string) string {
	p, err := filepath.Abs(filepath.Join("..", "..", "txn", "testdata", "sipp", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2ERelayedCallsWithRecordRoute: five calls from a sipp caller through
// the relay route set to a sipp callee. The callee checks the proxy's
// Record-Route on the INVITE and its Via on the in-dialog ACK and BYE; the
// caller sends ACK and BYE along the recorded route. /metrics counts them.
func TestE2ERelayedCallsWithRecordRoute(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: relay\n")
	before := srv.metrics()

	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_check_route.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "5")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "200", "-m", "5", "-r", "10",
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (its checks of Record-Route, Via and Route failed):\n%s", code, callee.out.String())
	}

	after := srv.metrics()
	delta := func(name string) float64 { return after[name] - before[name] }
	for method, want := range map[string]float64{"INVITE": 5, "ACK": 5, "BYE": 5} {
		if got := delta(`switchboard_requests_routed_total{method="` + method + `"}`); got != want {
			t.Errorf("routed %s: +%v, want +%v", method, got, want)
		}
	}
	for name, want := range map[string]float64{
		`switchboard_requests_relayed_total{method="INVITE"}`: 5,
		`switchboard_requests_relayed_total{method="BYE"}`:    5,
		`switchboard_replies_received_total{class="2xx"}`:     10, // 200 to INVITE and to BYE
		`switchboard_replies_received_total{class="1xx"}`:     5,  // 180 (the callee sends no 100)
	} {
		if got := delta(name); got != want {
			t.Errorf("%s: +%v, want +%v", name, got, want)
		}
	}
	// Each call: INVITE, ACK, BYE in; 100/180/200 and the BYE's 200 back
	// from the callee at least.
	if got := delta(`switchboard_sip_packets_received_total{proto="UDP"}`); got < 5*5 {
		t.Errorf("UDP packets received: +%v, want at least 25", got)
	}
	if got := delta(`switchboard_sip_packets_sent_total{proto="UDP"}`); got < 5*5 {
		t.Errorf("UDP packets sent: +%v, want at least 25", got)
	}
	if got := delta("switchboard_parse_errors_total"); got != 0 {
		t.Errorf("parse errors: +%v", got)
	}
}

// TestE2ECancelWhileRinging: the caller cancels a ringing call: 200 for the
// CANCEL and 487 for the INVITE, passed through the proxy.
func TestE2ECancelWhileRinging(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: relay\n")
	uas := freeSIPPort(t)
	startSipp(t, "-sf", txnScenario(t, "uas_ring.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "3")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", txnScenario(t, "uac_cancel.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas), "-key", "maxfwd", "70",
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "3", "-r", "10",
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
}

// TestE2EOptionsAnswered: a sipp probe's OPTIONS to the proxy itself gets
// 200 from the provider route set.
func TestE2EOptionsAnswered(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "")
	res := runSipp(t, 20*time.Second, "-sf", "options.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-m", "3", "127.0.0.1:"+strconv.Itoa(srv.Port))
	if res.Code != 0 {
		t.Fatalf("sipp exit %d:\n%s", res.Code, res.Output)
	}
	if got := srv.metrics()[`switchboard_requests_routed_total{method="OPTIONS"}`]; got != 3 {
		t.Fatalf("routed OPTIONS = %v, want 3", got)
	}
}

// request is a template for raw messages; LOCALPORT becomes the sender's port.
func request(method, ruri, extra string) string {
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"From: <sip:bob@example.org>;tag=f1\r\n" +
		"Call-ID: " + strconv.FormatInt(time.Now().UnixNano(), 36) + "@test\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

func statusLine(reply string) string {
	line, _, _ := strings.Cut(reply, "\r\n")
	return line
}

// TestE2EProviderSanity: the answers of the provider route set and the core
// to requests a provider sees every day, sent by a raw UDP peer.
func TestE2EProviderSanity(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "")
	before := srv.metrics()
	cases := []struct {
		name, msg, want string
	}{
		{"Max-Forwards 0", request("OPTIONS", "sip:alice@example.com", "To: <sip:alice@example.com>\r\nMax-Forwards: 0\r\n"), "SIP/2.0 483 "},
		{"malformed CSeq", strings.Replace(request("INVITE", "sip:alice@localhost", "To: <sip:alice@localhost>\r\nMax-Forwards: 70\r\n"), "CSeq: 1 INVITE", "CSeq: one INVITE", 1), "SIP/2.0 400 Bad Request - Malformed Header CSeq"},
		{"BYE without route", request("BYE", "sip:alice@127.0.0.1", "To: <sip:alice@localhost>;tag=t1\r\nMax-Forwards: 70\r\n"), "SIP/2.0 404 Not here"},
		{"relay to a foreign domain refused", request("INVITE", "sip:carol@example.net", "To: <sip:carol@example.net>\r\nMax-Forwards: 70\r\n"), "SIP/2.0 403 "},
		{"route preloaded to another proxy refused", request("INVITE", "sip:carol@example.net", "To: <sip:carol@example.net>\r\nRoute: <sip:127.0.0.1:1;lr>\r\nMax-Forwards: 70\r\n"), "SIP/2.0 403 Preload Route denied"},
		{"unsupported scheme", request("OPTIONS", "mailto:alice@example.com", "To: <sip:alice@example.com>\r\nMax-Forwards: 70\r\n"), "SIP/2.0 416 "},
		{"unknown Proxy-Require", request("OPTIONS", "sip:alice@example.com", "To: <sip:alice@example.com>\r\nProxy-Require: foo\r\nMax-Forwards: 70\r\n"), "SIP/2.0 420 "},
	}
	for _, c := range cases {
		reply := sendUDP(t, srv.Port, c.msg, 2*time.Second)
		if !strings.HasPrefix(reply, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, statusLine(reply), c.want)
		}
	}
	// A stray ACK is dropped: no answer, and the server goes on.
	ack := request("ACK", "sip:alice@127.0.0.1", "To: <sip:alice@localhost>;tag=t1\r\nMax-Forwards: 70\r\n")
	if reply := sendUDP(t, srv.Port, ack, 300*time.Millisecond); reply != "" {
		t.Errorf("stray ACK answered: %q", statusLine(reply))
	}
	after := srv.metrics()
	// 404, 403 and 403 come from the route set; 483, 400, 416, 420 from the core.
	if d := after[`switchboard_replies_local_total{class="4xx"}`] - before[`switchboard_replies_local_total{class="4xx"}`]; d != 3 {
		t.Errorf("4xx replies from the route set +%v, want +3", d)
	}
	if d := after["switchboard_parse_errors_total"] - before["switchboard_parse_errors_total"]; d != 1 {
		t.Errorf("parse errors +%v, want +1", d)
	}
	if d := after["switchboard_requests_received_total"] - before["switchboard_requests_received_total"]; d != float64(len(cases)) {
		t.Errorf("requests received +%v, want +%d (the malformed one counts as a parse error)", d, len(cases))
	}
}

// TestE2EBadConfig: configuration mistakes stop the start with the file,
// line and key, and exit code 2.
func TestE2EBadConfig(t *testing.T) {
	t.Parallel()
	bin := switchboardBinary(t)
	dir := t.TempDir()
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "listen:\n  - {proto: udp, address: 127.0.0.1:5999}\ntimers:\n  t1: 1s\n  tq: 2s\n", "bad.yaml:5: timers.tq: unknown key"},
		{"bad address", "listen:\n  - {proto: udp, address: nowhere:5060}\n", "bad.yaml:2: listen[0].address: not an IP address with a port"},
		{"unknown route set", "routes: nosuch\n", "no route set named \"nosuch\""},
	}
	for _, c := range cases {
		path := filepath.Join(dir, "bad.yaml")
		os.WriteFile(path, []byte(c.yaml+"storage:\n  dir: "+filepath.Join(dir, "data")+"\nmgmt:\n  listen: \"\"\n"), 0o644)
		for _, sub := range []string{"check-config", "run"} {
			out, err := exec.Command(bin, sub, "-c", path).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if c.name == "unknown route set" && sub == "check-config" {
				continue // route sets are looked up when the server starts
			}
			if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
				t.Errorf("%s (%s): exit %v, output %q; want exit 2 and %q", c.name, sub, err, out, c.want)
			}
		}
	}
}

// TestE2ESigtermLetsCallsFinish: calls up when SIGTERM arrives end
// normally (their BYE is still routed), a new call during the drain gets
// 503, and the server exits 0 once they are done.
func TestE2ESigtermLetsCallsFinish(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: relay\n")
	uas := freeSIPPort(t)
	startSipp(t, "-sf", "uas_check_route.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "3")
	time.Sleep(200 * time.Millisecond)

	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "1000", "-m", "3", "-r", "20",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	time.Sleep(800 * time.Millisecond) // the three calls are up
	srv.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)

	invite := request("INVITE", "sip:callee@127.0.0.1:"+strconv.Itoa(uas), "To: <sip:callee@127.0.0.1>\r\nMax-Forwards: 70\r\n")
	if reply := sendUDP(t, srv.Port, invite, 2*time.Second); !strings.HasPrefix(reply, "SIP/2.0 503 ") || !strings.Contains(reply, "Retry-After:") {
		t.Errorf("new INVITE while draining: %q", statusLine(reply))
	}
	res := <-done
	if res.Code != 0 {
		t.Fatalf("calls did not finish during the drain: sipp exit %d:\n%s", res.Code, res.Output)
	}
	select {
	case <-srv.exited:
	case <-time.After(40 * time.Second):
		t.Fatal("server did not exit after the drain")
	}
	if srv.waitErr != nil {
		t.Fatalf("server exit: %v", srv.waitErr)
	}
	if !strings.Contains(srv.Log.String(), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", srv.Log)
	}
}
