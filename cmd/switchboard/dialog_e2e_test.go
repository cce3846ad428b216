package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2EDialogTimeoutEndsCall: with dialog.default_timeout 2s, a call
// the sipp caller would hold for 10 s is ended by the proxy 2 s after the
// answer with a BYE to each sipp end (each answers 200: both scenarios
// pass), and counted as ended by timeout.
func TestE2EDialogTimeoutEndsCall(t *testing.T) {
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
