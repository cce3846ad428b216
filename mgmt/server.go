// Package mgmt serves the operator's HTTP endpoints: Prometheus /metrics,
// /healthz and /readyz, and a small JSON management API (the equivalent of
// OpenSIPS MI) whose commands the other packages register.
//
// The API is plain HTTP+JSON so that curl works as well as `switchboard ctl`:
//
//	GET  /api/v1                 list of commands with their help text
//	POST /api/v1/<command>       run a command; the body is its JSON arguments
//	                             (Content-Type: application/json)
//	GET  /api/v1/<command>       run a read-only command without arguments
//	GET  /api/v1/stream/<name>   a stream a package registered (Stream): the
//	                             events as Server-Sent Events
//
// Every answer is a JSON object: {"result": ...} on success,
// {"error": "..."} otherwise, with a status code that says whose fault it was.
//
// The API is a privileged interface that a web page in a browser on the
// same host can reach, so every API request must carry the bearer token,
// name this listener (or an allowed name) in Host and, when it has an
// Origin, come from that origin; a command that changes state runs only
// on a POST with a JSON body, which a page cannot send to another origin
// without the CORS permission this server never gives (see guard).
package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
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
	// Token is required as "Authorization: Bearer <token>" on /api/v1;
	// when empty, every API request is refused (LoadOrCreateToken makes
	// one). /metrics and the health endpoints stay open for scrapers and
	// load balancers.
	Token string
	// AllowedHosts are more names (or name:port) the API answers to in
	// Host and Origin, besides the listen address: the name of a reverse
	// proxy in front of it, or a DNS name of the host. A name without a
	// port matches any port.
	AllowedHosts []string
	Version      string
	Logger       *slog.Logger
}

// Command is one management API command.
type Command struct {
	// Help is one line shown by GET /api/v1 and `switchboard ctl help`.
	Help string
	// ReadOnly marks a command that changes nothing (a listing, counters):
	// it may also be run with GET. Every other command changes state and
	// runs only on POST with Content-Type: application/json, so that a
	// link, an image or a form on a web page cannot trigger it.
	ReadOnly bool
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

	mu      sync.RWMutex
	cmds    map[string]Command
	streams map[string]http.Handler
	// closing is closed by Close: the streams end at once instead of
	// holding the shutdown until its deadline.
	closing   chan struct{}
	closeOnce sync.Once
	// degraded names the parts that work on a fallback (the store
	// unreachable: cached data) and why; /readyz lists them.
	degraded map[string]string

	ln  net.Listener
	srv *http.Server
	// mounts are handlers served besides the API (the web panel), each
	// behind the Host and Origin checks but not the token.
	mounts []mount
}

type mount struct {
	prefix string
	h      http.Handler
}

// New creates a server with the built-in commands "info" and "stats".
// Register more before or after Start.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, set: metrics.NewSet(), started: time.Now(), cmds: map[string]Command{}, closing: make(chan struct{})}
	s.Register("info", Command{Help: "server version, uptime and process facts", ReadOnly: true, Run: s.info})
	s.Register("stats", Command{Help: `every metric as name: value; {"group":"registrar"} for switchboard_registrar_*, {"match":"dropped"} for names containing it (OpenSIPS get_statistics)`, ReadOnly: true, Run: s.stats})
	return s
}

// Metrics is the set every package registers its metrics in; /metrics
// writes it together with Go runtime and process metrics.
func (s *Server) Metrics() *metrics.Set { return s.set }

// SetReady switches /readyz between 200 and 503 (draining, starting).
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// SetDegraded records that part works on a fallback, for the reason given
// ("" when it is back to normal). /readyz stays 200 and lists each one as
// "degraded: part: reason": the node still serves (from memory), and a
// fault shared by every node, such as their common database, must not make
// a health check take all of them out of service.
func (s *Server) SetDegraded(part, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason == "" {
		delete(s.degraded, part)
		return
	}
	if s.degraded == nil {
		s.degraded = map[string]string{}
	}
	s.degraded[part] = reason
}

// degradedLines are the /readyz lines of the degraded parts, sorted.
func (s *Server) degradedLines() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.degraded))
	for part, reason := range s.degraded {
		out = append(out, "degraded: "+part+": "+reason+"\n")
	}
	sort.Strings(out)
	return out
}

// Register adds or replaces a command.
func (s *Server) Register(name string, c Command) {
	s.mu.Lock()
	s.cmds[name] = c
	s.mu.Unlock()
}

// Stream registers a long-lived read-only endpoint at
// /api/v1/stream/<name> (Server-Sent Events), behind the same checks as
// the commands: the token, Host and Origin. Only GET reaches h. The
// listener's write timeout does not apply: h clears it
// (http.ResponseController) and ends when the request's context does.
func (s *Server) Stream(name string, h http.Handler) {
	s.mu.Lock()
	if s.streams == nil {
		s.streams = map[string]http.Handler{}
	}
	s.streams[name] = h
	s.mu.Unlock()
}

// Lookup says whether a command exists and whether it is read-only.
func (s *Server) Lookup(name string) (readOnly, ok bool) {
	s.mu.RLock()
	c, ok := s.cmds[name]
	s.mu.RUnlock()
	return c.ReadOnly, ok
}

// Call runs a command in this process, as POST /api/v1/<name> with args
// as the body would: the same lookup, the same argument checks, the same
// errors (*ArgError, ErrNotFound wrapped). The web panel calls the
// commands this way, so it and `switchboard ctl` cannot drift apart.
func (s *Server) Call(ctx context.Context, name string, args json.RawMessage) (any, error) {
	s.mu.RLock()
	c, ok := s.cmds[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown command %q: %w", name, ErrNotFound)
	}
	if len(args) > maxArgsBytes {
		return nil, &ArgError{Msg: "arguments larger than 1 MiB"}
	}
	if len(args) > 0 && !json.Valid(args) {
		return nil, &ArgError{Msg: "arguments are not valid JSON"}
	}
	res, err := c.Run(ctx, args)
	if err != nil {
		var ae *ArgError
		if !errors.As(err, &ae) && !errors.Is(err, ErrNotFound) {
			s.log.Error("management command failed", "cmd", name, "err", err)
		}
	}
	return res, err
}

// Mount serves h for the paths under prefix (e.g. "/ui/") on the
// listener, behind the Host check of the API (no DNS rebinding) and, for
// any method but GET and HEAD, its Origin check; h authenticates by
// itself. Mount before Start.
func (s *Server) Mount(prefix string, h http.Handler) {
	s.mounts = append(s.mounts, mount{prefix, h})
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("mgmt: listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	if s.cfg.Token == "" {
		s.log.Warn("management API has no token: every API request is refused")
	}
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
	s.closeOnce.Do(func() { close(s.closing) })
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Handler is the HTTP handler, usable without Start (tests, embedding).
// The Host and Origin checks accept the bound address after Start, the
// configured Listen before.
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
		for _, l := range s.degradedLines() {
			io.WriteString(w, l)
		}
	})
	listen := s.cfg.Listen
	if s.ln != nil {
		listen = s.ln.Addr().String()
	}
	g := newGuard(listen, s.cfg.AllowedHosts, s.cfg.Token, s.set)
	// Every method reaches the API handlers, so that a wrong one gets a
	// JSON 405 like every other refusal.
	mux.Handle("/api/v1", g.wrap(http.HandlerFunc(s.serveList)))
	mux.Handle("/api/v1/{cmd}", g.wrap(http.HandlerFunc(s.serveCommand)))
	mux.Handle("/api/v1/stream/{name}", g.wrap(http.HandlerFunc(s.serveStream)))
	for _, m := range s.mounts {
		mux.Handle(m.prefix, g.wrapMount(m.h))
	}
	return mux
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "the list of commands is read with GET")
		return
	}
	s.mu.RLock()
	list := make(map[string]string, len(s.cmds))
	for name, c := range s.cmds {
		list[name] = c.Help
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"result": list})
}

const maxArgsBytes = 1 << 20

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.RLock()
	h, ok := s.streams[name]
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown stream %q", name))
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, "a stream is read with GET")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	h.ServeHTTP(w, r.WithContext(ctx))
}

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
	if code, msg := checkMethod(r, name, c.ReadOnly); code != 0 {
		if code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", allowed(c.ReadOnly))
		}
		writeError(w, code, msg)
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

// checkMethod applies the method and content-type rules of a command: a
// read-only command runs on GET (no arguments) or POST, any other only on
// POST; a POST carries Content-Type: application/json, which no HTML form
// and no cross-origin request without a CORS preflight can send. It
// returns 0 when the request may run the command.
func checkMethod(r *http.Request, name string, readOnly bool) (int, string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !readOnly {
			return http.StatusMethodNotAllowed, fmt.Sprintf("%s changes state: send it as POST with Content-Type: application/json", name)
		}
		if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
			return http.StatusBadRequest, fmt.Sprintf("GET takes no arguments: POST them to %s as JSON", name)
		}
		return 0, ""
	case http.MethodPost:
		ct := r.Header.Get("Content-Type")
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			if ct == "" {
				ct = "none"
			}
			return http.StatusUnsupportedMediaType, fmt.Sprintf("arguments must be sent with Content-Type: application/json (got %s)", ct)
		}
		return 0, ""
	}
	return http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: use %s", r.Method, allowed(readOnly))
}

func allowed(readOnly bool) string {
	if readOnly {
		return "GET, POST"
	}
	return "POST"
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	// No browser may read an answer as anything but JSON, so "<token>" in
	// a message can stay readable instead of \u003ctoken\u003e.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
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
func (s *Server) stats(_ context.Context, raw json.RawMessage) (any, error) {
	var args struct {
		Group string `json:"group"` // switchboard_<group>_*
		Match string `json:"match"` // names containing it
	}
	if err := DecodeArgs(raw, &args); err != nil {
		return nil, err
	}
	prefix := ""
	if args.Group != "" {
		prefix = "switchboard_" + strings.TrimSuffix(strings.TrimPrefix(args.Group, "switchboard_"), "_") + "_"
	}
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
		name := line[:i]
		if !strings.HasPrefix(name, prefix) || !strings.Contains(name, args.Match) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}
