package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	uipanel "switchboard/mgmt/panel"
)

// The panel's end-to-end test drives the real binary's /ui in Debian's
// headless Chromium (chromedp speaks the DevTools protocol to it), with
// sipp as the phones. Screenshots of every page are written to
// $SWB_TEST_ARTEFACTS/panel when that is set (make test sets it), else to a temporary
// directory the test log names; docs/panel/*.png are copies of some.

// panelBrowser is one headless Chromium with its own profile.
type panelBrowser struct {
	t        *testing.T
	ctx      context.Context
	base     string
	shots    string
	confirms atomic.Int32 // window.confirm dialogs accepted
}

func newPanelBrowser(t *testing.T, chromium, base, shots string) *panelBrowser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	b := &panelBrowser{t: t, ctx: ctx, base: base, shots: shots}
	// Accept the confirmations of "Drop", "Delete", "End call". Events
	// starts the browser.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			b.confirms.Add(1)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return b
}

// run runs steps with a bound, failing the test on error.
func (b *panelBrowser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	get(b, what, chromedp.Steps(steps...))
}

// get runs one action with a bound and returns its value, failing the
// test on error.
func get[T any](b *panelBrowser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		b.t.Fatalf("%s: %v\npage:\n%s", what, err, html)
	}
	return v
}

func (b *panelBrowser) shot(name string) {
	b.t.Helper()
	png := get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *panelBrowser) open(path string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

func (b *panelBrowser) login(user, pw string) {
	b.t.Helper()
	b.open("/ui/login")
	b.run("log in as "+user,
		chromedp.SetValue(chromedp.CSS("#user"), user),
		chromedp.SetValue(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#tiles")))
}

func (b *panelBrowser) logout() {
	b.t.Helper()
	b.run("log out", chromedp.Click(chromedp.CSS(".logout button")), chromedp.WaitVisible(chromedp.CSS("#password")))
}

// submit fills a form's fields (id suffix -> value) and sends it, and
// returns the message shown after it.
func (b *panelBrowser) submit(formID string, fields map[string]string) string {
	b.t.Helper()
	var acts []chromedp.Action[chromedp.Void]
	for k, v := range fields {
		acts = append(acts, chromedp.SetValue(chromedp.CSS("#"+formID+"-"+k), v))
	}
	acts = append(acts, clearFlash(),
		chromedp.Click(chromedp.CSS(`form[aria-labelledby="form-`+formID+`"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.run("submit "+formID, acts...)
	return b.text(".flash")
}

// clearFlash removes the message the page shows already, so that
// waiting for .flash waits for the next page's.
func clearFlash() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`document.querySelectorAll(".flash").forEach(e => e.remove()); true`)(ctx, t)
		return err
	})
}

// press clicks the button of a row form and returns the message shown
// after it.
func (b *panelBrowser) press(action string) string {
	b.t.Helper()
	b.run("press "+action, clearFlash(),
		chromedp.Click(chromedp.CSS(`td.actions form[action="`+action+`"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	return b.text(".flash")
}

func (b *panelBrowser) text(sel string) string {
	b.t.Helper()
	return get(b, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func panelCLI(t *testing.T, srv *testServer, args ...string) {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{"panel", "user"}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("panel user %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("SWB_TEST_ARTEFACTS")
	if dir == "" {
		d, err := os.MkdirTemp("", "switchboard-panel-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	dir = filepath.Join(dir, "panel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("panel screenshots in %s", dir)
	return dir
}

// TestE2EPanelBrowser: an operator logs in to /ui in Chromium, adds a
// subscriber, sees the phone sipp registers for it, drops it, adds a
// gateway and a rule, an alias (then in use), a group membership, a fraud
// rule, a trunk credential and a carrier registration (whose passwords no
// page shows), a real rtpengine that they disable and enable from its row,
// watches the dashboard counters move while sipp sends; a page on another origin cannot post a form to the panel; a
// read-only user cannot change anything, and stays logged in across a
// restart of the server; wrong passwords lock the login.
func TestE2EPanelBrowser(t *testing.T) {
	needSipp(t)
	chromium := needChromium(t)
	srv := startServer(t, droutingConfig+"registrar:\n  min_expires: 2s\n")
	panelCLI(t, srv, "add", "ops", "--password", "ops password 1", "--role", "admin")
	panelCLI(t, srv, "add", "viewer", "--password", "viewer password 1", "--role", "read-only")
	shots := screenshotDir(t)
	b := newPanelBrowser(t, chromium, "http://"+srv.Mgmt, shots)

	// Without a session every page leads to the login.
	b.open("/ui/registrations")
	loc := get(b, "location", chromedp.Location())
	if !strings.HasSuffix(loc, "/ui/login") {
		t.Fatalf("without a session: at %s, want the login page", loc)
	}
	b.shot("login")
	b.login("ops", "ops password 1")

	// A subscriber added in the panel registers with sipp and shows.
	b.open("/ui/subscribers")
	if msg := b.submit("add", map[string]string{"user": "alice@localhost", "password": "alice-pw"}); !strings.Contains(msg, "added alice@localhost") {
		t.Fatalf("add subscriber: %q", msg)
	}
	// The form's own error text is the command's.
	if msg := b.submit("add", map[string]string{"user": "alice@localhost", "password": "x"}); !strings.Contains(msg, "exists") {
		t.Fatalf("adding a subscriber twice: %q, want the store's error", msg)
	}
	b.shot("subscribers")
	port := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", port, "alice", "alice-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register alice: exit %d\n%s", r.Code, r.Output)
	}
	b.open("/ui/registrations")
	contact := "sip:alice@127.0.0.1:" + strconv.Itoa(port)
	if got := b.text("table"); !strings.Contains(got, "alice@localhost") || !strings.Contains(got, contact) {
		t.Fatalf("registrations page without alice's phone:\n%s", got)
	}
	b.shot("registrations")
	b.run("drop the registration",
		chromedp.Click(chromedp.CSS(`td.actions form[action="/ui/registrations/drop"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if msg := b.text(".flash"); !strings.Contains(msg, `"removed":1`) || b.confirms.Load() != 1 {
		t.Fatalf("drop: %q, confirmations %d", msg, b.confirms.Load())
	}
	if l := bindings(t, srv, "alice@localhost"); len(l) != 0 {
		t.Fatalf("alice still registered after the drop: %+v", l)
	}

	// A gateway and a rule, seen by the routing engine.
	b.open("/ui/gateways")
	if msg := b.submit("add", map[string]string{"gwid": "gw1", "address": "127.0.0.2:5090", "description": "test carrier"}); !strings.Contains(msg, "drouting.gw.add") {
		t.Fatalf("add gateway: %q", msg)
	}
	b.shot("gateways")
	b.open("/ui/rules")
	if msg := b.submit("add", map[string]string{"groupid": "0", "prefix": "+49", "gwlist": "gw1"}); !strings.Contains(msg, "drouting.rule.add") {
		t.Fatalf("add rule: %q", msg)
	}
	b.shot("rules")
	deadline := time.Now().Add(5 * time.Second)
	for {
		var m struct {
			Gateways []string `json:"gateways"`
		}
		json.Unmarshal(mgmtCall(t, srv, "drouting.match", `{"group":0,"number":"+4930123"}`), &m)
		if len(m.Gateways) == 1 && m.Gateways[0] == "gw1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drouting.match after the panel's rule: %s", mgmtCall(t, srv, "drouting.match", `{"group":0,"number":"+4930123"}`))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An alias (a DID) added in the panel is listed and in use at once.
	b.open("/ui/aliases")
	if msg := b.submit("add", map[string]string{"alias": "+33123456789@localhost", "target": "alice@localhost"}); !strings.Contains(msg, `"alias":"+33123456789@localhost"`) {
		t.Fatalf("add alias: %q", msg)
	}
	if got := b.text("table"); !strings.Contains(got, "+33123456789@localhost") || !strings.Contains(got, "alice@localhost") {
		t.Fatalf("aliases page without the alias:\n%s", got)
	}
	var found struct {
		Found  bool   `json:"found"`
		Target string `json:"target"`
	}
	if json.Unmarshal(mgmtCall(t, srv, "aliases.lookup", `{"alias":"+33123456789@localhost"}`), &found); !found.Found || found.Target != "alice@localhost" {
		t.Fatalf("aliases.lookup after the panel's add: %+v", found)
	}
	b.shot("aliases")

	// The other tables of the modules, one row each through the panel.
	b.open("/ui/groups")
	if msg := b.submit("add", map[string]string{"user": "alice@localhost", "group": "pstn"}); !strings.Contains(msg, `"group":"pstn"`) {
		t.Fatalf("add group member: %q", msg)
	}
	b.shot("groups")
	b.open("/ui/fraud")
	if msg := b.submit("add", map[string]string{"profile": "1", "prefix": "0900", "cpm_warning": "5", "cpm_critical": "10", "days": "Mon-Fri"}); !strings.Contains(msg, `"prefix":"0900"`) {
		t.Fatalf("add fraud rule: %q", msg)
	}
	b.shot("fraud")
	// Secrets typed into the panel never come back in a page.
	b.open("/ui/trunks")
	if msg := b.submit("add", map[string]string{"realm": "carrier.example", "gateway": "127.0.0.5", "username": "trunk1", "password": "trunk-secret-e2e"}); !strings.Contains(msg, `"secret":"password"`) {
		t.Fatalf("add trunk credential: %q", msg)
	}
	b.shot("trunks")
	b.open("/ui/uac-registrations")
	if msg := b.submit("add", map[string]string{"aor": "sip:+4930123@carrier.example", "registrar": "127.0.0.1:" + strconv.Itoa(freeSIPPort(t)), "password": "reg-secret-e2e", "expires": "600"}); !strings.Contains(msg, `"aor":"sip:+4930123@carrier.example"`) {
		t.Fatalf("add registration: %q", msg)
	}
	b.shot("uac-registrations")
	for _, p := range []string{"/ui/trunks", "/ui/uac-registrations"} {
		b.open(p)
		if html := get(b, "page html", chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(html, "secret-e2e") || !strings.Contains(html, "trunk1") && p == "/ui/trunks" {
			t.Fatalf("%s shows a secret or not the row:\n%s", p, html)
		}
	}

	// A real rtpengine added to the table in the panel, taken out of
	// service from its row and put back.
	rtp := startRtpengine(t)
	rtpSock := "udp:127.0.0.1:" + strconv.Itoa(rtp.ng)
	b.open("/ui/rtpengine")
	if msg := b.submit("add", map[string]string{"socket": rtpSock, "set": "0", "weight": "2", "description": "media 1"}); !strings.Contains(msg, `"url":"`+rtpSock+`"`) {
		t.Fatalf("add rtpengine: %q", msg)
	}
	if msg := b.press("/ui/rtpengine/disable"); !strings.Contains(msg, `"state":"disabled"`) || !strings.Contains(b.text("table"), "disabled") || b.confirms.Load() != 2 {
		t.Fatalf("rtpengine after Disable (confirmations %d): %q\n%s", b.confirms.Load(), msg, b.text("table"))
	}
	if msg := b.press("/ui/rtpengine/enable"); strings.HasPrefix(msg, "rtpengine.enable") == false {
		t.Fatalf("rtpengine Enable: %q", msg)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b.open("/ui/rtpengine")
		if got := b.text("table"); strings.Contains(got, "up") && !strings.Contains(got, "disabled") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rtpengine not back in service after Enable:\n%s", b.text("table"))
		}
	}
	b.shot("rtpengine")

	// The dashboard's counters move while sipp sends.
	b.open("/ui/")
	before := b.numberIn("#total-requests")
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "options.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-m", "40", "-r", "10", "127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	deadline = time.Now().Add(20 * time.Second)
	for b.numberIn("#total-requests") < before+10 {
		if time.Now().After(deadline) {
			t.Fatalf("dashboard requests total stayed at %v (was %v)", b.numberIn("#total-requests"), before)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if rate := b.numberIn("#tile-requests"); rate <= 0 {
		t.Fatalf("requests per second on the dashboard: %v", rate)
	}
	if r := <-done; r.Code != 0 {
		t.Fatalf("sipp: exit %d\n%s", r.Code, r.Output)
	}
	time.Sleep(4 * time.Second) // two more polls: the chart shows the run and its end
	b.shot("dashboard")

	// Every page renders; one screenshot each, and one at phone width.
	for _, p := range []string{"domains", "permissions", "bans", "locks", "fraud-events", "dialplan", "carriers", "dispatcher", "dialogs", "cdrs"} {
		b.open("/ui/" + p)
		b.shot(p)
	}
	b.run("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.open("/ui/gateways")
	b.shot("phone-gateways")
	b.run("desktop viewport", chromedp.EmulateViewport(1280, 900))

	// A page on another origin posts a form to the panel: refused.
	csrfBefore := srv.metrics()[`switchboard_mgmt_refused_total{reason="origin"}`]
	evil := evilPage(t, "http://"+srv.Mgmt+"/ui/domains/add")
	b.run("the other origin's page", chromedp.Navigate(evil), chromedp.WaitReady(chromedp.CSS("body")))
	deadline = time.Now().Add(5 * time.Second)
	for srv.metrics()[`switchboard_mgmt_refused_total{reason="origin"}`] == csrfBefore {
		if time.Now().After(deadline) {
			t.Fatal("the other origin's form was not refused by the Origin check")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(string(mgmtCall(t, srv, "domains.list", "")), "evil.example") {
		t.Fatal("a page on another origin added a domain through the panel")
	}
	b.shot("csrf-refused")

	// The read-only user sees the pages, no forms, and a POST made
	// anyway (with the session's own CSRF token) is refused.
	b.open("/ui/")
	b.logout()
	b.login("viewer", "viewer password 1")
	b.open("/ui/domains")
	forms := get(b, "read-only forms", chromedp.Evaluate[int](`document.querySelectorAll('form[action^="/ui/domains/"]').length`))
	status := get(b, "read-only post", chromedp.Evaluate[int](`(async () => {
		const body = new URLSearchParams({csrf: document.querySelector("main").dataset.csrf, domain: "ro.example"});
		const r = await fetch("/ui/domains/add", {method: "POST", body, redirect: "manual"});
		return r.status;
	})()`, chromedp.EvalAwaitPromise))
	if forms != 0 || status != http.StatusForbidden {
		t.Fatalf("read-only user: %d forms, a POST answered %d (want 0 and 403)", forms, status)
	}
	if strings.Contains(string(mgmtCall(t, srv, "domains.list", "")), "ro.example") {
		t.Fatal("a read-only user added a domain")
	}
	b.shot("read-only")
	// A read-only command's form is there for a read-only user: the
	// alias look-up, not the add.
	b.open("/ui/aliases")
	if n := get(b, "read-only alias forms", chromedp.Evaluate[int](`document.querySelectorAll('form[action="/ui/aliases/add"], form[action="/ui/aliases/del"]').length`)); n != 0 {
		t.Fatalf("read-only user: %d alias add/delete forms", n)
	}
	if msg := b.submit("lookup", map[string]string{"alias": "+33123456789@localhost"}); !strings.Contains(msg, `"target":"alice@localhost"`) {
		t.Fatalf("alias look-up as read-only user: %q", msg)
	}
	b.shot("read-only-aliases")
	// The session outlives a restart of the server (it is in the store).
	srv.restart()
	b.open("/ui/aliases")
	if loc := get(b, "location after a restart", chromedp.Evaluate[string](`location.pathname`)); loc != "/ui/aliases" {
		t.Fatalf("after a restart: at %s, want the page of the session, not the login", loc)
	}
	b.logout()

	// Wrong passwords lock the account, then even the right one is
	// refused (mgmt.panel.lockout_failures: 5 by default).
	for i := 0; i < 5; i++ {
		b.open("/ui/login")
		b.run("wrong password", chromedp.SetValue(chromedp.CSS("#user"), "ops"), chromedp.SetValue(chromedp.CSS("#password"), "not the password"),
			chromedp.Click(chromedp.CSS(`form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#login-error")))
	}
	b.open("/ui/login")
	b.run("right password while locked", chromedp.SetValue(chromedp.CSS("#user"), "ops"), chromedp.SetValue(chromedp.CSS("#password"), "ops password 1"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#login-error")))
	if got := b.text("#login-error"); !strings.Contains(got, "Too many failed logins") {
		t.Fatalf("right password after 5 wrong ones: %q", got)
	}
	b.shot("lockout")
	if m := srv.metrics(); m["switchboard_panel_lockouts_total"] < 1 || m[`switchboard_panel_logins_total{result="failed"}`] != 5 {
		t.Fatalf("lockout metrics: lockouts %v, failed %v", m["switchboard_panel_lockouts_total"], m[`switchboard_panel_logins_total{result="failed"}`])
	}
	if !srv.logged("panel login locked after repeated wrong passwords") {
		t.Fatal("the lockout is not logged")
	}
}

// numberIn reads a number shown in an element ("–" is -1).
func (b *panelBrowser) numberIn(sel string) float64 {
	b.t.Helper()
	s := strings.TrimSpace(b.text(sel))
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return -1
	}
	return v
}

// evilPage serves, on another loopback port, a page whose form posts
// itself to target, as a malicious site open in the operator's browser
// would; it returns the page's URL.
func evilPage(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html><body><form id="f" method="post" action="%s">
<input name="csrf" value="guessed"><input name="domain" value="evil.example"></form>
<script>document.getElementById("f").submit()</script></body></html>`, target)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// TestE2EPanelEndCall: a call sipp holds up is listed on the Calls page,
// and its "End call" button sends the BYE that ends it at the callee.
func TestE2EPanelEndCall(t *testing.T) {
	t.Parallel()
	needSipp(t)
	chromium := needChromium(t)
	srv := startServer(t, "routes: calls\n")
	panelCLI(t, srv, "add", "ops", "--password", "ops password 1")
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
			"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "20000", "-m", "1",
			"127.0.0.1:"+strconv.Itoa(uas))
	}()
	waitMetric(t, srv, "switchboard_dialog_confirmed", 1)

	b := newPanelBrowser(t, chromium, "http://"+srv.Mgmt, screenshotDir(t))
	b.login("ops", "ops password 1")
	b.open("/ui/dialogs")
	if got := b.text("table"); !strings.Contains(got, "confirmed") || !strings.Contains(got, "sip:callee@127.0.0.1") {
		t.Fatalf("calls page without the call:\n%s", got)
	}
	b.shot("dialogs-call")
	b.run("end the call",
		chromedp.Click(chromedp.CSS(`td.actions form[action="/ui/dialogs/end"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if msg := b.text(".flash"); strings.Contains(msg, "error") || b.confirms.Load() != 1 {
		t.Fatalf("end call: %q, confirmations %d", msg, b.confirms.Load())
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d (no BYE from End call?):\n%s", code, callee.out.String())
	}
	waitMetric(t, srv, `switchboard_dialog_ended_total{reason="ended"}`, 1)
	select {
	case <-done: // the caller's scenario did not expect the BYE: its result does not matter
	case <-time.After(30 * time.Second):
		t.Fatal("sipp caller still running")
	}
}

// TestE2EPanelCommands: every page's list command and every form's
// command is a command of the real binary, and each list is read-only
// (the API takes it as GET, as the panel runs it on a page view).
func TestE2EPanelCommands(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "")
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+srv.Mgmt+path, nil)
		req.Header.Set("Authorization", "Bearer "+srv.token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("/api/v1")
	var list struct {
		Result map[string]string `json:"result"`
	}
	if err := json.Unmarshal(body, &list); err != nil || code != 200 || len(list.Result) < 50 {
		t.Fatalf("the command list: %d %v %.200s", code, err, body)
	}
	for _, pg := range uipanel.Pages {
		if _, ok := list.Result[pg.List]; !ok {
			t.Errorf("page %s: no command %s", pg.Slug, pg.List)
		} else if code, body := get("/api/v1/" + pg.List); code == http.StatusMethodNotAllowed {
			t.Errorf("page %s: %s is not read-only: %s", pg.Slug, pg.List, body)
		}
		for _, f := range append(append([]uipanel.Form{}, pg.Forms...), pg.RowForms...) {
			if _, ok := list.Result[f.Cmd]; !ok {
				t.Errorf("page %s, form %s: no command %s", pg.Slug, f.ID, f.Cmd)
			}
		}
	}
}
