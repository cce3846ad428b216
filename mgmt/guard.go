package mgmt

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// guard admits a request to the API, or refuses it with a JSON error.
//
// A web page open in a browser on the server's host can send requests to
// the listener: an <img> or a link sends a GET, a form a POST with a
// text/plain or urlencoded body, and a page on a name that an attacker
// re-binds to 127.0.0.1 is even same-origin with it (DNS rebinding). The
// checks, in order:
//
//  1. Host names this listener (its address, "localhost" when it is a
//     loopback address, any IP address when it is 0.0.0.0 or [::]) or an
//     allowed name: a rebound name is refused.
//  2. Origin, when present, is the listener's own (http://<Host>) or an
//     allowed name's: a cross-origin fetch or form is refused.
//  3. Without an Origin, Sec-Fetch-Site must not say cross-site or
//     same-site: an <img> or a link from another page is refused.
//  4. The bearer token, compared in constant time: a browser never adds it
//     by itself, and without CORS a page cannot add it either.
//
// Then the command's own rules apply (checkMethod): POST with JSON for a
// command that changes state. Curl and `switchboard ctl` send no Origin
// and no Sec-Fetch-Site and pass with the token.
type guard struct {
	listen   hostPort          // the listener's address
	anyIP    bool              // listening on 0.0.0.0 or [::]: any IP literal with listen.port
	hosts    map[hostPort]bool // Host values that name the listener
	allowed  []hostPort        // mgmt.allowed_hosts; port "" matches any
	token    [sha256.Size]byte // SHA-256 of the token, so comparing takes the same time for any length
	hasToken bool
	refused  map[string]*metrics.Counter
}

// hostPort is a host (lower case, IPv6 without brackets) and a port.
type hostPort struct{ host, port string }

func (h hostPort) String() string {
	if h.port == "" {
		return h.host
	}
	return net.JoinHostPort(h.host, h.port)
}

func newGuard(listen string, allowedHosts []string, token string, set *metrics.Set) *guard {
	g := &guard{hosts: map[hostPort]bool{}, refused: map[string]*metrics.Counter{}}
	g.listen = splitHost(listen, "")
	g.hosts[g.listen] = true
	if a, err := netip.ParseAddr(g.listen.host); err == nil {
		if a.IsLoopback() || a.IsUnspecified() { // 0.0.0.0 includes loopback
			g.hosts[hostPort{"localhost", g.listen.port}] = true
		}
		g.anyIP = a.IsUnspecified()
	}
	for _, h := range allowedHosts {
		g.allowed = append(g.allowed, splitHost(h, ""))
	}
	if token != "" {
		g.token, g.hasToken = sha256.Sum256([]byte(token)), true
	}
	for _, reason := range []string{"host", "origin", "cross_site", "token"} {
		g.refused[reason] = set.GetOrCreateCounter(`switchboard_mgmt_refused_total{reason="` + reason + `"}`)
	}
	return g
}

// splitHost splits host[:port] into lower case parts, without brackets
// and without a trailing dot; def is the port when none is written.
func splitHost(s, def string) hostPort {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), def
	}
	return hostPort{strings.TrimSuffix(strings.ToLower(host), "."), port}
}

// isListener says whether h (from Host or Origin) names the listener.
func (g *guard) isListener(h hostPort) bool {
	if g.hosts[h] {
		return true
	}
	if g.anyIP && h.port == g.listen.port {
		_, err := netip.ParseAddr(h.host)
		return err == nil
	}
	return false
}

// isAllowed says whether h matches an entry of mgmt.allowed_hosts.
func (g *guard) isAllowed(h hostPort) bool {
	for _, a := range g.allowed {
		if a.host == h.host && (a.port == "" || a.port == h.port) {
			return true
		}
	}
	return false
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason, code, msg := g.check(r); code != 0 {
			g.refused[reason].Inc()
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
			}
			writeError(w, code, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// wrapMount guards a handler that authenticates by itself (the web
// panel's login and session): the Host must name the listener, and a
// request that may change state (any method but GET and HEAD) must carry
// an Origin, and the listener's own or an allowed name's. Browsers send
// Origin with every POST; a client that sends none is not a browser and
// has no cookie to abuse. No token is asked for.
func (g *guard) wrapMount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason, code, msg := g.checkMount(r); code != 0 {
			g.refused[reason].Inc()
			http.Error(w, msg, code)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *guard) checkMount(r *http.Request) (reason string, code int, msg string) {
	host := splitHost(r.Host, "80")
	if !g.isListener(host) && !g.isAllowed(host) {
		return "host", http.StatusForbidden, fmt.Sprintf("Host %q is not this listener (%s); a name in front of it must be listed in mgmt.allowed_hosts", r.Host, g.listen)
	}
	origins := r.Header.Values("Origin")
	if len(origins) > 1 {
		return "origin", http.StatusForbidden, "more than one Origin header"
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return "", 0, ""
	}
	if len(origins) == 0 {
		return "origin", http.StatusForbidden, "a request that changes state must carry an Origin header"
	}
	if !g.originOK(origins[0], r.Host) {
		return "origin", http.StatusForbidden, fmt.Sprintf("requests from origin %q are refused: the panel accepts its own origin and the names in mgmt.allowed_hosts", origins[0])
	}
	return "", 0, ""
}

// check returns the refusal of r (the metric label, the status and why),
// or code 0 when r may go on.
func (g *guard) check(r *http.Request) (reason string, code int, msg string) {
	host := splitHost(r.Host, "80")
	if !g.isListener(host) && !g.isAllowed(host) {
		return "host", http.StatusForbidden, fmt.Sprintf("Host %q is not this listener (%s); a name in front of it (reverse proxy, DNS name) must be listed in mgmt.allowed_hosts", r.Host, g.listen)
	}
	origins := r.Header.Values("Origin")
	switch {
	case len(origins) > 1:
		return "origin", http.StatusForbidden, "more than one Origin header"
	case len(origins) == 1:
		if !g.originOK(origins[0], r.Host) {
			return "origin", http.StatusForbidden, fmt.Sprintf("requests from origin %q are refused: the API accepts its own origin (http://%s) and the names in mgmt.allowed_hosts", origins[0], r.Host)
		}
	default:
		// An <img>, a link or a navigation from another page carries no
		// Origin; browsers that send Sec-Fetch-Site say where it came from.
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			return "cross_site", http.StatusForbidden, "a request a browser sent from another site is refused (Sec-Fetch-Site: " + site + ")"
		}
	}
	if !g.hasToken {
		return "token", http.StatusUnauthorized, "the management API has no token configured: every request is refused"
	}
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "token", http.StatusUnauthorized, "token required: send Authorization: Bearer <token> (mgmt.token of the server's configuration, or the file mgmt.token in its data directory)"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	if subtle.ConstantTimeCompare(sum[:], g.token[:]) != 1 {
		return "token", http.StatusUnauthorized, "wrong token: the server's token is mgmt.token of its configuration, or the file mgmt.token in its data directory"
	}
	return "", 0, ""
}

// originOK says whether origin is the listener's own (http://<the Host
// the request named>, when that Host is the listener) or an allowed name's
// (http or https). "null" (sandboxed frames, file: pages) is never.
func (g *guard) originOK(origin, reqHost string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	def := map[string]string{"http": "80", "https": "443"}[u.Scheme]
	if def == "" {
		return false
	}
	oh := splitHost(u.Host, def)
	if u.Scheme == "http" && g.isListener(oh) && oh == splitHost(reqHost, "80") {
		return true
	}
	return g.isAllowed(oh)
}
