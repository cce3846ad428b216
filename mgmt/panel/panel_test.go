package panel

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/mgmt"
	"switchboard/store"
)

// rig is a management server with the panel mounted, on a real loopback
// listener, a SQLite store holding the panel users, and two commands
// standing in for a module's: domains.list (read-only) and domains.add.
type rig struct {
	t     *testing.T
	base  string
	st    *store.Store
	srv   *mgmt.Server
	panel *Panel
	added atomic.Int64 // domains.add runs

	mu  sync.Mutex
	now time.Time
}

func (g *rig) clock() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.now
}

func (g *rig) advance(d time.Duration) {
	g.mu.Lock()
	g.now = g.now.Add(d)
	g.mu.Unlock()
}

func newRig(t *testing.T) *rig { return newRigOn(t, nil) }

// newRigOn is newRig on the store of another rig (nil: a store of its
// own): another node sharing a database, or the same one restarted.
func newRigOn(t *testing.T, st *store.Store) *rig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := mgmt.New(mgmt.Config{Listen: "127.0.0.1:0", Token: "0123456789abcdef0123", Logger: log})
	g := panelOn(t, srv, st)
	var domains []string
	var dmu sync.Mutex
	g.srv.Register("domains.list", mgmt.Command{ReadOnly: true, Run: func(context.Context, json.RawMessage) (any, error) {
		dmu.Lock()
		defer dmu.Unlock()
		return append([]string{}, domains...), nil
	}})
	g.srv.Register("domains.add", mgmt.Command{Run: func(_ context.Context, raw json.RawMessage) (any, error) {
		var a struct {
			Domain string `json:"domain"`
		}
		if err := mgmt.DecodeArgs(raw, &a); err != nil {
			return nil, err
		}
		if a.Domain == "" {
			return nil, &mgmt.ArgError{Msg: `"domain" is required`}
		}
		g.added.Add(1)
		dmu.Lock()
		domains = append(domains, a.Domain)
		dmu.Unlock()
		return "added " + a.Domain, nil
	}})
	return g
}

// panelOn mounts the panel on srv (not started: panelOn starts it), its
// users and sessions in st, or (nil) in a SQLite store of their own with
// the users admin and viewer (read-only).
func panelOn(t *testing.T, srv *mgmt.Server, st *store.Store) *rig {
	t.Helper()
	if st == nil {
		st = newPanelStore(t)
	}
	g := &rig{t: t, st: st, srv: srv, now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	g.panel, err = New(Config{Commands: g.srv, Users: st, Sessions: st, Metrics: g.srv.Metrics(), Logger: log,
		LockoutFailures: 3, LockoutTime: 10 * time.Minute, Now: g.clock})
	if err != nil {
		t.Fatal(err)
	}
	g.srv.Mount("/ui/", g.panel)
	if err := g.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.srv.Close(context.Background()) })
	g.base = "http://" + g.srv.Addr()
	return g
}

// newPanelStore is a SQLite store with the panel users admin and viewer
// (read-only).
func newPanelStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.AddPanelUser(ctx, "admin", "admin password 1", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := st.AddPanelUser(ctx, "viewer", "viewer password 1", store.RoleReadOnly); err != nil {
		t.Fatal(err)
	}
	return st
}

// browser is a client that keeps cookies, does not follow redirects and
// sends the Origin a browser would.
type browser struct {
	g      *rig
	c      *http.Client
	origin string
}

func (g *rig) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{g: g, origin: g.base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (b *browser) get(path string) (*http.Response, string) {
	b.g.t.Helper()
	resp, err := b.c.Get(b.g.base + path)
	if err != nil {
		b.g.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.g.t.Helper()
	req, _ := http.NewRequest("POST", b.g.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.g.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in the page:\n%s", page)
	}
	return m[1]
}

// login logs b in and returns the session's CSRF token.
func (b *browser) login(user, pw string) string {
	t := b.g.t
	t.Helper()
	_, page := b.get("/ui/login")
	resp, body := b.post("/ui/login", url.Values{"csrf": {csrfOf(t, page)}, "user": {user}, "password": {pw}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login %s: %d %s\n%s", user, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	_, home := b.get("/ui/domains")
	return csrfOf(t, home)
}

func (b *browser) tryLogin(user, pw string) (*http.Response, string) {
	b.g.t.Helper()
	_, page := b.get("/ui/login")
	return b.post("/ui/login", url.Values{"csrf": {csrfOf(b.g.t, page)}, "user": {user}, "password": {pw}})
}

func counter(t *testing.T, srv *mgmt.Server, name string) float64 {
	t.Helper()
	res, err := srv.Call(context.Background(), "stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.(map[string]float64)[name]
}

func TestLoginSessionCookie(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	if resp, _ := b.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("a page without a session: %d %s, want a redirect to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := b.get("/ui/login")
	csrf := csrfOf(t, page)
	// The login form's token is bound to its cookie: another value is refused.
	if resp, _ := b.post("/ui/login", url.Values{"csrf": {csrf + "x"}, "user": {"admin"}, "password": {"admin password 1"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login with a wrong form token: %d, want 403", resp.StatusCode)
	}
	_, page = b.get("/ui/login")
	resp, _ = b.post("/ui/login", url.Values{"csrf": {csrfOf(t, page)}, "user": {"admin"}, "password": {"admin password 1"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure || sess.Path != "/ui/" || len(sess.Value) < 40 {
		t.Fatalf("session cookie over plain HTTP: %+v", sess)
	}
	if resp, body := b.get("/ui/domains"); resp.StatusCode != 200 || !strings.Contains(body, "admin (admin)") {
		t.Fatalf("page with a session: %d", resp.StatusCode)
	}
	if got := counter(t, g.srv, `switchboard_panel_logins_total{result="ok"}`); got != 1 {
		t.Fatalf("logins ok: %v", got)
	}
	// Behind a TLS reverse proxy the cookie is Secure.
	_, page = g.browser().get("/ui/login")
	req, _ := http.NewRequest("POST", g.base+"/ui/login", strings.NewReader(url.Values{"csrf": {csrfOf(t, page)}, "user": {"admin"}, "password": {"admin password 1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", g.base)
	req.Header.Set("X-Forwarded-Proto", "https")
	tlsb := g.browser()
	tlsb.c.Jar.SetCookies(mustURL(g.base+"/ui/"), []*http.Cookie{{Name: loginCookie, Value: csrfOf(t, page)}})
	resp, err := tlsb.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login through a TLS proxy: %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && !c.Secure {
			t.Fatalf("session cookie over TLS: %+v", c)
		}
	}
	// Logging out ends the session on the server, not only in the browser.
	_, home := b.get("/ui/domains")
	old := b.c.Jar.Cookies(mustURL(g.base + "/ui/"))
	if resp, _ := b.post("/ui/logout", url.Values{"csrf": {csrfOf(t, home)}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	b.c.Jar.SetCookies(mustURL(g.base+"/ui/"), old)
	if resp, _ := b.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the old session cookie after logout: %d, want a redirect", resp.StatusCode)
	}
}

// wrongToken is csrf with its last character changed (to "A", or "B"
// where it was "A": a fixed "A" let one token in 64 through as itself).
func wrongToken(csrf string) string {
	last := "A"
	if strings.HasSuffix(csrf, "A") {
		last = "B"
	}
	return csrf[:len(csrf)-1] + last
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(s)
	return u
}

// TestCSRF: a form posted without the session's token, with another
// origin's Origin, or with none, does not run its command.
func TestCSRF(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	csrf := b.login("admin", "admin password 1")
	for _, c := range []struct {
		name, origin, csrf string
		want               int
	}{
		{"no token", g.base, "", http.StatusForbidden},
		{"wrong token", g.base, wrongToken(csrf), http.StatusForbidden},
		{"foreign origin", "http://evil.example", csrf, http.StatusForbidden},
		{"null origin", "null", csrf, http.StatusForbidden},
		{"no origin", "", csrf, http.StatusForbidden},
	} {
		b.origin = c.origin
		resp, body := b.post("/ui/domains/add", url.Values{"csrf": {c.csrf}, "domain": {"evil.example"}})
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
		}
	}
	if n := g.added.Load(); n != 0 {
		t.Fatalf("domains.add ran %d times from refused forms", n)
	}
	b.origin = g.base
	resp, _ := b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {"ok.example"}})
	if resp.StatusCode != http.StatusSeeOther || g.added.Load() != 1 {
		t.Fatalf("the form with its token: %d, ran %d", resp.StatusCode, g.added.Load())
	}
	if _, page := b.get("/ui/domains"); !strings.Contains(page, "added ok.example") || !strings.Contains(page, "<td data-label=\"domain\">ok.example</td>") {
		t.Fatalf("the page after the form shows neither the answer nor the row:\n%s", page)
	}
	// The server's own error text is shown.
	b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {""}})
	if _, page := b.get("/ui/domains"); !strings.Contains(page, `&#34;domain&#34; is required`) {
		t.Fatalf("the command's error is not shown:\n%s", page)
	}
	if got := counter(t, g.srv, "switchboard_panel_csrf_refused_total"); got != 2 {
		t.Fatalf("csrf refusals counted: %v, want 2", got)
	}
}

// TestLockout: LockoutFailures wrong passwords lock the account, even for
// the right password, until LockoutTime has passed; from one address,
// wrong passwords for many accounts lock the address.
func TestLockout(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	for i := 0; i < 3; i++ {
		if resp, _ := b.tryLogin("admin", "wrong password!"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := b.tryLogin("admin", "admin password 1")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "try again in 10 min") {
		t.Fatalf("right password while locked: %d\n%s", resp.StatusCode, body)
	}
	if got := counter(t, g.srv, "switchboard_panel_lockouts_total"); got < 1 {
		t.Fatalf("lockouts: %v", got)
	}
	if got := counter(t, g.srv, `switchboard_panel_logins_total{result="locked"}`); got != 1 {
		t.Fatalf("locked logins: %v", got)
	}
	g.advance(10*time.Minute + time.Second)
	b.login("admin", "admin password 1")

	// Three unknown names from the same address lock the address: the
	// viewer's right password is refused from it too.
	c := g.browser()
	for _, u := range []string{"root", "administrator", "sysop"} {
		c.tryLogin(u, "guess guess guess")
	}
	if resp, _ := c.tryLogin("viewer", "viewer password 1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("login from a locked address: %d, want 429", resp.StatusCode)
	}
}

// TestReadOnlyRole: a read-only user sees the pages but no forms, and a
// form posted anyway is refused before its command runs.
func TestReadOnlyRole(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	csrf := b.login("viewer", "viewer password 1")
	resp, page := b.get("/ui/domains")
	if resp.StatusCode != 200 || strings.Contains(page, `action="/ui/domains/add"`) {
		t.Fatalf("read-only page: %d, has the add form: %v", resp.StatusCode, strings.Contains(page, `action="/ui/domains/add"`))
	}
	resp, _ = b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {"x.example"}})
	if resp.StatusCode != http.StatusForbidden || g.added.Load() != 0 {
		t.Fatalf("read-only post: %d, ran %d", resp.StatusCode, g.added.Load())
	}
	if _, page := b.get("/ui/domains"); !strings.Contains(page, "read-only") {
		t.Fatal("the refusal is not explained")
	}
	if got := counter(t, g.srv, "switchboard_panel_role_refused_total"); got != 1 {
		t.Fatalf("role refusals: %v", got)
	}
	// Promoted to admin in the store, the session takes the role at its
	// next check.
	if err := g.st.SetPanelUser(context.Background(), "viewer", "", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	g.advance(RecheckEvery)
	if resp, _ := b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {"x.example"}}); resp.StatusCode != http.StatusSeeOther || g.added.Load() != 1 {
		t.Fatalf("after promotion: %d, ran %d", resp.StatusCode, g.added.Load())
	}
}

// TestSessionEnds: a changed password ends the sessions opened with the
// old one, and an idle session expires.
func TestSessionEnds(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	b.login("admin", "admin password 1")
	if err := g.st.SetPanelUser(context.Background(), "admin", "a new password 2", ""); err != nil {
		t.Fatal(err)
	}
	g.advance(RecheckEvery)
	if resp, _ := b.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("session after a password change: %d, want a redirect to the login", resp.StatusCode)
	}
	b.login("admin", "a new password 2")
	g.advance(8*time.Hour + time.Second)
	if resp, _ := b.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("idle session: %d, want a redirect to the login", resp.StatusCode)
	}
}

// TestPanelHost: the panel answers only to the listener's names, as the
// API does (DNS rebinding).
func TestPanelHost(t *testing.T) {
	g := newRig(t)
	req, _ := http.NewRequest("GET", g.base+"/ui/login", nil)
	req.Host = "rebound.example:80"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("rebound Host: %d, want 403", resp.StatusCode)
	}
}

// TestCDRExport: the CDR page's filters become acc.list's arguments, and
// the CSV export has the same rows, a cell a spreadsheet would run as a
// formula kept as text.
func TestCDRExport(t *testing.T) {
	g := newRig(t)
	var got atomic.Value
	g.srv.Register("acc.list", mgmt.Command{ReadOnly: true, Run: func(_ context.Context, raw json.RawMessage) (any, error) {
		got.Store(string(raw))
		type cdr struct {
			CallID   string `json:"call_id"`
			FromUser string `json:"from_user"`
			ToUser   string `json:"to_user"`
			Duration int    `json:"duration_ms"`
		}
		return []cdr{{"c1@x", "alice", "+4930123", 61000}, {"c2@x", "=HYPERLINK(\"http://evil\")", "bob", 0}}, nil
	}})
	b := g.browser()
	b.login("viewer", "viewer password 1")
	resp, page := b.get("/ui/cdrs?from=alice&limit=50&missed=on")
	if resp.StatusCode != 200 || !strings.Contains(page, `<td data-label="to_user">&#43;4930123</td>`) || !strings.Contains(page, `href="/ui/cdrs.csv?from=alice&amp;limit=50&amp;missed=on"`) {
		t.Fatalf("cdrs page: %d\n%s", resp.StatusCode, page)
	}
	var args map[string]any
	json.Unmarshal([]byte(got.Load().(string)), &args)
	if args["from"] != "alice" || args["limit"] != float64(50) || args["missed"] != true || len(args) != 3 {
		t.Fatalf("acc.list arguments: %s", got.Load())
	}
	if resp, body := b.get("/ui/cdrs?limit=many"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Limit: &#34;many&#34; is not a whole number") {
		t.Fatalf("a bad filter: %d\n%s", resp.StatusCode, body)
	}
	resp, csv := b.get("/ui/cdrs.csv?from=alice")
	want := "call_id,from_user,to_user,duration_ms\nc1@x,alice,'+4930123,61000\nc2@x,\"'=HYPERLINK(\"\"http://evil\"\")\",bob,0\n"
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || csv != want {
		t.Fatalf("csv: %d %s\n%q\nwant\n%q", resp.StatusCode, resp.Header.Get("Content-Type"), csv, want)
	}
}

// TestSearchAndMissingModule: the search box filters the rows; a page
// whose command is not registered says its module is not enabled.
func TestSearchAndMissingModule(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	csrf := b.login("admin", "admin password 1")
	for _, d := range []string{"alpha.example", "beta.example", "alphabet.example"} {
		b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {d}})
	}
	_, page := b.get("/ui/domains?q=ALPHA")
	if !strings.Contains(page, "2 rows") || strings.Contains(page, "beta.example") {
		t.Fatalf("search: %s", page)
	}
	resp, page := b.get("/ui/gateways")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "not enabled") {
		t.Fatalf("a page without its module: %d\n%s", resp.StatusCode, page)
	}
}

// TestFormComesBack: after a form the page shows the filters it had, and
// the way back cannot lead elsewhere.
func TestFormComesBack(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	csrf := b.login("admin", "admin password 1")
	for back, want := range map[string]string{
		"/ui/domains?q=alpha":            "/ui/domains?q=alpha",
		"//evil.example/ui/domains":      "/ui/domains",
		"http://evil.example/ui/domains": "/ui/domains",
		"/ui/subscribers?q=x":            "/ui/domains",
	} {
		resp, _ := b.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {"a.example"}, "back": {back}})
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("back %q: Location %q, want %q", back, got, want)
		}
	}
}

// TestConcurrentSession: requests of one session in parallel while its
// user's role changes and the session re-reads it (run with -race).
func TestConcurrentSession(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	csrf := b.login("admin", "admin password 1")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				req, _ := http.NewRequest("POST", g.base+"/ui/domains/add", strings.NewReader(url.Values{"csrf": {csrf}, "domain": {"c.example"}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", g.base)
				if resp, err := b.c.Do(req); err == nil {
					resp.Body.Close()
				}
				if resp, err := b.c.Get(g.base + "/ui/domains"); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	for _, role := range []string{store.RoleReadOnly, store.RoleAdmin, store.RoleReadOnly} {
		g.st.SetPanelUser(context.Background(), "admin", "", role)
		g.advance(RecheckEvery)
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
}

// TestLockoutKeys: an IPv6 source is counted by its /64; names no user can
// have are not counted as accounts.
func TestLockoutKeys(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.7":           "192.0.2.7",
		"2001:db8:1:2:3::9":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":    "::ffff:192.0.2.7",
	} {
		if got := sourceKey(ip); got != want {
			t.Errorf("sourceKey(%s) = %s, want %s", ip, got, want)
		}
	}
	g := newRig(t)
	b := g.browser()
	b.tryLogin(strings.Repeat("x", 5000), "wrong password!")
	g.panel.mu.Lock()
	defer g.panel.mu.Unlock()
	for k := range g.panel.fails {
		if len(k) > 100 {
			t.Fatalf("a %d-byte name was counted", len(k))
		}
	}
	if len(g.panel.fails) != 1 {
		t.Fatalf("failure keys: %d, want the address only", len(g.panel.fails))
	}
}

// TestManyRows: a table larger than a page can show is cut at maxRows,
// and the page says so.
func TestManyRows(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	b.login("admin", "admin password 1")
	g.srv.Register("domains.list", mgmt.Command{ReadOnly: true, Run: func(context.Context, json.RawMessage) (any, error) {
		l := make([]string, maxRows+5)
		for i := range l {
			l[i] = "d" + strconv.Itoa(i) + ".example"
		}
		return l, nil
	}})
	_, page := b.get("/ui/domains")
	if !strings.Contains(page, "the first 1000 of 1005 rows") || strings.Count(page, `<td data-label="domain">`) != maxRows {
		t.Fatalf("a long table: %d rows shown", strings.Count(page, `<td data-label="domain">`))
	}
}

// TestSessionSharedByNodes: a session made on one node is good on another
// sharing the store (or on the same node after a restart), with its CSRF
// token; a logout on either ends it on both; a forged cookie, the stored
// id given as a cookie, an expired session and one whose password changed
// are refused by a node that must read them from the store.
func TestSessionSharedByNodes(t *testing.T) {
	a := newRig(t)
	b := newRigOn(t, a.st)
	ba := a.browser()
	csrf := ba.login("admin", "admin password 1")
	cookies := ba.c.Jar.Cookies(mustURL(a.base + "/ui/"))
	onB := func(cs []*http.Cookie) *browser {
		br := b.browser()
		br.c.Jar.SetCookies(mustURL(b.base+"/ui/"), cs)
		return br
	}
	bb := onB(cookies)
	resp, page := bb.get("/ui/domains")
	if resp.StatusCode != 200 || !strings.Contains(page, "admin (admin)") || csrfOf(t, page) != csrf {
		t.Fatalf("the session on the other node: %d, csrf %v", resp.StatusCode, csrfOf(t, page) == csrf)
	}
	if resp, _ := bb.post("/ui/domains/add", url.Values{"csrf": {csrf}, "domain": {"b.example"}}); resp.StatusCode != http.StatusSeeOther || b.added.Load() != 1 {
		t.Fatalf("a form on the other node with the session's token: %d, ran %d", resp.StatusCode, b.added.Load())
	}

	// Cookies that are not a session's.
	var sess *http.Cookie
	for _, c := range cookies {
		if c.Name == sessionCookie {
			sess = c
		}
	}
	for name, v := range map[string]string{
		"forged":    randomToken(),
		"stored id": store.PanelSessionID(sess.Value),
	} {
		if resp, _ := onB([]*http.Cookie{{Name: sessionCookie, Value: v}}).get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s cookie: %d, want a redirect to the login", name, resp.StatusCode)
		}
	}

	// A logout on B ends the session on A within RecheckEvery.
	if resp, _ := bb.post("/ui/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on B: %d", resp.StatusCode)
	}
	a.advance(RecheckEvery)
	if resp, _ := ba.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the session on A after a logout on B: %d, want a redirect", resp.StatusCode)
	}

	// A node reading a session from the store checks its expiry and its
	// user's password.
	ba.login("admin", "admin password 1")
	cookies = ba.c.Jar.Cookies(mustURL(a.base + "/ui/"))
	b.advance(RecheckEvery + 8*time.Hour + time.Second) // A's clock is RecheckEvery ahead
	if resp, _ := onB(cookies).get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("an expired session read from the store: %d, want a redirect", resp.StatusCode)
	}
	av := a.browser()
	av.login("viewer", "viewer password 1")
	cookies = av.c.Jar.Cookies(mustURL(a.base + "/ui/"))
	if err := a.st.SetPanelUser(context.Background(), "viewer", "a new password 3", ""); err != nil {
		t.Fatal(err)
	}
	c := newRigOn(t, a.st)
	cc := c.browser()
	cc.c.Jar.SetCookies(mustURL(c.base+"/ui/"), cookies)
	if resp, _ := cc.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a session whose password changed, read from the store: %d, want a redirect", resp.StatusCode)
	}
}

// TestLockoutLoginsAtOnce: wrong passwords sent at once are checked no
// more often than the lockout allows (3 in the rig): a login waiting for
// its hash counts already, so the others are refused with 429 before
// theirs is computed, and the right password among them does not clear a
// lock the wrong ones set.
func TestLockoutLoginsAtOnce(t *testing.T) {
	g := newRig(t)
	const n = 12
	browsers := make([]*browser, n)
	tokens := make([]string, n)
	for i := range browsers {
		browsers[i] = g.browser()
		_, page := browsers[i].get("/ui/login")
		tokens[i] = csrfOf(t, page)
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "wrong password!"
			if i == n-1 {
				pw = "admin password 1"
			}
			resp, _ := browsers[i].post("/ui/login", url.Values{"csrf": {tokens[i]}, "user": {"admin"}, "password": {pw}})
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	checked := 0
	for i, code := range codes[:n-1] {
		switch code {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("wrong password %d: %d, want 401 or 429", i, code)
		}
	}
	if checked > 3 {
		t.Errorf("%d wrong passwords were checked at once; the lockout is 3 (codes %v)", checked, codes)
	}
	if c := codes[n-1]; c != http.StatusSeeOther && c != http.StatusTooManyRequests {
		t.Errorf("right password among them: %d, want 303 or 429", c)
	}
	g.panel.mu.Lock()
	for k, f := range g.panel.fails {
		if f.inFlight != 0 {
			t.Errorf("%s: %d checks still counted in flight", k, f.inFlight)
		}
	}
	g.panel.mu.Unlock()
	if checked == 3 {
		// The three failures locked the account: the right password is
		// refused until the lock ends.
		if resp, _ := g.browser().tryLogin("admin", "admin password 1"); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("right password after three failures at once: %d, want 429", resp.StatusCode)
		}
	}
}

// TestCSRFHeaderForm: a form posted with its token in X-CSRF-Token runs
// with the form's fields, and a body over the limit is refused unread
// either way.
func TestCSRFHeaderForm(t *testing.T) {
	g := newRig(t)
	b := g.browser()
	csrf := b.login("admin", "admin password 1")
	send := func(body string, header bool) int {
		req, _ := http.NewRequest("POST", g.base+"/ui/domains/add", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", g.base)
		if header {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	send(url.Values{"domain": {"x.example"}}.Encode(), true)
	if got := g.added.Load(); got != 1 {
		_, page := b.get("/ui/domains")
		t.Fatalf("domains.add with the token in X-CSRF-Token: ran %d times (flash %q)", got, page)
	}
	pad := "&pad=" + strings.Repeat("a", 2<<20)
	if code := send("domain=y.example"+pad, true); code != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB form, token in the header: %d, want 413", code)
	}
	if code := send("csrf="+url.QueryEscape(csrf)+"&domain=y.example"+pad, false); code != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB form, token in the form: %d, want 413", code)
	}
	if got := g.added.Load(); got != 1 {
		t.Errorf("domains.add ran %d times, want once", got)
	}
}

// TestSessionLifetime: a session kept busy (a request every hour, well
// inside the idle timeout) ends 12 h after its login all the same, on the
// node that holds it and on a node that reads it from the store, even
// when the stored row's expiry was moved past that (a row written by an
// older version, or a node configured with a longer lifetime): a stolen
// cookie used all the time is good for the lifetime at most.
func TestSessionLifetime(t *testing.T) {
	a := newRig(t)
	ba := a.browser()
	ba.login("admin", "admin password 1")
	cookies := ba.c.Jar.Cookies(mustURL(a.base + "/ui/"))
	for i := 0; i < 11; i++ {
		a.advance(time.Hour)
		if resp, _ := ba.get("/ui/domains"); resp.StatusCode != 200 {
			t.Fatalf("a busy session %d h after its login: %d", i+1, resp.StatusCode)
		}
	}
	a.advance(time.Hour - time.Second)
	if resp, _ := ba.get("/ui/domains"); resp.StatusCode != 200 {
		t.Fatalf("a busy session 1 s before its lifetime: %d", resp.StatusCode)
	}
	a.advance(2 * time.Second)
	if resp, _ := ba.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("a busy session past its lifetime: %d %s, want a redirect to the login", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Another node reading the cookie's session from the store, its
	// expiry moved a day on in the row.
	var sess *http.Cookie
	for _, c := range cookies {
		if c.Name == sessionCookie {
			sess = c
		}
	}
	if err := a.st.TouchPanelSession(context.Background(), store.PanelSessionID(sess.Value), a.clock().Add(24*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	b := newRigOn(t, a.st)
	b.advance(12*time.Hour + time.Second)
	bb := b.browser()
	bb.c.Jar.SetCookies(mustURL(b.base+"/ui/"), []*http.Cookie{sess})
	if resp, _ := bb.get("/ui/domains"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a session past its lifetime read from the store: %d, want a redirect", resp.StatusCode)
	}
	if _, err := a.st.GetPanelSession(context.Background(), store.PanelSessionID(sess.Value)); !errors.Is(err, store.ErrNoPanelSession) {
		t.Fatalf("the row of a session past its lifetime is kept: %v", err)
	}
	// A new login starts a new lifetime.
	bb.login("admin", "admin password 1")
	for _, d := range []time.Duration{7 * time.Hour, 4 * time.Hour} {
		b.advance(d)
		if resp, _ := bb.get("/ui/domains"); resp.StatusCode != 200 {
			t.Fatalf("a new session %s later: %d", d, resp.StatusCode)
		}
	}
}
