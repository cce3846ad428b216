package main

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
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

	"switchboard/modules/siptrace"
)

// The HEP end-to-end tests: a sipp call through the server with
// siptrace's collectors on loopback. What the server sends is checked two
// ways: decoded in the test (siptrace.ParseHEP3), and by tools that know
// HEP on their own: sngrep (Debian package sngrep) listens as a collector
// and writes the SIP messages it decodes to a pcap, which tshark (Debian
// package tshark) reads. Wireshark has no HEP dissector of its own (4.0),
// so sngrep does the decoding and tshark the reading of the SIP; both
// are compared with what sipp logged it sent and received (-trace_msg).

// needTool skips the test when a program is missing; scripts/test-deps.sh
// installs them for make test.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (Debian package %s; scripts/test-deps.sh installs it)", name, pkg)
	}
}

// hepSink is a HEP collector on a loopback UDP port that keeps every
// datagram with its arrival time.
type hepSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	pkts [][]byte
}

func newHEPSink(t *testing.T) *hepSink {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadBuffer(4 << 20)
	s := &hepSink{conn: conn}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.pkts = append(s.pkts, append([]byte(nil), buf[:n]...))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s
}

func (s *hepSink) addr() string { return s.conn.LocalAddr().String() }

func (s *hepSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

// waitFor waits until n packets arrived, then a little more for any
// packet beyond n, and returns them all.
func (s *hepSink) waitFor(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.count() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.pkts...)
}

// wireMsg is one message on the wire as a sipp peer logged it.
type wireMsg struct {
	src, dst netip.AddrPort
	data     string
}

func (w wireMsg) String() string {
	line, _, _ := strings.Cut(w.data, "\r\n")
	return w.src.String() + " > " + w.dst.String() + " " + line
}

// sippLogHead is the line before each message of sipp -trace_msg:
// "UDP message sent (497 bytes):" or "UDP message received [544] bytes :".
var sippLogHead = regexp.MustCompile(`^(UDP|TCP) message (sent|received) (?:\((\d+) bytes\)|\[(\d+)\] bytes) ?:\n\n`)

// readSippLog reads a sipp -trace_msg file: each message sent or received
// by the peer at self, to or from the proxy.
func readSippLog(t *testing.T, path string, self, proxy netip.AddrPort) []wireMsg {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const sep = "----------------------------------------------- "
	var out []wireMsg
	for _, block := range strings.Split(string(b), sep)[1:] {
		_, rest, ok := strings.Cut(block, "\n") // the date
		if !ok {
			continue
		}
		m := sippLogHead.FindStringSubmatch(rest)
		if m == nil {
			t.Fatalf("%s: unexpected entry: %.200q", path, rest)
		}
		n, _ := strconv.Atoi(m[3] + m[4])
		data := rest[len(m[0]):]
		if len(data) < n {
			t.Fatalf("%s: entry of %d bytes holds %d", path, n, len(data))
		}
		w := wireMsg{src: self, dst: proxy, data: data[:n]}
		if m[2] == "received" {
			w.src, w.dst = proxy, self
		}
		out = append(out, w)
	}
	return out
}

// takeMatch removes from want the message equal to w, reporting whether
// there was one.
func takeMatch(want []wireMsg, w wireMsg) ([]wireMsg, bool) {
	for i, x := range want {
		if x == w {
			return append(want[:i:i], want[i+1:]...), true
		}
	}
	return want, false
}

// TestE2EHEPCaptureOfACall: one call, INVITE to BYE, from a sipp caller
// through the relay route set to a sipp callee, with siptrace sending to
// two collectors: the test's socket and sngrep. Every message either peer
// sent or received is captured exactly once, in its direction, with the
// addresses, ports, Call-ID and bytes of the wire; the node id, password
// and time are those of the configuration and of the call. sngrep decodes
// the same packets on its own, and tshark reads the SIP it wrote.
func TestE2EHEPCaptureOfACall(t *testing.T) {
	t.Parallel()
	needSipp(t)
	needTool(t, "sngrep", "sngrep")
	needTool(t, "tshark", "tshark")
	dir := t.TempDir()

	sink := newHEPSink(t)
	sngPort := freeSIPPort(t)
	sngPcap := filepath.Join(dir, "sngrep.pcap")
	sng := exec.Command("sngrep", "-N", "-q", "-L", "udp:127.0.0.1:"+strconv.Itoa(sngPort), "-O", sngPcap)
	var sngOut syncBuffer
	sng.Stdout, sng.Stderr = &sngOut, &sngOut
	if err := sng.Start(); err != nil {
		t.Fatal(err)
	}
	sngDone := make(chan struct{})
	go func() { sng.Wait(); close(sngDone) }()
	t.Cleanup(func() {
		sng.Process.Kill()
		<-sngDone
	})

	srv := startServer(t, fmt.Sprintf("routes: relay\nsiptrace:\n  collectors: [%q, \"udp:127.0.0.1:%d\"]\n  node_id: 2001\n  password: hep-pw\n",
		sink.addr(), sngPort))
	proxy := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(srv.Port))
	uasPort, uacPort := freeSIPPort(t), freeSIPPort(t)
	uasLog, uacLog := filepath.Join(dir, "uas.log"), filepath.Join(dir, "uac.log")
	start := time.Now()
	callee := startSippPeer(t, "-sf", "uas_check_route.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-m", "1",
		"-trace_msg", "-message_file", uasLog)
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uacPort),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uasPort),
		"-rsa", proxy.String(), "-d", "100", "-m", "1",
		"-trace_msg", "-message_file", uacLog,
		"127.0.0.1:"+strconv.Itoa(uasPort))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d:\n%s", code, callee.out.String())
	}

	uac := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(uacPort))
	uas := netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(uasPort))
	wire := append(readSippLog(t, uacLog, uac, proxy), readSippLog(t, uasLog, uas, proxy)...)
	// INVITE, 180, 200, ACK, BYE, 200 on each leg, and the 100 Trying to
	// the caller; more if a peer retransmitted (then both sides see it).
	if len(wire) < 13 {
		t.Fatalf("sipp logged %d messages, want at least 13:\n%v", len(wire), wire)
	}
	pkts := sink.waitFor(t, len(wire))
	end := time.Now()

	// The test's own decoding: every field of every packet.
	want := append([]wireMsg(nil), wire...)
	for i, p := range pkts {
		var r siptrace.Record
		if err := siptrace.ParseHEP3(p, &r); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		w := wireMsg{src: r.Src, dst: r.Dst, data: string(r.Payload)}
		var ok bool
		if want, ok = takeMatch(want, w); !ok {
			t.Errorf("packet %d is no message of the wire, or one seen twice: %v", i, w)
			continue
		}
		if r.Proto.String() != "UDP" || r.NodeID != 2001 || string(r.Password) != "hep-pw" {
			t.Errorf("packet %d (%v): proto %v, node %d, password %q", i, w, r.Proto, r.NodeID, r.Password)
		}
		if callID := headerOf(w.data, "Call-ID"); string(r.CallID) != callID || callID == "" {
			t.Errorf("packet %d (%v): correlation id %q, Call-ID %q", i, w, r.CallID, callID)
		}
		at := time.Unix(int64(r.Sec), int64(r.Usec)*1000)
		if r.Usec >= 1e6 || at.Before(start.Add(-time.Millisecond)) || at.After(end) {
			t.Errorf("packet %d (%v): time %v outside the call (%v .. %v)", i, w, at, start, end)
		}
	}
	for _, w := range want {
		t.Errorf("not captured: %v", w)
	}

	// sngrep's decoding, read by tshark.
	sng.Process.Signal(syscall.SIGTERM)
	select {
	case <-sngDone:
	case <-time.After(5 * time.Second):
		t.Fatalf("sngrep did not stop on SIGTERM:\n%s", sngOut.String())
	}
	out, err := exec.Command("tshark", "-r", sngPcap, "-T", "fields", "-E", "separator=|",
		"-e", "frame.time_epoch", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
		"-e", "sip.Call-ID", "-e", "udp.payload").Output()
	if err != nil {
		t.Fatalf("tshark: %v\nsngrep: %s", err, sngOut.String())
	}
	want = append([]wireMsg(nil), wire...)
	rows := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, row := range rows {
		f := strings.Split(row, "|")
		if len(f) != 7 {
			t.Fatalf("tshark row %q", row)
		}
		payload, err := hex.DecodeString(strings.ReplaceAll(f[6], ":", ""))
		if err != nil {
			t.Fatalf("tshark payload %q: %v", f[6], err)
		}
		w := wireMsg{src: netip.MustParseAddrPort(f[1] + ":" + f[2]), dst: netip.MustParseAddrPort(f[3] + ":" + f[4]), data: string(payload)}
		var ok bool
		if want, ok = takeMatch(want, w); !ok {
			t.Errorf("sngrep/tshark: %v is no message of the wire, or one seen twice", w)
			continue
		}
		if f[5] != headerOf(w.data, "Call-ID") {
			t.Errorf("sngrep/tshark: %v: Call-ID %q", w, f[5])
		}
		sec, _ := strconv.ParseFloat(f[0], 64)
		if at := time.Unix(0, int64(sec*1e9)); at.Before(start.Add(-time.Millisecond)) || at.After(end) {
			t.Errorf("sngrep/tshark: %v: time %v outside the call", w, at)
		}
	}
	for _, w := range want {
		t.Errorf("sngrep/tshark: not seen: %v", w)
	}
	if t.Failed() {
		t.Logf("sipp logs:\n%s\n%s", mustRead(t, uacLog), mustRead(t, uasLog))
	}
}

func headerOf(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func mustRead(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestE2EHEPDeadCollector: the only collector is a port nobody listens on
// (every datagram draws an ICMP port unreachable). Calls complete as
// without tracing, and the failures are counted: every message captured
// is either sent, failed or dropped, and some failed.
func TestE2EHEPDeadCollector(t *testing.T) {
	t.Parallel()
	needSipp(t)
	dead := freeSIPPort(t) // free a moment ago: nothing listens there
	srv := startServer(t, fmt.Sprintf("routes: relay\nsiptrace:\n  collectors: [\"127.0.0.1:%d\"]\n", dead))
	uas := freeSIPPort(t)
	callee := startSippPeer(t, "-sf", "uas_check_route.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "20")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uas),
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "50", "-m", "20", "-r", "20",
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d with a dead collector:\n%s", res.Code, res.Output)
	}
	if code := callee.wait(5 * time.Second); code != 0 {
		t.Fatalf("sipp callee exit %d:\n%s", code, callee.out.String())
	}
	label := fmt.Sprintf(`{collector="udp:127.0.0.1:%d"}`, dead)
	var m map[string]float64
	deadline := time.Now().Add(3 * time.Second)
	for {
		m = srv.metrics()
		done := m["switchboard_siptrace_packets_sent_total"+label]+m["switchboard_siptrace_send_errors_total"+label]+
			m[`switchboard_siptrace_dropped_total{reason="queue_full"}`] == m["switchboard_siptrace_captured_total"]
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	captured := m["switchboard_siptrace_captured_total"]
	sent, errs := m["switchboard_siptrace_packets_sent_total"+label], m["switchboard_siptrace_send_errors_total"+label]
	full := m[`switchboard_siptrace_dropped_total{reason="queue_full"}`]
	if captured < 20*13 {
		t.Errorf("captured %v messages for 20 calls, want at least 260", captured)
	}
	if errs == 0 || sent+errs+full != captured {
		t.Errorf("captured %v: sent %v + errors %v + dropped %v; want errors counted and the sum equal", captured, sent, errs, full)
	}
}
