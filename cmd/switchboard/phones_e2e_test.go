package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Interop with real phones: Debian's baresip and linphonec (linphone-cli)
// register with digest authentication through an outbound proxy (the
// server), alice calls bob, bob answers, the call is up, alice hangs up.
// Two phones of each family, over UDP and over TCP, every socket on
// 127.0.0.1, media included; the phones' DNS points at a closed loopback
// port. The server's state is checked through the management API and
// /metrics, the phones' through their own event output.

const (
	phoneWait = 10 * time.Second // any one step: register, answer, hang up
	// A phone's first REGISTER goes out within a second of its start, and
	// the whole call takes about one more: a step that needs more than
	// phoneWait has failed.
)

// phone is a user agent process the test drives.
type phone interface {
	// dial calls uri; hangup ends the current call.
	dial(uri string)
	hangup()
	// established and closed report whether the phone's own output
	// says the call is up, and that it ended.
	established() bool
	closed() bool
	// output is what the phone printed (and logged), for failures.
	output() string
	// sent reports whether the phone's SIP trace shows a request with
	// method with a header line for which match is true.
	sent(method string, match func(line string) bool) bool
	// stop asks the phone to quit (it unregisters) and waits for it,
	// killing it after a while; it reports whether it quit by itself.
	stop() bool
}

// phoneFamily starts phones of one kind.
type phoneFamily struct {
	name    string // the binary
	pkg     string // the Debian package that installs it
	start   func(t *testing.T, srv *testServer, proto, user string, autoAnswer bool) phone
	srvConf string // what the server needs for these phones
	alg     string // the digest algorithm the phone answers with
}

var phoneFamilies = []phoneFamily{
	{
		name: "baresip", pkg: "baresip-core", start: startBaresip,
		// baresip 1.0 (libre 1.1) knows only MD5, and a 401 with any
		// SHA-256 challenge in it, even after an MD5 one, makes it give
		// up ("Register: Function not implemented").
		srvConf: "auth:\n  algorithms: [MD5]\n",
		alg:     "MD5",
	},
	// linphonec 5.1 answers the SHA-256 challenge the default
	// configuration offers first.
	{name: "linphonec", pkg: "linphone-cli", start: startLinphone, alg: "SHA-256"},
}

// needPhone skips the test when the phone's binary is not installed.
func needPhone(t *testing.T, f phoneFamily) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	if _, err := exec.LookPath(f.name); err != nil {
		t.Skipf("%s not installed: Debian package %s (scripts/test-deps.sh installs it)", f.name, f.pkg)
	}
}

// TestE2EPhones: for each phone family and transport, two phones register
// (digest, outbound proxy), alice calls bob, bob answers automatically,
// both see the call up, alice hangs up and both see it end.
func TestE2EPhones(t *testing.T) {
	t.Parallel()
	for _, f := range phoneFamilies {
		t.Run(f.name, func(t *testing.T) {
			needPhone(t, f)
			for _, proto := range []string{"udp", "tcp"} {
				t.Run(proto, func(t *testing.T) { phoneCall(t, f, proto) })
			}
		})
	}
}

func phoneCall(t *testing.T, f phoneFamily, proto string) {
	srv := startServer(t, f.srvConf)
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	t0 := time.Now()
	alice := f.start(t, srv, proto, "alice", false)
	bob := f.start(t, srv, proto, "bob", true)

	for _, aor := range []string{"alice@localhost", "bob@localhost"} {
		waitRegistered(t, srv, aor, proto)
	}
	before := srv.metrics()
	registered := time.Since(t0)

	alice.dial("sip:bob@localhost")
	waitPhones(t, "the call up on both phones", func() bool { return alice.established() && bob.established() }, alice, bob)
	up := time.Since(t0)
	alice.hangup()
	waitPhones(t, "the call ended on both phones", func() bool { return alice.closed() && bob.closed() }, alice, bob)
	t.Logf("from the phones' start: both registered in %v, the call up in %v, ended in %v", registered, up, time.Since(t0))

	// The INVITE carried the outbound proxy as a preloaded Route (RFC
	// 3261 §8.1.2): the case the provider route set must accept.
	route := "Route: <sip:127.0.0.1:" + strconv.Itoa(srv.Port) + ";transport=" + proto + ";lr>"
	if !alice.sent("INVITE", func(l string) bool { return strings.EqualFold(l, route) }) {
		t.Errorf("alice's INVITE did not carry %q:\n%s", route, alice.output())
	}
	// The credentials answered the algorithm expected of the phone (MD5
	// when the algorithm parameter is left out, RFC 7616 §3.4).
	algOf := func(l string) string {
		_, a, ok := strings.Cut(l, "algorithm=")
		if !ok {
			return "MD5"
		}
		a, _, _ = strings.Cut(a, ",")
		return strings.Trim(strings.TrimSpace(a), `"`)
	}
	if !alice.sent("REGISTER", func(l string) bool { return strings.HasPrefix(l, "Authorization:") && algOf(l) == f.alg }) {
		t.Errorf("alice's REGISTER has no Authorization with algorithm %s:\n%s", f.alg, alice.output())
	}

	after := srv.metrics()

	// Both quit, unregistering: the bindings are gone.
	var wg sync.WaitGroup
	for _, p := range []phone{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !p.stop() {
				t.Errorf("a phone did not quit within 3 s:\n%s", p.output())
			}
		}()
	}
	wg.Wait()
	for _, aor := range []string{"alice@localhost", "bob@localhost"} {
		if l := bindings(t, srv, aor); len(l) != 0 {
			t.Errorf("%s still registered after the phone quit: %+v", aor, l)
		}
	}
	delta := func(name string) float64 { return after[name] - before[name] }
	for _, m := range []string{"INVITE", "BYE"} {
		if got := delta(`switchboard_requests_relayed_total{method="` + m + `"}`); got < 1 {
			t.Errorf("%s relayed: +%v, want at least 1", m, got)
		}
	}
	// The ACK of the 2xx is routed and forwarded statelessly.
	if got := delta(`switchboard_requests_routed_total{method="ACK"}`); got < 1 {
		t.Errorf("ACK routed: +%v, want at least 1", got)
	}
	if got := delta(`switchboard_replies_received_total{class="2xx"}`); got < 2 {
		t.Errorf("2xx received from the phones: +%v, want at least 2 (INVITE, BYE)", got)
	}
	// Everything went over the phones' transport.
	other := "UDP"
	if proto == "udp" {
		other = "TCP"
	}
	if got := delta(`switchboard_sip_packets_received_total{proto="` + other + `"}`); got != 0 {
		t.Errorf("%s packets received during a %s call: +%v", other, proto, got)
	}
	if got := delta(`switchboard_sip_packets_received_total{proto="` + strings.ToUpper(proto) + `"}`); got < 5 {
		t.Errorf("%s packets received: +%v, want at least 5", proto, got)
	}
}

// waitRegistered waits until aor has one binding whose contact uses proto.
func waitRegistered(t *testing.T, srv *testServer, aor, proto string) {
	t.Helper()
	deadline := time.Now().Add(phoneWait)
	for {
		l := bindings(t, srv, aor)
		if len(l) == 1 {
			if tcp := strings.Contains(strings.ToLower(l[0].Contact), "transport=tcp"); tcp != (proto == "tcp") {
				t.Fatalf("%s registered %s over %s", aor, l[0].Contact, proto)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not registered after %v: %+v", aor, phoneWait, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPhones waits until cond holds, failing with the phones' output.
func waitPhones(t *testing.T, what string, cond func() bool, phones ...phone) {
	t.Helper()
	deadline := time.Now().Add(phoneWait)
	for !cond() {
		if time.Now().After(deadline) {
			var b strings.Builder
			for i, p := range phones {
				fmt.Fprintf(&b, "--- phone %d:\n%s\n", i, p.output())
			}
			t.Fatalf("no %s after %v\n%s", what, phoneWait, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// phoneProcess is what both families share: the process, its output and
// its stop.
type phoneProcess struct {
	t       *testing.T
	cmd     *exec.Cmd
	quit    func() // asks the phone to quit
	out     syncBuffer
	exited  chan struct{}
	waitErr error // once exited
}

func (p *phoneProcess) start(t *testing.T, cmd *exec.Cmd, quit func(), name string, logs func() string) {
	p.t, p.cmd, p.quit = t, cmd, quit
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p.exited = make(chan struct{})
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, logs())
		}
	})
}

func (p *phoneProcess) stop() bool {
	if !p.running() {
		return true
	}
	p.quit()
	select {
	case <-p.exited:
		return true
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return false
	}
}

func (p *phoneProcess) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// ---- baresip ----

// baresipPhone is baresip driven through its ctrl_tcp module: commands
// and events as JSON in netstrings on a TCP connection.
type baresipPhone struct {
	phoneProcess
	user string
	ctrl net.Conn

	mu     sync.Mutex
	events []string // event types in order ("CALL_ESTABLISHED", ...)
}

func startBaresip(t *testing.T, srv *testServer, proto, user string, autoAnswer bool) phone {
	// The ports are free when picked, not reserved: a phone that could
	// not bind one (another test took it meanwhile) exits at once and is
	// started again on new ones.
	for attempt := 1; ; attempt++ {
		p, err := tryBaresip(t, srv, proto, user, autoAnswer)
		if err == nil {
			return p
		}
		if attempt == 3 {
			t.Fatalf("baresip %s: %v\n%s", user, err, p.output())
		}
		t.Logf("baresip %s, attempt %d: %v", user, attempt, err)
	}
}

func tryBaresip(t *testing.T, srv *testServer, proto, user string, autoAnswer bool) (*baresipPhone, error) {
	dir := t.TempDir()
	sipPort := freeSIPPort(t)
	ctrl := freeTCPAddr(t)
	// No audio device: the source and the player are two unconnected
	// aubridge devices (silence; the test checks signalling). net_interface
	// keeps SIP, SDP and RTP on 127.0.0.1; the DNS server is a closed
	// loopback port, so no name is ever looked up elsewhere. RTP ports
	// stay below the kernel's ephemeral range, where the free ports
	// picked for SIP come from.
	config := "poll_method\tepoll\n" +
		"sip_listen\t127.0.0.1:" + strconv.Itoa(sipPort) + "\n" +
		"net_interface\t127.0.0.1\n" +
		"dns_server\t127.0.0.1:9\n" +
		"audio_player\taubridge,play\n" +
		"audio_source\taubridge,src\n" +
		"audio_alert\taubridge,alert\n" +
		"rtp_ports\t10000-20000\n" +
		"module_path\t/usr/lib/baresip/modules\n" +
		"module\tg711.so\n" +
		"module\taubridge.so\n" +
		"module_tmp\taccount.so\n" +
		"module_app\tmenu.so\n" +
		"module_app\tctrl_tcp.so\n" +
		"ctrl_tcp_listen\t" + ctrl + "\n"
	outbound := "sip:127.0.0.1:" + strconv.Itoa(srv.Port) + ";transport=" + proto
	account := "<sip:" + user + "@localhost;transport=" + proto + ">;auth_pass=" + user + "-pw;outbound=\"" + outbound + "\";regint=300"
	if autoAnswer {
		account += ";answermode=auto"
	}
	for name, content := range map[string]string{"config": config, "accounts": account + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &baresipPhone{user: user}
	// -s: SIP trace on stdout, for the Route check and for failures.
	cmd := exec.Command("baresip", "-f", dir, "-s")
	// baresip unregisters and exits on SIGTERM.
	p.start(t, cmd, func() { cmd.Process.Signal(syscall.SIGTERM) }, "baresip "+user, p.output)
	return p, p.connect(t, ctrl)
}

// connect opens the control connection once baresip listens on it.
func (p *baresipPhone) connect(t *testing.T, addr string) error {
	deadline := time.Now().Add(phoneWait)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			p.ctrl = c
			t.Cleanup(func() { c.Close() })
			go p.read(c)
			return nil
		}
		if !p.running() {
			return fmt.Errorf("exited at start (%v)", p.waitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no control connection on %s after %v: %v", addr, phoneWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// read collects the event types baresip sends on the control connection.
func (p *baresipPhone) read(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		msg := make([]byte, n+1) // the netstring's trailing comma
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		var ev struct {
			Event bool   `json:"event"`
			Type  string `json:"type"`
		}
		if json.Unmarshal(msg[:n], &ev) == nil && ev.Event {
			p.mu.Lock()
			p.events = append(p.events, ev.Type)
			p.mu.Unlock()
		}
	}
}

func (p *baresipPhone) command(cmd, params string) {
	if p.ctrl == nil {
		return
	}
	j, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": cmd})
	p.ctrl.SetWriteDeadline(time.Now().Add(time.Second))
	p.ctrl.Write([]byte(strconv.Itoa(len(j)) + ":" + string(j) + ","))
}

func (p *baresipPhone) dial(uri string) { p.command("dial", uri) }
func (p *baresipPhone) hangup()         { p.command("hangup", "") }

func (p *baresipPhone) saw(event string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e == event {
			return true
		}
	}
	return false
}

func (p *baresipPhone) established() bool { return p.saw("CALL_ESTABLISHED") }
func (p *baresipPhone) closed() bool      { return p.saw("CALL_CLOSED") }

func (p *baresipPhone) output() string {
	p.mu.Lock()
	ev := strings.Join(p.events, " ")
	p.mu.Unlock()
	return p.out.String() + "\nevents: " + ev
}

// sent looks through the SIP trace ("-s") for a request with the header.
func (p *baresipPhone) sent(method string, match func(string) bool) bool {
	return traceHas(p.out.String(), method, match)
}

// traceHas reports whether a SIP trace holds a request line of method
// followed, before the next blank line, by a header line match accepts.
func traceHas(trace, method string, match func(string) bool) bool {
	for _, block := range strings.Split(strings.ReplaceAll(trace, "\r\n", "\n"), "\n"+method+" sip:")[1:] {
		head, _, _ := strings.Cut(block, "\n\n")
		for _, line := range strings.Split(head, "\n") {
			if match(strings.TrimSpace(line)) {
				return true
			}
		}
	}
	return false
}

// ---- linphonec ----

// linphonePhone is linphonec reading commands on stdin and printing call
// states on stdout; its debug log (the SIP trace) goes to a file.
type linphonePhone struct {
	phoneProcess
	user  string
	stdin io.WriteCloser
	log   string
	mu    sync.Mutex
}

func startLinphone(t *testing.T, srv *testServer, proto, user string, autoAnswer bool) phone {
	home := t.TempDir()
	// linphonec does not start its SIP stack without a place for its
	// database.
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o755); err != nil {
		t.Fatal(err)
	}
	// -1: a port the phone picks itself (no race with other tests for a
	// port picked here), 0: the transport is off.
	udpPort, tcpPort := -1, 0
	if proto == "tcp" {
		udpPort, tcpPort = 0, -1
	}
	server := "sip:127.0.0.1:" + strconv.Itoa(srv.Port) + ";transport=" + proto
	// reg_proxy is where REGISTER goes (liblinphone sends REGISTER
	// without a preloaded Route), reg_route the outbound proxy every
	// other request carries as Route. bind_address keeps SIP and SDP on
	// 127.0.0.1; port 0 turns a transport off.
	rc := fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=%d
sip_tls_port=0
bind_address=127.0.0.1
guess_hostname=0
ipv6=0
default_proxy=0
register_only_when_network_is_up=0
[net]
firewall_policy=0
dns_srv_enabled=0
[rtp]
audio_rtp_port=10000-20000
video_rtp_port=10000-20000
[video]
capture=0
display=0
[proxy_0]
reg_proxy=<%s>
reg_route=<%s;lr>
reg_identity=<sip:%s@localhost>
reg_expires=300
reg_sendregister=1
publish=0
[auth_info_0]
username=%s
passwd=%s-pw
realm=localhost
domain=localhost
`, udpPort, tcpPort, server, server, user, user, user)
	rcFile := filepath.Join(home, "linphonerc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &linphonePhone{user: user, log: filepath.Join(home, "linphonec.log")}
	args := []string{"-c", rcFile, "-d", "6", "-l", p.log}
	if autoAnswer {
		args = append(args, "-a")
	}
	cmd := exec.Command("linphonec", args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = in
	p.start(t, cmd, func() { p.command("quit") }, "linphonec "+user, p.output)
	return p
}

func (p *linphonePhone) command(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.stdin, line+"\n")
}

func (p *linphonePhone) dial(uri string) { p.command("call " + uri) }
func (p *linphonePhone) hangup()         { p.command("terminate") }

// linphonec prints "Call 1 with sip:bob@localhost connected." and
// "Call 1 with sip:bob@localhost ended (No error)."
func (p *linphonePhone) established() bool { return p.printed(" connected.") }
func (p *linphonePhone) closed() bool      { return p.printed(" ended (") }

func (p *linphonePhone) printed(s string) bool {
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, "Call ") && strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (p *linphonePhone) output() string {
	log, _ := os.ReadFile(p.log)
	return p.out.String() + "\n--- log:\n" + string(log)
}

func (p *linphonePhone) sent(method string, match func(string) bool) bool {
	log, _ := os.ReadFile(p.log)
	return traceHas(string(log), method, match)
}
