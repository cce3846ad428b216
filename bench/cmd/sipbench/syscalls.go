package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// System calls are counted with perf stat on the raw_syscalls:sys_enter
// tracepoint, attached to the proxy's processes (every thread): counting
// only, no sampling and no records, so perf itself sleeps until asked for
// the total. The count is not free: an enabled syscall tracepoint sends
// every system call of the machine through the kernel's traced entry path,
// and each call of a counted process updates the counter. On the 2-vCPU
// development VM a getppid loop went from about 0.3 µs to 0.6-0.8 µs per
// call when counted, and gained under 0.1 µs when another process was
// counted: a proxy making 16 system calls per call pays some 5 µs more CPU
// per call. -syscalls=false turns the count off to compare.
//
// perf starts with its counters disabled (-D -1) and is told to enable and
// disable them on a control pipe (--control fd:3,4), and it acknowledges
// each command: the count then covers exactly the window of the CPU
// reading, from just before the UAC starts to after UAC and UAS ended,
// rather than the traffic time alone (which would miss the BYEs of the
// calls still held when the UAC stops starting calls).

const syscallEvent = "raw_syscalls:sys_enter"

// syscallCounter is one perf stat counting the system calls of a set of
// processes.
type syscallCounter struct {
	p   *proc
	ctl *os.File // commands to perf
	ack *os.File // perf's acknowledgements
	out string   // perf's CSV output
}

// setupSyscalls decides whether system calls can be counted in this run
// and proves it by counting some of the runner's own. It returns why not,
// or "".
func (b *bench) setupSyscalls(enabled bool) string {
	if !enabled {
		return "turned off (-syscalls=false)"
	}
	if os.Geteuid() != 0 {
		return "the runner is not root (perf needs it to attach to the raw_syscalls tracepoint)"
	}
	bin, err := exec.LookPath("perf")
	if err != nil {
		return "perf not found (Debian package linux-perf)"
	}
	b.perfBin = bin
	c, err := b.startSyscalls([]int{os.Getpid()})
	if err == nil {
		const calls = 200
		for i := 0; i < calls; i++ {
			syscall.Getppid()
		}
		var n int64
		if n, err = c.stop(); err == nil && n < calls {
			err = fmt.Errorf("counted %d of at least %d system calls of the runner", n, calls)
		}
	}
	if err != nil {
		b.perfBin = ""
		return "perf stat -e " + syscallEvent + " does not work here: " + cut(err.Error(), 200)
	}
	return ""
}

// countSyscalls starts counting the system calls of pids, or returns nil
// when they are not counted in this run or perf failed (the first failure
// is kept for the report).
func (b *bench) countSyscalls(pids []int) *syscallCounter {
	if b.perfBin == "" {
		return nil
	}
	c, err := b.startSyscalls(pids)
	if err != nil {
		b.syscallFailed(err)
		return nil
	}
	return c
}

// stopSyscalls ends a count started by countSyscalls; ok is false when
// nothing was counted.
func (b *bench) stopSyscalls(c *syscallCounter) (n int64, ok bool) {
	if c == nil {
		return 0, false
	}
	n, err := c.stop()
	if err != nil {
		b.syscallFailed(err)
		return 0, false
	}
	return n, true
}

func (b *bench) syscallFailed(err error) {
	if b.perfFailures == 0 {
		b.perfFirstErr = cut(err.Error(), 200)
	}
	b.perfFailures++
}

// syscallNote says, for the report and the terminal, why system calls were
// not counted, or "" when they were everywhere.
func (b *bench) syscallNote() string {
	switch {
	case b.perfWhy != "":
		return "System calls were not counted (syscalls/unit shows —): " + b.perfWhy + "."
	case b.perfFailures > 0:
		return fmt.Sprintf("System calls were not counted in %d measurement(s) (syscalls/unit shows —); the first error: %s",
			b.perfFailures, b.perfFirstErr)
	}
	return ""
}

// startSyscalls starts perf stat on pids and returns once perf has
// acknowledged that it counts.
func (b *bench) startSyscalls(pids []int) (*syscallCounter, error) {
	if len(pids) == 0 {
		return nil, errors.New("no process to count")
	}
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	b.seq++
	out := filepath.Join(b.work, fmt.Sprintf("%03d-perf.csv", b.seq))
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	// The runner's affinity (the load core) is inherited: perf only sleeps.
	p, err := b.procs.startFiles("perf", -1, out+".log", []*os.File{ctlR, ackW}, b.perfBin,
		"stat", "-e", syscallEvent, "-x,", "-o", out, "--control", "fd:3,4", "-D", "-1",
		"-p", strings.Join(ids, ","))
	// The child has its own copies; with ours closed, a perf that exits
	// ends the acknowledgement pipe and no read waits for it.
	ctlR.Close()
	ackW.Close()
	if err != nil {
		ctlW.Close()
		ackR.Close()
		return nil, err
	}
	c := &syscallCounter{p: p, ctl: ctlW, ack: ackR, out: out}
	if err := c.command("enable"); err != nil {
		c.p.stop(syscall.SIGKILL, time.Second)
		c.close()
		return nil, fmt.Errorf("%w: %s", err, perfLog(p))
	}
	return c, nil
}

// command sends one control command and waits for perf to acknowledge it.
func (c *syscallCounter) command(cmd string) error {
	c.ack.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.ctl.WriteString(cmd + "\n"); err != nil {
		return fmt.Errorf("perf stat %s: %w", cmd, err)
	}
	buf := make([]byte, 16)
	n, err := c.ack.Read(buf)
	if err != nil {
		return fmt.Errorf("perf stat did not acknowledge %s: %w", cmd, err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("ack")) {
		return fmt.Errorf("perf stat answered %q to %s", buf[:n], cmd)
	}
	return nil
}

// stop disables the counter, lets perf write its total and returns it.
func (c *syscallCounter) stop() (int64, error) {
	defer c.close()
	if err := c.command("disable"); err != nil {
		c.p.stop(syscall.SIGKILL, time.Second)
		return 0, fmt.Errorf("%w: %s", err, perfLog(c.p))
	}
	// perf stat -p writes its counts when interrupted.
	c.p.stop(syscall.SIGINT, 5*time.Second)
	data, err := os.ReadFile(c.out)
	if err != nil {
		return 0, err
	}
	n, err := parsePerfStat(data, syscallEvent)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, perfLog(c.p))
	}
	return n, nil
}

// perfLog is what perf said, without its "Events enabled/disabled"
// messages: the first two lines (an error comes before the usage text).
func perfLog(p *proc) string {
	data, _ := os.ReadFile(p.log)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "Events ") {
			continue
		}
		if out = append(out, l); len(out) == 2 {
			break
		}
	}
	return cut(strings.Join(out, "\n"), 200)
}

func (c *syscallCounter) close() {
	c.ctl.Close()
	c.ack.Close()
}

// parsePerfStat returns the count of event from perf stat -x, output:
// one line per event, "count,unit,event,run time,percentage enabled,...",
// with "<not counted>" or "<not supported>" in place of a count perf could
// not take.
func parsePerfStat(data []byte, event string) (int64, error) {
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.Split(l, ",")
		i := 0
		for i < len(f) && f[i] != event {
			i++
		}
		if i < 2 || i == len(f) {
			continue
		}
		v := f[i-2]
		if strings.HasPrefix(v, "<") {
			return 0, fmt.Errorf("perf stat: %s %s", event, v)
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n, nil
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x < 0 {
			return 0, fmt.Errorf("perf stat: bad count %q for %s", v, event)
		}
		return int64(x), nil
	}
	return 0, fmt.Errorf("perf stat: no %s count in its output", event)
}
