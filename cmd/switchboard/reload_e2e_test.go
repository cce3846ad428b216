package main

import (
	"bytes"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"switchboard/store"
)

// reloadLine sends SIGHUP and returns the "reloaded" line it logs (the
// first after what the log held before).
func (s *testServer) reloadLine(t *testing.T) string {
	t.Helper()
	from := len(s.Log.String())
	s.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l := s.Log.String()[from:]
		if i := strings.Index(l, "msg=reloaded"); i >= 0 {
			if j := strings.IndexByte(l[i:], '\n'); j >= 0 {
				return l[i : i+j]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", s.Log)
		}
	}
}

// editConfig applies the replacements (old, new, ...) to the server's
// configuration file and appends more.
func (s *testServer) editConfig(t *testing.T, more string, replace ...string) {
	t.Helper()
	b, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(cfg, replace[i]) {
			t.Fatalf("%q not in the configuration:\n%s", replace[i], cfg)
		}
		cfg = strings.Replace(cfg, replace[i], replace[i+1], 1)
	}
	if err := os.WriteFile(s.Config, []byte(cfg+more), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2EReloadOutboundAndTLS: a SIGHUP that narrows outbound.allow takes
// effect at once (a request relayed to 127.0.0.2 before is refused after,
// and 127.0.0.2 receives nothing), a changed tls section is applied, and
// a changed outbound.resolver is logged as needing a restart. Before, the
// line said applied="" need_restart="" and the old values stayed in force.
func TestE2EReloadOutboundAndTLS(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: relay\n")
	caller, callee := newUDPPeer(t), newUDPPeerOn(t, "127.0.0.2")
	ruri := "sip:callee@127.0.0.2:" + strconv.Itoa(callee.Port())
	options := func() string {
		return request("OPTIONS", ruri, "To: <"+ruri+">\r\nMax-Forwards: 70\r\n")
	}
	caller.send(srv.Port, options())
	if got := callee.waitFor("OPTIONS ", 3*time.Second); got == "" {
		t.Fatal("the OPTIONS was not relayed to 127.0.0.2 before the reload")
	}

	srv.editConfig(t, "tls:\n  verify_server: false\n",
		`allow: [127.0.0.0/8, "::1"]`, `allow: [127.0.0.1/32]`,
		`resolver: "127.0.0.1:9"`, `resolver: "127.0.0.1:10"`)
	line := srv.reloadLine(t)
	for _, want := range []string{`applied=tls,outbound.allow `, `need_restart=outbound.resolver`} {
		if !strings.Contains(line, want) {
			t.Errorf("reload line %q lacks %s", line, want)
		}
	}
	second := options()
	id := "Call-ID: " + strings.SplitN(second[strings.Index(second, "Call-ID: ")+9:], "\r\n", 2)[0] + "\r\n"
	caller.send(srv.Port, second)
	var reply string
	for deadline := time.Now().Add(3 * time.Second); reply == "" && time.Now().Before(deadline); {
		for _, m := range caller.take(20 * time.Millisecond) {
			if strings.Contains(m, id) && strings.HasPrefix(m, "SIP/2.0 ") && !strings.HasPrefix(m, "SIP/2.0 1") {
				reply = m
			}
		}
	}
	if !strings.HasPrefix(reply, "SIP/2.0 5") { // the relay route set's 500 Relay Failed
		t.Errorf("after narrowing outbound.allow to 127.0.0.1/32, a request for 127.0.0.2 got %q, want it refused", statusLine(reply))
	}
	for _, m := range callee.take(200 * time.Millisecond) {
		if strings.Contains(m, id) {
			t.Fatalf("127.0.0.2 still received a request after outbound.allow left it out:\n%s", m)
		}
	}
}

// TestE2EReloadTLSCertificatePath: a SIGHUP that points tls.cert and
// tls.key at other files has the TLS listener serve the new certificate
// from the next handshake. Before, the line said "tls certificates"
// applied while the transport read the paths it started with again.
func TestE2EReloadTLSCertificatePath(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	certFile, keyFile, cert, _ := testCert(t, t.TempDir())
	newCert, newKey, renewed, _ := testCert(t, t.TempDir())
	tlsPort := freeSIPPort(t)
	srv := startServerWith(t, "tls:\n  cert: "+strconv.Quote(certFile)+"\n  key: "+strconv.Quote(keyFile)+"\n",
		serverOptions{Listen: "  - {proto: tls, address: \"127.0.0.1:" + strconv.Itoa(tlsPort) + "\"}\n"})
	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tlsPort), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), cert.Certificate[0]) {
		t.Fatal("not the configured certificate")
	}
	srv.editConfig(t, "", strconv.Quote(certFile), strconv.Quote(newCert), strconv.Quote(keyFile), strconv.Quote(newKey))
	if line := srv.reloadLine(t); !strings.Contains(line, `applied=tls need_restart=`) {
		t.Errorf("reload line %q: tls not applied", line)
	}
	if !bytes.Equal(served(), renewed.Certificate[0]) {
		t.Fatalf("after the reload the listener still serves the certificate of the old path\n%s", srv.Log)
	}
	// Unchanged, the files are read again: a certificate renewed in place.
	if line := srv.reloadLine(t); !strings.Contains(line, `applied="tls certificates"`) {
		t.Errorf("reload line %q: certificates not read again", line)
	}
}

// slowStart starts the binary on a fresh SQLite data directory while the
// test holds the database's write lock (as a CLI command would for a
// moment), so that the start waits for it; release lets it go on.
func slowStart(t *testing.T) (srv *testServer, release func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	st, err := store.Open(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, store.DefaultFileName)+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	srv = &testServer{t: t, Port: freeSIPPort(t), Mgmt: freeTCPAddr(t), Dir: data, Config: filepath.Join(dir, "switchboard.yaml"), Log: &syncBuffer{}}
	cfg := fmt.Sprintf("listen:\n  - {proto: udp, address: \"127.0.0.1:%d\"}\nmgmt:\n  listen: %q\nstorage:\n  dir: %q\noutbound:\n  allow: [127.0.0.0/8]\n",
		srv.Port, srv.Mgmt, data)
	if err := os.WriteFile(srv.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.cmd = exec.Command(switchboardBinary(t), "run", "-c", srv.Config, "--drain-quiet", "200ms")
	srv.cmd.Stdout, srv.cmd.Stderr = srv.Log, srv.Log
	if err := srv.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srv.exited = make(chan struct{})
	go func() { srv.waitErr = srv.cmd.Wait(); close(srv.exited) }()
	t.Cleanup(srv.kill)
	time.Sleep(700 * time.Millisecond) // the server waits for the lock
	if strings.Contains(srv.Log.String(), "switchboard started") {
		t.Fatalf("started while the lock was held; the test proves nothing:\n%s", srv.Log)
	}
	return srv, func() { tx.Rollback() }
}

// TestE2ESIGHUPDuringStart: a SIGHUP that comes while the server starts
// (here it waits for a SQLite write lock another process holds; in
// production a migration or a large table) is logged, and applied once
// started; the server runs on. Before, the handlers were installed only
// once start had returned, and Go's default action killed the process
// silently.
func TestE2ESIGHUPDuringStart(t *testing.T) {
	t.Parallel()
	srv, release := slowStart(t)
	srv.cmd.Process.Signal(syscall.SIGHUP) // logrotate, systemctl reload
	time.Sleep(300 * time.Millisecond)
	release()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(srv.Log.String(), "msg=reloaded"); time.Sleep(20 * time.Millisecond) {
		select {
		case <-srv.exited:
			t.Fatalf("a SIGHUP during start ended the server (%v):\n%s", srv.waitErr, srv.Log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SIGHUP received while starting was not applied once started:\n%s", srv.Log)
		}
	}
	l := srv.Log.String()
	if i, j := strings.Index(l, "SIGHUP while starting"), strings.Index(l, "switchboard started"); i < 0 || j < i || strings.Index(l, "msg=reloaded") < j {
		t.Errorf("want the SIGHUP logged when it came, the reload after the start:\n%s", l)
	}
	resp, err := http.Get("http://" + srv.Mgmt + "/readyz")
	if err != nil {
		t.Fatalf("not serving: %v\n%s", err, srv.Log)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz %d", resp.StatusCode)
	}
}

// TestE2ESIGTERMDuringStart: a SIGTERM while the server starts is logged,
// and the server stops cleanly once started (the usual drain, "stopped",
// exit 0). Before, the process died at once without its cleanup.
func TestE2ESIGTERMDuringStart(t *testing.T) {
	t.Parallel()
	srv, release := slowStart(t)
	srv.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	select {
	case <-srv.exited:
		t.Fatalf("SIGTERM during start ended the server before its start was over (%v):\n%s", srv.waitErr, srv.Log)
	default:
	}
	release()
	select {
	case <-srv.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit after the start:\n%s", srv.Log)
	}
	if srv.waitErr != nil {
		t.Fatalf("exit: %v\n%s", srv.waitErr, srv.Log)
	}
	l := srv.Log.String()
	for _, want := range []string{"signal while starting", "switchboard started", "shutting down", "msg=stopped"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

// TestE2EReloadAllOrNothing: a reload whose file lowers a rate-limit
// pipe, raises log.level and lowers dialplan.max_rules below the two
// rules of the table in the store (a refusal) applies none of them: the
// reload command answers an error naming dialplan.max_rules, the log says
// nothing was applied, and the pipe and the level stay as they were.
// Before e7a71a4, the pipe and the level changed while the dialplan
// module kept its settings, and the command answered "reloaded".
//
// A key that takes effect only at the next start is no refusal, for a
// module as for the server's listen: the same file with dialog.persist
// turned off instead applies the pipe and the level, keeps persist, and
// lists dialog.persist in need_restart, in the "reloaded" line and the
// command's answer, again at the next reload of that file. Before, it
// refused the whole reload as max_rules does.
func TestE2EReloadAllOrNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "ratelimit:\n  pipes:\n    - {name: invite, limit: 100, interval: 60s, methods: [INVITE]}\n")
	pipeLimit := func() string {
		t.Helper()
		code, body := srv.api("ratelimit.list", `{"pipe":"invite"}`)
		if code != 200 {
			t.Fatalf("ratelimit.list: %d %s", code, body)
		}
		_, after, ok := strings.Cut(string(body), `"limit":`)
		if !ok {
			t.Fatalf("ratelimit.list shows no limit: %s", body)
		}
		n, _, _ := strings.Cut(after, ",")
		return strings.TrimSpace(n)
	}
	level := func() string {
		t.Helper()
		_, body := srv.api("log.level", "")
		return string(body)
	}
	before := level()
	for _, exp := range []string{"1", "2"} {
		if code, body := srv.api("dialplan.add", `{"dpid":1,"match_op":"prefix","match_exp":"`+exp+`","repl_exp":"x"}`); code != 200 {
			t.Fatalf("dialplan.add: %d %s", code, body)
		}
	}

	srv.editConfig(t, "dialplan:\n  max_rules: 1\n", "limit: 100", "limit: 1", "level: debug", "level: info")
	code, body := srv.api("reload", "")
	if code == 200 || !strings.Contains(string(body), "dialplan.max_rules") {
		t.Errorf("reload with dialplan.max_rules below the table answered %d %s; want an error naming dialplan.max_rules", code, body)
	}
	if !srv.logged("reload: configuration not applied", "dialplan.max_rules") {
		t.Errorf("no refusal naming dialplan.max_rules logged:\n%s", srv.Log)
	}
	if got := pipeLimit(); got != "100" {
		t.Errorf("after the refused reload the pipe's limit is %s, want the old 100", got)
	}
	if got := level(); got != before {
		t.Errorf("after the refused reload log.level shows %s, want the old %s", got, before)
	}

	srv.editConfig(t, "dialog:\n  persist: false\n", "dialplan:\n  max_rules: 1\n", "")
	code, body = srv.api("reload", "")
	var answer struct {
		Result struct {
			Applied     []string `json:"applied"`
			NeedRestart []string `json:"need_restart"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &answer); code != 200 || err != nil ||
		strings.Join(answer.Result.Applied, ",") != "log.level,ratelimit" || strings.Join(answer.Result.NeedRestart, ",") != "dialog.persist" {
		t.Errorf("reload with dialog.persist changed answered %d %s; want log.level and ratelimit applied, dialog.persist in need_restart", code, body)
	}
	if !srv.logged(`msg=reloaded applied=log.level,ratelimit need_restart=dialog.persist`) {
		t.Errorf("no reloaded line listing dialog.persist as needing a restart:\n%s", srv.Log)
	}
	if got := pipeLimit(); got != "1" {
		t.Errorf("after the reload the pipe's limit is %s, want 1", got)
	}
	if got := level(); got == before {
		t.Errorf("after the reload log.level still shows %s", got)
	}
	if line := srv.reloadLine(t); !strings.Contains(line, `applied="" need_restart=dialog.persist`) {
		t.Errorf("the same file reloaded again logged %q; want nothing applied, dialog.persist still needing a restart", line)
	}
}
