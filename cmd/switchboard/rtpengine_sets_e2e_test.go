package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/store"
)

// waitList waits until rtpengine.list answers with every string of want.
func waitList(t *testing.T, srv *testServer, want ...string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := srv.api("rtpengine.list", "")
		ok := code == 200
		for _, w := range want {
			ok = ok && strings.Contains(string(body), w)
		}
		if ok {
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("rtpengine.list: %d %s, want %q", code, body, want)
		}
	}
}

// TestE2ERtpengineLateOffer: a server started without rtpengine
// instances; the real rtpengine is added with `switchboard rtpengine add`
// while it runs and is in use within the table's poll interval (no
// restart). A call with a late offer between two sipp phones: the INVITE
// has no SDP, the callee's 200 carries the offer and the caller's ACK the
// answer; the caller receives rtpengine's address and a port of its range
// in the 200 and the callee in the ACK (the scenarios check both), RTP
// flows through rtpengine both ways, a re-INVITE without SDP does the
// same, and after the BYE rtpengine has no session.
func TestE2ERtpengineLateOffer(t *testing.T) {
	t.Parallel()
	rtpe := startRtpengine(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\nrtpengine:\n  poll_interval: 100ms\n  ping_interval: 1s\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	sock := "udp:127.0.0.1:" + strconv.Itoa(rtpe.ng)
	out, err := execSwitchboard(t, "rtpengine", "add", sock, "--weight", "2", "--description", "local rtpengine", "-c", srv.Config)
	if err != nil || !strings.Contains(out, "added id 1: set 0 "+sock+" weight 2") {
		t.Fatalf("rtpengine add: %v\n%s", err, out)
	}
	waitList(t, srv, `"url": "`+sock+`"`, `"source": "table"`, `"local": "127.0.0.1"`, `"state": "up"`)

	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	callee := startSippPeer(t, "-sf", "uas_late_offer.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1",
		"-mp", strconv.Itoa(freeSIPPort(t)), "-rtp_echo")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_late_offer.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-mp", strconv.Itoa(freeSIPPort(t)), "-m", "1",
			"-key", "domain", "localhost", "-key", "user", "alice", "-key", "callee", "bob", "-au", "alice", "-ap", "alice-pw",
			"127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	rtpe.waitMedia(t, srv, 4*time.Second)
	if r := <-done; r.Code != 0 {
		t.Fatalf("caller: exit %d\n%s\n%s", r.Code, r.Output, srv.Log)
	}
	if code := callee.wait(10 * time.Second); code != 0 {
		t.Fatalf("callee: exit %d\n%s", code, callee.out.String())
	}
	rtpe.waitNoCalls(t, "after the BYE")
	m := srv.metrics()
	// Two offers (the 200s of the INVITE and of the re-INVITE), two
	// answers (the ACKs), one delete.
	for k, want := range map[string]float64{`switchboard_rtpengine_commands_total{command="offer"}`: 2,
		`switchboard_rtpengine_commands_total{command="answer"}`: 2, `switchboard_rtpengine_commands_total{command="delete"}`: 1} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if m[`switchboard_rtpengine_errors_total{reason="error"}`] != 0 || m[`switchboard_rtpengine_errors_total{reason="timeout"}`] != 0 {
		t.Errorf("errors: %v", m)
	}
}

// execSwitchboard runs the binary with args and returns its output.
func execSwitchboard(t *testing.T, args ...string) (string, error) {
	t.Helper()
	code, out, errs := runCLI(t, "", args...)
	if code != 0 {
		return out + errs, &exitError{code, os.ErrInvalid}
	}
	return out + errs, nil
}

// TestE2ERtpengineTableAllowList: rtpengine instances are held to
// outbound.allow (127.0.0.0/8 and ::1 in the test servers). `switchboard
// rtpengine add` refuses a socket outside it, naming the address; a row
// written behind the CLI's back (straight into the store) is skipped by
// the running server with its id and reason logged, listed nowhere and
// counted in switchboard_rtpengine_skipped_rows, while the allowed rows
// load; a configured instance outside it stops check-config and the start
// with the key named. rtpengine.reload loads at once; `rtpengine remove`
// takes a row out, and a set's instance is enabled and disabled by set.
func TestE2ERtpengineTableAllowList(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "rtpengine:\n  poll_interval: 1m\n")
	out, err := execSwitchboard(t, "rtpengine", "add", "udp:192.0.2.10:2223", "-c", srv.Config)
	if err == nil || !strings.Contains(out, "rtpengine udp:192.0.2.10:2223: 192.0.2.10 is outside outbound.allow") {
		t.Fatalf("forbidden add: %v\n%s", err, out)
	}
	if out, err := execSwitchboard(t, "rtpengine", "add", "udp:rtp.example.net:2223", "-c", srv.Config); err == nil || !strings.Contains(out, "socket") {
		t.Fatalf("add of a name: %v\n%s", err, out)
	}
	// Rows written straight into the database: one allowed, one not.
	st, err := store.Open(srv.Dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bad, err := st.AddRTPEngine(ctx, store.RTPEngine{SetID: 1, Socket: "udp:198.51.100.20:2223", Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddRTPEngine(ctx, store.RTPEngine{SetID: 1, Socket: "udp:127.0.0.1:9", Weight: 1}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if code, body := srv.api("rtpengine.reload", ""); code != 200 || !strings.Contains(string(body), `"url": "udp:127.0.0.1:9"`) ||
		strings.Contains(string(body), "198.51.100.20") {
		t.Fatalf("rtpengine.reload: %d %s", code, body)
	}
	if !srv.logged("table row skipped", "row="+strconv.FormatInt(bad.ID, 10), "198.51.100.20 is outside outbound.allow") {
		t.Fatalf("skipped row not logged:\n%s", srv.Log)
	}
	if m := srv.metrics(); m["switchboard_rtpengine_skipped_rows"] != 1 {
		t.Fatalf("skipped rows %v", m["switchboard_rtpengine_skipped_rows"])
	}
	if code, body := srv.api("rtpengine.disable", `{"instance":"udp:127.0.0.1:9","set":0}`); code != 404 {
		t.Fatalf("disable in a set without it: %d %s", code, body)
	}
	if code, body := srv.api("rtpengine.disable", `{"instance":"udp:127.0.0.1:9","set":1}`); code != 200 || !strings.Contains(string(body), `"state": "disabled"`) {
		t.Fatalf("disable: %d %s", code, body)
	}
	if out, err := execSwitchboard(t, "rtpengine", "list", "--setid", "1", "-c", srv.Config); err != nil ||
		!strings.Contains(out, "udp:127.0.0.1:9") || !strings.Contains(out, "udp:198.51.100.20:2223") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := execSwitchboard(t, "rtpengine", "remove", "udp:127.0.0.1:9", "--setid", "1", "-c", srv.Config); err != nil || !strings.Contains(out, "removed id") {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	if code, body := srv.api("rtpengine.reload", ""); code != 200 || strings.Contains(string(body), "127.0.0.1:9") {
		t.Fatalf("after remove: %d %s", code, body)
	}

	// A configured instance outside outbound.allow.
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfg, []byte("outbound:\n  allow: [127.0.0.0/8]\nrtpengine:\n  instances: [\"udp:127.0.0.1:2223\", \"2 == udp:203.0.113.5:2223\"]\n"), 0o644)
	code, _, errs := runCLI(t, "", "check-config", "-c", cfg)
	if code == 0 || !strings.Contains(errs, "bad.yaml:4: rtpengine.instances[1]: 203.0.113.5:2223 is outside outbound.allow") {
		t.Fatalf("check-config: %d %s", code, errs)
	}
}
