package mgmt

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// apiServer starts a server with the test token, a command that changes
// state ("flush", counting its runs) and a read-only one ("list").
func apiServer(t *testing.T, cfg Config) (*Server, *atomic.Int64) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	s := startServerConfig(t, cfg)
	var flushed atomic.Int64
	s.Register("flush", Command{Help: "changes state", Run: func(context.Context, json.RawMessage) (any, error) {
		flushed.Add(1)
		return "flushed", nil
	}})
	s.Register("list", Command{Help: "reads", ReadOnly: true, Run: func(_ context.Context, args json.RawMessage) (any, error) {
		return string(args), nil
	}})
	return s, &flushed
}

// errorOf returns the "error" member of a JSON answer, or fails: every
// refusal must say why in JSON.
func errorOf(t *testing.T, body string) string {
	t.Helper()
	var out struct{ Error string }
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Error == "" {
		t.Fatalf("refusal is not a JSON error: %q", body)
	}
	return out.Error
}

// TestBrowserRequestsRefused replays what a web page open in a browser on
// the server's host can send to the API: none may run a command.
func TestBrowserRequestsRefused(t *testing.T) {
	s, flushed := apiServer(t, Config{})
	base := "http://" + s.Addr()
	auth := "Bearer " + testToken
	evil := "http://evil.example"
	for _, c := range []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
		why                      string
	}{
		{"img tag", "GET", "/api/v1/flush", "", []string{"Accept", "image/avif,image/webp,*/*", "Referer", evil + "/", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"}, 403, "Sec-Fetch-Site: cross-site"},
		{"img tag, same site", "GET", "/api/v1/flush", "", []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Dest", "image"}, 403, "Sec-Fetch-Site: same-site"},
		{"img tag, older browser", "GET", "/api/v1/flush", "", []string{"Accept", "image/*", "Referer", evil + "/"}, 401, "token required"},
		{"form text/plain", "POST", "/api/v1/flush", `{"x":"=1"}`, []string{"Content-Type", "text/plain", "Origin", evil}, 403, `origin "http://evil.example"`},
		{"form text/plain, no Origin", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "text/plain"}, 401, "token required"},
		{"fetch JSON cross-origin", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Origin", evil, "Authorization", auth}, 403, "origin"},
		{"null origin", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Origin", "null", "Authorization", auth}, 403, "origin"},
		{"origin on another port", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Origin", "http://127.0.0.1:1", "Authorization", auth}, 403, "origin"},
		{"https origin of the listener", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Origin", "https://" + s.Addr(), "Authorization", auth}, 403, "origin"},
		{"two origins", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Origin", base, "Origin", evil, "Authorization", auth}, 403, "more than one Origin"},
		{"DNS rebinding", "POST", "/api/v1/flush", `{}`, []string{"Host", "evil.example:" + port(s), "Origin", "http://evil.example:" + port(s), "Content-Type", "application/json", "Authorization", auth}, 403, `Host "evil.example:`},
		{"rebinding, list", "GET", "/api/v1", "", []string{"Host", "evil.example:" + port(s), "Authorization", auth}, 403, "mgmt.allowed_hosts"},
		{"preflight", "OPTIONS", "/api/v1/flush", "", []string{"Origin", evil, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type"}, 403, "origin"},
		// With the token too, a command that changes state needs POST and JSON.
		{"GET with token", "GET", "/api/v1/flush", "", []string{"Authorization", auth}, 405, "POST with Content-Type: application/json"},
		{"text/plain with token", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "text/plain", "Authorization", auth}, 415, "got text/plain"},
		{"urlencoded with token", "POST", "/api/v1/flush", `a=b`, []string{"Content-Type", "application/x-www-form-urlencoded", "Authorization", auth}, 415, "application/x-www-form-urlencoded"},
		{"multipart with token", "POST", "/api/v1/flush", "--x--\r\n", []string{"Content-Type", "multipart/form-data; boundary=x", "Authorization", auth}, 415, "multipart/form-data"},
		{"no content type with token", "POST", "/api/v1/flush", ``, []string{"Authorization", auth}, 415, "got none"},
		{"PUT with token", "PUT", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Authorization", auth}, 405, "method PUT"},
		// The token itself.
		{"wrong token", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Authorization", "Bearer " + strings.Repeat("x", len(testToken))}, 401, "wrong token"},
		{"token prefix", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Authorization", "Bearer " + testToken[:len(testToken)-1]}, 401, "wrong token"},
		{"token longer", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Authorization", "Bearer " + testToken + "x"}, 401, "wrong token"},
		{"basic scheme", "POST", "/api/v1/flush", `{}`, []string{"Content-Type", "application/json", "Authorization", "Basic " + testToken}, 401, "token required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(c.hdr); i += 2 {
				if c.hdr[i] == "Host" {
					req.Host = c.hdr[i+1]
					continue
				}
				req.Header.Add(c.hdr[i], c.hdr[i+1])
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
			if resp.StatusCode != c.code {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, c.code)
			}
			if msg := errorOf(t, string(b)); !strings.Contains(msg, c.why) {
				t.Fatalf("error %q does not say %q", msg, c.why)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatal("CORS permission given")
			}
			if c.code == 405 && resp.Header.Get("Allow") != "POST" {
				t.Fatalf("405 with Allow %q", resp.Header.Get("Allow"))
			}
			if c.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	if n := flushed.Load(); n != 0 {
		t.Fatalf("the command ran %d times", n)
	}
	code, body := get(t, base+"/metrics")
	for _, reason := range []string{"host", "origin", "cross_site", "token"} {
		if code != 200 || !strings.Contains(body, `switchboard_mgmt_refused_total{reason="`+reason+`"} `) || strings.Contains(body, `switchboard_mgmt_refused_total{reason="`+reason+`"} 0`) {
			t.Fatalf("refusals for %s not counted:\n%s", reason, body)
		}
	}

	// What curl, ctl and the listener's own origin send is accepted.
	for _, hdr := range [][]string{
		{"Content-Type", "application/json", "Authorization", auth},
		{"Content-Type", "application/json; charset=utf-8", "Authorization", "bearer " + testToken},
		{"Content-Type", "application/json", "Authorization", auth, "Origin", base},
		{"Content-Type", "application/json", "Authorization", auth, "Host", "localhost:" + port(s), "Origin", "http://localhost:" + port(s)},
		{"Content-Type", "application/json", "Authorization", auth, "Sec-Fetch-Site", "same-origin", "Origin", base},
		{"Content-Type", "application/json", "Authorization", auth, "Sec-Fetch-Site", "none"},
	} {
		if code, body := do(t, "POST", base+"/api/v1/flush", "", hdr...); code != 200 {
			t.Fatalf("%v: %d %s", hdr, code, body)
		}
	}
	if n := flushed.Load(); n != 6 {
		t.Fatalf("the command ran %d times, want 6", n)
	}
}

func port(s *Server) string {
	_, p, _ := strings.Cut(s.Addr(), ":")
	return p
}

// TestReadOnlyCommands: a read-only command runs on GET and on POST with
// JSON, with the token; GET takes no arguments.
func TestReadOnlyCommands(t *testing.T) {
	s, _ := apiServer(t, Config{})
	u := "http://" + s.Addr() + "/api/v1/list"
	auth := "Bearer " + testToken
	if code, body := do(t, "GET", u, ""); code != 401 {
		t.Fatalf("GET without token: %d %s", code, body)
	}
	if code, body := do(t, "GET", u, "", "Authorization", auth); code != 200 || !strings.Contains(body, `"result": ""`) {
		t.Fatalf("GET: %d %s", code, body)
	}
	if code, body := do(t, "POST", u, `{"a":1}`, "Authorization", auth, "Content-Type", "application/json"); code != 200 || !strings.Contains(body, `{\"a\":1}`) {
		t.Fatalf("POST: %d %s", code, body)
	}
	if code, body := do(t, "POST", u, `{"a":1}`, "Authorization", auth, "Content-Type", "text/plain"); code != 415 {
		t.Fatalf("POST text/plain: %d %s", code, body)
	}
	if code, body := do(t, "GET", u, `{"a":1}`, "Authorization", auth); code != 400 || !strings.Contains(errorOf(t, body), "GET takes no arguments") {
		t.Fatalf("GET with a body: %d %s", code, body)
	}
	code, body := do(t, "DELETE", u, "", "Authorization", auth)
	if code != 405 || !strings.Contains(errorOf(t, body), "use GET, POST") {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, body := do(t, "POST", "http://"+s.Addr()+"/api/v1", "", "Authorization", auth, "Content-Type", "application/json"); code != 405 {
		t.Fatalf("POST to the list: %d %s", code, body)
	}
}

// TestOpenEndpoints: scrapers and load balancers need no token, whatever
// Host and Origin they send.
func TestOpenEndpoints(t *testing.T) {
	s, _ := apiServer(t, Config{})
	s.SetReady(true)
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		code, _ := get(t, "http://"+s.Addr()+p, "Host", "prometheus.internal:9999", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
		if code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
	}
}

// TestNoTokenRefusesEverything: a server without a token fails closed.
func TestNoTokenRefusesEverything(t *testing.T) {
	s := New(Config{Listen: "127.0.0.1:0"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer "}, {"Authorization", "Bearer"}} {
		code, body := get(t, "http://"+s.Addr()+"/api/v1/info", hdr...)
		if code != 401 || !strings.Contains(errorOf(t, body), "no token configured") {
			t.Fatalf("%v: %d %s", hdr, code, body)
		}
	}
}

// TestAllowedHosts: names listed for a reverse proxy or a DNS name are
// accepted in Host and Origin (http or https); others still are not.
func TestAllowedHosts(t *testing.T) {
	s, flushed := apiServer(t, Config{AllowedHosts: []string{"SB.example.net", "proxy.example.net:8443"}})
	u := "http://" + s.Addr() + "/api/v1/flush"
	hdr := func(more ...string) []string {
		return append([]string{"Content-Type", "application/json", "Authorization", "Bearer " + testToken}, more...)
	}
	for _, c := range []struct {
		hdr  []string
		code int
	}{
		{hdr("Host", "sb.example.net"), 200},
		{hdr("Host", "sb.example.net:9999", "Origin", "https://sb.example.net"), 200},
		{hdr("Host", "sb.example.net.", "Origin", "http://SB.example.net:8080"), 200},
		{hdr("Host", "proxy.example.net:8443", "Origin", "https://proxy.example.net:8443"), 200},
		{hdr("Origin", "https://proxy.example.net:8443"), 200}, // the proxy keeps the upstream Host
		{hdr("Host", "proxy.example.net:8444"), 403},
		{hdr("Host", "proxy.example.net"), 403},
		{hdr("Host", "sb.example.net", "Origin", "https://evil.example"), 403},
		{hdr("Host", "sb.example.net", "Origin", "https://proxy.example.net"), 403},
		{hdr("Host", "evil.sb.example.net"), 403},
	} {
		if code, body := do(t, "POST", u, "", c.hdr...); code != c.code {
			t.Fatalf("%v: %d %s, want %d", c.hdr, code, body, c.code)
		}
	}
	if n := flushed.Load(); n != 5 {
		t.Fatalf("ran %d times, want 5", n)
	}
}

// TestUnspecifiedListener: on 0.0.0.0 the API answers to any IP address
// of the machine with its port, but the Origin must still be the address
// the request was sent to. Served on loopback through the handler.
func TestUnspecifiedListener(t *testing.T) {
	s := New(Config{Listen: "0.0.0.0:8080", Token: testToken})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	u := ts.URL + "/api/v1/info"
	hdr := func(more ...string) []string {
		return append([]string{"Content-Type", "application/json", "Authorization", "Bearer " + testToken}, more...)
	}
	for _, c := range []struct {
		hdr  []string
		code int
	}{
		{hdr("Host", "192.0.2.7:8080"), 200},
		{hdr("Host", "[2001:db8::7]:8080"), 200},
		{hdr("Host", "192.0.2.7:8080", "Origin", "http://192.0.2.7:8080"), 200},
		{hdr("Host", "localhost:8080"), 200},
		{hdr("Host", "192.0.2.7:8081"), 403},
		{hdr("Host", "evil.example:8080"), 403},
		// A page served by another machine's port 8080 is another origin.
		{hdr("Host", "192.0.2.7:8080", "Origin", "http://203.0.113.9:8080"), 403},
	} {
		if code, body := do(t, "POST", u, "", c.hdr...); code != c.code {
			t.Fatalf("%v: %d %s, want %d", c.hdr, code, body, c.code)
		}
	}
}

// TestIPv6LoopbackListener: [::1] answers to its address and localhost.
func TestIPv6LoopbackListener(t *testing.T) {
	s := New(Config{Listen: "[::1]:8080", Token: testToken})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for host, want := range map[string]int{"[::1]:8080": 200, "localhost:8080": 200, "[::1]:8081": 403, "127.0.0.1:8080": 403} {
		code, body := do(t, "GET", ts.URL+"/api/v1/info", "", "Host", host, "Authorization", "Bearer "+testToken)
		if code != want {
			t.Fatalf("Host %s: %d %s, want %d", host, code, body, want)
		}
	}
}
