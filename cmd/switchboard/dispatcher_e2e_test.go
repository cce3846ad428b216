package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dsCLI runs `switchboard dispatcher ARGS -c config` and returns its output.
func dsCLI(t *testing.T, srv *testServer, args ...string) string {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{"dispatcher"}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dispatcher %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dsDest is a destination as dispatcher.list shows it.
type dsDest struct {
	Destination string
	State       string
	Selected    int
	Failures    int
	Calls       int
}

// dsList returns the server's destinations in use by URI.
func dsList(t *testing.T, srv *testServer) map[string]dsDest {
	t.Helper()
	var l []dsDest
	if err := json.Unmarshal(mgmtCall(t, srv, "dispatcher.list", `{}`), &l); err != nil {
		t.Fatal(err)
	}
	m := map[string]dsDest{}
	for _, d := range l {
		m[d.Destination] = d
	}
	return m
}

// waitDests waits until the server uses n destinations.
func waitDests(t *testing.T, srv *testServer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(dsList(t, srv)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the server uses %d destinations, want %d", len(dsList(t, srv)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDestState waits until destination uri is in state want.
func waitDestState(t *testing.T, srv *testServer, uri, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for dsList(t, srv)[uri].State != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after %s, want %s", uri, dsList(t, srv)[uri].State, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sippUAS is a sipp destination whose calls are counted when it stops.
type sippUAS struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
}

func startSippUAS(t *testing.T, scenario string) *sippUAS {
	t.Helper()
	u := &sippUAS{t: t, port: freeSIPPort(t), done: make(chan struct{})}
	u.cmd = exec.Command("sipp", "-nostdin", "-timeout", "120s", "-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(u.port))
	u.cmd.Dir = sippDir(t)
	u.cmd.Stdout, u.cmd.Stderr = &u.out, &u.out
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { u.cmd.Wait(); close(u.done) }()
	t.Cleanup(func() {
		u.cmd.Process.Signal(syscall.SIGCONT)
		u.stop()
		if t.Failed() {
			t.Logf("sipp %s on %d:\n%s", scenario, u.port, u.out.String())
		}
	})
	return u
}

func (u *sippUAS) uri() string { return "sip:127.0.0.1:" + strconv.Itoa(u.port) }

// stop ends sipp (SIGUSR1: quit once the calls in progress end).
func (u *sippUAS) stop() {
	select {
	case <-u.done:
		return
	default:
	}
	u.cmd.Process.Signal(syscall.SIGUSR1)
	select {
	case <-u.done:
	case <-time.After(5 * time.Second):
		u.cmd.Process.Kill()
		<-u.done
	}
}

var sippSuccessful = regexp.MustCompile(`Successful call\s+\|\s+\d+\s+\|\s+(\d+)`)

// calls stops sipp and returns the calls it completed (each OPTIONS it
// answered is one too).
func (u *sippUAS) calls() int {
	u.t.Helper()
	u.stop()
	m := sippSuccessful.FindAllStringSubmatch(u.out.String(), -1)
	if len(m) == 0 {
		u.t.Fatalf("no statistics from sipp on %d:\n%s", u.port, u.out.String())
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// dispatchCalls places n calls through the server (rate per second, each
// up for hold) with sipp, and fails the test unless every one completed.
func dispatchCalls(t *testing.T, srv *testServer, n, rate int, hold time.Duration) {
	t.Helper()
	res := runSipp(t, 60*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:conf@127.0.0.1:"+strconv.Itoa(srv.Port), "-d", strconv.Itoa(int(hold.Milliseconds())),
		"-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-l", "100", "127.0.0.1:"+strconv.Itoa(srv.Port))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
}

// near reports whether got is within tol (a fraction) of want.
func near(got int, want, tol float64) bool { return math.Abs(float64(got)-want) <= tol*want }

// TestE2EDispatcherDistributes: sipp destinations on two loopback ports,
// provisioned with the CLI; 400 calls through the dispatch route set
// spread 1:3 by weight, within ±10% (the weight order is exact: 100 and
// 300); a SIGHUP switches the algorithm to the Call-ID hash, whose 400
// calls spread evenly within ±20% (four standard deviations of the
// binomial: sipp's Call-IDs carry its pid).
func TestE2EDispatcherDistributes(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: dispatch\ndispatcher:\n  dispatch_set: 1\n  dispatch_algorithm: weight\n  probe_interval: 0s\n  poll_interval: 50ms\n")
	a, b := startSippUAS(t, "uas_dispatch.xml"), startSippUAS(t, "uas_dispatch.xml")
	if out := dsCLI(t, srv, "add", a.uri(), "--setid", "1", "--weight", "1"); !strings.Contains(out, "added id 1: set 1 "+a.uri()) {
		t.Fatalf("add: %s", out)
	}
	dsCLI(t, srv, "add", b.uri(), "--setid", "1", "--weight", "3", "--description", "pbx b")
	if out := dsCLI(t, srv, "list"); !strings.Contains(out, b.uri()) || !strings.Contains(out, "pbx b") {
		t.Fatalf("list:\n%s", out)
	}
	waitDests(t, srv, 2)
	start := time.Now()
	dispatchCalls(t, srv, 400, 100, 10*time.Millisecond)
	t.Logf("400 calls in %s", time.Since(start).Round(time.Millisecond))
	na, nb := a.calls(), b.calls()
	t.Logf("weight 1:3: %d and %d calls", na, nb)
	if na+nb != 400 || !near(na, 100, 0.1) || !near(nb, 300, 0.1) {
		t.Fatalf("weight 1:3 over 400 calls: %d and %d", na, nb)
	}
	l := dsList(t, srv)
	if l[a.uri()].Selected != na || l[b.uri()].Selected != nb || l[a.uri()].Calls != 0 || l[b.uri()].Calls != 0 {
		t.Fatalf("dispatcher.list: %+v (the calls must have ended)", l)
	}

	// The Call-ID hash, by SIGHUP.
	a, b = startSippUAS(t, "uas_dispatch.xml"), startSippUAS(t, "uas_dispatch.xml")
	if out := dsCLI(t, srv, "export"); !strings.Contains(out, "setid,destination,") || !strings.Contains(out, ",pbx b\n") {
		t.Fatalf("export:\n%s", out)
	}
	csv := "setid,destination,weight\n1," + a.uri() + ",1\n1," + b.uri() + ",1\n"
	path := filepath.Join(t.TempDir(), "ds.csv")
	os.WriteFile(path, []byte(csv), 0o644)
	if out := dsCLI(t, srv, "import", path, "--replace"); out != "the table is now 2 destinations\n" {
		t.Fatalf("import: %s", out)
	}
	cfg, _ := os.ReadFile(srv.Config)
	os.WriteFile(srv.Config, []byte(strings.Replace(string(cfg), "dispatch_algorithm: weight", "dispatch_algorithm: call_id", 1)), 0o644)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.Log.String(), "msg=reloaded") || dsList(t, srv)[a.uri()].Destination == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no reload:\n%s", srv.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dispatchCalls(t, srv, 400, 100, 10*time.Millisecond)
	na, nb = a.calls(), b.calls()
	t.Logf("call_id hash 1:1: %d and %d calls", na, nb)
	if na+nb != 400 || !near(na, 200, 0.2) || !near(nb, 200, 0.2) {
		t.Fatalf("call_id hash over 400 calls: %d and %d", na, nb)
	}
}

// TestE2EDispatcherFailsOver: one destination answers 503, one is silent,
// one answers; every call completes on the one that answers, whichever
// the round robin tried first. The silent one is taken out after
// dispatcher.probe_failures timeouts (MarkDst in the route set).
func TestE2EDispatcherFailsOver(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: dispatch\ndispatcher:\n  dispatch_algorithm: round_robin\n  probe_interval: 0s\n  probe_failures: 2\n"+
		"timers:\n  t1: 100ms\n  t2: 400ms\n  t4: 500ms\n  timer_c: 5s\n  fr: 1s\n")
	busy, good := startSippUAS(t, "uas_503.xml"), startSippUAS(t, "uas_dispatch.xml")
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // takes requests, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentURI := "sip:" + silent.LocalAddr().String()
	for _, u := range []string{busy.uri(), good.uri(), silentURI} {
		mgmtCall(t, srv, "dispatcher.add", fmt.Sprintf(`{"set":1,"destination":%q}`, u))
	}
	start := time.Now()
	dispatchCalls(t, srv, 12, 6, 10*time.Millisecond)
	t.Logf("12 calls in %s", time.Since(start).Round(time.Millisecond))
	l := dsList(t, srv)
	if n := good.calls(); n != 12 {
		t.Fatalf("the destination that answers took %d calls, want all 12: %+v", n, l)
	}
	if l[busy.uri()].Failures < 4 || l[busy.uri()].Selected != l[busy.uri()].Failures {
		t.Fatalf("the 503 destination: %+v", l[busy.uri()])
	}
	// Calls in flight to it when it was taken out time out too: each one
	// it was given failed.
	if s := l[silentURI]; s.Failures < 2 || s.Failures != s.Selected || s.State != "probing" {
		t.Fatalf("the silent destination: %+v", s)
	}
	m := srv.metrics()
	if m[`switchboard_dispatcher_failures_total{set="1",destination="`+busy.uri()+`"}`] != float64(l[busy.uri()].Failures) ||
		m[`switchboard_dispatcher_state{set="1",destination="`+silentURI+`"}`] != 2 {
		t.Fatal("metrics disagree with dispatcher.list")
	}
}

// TestE2EDispatcherProbing: destinations probed with OPTIONS; one that
// stops answering (sipp stopped) is marked down and skipped, and comes
// back when it answers again. An operator's set_state takes one out and
// puts it back.
func TestE2EDispatcherProbing(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: dispatch\ndispatcher:\n  dispatch_algorithm: round_robin\n  probe_interval: 200ms\n"+
		"  probe_timeout: 150ms\n  probe_failures: 2\n  probe_successes: 2\n")
	a, b := startSippUAS(t, "uas_dispatch.xml"), startSippUAS(t, "uas_dispatch.xml")
	dsCLI(t, srv, "add", a.uri(), "--setid", "1", "--probe-mode", "1")
	dsCLI(t, srv, "add", b.uri(), "--setid", "1", "--probe-mode", "1")
	waitDests(t, srv, 2)
	time.Sleep(500 * time.Millisecond)
	if l := dsList(t, srv); l[a.uri()].State != "active" || l[b.uri()].State != "active" {
		t.Fatalf("both answer: %+v", l)
	}

	a.cmd.Process.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	waitDestState(t, srv, a.uri(), "probing", 3*time.Second)
	t.Logf("marked down %s after it stopped answering", time.Since(stopped).Round(time.Millisecond))
	before := dsList(t, srv)[a.uri()].Selected
	dispatchCalls(t, srv, 20, 20, 10*time.Millisecond)
	if l := dsList(t, srv); l[a.uri()].Selected != before || l[b.uri()].Selected != 20 {
		t.Fatalf("calls while A is down: %+v", l)
	}
	if !srv.logged("dispatcher: destination probing") {
		t.Error("no log line for the destination going down")
	}

	a.cmd.Process.Signal(syscall.SIGCONT)
	resumed := time.Now()
	waitDestState(t, srv, a.uri(), "active", 3*time.Second)
	t.Logf("back %s after it answered again", time.Since(resumed).Round(time.Millisecond))
	dispatchCalls(t, srv, 20, 20, 10*time.Millisecond)
	if l := dsList(t, srv); l[a.uri()].Selected != before+10 || l[b.uri()].Selected != 30 {
		t.Fatalf("calls once A is back (round robin): %+v", l)
	}

	// set_state: out at once, and back.
	mgmtCall(t, srv, "dispatcher.set_state", fmt.Sprintf(`{"set":1,"destination":%q,"state":"inactive"}`, b.uri()))
	if s := dsList(t, srv)[b.uri()].State; s != "inactive" {
		t.Fatalf("set_state inactive: %s", s)
	}
	dispatchCalls(t, srv, 4, 20, 10*time.Millisecond)
	if l := dsList(t, srv); l[b.uri()].Selected != 30 {
		t.Fatalf("an inactive destination took calls: %+v", l)
	}
	if out := dsCLI(t, srv, "list"); !strings.Contains(out, "inactive") {
		t.Fatalf("set_state not stored:\n%s", out)
	}
	m := srv.metrics()
	if m["switchboard_dispatcher_state_changes_total"] < 3 || m["switchboard_dispatcher_probes_total"] < 10 {
		t.Fatalf("state changes %v, probes %v", m["switchboard_dispatcher_state_changes_total"], m["switchboard_dispatcher_probes_total"])
	}
}

// TestE2EDispatcherReloadKeepsCalls: the table is replaced ten times with
// the CLI while 100 calls of half a second run at 50 per second; no call
// is lost, and every call's count is released by its BYE.
func TestE2EDispatcherReloadKeepsCalls(t *testing.T) {
	t.Parallel()
	needSipp(t)
	srv := startServer(t, "routes: dispatch\ndispatcher:\n  dispatch_algorithm: least_calls\n  probe_interval: 0s\n  poll_interval: 20ms\n")
	a, b := startSippUAS(t, "uas_dispatch.xml"), startSippUAS(t, "uas_dispatch.xml")
	dir := t.TempDir()
	tables := make([]string, 2)
	for i := range tables {
		tables[i] = filepath.Join(dir, fmt.Sprintf("t%d.csv", i))
		// Both tables have A and B; each has another destination, inactive.
		csv := fmt.Sprintf("setid,destination,state,weight\n1,%s,active,%d\n1,%s,active,1\n1,sip:127.0.0.1:%d,inactive,1\n", a.uri(), i+1, b.uri(), 9000+i)
		os.WriteFile(tables[i], []byte(csv), 0o644)
	}
	dsCLI(t, srv, "import", tables[0], "--replace")
	waitDests(t, srv, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		dispatchCalls(t, srv, 100, 50, 500*time.Millisecond)
	}()
	for i := 0; i < 10; i++ {
		time.Sleep(200 * time.Millisecond)
		out, err := exec.Command(switchboardBinary(t), "dispatcher", "import", tables[(i+1)%2], "--replace", "-c", srv.Config).CombinedOutput()
		if err != nil {
			t.Errorf("import: %v\n%s", err, out)
		}
	}
	<-done
	if n := a.calls() + b.calls(); n != 100 {
		t.Fatalf("the destinations completed %d calls, want 100", n)
	}
	m := srv.metrics()
	if m["switchboard_dispatcher_reloads_total"] < 5 || m["switchboard_dispatcher_calls_tracked"] != 0 {
		t.Fatalf("reloads %v, calls still counted %v", m["switchboard_dispatcher_reloads_total"], m["switchboard_dispatcher_calls_tracked"])
	}
	for _, d := range dsList(t, srv) {
		if d.Calls != 0 {
			t.Fatalf("calls still counted after every BYE: %+v", d)
		}
	}
}
