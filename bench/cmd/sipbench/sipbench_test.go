package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"switchboard/store"
)

// A statistics file as sipp 3.6 writes it (-trace_stat -fd 1), cut to the
// columns the runner reads plus neighbours; the values are from a real run.
const statsCSV = "StartTime;LastResetTime;CurrentTime;ElapsedTime(C);TotalCallCreated;CurrentCall;" +
	"SuccessfulCall(C);FailedCall(C);FailedMaxUDPRetrans(C);FailedTimeoutOnRecv(C);OutOfCallMsgs(C);" +
	"DeadCallMsgs(C);Retransmissions(C);\n" +
	"2026-11-27\t04:23:26.170764\t1795753406.170764;x;2026-11-27\t04:23:27.170764\t1795753407.170764;00:00:01;400;120;280;0;0;0;0;0;0;\n" +
	"2026-11-27\t04:23:26.170764\t1795753406.170764;x;2026-11-27\t04:23:28.170764\t1795753408.170764;00:00:02;1000;40;958;2;1;1;3;4;17;\n" +
	"2026-11-27\t04:23:26.170764\t1795753406.170764;x;2026-11-27\t04:23:29.170764\t1795753409.170764;00:00:03;1000;0;997;3;1;2;3;5;21;\n"

func TestParseSippStats(t *testing.T) {
	s, err := parseSippStats(statsCSV)
	if err != nil {
		t.Fatal(err)
	}
	want := sippStats{Created: 1000, Successful: 997, Failed: 3, Retrans: 21, OutOfCall: 3, Dead: 5,
		Current: 0, Timeouts: 3, CreatedBy: 2 * time.Second}
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
}

func TestParseSippStatsEmpty(t *testing.T) {
	if _, err := parseSippStats("StartTime;SuccessfulCall(C)\n"); err == nil {
		t.Fatal("a file without a dump parsed")
	}
	if _, err := parseSippStats("a;b\n1;2\n"); err == nil {
		t.Fatal("a file without SuccessfulCall(C) parsed")
	}
}

func TestParseStat(t *testing.T) {
	// The command name may contain spaces and parentheses.
	line := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 9 0 123 456 789"
	f, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "S" || f[4-3] != "1" {
		t.Fatalf("state %q ppid %q", f[0], f[4-3])
	}
	if got := statCPU(f); got != 325*clockTick {
		t.Fatalf("cpu %v, want %v", got, 325*clockTick)
	}
	if _, err := parseStat([]byte("4242 (x) S 1")); err == nil {
		t.Fatal("short stat parsed")
	}
}

func TestOwnProcessFigures(t *testing.T) {
	// Burn a little CPU so that the reading cannot be zero.
	deadline := time.Now().Add(60 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
	}
	if cpu := treeCPU(os.Getpid()); cpu <= 0 {
		t.Fatalf("own CPU time %v", cpu)
	}
	if m := treeMemory(os.Getpid()); m.RSS <= 0 || m.HWM <= 0 || m.PSS <= 0 {
		t.Fatalf("own memory %+v", m)
	}
	b0, t0 := cpuBusy()
	if len(t0) == 0 || len(b0) == 0 {
		t.Fatal("no CPUs in /proc/stat")
	}
}

func TestJudge(t *testing.T) {
	cases := []struct {
		st   step
		pass bool
		why  string
	}{
		{step{Rate: 1000, Target: 10000, OK: 10000, CreatedBy: 10 * time.Second}, true, ""},
		{step{Rate: 1000, Target: 10000, OK: 9991, Failed: 9, CreatedBy: 10 * time.Second}, true, ""},
		{step{Rate: 1000, Target: 10000, OK: 9990, Failed: 10, CreatedBy: 10 * time.Second}, false, "0.10% failed"},
		{step{Rate: 1000, Target: 10000, OK: 10000, CreatedBy: 14 * time.Second}, false, "rate not kept"},
	}
	for i, c := range cases {
		c.st.judge()
		if c.st.Pass != c.pass || !strings.Contains(c.st.Why, c.why) {
			t.Errorf("case %d: pass %v why %q", i, c.st.Pass, c.st.Why)
		}
	}
}

func TestParseRates(t *testing.T) {
	if r, err := parseRates("500, 1000,2000"); err != nil || len(r) != 3 || r[2] != 2000 {
		t.Fatalf("%v %v", r, err)
	}
	for _, bad := range []string{"", "1000,500", "x", "0"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLimitSide(t *testing.T) {
	st := step{Wall: time.Second, ProxyCPU: 950 * time.Millisecond, SippCPU: 400 * time.Millisecond, ProxyCore: 0.97, LoadCore: 0.5}
	if got := limitSide(st); !strings.HasPrefix(got, "proxy (") {
		t.Fatalf("%q", got)
	}
	st = step{Wall: time.Second, ProxyCPU: 300 * time.Millisecond, SippCPU: 980 * time.Millisecond, ProxyCore: 0.4, LoadCore: 1}
	if got := limitSide(st); !strings.HasPrefix(got, "sipp (") {
		t.Fatalf("%q", got)
	}
	st = step{Wall: time.Second, ProxyCPU: 300 * time.Millisecond, SippCPU: 300 * time.Millisecond, ProxyCore: 0.95, LoadCore: 0.4}
	if got := limitSide(st); !strings.HasPrefix(got, "proxy core shared") {
		t.Fatalf("%q", got)
	}
	st = step{Wall: time.Second, ProxyCPU: 300 * time.Millisecond, SippCPU: 300 * time.Millisecond, ProxyCore: 0.3, LoadCore: 0.3,
		Drops: 1000, ProxyDrops: 100}
	if got := limitSide(st); !strings.HasPrefix(got, "sipp: its sockets dropped 900 of 1000") {
		t.Fatalf("%q", got)
	}
	st.ProxyDrops = 900
	if got := limitSide(st); !strings.HasPrefix(got, "proxy: its socket dropped 900") {
		t.Fatalf("%q", got)
	}
}

func TestParseCtxSwitches(t *testing.T) {
	status := "Name:\tswitchboard\nState:\tS (sleeping)\nThreads:\t7\n" +
		"Cpus_allowed_list:\t0\nvoluntary_ctxt_switches:\t123456\nnonvoluntary_ctxt_switches:\t789\n"
	v, nv, err := parseCtxSwitches([]byte(status))
	if err != nil || v != 123456 || nv != 789 {
		t.Fatalf("got %d %d %v", v, nv, err)
	}
	if _, _, err := parseCtxSwitches([]byte("Name:\tx\nvoluntary_ctxt_switches:\t5\n")); err == nil {
		t.Fatal("a status without nonvoluntary_ctxt_switches parsed")
	}
	if _, _, err := parseCtxSwitches([]byte("voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n")); err == nil {
		t.Fatal("a bad count parsed")
	}
}

func TestOwnCtxSwitches(t *testing.T) {
	pid := os.Getpid()
	before := treeCtxSwitches(pid)
	if before <= 0 {
		t.Fatalf("own context switches %d", before)
	}
	// Every thread of the process is counted: at least the main thread's.
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	v, nv, err := parseCtxSwitches(data)
	if err != nil {
		t.Fatal(err)
	}
	if before < v+nv {
		t.Fatalf("sum over threads %d < main thread's %d", before, v+nv)
	}
	// Each sleep with nothing else to run blocks a thread: a voluntary
	// switch at least.
	const sleeps = 50
	for i := 0; i < sleeps; i++ {
		time.Sleep(time.Millisecond)
	}
	if d := treeCtxSwitches(pid) - before; d < sleeps/2 {
		t.Fatalf("%d context switches over %d sleeps", d, sleeps)
	}
}

func TestParsePerfStat(t *testing.T) {
	// perf stat -x, -o FILE output as perf 6.1 writes it.
	out := "# started on Fri Nov 27 07:20:38 2026\n\n1724,,raw_syscalls:sys_enter,28270985,100.00,,\n"
	if n, err := parsePerfStat([]byte(out), syscallEvent); err != nil || n != 1724 {
		t.Fatalf("got %d %v", n, err)
	}
	// Another event first, and a count with decimals.
	out = "5,,context-switches,3766194,100.00,,\n991.00,,raw_syscalls:sys_enter,3766194,100.00,,\n"
	if n, err := parsePerfStat([]byte(out), syscallEvent); err != nil || n != 991 {
		t.Fatalf("got %d %v", n, err)
	}
	for _, bad := range []string{
		"<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n",
		"<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n",
		"# started on Fri Nov 27 07:20:38 2026\n\n",
		"5,,context-switches,3766194,100.00,,\n",
		"x,,raw_syscalls:sys_enter,3766194,100.00,,\n",
	} {
		if n, err := parsePerfStat([]byte(bad), syscallEvent); err == nil {
			t.Errorf("%q parsed as %d", bad, n)
		}
	}
}

// TestCountOwnSyscalls runs perf stat on the test's own process the way a
// rung runs it on the proxy.
func TestCountOwnSyscalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts perf")
	}
	if os.Geteuid() != 0 {
		t.Skip("perf needs root for the raw_syscalls tracepoint")
	}
	if _, err := exec.LookPath("perf"); err != nil {
		t.Skip("perf not installed")
	}
	b := &bench{procs: newProcs(), work: t.TempDir()}
	defer b.procs.stopAll()
	if why := b.setupSyscalls(true); why != "" {
		t.Fatal(why)
	}
	c, err := b.startSyscalls([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 5000
	for i := 0; i < calls; i++ {
		syscall.Getppid()
	}
	n, err := c.stop()
	if err != nil {
		t.Fatal(err)
	}
	// The Go runtime adds its own (futex, epoll, nanosleep) but not
	// thousands while the test waits on perf.
	if n < calls || n > 4*calls {
		t.Fatalf("counted %d system calls for %d getppid", n, calls)
	}
	t.Logf("%d system calls counted for %d getppid", n, calls)
	// A process that does not exist: the failure is kept for the report.
	if c := b.countSyscalls([]int{1 << 30}); c != nil {
		b.stopSyscalls(c)
		t.Fatal("counting a process that does not exist started")
	}
	t.Log(b.syscallNote())
	if b.perfFailures != 1 || !strings.Contains(b.syscallNote(), "not counted in 1") {
		t.Fatalf("failures %d, note %q", b.perfFailures, b.syscallNote())
	}
}

// TestDroutingRulesAndNumbers: the drouting scenario's rules are 10,000
// distinct digit prefixes of 3 to 9 digits, the same at every call, and
// every number called has a rule (its longest prefix among them, what
// both servers must find), the numbers spread over droutingSpread rules.
func TestDroutingRulesAndNumbers(t *testing.T) {
	prefixes := droutingPrefixes(droutingRules)
	if again := droutingPrefixes(droutingRules); strings.Join(again, ",") != strings.Join(prefixes, ",") {
		t.Fatal("the prefixes change from one call to the next")
	}
	set := map[string]bool{}
	for _, p := range prefixes {
		if len(p) < 3 || len(p) > 9 || p[0] == '0' || strings.Trim(p, "0123456789") != "" || set[p] {
			t.Fatalf("bad or repeated prefix %q", p)
		}
		set[p] = true
	}
	if len(set) != droutingRules {
		t.Fatalf("%d prefixes", len(set))
	}
	numbers := droutingCallNumbers(prefixes, droutingNumbers, droutingSpread)
	rules := map[string]int{}
	for _, n := range numbers {
		if len(n) != numberLength || strings.Trim(n, "0123456789") != "" {
			t.Fatalf("bad number %q", n)
		}
		r := longestRule(set, n)
		if r == "" {
			t.Fatalf("no rule for %s", n)
		}
		rules[r]++
	}
	if len(numbers) != droutingNumbers || len(rules) < droutingSpread {
		t.Fatalf("%d numbers over %d rules, want %d over at least %d", len(numbers), len(rules), droutingNumbers, droutingSpread)
	}
}

// TestDroutingTables: both servers get the gateway and the same 10,000
// rules: Switchboard in its store, Kamailio in an SQLite file with the
// drouting tables and their schema versions.
func TestDroutingTables(t *testing.T) {
	dir := t.TempDir()
	if err := fillSwitchboardDrouting(filepath.Join(dir, "sb"), 5099); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "sb"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	gws, err := st.ListDRGateways(ctx)
	if err != nil || len(gws) != 1 || gws[0].GWID != "gw1" || gws[0].Address != "127.0.0.1:5099" {
		t.Fatalf("switchboard gateways %+v %v", gws, err)
	}
	var sbPrefixes []string
	err = st.ForEachDRRule(ctx, store.DRRuleFilter{Group: 0}, func(r *store.DRRule) error {
		if r.GWList != "gw1" || r.TimeRec != "" {
			t.Fatalf("switchboard rule %+v", r)
		}
		sbPrefixes = append(sbPrefixes, r.Prefix)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(droutingPrefixes(droutingRules), ",")
	if strings.Join(sbPrefixes, ",") != want {
		t.Fatalf("switchboard has %d rules, not the scenario's", len(sbPrefixes))
	}

	path := filepath.Join(dir, "drouting.db")
	if err := fillKamailioDrouting(path, 5099); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	versions := map[string]int{}
	rows, err := db.Query(`SELECT table_name, table_version FROM version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		var v int
		rows.Scan(&name, &v)
		versions[name] = v
	}
	rows.Close()
	if versions["dr_gateways"] != 3 || versions["dr_rules"] != 3 || versions["dr_gw_lists"] != 1 || versions["dr_groups"] != 2 {
		t.Fatalf("schema versions %v", versions)
	}
	var addr string
	if err := db.QueryRow(`SELECT address FROM dr_gateways WHERE gwid = 1`).Scan(&addr); err != nil || addr != "127.0.0.1:5099" {
		t.Fatalf("kamailio gateway %q %v", addr, err)
	}
	var kamPrefixes []string
	rows, err = db.Query(`SELECT prefix FROM dr_rules WHERE groupid = '0' AND gwlist = '1' AND timerec = '' ORDER BY ruleid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		rows.Scan(&p)
		kamPrefixes = append(kamPrefixes, p)
	}
	rows.Close()
	if strings.Join(kamPrefixes, ",") != want {
		t.Fatalf("kamailio has %d rules, not the scenario's", len(kamPrefixes))
	}
}

// TestDroutingOverRelayRows: the report gives, for each server and rung,
// its CPU per call through drouting over its CPU per call in the relay of
// the same run, and says so when the relay was not run.
func TestDroutingOverRelayRows(t *testing.T) {
	mk := func(server string, cpu ...time.Duration) scenarioResult {
		res := scenarioResult{Server: server}
		for i, c := range cpu {
			res.Steps = append(res.Steps, step{Rate: []int{500, 2000}[i], OK: 1000, ProxyCPU: 1000 * c, Pass: true})
		}
		return res
	}
	r := &report{b: &bench{rates: []int{500, 2000}}}
	r.add("drouting", mk(switchboard, 12*time.Microsecond, 9*time.Microsecond))
	r.add("drouting", mk(kamailio, 30*time.Microsecond, 25*time.Microsecond))
	if rows := r.overRelayRows("drouting", r.results["drouting"][switchboard], r.results["drouting"][kamailio]); len(rows) != 1 || !strings.Contains(rows[0].sb, "relay not run") {
		t.Fatalf("without the relay: %+v", rows)
	}
	r.add("relay", mk(switchboard, 10*time.Microsecond, 9*time.Microsecond))
	r.add("relay", mk(kamailio, 24*time.Microsecond))
	rows := r.overRelayRows("drouting", r.results["drouting"][switchboard], r.results["drouting"][kamailio])
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	if rows[0].figure != "drouting ÷ relay CPU per call at 500/s" || rows[0].sb != "1.20 (10.0 µs → 12.0 µs)" || rows[0].kam != "1.25 (24.0 µs → 30.0 µs)" {
		t.Errorf("500/s: %+v", rows[0])
	}
	if rows[1].sb != "1.00 (9.0 µs → 9.0 µs)" || rows[1].kam != "—" {
		t.Errorf("2000/s (Kamailio's relay stopped at 500/s): %+v", rows[1])
	}
}

// TestShortVerdict: bench-short fails only on the ratio of the lowest CPU
// per call of each server, never on an absolute time.
func TestShortVerdict(t *testing.T) {
	us := time.Microsecond
	cases := []struct {
		sb, kam []time.Duration
		ratio   float64
		ok      bool
	}{
		{[]time.Duration{300 * us, 200 * us}, []time.Duration{250 * us, 400 * us}, 0.8, true},
		// One slow round of Switchboard (another process on its core) does
		// not fail the run: its lowest reading counts.
		{[]time.Duration{900 * us, 350 * us}, []time.Duration{250 * us, 260 * us}, 1.4, true},
		{[]time.Duration{400 * us, 380 * us}, []time.Duration{250 * us, 260 * us}, 1.52, false},
		// Slow in absolute terms, but no slower than Kamailio: passes.
		{[]time.Duration{5000 * us}, []time.Duration{5000 * us}, 1, true},
		{nil, []time.Duration{250 * us}, 0, true},
	}
	for i, c := range cases {
		ratio, ok := shortVerdict(c.sb, c.kam, 1.5)
		if ok != c.ok || ratio < c.ratio-0.005 || ratio > c.ratio+0.005 {
			t.Errorf("case %d: shortVerdict = %.3f, %v; want %.2f, %v", i, ratio, ok, c.ratio, c.ok)
		}
	}
}

// TestKamailioArgsFair: Kamailio runs with the allocator chosen (f_malloc
// by default), and the persisting registrar scenarios write usrloc back to
// SQLite (db_mode 2 through WITH_USRLOC_DB) in WAL mode while register-mem
// keeps it in memory.
func TestKamailioArgsFair(t *testing.T) {
	b := &bench{kamDir: "/k", kamBin: "kamailio", kamChildren: 4, kamMalloc: "fm"}
	has := func(args []string, want ...string) bool {
		for i := 0; i+len(want) <= len(args); i++ {
			if slices.Equal(args[i:i+len(want)], want) {
				return true
			}
		}
		return false
	}
	_, relay, err := b.kamailioArgs(t.TempDir(), workRelay, 5060, 0)
	if err != nil || !has(relay, "-x", "fm") || !has(relay, "-n", "4") {
		t.Fatalf("relay args %q, %v: want -x fm -n 4", relay, err)
	}
	for _, work := range []string{workRegistrar, workRegistrarAut} {
		dir := t.TempDir()
		_, args, err := b.kamailioArgs(dir, work, 5060, 0)
		if err != nil {
			t.Fatal(err)
		}
		db := filepath.Join(dir, "subscriber.db")
		if !has(args, "-A", "WITH_USRLOC_DB") || !has(args, "-A", `DBFILE="`+db+`=WAL;"`) {
			t.Errorf("%s args %q: want WITH_USRLOC_DB and the WAL journal", work, args)
		}
		sdb, err := sql.Open("sqlite", db)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := sdb.QueryRow(`SELECT table_version FROM version WHERE table_name = 'location'`).Scan(&v); err != nil || v != 9 {
			t.Errorf("%s: location table version %d, %v; want 9", work, v, err)
		}
		sdb.Close()
	}
	_, mem, err := b.kamailioArgs(t.TempDir(), workRegistrarMem, 5060, 0)
	if err != nil || has(mem, "-A", "WITH_USRLOC_DB") {
		t.Errorf("register-mem args %q, %v: want usrloc in memory", mem, err)
	}
	if got := b.kamailioConfig(workRegistrar); got != "registrar.cfg -x fm -n 4 usrloc db_mode 2" {
		t.Errorf("kamailioConfig(registrar) = %q", got)
	}
	if validMalloc("q_malloc") || !validMalloc("tlsf") {
		t.Error("validMalloc")
	}
}

// TestKamailioRegistrarConfigChecks: Kamailio accepts registrar.cfg with the
// write-back on (when Kamailio is installed).
func TestKamailioRegistrarConfigChecks(t *testing.T) {
	kam, err := exec.LookPath("kamailio")
	if err != nil {
		t.Skip("kamailio not installed")
	}
	db := filepath.Join(t.TempDir(), "subscriber.db")
	if err := fillKamailioSubscribers(db, true); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kam, "-c", "-x", "fm", "-f", "../../kamailio/registrar.cfg", "-A", "WITH_USRLOC_DB",
		"-A", `DBURL="sqlite:///`+db+`"`, "-A", `DBFILE="`+db+`=WAL;"`).CombinedOutput()
	if err != nil {
		t.Fatalf("kamailio -c: %v\n%s", err, out)
	}
}

// TestUnionRates: -interleave-servers runs the call and registration
// ladders at every rate either has, lowest first.
func TestUnionRates(t *testing.T) {
	ls := []*ladder{{rates: []int{500, 2000}}, {rates: []int{500, 1000, 4000}}, {rates: nil}}
	if got := unionRates(ls); !slices.Equal(got, []int{500, 1000, 2000, 4000}) {
		t.Errorf("unionRates = %v", got)
	}
}
