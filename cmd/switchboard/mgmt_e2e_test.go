package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EManagementAPIRefusesBrowserRequests starts the binary on a fresh
// data directory and sends what a web page open in a browser on the host
// can send to the management API (an <img>, a text/plain form, a fetch
// from another origin, a DNS-rebound name): every one is refused and
// changes nothing, while the open endpoints stay open and
// `switchboard ctl` works with the token the server created.
func TestE2EManagementAPIRefusesBrowserRequests(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "")

	// The token file: created at start, private.
	path := filepath.Join(srv.Dir, "mgmt.token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no token file after the first start: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	token := srv.token()

	// Something to flush: a registered phone.
	addUser(t, srv, "ann@localhost", "ann-pw")
	ua := &digestUA{user: "ann"}
	ch := pickChallenge(t, sendUDP(t, srv.Port, ua.register(nil, 0, ""), 3*time.Second), "MD5")
	if r := sendUDP(t, srv.Port, ua.register(ch, 1, "ann-pw"), 3*time.Second); statusLine(r) != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", r)
	}
	if l := bindings(t, srv, "ann@localhost"); len(l) != 1 {
		t.Fatalf("bindings before: %+v", l)
	}

	base := "http://" + srv.Mgmt
	_, port, _ := strings.Cut(srv.Mgmt, ":")
	evil := "http://evil.example"
	addMallory := `{"user":"mallory@localhost","password":"mallory-pw"}`
	for _, c := range []struct {
		name, method, cmd, body string
		hdr                     []string
		code                    int
	}{
		// <img src="http://127.0.0.1:8080/api/v1/registrations.flush">
		{"img", "GET", "registrations.flush", "", []string{"Accept", "image/avif,image/webp,*/*", "Referer", evil + "/", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"}, 403},
		{"img, no Sec-Fetch", "GET", "registrations.flush", "", []string{"Accept", "image/*", "Referer", evil + "/"}, 401},
		// <form enctype="text/plain" method="post" action=".../users.add">
		{"text/plain form", "POST", "users.add", addMallory, []string{"Content-Type", "text/plain", "Origin", evil, "Sec-Fetch-Site", "cross-site"}, 403},
		{"text/plain, no Origin", "POST", "users.add", addMallory, []string{"Content-Type", "text/plain"}, 401},
		{"urlencoded form", "POST", "registrations.flush", "x=1", []string{"Content-Type", "application/x-www-form-urlencoded", "Origin", evil}, 403},
		// A page on a name re-bound to 127.0.0.1 is same-origin with it.
		{"DNS rebinding", "POST", "users.add", addMallory, []string{"Host", "evil.example:" + port, "Origin", "http://evil.example:" + port, "Content-Type", "application/json"}, 403},
		{"DNS rebinding, list", "GET", "", "", []string{"Host", "evil.example:" + port}, 403},
		// The same with the token: the method, type, Origin and Host rules
		// hold on their own.
		{"GET with token", "GET", "registrations.flush", "", []string{"Authorization", "Bearer " + token}, 405},
		{"text/plain with token", "POST", "users.add", addMallory, []string{"Content-Type", "text/plain", "Authorization", "Bearer " + token}, 415},
		{"foreign Origin with token", "POST", "users.add", addMallory, []string{"Content-Type", "application/json", "Origin", evil, "Authorization", "Bearer " + token}, 403},
		{"foreign Host with token", "POST", "registrations.flush", "", []string{"Host", "evil.example:" + port, "Content-Type", "application/json", "Authorization", "Bearer " + token}, 403},
		{"wrong token", "POST", "registrations.flush", "", []string{"Content-Type", "application/json", "Authorization", "Bearer " + strings.Repeat("0", len(token))}, 401},
	} {
		u := base + "/api/v1/" + c.cmd
		if c.cmd == "" {
			u = base + "/api/v1"
		}
		code, body := httpDo(t, c.method, u, c.body, c.hdr...)
		var out struct{ Error string }
		if code != c.code || json.Unmarshal([]byte(body), &out) != nil || out.Error == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", c.name, code, body, c.code)
		}
	}
	if l := bindings(t, srv, "ann@localhost"); len(l) != 1 {
		t.Fatalf("registrations flushed by a refused request: %+v", l)
	}
	if users := string(mgmtCall(t, srv, "users.list", "")); strings.Contains(users, "mallory") {
		t.Fatalf("user added by a refused request: %s", users)
	}
	m := srv.metrics()
	for _, reason := range []string{"host", "origin", "cross_site", "token"} {
		if m[`switchboard_mgmt_refused_total{reason="`+reason+`"}`] == 0 {
			t.Errorf("refusals for %s not counted", reason)
		}
	}

	// Scrapers and load balancers need no token, whatever they send.
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, body := httpDo(t, "GET", base+p, "", "Host", "prometheus.internal:9090", "Origin", evil); code != 200 {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}

	// switchboard ctl finds the token in the data directory by itself.
	ctl := func(env []string, args ...string) (int, string, string) {
		cmd := exec.Command(switchboardBinary(t), append([]string{"ctl", "-o", "json"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	if code, out, errs := ctl(nil, "-c", srv.Config, "info"); code != 0 || !strings.Contains(out, `"version"`) {
		t.Fatalf("ctl info: %d %s %s", code, out, errs)
	}
	if code, out, errs := ctl(nil, "-c", srv.Config, "registrations.list", "aor=ann@localhost"); code != 0 || !strings.Contains(out, "ann@localhost") {
		t.Fatalf("ctl registrations.list: %d %s %s", code, out, errs)
	}
	// A token given in the environment, with the address: no configuration needed.
	if code, out, errs := ctl([]string{"SWITCHBOARD_MGMT_TOKEN=" + token}, "-a", srv.Mgmt, "users.list"); code != 0 || !strings.Contains(out, "ann@localhost") {
		t.Fatalf("ctl with %s: %d %s %s", tokenEnv, code, out, errs)
	}
	code, _, errs := ctl(nil, "-c", srv.Config, "--token", strings.Repeat("1", 64), "registrations.flush")
	if code != 1 || !strings.Contains(errs, "401: wrong token") || !strings.Contains(errs, "the server refused the token from --token") {
		t.Fatalf("ctl with a wrong token: %d %s", code, errs)
	}
	if l := bindings(t, srv, "ann@localhost"); len(l) != 1 {
		t.Fatalf("flushed with a wrong token: %+v", l)
	}

	code, out, errs := ctl(nil, "-c", srv.Config, "registrations.flush")
	if code != 0 || !strings.Contains(out, `"removed": 1`) {
		t.Fatalf("ctl registrations.flush: %d %s %s", code, out, errs)
	}
	if l := bindings(t, srv, "ann@localhost"); len(l) != 0 {
		t.Fatalf("bindings after ctl registrations.flush: %+v", l)
	}

	// The token survives a restart: the file is read, not replaced.
	srv.restart()
	if got := srv.token(); got != token {
		t.Fatalf("token changed over a restart: %q -> %q", token, got)
	}
	if code, out, errs := ctl(nil, "-c", srv.Config, "info"); code != 0 {
		t.Fatalf("ctl info after restart: %d %s %s", code, out, errs)
	}
}

// httpDo sends one request with header pairs ("Host" sets the Host line)
// and returns the status and the body.
func httpDo(t *testing.T, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
