package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const testToken = "test-token-0123456789"

func startServer(t *testing.T, token string) *Server {
	t.Helper()
	return startServerConfig(t, Config{Listen: "127.0.0.1:0", Token: token})
}

func startServerConfig(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Version = "test-1"
	s := New(cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	return do(t, "GET", url, "", hdr...)
}

// do sends one request with the header pairs hdr ("Host" sets the Host
// line) and returns the status and body.
func do(t *testing.T, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body, req.ContentLength = nil, 0
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
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsAndHealth(t *testing.T) {
	s := startServer(t, "")
	c := s.Metrics().NewCounter(`switchboard_test_requests_total{method="INVITE"}`)
	c.Add(3)
	code, body := get(t, "http://"+s.Addr()+"/metrics")
	if code != 200 || !strings.Contains(body, `switchboard_test_requests_total{method="INVITE"} 3`) {
		t.Fatalf("metrics %d:\n%s", code, body)
	}
	if !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Fatalf("runtime/process metrics missing:\n%s", body)
	}
	if code, _ := get(t, "http://"+s.Addr()+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get(t, "http://"+s.Addr()+"/readyz"); code != 503 {
		t.Fatalf("readyz before ready: %d", code)
	}
	s.SetReady(true)
	if code, body := get(t, "http://"+s.Addr()+"/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("readyz when ready: %d %q", code, body)
	}
	// Degraded parts are listed; the node stays ready.
	s.SetDegraded("storage", "database unavailable: connection refused")
	s.SetDegraded("cache", "cold")
	if code, body := get(t, "http://"+s.Addr()+"/readyz"); code != 200 ||
		body != "ready\ndegraded: cache: cold\ndegraded: storage: database unavailable: connection refused\n" {
		t.Fatalf("readyz degraded: %d %q", code, body)
	}
	s.SetDegraded("storage", "")
	s.SetDegraded("cache", "")
	if _, body := get(t, "http://"+s.Addr()+"/readyz"); body != "ready\n" {
		t.Fatalf("readyz after recovery: %q", body)
	}
}

func TestCommandsThroughClient(t *testing.T) {
	s := startServer(t, testToken)
	s.Metrics().NewCounter("switchboard_x_total").Add(7)
	s.Register("echo", Command{Help: "returns its argument", Run: func(_ context.Context, args json.RawMessage) (any, error) {
		var a struct {
			Word string `json:"word"`
		}
		if err := DecodeArgs(args, &a); err != nil {
			return nil, err
		}
		if a.Word == "" {
			return nil, &ArgError{Msg: "word is required"}
		}
		if a.Word == "ghost" {
			return nil, errors.Join(ErrNotFound, errors.New("no ghost here"))
		}
		return a.Word, nil
	}})
	cl := &Client{Addr: s.Addr(), Token: testToken}
	ctx := context.Background()

	res, err := cl.Call(ctx, "echo", map[string]string{"word": "hi"})
	if err != nil || string(res) != `"hi"` {
		t.Fatalf("echo: %s %v", res, err)
	}
	if _, err := cl.Call(ctx, "echo", map[string]string{}); err == nil || !strings.Contains(err.Error(), "word is required") {
		t.Fatalf("arg error: %v", err)
	}
	if _, err := cl.Call(ctx, "echo", map[string]string{"nope": "x"}); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("unknown field: %v", err)
	}
	if _, err := cl.Call(ctx, "nosuch", nil); err == nil || !strings.Contains(err.Error(), `unknown command "nosuch"`) || !strings.Contains(err.Error(), "echo") {
		t.Fatalf("unknown command: %v", err)
	}
	res, err = cl.Call(ctx, "stats", nil)
	if err != nil || !strings.Contains(string(res), `"switchboard_x_total": 7`) {
		t.Fatalf("stats: %s %v", res, err)
	}
	res, err = cl.Call(ctx, "info", nil)
	if err != nil || !strings.Contains(string(res), `"version": "test-1"`) {
		t.Fatalf("info: %s %v", res, err)
	}
	res, err = cl.Call(ctx, "help", nil)
	if err != nil || !strings.Contains(string(res), "returns its argument") {
		t.Fatalf("help: %s %v", res, err)
	}

	bad := &Client{Addr: s.Addr(), Token: "wrong"}
	var ae *APIError
	if _, err := bad.Call(ctx, "info", nil); !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(err.Error(), "wrong token") {
		t.Fatalf("wrong token accepted: %v", err)
	}
	// Scrapers need no token.
	if code, _ := get(t, "http://"+s.Addr()+"/metrics"); code != 200 {
		t.Fatalf("metrics behind token: %d", code)
	}
	code, body := get(t, "http://"+s.Addr()+"/api/v1/info")
	if code != 401 {
		t.Fatalf("no token: %d %s", code, body)
	}
}

func TestBadJSONBody(t *testing.T) {
	s := startServer(t, testToken)
	code, body := do(t, "POST", "http://"+s.Addr()+"/api/v1/info", "{not json", "Content-Type", "application/json", "Authorization", "Bearer "+testToken)
	if code != 400 || !strings.Contains(body, "not valid JSON") {
		t.Fatalf("bad JSON: %d %s", code, body)
	}
}

// TestStatsFilters: stats by group (OpenSIPS get_statistics registrar:)
// and by a part of the name.
func TestStatsFilters(t *testing.T) {
	s := startServer(t, testToken)
	s.Metrics().NewCounter("switchboard_registrar_saved_total").Add(3)
	s.Metrics().NewCounter("switchboard_registrar_dropped_total").Add(1)
	s.Metrics().NewCounter("switchboard_pike_dropped_total").Add(2)
	cl := &Client{Addr: s.Addr(), Token: testToken}
	call := func(args any) map[string]float64 {
		t.Helper()
		res, err := cl.Call(context.Background(), "stats", args)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]float64
		json.Unmarshal(res, &m)
		return m
	}
	if m := call(map[string]string{"group": "registrar"}); len(m) != 2 || m["switchboard_registrar_saved_total"] != 3 {
		t.Fatalf("group: %v", m)
	}
	if m := call(map[string]string{"match": "dropped"}); len(m) != 2 || m["switchboard_pike_dropped_total"] != 2 {
		t.Fatalf("match: %v", m)
	}
	if m := call(map[string]string{"group": "pike", "match": "dropped"}); len(m) != 1 {
		t.Fatalf("both: %v", m)
	}
	if m := call(nil); len(m) != 7 { // and the four of switchboard_mgmt_refused_total
		t.Fatalf("all: %v", m)
	}
}

// TestStream: a registered stream is served behind the token, on GET only.
func TestStream(t *testing.T) {
	s := New(Config{Listen: "127.0.0.1:0", Token: testToken})
	s.Stream("ticks", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "tick\n") }))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	base := "http://" + s.Addr() + "/api/v1/stream/"
	if code, body := get(t, base+"ticks", "Authorization", "Bearer "+testToken); code != 200 || body != "tick\n" {
		t.Fatalf("stream: %d %q", code, body)
	}
	if code, _ := get(t, base+"ticks"); code != 401 {
		t.Fatalf("stream without token: %d", code)
	}
	if code, _ := do(t, "POST", base+"ticks", "{}", "Content-Type", "application/json", "Authorization", "Bearer "+testToken); code != 405 {
		t.Fatalf("POST to a stream: %d", code)
	}
	if code, _ := get(t, base+"nosuch", "Authorization", "Bearer "+testToken); code != 404 {
		t.Fatalf("unknown stream: %d", code)
	}
}

// TestStreamEndsAtClose: an open stream does not hold Close until its
// deadline.
func TestStreamEndsAtClose(t *testing.T) {
	s := New(Config{Listen: "127.0.0.1:0", Token: testToken})
	started := make(chan struct{})
	s.Stream("wait", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/api/v1/stream/wait", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s.Close(ctx)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s with a stream open", d)
	}
}
