package main

import (
	"strconv"
	"testing"
	"time"
)

// TestE2ESessionTimers: the provider route set with sst on (RFC 4028).
// alice's INVITE asking for 60 s (Supported: timer) gets 422 with Min-SE:
// 90 after her credentials, and no dialog; her next call, without
// Session-Expires, reaches bob with the Session-Expires: 1800 and Min-SE:
// 90 the proxy added (bob's sipp checks both), bob's 2xx with
// Session-Expires: 1800 times the dialog (listed with about 1800 s and
// sst.grace left while the call is up), and her BYE ends it.
func TestE2ESessionTimers(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\nsst:\n  enabled: true\n  interval: 1800\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}

	if r := sippUA(t, srv, "uac_auth_call_422.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("INVITE with Session-Expires: 60: exit %d (no 422 with Min-SE: 90?)\n%s", r.Code, r.Output)
	}
	waitMetric(t, srv, "switchboard_sst_too_small_total", 1)
	if m := srv.metrics(); m["switchboard_dialog_active"] != 0 {
		t.Fatalf("a dialog for the refused INVITE: %v active", m["switchboard_dialog_active"])
	}

	bob := startSippPeer(t, "-sf", "uas_sst_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 20*time.Second, "-sf", "uac_auth_call.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-m", "1", "-d", "2000", "-key", "domain", "localhost", "-key", "user", "alice", "-au", "alice", "-ap", "alice-pw",
			"-key", "callee", "bob", "127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 1)
	list := dialogList(t, srv, `{"user":"alice"}`)
	if len(list) != 1 {
		t.Fatalf("dialog.list: %v", list)
	}
	// 1800 s and the 32 s of sst.grace from the 2xx, not the dialog's
	// default timeout.
	if left, _ := list[0]["remaining_s"].(float64); left < 1825 || left > 1832 {
		t.Fatalf("the call's dialog ends in %v s, want about 1832: %v", list[0]["remaining_s"], list[0])
	}
	if res := <-done; res.Code != 0 {
		t.Fatalf("alice's call: exit %d\n%s", res.Code, res.Output)
	}
	if code := bob.wait(5 * time.Second); code != 0 {
		t.Fatalf("bob's phone: exit %d (Session-Expires or Min-SE missing?)\n%s", code, bob.out.String())
	}
	waitMetric(t, srv, "switchboard_dialog_active", 0)
	m := srv.metrics()
	if m["switchboard_sst_inserted_total"] != 1 || m["switchboard_sst_sessions_total"] != 1 {
		t.Fatalf("inserted %v, sessions %v", m["switchboard_sst_inserted_total"], m["switchboard_sst_sessions_total"])
	}
}
