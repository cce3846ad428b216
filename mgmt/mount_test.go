package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestMount: a mounted handler (the web panel) needs no token, but gets
// the listener's Host check, and a request that may change state needs
// the listener's own Origin.
func TestMount(t *testing.T) {
	s := New(Config{Listen: "127.0.0.1:0", Token: testToken, AllowedHosts: []string{"sb.example.net"}})
	var hits atomic.Int64
	s.Mount("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("panel"))
	}))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + s.Addr()
	for _, c := range []struct {
		name, method string
		hdr          []string
		code         int
	}{
		{"page", "GET", nil, 200},
		{"page from a link on another site", "GET", []string{"Origin", "http://evil.example"}, 200}, // GET changes nothing; SameSite=Strict keeps the session cookie off
		{"rebound host", "GET", []string{"Host", "rebound.example"}, 403},
		{"form, own origin", "POST", []string{"Origin", base}, 200},
		{"form through the allowed proxy", "POST", []string{"Host", "sb.example.net", "Origin", "https://sb.example.net"}, 200},
		{"form from another origin", "POST", []string{"Origin", "http://evil.example"}, 403},
		{"form from a null origin", "POST", []string{"Origin", "null"}, 403},
		{"form without origin", "POST", nil, 403},
	} {
		before := hits.Load()
		code, body := do(t, c.method, base+"/ui/x", "a=b", c.hdr...)
		if code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.code)
		}
		if ran := hits.Load() > before; ran != (c.code == 200) {
			t.Errorf("%s: handler ran: %v", c.name, ran)
		}
	}
	// The API keeps its token.
	if code, _ := do(t, "GET", base+"/api/v1/info", ""); code != http.StatusUnauthorized {
		t.Fatalf("API without a token next to a mount: %d", code)
	}
}

// TestCall: a command run in process gets the API's checks and errors.
func TestCall(t *testing.T) {
	s := New(Config{Listen: "127.0.0.1:0"})
	s.Register("echo", Command{Run: func(_ context.Context, raw json.RawMessage) (any, error) {
		var a struct{ X int }
		if err := DecodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return a.X, nil
	}})
	if ro, ok := s.Lookup("echo"); ro || !ok {
		t.Fatalf("Lookup(echo): %v %v", ro, ok)
	}
	if ro, ok := s.Lookup("info"); !ro || !ok {
		t.Fatalf("Lookup(info): %v %v", ro, ok)
	}
	if v, err := s.Call(context.Background(), "echo", json.RawMessage(`{"X":3}`)); err != nil || v != 3 {
		t.Fatalf("echo: %v %v", v, err)
	}
	var ae *ArgError
	if _, err := s.Call(context.Background(), "echo", json.RawMessage(`{"Y":3}`)); !errors.As(err, &ae) {
		t.Fatalf("unknown field: %v, want an ArgError", err)
	}
	if _, err := s.Call(context.Background(), "echo", json.RawMessage(`{`)); !errors.As(err, &ae) {
		t.Fatalf("bad JSON: %v, want an ArgError", err)
	}
	if _, err := s.Call(context.Background(), "nope", nil); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown command: %v", err)
	}
}
