package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/sipdns/dnstest"
)

// IPv6 end to end: the binary listening on [::1] beside 127.0.0.1, sipp
// peers on ::1 (sipp writes [local_ip] in brackets for IPv6), calls over
// UDP, TCP and TLS on IPv6, and across the two families.

// freeSIPPort6 returns a port free on [::1] for both UDP and TCP a moment
// ago.
func freeSIPPort6(t *testing.T) int {
	t.Helper()
	if u, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		u.Close()
	}
	return freePort(t, "::1")
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
	t.Parallel()
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

// sendUDP6 sends msg to [::1]:port from a socket on [::1] and returns the
// first final response ("" when none came within wait). LOCALPORT in msg
// becomes the socket's port.
func sendUDP6(t *testing.T, port int, msg string, wait time.Duration) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg = strings.ReplaceAll(msg, "LOCALPORT", strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
	if _, err := c.WriteTo([]byte(msg), &net.UDPAddr{IP: net.IPv6loopback, Port: port}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return ""
		}
		if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 1") {
			return string(buf[:n])
		}
	}
}

// TestE2EIPv6Registrar: registration and calls over IPv6 with the
// provider route set. bob registers from [::1] (the binding keeps the v6
// contact and source); alice calls him from [::1] and from 127.0.0.1 (the
// second call crosses families: two Record-Route values, checked by the
// caller's scenario for the IPv4 one).
func TestE2EIPv6Registrar(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv, port6, _, _, _ := dualStackServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	server6 := "[::1]:" + strconv.Itoa(port6)
	bobPort := freeSIPPort6(t)

	ua := func(scenario, ip string, port int, server, user, password string, keys ...string) sippResult {
		args := []string{"-sf", scenario, "-i", ip, "-p", strconv.Itoa(port), "-m", "1",
			"-key", "domain", "localhost", "-key", "user", user, "-au", user, "-ap", password}
		for i := 0; i+1 < len(keys); i += 2 {
			args = append(args, "-key", keys[i], keys[i+1])
		}
		return runSipp(t, 20*time.Second, append(args, server)...)
	}
	if r := ua("register.xml", "::1", bobPort, server6, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob over IPv6: exit %d\n%s", r.Code, r.Output)
	}
	var l []struct{ Contact, Received, Socket string }
	if err := json.Unmarshal(mgmtCall(t, srv, "registrations.list", `{"aor":"bob@localhost"}`), &l); err != nil {
		t.Fatal(err)
	}
	want := "[::1]:" + strconv.Itoa(bobPort)
	if len(l) != 1 || l[0].Contact != "sip:bob@"+want || l[0].Received != "udp:"+want || l[0].Socket != "udp:"+server6 {
		t.Fatalf("bob's bindings %+v, want contact and source %s on %s", l, want, server6)
	}

	startSipp(t, "-sf", "uas_callee.xml", "-i", "::1", "-p", strconv.Itoa(bobPort), "-m", "2")
	time.Sleep(200 * time.Millisecond)
	if r := ua("uac_auth_call.xml", "::1", freeSIPPort6(t), server6, "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call over IPv6: exit %d\n%s\n%s", r.Code, r.Output, srv.Log)
	}
	if r := ua("uac_auth_call.xml", "127.0.0.1", freeSIPPort(t), "127.0.0.1:"+strconv.Itoa(srv.Port), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call from IPv4 to the IPv6 binding: exit %d\n%s\n%s", r.Code, r.Output, srv.Log)
	}
}

// TestE2EIPv6Resolver: RFC 3263 to an IPv6-only next hop: the SRV of
// v6.test names a host with an AAAA record and no A record, and the relay
// route set calls sip:callee@v6.test from IPv4: the INVITE leaves from the
// [::1] listener to the sipp callee on ::1, and the call completes. The
// [::1] listener has advertise "[::1]:port", which once came out as
// "::1:port" in Via and Record-Route.
func TestE2EIPv6Resolver(t *testing.T) {
	t.Parallel()
	needSipp(t)
	uas := freeSIPPort6(t)
	z := dnstest.NewZone(t,
		dnstest.SRV("_sip._udp.v6.test", 300, 10, 0, uas, "host6.v6.test"),
		dnstest.A("host6.v6.test", 300, "::1"),
	)
	port6 := freeSIPPort6(t)
	srv := startServerWith(t, "routes: relay\n", serverOptions{Resolver: z.Addr,
		// advertise in the form a user writes it: the Via and
		// Record-Route must keep the brackets.
		Listen: "  - {proto: udp, address: \"[::1]:" + strconv.Itoa(port6) + "\", advertise: \"[::1]:" + strconv.Itoa(port6) + "\"}\n"})
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "::1", "-p", strconv.Itoa(uas), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@v6.test",
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "200", "-m", "1",
		"127.0.0.1:"+strconv.Itoa(srv.Port))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s\n%s", res.Code, res.Output, srv.Log)
	}
	if code := callee.wait(10 * time.Second); code != 0 {
		t.Errorf("sipp callee exit %d:\n%s", code, callee.out.String())
	}
	aaaa := false
	for _, q := range z.Log() {
		aaaa = aaaa || strings.HasPrefix(q, "host6.v6.test/AAAA/")
	}
	if !aaaa {
		t.Errorf("no AAAA query: %v", z.Log())
	}

	// A request over IPv6 whose Via names another address is relayed with
	// received=::1 (an IPv6 address without brackets, RFC 5118 §4.5) and
	// the source port in rport.
	peer, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	ruri := "sip:peer@[::1]:" + strconv.Itoa(peer.LocalAddr().(*net.UDPAddr).Port)
	opt := "OPTIONS " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-v6recv;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:a@[2001:db8::1]>;tag=v6\r\nTo: <" + ruri + ">\r\n" +
		"Call-ID: v6-received@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteTo([]byte(opt), &net.UDPAddr{IP: net.IPv6loopback, Port: port6}); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := peer.ReadFrom(buf)
	if err != nil {
		t.Fatalf("OPTIONS not relayed over IPv6: %v", err)
	}
	vias := headerValues(string(buf[:n]), "Via")
	wantVia := "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-v6recv;rport=" + strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port) + ";received=::1"
	if len(vias) != 2 || !strings.HasPrefix(vias[0], "SIP/2.0/UDP [::1]:"+strconv.Itoa(port6)+";branch=z9hG4bK") || vias[1] != wantVia {
		t.Fatalf("relayed Via %q, want ours on [::1] over %q", vias, wantVia)
	}
}
