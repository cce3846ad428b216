package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EAnycastFlowHandoff: three nodes share one address over UDP and
// TCP (SO_REUSEPORT) and their bindings on Redis. A phone registers with
// RFC 5626 outbound over one TCP connection through the shared address;
// the kernel hands the connection to one node, the holder. Calls to the
// phone come over UDP from many sources, so they land on all three nodes:
// every one completes at the phone, the other nodes handing the INVITE,
// ACK and BYE to the holder over the relay and getting the phone's
// responses back from it (the phone's scenario checks the flow token in
// the Record-Route). Then the holder is killed: once the others stop
// hearing it (anycast.PeerTimeout), calls to the phone get 430 Flow
// Failed at once instead of timing out. A hand-off forged from an address
// that is not a peer is refused.
func TestE2EAnycastFlowHandoff(t *testing.T) {
	t.Parallel()
	needSipp(t)
	rd := startRedisServer(t)
	sipPort := freeSIPPort(t)
	relays := []string{freeUDPAddr(t), freeUDPAddr(t), freeUDPAddr(t)}
	secret := strings.Repeat("6b", 32)
	names := []string{"node-a", "node-b", "node-c"}
	nodes := make([]*testServer, 3)
	for i := range nodes {
		var peers []string
		for j, r := range relays {
			if j != i {
				peers = append(peers, strconv.Quote(r))
			}
		}
		nodes[i] = startAnycastNode(t, names[i], sipPort, relays[i], peers, rd.addr(), secret, "tcp")
	}
	shared := "127.0.0.1:" + strconv.Itoa(sipPort)
	sum := func(metric string, ns ...*testServer) float64 {
		v := 0.0
		for _, n := range ns {
			v += n.metrics()[metric]
		}
		return v
	}
	waitUntil := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %s", d, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("the nodes did not learn each other's branch prefixes", 5*time.Second, func() bool {
		return sum("switchboard_anycast_peers", nodes...) == 6
	})

	phone := startSippPeer(t, "-sf", "anycast_flow_phone.xml", "-oocsf", "outbound_phone_ooc.xml", "-t", "t1",
		"-i", "127.0.0.20", "-p", strconv.Itoa(freeSIPPort(t)), "-m", "1", "-timeout", "90s",
		"-key", "domain", "localhost", "-key", "user", "flowphone", shared)
	type binding struct {
		Node, Flow string
		Outbound   bool
	}
	holder, flow := -1, ""
	waitUntil("the phone's binding did not reach every node", 10*time.Second, func() bool {
		holder = -1
		for i, n := range nodes {
			var l []binding
			if err := json.Unmarshal(mgmtCall(t, n, "registrations.list", `{"aor":"flowphone@localhost"}`), &l); err != nil {
				t.Fatal(err)
			}
			if len(l) != 1 || !l[0].Outbound || l[0].Flow == "" {
				return false
			}
			if l[0].Node == "" {
				holder, flow = i, l[0].Flow
			}
		}
		return holder >= 0
	})
	h := nodes[holder]
	var others []*testServer
	for i, n := range nodes {
		if i != holder {
			others = append(others, n)
		}
	}
	t.Logf("the phone's connection landed on %s", names[holder])

	callees := filepath.Join(t.TempDir(), "callees.csv")
	os.WriteFile(callees, []byte("SEQUENTIAL\n"+strings.Repeat("flowphone;\n", 10)), 0o644)
	calls := func(scenario string, n, rate int, hold time.Duration) (sippResult, time.Duration) {
		t.Helper()
		start := time.Now()
		r := runSipp(t, 30*time.Second, "-sf", scenario, "-i", "127.0.0.2", "-t", "un", "-max_socket", "500",
			"-inf", callees, "-key", "domain", "localhost", "-d", strconv.Itoa(int(hold.Milliseconds())),
			"-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-l", "100", "-recv_timeout", "10000", shared)
		return r, time.Since(start)
	}

	// Calls from many sources: every one completes at the phone.
	lookups := make([]float64, 3)
	for i, n := range nodes {
		lookups[i] = n.metrics()["switchboard_registrar_lookups_total"]
	}
	const nCalls = 40
	r, took := calls("anycast_call.xml", nCalls, 20, 300*time.Millisecond)
	ok, failed := sippCounts(r.Output)
	if r.Code != 0 || ok != nCalls {
		t.Fatalf("calls to the phone on %s's connection: %d completed, %d failed (exit %d)\n%s\nphone:\n%s",
			names[holder], ok, failed, r.Code, r.Output, phone.out.String())
	}
	var spread []string
	for i, n := range nodes {
		d := n.metrics()["switchboard_registrar_lookups_total"] - lookups[i]
		spread = append(spread, fmt.Sprintf("%s %v", names[i], d))
		if d == 0 {
			t.Fatalf("no call landed on %s: the kernel did not spread the callers", names[i])
		}
	}
	sent, received := sum("switchboard_anycast_handoffs_sent_total", others...), h.metrics()["switchboard_anycast_handoffs_received_total"]
	relayed := h.metrics()["switchboard_anycast_relayed_total"]
	t.Logf("%d calls in %s, routed per node: %s; requests handed to %s: %v sent, %v written on the connection; responses it relayed back: %v",
		nCalls, took.Round(time.Millisecond), strings.Join(spread, ", "), names[holder], sent, received, relayed)
	if sent == 0 || received != sent || relayed == 0 {
		t.Fatalf("hand-offs sent %v, written %v, responses relayed %v: want the same non-zero count sent and written, and responses relayed", sent, received, relayed)
	}
	if f := sum("switchboard_anycast_handoffs_failed_total", nodes...) + sum("switchboard_anycast_handoffs_dropped_total", nodes...); f != 0 {
		t.Fatalf("%v hand-offs failed or dropped while the connection was up", f)
	}

	// A hand-off forged from an address that is not a peer, naming the
	// phone's live connection, is refused: nothing is written on it.
	prefix, num, _ := strings.Cut(flow, ".")
	conn, _ := strconv.ParseUint(num, 10, 64)
	pkt := append([]byte("SBRF"+prefix), binary.BigEndian.AppendUint64(nil, conn)...)
	pkt = append(pkt, make([]byte, 8+16)...)
	pkt = append(pkt, "INVITE sip:flowphone@192.0.2.10:5999;transport=tcp SIP/2.0\r\nContent-Length: 0\r\n\r\n"...)
	refused := h.metrics()["switchboard_anycast_refused_total"]
	stranger, err := net.Dial("udp", relays[holder])
	if err != nil {
		t.Fatal(err)
	}
	stranger.Write(pkt)
	stranger.Close()
	waitUntil("the holder did not refuse a stranger's hand-off", 5*time.Second, func() bool {
		return h.metrics()["switchboard_anycast_refused_total"] > refused
	})
	if got := h.metrics()["switchboard_anycast_handoffs_received_total"]; got != received {
		t.Fatalf("a stranger's hand-off was written on the phone's connection (%v written, %v before)", got, received)
	}

	// The holder dies. Once the others stop hearing it, calls to the
	// phone get 430 at once (the phone, whose keep-alives fail, would
	// register again over a new connection to a live node).
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	killed := time.Now()
	waitUntil("the others still hear the dead node", 10*time.Second, func() bool {
		return sum("switchboard_anycast_peers", others...) == 2
	})
	t.Logf("the dead node was forgotten %s after the kill", time.Since(killed).Round(time.Millisecond))
	r, took = calls("anycast_call_430.xml", 10, 20, 0)
	if ok, failed := sippCounts(r.Output); r.Code != 0 || ok != 10 {
		t.Fatalf("calls after the holder died: %d answered 430, %d not (exit %d)\n%s", ok, failed, r.Code, r.Output)
	}
	if took > 10*time.Second {
		t.Fatalf("10 calls answered 430 took %s", took)
	}
	t.Logf("10 calls to the phone after its node died: all 430 Flow Failed in %s", took.Round(time.Millisecond))
}
