package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scenario is one whole-call benchmark. Each is run against each server
// with the same sipp traffic.
type scenario struct {
	name string
	// work is what the server is configured to do (see servers.go).
	work string
	// unit names what one "call" of the scenario is.
	unit string
	doc  string
	// fill, when set, runs once before the ladder (the 10,000 REGISTERs);
	// the lookup scenario registers its users there.
	fill func(b *bench, s *server) step
	// step runs one rung of the ladder at rate for n units.
	step func(b *bench, s *server, rate, n int) step
}

var scenarios = []scenario{
	{name: "relay", work: workRelay, unit: "call",
		doc:  "stateful relay with Record-Route to the R-URI (a sipp UAS)",
		step: (*bench).relayStep},
	{name: "register", work: workRegistrar, unit: "registration",
		doc:  "REGISTER of 10,000 distinct users, no authentication, bindings persisted (Kamailio: usrloc db_mode 2 on SQLite)",
		fill: func(b *bench, s *server) step { return b.registerStep(s, b.fillRate, userCount, "uac_register.xml") },
		step: func(b *bench, s *server, rate, n int) step {
			return b.registerStep(s, rate, n, "uac_register.xml")
		}},
	{name: "register-mem", work: workRegistrarMem, unit: "registration",
		doc:  "register, with Kamailio's bindings in memory only (usrloc db_mode 0); Switchboard still persists",
		fill: func(b *bench, s *server) step { return b.registerStep(s, b.fillRate, userCount, "uac_register.xml") },
		step: func(b *bench, s *server, rate, n int) step {
			return b.registerStep(s, rate, n, "uac_register.xml")
		}},
	{name: "register-auth", work: workRegistrarAut, unit: "registration",
		doc: "REGISTER of 10,000 distinct users with digest authentication (401, then REGISTER with credentials)",
		fill: func(b *bench, s *server) step {
			return b.registerStep(s, b.fillRate, userCount, "uac_register_auth.xml")
		},
		step: func(b *bench, s *server, rate, n int) step {
			return b.registerStep(s, rate, n, "uac_register_auth.xml")
		}},
	{name: "lookup", work: workRegistrar, unit: "call",
		doc:  "calls to the 10,000 registered users through the location lookup, with Record-Route",
		fill: (*bench).lookupFill,
		step: (*bench).lookupStep},
	{name: "stateless", work: workStateless, unit: "call",
		doc:  "stateless forward to the R-URI (a sipp UAS)",
		step: (*bench).relayStep},
	{name: "drouting", work: workDrouting, unit: "call",
		doc:  "calls to numbers routed by 10,000 prefix rules (drouting) to one gateway (a sipp UAS), with Record-Route",
		step: (*bench).droutingStep},
	{name: "dialog", work: workDialog, unit: "call",
		doc:  "the relay's calls with a dialog for every call (Switchboard: routes calls, dialogs and CDRs in its store; Kamailio: dlg_manage)",
		step: (*bench).relayStep},
	{name: "media", work: workMedia, unit: "call",
		doc:  "the relay's calls with rtpengine_manage: offer and answer through a local rtpengine, delete on BYE",
		step: (*bench).relayStep},
}

func scenarioByName(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// step is the outcome of one run of sipp traffic against one server.
type step struct {
	Rate      int // target units per second
	Target    int // units the UAC was told to run
	Created   int
	OK        int
	Failed    int // UAC failed + units never started
	UASFailed int
	Retrans   int // UAC + UAS retransmissions
	Unexpect  int // out-of-call and dead-call messages at the UAC
	Wall      time.Duration
	CreatedBy time.Duration // when the UAC had started its last unit
	ProxyCPU  time.Duration
	// CtxSwitches counts the proxy's context switches (every thread and
	// process, voluntary and involuntary) and Syscalls its system calls,
	// over the same window as ProxyCPU; SyscallsOK is false when they were
	// not counted.
	CtxSwitches int64
	Syscalls    int64
	SyscallsOK  bool
	SippCPU     time.Duration // UAC + UAS
	Mem         memory        // the server after the step
	// ProxyCore and LoadCore are how busy the two cores were in all
	// (/proc/stat), whoever used them; Drops is the kernel's count of UDP
	// datagrams dropped for a full receive buffer during the step.
	ProxyCore, LoadCore float64
	Drops               int64
	ProxyDrops          int64 // of Drops, at the proxy's own socket
	Retried             bool  // failed with a core shared, and was run again
	Pass                bool
	Why                 string // why it did not pass
	Errors              string // a sample of sipp's unexpected-message log
	ProxyLog            string // the server's last log lines when something failed
}

// cpuPerUnit is the proxy's CPU time per successful unit.
func (s step) cpuPerUnit() time.Duration {
	if s.OK == 0 {
		return 0
	}
	return s.ProxyCPU / time.Duration(s.OK)
}

// ctxPerUnit is the proxy's context switches per successful unit.
func (s step) ctxPerUnit() float64 {
	if s.OK == 0 {
		return 0
	}
	return float64(s.CtxSwitches) / float64(s.OK)
}

// syscallsPerUnit is the proxy's system calls per successful unit, 0 when
// they were not counted.
func (s step) syscallsPerUnit() float64 {
	if s.OK == 0 || !s.SyscallsOK {
		return 0
	}
	return float64(s.Syscalls) / float64(s.OK)
}

func (s step) proxyLoad() float64 { return load(s.ProxyCPU, s.Wall) }
func (s step) sippLoad() float64  { return load(s.SippCPU, s.Wall) }

func load(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(cpu) / float64(wall)
}

// failRatio is the share of units that did not complete.
func (s step) failRatio() float64 {
	if s.Target == 0 {
		return 0
	}
	return float64(s.Failed) / float64(s.Target)
}

// judge decides whether the step sustained its rate: under 0.1% failed and
// the UAC started its last unit within 15% (plus 1.5 s, the resolution of
// sipp's statistics) of the time the rate allows.
func (s *step) judge() {
	s.Pass = true
	if s.failRatio() >= 0.001 {
		s.Pass = false
		s.Why = fmt.Sprintf("%.2f%% failed", 100*s.failRatio())
	}
	want := time.Duration(float64(s.Target) / float64(s.Rate) * float64(time.Second))
	if s.CreatedBy > want*115/100+1500*time.Millisecond {
		s.Pass = false
		if s.Why != "" {
			s.Why += "; "
		}
		s.Why += fmt.Sprintf("rate not kept: %.0fs to start what the rate starts in %.0fs", s.CreatedBy.Seconds(), want.Seconds())
	}
}

// meter takes the readings of a step: the proxy's CPU time, context
// switches and system calls, and the system-wide figures.
type meter struct {
	cpu0       time.Duration
	ctx0       int64
	sys        *syscallCounter
	b0, t0     map[int]int64
	drops      int64
	proxyDrops int64
	port       int
}

// startMeter is called just before the UAC starts. perf is started first:
// it takes a moment, and counts from when it acknowledged, while the proxy
// is still idle.
func (b *bench) startMeter(s *server) meter {
	m := meter{sys: b.countSyscalls(tree(s.p.pid())), port: s.port}
	m.b0, m.t0 = cpuBusy()
	m.drops, m.proxyDrops = udpRcvbufErrors(), udpPortDrops(s.port)
	m.ctx0 = treeCtxSwitches(s.p.pid())
	m.cpu0 = s.cpu()
	return m
}

// finish is called after the UAC and UAS have ended.
func (m meter) finish(b *bench, s *server, st *step) {
	st.ProxyCPU = s.cpu() - m.cpu0
	st.CtxSwitches = treeCtxSwitches(s.p.pid()) - m.ctx0
	st.Syscalls, st.SyscallsOK = b.stopSyscalls(m.sys)
	b1, t1 := cpuBusy()
	st.ProxyCore = coreLoad(b.proxyCPU, m.b0, m.t0, b1, t1)
	st.LoadCore = coreLoad(b.loadCPU, m.b0, m.t0, b1, t1)
	st.Drops = udpRcvbufErrors() - m.drops
	st.ProxyDrops = udpPortDrops(m.port) - m.proxyDrops
}

// scenarioFile returns the path of an embedded sipp scenario.
func (b *bench) scenarioFile(name string) string { return filepath.Join(b.scenDir, name) }

// sippTimeout bounds a sipp run of n units at rate.
func sippTimeout(n, rate int, hold time.Duration) time.Duration {
	return time.Duration(float64(n)/float64(rate)*2*float64(time.Second)) + 2*hold + 20*time.Second
}

// callRun drives n calls at rate through s: a UAS on uasPort answers, a UAC
// sends with uacArgs (scenario file and its keys). The proxy's CPU is read
// just before the UAC starts and after both sipps ended.
func (b *bench) callRun(s *server, rate, n, uasPort int, hold time.Duration, uacArgs ...string) step {
	st := step{Rate: rate, Target: n}
	timeout := sippTimeout(n, rate, hold)
	uas, err := b.startSipp("uas", "-sf", b.scenarioFile("uas.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort),
		"-m", strconv.Itoa(n), "-timeout", strconv.Itoa(int(timeout.Seconds()))+"s")
	if err != nil {
		st.Why = err.Error()
		st.Failed = n
		return st
	}
	if !waitUDPBound(uasPort, 5*time.Second) {
		uas.finish(0)
		st.Why = "sipp UAS did not start: " + uas.logTail(5)
		st.Failed = n
		return st
	}
	uacPort, _ := b.freePort()
	args := append([]string{"127.0.0.1:" + strconv.Itoa(s.port), "-i", "127.0.0.1", "-p", strconv.Itoa(uacPort),
		"-r", strconv.Itoa(rate), "-m", strconv.Itoa(n), "-l", strconv.Itoa(limitFor(rate, hold, n)),
		"-d", strconv.Itoa(int(hold.Milliseconds())), "-recv_timeout", "10s",
		"-timeout", strconv.Itoa(int(timeout.Seconds())) + "s", "-timeout_error"}, uacArgs...)
	m := b.startMeter(s)
	uac, err := b.startSipp("uac", args...)
	if err != nil {
		b.stopSyscalls(m.sys)
		uas.finish(0)
		st.Why = err.Error()
		st.Failed = n
		return st
	}
	uac.finish(timeout)
	// The UAS ends when it has seen n calls; after a failed call it would
	// wait for one that never comes.
	uas.finish(4 * time.Second)
	m.finish(b, s, &st)
	st.Wall = uac.end.Sub(uac.start)
	st.SippCPU = uac.cpuTime() + uas.cpuTime()
	st.Mem = s.memory()
	ua, err1 := uac.stats()
	us, _ := uas.stats()
	if err1 != nil {
		st.Why = "UAC statistics: " + err1.Error() + ": " + uac.logTail(5)
	}
	st.Created, st.OK, st.CreatedBy = ua.Created, ua.Successful, ua.CreatedBy
	st.Failed = ua.Failed + (n - ua.Created)
	if st.OK+st.Failed < n { // calls still open when sipp was stopped
		st.Failed = n - st.OK
	}
	st.UASFailed = us.Failed
	st.Retrans = ua.Retrans + us.Retrans
	st.Unexpect = ua.OutOfCall + ua.Dead
	st.judge()
	if err1 != nil {
		st.Pass = false
	}
	if !st.Pass || st.Failed > 0 {
		st.Errors = uac.errorSample(6)
		st.ProxyLog = s.p.logTail(10)
	}
	return st
}

// limitFor is the sipp -l (simultaneous calls) for a rate: room for the
// calls held plus five seconds of slow answers.
func limitFor(rate int, hold time.Duration, n int) int {
	l := int(float64(rate)*(hold.Seconds()+5)) + 100
	if l > n {
		l = n
	}
	return l
}

func (b *bench) relayStep(s *server, rate, n int) step {
	uasPort, err := b.freePort()
	if err != nil {
		return step{Rate: rate, Target: n, Failed: n, Why: err.Error()}
	}
	return b.callRun(s, rate, n, uasPort, b.hold, "-sf", b.scenarioFile("uac_call.xml"),
		"-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uasPort))
}

// registerStep sends n REGISTERs at rate, cycling through the users file.
// When the server has a UAS port (lookup), REGISTERs are sent from it and
// the contacts point at it: the binding's contact is then where the request
// came from, and a registrar that sends to the source of the REGISTER when
// the two differ (NAT handling) sends calls to the same place as one that
// uses the contact.
func (b *bench) registerStep(s *server, rate, n int, xml string) step {
	contact := s.uasPort
	uacPort := s.uasPort
	if contact == 0 {
		contact = 9 // discard: the register scenarios never call the users
		uacPort, _ = b.freePort()
	}
	st := step{Rate: rate, Target: n}
	timeout := sippTimeout(n, rate, 0)
	m := b.startMeter(s)
	uac, err := b.startSipp("register", "127.0.0.1:"+strconv.Itoa(s.port), "-sf", b.scenarioFile(xml),
		"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-inf", b.users,
		"-key", "domain", benchDomain, "-key", "contact_port", strconv.Itoa(contact),
		"-r", strconv.Itoa(rate), "-m", strconv.Itoa(n), "-l", strconv.Itoa(limitFor(rate, 0, n)),
		"-recv_timeout", "10s", "-timeout", strconv.Itoa(int(timeout.Seconds()))+"s", "-timeout_error")
	if err != nil {
		b.stopSyscalls(m.sys)
		st.Why, st.Failed = err.Error(), n
		return st
	}
	uac.finish(timeout)
	m.finish(b, s, &st)
	st.Wall = uac.end.Sub(uac.start)
	st.SippCPU = uac.cpuTime()
	st.Mem = s.memory()
	ua, err := uac.stats()
	if err != nil {
		st.Why = "UAC statistics: " + err.Error() + ": " + uac.logTail(5)
	}
	st.Created, st.OK, st.CreatedBy = ua.Created, ua.Successful, ua.CreatedBy
	st.Failed = ua.Failed + (n - ua.Created)
	if st.OK+st.Failed < n {
		st.Failed = n - st.OK
	}
	st.Retrans = ua.Retrans
	st.Unexpect = ua.OutOfCall + ua.Dead
	st.judge()
	if err != nil {
		st.Pass = false
	}
	if !st.Pass || st.Failed > 0 {
		st.Errors = uac.errorSample(6)
		st.ProxyLog = s.p.logTail(10)
	}
	return st
}

// lookupFill registers every user with a contact on the UAS port that the
// calls of the lookup scenario will reach.
func (b *bench) lookupFill(s *server) step {
	p, err := b.freePort()
	if err != nil {
		return step{Why: err.Error()}
	}
	s.uasPort = p
	return b.registerStep(s, b.fillRate, userCount, "uac_register.xml")
}

func (b *bench) lookupStep(s *server, rate, n int) step {
	return b.callRun(s, rate, n, s.uasPort, b.hold, "-sf", b.scenarioFile("uac_call_user.xml"),
		"-inf", b.users, "-key", "domain", benchDomain)
}

// scenarioResult is one scenario run against one server.
type scenarioResult struct {
	Server   string
	Fill     *step
	Steps    []step
	MaxRate  int    // highest rung passed; 0 when none
	AllPass  bool   // every rung passed: the maximum is above the ladder
	Limit    string // which side ran out at the first failed rung
	PeakMem  memory // sampled every half second while the server ran
	Err      string // the scenario could not run
	Baseline memory // the server's memory before any traffic
}

// runLadder runs sc against s: the fill, then one step per rate until a
// step fails.
func (b *bench) runLadder(sc scenario, s *server) scenarioResult {
	l := b.startLadder(sc, s)
	for _, rate := range l.rates {
		if l.done {
			break
		}
		b.ladderRung(l, rate)
	}
	return l.finish()
}

// ladder is a scenario's ladder in progress against one server.
type ladder struct {
	sc          scenario
	s           *server
	res         scenarioResult
	rates       []int
	done        bool // a rung failed, the fill failed or the server exited
	stopSampler func()
}

// startLadder reads the server's idle memory, starts the memory sampler,
// runs the scenario's fill and the unmeasured warm-up.
func (b *bench) startLadder(sc scenario, s *server) *ladder {
	l := &ladder{sc: sc, s: s, res: scenarioResult{Server: s.kind, Baseline: s.memory()}, rates: b.rates}
	if sc.unit == "registration" {
		l.rates = b.regRates
	}
	l.stopSampler = b.sampleMemory(s, &l.res.PeakMem)
	if sc.fill != nil {
		f := sc.fill(b, s)
		l.res.Fill = &f
		b.printStep(sc, s, "fill", f)
		if f.Failed == f.Target {
			l.res.Err = "fill failed: " + f.Why
			l.done = true
			return l
		}
	}
	if b.warmup > 0 && len(l.rates) > 0 {
		// Not measured: the first rung would otherwise also pay for the
		// server growing its heap, pools and tables from nothing.
		n := int(float64(l.rates[0]) * b.warmup.Seconds())
		b.printStep(sc, s, "warm-up", sc.step(b, s, l.rates[0], n))
	}
	l.res.AllPass = true
	return l
}

// ladderRung runs one rung at rate; a failed rung ends the ladder.
func (b *bench) ladderRung(l *ladder, rate int) {
	sc, s := l.sc, l.s
	n := int(float64(rate) * b.stepDur.Seconds())
	st := sc.step(b, s, rate, n)
	if !st.Pass && contended(st) && s.alive() {
		// Another process took a share of a core during the rung: run
		// it once more before calling it the limit. Both are reported.
		st.Why += " (retried: other processes used a core)"
		st.Retried = true
		l.res.Steps = append(l.res.Steps, st)
		b.printStep(sc, s, "", st)
		st = sc.step(b, s, rate, n)
	}
	l.res.Steps = append(l.res.Steps, st)
	b.printStep(sc, s, "", st)
	if !st.Pass {
		l.res.AllPass = false
		l.res.Limit = limitSide(st)
		l.done = true
		return
	}
	l.res.MaxRate = rate
	if !s.alive() {
		l.res.AllPass = false
		l.res.Err = "server exited: " + s.p.logTail(10)
		l.done = true
	}
}

// finish stops the memory sampler and returns the result.
func (l *ladder) finish() scenarioResult {
	l.stopSampler()
	if l.res.AllPass && len(l.res.Steps) > 0 {
		l.res.Limit = "nothing: every rung passed (top rung: " + limitSide(l.res.Steps[len(l.res.Steps)-1]) + ")"
	}
	return l.res
}

// runInterleaved runs the ladders of several scenarios against one kind of
// server rung by rung in turn: one server per scenario, all started first
// (fills and warm-ups), then at each rate every scenario's rung, the order
// rotated at each rate (relay, dialog at the first rate; dialog, relay at
// the next...). Rungs of the scenarios compared are then minutes apart at
// most, not a whole ladder, so a change in the other work on the machine
// weighs on both alike. The servers not measured at a moment stay up,
// idle, on the same core; each one's CPU is read from its own processes.
func (b *bench) runInterleaved(scs []scenario, kind string) map[string]scenarioResult {
	out := map[string]scenarioResult{}
	var ls []*ladder
	for _, sc := range scs {
		fmt.Fprintf(b.out, "== %s / %s: %s\n", sc.name, kind, sc.doc)
		s, err := b.startServer(kind, sc.work)
		if err != nil {
			fmt.Fprintln(b.out, "  ", err)
			out[sc.name] = scenarioResult{Server: kind, Err: err.Error()}
			continue
		}
		defer s.stop()
		ls = append(ls, b.startLadder(sc, s))
	}
	for round := 0; round < max(b.rounds, 1); round++ {
		for i, rate := range b.rates {
			for _, k := range rungOrder(len(ls), round*len(b.rates)+i) {
				l := ls[k]
				if l.done || !containsInt(l.rates, rate) {
					continue
				}
				b.ladderRung(l, rate)
			}
		}
	}
	for _, l := range ls {
		res := l.finish()
		fmt.Fprintf(b.out, "   %s / %s: max rate %d/s (%s)\n", l.sc.name, kind, res.MaxRate, res.Limit)
		out[l.sc.name] = res
	}
	return out
}

// namedResult is one scenario's ladder against one server.
type namedResult struct {
	name string
	res  scenarioResult
}

// runInterleavedServers starts a server for every scenario of scs and
// every kind (each scenario's fill first), then runs the ladders rung by
// rung in turn: at each rate every ladder that has it, the order rotated at
// each rate. A server's rung and the other's at the same rate are then
// seconds apart, so load from other processes that comes and goes weighs
// on both alike, where whole ladders one after the other are minutes apart.
func (b *bench) runInterleavedServers(scs []scenario, kinds []string) []namedResult {
	var out []namedResult
	var ls []*ladder
	for _, sc := range scs {
		for _, kind := range kinds {
			fmt.Fprintf(b.out, "== %s / %s: %s\n", sc.name, kind, sc.doc)
			s, err := b.startServer(kind, sc.work)
			if err != nil {
				fmt.Fprintln(b.out, "  ", err)
				out = append(out, namedResult{sc.name, scenarioResult{Server: kind, Err: err.Error()}})
				continue
			}
			defer s.stop()
			ls = append(ls, b.startLadder(sc, s))
		}
	}
	for i, rate := range unionRates(ls) {
		for _, k := range rungOrder(len(ls), i) {
			l := ls[k]
			if l.done || !containsInt(l.rates, rate) {
				continue
			}
			fmt.Fprintf(b.out, "   %s / %s:\n", l.sc.name, l.s.kind)
			b.ladderRung(l, rate)
		}
	}
	for _, l := range ls {
		res := l.finish()
		fmt.Fprintf(b.out, "   %s / %s: max rate %d/s (%s)\n", l.sc.name, l.s.kind, res.MaxRate, res.Limit)
		out = append(out, namedResult{l.sc.name, res})
	}
	return out
}

// unionRates is every rate of the ladders, in increasing order: call and
// registration ladders interleaved run at each rate either has.
func unionRates(ls []*ladder) []int {
	var rates []int
	for _, l := range ls {
		for _, r := range l.rates {
			if !containsInt(rates, r) {
				rates = append(rates, r)
			}
		}
	}
	slices.Sort(rates)
	return rates
}

// rungOrder is the order of n interleaved ladders at the i-th rate: rotated
// by one at each rate, so that no scenario always runs first (just after
// the previous rate's last rung) or last.
func rungOrder(n, i int) []int {
	out := make([]int, n)
	for j := range out {
		out[j] = (i + j) % n
	}
	return out
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// contended reports whether processes other than the proxy and sipp used a
// noticeable share of either core during the step.
func contended(st step) bool {
	return st.ProxyCore-st.proxyLoad() > 0.15 || st.LoadCore-st.sippLoad() > 0.15
}

// limitSide says which side ran out of CPU in a step: the proxy's processes
// and sipp's, and how busy each core was in all (other processes included).
func limitSide(st step) string {
	p, l := st.proxyLoad(), st.sippLoad()
	pc, lc := st.ProxyCore, st.LoadCore
	figs := fmt.Sprintf("proxy %.0f%% / sipp %.0f%%; cores busy %.0f%% / %.0f%%", 100*p, 100*l, 100*pc, 100*lc)
	switch {
	case p >= 0.85 && p >= l:
		return "proxy (" + figs + ")"
	case l >= 0.85:
		return "sipp (" + figs + ")"
	case pc >= 0.9 && pc-p > 0.1:
		return "proxy core shared with other processes (" + figs + ")"
	case lc >= 0.9 && lc-l > 0.1:
		return "sipp core shared with other processes (" + figs + ")"
	case st.Drops > 0 && st.ProxyDrops*2 < st.Drops:
		return fmt.Sprintf("sipp: its sockets dropped %d of %d datagrams lost (%s)", st.Drops-st.ProxyDrops, st.Drops, figs)
	case st.Drops > 0:
		return fmt.Sprintf("proxy: its socket dropped %d of %d datagrams lost (%s)", st.ProxyDrops, st.Drops, figs)
	default:
		return "neither core full, no drops (" + figs + "): latency"
	}
}

// sampleMemory records the server's peak memory until the returned function
// is called.
func (b *bench) sampleMemory(s *server, peak *memory) func() {
	var mu sync.Mutex
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			m := s.memory()
			mu.Lock()
			if m.PSS > peak.PSS {
				peak.PSS = m.PSS
			}
			if m.HWM > peak.HWM {
				peak.HWM = m.HWM
			}
			if m.RSS > peak.RSS {
				peak.RSS = m.RSS
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); <-done }
}

// concurrentResult is the memory held for many simultaneous calls.
type concurrentResult struct {
	Server   string
	Work     string // what the server was configured to do: dialog or relay
	Target   int
	Rate     int
	Held     int    // calls in progress at the UAC when memory was read
	Baseline memory // before the calls
	Peak     memory // at Held
	Failed   int
	Retrans  int
	ProxyCPU time.Duration
	SippCPU  time.Duration
	Wall     time.Duration
	Err      string
}

func (c concurrentResult) perCall() int64 {
	if c.Held == 0 {
		return 0
	}
	return (c.Peak.PSS - c.Baseline.PSS) / int64(c.Held)
}

// hwmPerCall is the growth of the peak resident set (VmHWM, summed over
// the processes) over the calls held.
func (c concurrentResult) hwmPerCall() int64 {
	if c.Held == 0 {
		return 0
	}
	return (c.Peak.HWM - c.Baseline.HWM) / int64(c.Held)
}

// runConcurrent holds target calls up at once through s: calls start at
// rate and are held long enough that all are up together; memory is read
// when the UAC counts target calls in progress (or the ramp is over), then
// the sipps are stopped.
func (b *bench) runConcurrent(s *server, target, rate int) concurrentResult {
	res := concurrentResult{Server: s.kind, Work: s.work, Target: target, Rate: rate}
	ramp := time.Duration(float64(target) / float64(rate) * float64(time.Second))
	hold := ramp + 20*time.Second
	uasPort, _ := b.freePort()
	uas, err := b.startSipp("uas-concurrent", "-sf", b.scenarioFile("uas.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(uasPort), "-m", strconv.Itoa(target), "-timeout", strconv.Itoa(int((2*hold).Seconds()))+"s")
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer uas.finish(0)
	waitUDPBound(uasPort, 5*time.Second)
	time.Sleep(time.Second)
	res.Baseline = s.memory()
	uacPort, _ := b.freePort()
	cpu0 := s.cpu()
	t0 := time.Now()
	uac, err := b.startSipp("uac-concurrent", "127.0.0.1:"+strconv.Itoa(s.port), "-sf", b.scenarioFile("uac_call.xml"),
		"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-key", "ruri", "sip:callee@127.0.0.1:"+strconv.Itoa(uasPort),
		"-r", strconv.Itoa(rate), "-m", strconv.Itoa(target), "-l", strconv.Itoa(target+1000),
		"-d", strconv.Itoa(int(hold.Milliseconds())), "-recv_timeout", "10s",
		"-timeout", strconv.Itoa(int((2*hold).Seconds()))+"s")
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer uac.finish(0)
	deadline := t0.Add(ramp + 10*time.Second)
	for time.Now().Before(deadline) && !uac.exited() {
		time.Sleep(time.Second)
		st, err := uac.stats()
		if err == nil && st.Current >= target-target/100 && time.Since(t0) > ramp {
			break
		}
	}
	// Let the last calls' ACKs arrive and stale transactions age like the
	// others before reading.
	time.Sleep(2 * time.Second)
	res.Peak = s.memory()
	res.ProxyCPU = s.cpu() - cpu0
	res.Wall = time.Since(t0)
	if st, err := uac.stats(); err == nil {
		res.Held = st.Current
		res.Failed = st.Failed
		res.Retrans = st.Retrans
	} else {
		res.Err = "UAC statistics: " + err.Error()
	}
	if res.Failed > 0 {
		res.Err = strings.TrimSpace(res.Err + " " + uac.errorSample(4))
	}
	uac.finish(0)
	uas.finish(0)
	res.SippCPU = uac.cpuTime() + uas.cpuTime()
	return res
}
