package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Calls through the real binary over TCP and TLS, and across transports.
//
// The installed sipp may be built without OpenSSL (Debian's sip-tester
// is), so the sipp peers of a TLS leg talk TCP to a TLS terminator written
// here with crypto/tls, and the proxy sees a real TLS connection: the
// caller's terminator dials the proxy's tls listener, the callee's
// terminator is the TLS server the proxy dials. Each scenario names its
// transport itself (Via SIP/2.0/TLS, Contact ...;transport=tls), so what
// the proxy reads is what a TLS phone would send.
//
// The proxy verifies the servers it dials against the system roots; the
// test points SSL_CERT_FILE of the server process at its own certificate,
// which crypto/x509 then takes as the only root file.

// testCert writes a self-signed ECDSA certificate for 127.0.0.1 and its
// key into dir.
func testCert(t *testing.T, dir string) (certFile, keyFile string, cert tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, cert, pool
}

// terminator relays byte streams between a listener and connections it
// dials, one dialled connection per accepted one: a TLS terminator when
// one side is TLS.
type terminator struct {
	ln    net.Listener
	dial  func() (net.Conn, error)
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	errs  []error // handshake and dial errors, for the failure message
}

func startTerminator(t *testing.T, ln net.Listener, dial func() (net.Conn, error)) *terminator {
	tm := &terminator{ln: ln, dial: dial}
	tm.wg.Add(1)
	go tm.accept()
	t.Cleanup(func() {
		ln.Close()
		tm.mu.Lock()
		for _, c := range tm.conns {
			c.Close()
		}
		tm.mu.Unlock()
		tm.wg.Wait()
		if t.Failed() && len(tm.errs) > 0 {
			t.Logf("terminator %s: %v", ln.Addr(), tm.errs)
		}
	})
	return tm
}

func (tm *terminator) Port() int { return tm.ln.Addr().(*net.TCPAddr).Port }

func (tm *terminator) accept() {
	defer tm.wg.Done()
	for {
		a, err := tm.ln.Accept()
		if err != nil {
			return
		}
		b, err := tm.dial()
		tm.mu.Lock()
		if err != nil {
			tm.errs = append(tm.errs, err)
			tm.mu.Unlock()
			a.Close()
			continue
		}
		tm.conns = append(tm.conns, a, b)
		tm.mu.Unlock()
		tm.wg.Add(2)
		go tm.copy(a, b)
		go tm.copy(b, a)
	}
}

// copy moves src to dst; the end of either direction ends both.
func (tm *terminator) copy(dst, src net.Conn) {
	defer tm.wg.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		tm.mu.Lock()
		tm.errs = append(tm.errs, err)
		tm.mu.Unlock()
	}
	dst.Close()
	src.Close()
}

// sippPeer is a sipp process run to its end (-m calls) in the background.
type sippPeer struct {
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

func startSippPeer(t *testing.T, args ...string) *sippPeer {
	t.Helper()
	p := &sippPeer{done: make(chan struct{})}
	p.cmd = exec.Command("sipp", append([]string{"-nostdin", "-timeout", "15s", "-timeout_error"}, args...)...)
	p.cmd.Dir = sippDir(t)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGUSR1) // sipp: quit
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns sipp's exit code, or -1 when it is still running after d.
func (p *sippPeer) wait(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -2
	}
	return 0
}

// sippMessages reads a sipp -trace_msg file and returns the messages it
// received, in order, with CRLF line ends.
func sippMessages(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	for _, part := range strings.Split(text, "message received [")[1:] {
		// "<n>] bytes :\n\n<message>\n\n---...--- date\n"
		_, rest, ok := strings.Cut(part, ":\n\n")
		if !ok {
			continue
		}
		if i := strings.Index(rest, "\n-----"); i >= 0 {
			rest = rest[:i]
		}
		rest = strings.TrimRight(rest, "\n")
		msgs = append(msgs, strings.ReplaceAll(rest, "\n", "\r\n"))
	}
	return msgs
}

// findMessage returns the first message whose start line begins with
// prefix (a method, or "SIP/2.0 200" with cseq naming the request).
func findMessage(msgs []string, prefix, cseq string) string {
	for _, m := range msgs {
		if strings.HasPrefix(m, prefix) && (cseq == "" || strings.Contains(m, "\r\nCSeq: "+cseq+"\r\n")) {
			return m
		}
	}
	return ""
}

// headerValues returns the values of the headers named name, in order,
// whether on lines of their own or joined by commas on one line (sipp's
// [last_Record-Route:] joins them). The scenarios use full header names.
func headerValues(msg, name string) []string {
	var vals []string
	for _, line := range strings.Split(msg, "\r\n")[1:] {
		if line == "" {
			break
		}
		n, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(n), name) {
			continue
		}
		// Split at commas outside <...> and quotes.
		start, angle, quote := 0, false, false
		for i := 0; i <= len(v); i++ {
			if i == len(v) || (v[i] == ',' && !angle && !quote) {
				vals = append(vals, strings.TrimSpace(v[start:i]))
				start = i + 1
				continue
			}
			switch v[i] {
			case '<':
				angle = !quote
			case '>':
				angle = false
			case '"':
				quote = !quote
			}
		}
	}
	return vals
}

func TestE2ETransports(t *testing.T) {
	t.Parallel()
	needSipp(t)
	dir := t.TempDir()
	certFile, keyFile, cert, pool := testCert(t, dir)
	tlsPort := freeSIPPort(t)
	srv := startServerWith(t, "routes: relay\ntls:\n  cert: "+strconv.Quote(certFile)+"\n  key: "+strconv.Quote(keyFile)+"\n"+
		"timers:\n  t1: 100ms\n  t2: 400ms\n  t4: 500ms\n  timer_c: 1s\n",
		serverOptions{
			Listen: "  - {proto: tls, address: \"127.0.0.1:" + strconv.Itoa(tlsPort) + "\"}\n",
			Env:    []string{"SSL_CERT_FILE=" + certFile},
		})
	port := strconv.Itoa(srv.Port)
	rrUDP := "<sip:127.0.0.1:" + port + ";lr>"
	rrTCP := "<sip:127.0.0.1:" + port + ";transport=tcp;lr>"
	rrTLS := "<sip:127.0.0.1:" + strconv.Itoa(tlsPort) + ";transport=tls;lr>"
	viaOut := map[string]string{
		"udp": "SIP/2.0/UDP 127.0.0.1:" + port + ";branch=z9hG4bK",
		"tcp": "SIP/2.0/TCP 127.0.0.1:" + port + ";branch=z9hG4bK",
		"tls": "SIP/2.0/TLS 127.0.0.1:" + strconv.Itoa(tlsPort) + ";branch=z9hG4bK",
	}

	cases := []struct {
		in, out string
		rr      []string // the Record-Route lines the callee gets, top first
	}{
		{"tls", "tls", []string{rrTLS}},
		{"udp", "tls", []string{rrTLS, rrUDP}},
		{"tls", "udp", []string{rrUDP, rrTLS}},
		{"tcp", "tcp", []string{rrTCP}},
		{"tcp", "tls", []string{rrTLS, rrTCP}},
	}
	for _, c := range cases {
		t.Run(c.in+"_to_"+c.out, func(t *testing.T) {
			before := srv.metrics()
			tmp := t.TempDir()

			// The callee, with a TLS terminator in front when the proxy
			// reaches it by TLS.
			uasPort := freeSIPPort(t)
			uasTransport, target := "u1", strconv.Itoa(uasPort)
			switch c.out {
			case "tcp":
				uasTransport, target = "t1", target+";transport=tcp"
			case "tls":
				uasTransport = "t1"
				ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
				if err != nil {
					t.Fatal(err)
				}
				tm := startTerminator(t, ln, func() (net.Conn, error) {
					return net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(uasPort), time.Second)
				})
				target = strconv.Itoa(tm.Port()) + ";transport=tls"
			}
			ruri := "sip:callee@127.0.0.1:" + target
			uasLog := filepath.Join(tmp, "uas_messages.log")
			uas := startSippPeer(t, "-sf", "uas_answer_contact.xml", "-t", uasTransport,
				"-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-m", "1",
				"-key", "contact", ruri, "-trace_msg", "-message_file", uasLog)

			// The caller, with a TLS terminator between it and the
			// proxy's tls listener when it calls by TLS.
			uacTransport, viaTransport, dst := "u1", "UDP", srv.Port
			switch c.in {
			case "tcp":
				uacTransport, viaTransport = "t1", "TCP"
			case "tls":
				uacTransport, viaTransport = "t1", "TLS"
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				tm := startTerminator(t, ln, func() (net.Conn, error) {
					d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second},
						Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
					return d.DialContext(context.Background(), "tcp", "127.0.0.1:"+strconv.Itoa(tlsPort))
				})
				dst = tm.Port()
			}
			uacPort := freeSIPPort(t)
			contact := "sip:caller@127.0.0.1:" + strconv.Itoa(uacPort)
			if uacTransport == "t1" {
				contact += ";transport=tcp"
			}
			time.Sleep(200 * time.Millisecond) // the callee listens
			uacLog := filepath.Join(tmp, "uac_messages.log")
			uac := startSippPeer(t, "-sf", "uac_call_transport.xml", "-t", uacTransport,
				"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-m", "1",
				"-key", "ruri", ruri, "-key", "via_transport", viaTransport, "-key", "contact", contact,
				"-trace_msg", "-message_file", uacLog,
				"127.0.0.1:"+strconv.Itoa(dst))

			if code := uac.wait(15 * time.Second); code != 0 {
				t.Errorf("sipp caller exit %d:\n%s", code, uac.out.String())
			}
			if code := uas.wait(5 * time.Second); code != 0 {
				t.Errorf("sipp callee exit %d:\n%s", code, uas.out.String())
			}
			uasMsgs := sippMessages(t, uasLog)
			uacMsgs := sippMessages(t, uacLog)
			if t.Failed() {
				t.Logf("callee received:\n%s", strings.Join(uasMsgs, "\n\n"))
				t.Logf("caller received:\n%s", strings.Join(uacMsgs, "\n\n"))
				return
			}

			// The INVITE the callee got: the proxy's Via for the outgoing
			// transport on top, and its Record-Route (two when the
			// transport changed: the callee's side on top).
			invite := findMessage(uasMsgs, "INVITE "+ruri+" SIP/2.0", "")
			if invite == "" {
				t.Fatalf("callee got no INVITE for %s:\n%s", ruri, strings.Join(uasMsgs, "\n\n"))
			}
			if via := headerValues(invite, "Via"); len(via) != 2 || !strings.HasPrefix(via[0], viaOut[c.out]) ||
				!strings.HasPrefix(via[1], "SIP/2.0/"+viaTransport+" 127.0.0.1:"+strconv.Itoa(uacPort)+";") {
				t.Errorf("INVITE Via %q, want the proxy's %q... over the caller's %s Via", via, viaOut[c.out], viaTransport)
			}
			if rr := unsignedRR(t, headerValues(invite, "Record-Route")); strings.Join(rr, "\n") != strings.Join(c.rr, "\n") {
				t.Errorf("INVITE Record-Route\n%q\nwant\n%q", rr, c.rr)
			}
			// The caller's 200 carries the same Record-Route (the callee
			// echoes it; the proxy passes it through).
			if ok := findMessage(uacMsgs, "SIP/2.0 200", "1 INVITE"); ok == "" {
				t.Errorf("caller got no 200 for the INVITE")
			} else if rr := unsignedRR(t, headerValues(ok, "Record-Route")); strings.Join(rr, "\n") != strings.Join(c.rr, "\n") {
				t.Errorf("200 Record-Route at the caller\n%q\nwant\n%q", rr, c.rr)
			}
			if findMessage(uacMsgs, "SIP/2.0 100", "1 INVITE") == "" {
				t.Errorf("caller got no 100 Trying from the proxy")
			}
			// ACK and BYE, sent by the caller with both Route entries,
			// reach the callee with the proxy's entries removed.
			for _, m := range []string{"ACK", "BYE"} {
				req := findMessage(uasMsgs, m+" ", "")
				if req == "" {
					t.Errorf("callee got no %s", m)
					continue
				}
				if line, _, _ := strings.Cut(req, "\r\n"); line != m+" "+ruri+" SIP/2.0" {
					t.Errorf("%s request line %q, want the callee's Contact %s", m, line, ruri)
				}
				if r := headerValues(req, "Route"); len(r) != 0 {
					t.Errorf("%s reached the callee with Route %q", m, r)
				}
				if via := headerValues(req, "Via"); len(via) != 2 || !strings.HasPrefix(via[0], viaOut[c.out]) {
					t.Errorf("%s Via %q, want the proxy's %q... on top", m, via, viaOut[c.out])
				}
			}

			after := srv.metrics()
			for _, p := range []string{c.in, c.out} {
				name := `switchboard_sip_packets_received_total{proto="` + strings.ToUpper(p) + `"}`
				if d := after[name] - before[name]; d < 1 {
					t.Errorf("%s: +%v, want traffic on %s", name, d, p)
				}
			}
			if d := after["switchboard_tls_handshake_failures_total"] - before["switchboard_tls_handshake_failures_total"]; d != 0 {
				t.Errorf("TLS handshake failures +%v", d)
			}
		})
	}

	// A callee whose certificate the proxy does not trust: the proxy's
	// handshake fails, nothing reaches the callee, and the caller gets the
	// branch's 503 as 500.
	t.Run("untrusted_callee", func(t *testing.T) {
		_, _, other, _ := testCert(t, t.TempDir())
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{other}})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			b := make([]byte, 4096)
			n, _ := c.Read(b) // runs the handshake; the proxy aborts it
			got <- string(b[:n])
		}()
		before := srv.metrics()
		ruri := "sip:callee@127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + ";transport=tls"
		reply := sendUDP(t, srv.Port, request("INVITE", ruri, "To: <"+ruri+">\r\nMax-Forwards: 70\r\n"), 4*time.Second)
		// RFC 3261 §8.1.3.1 makes a transport error a 503: the transport
		// reports the INVITE queued on the connection whose handshake
		// failed, and the branch ends with 503 at once (not on timer C,
		// 1 s here). A lone 503 goes upstream as 500 (§16.7 step 6).
		if st := statusLine(reply); st != "SIP/2.0 500 Server Internal Error" {
			t.Errorf("INVITE to an untrusted TLS callee: %q, want 500", st)
		}
		select {
		case m := <-got:
			if m != "" {
				t.Errorf("untrusted callee received %q", m)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("the proxy never connected to the callee")
		}
		after := srv.metrics()
		if d := after["switchboard_tls_handshake_failures_total"] - before["switchboard_tls_handshake_failures_total"]; d != 1 {
			t.Errorf("TLS handshake failures +%v, want +1", d)
		}
	})
}

var rrSigRE = regexp.MustCompile(`;sig=[0-9a-f]{16}>$`)

// unsignedRR checks that every Record-Route value carries the proxy's
// signature and returns them without it, for comparison.
func unsignedRR(t *testing.T, rr []string) []string {
	t.Helper()
	out := make([]string, len(rr))
	for i, v := range rr {
		if !rrSigRE.MatchString(v) {
			t.Errorf("Record-Route %q is not signed", v)
		}
		out[i] = rrSigRE.ReplaceAllString(v, ">")
	}
	return out
}
