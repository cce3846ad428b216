package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadLine sends SIGHUP and returns the "reloaded" line it logs (the
// first after what the log held before).
func (s *testServer) reloadLine(t *testing.T) string {
	t.Helper()
	from := len(s.Log.String())
	s.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l := s.Log.String()[from:]
		if i := strings.Index(l, "msg=reloaded"); i >= 0 {
			if j := strings.IndexByte(l[i:], '\n'); j >= 0 {
				return l[i : i+j]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", s.Log)
		}
	}
}

// editConfig applies the replacements (old, new, ...) to the server's
// configuration file and appends more.
func (s *testServer) editConfig(t *testing.T, more string, replace ...string) {
	t.Helper()
	b, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(cfg, replace[i]) {
			t.Fatalf("%q not in the configuration:\n%s", replace[i], cfg)
		}
		cfg = strings.Replace(cfg, replace[i], replace[i+1], 1)
	}
	if err := os.WriteFile(s.Config, []byte(cfg+more), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2EReloadOutboundAndTLS: a SIGHUP that narrows outbound.allow takes
// effect at once (a request relayed to 127.0.0.2 before is refused after,
// and 127.0.0.2 receives nothing), a changed tls section is applied, and
// a changed outbound.resolver is logged as needing a restart. Before, the
// line said applied="" need_restart="" and the old values stayed in force.
func TestE2EReloadOutboundAndTLS(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: relay\n")
	caller, callee := newUDPPeer(t), newUDPPeerOn(t, "127.0.0.2")
	ruri := "sip:callee@127.0.0.2:" + strconv.Itoa(callee.Port())
	options := func() string {
		return request("OPTIONS", ruri, "To: <"+ruri+">\r\nMax-Forwards: 70\r\n")
	}
	caller.send(srv.Port, options())
	if got := callee.waitFor("OPTIONS ", 3*time.Second); got == "" {
		t.Fatal("the OPTIONS was not relayed to 127.0.0.2 before the reload")
	}

	srv.editConfig(t, "tls:\n  verify_server: false\n",
		`allow: [127.0.0.0/8, "::1"]`, `allow: [127.0.0.1/32]`,
		`resolver: "127.0.0.1:9"`, `resolver: "127.0.0.1:10"`)
	line := srv.reloadLine(t)
	for _, want := range []string{`applied=tls,outbound.allow `, `need_restart=outbound.resolver`} {
		if !strings.Contains(line, want) {
			t.Errorf("reload line %q lacks %s", line, want)
		}
	}
	second := options()
	id := "Call-ID: " + strings.SplitN(second[strings.Index(second, "Call-ID: ")+9:], "\r\n", 2)[0] + "\r\n"
	caller.send(srv.Port, second)
	var reply string
	for deadline := time.Now().Add(3 * time.Second); reply == "" && time.Now().Before(deadline); {
		for _, m := range caller.take(20 * time.Millisecond) {
			if strings.Contains(m, id) && strings.HasPrefix(m, "SIP/2.0 ") && !strings.HasPrefix(m, "SIP/2.0 1") {
				reply = m
			}
		}
	}
	if !strings.HasPrefix(reply, "SIP/2.0 5") { // the relay route set's 500 Relay Failed
		t.Errorf("after narrowing outbound.allow to 127.0.0.1/32, a request for 127.0.0.2 got %q, want it refused", statusLine(reply))
	}
	for _, m := range callee.take(200 * time.Millisecond) {
		if strings.Contains(m, id) {
			t.Fatalf("127.0.0.2 still received a request after outbound.allow left it out:\n%s", m)
		}
	}
}

// TestE2EReloadTLSCertificatePath: a SIGHUP that points tls.cert and
// tls.key at other files has the TLS listener serve the new certificate
// from the next handshake. Before, the line said "tls certificates"
// applied while the transport read the paths it started with again.
func TestE2EReloadTLSCertificatePath(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	certFile, keyFile, cert, _ := testCert(t, t.TempDir())
	newCert, newKey, renewed, _ := testCert(t, t.TempDir())
	tlsPort := freeSIPPort(t)
	srv := startServerWith(t, "tls:\n  cert: "+strconv.Quote(certFile)+"\n  key: "+strconv.Quote(keyFile)+"\n",
		serverOptions{Listen: "  - {proto: tls, address: \"127.0.0.1:" + strconv.Itoa(tlsPort) + "\"}\n"})
	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tlsPort), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), cert.Certificate[0]) {
		t.Fatal("not the configured certificate")
	}
	srv.editConfig(t, "", strconv.Quote(certFile), strconv.Quote(newCert), strconv.Quote(keyFile), strconv.Quote(newKey))
	if line := srv.reloadLine(t); !strings.Contains(line, `applied=tls need_restart=`) {
		t.Errorf("reload line %q: tls not applied", line)
	}
	if !bytes.Equal(served(), renewed.Certificate[0]) {
		t.Fatalf("after the reload the listener still serves the certificate of the old path\n%s", srv.Log)
	}
	// Unchanged, the files are read again: a certificate renewed in place.
	if line := srv.reloadLine(t); !strings.Contains(line, `applied="tls certificates"`) {
		t.Errorf("reload line %q: certificates not read again", line)
	}
}
