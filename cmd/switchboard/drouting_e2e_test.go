package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The gateways of these tests are sipp UASs on 127.0.0.2 to 127.0.0.4
// (uas_gateway.xml answers calls and OPTIONS probes, uas_gateway_503.xml
// refuses calls with 503); alice calls from 127.0.0.1 through the
// provider route set, authenticated (sipp answers MD5 challenges only).
// Dialplan 1 normalises the numbers subscribers dial before the rules.
const droutingConfig = "auth:\n  algorithms: [MD5]\n  check_uri: false\nprovider:\n  dialplan_id: 1\n" +
	"drouting:\n  timezone: UTC\n  poll_interval: 50ms\n  probe_interval: 300ms\n  probe_failures: 2\n  fr_timeout: 2s\n"

// drCLI runs `switchboard drouting ARGS -c config` and returns its output.
func drCLI(t *testing.T, srv *testServer, args ...string) string {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{"drouting"}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("drouting %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gatewayUAS starts a sipp gateway on ip:port with scenario.
func gatewayUAS(t *testing.T, scenario, ip string, port int) *exec.Cmd {
	t.Helper()
	cmd := startSipp(t, "-sf", scenario, "-i", ip, "-p", strconv.Itoa(port))
	time.Sleep(100 * time.Millisecond)
	return cmd
}

// stopSipp ends a sipp started with startSipp before the test's end.
func stopSipp(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}

// pstnCall places alice's call to number through the server and reports
// whether it completed (INVITE with credentials, 200, ACK, BYE).
func pstnCall(t *testing.T, srv *testServer, number string) sippResult {
	t.Helper()
	return sippUA(t, srv, "uac_auth_call.xml", freeSIPPort(t), "alice", "alice-pw", "callee", number)
}

func gwCalls(srv *testServer, gwid string) float64 {
	return srv.metrics()[`switchboard_drouting_gateway_calls_total{gwid="`+gwid+`"}`]
}

// TestE2EDroutingPrefixesAndFailover: gateways and rules added with the
// CLI while the server runs; an authenticated subscriber's calls to
// numbers go to the gateway of their longest prefix (with its strip and
// prefix: the gateway sees the number it expects), a number dialled
// nationally is first made E.164 by the dialplan provider.dialplan_id, and a gateway that
// answers 503 makes the call go to the next one of the rule's list.
func TestE2EDroutingPrefixesAndFailover(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, droutingConfig)
	addUser(t, srv, "alice@localhost", "alice-pw")
	de, us, busy := freeSIPPort(t), freeSIPPort(t), freeSIPPort(t)
	gatewayUAS(t, "uas_gateway.xml", "127.0.0.2", de)
	// us logs what it receives: the number it gets is checked below.
	usLog := filepath.Join(t.TempDir(), "us.log")
	startSipp(t, "-sf", "uas_gateway.xml", "-i", "127.0.0.3", "-p", strconv.Itoa(us), "-trace_msg", "-message_file", usLog)
	gatewayUAS(t, "uas_gateway_503.xml", "127.0.0.4", busy)

	drCLI(t, srv, "gw-add", "de", "--address", "127.0.0.2:"+strconv.Itoa(de))
	drCLI(t, srv, "gw-add", "us", "--address", "127.0.0.3:"+strconv.Itoa(us), "--strip", "1", "--pri-prefix", "00")
	drCLI(t, srv, "gw-add", "busy", "--address", "127.0.0.4:"+strconv.Itoa(busy))
	drCLI(t, srv, "rule-add", "--prefix", "+49", "--gwlist", "de")
	drCLI(t, srv, "rule-add", "--prefix", "+1", "--gwlist", "us")
	drCLI(t, srv, "rule-add", "--prefix", "+4930", "--gwlist", "us")
	drCLI(t, srv, "rule-add", "--prefix", "+33", "--gwlist", "busy,de")
	// National numbers (0 then the area code) become E.164 for the rules.
	moduleCLI(t, srv, "dialplan", "add", "1", "prefix", "0", `+49\2`)
	waitMetric(t, srv, "switchboard_dialplan_rules", 1)
	waitMetric(t, srv, "switchboard_drouting_rules", 4)
	waitMetric(t, srv, "switchboard_drouting_gateways", 3)

	for i, c := range []struct{ number, gw string }{
		{"+498912345", "de"},
		{"+12025550100", "us"},
		{"+493012345", "us"}, // the longer prefix
		{"+4940", "de"},
		{"030777", "us"}, // dialled nationally: +4930777 after the dialplan
	} {
		before := gwCalls(srv, c.gw)
		if r := pstnCall(t, srv, c.number); r.Code != 0 {
			t.Fatalf("call %d to %s: exit %d\n%s", i, c.number, r.Code, r.Output)
		}
		if after := gwCalls(srv, c.gw); after != before+1 {
			t.Fatalf("call to %s: gateway %s had %v calls, now %v", c.number, c.gw, before, after)
		}
	}
	// us got the number as it wants it: the '+' stripped, 00 in front,
	// in a Request-URI at its own address.
	usGot, _ := os.ReadFile(usLog)
	for _, want := range []string{"INVITE sip:0012025550100@127.0.0.3:" + strconv.Itoa(us) + " SIP/2.0",
		"INVITE sip:004930" + "12345@127.0.0.3:" + strconv.Itoa(us) + " SIP/2.0",
		"INVITE sip:004930777@127.0.0.3:" + strconv.Itoa(us) + " SIP/2.0"} {
		if !strings.Contains(string(usGot), want) {
			t.Errorf("gateway us did not get %q:\n%s", want, usGot)
		}
	}

	// +33: busy answers 503, de takes the call.
	beforeDE := gwCalls(srv, "de")
	if r := pstnCall(t, srv, "+33123456"); r.Code != 0 {
		t.Fatalf("call to +33 through busy then de: exit %d\n%s", r.Code, r.Output)
	}
	m := srv.metrics()
	if m[`switchboard_drouting_gateway_calls_total{gwid="busy"}`] != 1 || m[`switchboard_drouting_gateway_failures_total{gwid="busy"}`] != 1 ||
		gwCalls(srv, "de") != beforeDE+1 || m["switchboard_drouting_failovers_total"] != 1 {
		t.Fatalf("after the 503: busy calls %v failures %v, de calls %v (was %v), failovers %v",
			m[`switchboard_drouting_gateway_calls_total{gwid="busy"}`], m[`switchboard_drouting_gateway_failures_total{gwid="busy"}`],
			gwCalls(srv, "de"), beforeDE, m["switchboard_drouting_failovers_total"])
	}

	// A number no rule matches: the 480 of an unknown user.
	if r := sippUA(t, srv, "uac_auth_call_480.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "+8612345"); r.Code != 0 {
		t.Fatalf("call to +86: exit %d\n%s", r.Code, r.Output)
	}
	var status struct {
		Rules    int            `json:"rules"`
		Gateways map[string]int `json:"gateways"`
	}
	if err := json.Unmarshal(mgmtCall(t, srv, "drouting.status", `{}`), &status); err != nil || status.Rules != 4 || status.Gateways["up"] != 3 {
		t.Fatalf("drouting.status: %+v %v", status, err)
	}
}

// TestE2EDroutingProbing: a gateway that stops answering OPTIONS is marked
// down within probe_failures probes and calls skip it (they go straight to
// the next gateway, without waiting for it); once it answers again it is
// up and takes calls.
func TestE2EDroutingProbing(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, droutingConfig)
	addUser(t, srv, "alice@localhost", "alice-pw")
	p1, p2 := freeSIPPort(t), freeSIPPort(t)
	gw1 := gatewayUAS(t, "uas_gateway.xml", "127.0.0.2", p1)
	gatewayUAS(t, "uas_gateway.xml", "127.0.0.3", p2)
	drCLI(t, srv, "gw-add", "gw1", "--address", "127.0.0.2:"+strconv.Itoa(p1), "--probe-mode", "2")
	drCLI(t, srv, "gw-add", "gw2", "--address", "127.0.0.3:"+strconv.Itoa(p2), "--probe-mode", "2")
	drCLI(t, srv, "rule-add", "--prefix", "+49", "--gwlist", "gw1,gw2")
	waitMetric(t, srv, "switchboard_drouting_rules", 1)
	// Both answer their probes.
	deadline := time.Now().Add(5 * time.Second)
	for srv.metrics()[`switchboard_drouting_probes_total{result="answered"}`] < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("probes not answered: %v", srv.metrics()[`switchboard_drouting_probes_total{result="answered"}`])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := pstnCall(t, srv, "+4930123"); r.Code != 0 || gwCalls(srv, "gw1") != 1 {
		t.Fatalf("call with gw1 up: exit %d, gw1 calls %v\n%s", r.Code, gwCalls(srv, "gw1"), r.Output)
	}

	stopSipp(gw1)
	waitMetric(t, srv, `switchboard_drouting_gateway_up{gwid="gw1"}`, 0)
	if !srv.logged("gateway down") {
		t.Error("no log line for gw1 going down")
	}
	start := time.Now()
	if r := pstnCall(t, srv, "+4930123"); r.Code != 0 {
		t.Fatalf("call with gw1 down: exit %d\n%s", r.Code, r.Output)
	}
	if took := time.Since(start); gwCalls(srv, "gw1") != 1 || gwCalls(srv, "gw2") != 1 || took > 1500*time.Millisecond {
		t.Fatalf("with gw1 down: gw1 calls %v, gw2 calls %v, the call took %s (fr_timeout is 2s: gw1 must be skipped, not tried)",
			gwCalls(srv, "gw1"), gwCalls(srv, "gw2"), took)
	}

	gatewayUAS(t, "uas_gateway.xml", "127.0.0.2", p1) // answers again
	waitMetric(t, srv, `switchboard_drouting_gateway_up{gwid="gw1"}`, 1)
	if r := pstnCall(t, srv, "+4930123"); r.Code != 0 || gwCalls(srv, "gw1") != 2 {
		t.Fatalf("call with gw1 back: exit %d, gw1 calls %v\n%s", r.Code, gwCalls(srv, "gw1"), r.Output)
	}
	var gws []struct{ GWID, Status string }
	if err := json.Unmarshal(mgmtCall(t, srv, "drouting.gw.list", `{}`), &gws); err != nil || len(gws) != 2 || gws[0].Status != "up" {
		t.Fatalf("drouting.gw.list: %+v %v", gws, err)
	}
}

// writeRules writes a CSV of n rules to gw1: random prefixes of seed, and
// +49 (the prefix the calls use) with priority prio.
func writeRules(t *testing.T, path string, seed int64, n, prio int) {
	t.Helper()
	rnd := rand.New(rand.NewSource(seed))
	var b strings.Builder
	b.WriteString("groupid,prefix,priority,gwlist\n")
	fmt.Fprintf(&b, "0,+49,%d,gw1\n", prio)
	seen := map[string]bool{"+49": true}
	for len(seen) < n {
		p := "+" + strconv.Itoa(1+rnd.Intn(9)) + strconv.FormatInt(1e9+rnd.Int63n(1e9), 10)[1:3+rnd.Intn(6)]
		if strings.HasPrefix(p, "+49") || seen[p] {
			continue
		}
		seen[p] = true
		fmt.Fprintf(&b, "0,%s,0,gw1\n", p)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2EDroutingReloadUnderLoad: 2,000 calls at 200 a second through the
// rules while the table of 10,000 rules is replaced whole (one import
// transaction, one reload) again and again: every call completes.
func TestE2EDroutingReloadUnderLoad(t *testing.T) {
	needSipp(t)
	// 200 calls a second from one address: 400 INVITEs a second (each is
	// challenged once), past the default rate limit.
	srv := startServer(t, droutingConfig+"ratelimit:\n  pipes: []\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	p1 := freeSIPPort(t)
	gatewayUAS(t, "uas_gateway.xml", "127.0.0.2", p1)
	drCLI(t, srv, "gw-add", "gw1", "--address", "127.0.0.2:"+strconv.Itoa(p1))
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	writeRules(t, a, 1, 10_000, 0)
	writeRules(t, b, 2, 10_000, 5)
	if out := drCLI(t, srv, "rule-import", a, "--replace"); out != "imported 10000 dr rules (table replaced)\n" {
		t.Fatalf("import: %q", out)
	}
	waitMetric(t, srv, "switchboard_drouting_rules", 10_000)

	const calls = 2000
	var res sippResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res = runSipp(t, 90*time.Second, "-sf", "uac_auth_call.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-m", strconv.Itoa(calls), "-r", "200", "-l", "400", "-key", "domain", "localhost", "-key", "user", "alice",
			"-key", "callee", "+4930123", "-au", "alice", "-ap", "alice-pw", "127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	imports := 0
	for files := []string{b, a}; ; imports++ {
		select {
		case <-done:
		case <-time.After(700 * time.Millisecond):
			drCLI(t, srv, "rule-import", files[imports%2], "--replace")
			continue
		}
		break
	}
	if res.Code != 0 || !strings.Contains(res.Output, "Successful call") {
		t.Fatalf("sipp: exit %d\n%s", res.Code, res.Output)
	}
	if imports < 5 {
		t.Fatalf("only %d reloads while the calls ran", imports)
	}
	if n := strings.Count(srv.Log.String(), "drouting: rules loaded"); n < imports {
		t.Errorf("%d reloads logged for %d imports", n, imports)
	}
	if m := srv.metrics(); gwCalls(srv, "gw1") != calls || m["switchboard_drouting_lists_lost_total"] != 0 {
		t.Errorf("gw1 calls %v, want %d", gwCalls(srv, "gw1"), calls)
	}
	t.Logf("%d calls at 200/s, %d reloads of 10,000 rules meanwhile", calls, imports)
}

// TestDroutingCLI: `switchboard drouting` on the store of a configuration:
// a bad value is refused naming the field, bad usage exits 2 with the
// usage; the help lists the verbs.
func TestDroutingCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	os.WriteFile(cfg, []byte("storage:\n  dir: "+filepath.Join(dir, "data")+"\n"), 0o644)
	if code, out, errs := runCLI(t, "", "drouting", "gw-add", "gw1", "--address", "192.0.2.1", "-c", cfg); code != 0 || out != "added dr gateway gw1\n" {
		t.Fatalf("gw-add: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "", "drouting", "rule-add", "--prefix", "4a", "--gwlist", "gw1", "-c", cfg); code != 1 || !strings.Contains(errs, `dr rule: prefix: "4a"`) {
		t.Errorf("bad prefix: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "", "drouting", "rule-add", "--priority", "high", "-c", cfg); code != 2 ||
		!strings.Contains(errs, "usage: switchboard drouting rule-add --gwlist") {
		t.Errorf("bad flag: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "", "drouting", "-c", cfg); code != 2 || !strings.Contains(errs, "gw-import") || !strings.Contains(errs, "rule-export") {
		t.Errorf("usage: %d %q", code, errs)
	}
}

// TestE2EDroutingRouteSet: `routes: drouting`, the trunking proxy without
// subscribers. sipp calls numbers through the server (no credentials); a
// call goes to the gateway of its longest prefix (a sipp UAS on
// 127.0.0.2) with the gateway's strip and prefix, record-routed, and its
// ACK and BYE follow the recorded route; a gateway that answers 503 makes
// the call go to the next of the rule's list; a number without a rule
// gets 404, a rule whose gateways are all disabled 503.
func TestE2EDroutingRouteSet(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: drouting\ndrouting:\n  poll_interval: 50ms\n  fr_timeout: 2s\n")
	gwPort, busyPort := freeSIPPort(t), freeSIPPort(t)
	gwLog := filepath.Join(t.TempDir(), "gw.log")
	startSipp(t, "-sf", "uas_gateway.xml", "-i", "127.0.0.2", "-p", strconv.Itoa(gwPort), "-trace_msg", "-message_file", gwLog)
	gatewayUAS(t, "uas_gateway_503.xml", "127.0.0.3", busyPort)
	drCLI(t, srv, "gw-add", "gw", "--address", "127.0.0.2:"+strconv.Itoa(gwPort), "--strip", "2", "--pri-prefix", "0")
	drCLI(t, srv, "gw-add", "busy", "--address", "127.0.0.3:"+strconv.Itoa(busyPort))
	drCLI(t, srv, "gw-add", "off", "--address", "127.0.0.4:5060", "--state", "1")
	drCLI(t, srv, "rule-add", "--prefix", "49", "--gwlist", "gw")
	drCLI(t, srv, "rule-add", "--prefix", "33", "--gwlist", "busy,gw")
	drCLI(t, srv, "rule-add", "--prefix", "44", "--gwlist", "off")
	waitMetric(t, srv, "switchboard_drouting_rules", 3)
	waitMetric(t, srv, "switchboard_drouting_gateways", 3)

	// calls places n calls to number through the server and reports
	// whether they all completed: INVITE, 200 carrying the server's
	// Record-Route, ACK and BYE along the route set.
	calls := func(number string, n int) sippResult {
		return runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
			"-m", strconv.Itoa(n), "-d", "100", "-key", "ruri", "sip:"+number+"@127.0.0.1:"+strconv.Itoa(srv.Port),
			"127.0.0.1:"+strconv.Itoa(srv.Port))
	}
	if r := calls("4930123456", 3); r.Code != 0 {
		t.Fatalf("3 calls to 4930123456: exit %d\n%s", r.Code, r.Output)
	}
	if got := gwCalls(srv, "gw"); got != 3 {
		t.Fatalf("gateway gw had %v calls, want 3", got)
	}
	// The gateway got the number as it wants it, at its own address, and
	// the in-dialog requests through the proxy (its Via on top).
	got, _ := os.ReadFile(gwLog)
	for _, want := range []string{"INVITE sip:030123456@127.0.0.2:" + strconv.Itoa(gwPort) + " SIP/2.0",
		"BYE sip:gw@127.0.0.2:" + strconv.Itoa(gwPort)} {
		if !strings.Contains(string(got), want) {
			t.Errorf("gateway gw did not get %q:\n%s", want, got)
		}
	}

	// 33: busy answers 503, gw takes the call.
	if r := calls("33123456", 1); r.Code != 0 {
		t.Fatalf("call to 33123456 through busy then gw: exit %d\n%s", r.Code, r.Output)
	}
	m := srv.metrics()
	if m[`switchboard_drouting_gateway_calls_total{gwid="busy"}`] != 1 || m[`switchboard_drouting_gateway_failures_total{gwid="busy"}`] != 1 ||
		gwCalls(srv, "gw") != 4 || m["switchboard_drouting_failovers_total"] != 1 {
		t.Fatalf("after the 503: busy calls %v failures %v, gw calls %v, failovers %v",
			m[`switchboard_drouting_gateway_calls_total{gwid="busy"}`], m[`switchboard_drouting_gateway_failures_total{gwid="busy"}`],
			gwCalls(srv, "gw"), m["switchboard_drouting_failovers_total"])
	}

	for _, c := range []struct{ number, want string }{
		{"8612345", "SIP/2.0 404 No Route"},
		{"4420123", "SIP/2.0 503 No Gateway Available"},
	} {
		ruri := "sip:" + c.number + "@127.0.0.1:" + strconv.Itoa(srv.Port)
		if r := sendUDP(t, srv.Port, request("INVITE", ruri, "To: <"+ruri+">\r\nMax-Forwards: 70\r\n"), 2*time.Second); statusLine(r) != c.want {
			t.Errorf("INVITE to %s: %q, want %q", c.number, statusLine(r), c.want)
		}
	}
}
