// Package mgmt serves the operator's HTTP endpoints: Prometheus /metrics,
// /healthz and /readyz, and a small JSON management API (the equivalent of
// OpenSIPS MI) whose commands the other packages register.
//
// The API is plain HTTP+JSON so that curl works as well as `switchboard ctl`:
//
//	GET  /api/v1                 list of commands with their help text
//	POST /api/v1/<command>       run a command; the body is its JSON arguments
//	                             (GET works for commands that take none)
//
// Every answer is a JSON object: {"result": ...} on success,
// {"error": "..."} otherwise, with a status code that says whose fault it was.
package mgmt

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config configures the management listener.
type Config struct {
	// Listen is host:port; use port 0 in tests and read Addr().
	Listen string
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// /api/v1. /metrics and the health endpoints stay open for scrapers and
	// load balancers.
	Token   string
	Version string
	Logger  *slog.Logger
}

// Command is one management API command.
type Command struct {
	// Help is one line shown by GET /api/v1 and `switchboard ctl help`.
	Help string
	// Run executes the command. args is the raw JSON body (nil when empty).
	// Return an *ArgError for bad arguments (400), ErrNotFound wrapped for a
	// missing object (404); anything else is a 500.
	Run func(ctx context.Context, args json.RawMessage) (any, error)
}

// ArgError reports bad command arguments; the API answers 400 with it.
type ArgError struct{ Msg string }

func (e *ArgError) Error() string { return e.Msg }

// ErrNotFound marks a command result that names a missing object (404).
var ErrNotFound = errors.New("not found")

// Server is the management HTTP server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	set     *metrics.Set
	started time.Time
	ready   atomic.Bool

	mu   sync.RWMutex
	cmds map[string]Command

	ln  net.Listener
	srv *http.Server
}

// New creates a server with the built-in commands "info" and "stats".
// Register more before or after Start.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, set: metrics.NewSet(), started: time.Now(), cmds: map[string]Command{}}
	s.Register("info", Command{Help: "server version, uptime and process facts", Run: s.info})
	s.Register("stats", Command{Help: "every metric as name: value", Run: s.stats})
	return s
}

// Metrics is the set every package registers its metrics in; /metrics
// writes it together with Go runtime and process metrics.
func (s *Server) Metrics() *metrics.Set { return s.set }

// SetReady switches /readyz between 200 and 503 (draining, starting).
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Register adds or replaces a command.
func (s *Server) Register(name string, c Command) {
	s.mu.Lock()
	s.cmds[name] = c
	s.mu.Unlock()
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("mgmt: listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("management listener stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address, valid after Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the listener, letting requests in flight finish until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Handler is the HTTP handler, usable without Start (tests, embedding).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /api/v1", s.authorized(s.serveList))
	mux.HandleFunc("GET /api/v1/{cmd}", s.authorized(s.serveCommand))
	mux.HandleFunc("POST /api/v1/{cmd}", s.authorized(s.serveCommand))
	return mux
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

func (s *Server) authorized(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token (mgmt.token)"})
			return
		}
		h(w, r)
	}
}

func (s *Server) serveList(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	list := make(map[string]string, len(s.cmds))
	for name, c := range s.cmds {
		list[name] = c.Help
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"result": list})
}

const maxArgsBytes = 1 << 20

func (s *Server) serveCommand(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("cmd")
	s.mu.RLock()
	c, ok := s.cmds[name]
	known := s.commandNamesLocked()
	s.mu.RUnlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown command %q; known: %s", name, strings.Join(known, ", "))})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxArgsBytes+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading arguments: " + err.Error()})
		return
	}
	if len(body) > maxArgsBytes {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "arguments larger than 1 MiB"})
		return
	}
	var args json.RawMessage
	if len(strings.TrimSpace(string(body))) > 0 {
		if !json.Valid(body) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "arguments are not valid JSON"})
			return
		}
		args = body
	}
	res, err := c.Run(r.Context(), args)
	if err != nil {
		var ae *ArgError
		switch {
		case errors.As(err, &ae):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case errors.Is(err, ErrNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		default:
			s.log.Error("management command failed", "cmd", name, "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		}
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": res})
}

func (s *Server) commandNamesLocked() []string {
	names := make([]string, 0, len(s.cmds))
	for n := range s.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// DecodeArgs unmarshals command arguments into v, rejecting unknown fields,
// and turns failures into an *ArgError.
func DecodeArgs(args json.RawMessage, v any) error {
	if len(args) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(args)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &ArgError{Msg: "bad arguments: " + err.Error()}
	}
	return nil
}

func (s *Server) info(context.Context, json.RawMessage) (any, error) {
	host, _ := os.Hostname()
	return map[string]any{
		"version":        s.cfg.Version,
		"go":             runtime.Version(),
		"pid":            os.Getpid(),
		"host":           host,
		"started":        s.started.UTC().Format(time.RFC3339),
		"uptime_seconds": int64(time.Since(s.started).Seconds()),
		"ready":          s.ready.Load(),
	}, nil
}

// stats returns the metric set as a flat map, parsed back from the
// Prometheus text so it shows exactly what a scraper sees.
func (s *Server) stats(context.Context, json.RawMessage) (any, error) {
	var b strings.Builder
	s.set.WritePrometheus(&b)
	out := map[string]float64{}
	for _, line := range strings.Split(b.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}
