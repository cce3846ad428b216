package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// IPv6 end to end: the binary listening on [::1] beside 127.0.0.1, sipp
// peers on ::1 (sipp writes [local_ip] in brackets for IPv6), calls over
// UDP, TCP and TLS on IPv6, and across the two families.

// freeSIPPort6 returns a port free on [::1] for both UDP and TCP a moment
// ago.
func freeSIPPort6(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		u, err := net.ListenPacket("udp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "[::1]:"+strconv.Itoa(port))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port on [::1]")
	return 0
}

// hostOf is the host of a SIP URI or Via for address ip ("127.0.0.1" or
// "::1"): IPv6 in brackets (RFC 3261 §25.1, RFC 5118).
func hostOf(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// dualStackServer starts the binary on the relay route set with UDP and
// TCP on 127.0.0.1 (the base) and UDP, TCP and TLS on [::1].
func dualStackServer(t *testing.T, extra string) (srv *testServer, port6, tls6 int, cert tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	port6, tls6 = freeSIPPort6(t), freeSIPPort6(t)
	certFile, keyFile, cert, pool := testCert(t, t.TempDir())
	srv = startServerWith(t, extra+"tls:\n  cert: "+strconv.Quote(certFile)+"\n  key: "+strconv.Quote(keyFile)+"\n",
		serverOptions{
			Listen: "  - {proto: udp, address: \"[::1]:" + strconv.Itoa(port6) + "\"}\n" +
				"  - {proto: tcp, address: \"[::1]:" + strconv.Itoa(port6) + "\"}\n" +
				"  - {proto: tls, address: \"[::1]:" + strconv.Itoa(tls6) + "\"}\n",
			Env: []string{"SSL_CERT_FILE=" + certFile},
		})
	return srv, port6, tls6, cert, pool
}

// TestE2EIPv6Calls: sipp calls through the binary over IPv6 on UDP, TCP
// and TLS, and between an IPv4 and an IPv6 side. The callee checks
// nothing itself; the test reads what each side received: the proxy's Via
// and Record-Route name the listener of each side with the address in
// brackets (two Record-Route values when the call changes family or
// transport, the callee's side on top), ACK and BYE follow the route set
// to the callee with the proxy's Route values removed.
func TestE2EIPv6Calls(t *testing.T) {
	needSipp(t)
	srv, port6, tls6, cert, pool := dualStackServer(t, "routes: relay\n")
	p4, p6, t6 := strconv.Itoa(srv.Port), strconv.Itoa(port6), strconv.Itoa(tls6)
	rr := map[string]string{
		"udp4": "<sip:127.0.0.1:" + p4 + ";lr>",
		"tcp4": "<sip:127.0.0.1:" + p4 + ";transport=tcp;lr>",
		"udp6": "<sip:[::1]:" + p6 + ";lr>",
		"tcp6": "<sip:[::1]:" + p6 + ";transport=tcp;lr>",
		"tls6": "<sip:[::1]:" + t6 + ";transport=tls;lr>",
	}
	via := map[string]string{
		"udp4": "SIP/2.0/UDP 127.0.0.1:" + p4 + ";branch=z9hG4bK",
		"udp6": "SIP/2.0/UDP [::1]:" + p6 + ";branch=z9hG4bK",
		"tcp6": "SIP/2.0/TCP [::1]:" + p6 + ";branch=z9hG4bK",
		"tls6": "SIP/2.0/TLS [::1]:" + t6 + ";branch=z9hG4bK",
	}
	cases := []struct {
		in, out string // transport and family of each side
		rr      []string
	}{
		{"udp6", "udp6", []string{rr["udp6"]}},
		{"tcp6", "tcp6", []string{rr["tcp6"]}},
		{"tls6", "tls6", []string{rr["tls6"]}},
		{"udp4", "udp6", []string{rr["udp6"], rr["udp4"]}},
		{"udp6", "udp4", []string{rr["udp4"], rr["udp6"]}},
		{"tcp4", "tls6", []string{rr["tls6"], rr["tcp4"]}},
	}
	for _, c := range cases {
		t.Run(c.in+"_to_"+c.out, func(t *testing.T) {
			tmp := t.TempDir()
			proto := func(s string) string { return s[:3] }
			ip := func(s string) string {
				if s[3] == '6' {
					return "::1"
				}
				return "127.0.0.1"
			}

			// The callee, behind a TLS terminator when reached by TLS.
			uasIP := ip(c.out)
			uasPort := freeSIPPort(t)
			if uasIP == "::1" {
				uasPort = freeSIPPort6(t)
			}
			uasTransport, target := "u1", strconv.Itoa(uasPort)
			switch proto(c.out) {
			case "tcp":
				uasTransport, target = "t1", target+";transport=tcp"
			case "tls":
				uasTransport = "t1"
				ln, err := tls.Listen("tcp", net.JoinHostPort(uasIP, "0"), &tls.Config{Certificates: []tls.Certificate{cert}})
				if err != nil {
					t.Fatal(err)
				}
				tm := startTerminator(t, ln, func() (net.Conn, error) {
					return net.DialTimeout("tcp", net.JoinHostPort(uasIP, strconv.Itoa(uasPort)), time.Second)
				})
				target = strconv.Itoa(tm.Port()) + ";transport=tls"
			}
			ruri := "sip:callee@" + hostOf(uasIP) + ":" + target
			uasLog := filepath.Join(tmp, "uas_messages.log")
			uas := startSippPeer(t, "-sf", "uas_answer_contact.xml", "-t", uasTransport,
				"-i", uasIP, "-p", strconv.Itoa(uasPort), "-m", "1",
				"-key", "contact", ruri, "-trace_msg", "-message_file", uasLog)

			// The caller, through a TLS terminator to the [::1] tls
			// listener when it calls by TLS.
			uacIP := ip(c.in)
			uacTransport, viaTransport := "u1", "UDP"
			dst := net.JoinHostPort(uacIP, p4)
			if uacIP == "::1" {
				dst = net.JoinHostPort(uacIP, p6)
			}
			switch proto(c.in) {
			case "tcp":
				uacTransport, viaTransport = "t1", "TCP"
			case "tls":
				uacTransport, viaTransport = "t1", "TLS"
				ln, err := net.Listen("tcp", net.JoinHostPort(uacIP, "0"))
				if err != nil {
					t.Fatal(err)
				}
				tm := startTerminator(t, ln, func() (net.Conn, error) {
					d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second},
						Config: &tls.Config{RootCAs: pool, ServerName: "::1"}}
					return d.DialContext(context.Background(), "tcp", "[::1]:"+t6)
				})
				dst = net.JoinHostPort(uacIP, strconv.Itoa(tm.Port()))
			}
			uacPort := freeSIPPort(t)
			if uacIP == "::1" {
				uacPort = freeSIPPort6(t)
			}
			contact := "sip:caller@" + hostOf(uacIP) + ":" + strconv.Itoa(uacPort)
			if uacTransport == "t1" {
				contact += ";transport=tcp"
			}
			time.Sleep(200 * time.Millisecond) // the callee listens
			uacLog := filepath.Join(tmp, "uac_messages.log")
			uac := startSippPeer(t, "-sf", "uac_call_transport.xml", "-t", uacTransport,
				"-i", uacIP, "-p", strconv.Itoa(uacPort), "-m", "1",
				"-key", "ruri", ruri, "-key", "via_transport", viaTransport, "-key", "contact", contact,
				"-trace_msg", "-message_file", uacLog, dst)

			if code := uac.wait(15 * time.Second); code != 0 {
				t.Errorf("sipp caller exit %d:\n%s", code, uac.out.String())
			}
			if code := uas.wait(5 * time.Second); code != 0 {
				t.Errorf("sipp callee exit %d:\n%s", code, uas.out.String())
			}
			uasMsgs, uacMsgs := sippMessages(t, uasLog), sippMessages(t, uacLog)
			if t.Failed() {
				t.Logf("callee received:\n%s", strings.Join(uasMsgs, "\n\n"))
				t.Logf("caller received:\n%s", strings.Join(uacMsgs, "\n\n"))
				t.Logf("server log:\n%s", srv.Log)
				return
			}
			invite := findMessage(uasMsgs, "INVITE "+ruri+" SIP/2.0", "")
			if invite == "" {
				t.Fatalf("callee got no INVITE for %s:\n%s", ruri, strings.Join(uasMsgs, "\n\n"))
			}
			outVia := via[c.out]
			if outVia == "" {
				outVia = "SIP/2.0/" + strings.ToUpper(proto(c.out)) + " " + hostOf(ip(c.out)) + ":"
			}
			vias := headerValues(invite, "Via")
			if len(vias) != 2 || !strings.HasPrefix(vias[0], outVia) ||
				!strings.HasPrefix(vias[1], "SIP/2.0/"+viaTransport+" "+hostOf(uacIP)+":"+strconv.Itoa(uacPort)+";") {
				t.Errorf("INVITE Via %q, want the proxy's %q... over the caller's", vias, outVia)
			}
			if got := unsignedRR(t, headerValues(invite, "Record-Route")); strings.Join(got, "\n") != strings.Join(c.rr, "\n") {
				t.Errorf("INVITE Record-Route\n%q\nwant\n%q", got, c.rr)
			}
			if ok := findMessage(uacMsgs, "SIP/2.0 200", "1 INVITE"); ok == "" {
				t.Errorf("caller got no 200 for the INVITE")
			}
			for _, m := range []string{"ACK", "BYE"} {
				req := findMessage(uasMsgs, m+" ", "")
				if line, _, _ := strings.Cut(req, "\r\n"); line != m+" "+ruri+" SIP/2.0" {
					t.Errorf("%s request line %q, want the callee's Contact %s", m, line, ruri)
				}
				if r := headerValues(req, "Route"); len(r) != 0 {
					t.Errorf("%s reached the callee with Route %q", m, r)
				}
			}
		})
	}
}
