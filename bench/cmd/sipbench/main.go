// Command sipbench measures Switchboard and Kamailio side by side with the
// same sipp traffic: the proxy pinned to one core and every load generator
// to the other, the proxy's CPU time read from /proc before and after each
// run. See bench/README.md.
//
//	sipbench                    every scenario, both servers, report in bench/results/latest.md
//	sipbench -short             the relay at 200 calls/s, 5 s through Switchboard then Kamailio,
//	                            twice; exits 1 if any call failed or Switchboard's CPU per call
//	                            is over 1.5 times Kamailio's (make bench-short)
//	sipbench -scenarios relay -servers switchboard -rates 500,1000
package main

import (
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed scenarios/*.xml
var scenarioFS embed.FS

// bench is one run of the suite.
type bench struct {
	procs   *procs
	work    string
	scenDir string
	users   string
	numbers string // the numbers the drouting scenario calls (injection file)
	out     io.Writer
	ports   map[int]bool
	seq     int

	sbBin, kamBin, sippBin, kamDir string
	sbSets                         []string
	proxyCPU, loadCPU, kamChildren int
	// kamMalloc is Kamailio's memory manager (-x): fm, qm or tlsf.
	kamMalloc string
	// kamDialogDB runs dialog.cfg with its CDRs and dialogs in SQLite.
	kamDialogDB bool
	// interleave runs the call scenarios' ladders rung by rung in turn.
	interleave bool
	// rounds is how many times the interleaved ladders run in a row
	// (-rounds): the ÷ relay figures are then the median of the rounds'.
	rounds int
	// interleaveServers runs every scenario's ladder against every server
	// rung by rung in turn: the servers are compared minutes apart at most.
	interleaveServers bool
	// concWork is what the servers do in the concurrency scenario.
	concWork string

	rates, regRates []int
	stepDur, hold   time.Duration
	warmup          time.Duration
	fillRate        int

	// perfBin is perf when system calls are counted in this run; perfWhy
	// says why they are not; perfFailures counts the measurements where
	// perf failed anyway, perfFirstErr says how the first one did.
	perfBin, perfWhy, perfFirstErr string
	perfFailures                   int
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "echo-server":
			os.Exit(echoServer(os.Args[2:]))
		case "echo-client":
			os.Exit(echoClient(os.Args[2:]))
		}
	}
	os.Exit(run())
}

func run() int {
	var (
		short       = flag.Bool("short", false, "CI run: relay at -short-rate for -short-time through Switchboard and (when installed) Kamailio in turn; exit 1 if any call fails or Switchboard's CPU per call exceeds -short-max-ratio times Kamailio's")
		shortRate   = flag.Int("short-rate", 200, "calls per second of the -short run")
		shortTime   = flag.Duration("short-time", 5*time.Second, "duration of each round of the -short run")
		shortMax    = flag.Float64("short-max-ratio", 1.5, "-short: the highest Switchboard/Kamailio CPU per call that passes")
		shortRounds = flag.Int("short-rounds", 2, "-short: rounds of the two servers in turn")
		serversF    = flag.String("servers", "switchboard,kamailio", "servers to measure")
		scensF      = flag.String("scenarios", "relay,register,register-mem,register-auth,lookup,stateless,drouting,echo,concurrent", "scenarios to run")
		ratesF      = flag.String("rates", "500,1000,2000,3000,4000,6000,8000", "call-rate ladder (calls/s), in increasing order")
		regRatesF   = flag.String("reg-rates", "1000,2000,4000,6000,8000", "registration-rate ladder (registrations/s)")
		stepDur     = flag.Duration("step", 6*time.Second, "traffic time of each rung of a ladder")
		warmup      = flag.Duration("warmup", 3*time.Second, "traffic time at the first rate before a ladder, not measured (both servers: heaps, pools and caches reach their working size); 0 skips it")
		hold        = flag.Duration("hold", time.Second, "call duration between ACK and BYE")
		fillRate    = flag.Int("fill-rate", 1000, "rate of the 10,000 first REGISTERs")
		concurrent  = flag.Int("concurrent", 50000, "calls held up at once in the concurrency scenario")
		concRate    = flag.Int("concurrent-rate", 1000, "call rate that builds up the concurrent calls")
		concWork    = flag.String("concurrent-work", workDialog, "what the servers do in the concurrency scenario: dialog (Switchboard routes: calls, Kamailio dialog.cfg) or relay (no dialog state)")
		sbBin       = flag.String("switchboard", "", "switchboard binary (default: go build ./cmd/switchboard into the work directory)")
		kamBin      = flag.String("kamailio", "kamailio", "kamailio binary")
		install     = flag.Bool("install", true, "install Kamailio with apt-get when it is missing and running as root")
		kamDir      = flag.String("kamailio-configs", "", "directory of the Kamailio configurations (default: bench/kamailio of the repository)")
		kamKids     = flag.Int("kamailio-children", 2, "Kamailio UDP worker processes (-n)")
		kamMalloc   = flag.String("kamailio-malloc", "fm", "Kamailio's memory manager (-x): fm (f_malloc, as operators run it), qm (q_malloc, Debian's default, a debugging allocator) or tlsf")
		kamDlgDB    = flag.Bool("kamailio-dialog-db", false, "dialog scenario: Kamailio also writes CDRs (acc) and its dialogs to SQLite (dialog.cfg WITH_DB; db_sqlite loses most of them under load)")
		proxyCPU    = flag.Int("proxy-cpu", -1, "CPU the proxy is pinned to (default: the first CPU this process may use)")
		loadCPU     = flag.Int("load-cpu", -1, "CPU sipp, the echo client and this runner are pinned to (default: the second)")
		outPath     = flag.String("out", "", "write the Markdown report here (default bench/results/latest.md, none with -short)")
		goBench     = flag.String("gobench", "", "benchstat summary of the Go benchmarks to include in the report")
		workDir     = flag.String("work", "", "directory for configurations, logs and sipp statistics (default: a new temporary directory)")
		keep        = flag.Bool("keep", false, "keep the work directory")
		syscallsF   = flag.Bool("syscalls", true, "count the proxy's system calls per unit with perf stat (needs root and perf)")
		interleave  = flag.Bool("interleave", false, "run the ladders of the call scenarios named (e.g. relay,dialog) rung by rung in turn against each server, instead of one whole ladder after the other")
		rounds      = flag.Int("rounds", 1, "with -interleave: run the interleaved ladders this many times in a row, the rungs alternating throughout; the ÷ relay figures are the median of the rounds' ratios, with their range (the machine's drift over minutes weighs on both alike)")
		interleaveS = flag.Bool("interleave-servers", false, "run the ladders of every scenario named (calls and registrations) against every server rung by rung in turn: Switchboard's rung and Kamailio's at the same rate seconds apart, not a whole ladder apart")
	)
	var sets multiFlag
	flag.Var(&sets, "set", "extra --set key=value for switchboard (repeatable)")
	flag.Parse()

	if os.Getenv("SIPBENCH_PINNED") == "" && (*proxyCPU < 0 || *loadCPU < 0) {
		cpus := allowedCPUs()
		if len(cpus) < 2 {
			// One core (a small CI machine): nothing to pin apart. The
			// figures then include sipp's share of the same core.
			fmt.Fprintln(os.Stderr, "sipbench: fewer than two CPUs available: proxy and sipp are not pinned apart")
			*proxyCPU, *loadCPU = -1, -1
		} else {
			if *proxyCPU < 0 {
				*proxyCPU = cpus[0]
			}
			if *loadCPU < 0 {
				*loadCPU = cpus[1]
				if *loadCPU == *proxyCPU {
					*loadCPU = cpus[0]
				}
			}
		}
		// The re-executed runner gets the same choice.
		os.Setenv("SIPBENCH_CPUS", strconv.Itoa(*proxyCPU)+","+strconv.Itoa(*loadCPU))
	} else if v := os.Getenv("SIPBENCH_CPUS"); v != "" {
		fmt.Sscanf(v, "%d,%d", proxyCPU, loadCPU)
	}
	if pinned, err := pinSelf(*loadCPU); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench: pinning to CPU", *loadCPU, ":", err)
	} else if pinned {
		return 0 // unreachable: pinSelf execs
	}

	// sipp wants more descriptors than calls held (50,000 in the
	// concurrency scenario); children inherit the limit.
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		return 2
	}
	b := &bench{procs: newProcs(), out: os.Stdout, ports: map[int]bool{}, sbSets: sets,
		proxyCPU: *proxyCPU, loadCPU: *loadCPU, kamChildren: *kamKids, kamBin: *kamBin, kamDialogDB: *kamDlgDB,
		stepDur: *stepDur, hold: *hold, warmup: *warmup, fillRate: *fillRate}
	if b.rates, err = parseRates(*ratesF); err == nil {
		b.regRates, err = parseRates(*regRatesF)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		return 2
	}
	b.kamDir = *kamDir
	if b.kamDir == "" {
		b.kamDir = filepath.Join(root, "bench", "kamailio")
	}
	if b.work = *workDir; b.work == "" {
		if b.work, err = os.MkdirTemp("", "sipbench-"); err != nil {
			fmt.Fprintln(os.Stderr, "sipbench:", err)
			return 2
		}
	}
	b.work = absPath(b.work)
	os.MkdirAll(b.work, 0o755)

	// Every process started is stopped on the way out, also on Ctrl-C.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nsipbench: %v: stopping every process started\n", s)
		b.procs.stopAll()
		os.Exit(130)
	}()
	defer b.procs.stopAll()

	if !validMalloc(*kamMalloc) {
		fmt.Fprintf(os.Stderr, "sipbench: -kamailio-malloc: %q is none of fm, qm, tlsf\n", *kamMalloc)
		return 2
	}
	b.kamMalloc = *kamMalloc
	b.interleave = *interleave
	if *rounds < 1 || *rounds > 1 && !*interleave {
		fmt.Fprintf(os.Stderr, "sipbench: -rounds: %d: want 1, or more with -interleave\n", *rounds)
		return 2
	}
	b.rounds = *rounds
	b.interleaveServers = *interleaveS
	if *concWork != workDialog && *concWork != workRelay {
		fmt.Fprintf(os.Stderr, "sipbench: -concurrent-work: %q is neither %s nor %s\n", *concWork, workDialog, workRelay)
		return 2
	}
	b.concWork = *concWork
	code := b.main(root, *short, *shortRate, *shortTime, *shortMax, *shortRounds, *serversF, *scensF, *concurrent, *concRate,
		*sbBin, *install, *syscallsF, *outPath, *goBench)
	if *keep || code != 0 {
		fmt.Fprintln(b.out, "work directory (logs, sipp statistics):", b.work)
	} else {
		os.RemoveAll(b.work)
	}
	return code
}

func (b *bench) main(root string, short bool, shortRate int, shortTime time.Duration, shortMax float64, shortRounds int, serversF, scensF string,
	concurrent, concRate int, sbBin string, install, syscalls bool, outPath, goBench string) int {
	var err error
	if b.sippBin, err = exec.LookPath("sipp"); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench: sipp not found (Debian package sip-tester; scripts/test-deps.sh installs it)")
		return 2
	}
	if err := b.writeScenarios(); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		return 2
	}
	if b.users, err = b.writeUsers(); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		return 2
	}
	if b.numbers, err = b.writeNumbers(); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		return 2
	}
	b.sbBin = sbBin
	if b.sbBin == "" {
		b.sbBin = filepath.Join(b.work, "switchboard")
		fmt.Fprintln(b.out, "building switchboard ...")
		cmd := exec.Command("go", "build", "-o", b.sbBin, "./cmd/switchboard")
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "sipbench: building switchboard:", err)
			return 2
		}
	}
	b.sbBin = absPath(b.sbBin)

	if b.perfWhy = b.setupSyscalls(syscalls); b.perfWhy == "" {
		fmt.Fprintln(b.out, "system calls: counted with perf stat -e "+syscallEvent)
	} else {
		fmt.Fprintln(b.out, "system calls: NOT counted: "+b.perfWhy)
	}

	if short {
		return b.runShort(shortRate, shortTime, shortMax, shortRounds)
	}

	servers := splitList(serversF)
	notes := []string{}
	if contains2(servers, kamailio) {
		if note, ok := b.ensureKamailio(install); !ok {
			fmt.Fprintln(os.Stderr, "\n"+strings.Repeat("!", 72)+"\n!! "+note+"\n!! ONLY SWITCHBOARD IS MEASURED: no ratios.\n"+strings.Repeat("!", 72)+"\n")
			notes = append(notes, "**Kamailio was not measured**: "+note)
			servers = remove(servers, kamailio)
		} else if note != "" {
			notes = append(notes, note)
		}
	}
	rep := &report{servers: servers, notes: notes, started: time.Now(), loadStart: loadavg()}
	var group []scenario // call scenarios run interleaved (-interleave)
	for _, name := range splitList(scensF) {
		switch name {
		case "echo":
			b.runEchoFloor(rep)
			continue
		case "concurrent":
			for _, srv := range servers {
				s, err := b.startServer(srv, b.concWork)
				if err != nil {
					rep.concurrent = append(rep.concurrent, concurrentResult{Server: srv, Work: b.concWork, Err: err.Error()})
					fmt.Fprintln(b.out, err)
					continue
				}
				fmt.Fprintf(b.out, "== concurrent / %s (%s): %d calls at %d/s\n", srv, b.concWork, concurrent, concRate)
				c := b.runConcurrent(s, concurrent, concRate)
				s.stop()
				fmt.Fprintf(b.out, "   held %d calls, PSS %s -> %s, %s per call; VmHWM %s -> %s, %s per call; failed %d %s\n", c.Held,
					mib(c.Baseline.PSS), mib(c.Peak.PSS), kib(c.perCall()), mib(c.Baseline.HWM), mib(c.Peak.HWM), kib(c.hwmPerCall()), c.Failed, c.Err)
				rep.concurrent = append(rep.concurrent, c)
			}
			continue
		}
		sc, ok := scenarioByName(name)
		if !ok {
			fmt.Fprintf(os.Stderr, "sipbench: unknown scenario %q\n", name)
			return 2
		}
		if b.interleaveServers || b.interleave && sc.unit == "call" {
			if len(group) == 0 {
				rep.order = append(rep.order, interleaved)
			}
			group = append(group, sc)
			continue
		}
		rep.order = append(rep.order, sc)
		for _, srv := range servers {
			fmt.Fprintf(b.out, "== %s / %s: %s\n", sc.name, srv, sc.doc)
			s, err := b.startServer(srv, sc.work)
			if err != nil {
				fmt.Fprintln(b.out, "  ", err)
				rep.add(sc.name, scenarioResult{Server: srv, Err: err.Error()})
				continue
			}
			res := b.runLadder(sc, s)
			s.stop()
			fmt.Fprintf(b.out, "   max rate %d/s (%s)\n", res.MaxRate, res.Limit)
			rep.add(sc.name, res)
		}
	}
	if len(group) > 0 {
		// The interleaved scenarios take the place of the first of them
		// in the report, in the order they were named.
		rep.order = expandInterleaved(rep.order, group)
		if b.interleaveServers {
			for _, res := range b.runInterleavedServers(group, servers) {
				rep.add(res.name, res.res)
			}
		}
		for _, srv := range servers {
			if b.interleaveServers {
				break
			}
			for name, res := range b.runInterleaved(group, srv) {
				rep.add(name, res)
			}
		}
	}
	if note := b.syscallNote(); note != "" {
		rep.notes = append(rep.notes, note)
	}
	rep.loadEnd = loadavg()
	rep.ended = time.Now()
	rep.machine = machineInfo(b)
	rep.goBench = goBench
	rep.b = b
	text := rep.markdown()
	fmt.Fprintln(b.out)
	fmt.Fprint(b.out, rep.summary())
	if outPath == "" {
		outPath = filepath.Join(root, "bench", "results", "latest.md")
	}
	if err := os.WriteFile(outPath, []byte(text), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "sipbench:", err)
		return 1
	}
	fmt.Fprintln(b.out, "report:", outPath)
	return 0
}

// interleaved marks in a report's order where the interleaved scenarios go.
var interleaved = scenario{name: "(interleaved)"}

// expandInterleaved puts group in order where the interleaved mark is.
func expandInterleaved(order, group []scenario) []scenario {
	var out []scenario
	for _, sc := range order {
		if sc.name == interleaved.name {
			out = append(out, group...)
			continue
		}
		out = append(out, sc)
	}
	return out
}

// runShort is the CI run: the relay at a moderate fixed rate through
// Switchboard and, when Kamailio is installed, through Kamailio (the same
// configuration as the full runs) at the same rate, the two in turn for
// rounds rounds. It fails when calls fail, or when Switchboard's CPU per call
// is more than maxRatio times Kamailio's; never on absolute times.
func (b *bench) runShort(rate int, d time.Duration, maxRatio float64, rounds int) int {
	kinds := []string{switchboard}
	if _, err := exec.LookPath(b.kamBin); err == nil {
		kinds = append(kinds, kamailio)
	} else {
		fmt.Fprintln(b.out, "bench-short: kamailio not installed (scripts/test-deps.sh installs it as root): Switchboard alone, no CPU ratio")
	}
	fmt.Fprintf(b.out, "== bench-short: stateful relay, %d calls/s for %s, %s in turn, %d rounds (Kamailio: %s)\n",
		rate, d, strings.Join(kinds, " and "), rounds, b.kamailioConfig(workRelay))
	rounds = max(rounds, 1)
	servers := map[string]*server{}
	for _, kind := range kinds {
		s, err := b.startServer(kind, workRelay)
		if err != nil && kind == kamailio {
			// Kamailio is the yardstick, not what is tested.
			fmt.Fprintln(b.out, "bench-short: kamailio did not start ("+err.Error()+"): no CPU ratio")
			kinds = kinds[:1]
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sipbench:", err)
			return 1
		}
		defer s.stop()
		servers[kind] = s
		// Unmeasured: heaps, pools and caches reach their working size.
		b.relayStep(s, rate, max(1, rate/2))
	}
	n := int(float64(rate) * d.Seconds())
	cpu := map[string][]time.Duration{}
	for round := 1; round <= rounds; round++ {
		for _, kind := range kinds {
			st := b.relayStep(servers[kind], rate, n)
			fmt.Fprintf(b.out, "%s round %d: calls %d, ok %d, failed %d (UAS %d), retransmissions %d, unexpected %d, UDP drops %d (at the proxy %d)\n",
				kind, round, st.Target, st.OK, st.Failed, st.UASFailed, st.Retrans, st.Unexpect, st.Drops, st.ProxyDrops)
			fmt.Fprintf(b.out, "  proxy CPU %s per call (%.0f%% of its core), sipp CPU %.0f%% of its core, wall %.1fs, proxy PSS %s, VmHWM %s\n",
				us(st.cpuPerUnit()), 100*st.proxyLoad(), 100*st.sippLoad(), st.Wall.Seconds(), mib(st.Mem.PSS), mib(st.Mem.HWM))
			fmt.Fprintf(b.out, "  proxy context switches %s per call, system calls %s per call\n", perUnit(st.ctxPerUnit()), perUnit(st.syscallsPerUnit()))
			if st.Failed > 0 || st.UASFailed > 0 || st.OK != n {
				if kind == kamailio {
					// Kamailio is the yardstick, not what is tested.
					fmt.Fprintln(b.out, "bench-short: kamailio's calls failed ("+st.Why+"): no CPU ratio")
					delete(servers, kamailio)
					kinds = kinds[:1]
					break
				}
				fmt.Fprintln(os.Stderr, "bench-short: FAILED:", st.Why)
				if st.Errors != "" {
					fmt.Fprintln(os.Stderr, "sipp unexpected messages:\n"+st.Errors)
				}
				if st.ProxyLog != "" {
					fmt.Fprintln(os.Stderr, "switchboard log:\n"+st.ProxyLog)
				}
				return 1
			}
			cpu[kind] = append(cpu[kind], st.cpuPerUnit())
		}
	}
	if b.perfFailures > 0 {
		fmt.Fprintln(b.out, b.syscallNote())
	}
	if len(kinds) < 2 {
		fmt.Fprintln(b.out, "bench-short: ok (figures are informative; timing never fails this run)")
		return 0
	}
	ratio, ok := shortVerdict(cpu[switchboard], cpu[kamailio], maxRatio)
	fmt.Fprintf(b.out, "CPU per call, switchboard / kamailio (%s): %.2f (the lowest of each over %d rounds: %s / %s; limit %.2f)\n",
		b.kamailioConfig(workRelay), ratio, rounds, us(minDuration(cpu[switchboard])), us(minDuration(cpu[kamailio])), maxRatio)
	if !ok {
		fmt.Fprintf(os.Stderr, "bench-short: FAILED: switchboard used %.2f times kamailio's CPU per relayed call (limit %.2f)\n", ratio, maxRatio)
		return 1
	}
	fmt.Fprintln(b.out, "bench-short: ok (absolute times never fail this run; only the ratio to Kamailio does)")
	return 0
}

// shortVerdict compares the lowest CPU per call of each server over the
// rounds: interference from other processes on a shared machine only adds
// time, so the lowest reading of each is the one closest to its own cost.
// ok is false when Switchboard's is more than maxRatio times Kamailio's.
func shortVerdict(sb, kam []time.Duration, maxRatio float64) (ratio float64, ok bool) {
	s, k := minDuration(sb), minDuration(kam)
	if s <= 0 || k <= 0 {
		return 0, true
	}
	ratio = float64(s) / float64(k)
	return ratio, ratio <= maxRatio
}

func minDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for i, d := range ds {
		if i == 0 || d < m {
			m = d
		}
	}
	return m
}

// runEchoFloor measures the echo at the datagram rates of the 500 and
// 2,000 calls/s rungs: a relay at c calls/s handles 13·c datagrams a second,
// the echo handles two per datagram sent to it. At each rate the blocking
// echo (the floor) and then the one through Go's network poller.
func (b *bench) runEchoFloor(rep *report) {
	for _, cps := range []int{500, 2000} {
		rate := cps * datagramsPerCall / 2
		for _, poller := range []bool{false, true} {
			fmt.Fprintf(b.out, "== %s: %d datagrams/s each way (the datagrams of %d calls/s)\n", echoName(poller), rate, cps)
			r, err := b.runEcho(rate, 5*time.Second, poller)
			r.Calls = cps
			if err != nil {
				fmt.Fprintln(b.out, "  ", err)
				continue
			}
			fmt.Fprintf(b.out, "   sent %d received %d, %s per datagram, %s per call; per datagram %s system calls, %s context switches\n",
				r.Sent, r.Received, us(r.perDatagram()), us(r.perDatagram()*datagramsPerCall),
				perUnit2(r.syscallsPerDatagram()), perUnit2(r.ctxPerDatagram()))
			rep.echo = append(rep.echo, r)
		}
	}
}

// echoName names an echo in the output and the report.
func echoName(poller bool) string {
	if poller {
		return "UDP echo through Go's poller"
	}
	return "UDP echo floor"
}

// ensureKamailio finds Kamailio or installs it. It returns a note for the
// report and whether Kamailio can be measured.
func (b *bench) ensureKamailio(install bool) (string, bool) {
	if _, err := exec.LookPath(b.kamBin); err == nil {
		return "", b.haveSQLiteModule()
	}
	if !install {
		return "kamailio not found and -install=false", false
	}
	if os.Geteuid() != 0 {
		return "kamailio not found; run as root to install it (apt-get install kamailio kamailio-sqlite-modules)", false
	}
	fmt.Fprintln(b.out, "installing kamailio with apt-get ...")
	cmd := exec.Command("sh", "-c", "apt-get update -qq && apt-get install -y -qq kamailio kamailio-sqlite-modules")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "installing kamailio failed: " + err.Error(), false
	}
	if _, err := exec.LookPath(b.kamBin); err != nil {
		return "kamailio still not found after apt-get install", false
	}
	return "Kamailio was installed by this run (apt-get install kamailio kamailio-sqlite-modules).", b.haveSQLiteModule()
}

// haveSQLiteModule installs db_sqlite when missing: the registrar and drouting
// scenarios read their tables through it.
func (b *bench) haveSQLiteModule() bool {
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so"); err == nil {
		return true
	}
	if os.Geteuid() == 0 {
		cmd := exec.Command("sh", "-c", "apt-get install -y -qq kamailio-sqlite-modules")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Run()
	}
	return true // a scenario that needs it reports its own failure to start
}

// pinSelf re-executes the runner under taskset so that it and the goroutines
// that sample /proc stay off the proxy's core. It returns true only in the
// parent that did not exec (never: Exec replaces the process).
func pinSelf(cpu int) (bool, error) {
	if cpu < 0 || os.Getenv("SIPBENCH_PINNED") != "" {
		return false, nil
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return false, err
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	env := append(os.Environ(), "SIPBENCH_PINNED=1")
	args := append([]string{"taskset", "-c", strconv.Itoa(cpu), self}, os.Args[1:]...)
	return false, syscall.Exec(ts, args, env)
}

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var out []int
	for i := 0; i < 1024 && len(out) < set.Count(); i++ {
		if set.IsSet(i) {
			out = append(out, i)
		}
	}
	return out
}

// repoRoot finds the directory of the main module's go.mod.
func repoRoot() (string, error) {
	dir, _ := os.Getwd()
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module switchboard\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run sipbench inside the switchboard repository")
		}
		dir = parent
	}
}

// writeScenarios copies the embedded sipp scenarios into the work directory.
func (b *bench) writeScenarios() error {
	b.scenDir = filepath.Join(b.work, "scenarios")
	if err := os.MkdirAll(b.scenDir, 0o755); err != nil {
		return err
	}
	ents, err := scenarioFS.ReadDir("scenarios")
	if err != nil {
		return err
	}
	for _, e := range ents {
		data, _ := scenarioFS.ReadFile("scenarios/" + e.Name())
		if err := os.WriteFile(filepath.Join(b.scenDir, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("rates must increase: %s", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no rates")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains2(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func remove(s []string, v string) []string {
	var out []string
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
