package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EDialogTimeoutEndsCall: with dialog.default_timeout 2s, a call
// the sipp caller would hold for 10 s is ended by the proxy 2 s after the
// answer with a BYE to each sipp end (each answers 200: both scenarios
// pass), and counted as ended by timeout.
func TestE2EDialogTimeoutEndsCall(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\ndialog:\n  default_timeout: 2s\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_proxy_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "1",
		"127.0.0.1:"+strconv.Itoa(uas))
	took := time.Since(start)
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d (no BYE from the proxy within 10 s?):\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE?):\n%s", code, callee.out.String())
	}
	if took < 2*time.Second || took > 5*time.Second {
		t.Fatalf("call ended after %v, want about 2 s", took)
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="timeout"}`, 1)
	waitMetric(t, srv, "switchboard_dialog_byes_sent_total", 2)
	m := srv.metrics()
	if m["switchboard_dialog_active"] != 0 || m["switchboard_dialog_bye_failures_total"] != 0 {
		t.Fatalf("active %v, BYE failures %v", m["switchboard_dialog_active"], m["switchboard_dialog_bye_failures_total"])
	}
}

// TestE2EDialogProfileLimit: a limit of 2 concurrent calls per caller
// (dialog.profiles). Two sipp calls of "caller" are up (dialog.list shows
// them, answered, and dialog.profile counts 2); a third INVITE of the
// same caller gets 486 from the proxy; once the two have ended, the next
// one goes through to the callee, is listed, and dialog.end ends it with
// a BYE (the sipp callee answers it).
func TestE2EDialogProfileLimit(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\ndialog:\n  profiles:\n    - {name: caller, with_value: true, value: from_user, limit: 2}\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "3")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "3000", "-m", "2", "-l", "2", "-r", "20",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 2)

	list := dialogList(t, srv, `{"user":"caller"}`)
	if len(list) != 2 || list[0]["state"] != "confirmed" || list[1]["state"] != "confirmed" {
		t.Fatalf("dialog.list: %v", list)
	}
	if got := profileSize(t, srv); got != 2 {
		t.Fatalf("dialog.profile caller: %d", got)
	}
	invite := func(n string) string {
		return "INVITE sip:callee@127.0.0.1:" + strconv.Itoa(uas) + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-lim" + n + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=lim" + n + "\r\nTo: <sip:callee@127.0.0.1>\r\n" +
			"Call-ID: lim" + n + "@e2e\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:LOCALPORT>\r\nContent-Length: 0\r\n\r\n"
	}
	if r := sendUDP(t, srv.Port, invite("3"), 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 486 ") {
		t.Fatalf("third concurrent call of caller: %q, want 486", firstLineOf(r))
	}
	if res := <-done; res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
	waitMetric(t, srv, "switchboard_dialog_active", 0)
	if r := sendUDP(t, srv.Port, invite("4"), 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 200 ") {
		t.Fatalf("call after the others ended: %q, want 200 from the callee", firstLineOf(r))
	}
	list = dialogList(t, srv, `{"user":"callee"}`)
	if len(list) != 1 || list[0]["call_id"] != "lim4@e2e" || list[0]["state"] != "confirmed" {
		t.Fatalf("dialog.list: %v", list)
	}
	if code, body := srv.api("dialog.end", `{"id":"`+list[0]["id"].(string)+`"}`); code != 200 {
		t.Fatalf("dialog.end: %d %s", code, body)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (the BYE of dialog.end?):\n%s", code, callee.out.String())
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="ended"}`, 1)
	m := srv.metrics()
	if m[`switchboard_dialog_ended_total{reason="failed"}`] != 1 || m[`switchboard_dialog_ended_total{reason="bye"}`] != 2 ||
		m["switchboard_dialog_profile_limited_total"] != 1 || m[`switchboard_dialog_profile_size{profile="caller"}`] != 0 {
		t.Fatalf("metrics: failed %v bye %v limited %v size %v", m[`switchboard_dialog_ended_total{reason="failed"}`],
			m[`switchboard_dialog_ended_total{reason="bye"}`], m["switchboard_dialog_profile_limited_total"],
			m[`switchboard_dialog_profile_size{profile="caller"}`])
	}
}

func firstLineOf(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

func dialogList(t *testing.T, srv *testServer, args string) []map[string]any {
	t.Helper()
	code, body := srv.api("dialog.list", args)
	if code != 200 {
		t.Fatalf("dialog.list: %d %s", code, body)
	}
	var r struct {
		Result struct {
			Dialogs []map[string]any `json:"dialogs"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("dialog.list: %v: %s", err, body)
	}
	return r.Result.Dialogs
}

func profileSize(t *testing.T, srv *testServer) int {
	t.Helper()
	code, body := srv.api("dialog.profile", `{"name":"caller","values":true}`)
	if code != 200 {
		t.Fatalf("dialog.profile: %d %s", code, body)
	}
	var r struct {
		Result struct {
			Profiles []struct {
				Size   int `json:"size"`
				Values []struct {
					Value string `json:"value"`
					Size  int    `json:"size"`
				} `json:"values"`
			} `json:"profiles"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Result.Profiles) != 1 {
		t.Fatalf("dialog.profile: %v: %s", err, body)
	}
	p := r.Result.Profiles[0]
	if p.Size > 0 && (len(p.Values) != 1 || p.Values[0].Value != "caller" || p.Values[0].Size != p.Size) {
		t.Fatalf("dialog.profile values: %s", body)
	}
	return p.Size
}

// TestE2EDialogSurvivesRestart: a sipp call is up through the calls route
// set when the server gets SIGTERM; the drain leaves it up (written to
// the store), the server starts again on the same storage.dir, and
// dialog.list shows the call, answered, with its tags. The sipp caller's
// BYE, sent on the Route of the first run, ends the dialog (reason bye)
// and reaches the callee: both scenarios pass; the call's record has the
// answer of the first run and the end of the second.
func TestE2EDialogSurvivesRestart(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "7000", "-m", "1",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 1)
	before := dialogList(t, srv, `{}`)
	if len(before) != 1 {
		t.Fatalf("dialog.list before the restart: %v", before)
	}
	restarted := time.Now()
	srv.restart()
	t.Logf("restart took %v", time.Since(restarted).Round(time.Millisecond))
	after := dialogList(t, srv, `{}`)
	if len(after) != 1 || after[0]["id"] != before[0]["id"] || after[0]["call_id"] != before[0]["call_id"] ||
		after[0]["state"] != "confirmed" || after[0]["to_tag"] != before[0]["to_tag"] || after[0]["answer"] != before[0]["answer"] {
		t.Fatalf("dialog.list after the restart:\n%v\nbefore:\n%v", after, before)
	}
	m := srv.metrics()
	if m["switchboard_dialog_restored_total"] != 1 || m["switchboard_dialog_confirmed"] != 1 {
		t.Fatalf("restored %v, confirmed %v", m["switchboard_dialog_restored_total"], m["switchboard_dialog_confirmed"])
	}
	if res := <-done; res.Code != 0 {
		t.Fatalf("sipp caller exit %d (its BYE after the restart?):\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE?):\n%s", code, callee.out.String())
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="bye"}`, 1)
	waitMetric(t, srv, "switchboard_dialog_active", 0)
	if l := dialogList(t, srv, `{}`); len(l) != 0 {
		t.Fatalf("dialog.list after the BYE: %v", l)
	}
	// The call's record (modules/acc) is whole: the start and answer of
	// the first run, the end in the second.
	answer, _ := time.Parse(time.RFC3339Nano, before[0]["answer"].(string))
	var cdr map[string]any
	for deadline := time.Now().Add(5 * time.Second); cdr == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l := accListArgs(t, srv, `{"call_id":"`+before[0]["call_id"].(string)+`"}`); len(l) == 1 {
			cdr = l[0]
		}
	}
	if cdr == nil || int64(cdr["answer_ms"].(float64)) != answer.UnixMilli() || cdr["sip_code"].(float64) != 200 ||
		cdr["end_reason"] != "bye" || cdr["ended_by"] != "caller" || int64(cdr["end_ms"].(float64)) < restarted.UnixMilli() {
		t.Fatalf("the call's record after the restart: %v (answered %v, restarted %v)", cdr, answer, restarted)
	}
}

// TestE2EDialogMisaddressedByeReachesCallee: a sipp call through the
// calls route set whose caller sends its BYE with the call's Route but
// addressed to herself (her own Contact as Request-URI). The proxy sends
// it to the callee's Contact (FixRouteDialog): the sipp callee receives
// the BYE addressed to its Contact, which its scenario checks, and
// answers it; the caller gets that 200 (both scenarios pass); the dialog
// ends (reason bye, switchboard_dialog_route_fixed_total 1) and the
// call's record says the caller ended it. Answered 403 before, the
// caller's phone hung up while the callee's leg and the dialog stayed up
// until the dialog's timeout, billed that long.
func TestE2EDialogMisaddressedByeReachesCallee(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee_checks_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_misaddressed_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "500", "-m", "1",
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d (no 200 to its BYE?):\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE, or not to its Contact?):\n%s", code, callee.out.String())
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="bye"}`, 1)
	waitMetric(t, srv, "switchboard_dialog_active", 0)
	if m := srv.metrics(); m["switchboard_dialog_route_fixed_total"] != 1 || m["switchboard_dialog_misrouted_total"] != 1 {
		t.Fatalf("route_fixed_total %v, misrouted_total %v", m["switchboard_dialog_route_fixed_total"], m["switchboard_dialog_misrouted_total"])
	}
	var cdr map[string]any
	for deadline := time.Now().Add(5 * time.Second); cdr == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if l := accListArgs(t, srv, `{}`); len(l) == 1 {
			cdr = l[0]
		}
	}
	if cdr == nil || cdr["end_reason"] != "bye" || cdr["ended_by"] != "caller" || cdr["sip_code"].(float64) != 200 {
		t.Fatalf("the call's record: %v", cdr)
	}
}

// TestE2EDialogTimeoutAfterRestart: with dialog.default_timeout 6s, a
// call the sipp caller would hold until the proxy ends it; the server
// restarts a second after the answer, and 6 s after the answer the
// restarted server sends the BYE to both sipp ends, which answer it.
func TestE2EDialogTimeoutAfterRestart(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\ndialog:\n  default_timeout: 6s\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_proxy_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "1",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 1)
	answered := time.Now()
	time.Sleep(time.Second)
	srv.restart()
	if l := dialogList(t, srv, `{}`); len(l) != 1 || l[0]["state"] != "confirmed" {
		t.Fatalf("dialog.list after the restart: %v", l)
	}
	res := <-done
	took := time.Since(answered)
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d (no BYE from the restarted proxy?):\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE?):\n%s", code, callee.out.String())
	}
	if took < 5500*time.Millisecond || took > 8*time.Second {
		t.Fatalf("call ended %v after the answer, want about 6 s", took)
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="timeout"}`, 1)
	waitMetric(t, srv, "switchboard_dialog_byes_sent_total", 2)
	if m := srv.metrics(); m["switchboard_dialog_bye_failures_total"] != 0 || m["switchboard_dialog_active"] != 0 {
		t.Fatalf("BYE failures %v, active %v", m["switchboard_dialog_bye_failures_total"], m["switchboard_dialog_active"])
	}
}

// TestE2EDialogDrainEndsCalls: with dialog.drain_timeout 2s (a node being
// retired), a sipp call is up when the server gets SIGTERM: 2 s later the
// proxy ends it with a BYE to each sipp end (both scenarios pass), the
// server exits 0, and a start on the same storage.dir restores nothing.
// Before the end, a new INVITE during the drain gets 503.
func TestE2EDialogDrainEndsCalls(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\ndialog:\n  drain_timeout: 2s\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_proxy_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "1",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 1)
	waitMetric(t, srv, "switchboard_dialog_store_writes_total", 1) // stored: its end must delete it
	sigterm := time.Now()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	invite := request("INVITE", "sip:callee@127.0.0.1:"+strconv.Itoa(uas), "To: <sip:callee@127.0.0.1>\r\nMax-Forwards: 70\r\n")
	if reply := sendUDP(t, srv.Port, invite, 2*time.Second); !strings.HasPrefix(reply, "SIP/2.0 503 ") {
		t.Errorf("new INVITE while draining: %q", statusLine(reply))
	}
	res := <-done
	ended := time.Since(sigterm)
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d (no BYE from the draining proxy?):\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE?):\n%s", code, callee.out.String())
	}
	if ended < 2*time.Second || ended > 5*time.Second {
		t.Fatalf("call ended %v after SIGTERM, want about 2 s (drain_timeout)", ended)
	}
	select {
	case <-srv.exited:
	case <-time.After(40 * time.Second):
		t.Fatal("server did not exit after the drain")
	}
	if srv.waitErr != nil || !strings.Contains(srv.Log.String(), "dialog: drain: calls ended by the proxy") {
		t.Fatalf("server exit %v; log:\n%s", srv.waitErr, srv.Log)
	}
	srv.start()
	if l := dialogList(t, srv, `{}`); len(l) != 0 {
		t.Fatalf("dialogs restored after a drain that ended them: %v", l)
	}
	if m := srv.metrics(); m["switchboard_dialog_restored_total"] != 0 {
		t.Fatalf("restored %v", m["switchboard_dialog_restored_total"])
	}
}

// TestE2EDialogPingEndsDeadCall: with dialog.ping_interval 1s, the proxy
// pings both ends of a sipp call; the sipp caller answers every OPTIONS,
// the sipp callee is killed once the call is up. The callee's OPTIONS goes
// unanswered (408 after 64·T1 = 6.4 s with the test's T1), and the proxy
// ends the call with a BYE, which the sipp caller answers: reason ping.
func TestE2EDialogPingEndsDeadCall(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: calls\ndialog:\n  ping_interval: 1s\n")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 40*time.Second, "-sf", "uac_call_pinged.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-m", "1",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 1)
	callee.cmd.Process.Kill()
	start := time.Now()
	res := <-done
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d (pings answered, then the proxy's BYE?):\n%s", res.Code, res.Output)
	}
	if took := time.Since(start); took < 6*time.Second || took > 15*time.Second {
		t.Fatalf("call ended %v after the callee died, want the first ping's timeout (about 7 to 9 s)", took)
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="ping"}`, 1)
	if m := srv.metrics(); m["switchboard_dialog_pings_sent_total"] < 3 || m["switchboard_dialog_active"] != 0 {
		t.Fatalf("pings sent %v, active %v", m["switchboard_dialog_pings_sent_total"], m["switchboard_dialog_active"])
	}
}
