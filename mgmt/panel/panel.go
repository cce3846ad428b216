// Package panel is the operator's web panel, served by the management
// listener under /ui (mgmt.Server.Mount): a dashboard from the metrics
// and a page for each table the management commands manage (subscribers,
// domains, registrations, aliases, groups, address ACLs, bans, fraud rules
// and events, dialplan, dynamic routing, dispatcher, trunk credentials and
// carrier registrations, rtpengine instances, dialogs, CDRs).
//
// Every page and every form runs management commands in process through
// the same registry the JSON API and `switchboard ctl` use (Commands is
// mgmt.Server): the panel has no database access of its own beyond its
// users, so it validates as the CLI does and shows the command's own
// error text. Pages are server-rendered html/template with a little
// vanilla JavaScript (the dashboard's polling, confirmations); nothing is
// built at run time and everything is embedded in the binary.
//
// Security (see auth.go): panel users with Argon2id password hashes in the
// store, a random session id in an HttpOnly SameSite=Strict cookie (Secure
// over TLS), a CSRF token on every POST on top of the listener's Origin
// check, lockout after repeated failures per account and per address, and
// roles: a read-only user can run only read-only commands, checked where
// every command is called.
package panel

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/store"
)

//go:embed web
var webFS embed.FS

// Commands runs management commands: mgmt.Server.
type Commands interface {
	Lookup(name string) (readOnly, ok bool)
	Call(ctx context.Context, name string, args json.RawMessage) (any, error)
}

// Users finds panel users: store.Store.
type Users interface {
	GetPanelUser(ctx context.Context, name string) (store.PanelUser, error)
}

// Config configures the panel.
type Config struct {
	Commands Commands
	Users    Users
	// Sessions keeps the sessions in the store too (sessions.go): they
	// outlive a restart and are good on every node sharing the store.
	// Nil: in this process's memory only.
	Sessions Sessions
	Metrics  *metrics.Set
	Logger   *slog.Logger
	// SessionTTL is how long a session lasts without a request.
	SessionTTL time.Duration
	// SessionLifetime is how long a session lasts after its login,
	// however busy (default 12h): a stolen cookie kept in use is good
	// this long at most.
	SessionLifetime time.Duration
	// LockoutFailures wrong passwords in a row for one account, or from
	// one address, lock it out for LockoutTime.
	LockoutFailures int
	LockoutTime     time.Duration
	// MaxSessions bounds the sessions held in memory (default 1000); the
	// one idle longest makes room for a new login (with Sessions, it is
	// read from the store again when it is used).
	MaxSessions int
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Panel is the http.Handler of /ui/.
type Panel struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	tmpl  map[string]*template.Template
	pages map[string]*Page

	mu       sync.Mutex
	sessions map[string]*session
	fails    map[string]*failures

	// hashing bounds the Argon2id computations at once (19 MiB each): a
	// flood of logins waits here instead of taking the server's memory.
	hashing chan struct{}

	loginOK, loginFailed, loginLocked, lockouts, csrfRefused, roleRefused *metrics.Counter
}

// New builds the panel.
func New(cfg Config) (*Panel, error) {
	if cfg.Commands == nil || cfg.Users == nil || cfg.Metrics == nil {
		return nil, errors.New("panel: Commands, Users and Metrics are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 12 * time.Hour
	}
	if cfg.LockoutFailures <= 0 {
		cfg.LockoutFailures = 5
	}
	if cfg.LockoutTime <= 0 {
		cfg.LockoutTime = 15 * time.Minute
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Panel{
		cfg: cfg, log: cfg.Logger.With("part", "panel"),
		sessions: map[string]*session{}, fails: map[string]*failures{},
		hashing: make(chan struct{}, 2),
		pages:   map[string]*Page{},
	}
	set := cfg.Metrics
	p.loginOK = set.NewCounter(`switchboard_panel_logins_total{result="ok"}`)
	p.loginFailed = set.NewCounter(`switchboard_panel_logins_total{result="failed"}`)
	p.loginLocked = set.NewCounter(`switchboard_panel_logins_total{result="locked"}`)
	p.lockouts = set.NewCounter("switchboard_panel_lockouts_total")
	p.csrfRefused = set.NewCounter("switchboard_panel_csrf_refused_total")
	p.roleRefused = set.NewCounter("switchboard_panel_role_refused_total")
	set.NewGauge("switchboard_panel_sessions", func() float64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return float64(len(p.sessions))
	})
	for _, pg := range Pages {
		p.pages[pg.Slug] = pg
	}
	if err := p.parseTemplates(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

func (p *Panel) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServer(http.FS(static))))
	mux.HandleFunc("GET /ui/login", p.loginPage)
	mux.HandleFunc("POST /ui/login", p.login)
	mux.HandleFunc("POST /ui/logout", p.authed(p.logout))
	mux.HandleFunc("GET /ui/{$}", p.authed(p.dashboard))
	mux.HandleFunc("GET /ui/stats.json", p.authed(p.statsJSON))
	mux.HandleFunc("GET /ui/cdrs.csv", p.authed(p.cdrsCSV))
	mux.HandleFunc("GET /ui/{page}", p.authed(p.page))
	mux.HandleFunc("POST /ui/{page}/{form}", p.authed(p.submit))
	p.mux = mux
}

// ServeHTTP serves /ui/ with the headers every answer carries: no
// caching of pages that show subscribers, no framing (clickjacking), no
// script or style from anywhere but the panel itself.
func (p *Panel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	p.mux.ServeHTTP(w, r)
}

// call runs a management command for the session's user: the one place
// the panel runs commands, so the role check cannot be missed. A
// read-only user runs only commands registered as read-only.
func (p *Panel) call(ctx context.Context, s *session, name string, args any) (any, error) {
	ro, ok := p.cfg.Commands.Lookup(name)
	if !ok {
		return nil, errNotEnabled
	}
	if !ro && p.roleOf(s) != store.RoleAdmin {
		p.roleRefused.Inc()
		return nil, errReadOnly
	}
	var raw json.RawMessage
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		if string(b) != "{}" {
			raw = b
		}
	}
	return p.cfg.Commands.Call(ctx, name, raw)
}

// roleOf reads s's role, which a recheck may change while another
// request of the session runs.
func (p *Panel) roleOf(s *session) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.role
}

var (
	errNotEnabled = errors.New("this part is not enabled on this server: add its module's section to the configuration")
	errReadOnly   = errors.New("your panel role is read-only: only an admin can change this")
)

// isNotFound says whether err is a command's "no such object".
func isNotFound(err error) bool { return errors.Is(err, mgmt.ErrNotFound) }
