package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report collects the results of a run and writes them as Markdown.
type report struct {
	b          *bench
	servers    []string
	notes      []string
	order      []scenario
	results    map[string]map[string]scenarioResult // scenario → server → result
	echo       []echoResult
	concurrent []concurrentResult
	started    time.Time
	ended      time.Time
	loadStart  string
	loadEnd    string
	machine    []string
	goBench    string
}

func (r *report) add(scenario string, res scenarioResult) {
	if r.results == nil {
		r.results = map[string]map[string]scenarioResult{}
	}
	if r.results[scenario] == nil {
		r.results[scenario] = map[string]scenarioResult{}
	}
	r.results[scenario][res.Server] = res
}

// row is one line of the summary table: a figure for each server and the
// ratio Switchboard/Kamailio.
type row struct {
	scenario, figure string
	sb, kam          string
	ratio            string
}

func ratio(sb, kam float64) string {
	if sb <= 0 || kam <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", sb/kam)
}

// stepAt returns the rung at rate, if run.
// A retried rung is there twice; the last run counts.
func stepAt(res scenarioResult, rate int) (step, bool) {
	for i := len(res.Steps) - 1; i >= 0; i-- {
		if s := res.Steps[i]; s.Rate == rate {
			return s, true
		}
	}
	return step{}, false
}

func (r *report) rows() []row {
	var rows []row
	for _, sc := range r.order {
		m := r.results[sc.name]
		sb, kam := m[switchboard], m[kamailio]
		name := sc.name
		if _, ran := m[kamailio]; ran {
			// Every figure below is against this configuration.
			rows = append(rows, row{name, "configured as", "routes: " + sbRoutes(sc.work), r.b.kamailioConfig(sc.work), ""})
		}
		if sb.Err != "" || kam.Err != "" {
			rows = append(rows, row{name, "error", cut(sb.Err, 160), cut(kam.Err, 160), ""})
		}
		if sb.Fill != nil || kam.Fill != nil {
			f1, f2 := fillOf(sb), fillOf(kam)
			rows = append(rows,
				row{name, fmt.Sprintf("first %d REGISTERs at %d/s: ok / failed", userCount, r.b.fillRate),
					okFailed(f1), okFailed(f2), ""},
				row{name, "  proxy CPU per registration", us(f1.cpuPerUnit()), us(f2.cpuPerUnit()),
					ratio(float64(f1.cpuPerUnit()), float64(f2.cpuPerUnit()))},
				row{name, "  memory growth per binding (PSS)", bytesPer(f1.Mem.PSS-sb.Baseline.PSS, f1.OK),
					bytesPer(f2.Mem.PSS-kam.Baseline.PSS, f2.OK),
					ratio(float64(f1.Mem.PSS-sb.Baseline.PSS), float64(f2.Mem.PSS-kam.Baseline.PSS))})
		}
		rates := r.b.rates
		if sc.unit == "registration" {
			rates = r.b.regRates
		}
		for _, rate := range rates {
			s1, ok1 := stepAt(sb, rate)
			s2, ok2 := stepAt(kam, rate)
			if !ok1 && !ok2 {
				continue
			}
			rows = append(rows, row{name, fmt.Sprintf("proxy CPU per %s at %d/s", sc.unit, rate),
				stepCPU(s1, ok1), stepCPU(s2, ok2), ratioIf(ok1 && ok2 && s1.OK > 0 && s2.OK > 0,
					float64(s1.cpuPerUnit()), float64(s2.cpuPerUnit()))})
		}
		for _, rate := range rates {
			s1, ok1 := stepAt(sb, rate)
			s2, ok2 := stepAt(kam, rate)
			if !ok1 && !ok2 {
				continue
			}
			rows = append(rows, row{name, fmt.Sprintf("syscalls per %s at %d/s", sc.unit, rate),
				stepSyscalls(s1, ok1), stepSyscalls(s2, ok2), ratioIf(ok1 && ok2,
					s1.syscallsPerUnit(), s2.syscallsPerUnit())})
		}
		rows = append(rows,
			row{name, "highest rate with < 0.1% failed", maxRate(sb), maxRate(kam),
				ratio(float64(sb.MaxRate), float64(kam.MaxRate))},
			row{name, "ran out first (at the failed rung)", sb.Limit, kam.Limit, ""},
			row{name, "failed / retransmissions, rungs passed", failRetrans(sb), failRetrans(kam), ""},
			row{name, "peak memory PSS (all processes)", mib(sb.PeakMem.PSS), mib(kam.PeakMem.PSS),
				ratio(float64(sb.PeakMem.PSS), float64(kam.PeakMem.PSS))},
			row{name, "peak RSS VmHWM (sum over processes)", mib(sb.PeakMem.HWM), mib(kam.PeakMem.HWM),
				ratio(float64(sb.PeakMem.HWM), float64(kam.PeakMem.HWM))},
		)
		if sc.name == "relay" {
			rows = append(rows, r.floorRows(sb, kam)...)
		}
		if sc.name == "drouting" || sc.name == "dialog" || sc.name == "media" {
			rows = append(rows, r.overRelayRows(sc.name, sb, kam)...)
		}
	}
	var c1, c2 concurrentResult
	for _, c := range r.concurrent {
		if c.Server == switchboard {
			c1 = c
		} else {
			c2 = c
		}
	}
	if len(r.concurrent) > 0 {
		rows = append(rows,
			row{"concurrent", "servers configured as (-concurrent-work)", workOf(c1), workOf(c2), ""},
			row{"concurrent", "calls held at once (target)", heldOf(c1), heldOf(c2), ""},
			row{"concurrent", "memory PSS idle → with the calls up", memPair(c1), memPair(c2), ""},
			row{"concurrent", "memory per concurrent call", kib(c1.perCall()), kib(c2.perCall()),
				ratio(float64(c1.perCall()), float64(c2.perCall()))},
			row{"concurrent", "peak RSS VmHWM idle → with the calls up", hwmPair(c1), hwmPair(c2), ""},
			row{"concurrent", "VmHWM per concurrent call", kib(c1.hwmPerCall()), kib(c2.hwmPerCall()),
				ratio(float64(c1.hwmPerCall()), float64(c2.hwmPerCall()))},
			row{"concurrent", "failed / retransmissions", fmt.Sprintf("%d / %d", c1.Failed, c1.Retrans),
				fmt.Sprintf("%d / %d", c2.Failed, c2.Retrans), ""},
		)
		for _, c := range []concurrentResult{c1, c2} {
			if c.Err != "" {
				rows = append(rows, row{"concurrent", "note (" + c.Server + ")", cut(c.Err, 160), "", ""})
			}
		}
	}
	return rows
}

// overRelayRows compare each server's CPU per call in scenario name
// (drouting, dialog, media) with its own CPU per call in the relay scenario of the
// same run, rung by rung: what routing among the rules, or keeping a dialog
// and writing its CDR, adds to a relayed call. Each cell is the ratio
// name/relay with the two figures; the last column stays empty, the two
// servers' ratios are read side by side.
func (r *report) overRelayRows(name string, sb, kam scenarioResult) []row {
	relay, ok := r.results["relay"]
	if !ok {
		return []row{{name, name + " ÷ relay CPU per call", "— (relay not run)", "— (relay not run)", ""}}
	}
	var rows []row
	for _, rate := range r.b.rates {
		d1, okd1 := stepAt(sb, rate)
		d2, okd2 := stepAt(kam, rate)
		r1, okr1 := stepAt(relay[switchboard], rate)
		r2, okr2 := stepAt(relay[kamailio], rate)
		if !okd1 && !okd2 {
			continue
		}
		cell := func(d step, okd bool, rl step, okr bool, res, relayRes scenarioResult) string {
			if r.b.rounds > 1 {
				return overRelayRounds(stepsAt(res, rate), stepsAt(relayRes, rate))
			}
			return overRelay(d, okd, rl, okr)
		}
		rows = append(rows, row{name, fmt.Sprintf("%s ÷ relay CPU per call at %d/s", name, rate),
			cell(d1, okd1, r1, okr1, sb, relay[switchboard]), cell(d2, okd2, r2, okr2, kam, relay[kamailio]), ""})
	}
	return rows
}

// overRelay is "ratio (relay → scenario)" for one server at one rate.
func overRelay(d step, okd bool, rl step, okr bool) string {
	if !okd || !okr || d.OK == 0 || rl.OK == 0 {
		return "—"
	}
	v := fmt.Sprintf("%.2f (%s → %s)", float64(d.cpuPerUnit())/float64(rl.cpuPerUnit()), us(rl.cpuPerUnit()), us(d.cpuPerUnit()))
	if !d.Pass || !rl.Pass {
		v += " (failed rung)"
	}
	return v
}

// stepsAt is every measured rung of res at rate, in the order run (a
// rung run again because other processes took a core counts once, as
// its second run).
func stepsAt(res scenarioResult, rate int) []step {
	var out []step
	for _, s := range res.Steps {
		if s.Rate == rate && !s.Retried {
			out = append(out, s)
		}
	}
	return out
}

// overRelayRounds is overRelay over the rounds of -rounds: the median of
// the rounds' ratios (each round's scenario rung over its relay rung),
// their range, and the median CPU per call of each.
func overRelayRounds(ds, rls []step) string {
	n := min(len(ds), len(rls))
	var ratios []float64
	var dcpu, rcpu []time.Duration
	failed := false
	for k := 0; k < n; k++ {
		d, rl := ds[k], rls[k]
		if d.OK == 0 || rl.OK == 0 {
			continue
		}
		failed = failed || !d.Pass || !rl.Pass
		ratios = append(ratios, float64(d.cpuPerUnit())/float64(rl.cpuPerUnit()))
		dcpu, rcpu = append(dcpu, d.cpuPerUnit()), append(rcpu, rl.cpuPerUnit())
	}
	if len(ratios) == 0 {
		return "—"
	}
	v := fmt.Sprintf("%.2f (median of %d rounds, %.2f–%.2f; %s → %s)", median(ratios), len(ratios),
		slices.Min(ratios), slices.Max(ratios), us(median(rcpu)), us(median(dcpu)))
	if failed {
		v += " (failed rung)"
	}
	return v
}

// median is the middle value of v (the mean of the two middle ones).
func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// floorRows compare the relay's CPU per call with the echo floor.
func (r *report) floorRows(sb, kam scenarioResult) []row {
	var rows []row
	for _, e := range r.echo {
		cps := e.Calls
		floor := e.perDatagram() * datagramsPerCall
		s1, ok1 := stepAt(sb, cps)
		s2, ok2 := stepAt(kam, cps)
		if e.Poller {
			// What parking in Go's poller adds to the floor: beside the
			// floor, not a second one to divide by.
			rows = append(rows, row{"relay", fmt.Sprintf("%s per call at %d/s (%d datagrams × %s)", echoName(true), cps, datagramsPerCall, us(e.perDatagram())),
				us(floor), us(floor), ""})
			continue
		}
		rows = append(rows, row{"relay", fmt.Sprintf("UDP echo floor per call at %d/s (%d datagrams × %s)", cps, datagramsPerCall, us(e.perDatagram())),
			us(floor), us(floor), ""},
			row{"relay", fmt.Sprintf("  proxy CPU per call ÷ floor at %d/s", cps), overFloor(s1, ok1, floor), overFloor(s2, ok2, floor), ""})
		if e.SyscallsOK {
			sysFloor := e.syscallsPerDatagram() * datagramsPerCall
			// One recvfrom or sendto per datagram: a server that batches
			// makes fewer.
			rows = append(rows, row{"relay", fmt.Sprintf("UDP echo syscalls per call at %d/s (%d datagrams × %s)",
				cps, datagramsPerCall, perUnit2(e.syscallsPerDatagram())), perUnit(sysFloor), perUnit(sysFloor), ""},
				row{"relay", fmt.Sprintf("  proxy syscalls per call ÷ echo's at %d/s", cps),
					sysOverFloor(s1, ok1, sysFloor), sysOverFloor(s2, ok2, sysFloor), ""})
		}
	}
	return rows
}

func sysOverFloor(s step, ok bool, floor float64) string {
	if !ok || s.syscallsPerUnit() <= 0 || floor <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f×", s.syscallsPerUnit()/floor)
}

func stepSyscalls(s step, ok bool) string {
	if !ok {
		return "—"
	}
	v := perUnit(s.syscallsPerUnit())
	if v != "—" && !s.Pass {
		v += " (failed rung)"
	}
	return v
}

// perUnit formats a count per unit; 0 (not measured) is "—".
func perUnit(v float64) string {
	if v <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

// perUnit2 is perUnit with two decimals, for counts per datagram.
func perUnit2(v float64) string {
	if v <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

func overFloor(s step, ok bool, floor time.Duration) string {
	if !ok || s.OK == 0 || floor <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f×", float64(s.cpuPerUnit())/float64(floor))
}

func fillOf(r scenarioResult) step {
	if r.Fill == nil {
		return step{}
	}
	return *r.Fill
}

func okFailed(s step) string {
	if s.Target == 0 {
		return "—"
	}
	return fmt.Sprintf("%d / %d", s.OK, s.Failed)
}

func stepCPU(s step, ok bool) string {
	if !ok {
		return "—"
	}
	v := us(s.cpuPerUnit())
	if !s.Pass {
		v += " (failed rung)"
	}
	return v
}

func ratioIf(ok bool, a, b float64) string {
	if !ok {
		return "—"
	}
	return ratio(a, b)
}

func maxRate(r scenarioResult) string {
	if r.Server == "" {
		return "—"
	}
	if r.AllPass {
		return fmt.Sprintf("≥ %d/s (top rung)", r.MaxRate)
	}
	if r.MaxRate == 0 {
		return "none passed"
	}
	return fmt.Sprintf("%d/s", r.MaxRate)
}

func failRetrans(r scenarioResult) string {
	if r.Server == "" {
		return "—"
	}
	f, t, n := 0, 0, 0
	for _, s := range r.Steps {
		if s.Pass {
			f += s.Failed
			t += s.Retrans
			n += s.Target
		}
	}
	return fmt.Sprintf("%d / %d of %d", f, t, n)
}

func heldOf(c concurrentResult) string {
	if c.Server == "" {
		return "—"
	}
	return fmt.Sprintf("%d (%d)", c.Held, c.Target)
}

func memPair(c concurrentResult) string {
	if c.Server == "" {
		return "—"
	}
	return mib(c.Baseline.PSS) + " → " + mib(c.Peak.PSS)
}

func hwmPair(c concurrentResult) string {
	if c.Server == "" {
		return "—"
	}
	return mib(c.Baseline.HWM) + " → " + mib(c.Peak.HWM)
}

func workOf(c concurrentResult) string {
	if c.Server == "" {
		return "—"
	}
	return c.Work
}

func bytesPer(total int64, n int) string {
	if n <= 0 {
		return "—"
	}
	return fmt.Sprintf("%d B", total/int64(n))
}

func us(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

func mib(b int64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func kib(b int64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f KiB", float64(b)/1024)
}

func cut(s string, n int) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ⏎ ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// summary is the table as plain text for the terminal.
func (r *report) summary() string {
	var sb strings.Builder
	w := [4]int{10, 8, 11, 8}
	rows := r.rows()
	for _, x := range rows {
		w[0] = max(w[0], len([]rune(x.scenario)))
		w[1] = max(w[1], len([]rune(x.figure)))
		w[2] = max(w[2], len([]rune(x.sb)))
		w[3] = max(w[3], len([]rune(x.kam)))
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }
	fmt.Fprintf(&sb, "%s  %s  %s  %s  %s\n", pad("scenario", w[0]), pad("figure", w[1]), pad("switchboard", w[2]), pad("kamailio", w[3]), "sb/kam")
	for _, x := range rows {
		fmt.Fprintf(&sb, "%s  %s  %s  %s  %s\n", pad(x.scenario, w[0]), pad(x.figure, w[1]), pad(x.sb, w[2]), pad(x.kam, w[3]), x.ratio)
	}
	return sb.String()
}

func (r *report) markdown() string {
	var sb strings.Builder
	sb.WriteString("# Benchmark results\n\n")
	fmt.Fprintf(&sb, "Run %s – %s (UTC). Load average at start %s, at end %s.\n\n",
		r.started.UTC().Format("2006-01-02 15:04"), r.ended.UTC().Format("15:04"), r.loadStart, r.loadEnd)
	for _, n := range r.notes {
		sb.WriteString(n + "\n\n")
	}
	sb.WriteString("## Machine and versions\n\n")
	for _, m := range r.machine {
		sb.WriteString("- " + m + "\n")
	}
	sb.WriteString("\n## Summary (Switchboard / Kamailio; below 1 means Switchboard uses less or does less)\n\n")
	sb.WriteString("| scenario | figure | Switchboard | Kamailio | SB/Kam |\n|---|---|---|---|---|\n")
	for _, x := range r.rows() {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", x.scenario, x.figure, x.sb, x.kam, x.ratio)
	}
	sb.WriteString("\n## Every rung\n\n")
	sb.WriteString("CPU per unit is the proxy's utime+stime over the rung divided by the units completed; " +
		"proxy and sipp % are CPU time over wall time of the rung for the proxy (all its processes) and for the sipp " +
		"processes (UAC + UAS, all on the other core); core 0/1 busy is how busy the proxy's and sipp's cores were " +
		"in all (/proc/stat), other processes included; UDP drops is the kernel's RcvbufErrors count over the rung " +
		"(datagrams dropped for a full socket receive buffer, any socket), in brackets those dropped at the proxy's socket. " +
		"ctx sw/unit is the proxy's context switches (voluntary + involuntary, every thread of every process, from " +
		"/proc/PID/task/*/status) and syscalls/unit its system calls (perf stat -e " + syscallEvent + "), over the same " +
		"window as its CPU time, divided by the units completed.\n\n")
	sb.WriteString("| scenario | server | rate/s | units | ok | failed | retrans | unexpected | UDP drops (at proxy) | proxy CPU/unit | ctx sw/unit | syscalls/unit | proxy | sipp | core 0/1 busy | PSS | verdict |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range r.order {
		for _, srv := range r.servers {
			res, ok := r.results[sc.name][srv]
			if !ok {
				continue
			}
			all := res.Steps
			if res.Fill != nil {
				all = append([]step{*res.Fill}, all...)
			}
			for i, s := range all {
				label := sc.name
				if res.Fill != nil && i == 0 {
					label += " (fill)"
				}
				verdict := "ok"
				if !s.Pass {
					verdict = "FAIL: " + cut(s.Why, 80)
				}
				fmt.Fprintf(&sb, "| %s | %s | %d | %d | %d | %d | %d | %d | %d (%d) | %s | %s | %s | %.0f%% | %.0f%% | %.0f%% / %.0f%% | %s | %s |\n",
					label, srv, s.Rate, s.Target, s.OK, s.Failed, s.Retrans, s.Unexpect, s.Drops, s.ProxyDrops, us(s.cpuPerUnit()),
					perUnit(s.ctxPerUnit()), perUnit(s.syscallsPerUnit()), 100*s.proxyLoad(), 100*s.sippLoad(), 100*s.ProxyCore, 100*s.LoadCore, mib(s.Mem.PSS), verdict)
			}
		}
	}
	if len(r.echo) > 0 {
		sb.WriteString("\n## UDP echo floor\n\nCPU, system calls and context switches per datagram are the echo server's " +
			"over the datagrams it received and sent.\n\n" +
			"The floor blocks in `recvfrom`; the echo through Go's poller parks in the network poller as the proxy's transport does.\n\n" +
			"| echo | calls/s matched | datagrams/s each way | sent | received | echo CPU per datagram | × " +
			fmt.Sprint(datagramsPerCall) + " per call | syscalls per datagram | ctx sw per datagram | echo core | client core |\n" +
			"|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, e := range r.echo {
			fmt.Fprintf(&sb, "| %s | %d | %d | %d | %d | %s | %s | %s | %s | %.0f%% | %.0f%% |\n", echoName(e.Poller), e.Calls, e.Rate, e.Sent, e.Received,
				us(e.perDatagram()), us(e.perDatagram()*datagramsPerCall), perUnit2(e.syscallsPerDatagram()),
				perUnit2(e.ctxPerDatagram()), 100*load(e.CPU, e.Wall), 100*load(e.ClientCPU, e.Wall))
		}
	}
	var problems []string
	for _, sc := range r.order {
		for _, srv := range r.servers {
			res := r.results[sc.name][srv]
			all := res.Steps
			if res.Fill != nil {
				all = append([]step{*res.Fill}, all...)
			}
			for _, s := range all {
				if s.Failed == 0 && s.Errors == "" {
					continue
				}
				p := fmt.Sprintf("### %s / %s at %d/s: %d of %d failed, %d retransmissions\n\n%s\n",
					sc.name, srv, s.Rate, s.Failed, s.Target, s.Retrans, s.Why)
				if s.Errors != "" {
					p += "\nsipp unexpected messages (first lines):\n\n```\n" + s.Errors + "\n```\n"
				}
				if s.ProxyLog != "" {
					p += "\nserver log (last lines):\n\n```\n" + s.ProxyLog + "\n```\n"
				}
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		sb.WriteString("\n## Failures seen\n\nA failed rung ends its ladder; the failures below are what sipp " +
			"and the server reported.\n\n")
		sb.WriteString(strings.Join(problems, "\n"))
	}
	if r.goBench != "" {
		if data, err := os.ReadFile(r.goBench); err == nil {
			sb.WriteString("\n## Go hot-path benchmarks (benchstat)\n\n```\n" + string(data) + "```\n")
		}
	}
	sb.WriteString("\n## Commands\n\n```\n" + strings.Join(os.Args, " ") + "\n```\n\n")
	if r.b.proxyCPU < 0 {
		sb.WriteString("Nothing pinned (fewer than two CPUs). ")
	} else {
		sb.WriteString("Proxy pinned with `taskset -c " + fmt.Sprint(r.b.proxyCPU) + "`, sipp and the runner with `taskset -c " +
			fmt.Sprint(r.b.loadCPU) + "`. ")
	}
	sb.WriteString("Kamailio: `kamailio -f bench/kamailio/<work>.cfg -DD -E -x " + r.b.kamMalloc + " -n " + fmt.Sprint(r.b.kamChildren) +
		" -m 1024 -M 16 -l udp:127.0.0.1:PORT` (registrar and drouting add " +
		"`-A 'DBURL=\"sqlite:///<work>/<file>.db\"'`; register, register-auth and lookup also `-A WITH_USRLOC_DB`: usrloc " +
		"written back to SQLite every second, db_mode 2). Switchboard: `switchboard run -c <generated yaml>` (UDP only, log level warn, " +
		"management listener off). Rung length " + r.b.stepDur.String() + ", calls held " + r.b.hold.String() +
		", each ladder preceded by an unmeasured warm-up of " + r.b.warmup.String() + " at its first rate.")
	if r.b.interleaveServers {
		sb.WriteString(" Interleaved across servers (`-interleave-servers`): every scenario's ladder against every server ran " +
			"rung by rung in turn, all the servers up at once (the others idle on the same core), the order rotated at each rate.")
	} else if r.b.interleave {
		sb.WriteString(" Interleaved (`-interleave`): the call scenarios' ladders ran rung by rung in turn against each server, " +
			"one server per scenario up at once (the others idle on the same core), the order rotated at each rate.")
		if r.b.rounds > 1 {
			sb.WriteString(fmt.Sprintf(" The interleaved ladders ran %d times in a row (`-rounds`); the ÷ relay figures are the median "+
				"of the rounds' ratios, with their range; other figures are the last round's.", r.b.rounds))
		}
	}
	if r.b.kamDialogDB {
		sb.WriteString(" Kamailio's dialog.cfg with `-A WITH_DB` (CDRs and dialogs in SQLite).")
	}
	if r.b.perfWhy == "" {
		sb.WriteString(" System calls: `perf stat -e " + syscallEvent + " -x, --control fd:3,4 -D -1 -p <the proxy's PIDs>`, " +
			"enabled just before the UAC starts and disabled after UAC and UAS ended.")
	}
	sb.WriteString("\n")
	return sb.String()
}

// machineInfo describes the machine and the versions measured.
func machineInfo(b *bench) []string {
	var out []string
	// Counted from /proc/cpuinfo: runtime.NumCPU and nproc see only the
	// runner's own affinity (one core).
	model, cores := "", 0
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				cores++
				if model == "" {
					model = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				}
			}
		}
	}
	out = append(out, fmt.Sprintf("CPU: %s, %d cores", model, cores))
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		out = append(out, "memory: "+strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	}
	out = append(out, "kernel: "+first(cmdOut("uname", "-srm")))
	out = append(out, "switchboard: "+first(cmdOut(b.sbBin, "version")))
	out = append(out, "kamailio: "+first(cmdOut(b.kamBin, "-v")))
	out = append(out, "sipp: "+strings.TrimSpace(strings.Trim(first(cmdOut(b.sippBin, "-v")), "\x1b[0m")))
	out = append(out, "go: "+runtime.Version())
	return out
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "not available"
	}
	return string(out)
}

func first(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// printStep prints one rung as it finishes.
func (b *bench) printStep(sc scenario, s *server, label string, st step) {
	v := "ok"
	if !st.Pass {
		v = "FAIL " + st.Why
	}
	unit := sc.unit
	if label == "fill" {
		unit = "registration"
	}
	if b.interleave {
		// Rungs of several scenarios follow each other: name each.
		label = strings.TrimSpace(sc.name + " " + label)
	}
	if label != "" {
		label += " "
	}
	fmt.Fprintf(b.out, "   %s%5d/s %6d %s: ok %d failed %d retrans %d unexp %d drops %d (proxy %d) | proxy %s/%s (%.0f%%) ctxsw %s syscalls %s /%s | sipp %.0f%% | cores %.0f%%/%.0f%% | PSS %s | %s\n",
		label, st.Rate, st.Target, unit+"s", st.OK, st.Failed, st.Retrans, st.Unexpect, st.Drops, st.ProxyDrops, us(st.cpuPerUnit()), unit,
		100*st.proxyLoad(), perUnit(st.ctxPerUnit()), perUnit(st.syscallsPerUnit()), unit, 100*st.sippLoad(), 100*st.ProxyCore, 100*st.LoadCore, mib(st.Mem.PSS), v)
	if st.Failed > 0 && st.Errors != "" {
		fmt.Fprintln(b.out, "     sipp:", cut(st.Errors, 300))
	}
}
