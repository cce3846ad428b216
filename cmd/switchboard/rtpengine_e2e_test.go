package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/modules/rtpengine/ng"
)

// rtpengineProc is Debian's rtpengine daemon, started for one test in
// userspace mode (no kernel module: --table=-1), without the system
// configuration (--config-file=none: its CLI and HTTP ports are one per
// host), on 127.0.0.1 with its own
// ng port and RTP ports of its own in 37000-37999 (the sipp scenarios check
// the SDP names a port of that range; rtpPorts), deleting sessions at once
// (--delete-delay=0).
type rtpengineProc struct {
	ng   int
	log  *syncBuffer
	seq  atomic.Int64
	kill func()
}

// rtpSlices counts the rtpengines the test process started: each takes the
// next hundred ports of 37000-37999 (ten slices, reused in turn). The tests
// run in parallel, and two rtpengines given the same range bind the same
// ports (ss -ulpn shows both on each): the kernel then hands one's RTP to
// the other, and a call's media stops.
var rtpSlices atomic.Int32

// rtpPorts returns the next slice of the RTP range.
func rtpPorts() (lo, hi int) {
	i := int(rtpSlices.Add(1)-1) % 10
	return 37000 + 100*i, 37000 + 100*i + 99
}

// startRtpengine starts an rtpengine for the test, on the next slice of
// RTP ports, and stops it when the test ends.
func startRtpengine(t *testing.T) *rtpengineProc {
	t.Helper()
	needSipp(t)
	lo, hi := rtpPorts()
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("rtpengine not installed: scripts/test-deps.sh installs rtpengine-daemon")
		}
		t.Skip("rtpengine not installed (Debian package rtpengine-daemon; scripts/test-deps.sh installs it)")
	}
	p := &rtpengineProc{ng: freeSIPPort(t), log: &syncBuffer{}}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--no-fallback",
		"--interface=127.0.0.1", "--listen-ng=127.0.0.1:"+strconv.Itoa(p.ng),
		"--port-min="+strconv.Itoa(lo), "--port-max="+strconv.Itoa(hi), "--delete-delay=0", "--timeout=60",
		"--pidfile="+filepath.Join(dir, "rtpengine.pid"))
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.kill = func() { cmd.Process.Kill(); <-done }
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("rtpengine log:\n%s", p.log)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if v, err := p.command("d7:command4:pinge"); err == nil && v == "pong" {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("rtpengine not answering ping:\n%s", p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// command sends a raw ng command and returns the answer's result.
func (p *rtpengineProc) command(cmd string) (string, error) {
	raw, err := p.raw(cmd)
	if err != nil {
		return "", err
	}
	var d ng.Decoder
	v, err := d.Decode(raw)
	if err != nil {
		return "", err
	}
	return string(v.Get("result").Bytes()), nil
}

// raw sends an ng command and returns the bencoded answer.
func (p *rtpengineProc) raw(cmd string) ([]byte, error) {
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(p.ng))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cookie := fmt.Sprintf("t%d_%d", os.Getpid(), p.seq.Add(1))
	if _, err := c.Write([]byte(cookie + " " + cmd)); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	ans, ok := strings.CutPrefix(string(buf[:n]), cookie+" ")
	if !ok {
		return nil, fmt.Errorf("answer %q", buf[:n])
	}
	return []byte(ans), nil
}

// calls lists the Call-IDs rtpengine has sessions for (ng "list").
func (p *rtpengineProc) calls(t *testing.T) []string {
	t.Helper()
	raw, err := p.raw("d7:command4:liste")
	if err != nil {
		t.Fatal(err)
	}
	var d ng.Decoder
	v, err := d.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for i := 0; i < v.Get("calls").Len(); i++ {
		out = append(out, string(v.Get("calls").Index(i).Bytes()))
	}
	return out
}

// packets returns, per tag of the call, the RTP packets rtpengine received
// from that party (ng "query": tags → medias → streams → stats).
// waitMedia waits for rtpengine to hold one session (10 s at most) and
// then, within d, to have received more than 10 RTP packets from each of
// its two parties.
func (p *rtpengineProc) waitMedia(t *testing.T, srv *testServer, d time.Duration) {
	t.Helper()
	var callID string
	for deadline := time.Now().Add(10 * time.Second); callID == ""; time.Sleep(50 * time.Millisecond) {
		if l := p.calls(t); len(l) == 1 {
			callID = l[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session in rtpengine\n%s", srv.Log)
		}
	}
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		pk := p.packets(t, callID)
		both := len(pk) == 2
		for _, n := range pk {
			both = both && n > 10
		}
		if both {
			t.Logf("RTP packets rtpengine received per party: %v", pk)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RTP packets per party: %v (want both above 10)", pk)
		}
	}
}

func (p *rtpengineProc) packets(t *testing.T, callID string) map[string]int64 {
	t.Helper()
	raw, err := p.raw("d7:command5:query7:call-id" + strconv.Itoa(len(callID)) + ":" + callID + "e")
	if err != nil {
		t.Fatal(err)
	}
	var d ng.Decoder
	v, err := d.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	tags := v.Get("tags")
	for i := 0; i < tags.Len(); i++ {
		k, tag := tags.Entry(i)
		n, _ := tag.Get("medias").Index(0).Get("streams").Index(0).Get("stats").Get("packets").Int()
		out[string(k)] = n
	}
	return out
}

// waitNoCalls waits until rtpengine lists no session.
func (p *rtpengineProc) waitNoCalls(t *testing.T, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(p.calls(t)) != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: rtpengine still has sessions %v", what, p.calls(t))
		}
	}
}

// TestE2ERtpengineCall: Switchboard with the rtpengine section and the real
// rtpengine daemon. A subscriber's call to a registered phone (two sipp,
// the caller playing G.711 from sipp's g711a.pcap, the callee echoing
// what it receives): the SDP each side receives names rtpengine's address
// and a port of its range (the scenarios check it), RTP flows both ways
// (rtpengine counts packets from both parties), and after the BYE
// rtpengine has no session. A call canceled while ringing and a call
// answered 486 leave no session either. The management commands list the
// instance, and the metrics count the commands and their latency.
func TestE2ERtpengineCall(t *testing.T) {
	t.Parallel()
	rtpe := startRtpengine(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n"+
		"rtpengine:\n  instances: [\"udp:127.0.0.1:"+strconv.Itoa(rtpe.ng)+"\"]\n  ping_interval: 1s\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}

	// The call, with media.
	callee := startSippPeer(t, "-sf", "uas_rtp_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1",
		"-mp", strconv.Itoa(freeSIPPort(t)), "-rtp_echo")
	time.Sleep(200 * time.Millisecond)
	done := make(chan sippResult, 1)
	go func() {
		done <- runSipp(t, 30*time.Second, "-sf", "uac_rtp_call.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-mp", strconv.Itoa(freeSIPPort(t)), "-m", "1",
			"-key", "domain", "localhost", "-key", "user", "alice", "-key", "callee", "bob", "-au", "alice", "-ap", "alice-pw",
			"127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	// While the caller plays its 4 s of audio: the session is there, and
	// rtpengine has received RTP from both parties.
	rtpe.waitMedia(t, srv, 3*time.Second)
	r := <-done
	if r.Code != 0 {
		t.Fatalf("caller: exit %d\n%s", r.Code, r.Output)
	}
	if code := callee.wait(10 * time.Second); code != 0 {
		t.Fatalf("callee: exit %d\n%s", code, callee.out.String())
	}
	rtpe.waitNoCalls(t, "after the BYE")

	// A call canceled while ringing: the offer's session is deleted.
	ringing := startSippPeer(t, "-sf", "uas_ring_cancel.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	r = runSipp(t, 20*time.Second, "-sf", "uac_rtp_cancel.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)), "-m", "1",
		"-d", "1000", "-key", "ruri", "sip:bob@localhost", "127.0.0.1:"+strconv.Itoa(srv.Port))
	if r.Code != 0 {
		t.Fatalf("canceled call: exit %d\n%s", r.Code, r.Output)
	}
	ringing.wait(10 * time.Second)
	rtpe.waitNoCalls(t, "after the CANCEL")

	// A call answered 486: the failure deletes the session.
	busy := startSippPeer(t, "-sf", "uas_busy.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call_486.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call to busy bob: exit %d\n%s", r.Code, r.Output)
	}
	busy.wait(10 * time.Second)
	rtpe.waitNoCalls(t, "after the 486")

	m := srv.metrics()
	for _, k := range []string{`switchboard_rtpengine_commands_total{command="offer"}`, `switchboard_rtpengine_commands_total{command="answer"}`,
		`switchboard_rtpengine_commands_total{command="delete"}`, `switchboard_rtpengine_responses_held_total`} {
		if m[k] < 1 {
			t.Errorf("%s = %v", k, m[k])
		}
	}
	if m[`switchboard_rtpengine_commands_total{command="offer"}`] != 3 {
		t.Errorf("offers: %v, want 3", m[`switchboard_rtpengine_commands_total{command="offer"}`])
	}
	if m["switchboard_rtpengine_ng_latency_seconds_count"] < 5 || m["switchboard_rtpengine_instances_up"] != 1 {
		t.Errorf("latency count %v, instances up %v", m["switchboard_rtpengine_ng_latency_seconds_count"], m["switchboard_rtpengine_instances_up"])
	}
	if m[`switchboard_rtpengine_errors_total{reason="timeout"}`] != 0 || m[`switchboard_rtpengine_errors_total{reason="error"}`] != 0 {
		t.Errorf("errors: %v", m)
	}
}

// sdpInvite is an INVITE from another domain (no digest needed) to
// bob@localhost with body as its SDP.
func sdpInvite(n, body string) string {
	return "INVITE sip:bob@localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-rtpe" + n + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:carol@example.org>;tag=f" + n + "\r\nTo: <sip:bob@localhost>\r\n" +
		"Call-ID: rtpe" + n + "@e2e\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:LOCALPORT>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

const goodSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"

// TestE2ERtpengineRefusals: what a call gets when media relay cannot be
// set up. A body that says application/sdp but is garbage gets 488
// "Malformed SDP" without rtpengine being asked; an SDP rtpengine refuses
// (a host name as connection address, valid SDP) gets 488 with rtpengine's reason; neither leaves
// a session. With rtpengine not answering (a silent port), a call gets 503
// "Media Relay Unavailable" after the retries, the instance is listed as
// down, and with on_unavailable: relay the call goes to the callee with
// its own SDP instead.
func TestE2ERtpengineRefusals(t *testing.T) {
	t.Parallel()
	rtpe := startRtpengine(t)
	const sippAuth = "auth:\n  algorithms: [MD5]\n  check_uri: false\n" // sipp 3.6: MD5, uri of the server
	srv := startServer(t, sippAuth+"rtpengine:\n  instances: [\"udp:127.0.0.1:"+strconv.Itoa(rtpe.ng)+"\"]\n")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	if r := sendUDP(t, srv.Port, sdpInvite("1", "this is not\r\nan SDP body\r\n"), 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 488 Malformed SDP\r\n") {
		t.Fatalf("garbage SDP: %q", r)
	}
	fqdn := strings.Replace(goodSDP, "c=IN IP4 127.0.0.1", "c=IN IP4 media.example.org", 1)
	if r := sendUDP(t, srv.Port, sdpInvite("2", fqdn), 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 488 Not Acceptable Here (media relay: Failed to parse SDP)\r\n") {
		t.Fatalf("SDP rtpengine refuses: %q", r)
	}
	if l := rtpe.calls(t); len(l) != 0 {
		t.Fatalf("sessions left: %v", l)
	}
	m := srv.metrics()
	if m[`switchboard_rtpengine_errors_total{reason="bad_sdp"}`] != 1 || m[`switchboard_rtpengine_errors_total{reason="error"}`] != 1 {
		t.Fatalf("errors: bad_sdp %v, error %v", m[`switchboard_rtpengine_errors_total{reason="bad_sdp"}`], m[`switchboard_rtpengine_errors_total{reason="error"}`])
	}

	// rtpengine silent: 503 after timeout × (retries + 1).
	dead := freeSIPPort(t)
	srv2 := startServer(t, sippAuth+"rtpengine:\n  instances: [\"udp:127.0.0.1:"+strconv.Itoa(dead)+"\"]\n  timeout: 100ms\n  retries: 1\n")
	addUser(t, srv2, "bob@localhost", "bob-pw")
	if r := sippUA(t, srv2, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	start := time.Now()
	if r := sendUDP(t, srv2.Port, sdpInvite("3", goodSDP), 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 503 Media Relay Unavailable\r\n") {
		t.Fatalf("rtpengine silent: %q", r)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("503 after %v, before the retry", d)
	}
	code, body := srv2.api("rtpengine.list", "")
	if code != 200 || !strings.Contains(string(body), `"state": "down"`) {
		t.Fatalf("rtpengine.list: %d %s", code, body)
	}
	if m := srv2.metrics(); m[`switchboard_rtpengine_errors_total{reason="timeout"}`] != 1 || m["switchboard_rtpengine_instances_up"] != 0 {
		t.Fatalf("timeouts %v, up %v", m[`switchboard_rtpengine_errors_total{reason="timeout"}`], m["switchboard_rtpengine_instances_up"])
	}
	// Disabled by the operator, then enabled (and pinged again).
	if code, body := srv2.api("rtpengine.disable", `{"instance":"udp:127.0.0.1:`+strconv.Itoa(dead)+`"}`); code != 200 || !strings.Contains(string(body), `"state": "disabled"`) {
		t.Fatalf("rtpengine.disable: %d %s", code, body)
	}
	if code, _ := srv2.api("rtpengine.enable", `{"instance":"udp:127.0.0.9:1"}`); code != 404 {
		t.Fatalf("rtpengine.enable of an unknown instance: %d", code)
	}

	// on_unavailable: relay: the call reaches the callee with its own SDP.
	srv3 := startServer(t, sippAuth+"rtpengine:\n  instances: [\"udp:127.0.0.1:"+strconv.Itoa(dead)+"\"]\n  timeout: 100ms\n  retries: 0\n  on_unavailable: relay\n")
	addUser(t, srv3, "bob@localhost", "bob-pw")
	if r := sippUA(t, srv3, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sendUDP(t, srv3.Port, sdpInvite("4", goodSDP), 3*time.Second); !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") || strings.Contains(r, "m=audio 37") {
		t.Fatalf("relay without rtpengine: %q", r)
	}
	callee.cmd.Process.Kill()
}

// TestE2ERtpengineFailover: two real rtpengines; one is killed. Calls whose
// Call-ID chose it are sent to the other after the retries (each call gets
// its 200 with an SDP of the surviving rtpengine's range), the dead one is
// listed down and counted, and calls go straight to the survivor while it
// is out.
func TestE2ERtpengineFailover(t *testing.T) {
	t.Parallel()
	a, b := startRtpengine(t), startRtpengine(t)
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n"+
		"rtpengine:\n  instances: [\"udp:127.0.0.1:"+strconv.Itoa(a.ng)+"\", \"udp:127.0.0.1:"+strconv.Itoa(b.ng)+"\"]\n"+
		"  timeout: 100ms\n  retries: 1\n  disable_timeout: 1m\n")
	addUser(t, srv, "bob@localhost", "bob-pw")
	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	const calls = 8
	startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", strconv.Itoa(calls))
	time.Sleep(200 * time.Millisecond)
	a.kill()
	for i := 0; i < calls; i++ {
		r := sendUDP(t, srv.Port, sdpInvite("fo"+strconv.Itoa(i), goodSDP), 5*time.Second)
		if !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") {
			t.Fatalf("call %d: %q", i, r)
		}
	}
	if n := len(b.calls(t)); n != calls {
		t.Fatalf("the surviving rtpengine has %d sessions, want %d", n, calls)
	}
	m := srv.metrics()
	if m["switchboard_rtpengine_instance_down_total"] != 1 || m["switchboard_rtpengine_instances_up"] != 1 || m[`switchboard_rtpengine_errors_total{reason="timeout"}`] != 0 {
		t.Fatalf("down %v, up %v, timeouts %v", m["switchboard_rtpengine_instance_down_total"], m["switchboard_rtpengine_instances_up"], m[`switchboard_rtpengine_errors_total{reason="timeout"}`])
	}
	code, body := srv.api("rtpengine.list", "")
	if code != 200 || strings.Count(string(body), `"state": "down"`) != 1 || strings.Count(string(body), `"state": "up"`) != 1 {
		t.Fatalf("rtpengine.list: %d %s", code, body)
	}
}

// TestE2ERtpengineRelayRoutes: the benchmark route set "relay" with
// rtpengine.instances set (the sipbench media scenario) relays a call's
// SDP through rtpengine both ways: the callee's 200 reaches the caller
// with rtpengine's port, and rtpengine has the session.
func TestE2ERtpengineRelayRoutes(t *testing.T) {
	t.Parallel()
	rtpe := startRtpengine(t)
	srv := startServer(t, "routes: relay\nrtpengine:\n  instances: [\"udp:127.0.0.1:"+strconv.Itoa(rtpe.ng)+"\"]\n")
	uasPort := freeSIPPort(t)
	startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	inv := strings.Replace(sdpInvite("rl", goodSDP), "INVITE sip:bob@localhost", "INVITE sip:bob@127.0.0.1:"+strconv.Itoa(uasPort), 1)
	r := sendUDP(t, srv.Port, inv, 5*time.Second)
	if !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") || !strings.Contains(r, "\r\nm=audio 37") {
		t.Fatalf("200 through relay + rtpengine: %q", r)
	}
	if l := rtpe.calls(t); len(l) != 1 || l[0] != "rtperl@e2e" {
		t.Fatalf("rtpengine sessions %v", l)
	}
}
