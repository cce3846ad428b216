package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// A browser phone end to end: JsSIP (testdata/webrtc/jssip.min.js, built
// from the npm package by `make jssip`) in Debian's headless Chromium,
// driven over the DevTools protocol with chromedp. The page is served from
// 127.0.0.1 over HTTP (a secure context, so getUserMedia works, with
// Chromium's fake microphone) and registers over WSS, with digest
// authentication, to a certificate the test makes; Chromium trusts that
// certificate alone (its SPKI hash). Media is not relayed: the calls are
// signalling only.

// needChromium returns the Chromium binary, or skips the test.
func needChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not with -short")
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (scripts/test-deps.sh installs it)")
	return ""
}

// artefactDir is where the test keeps its screenshots: $SWB_TEST_ARTEFACTS
// (the Makefile sets it), else the test's temporary directory.
func artefactDir(t *testing.T) string {
	if d := os.Getenv("SWB_TEST_ARTEFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browserPage is one tab running testdata/webrtc/phone.html.
type browserPage struct {
	t    *testing.T
	ctx  context.Context
	name string
}

func (p *browserPage) navigate(url string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// eval runs a statement of the page's script.
func (p *browserPage) eval(js string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](js+"; true")); err != nil {
		p.t.Fatalf("%s: %s: %v (events %v)", p.name, js, err, p.events())
	}
}

func (p *browserPage) events() []string {
	ev, _ := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`window.phone ? phone.events : []`))
	return ev
}

// waitEvent waits until the phone reported an event starting with prefix.
func (p *browserPage) waitEvent(prefix string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev := p.events()
		if slices.ContainsFunc(ev, func(e string) bool { return strings.HasPrefix(e, prefix) }) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %q after %v; events %v", p.name, prefix, d, ev)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *browserPage) screenshot(file string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot of %s: %s", p.name, file)
}

// TestE2EWebRTCBrowser: alice's browser registers over WSS with digest
// authentication and calls bob, a sipp UAS registered over UDP; bob
// answers, alice hangs up (BYE); she calls again and bob hangs up. Then carol's page calls alice's: alice
// answers, carol hangs up. The proxy relays between WSS and UDP (double
// Record-Route) and between two WebSocket connections, reaching each
// browser over the connection it registered on. When the browser closes,
// alice's binding goes with her connection: a call to her gets 480.
func TestE2EWebRTCBrowser(t *testing.T) {
	needSipp(t)
	chromium := needChromium(t)
	dir := t.TempDir()
	certFile, keyFile, cert, _ := testCert(t, dir)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)

	// The page, from its own HTTP server: its origin is the one the WSS
	// listener accepts.
	page, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.FileServer(http.Dir("testdata/webrtc")), ReadHeaderTimeout: 5 * time.Second}
	go web.Serve(page)
	t.Cleanup(func() { web.Close() })
	origin := "http://" + page.Addr().String()

	wss := freeTCPAddr(t)
	srv := startServerWith(t, fmt.Sprintf("tls:\n  cert: %q\n  key: %q\nauth:\n  algorithms: [MD5]\n  check_uri: false\n", certFile, keyFile),
		serverOptions{Listen: fmt.Sprintf("  - {proto: wss, address: %q, path: /sip, origins: [%q]}\n", wss, origin)})
	// The listener's path and origins reach the transport: another
	// site's page, or another path, is refused.
	for _, c := range []struct{ path, origin, status string }{
		{"/sip", "https://evil.example.net", "403"},
		{"/other", origin, "404"},
	} {
		if got := wssUpgradeStatus(t, wss, c.path, c.origin); got != c.status {
			t.Errorf("upgrade to %s from %s: %s, want %s", c.path, c.origin, got, c.status)
		}
	}
	if got := srv.metrics()["switchboard_websocket_upgrade_failures_total"]; got != 2 {
		t.Errorf("switchboard_websocket_upgrade_failures_total %v, want 2", got)
	}
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "carol@localhost", "carol-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // as root; the test's pages are its own
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(800, 600),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	wsURL := "wss://" + wss + "/sip"
	open := func(ctx context.Context, name, user string) *browserPage {
		p := &browserPage{t: t, ctx: ctx, name: name}
		p.navigate(origin + "/phone.html")
		p.eval(fmt.Sprintf("phone.start(%q, %q, %q)", wsURL, "sip:"+user+"@localhost", user+"-pw"))
		p.waitEvent("registered", 15*time.Second)
		return p
	}
	alice := open(browser, "alice's page", "alice")
	l := bindings(t, srv, "alice@localhost")
	if len(l) != 1 || !strings.Contains(l[0].Contact, ".invalid;transport=ws") {
		t.Fatalf("alice's binding: %+v", l)
	}

	// alice calls bob, a sipp phone registered over UDP.
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	bob := startSippPeer(t, "-sf", "uas_webrtc.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	alice.eval(`phone.call("sip:bob@localhost")`)
	alice.waitEvent("confirmed", 15*time.Second)
	alice.eval(`phone.hangup()`)
	alice.waitEvent("ended local", 5*time.Second)
	if code := bob.wait(10 * time.Second); code != 0 {
		t.Fatalf("bob (sipp): exit %d\n%s", code, bob.out.String())
	}

	// Again, and bob hangs up: his BYE reaches alice over her WebSocket
	// (her Contact's host is .invalid), and her 200 comes back.
	bob = startSippPeer(t, "-sf", "uas_webrtc_bye.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1", "-d", "500")
	time.Sleep(200 * time.Millisecond)
	alice.eval(`phone.events = []; phone.call("sip:bob@localhost")`)
	alice.waitEvent("confirmed", 15*time.Second)
	alice.waitEvent("ended remote", 10*time.Second)
	if code := bob.wait(10 * time.Second); code != 0 {
		t.Fatalf("bob (sipp) hanging up: exit %d\n%s", code, bob.out.String())
	}

	// carol's page, a second tab, calls alice's.
	tab, cancelTab := chromedp.NewContext(browser)
	defer cancelTab()
	carol := open(tab, "carol's page", "carol")
	carol.eval(`phone.call("sip:alice@localhost")`)
	alice.waitEvent("incoming sip:carol@localhost", 10*time.Second)
	carol.waitEvent("confirmed", 15*time.Second)
	alice.waitEvent("confirmed", 5*time.Second)
	arts := artefactDir(t)
	carol.screenshot(filepath.Join(arts, "webrtc-carol.png"))
	carol.eval(`phone.hangup()`)
	carol.waitEvent("ended local", 5*time.Second)
	alice.waitEvent("ended remote", 5*time.Second)
	alice.screenshot(filepath.Join(arts, "webrtc-alice.png"))

	m := srv.metrics()
	if got := m[`switchboard_sip_packets_received_total{proto="WSS"}`]; got < 10 {
		t.Errorf("WSS packets received: %v", got)
	}

	// The browser goes away without unregistering: alice's binding goes
	// with her connection, and a call to her is answered 480 at once.
	cancelTab()
	cancelBrowser()
	cancelAlloc()
	if r := sippUA(t, srv, "uac_auth_call_480.xml", freeSIPPort(t), "bob", "bob-pw", "callee", "alice"); r.Code != 0 {
		t.Fatalf("call to alice after her browser closed: exit %d\n%s", r.Code, r.Output)
	}
	if l := bindings(t, srv, "alice@localhost"); len(l) != 0 {
		t.Errorf("alice still registered after her connection closed: %+v", l)
	}
}

// wssUpgradeStatus sends a WebSocket upgrade for path with Origin origin
// to the WSS listener at addr and returns the status code of the answer.
func wssUpgradeStatus(t *testing.T, addr, path, origin string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test's own server
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\nOrigin: %s\r\n\r\n", path, addr, origin)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("upgrade answer: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("upgrade answer %q", line)
	}
	return f[1]
}
