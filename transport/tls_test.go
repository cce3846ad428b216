package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a CA and certificates it signed, written as PEM files.
type testPKI struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	pool   *x509.CertPool
}

var serial int64 = 100

func newPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), caCert: cert, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(cert)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a certificate for the names and IPs, for server and client
// use, and returns the files and the serial number.
func (p *testPKI) issue(t testing.TB, file string, dns []string, client bool) (certFile, keyFile string, sn int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	sn = serial
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: file},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.dir, file+".pem")
	keyFile = filepath.Join(p.dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile, sn
}

func (p *testPKI) clientCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	cf, kf, _ := p.issue(t, name, nil, true)
	c, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startTLS(t *testing.T, pki *testPKI, h Handler, extra func(*Config)) (*Transport, int64) {
	t.Helper()
	cf, kf, sn := pki.issue(t, "server", []string{"sip.example.com"}, false)
	cfg := Config{
		Listeners:   []ListenerConfig{{Proto: TLS, Addr: "127.0.0.1:0"}},
		TLSCertFile: cf,
		TLSKeyFile:  kf,
	}
	if extra != nil {
		extra(&cfg)
	}
	return startTransport(t, cfg, h), sn
}

func dialTLSClient(to netip.AddrPort, cfg *tls.Config) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

func TestTLSHandshakeAndRoundTrip(t *testing.T) {
	pki := newPKI(t, "ca")
	rec := newRecorder()
	tr, sn := startTLS(t, pki, rec, nil)
	l := tr.Listeners()[0]
	c, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.PeerCertificates[0].SerialNumber.Int64() != sn || st.Version < tls.VersionTLS12 {
		t.Fatalf("serial %v version %x", st.PeerCertificates[0].SerialNumber, st.Version)
	}
	msg := sipMsg("INVITE", "v=0\r\n")
	// Split across TLS records and with a ping in front.
	c.Write([]byte("\r\n\r\n" + msg[:30]))
	time.Sleep(10 * time.Millisecond)
	c.Write([]byte(msg[30:]))
	p := rec.wait(t, 1)[0]
	if string(p.Data) != msg || p.Proto != TLS || p.Listener != l || p.Conn == 0 {
		t.Fatalf("packet %+v", p)
	}
	resp := "SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n"
	if err := tr.SendConn(p.Conn, []byte(resp)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2+len(resp))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "\r\n"+resp {
		t.Fatalf("got %q %v", buf, err)
	}
	// Minimum version: TLS 1.1 is refused.
	if _, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS11, ServerName: "sip.example.com"}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func TestTLSSNIAndReload(t *testing.T) {
	pki := newPKI(t, "ca")
	other, otherKey, otherSN := pki.issue(t, "other", []string{"other.example.com"}, false)
	tr, sn := startTLS(t, pki, newRecorder(), func(c *Config) {
		c.TLSCertificates = []CertKeyFiles{{other, otherKey}}
	})
	l := tr.Listeners()[0]
	served := func(name string) int64 {
		t.Helper()
		c, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := served("sip.example.com"); got != sn {
		t.Fatalf("default certificate %d, want %d", got, sn)
	}
	if got := served("other.example.com"); got != otherSN {
		t.Fatalf("SNI certificate %d, want %d", got, otherSN)
	}
	// Replace the default certificate on disk and reload.
	_, _, newSN := pki.issue(t, "server", []string{"sip.example.com"}, false)
	if err := tr.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	if got := served("sip.example.com"); got != newSN {
		t.Fatalf("after reload %d, want %d", got, newSN)
	}
	// A broken file leaves the current certificates in place.
	os.WriteFile(filepath.Join(pki.dir, "server.pem"), []byte("garbage"), 0o600)
	if err := tr.ReloadCertificates(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	if got := served("sip.example.com"); got != newSN {
		t.Fatalf("after failed reload %d, want %d", got, newSN)
	}
}

func TestMutualTLS(t *testing.T) {
	pki := newPKI(t, "trunk-ca")
	rogue := newPKI(t, "rogue-ca")
	rec := newRecorder()
	tr, _ := startTLS(t, pki, rec, func(c *Config) {
		c.TLSClientCAFile = pki.caFile
		c.TLSRequireClientCert = true
	})
	l := tr.Listeners()[0]
	try := func(certs []tls.Certificate) error {
		c, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com", Certificates: certs})
		if err != nil {
			return err
		}
		defer c.Close()
		// With TLS 1.3 the server's verdict on the client certificate
		// arrives after the client's handshake: a round trip shows it.
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		_, err = io.ReadFull(c, buf)
		return err
	}
	if err := try([]tls.Certificate{pki.clientCert(t, "trunk1")}); err != nil {
		t.Fatalf("client with a certificate from the CA refused: %v", err)
	}
	if err := try(nil); err == nil {
		t.Fatal("client without certificate accepted")
	}
	if err := try([]tls.Certificate{rogue.clientCert(t, "rogue")}); err == nil {
		t.Fatal("client with a certificate from another CA accepted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().TLSHandshakeKO != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("handshake failures %d", tr.Stats().TLSHandshakeKO)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Outbound TLS: Send opens a verified connection; the peer's requests on
// it reach the handler; the next Send reuses it.
func TestTLSOutbound(t *testing.T) {
	pki := newPKI(t, "ca")
	rec := newRecorder()
	tr, _ := startTLS(t, pki, rec, func(c *Config) { c.TLSRootCAFile = pki.caFile })
	l := tr.Listeners()[0]
	pcf, pkf, _ := pki.issue(t, "peer", nil, false)
	pcert, _ := tls.LoadX509KeyPair(pcf, pkf)
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pcert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := ln.Addr().(*net.TCPAddr).AddrPort()
	req := sipMsg("INVITE", "")
	if err := tr.Send(l, peer, []byte(req)); err != nil {
		t.Fatal(err)
	}
	pc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, len(req))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != req {
		t.Fatalf("peer got %q %v", buf, err)
	}
	bye := sipMsg("BYE", "")
	pc.Write([]byte(bye))
	p := rec.wait(t, 1)[0]
	if string(p.Data) != bye || p.Src != peer || p.Proto != TLS {
		t.Fatalf("packet %+v", p)
	}
	if err := tr.Send(l, peer, []byte(req)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != req {
		t.Fatalf("peer got %q %v", buf, err)
	}
	if st := tr.Stats(); st.ConnsDialed != 1 || st.ConnsOpen != 1 {
		t.Fatalf("dialed %d open %d", st.ConnsDialed, st.ConnsOpen)
	}
	// A server whose certificate does not verify is refused.
	rogue := newPKI(t, "rogue")
	rcf, rkf, _ := rogue.issue(t, "rogue", nil, false)
	rcert, _ := tls.LoadX509KeyPair(rcf, rkf)
	rln, _ := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{rcert}})
	defer rln.Close()
	go func() {
		if c, err := rln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	tr.Send(l, rln.Addr().(*net.TCPAddr).AddrPort(), []byte(req))
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().TLSHandshakeKO != 1 {
		if time.Now().After(deadline) {
			t.Fatal("unverified server accepted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Half a message, or no handshake at all, then silence: both are released
// and leave no goroutine or descriptor behind.
func TestTLSStallReleased(t *testing.T) {
	pki := newPKI(t, "ca")
	tr, _ := startTLS(t, pki, newRecorder(), func(c *Config) {
		c.IdleTimeout = 150 * time.Millisecond
		c.DialTimeout = 200 * time.Millisecond
	})
	l := tr.Listeners()[0]
	time.Sleep(20 * time.Millisecond)
	g0, f0 := countGoroutines(), countFDs(t)
	half, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	half.Write([]byte(sipMsg("INVITE", "v=0\r\n")[:50]))
	silent, err := net.Dial("tcp", l.Local.String())
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, half, 3*time.Second)
	expectClosed(t, silent, 3*time.Second)
	half.Close()
	silent.Close()
	expectNoLeak(t, g0, f0)
	st := tr.Stats()
	if st.ConnsOpen != 0 || st.ConnsIdle != 1 || st.TLSHandshakeKO != 1 {
		t.Fatalf("%+v", st)
	}
}

// Connect with a server name verifies the peer's certificate for that name
// (a trunk known by its domain); without it the IP must be in the
// certificate.
func TestTLSConnectServerName(t *testing.T) {
	pki := newPKI(t, "ca")
	tr, _ := startTLS(t, pki, newRecorder(), func(c *Config) { c.TLSRootCAFile = pki.caFile })
	l := tr.Listeners()[0]
	// A peer certificate with a DNS name only.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(999), Subject: pkix.Name{CommonName: "trunk"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"trunk.example.com"},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, pki.caCert, &key.PublicKey, pki.caKey)
	peerCert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	serve := func() (netip.AddrPort, chan string, func()) {
		ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{peerCert}})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			tc := c.(*tls.Conn)
			if tc.Handshake() != nil {
				got <- ""
				return
			}
			got <- tc.ConnectionState().ServerName
			io.Copy(io.Discard, c)
		}()
		return ln.Addr().(*net.TCPAddr).AddrPort(), got, func() { ln.Close() }
	}
	addr, got, stop := serve()
	defer stop()
	id, err := tr.Connect(l, addr, "trunk.example.com")
	if err != nil || id == 0 {
		t.Fatal(id, err)
	}
	if sni := <-got; sni != "trunk.example.com" {
		t.Fatalf("SNI %q", sni)
	}
	if id2, _ := tr.Connect(l, addr, "trunk.example.com"); id2 != id {
		t.Fatalf("second Connect opened %d, want %d", id2, id)
	}
	if err := tr.Send(l, addr, []byte(sipMsg("OPTIONS", ""))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().ConnsDialed != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%+v", tr.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Without the name, verification for the IP fails.
	addr2, _, stop2 := serve()
	defer stop2()
	tr.Send(l, addr2, []byte(sipMsg("OPTIONS", "")))
	for tr.Stats().TLSHandshakeKO != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%+v", tr.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReloadTLSNewPaths: ReloadTLS puts settings other than the files'
// contents in force: a certificate at another path is served from the
// next handshake, and ReloadCertificates then reads that path again (not
// the one the transport started with); server verification turned off
// lets the next outbound connection reach a server the CA did not sign.
// A path that cannot be read leaves everything as it was.
func TestReloadTLSNewPaths(t *testing.T) {
	pki := newPKI(t, "ca")
	tr, sn := startTLS(t, pki, newRecorder(), func(c *Config) { c.TLSRootCAFile = pki.caFile })
	l := tr.Listeners()[0]
	served := func() int64 {
		t.Helper()
		c, err := dialTLSClient(l.Local, &tls.Config{RootCAs: pki.pool, ServerName: "sip.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := served(); got != sn {
		t.Fatalf("serial %d, want %d", got, sn)
	}

	cf, kf, newSN := pki.issue(t, "renewed", []string{"sip.example.com"}, false)
	if err := tr.ReloadTLS(Config{TLSCertFile: cf, TLSKeyFile: kf, TLSRootCAFile: pki.caFile}); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != newSN {
		t.Fatalf("after ReloadTLS with a new path: serial %d, want %d", got, newSN)
	}
	_, _, againSN := pki.issue(t, "renewed", []string{"sip.example.com"}, false) // same path, new contents
	if err := tr.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != againSN {
		t.Fatalf("ReloadCertificates read another path: serial %d, want %d", got, againSN)
	}
	if err := tr.ReloadTLS(Config{TLSCertFile: filepath.Join(pki.dir, "missing.pem"), TLSKeyFile: kf}); err == nil {
		t.Fatal("a missing certificate file was accepted")
	}
	if got := served(); got != againSN {
		t.Fatalf("after a failed ReloadTLS: serial %d, want %d", got, againSN)
	}

	// Outbound: a server of another CA is refused until verification is
	// turned off.
	rogue := newPKI(t, "rogue")
	rcf, rkf, _ := rogue.issue(t, "rogue", nil, false)
	rcert, _ := tls.LoadX509KeyPair(rcf, rkf)
	rln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{rcert}})
	if err != nil {
		t.Fatal(err)
	}
	defer rln.Close()
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := rln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := c.Read(buf); err == nil {
					got <- buf[:n]
				}
			}()
		}
	}()
	peer := rln.Addr().(*net.TCPAddr).AddrPort()
	req := sipMsg("OPTIONS", "")
	tr.Send(l, peer, []byte(req))
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().TLSHandshakeKO != 1 {
		if time.Now().After(deadline) {
			t.Fatal("unverified server accepted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tr.ReloadTLS(Config{TLSCertFile: cf, TLSKeyFile: kf, TLSRootCAFile: pki.caFile, TLSInsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		tr.Send(l, peer, []byte(req))
		select {
		case b := <-got:
			if string(b) != req {
				t.Fatalf("peer got %q", b)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("verify_server off not applied to the next connection")
		}
	}
}
