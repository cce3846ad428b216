package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat. Linux reports
// them in USER_HZ, which is 100 on every architecture Go supports.
const clockTick = 10 * time.Millisecond

// proc is a process the runner started. Each one leads its own process
// group, so that stopping it also stops the children it forked (Kamailio's
// workers).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// procs holds every process started, so that an interrupted run still stops
// them all.
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

func newProcs() *procs { return &procs{live: map[*proc]struct{}{}} }

// start runs bin with args pinned to cpu (taskset -c cpu; cpu < 0 leaves
// the affinity alone), standard output and error into logPath.
func (ps *procs) start(name string, cpu int, logPath string, bin string, args ...string) (*proc, error) {
	return ps.startFiles(name, cpu, logPath, nil, bin, args...)
}

// startFiles is start with extra open files for the child: extra[i] is its
// descriptor 3+i.
func (ps *procs) startFiles(name string, cpu int, logPath string, extra []*os.File, bin string, args ...string) (*proc, error) {
	if cpu >= 0 {
		args = append([]string{"-c", strconv.Itoa(cpu), bin}, args...)
		bin = "taskset"
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.live == nil {
		f.Close()
		return nil, errors.New("shutting down")
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ps.live[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		ps.mu.Lock()
		if ps.live != nil {
			delete(ps.live, p)
		}
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end on its own.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop sends sig to the process group, then SIGKILL if it is still there
// after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	syscall.Kill(-p.pid(), sig)
	if p.wait(grace) {
		return
	}
	syscall.Kill(-p.pid(), syscall.SIGKILL)
	p.wait(5 * time.Second)
}

// cpuTime is the user+system CPU time of an exited process (from wait4).
func (p *proc) cpuTime() time.Duration {
	if p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// exitCode is the exit status, or -1 when killed by a signal or still running.
func (p *proc) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// logTail returns the last n lines of the process's output.
func (p *proc) logTail(n int) string { return fileTail(p.log, n) }

func fileTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stopAll stops every process still running and refuses new ones.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	live := ps.live
	ps.live = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for p := range live {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(syscall.SIGTERM, 3*time.Second) }()
	}
	wg.Wait()
}

// statFields reads /proc/PID/stat and returns the fields after the command
// name: index 0 is the state (field 3 of proc(5)), so field N is at N-3.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	return parseStat(data)
}

func parseStat(data []byte) ([]string, error) {
	// The command name is in parentheses and may itself contain spaces or
	// parentheses: the fields start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 > len(data) {
		return nil, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 20 {
		return nil, errors.New("short /proc stat")
	}
	return f, nil
}

// statCPU returns utime+stime of one process from its stat fields.
func statCPU(f []string) time.Duration {
	ut, _ := strconv.ParseInt(f[14-3], 10, 64)
	st, _ := strconv.ParseInt(f[15-3], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// tree returns pid and all its descendants.
func tree(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	parent := map[int]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(n)
		if err != nil {
			continue
		}
		pp, _ := strconv.Atoi(f[4-3])
		parent[n] = pp
	}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for n, pp := range parent {
			if contains(out, pp) && !contains(out, n) {
				out = append(out, n)
				changed = true
			}
		}
	}
	return out
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// treeCPU is the CPU time used so far by pid and its descendants. Work done
// by children that already exited and were reaped is in the parent's
// cutime/cstime, which is added too.
func treeCPU(pid int) time.Duration {
	var sum time.Duration
	for _, n := range tree(pid) {
		f, err := statFields(n)
		if err != nil {
			continue
		}
		sum += statCPU(f)
		cu, _ := strconv.ParseInt(f[16-3], 10, 64)
		cs, _ := strconv.ParseInt(f[17-3], 10, 64)
		sum += time.Duration(cu+cs) * clockTick
	}
	return sum
}

// treeCtxSwitches is the number of context switches, voluntary (the thread
// blocked: a wake-up follows) and involuntary (it was preempted), of every
// thread of pid and its descendants so far. /proc/PID/status counts only
// the thread it names, so every task/TID/status is read. A thread or process
// that exited is no longer listed and its switches are lost; neither Go's
// runtime nor Kamailio ends threads or processes in steady state, so between
// two readings of a rung this loses nothing that matters.
func treeCtxSwitches(pid int) int64 {
	var sum int64
	for _, n := range tree(pid) {
		dir := "/proc/" + strconv.Itoa(n) + "/task/"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			data, err := os.ReadFile(dir + e.Name() + "/status")
			if err != nil {
				continue // the thread ended meanwhile
			}
			v, nv, err := parseCtxSwitches(data)
			if err != nil {
				continue
			}
			sum += v + nv
		}
	}
	return sum
}

// parseCtxSwitches reads voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches from a /proc status file.
func parseCtxSwitches(data []byte) (voluntary, involuntary int64, err error) {
	found := 0
	for _, l := range strings.Split(string(data), "\n") {
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "voluntary_ctxt_switches":
			dst = &voluntary
		case "nonvoluntary_ctxt_switches":
			dst = &involuntary
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		*dst = n
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("no context switch counts in status")
	}
	return voluntary, involuntary, nil
}

// memory of a process tree, in bytes.
type memory struct {
	// PSS is the proportional set size summed over the processes: shared
	// pages (Kamailio's shared memory) are divided among the processes that
	// map them, so the sum counts each page once.
	PSS int64
	// HWM is the sum of each process's peak resident set (VmHWM). For a
	// multi-process server it counts shared pages once per process.
	HWM int64
	// RSS is the sum of the current resident sets.
	RSS int64
}

func treeMemory(pid int) memory {
	var m memory
	for _, n := range tree(pid) {
		dir := "/proc/" + strconv.Itoa(n) + "/"
		m.PSS += kbField(dir+"smaps_rollup", "Pss:")
		m.HWM += kbField(dir+"status", "VmHWM:")
		m.RSS += kbField(dir+"status", "VmRSS:")
	}
	return m
}

// kbField reads a "Name:   1234 kB" line of a /proc file, in bytes.
func kbField(path, name string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) {
			fs := strings.Fields(line[len(name):])
			if len(fs) == 0 {
				return 0
			}
			v, _ := strconv.ParseInt(fs[0], 10, 64)
			return v * 1024
		}
	}
	return 0
}

// udpBound reports whether some socket is bound to 127.0.0.1:port (UDP).
func udpBound(port int) bool {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	return bytes.Contains(data, []byte(want))
}

// waitUDPBound waits until port is bound, up to d.
func waitUDPBound(port int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if udpBound(port) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// absPath resolves p relative to the working directory.
func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// cpuBusy returns the busy and total time of each CPU from /proc/stat, in
// clock ticks: with the per-process figures it shows whether something other
// than the benchmark ran on a core.
func cpuBusy() (busy, total map[int]int64) {
	busy, total = map[int]int64{}, map[int]int64{}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var sum int64
		for i, v := range f[1:] {
			if i >= 8 { // guest time is already in user
				break
			}
			x, _ := strconv.ParseInt(v, 10, 64)
			sum += x
			if i == 3 || i == 4 { // idle, iowait
				continue
			}
			busy[n] += x
		}
		total[n] = sum
	}
	return
}

// coreLoad is how busy one CPU was between two cpuBusy readings (0..1).
func coreLoad(cpu int, b0, t0, b1, t1 map[int]int64) float64 {
	dt := t1[cpu] - t0[cpu]
	if dt <= 0 {
		return 0
	}
	return float64(b1[cpu]-b0[cpu]) / float64(dt)
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped because a
// socket's receive buffer was full (Udp RcvbufErrors in /proc/net/snmp).
func udpRcvbufErrors() int64 {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var head []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		f := strings.Fields(l)
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// udpPortDrops sums the drops column of /proc/net/udp for the sockets bound
// to 127.0.0.1:port (several when a server opens one socket per worker).
func udpPortDrops(port int) int64 {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	var sum int64
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 13 || f[1] != want {
			continue
		}
		v, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		sum += v
	}
	return sum
}
