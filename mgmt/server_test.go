package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func startServer(t *testing.T, token string) *Server {
	t.Helper()
	s := New(Config{Listen: "127.0.0.1:0", Token: token, Version: "test-1"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
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
	if code, _ := get(t, "http://"+s.Addr()+"/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
}

func TestCommandsThroughClient(t *testing.T) {
	s := startServer(t, "sekret")
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
	cl := &Client{Addr: s.Addr(), Token: "sekret"}
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
	if _, err := bad.Call(ctx, "info", nil); err == nil || !strings.Contains(err.Error(), "bearer token") {
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
	s := startServer(t, "")
	resp, err := http.Post("http://"+s.Addr()+"/api/v1/info", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad JSON: %d", resp.StatusCode)
	}
}
