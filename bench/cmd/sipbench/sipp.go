package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sippStats are the cumulative counters of one sipp process, read from the
// last line of its statistics file (-trace_stat -stf FILE).
type sippStats struct {
	Created    int // TotalCallCreated (UAC) or IncomingCall(C) (UAS)
	Successful int // SuccessfulCall(C)
	Failed     int // FailedCall(C)
	Retrans    int // Retransmissions(C)
	OutOfCall  int // OutOfCallMsgs(C): messages matching no call
	Dead       int // DeadCallMsgs(C): messages for calls already ended
	Current    int // CurrentCall: calls in progress at the last dump
	Timeouts   int // FailedMaxUDPRetrans(C) + FailedTimeoutOnRecv(C)
	// CreatedBy is when the last call was created, from sipp's start (at
	// the resolution of the statistics dumps, one second): how long sipp
	// took to start every call, which shows whether the rate was kept.
	CreatedBy time.Duration
}

// parseSippStats reads a sipp statistics CSV: a header line and one line per
// dump, fields separated by ';'.
func parseSippStats(data string) (sippStats, error) {
	var s sippStats
	lines := strings.Split(strings.TrimSpace(data), "\n")
	if len(lines) < 2 {
		return s, errors.New("no statistics dumped")
	}
	head := strings.Split(strings.TrimSpace(lines[0]), ";")
	last := strings.Split(strings.TrimSpace(lines[len(lines)-1]), ";")
	created, startCol, nowCol := -1, -1, -1
	for i, h := range head {
		switch h {
		case "TotalCallCreated":
			created = i
		case "StartTime":
			startCol = i
		case "CurrentTime":
			nowCol = i
		}
	}
	if created >= 0 && startCol >= 0 && nowCol >= 0 {
		final := strings.TrimSpace(fieldAt(last, created))
		for _, l := range lines[1:] {
			f := strings.Split(strings.TrimSpace(l), ";")
			if strings.TrimSpace(fieldAt(f, created)) == final {
				t0, t1 := epoch(fieldAt(f, startCol)), epoch(fieldAt(f, nowCol))
				if t0 > 0 && t1 >= t0 {
					s.CreatedBy = time.Duration((t1 - t0) * float64(time.Second))
				}
				break
			}
		}
	}
	col := map[string]int{}
	for i, h := range head {
		if i < len(last) {
			v, err := strconv.Atoi(strings.TrimSpace(last[i]))
			if err == nil {
				col[h] = v
			}
		}
	}
	if _, ok := col["SuccessfulCall(C)"]; !ok {
		return s, errors.New("statistics without SuccessfulCall(C)")
	}
	s.Created = col["TotalCallCreated"]
	if in := col["IncomingCall(C)"]; in > s.Created {
		s.Created = in
	}
	s.Successful = col["SuccessfulCall(C)"]
	s.Failed = col["FailedCall(C)"]
	s.Retrans = col["Retransmissions(C)"]
	s.OutOfCall = col["OutOfCallMsgs(C)"]
	s.Dead = col["DeadCallMsgs(C)"]
	s.Current = col["CurrentCall"]
	s.Timeouts = col["FailedMaxUDPRetrans(C)"] + col["FailedTimeoutOnRecv(C)"]
	return s, nil
}

func fieldAt(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

// epoch reads the seconds since 1970 at the end of a sipp time field
// ("2026-11-27\t04:23:26.479475\t1795753406.479475").
func epoch(field string) float64 {
	f := strings.Fields(field)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return v
}

// sipp is one running sipp process.
type sipp struct {
	*proc
	stf   string // statistics file
	errf  string // unexpected messages
	start time.Time
	end   time.Time
}

// sippArgs are the arguments every sipp gets: no keyboard, a statistics
// dump each second, unexpected messages logged.
func (b *bench) startSipp(name string, args ...string) (*sipp, error) {
	dir := filepath.Join(b.work, "sipp")
	os.MkdirAll(dir, 0o755)
	b.seq++
	base := filepath.Join(dir, fmt.Sprintf("%03d-%s", b.seq, name))
	s := &sipp{stf: base + ".csv", errf: base + ".errors.log"}
	// A provisional response overtaken by the 200 (two Kamailio workers
	// may forward them in either order) or a retransmission crossing the
	// answer is logged, not fatal: -abortunexp off. A call that really goes
	// wrong still fails on its receive timeout.
	// -buff_size: sipp's default socket buffers (64 KiB) overflow when a
	// burst of its own calls comes back at once above 1,000 calls/s; the
	// drops were counted at sipp's sockets with either server.
	full := append([]string{"-nostdin", "-trace_stat", "-stf", s.stf, "-fd", "1",
		"-trace_err", "-error_file", s.errf, "-default_behaviors", "all,-abortunexp",
		"-buff_size", "2097152"}, args...)
	s.start = time.Now()
	p, err := b.procs.start(name, b.loadCPU, base+".out", b.sippBin, full...)
	if err != nil {
		return nil, err
	}
	s.proc = p
	go func() { <-p.done; s.end = time.Now() }()
	return s, nil
}

// finish waits up to d for sipp to end, asks it to stop (SIGUSR1 makes sipp
// dump its statistics and quit), then kills it.
func (s *sipp) finish(d time.Duration) {
	if !s.wait(d) {
		syscall.Kill(s.pid(), syscall.SIGUSR1)
		if !s.wait(3 * time.Second) {
			s.stop(syscall.SIGKILL, time.Second)
		}
	}
	if s.end.IsZero() {
		s.end = time.Now()
	}
}

func (s *sipp) stats() (sippStats, error) {
	data, err := os.ReadFile(s.stf)
	if err != nil {
		return sippStats{}, err
	}
	return parseSippStats(string(data))
}

// errorSample returns the first lines of sipp's unexpected-message log.
func (s *sipp) errorSample(n int) string {
	f, err := os.Open(s.errf)
	if err != nil {
		return ""
	}
	defer f.Close()
	// sipp writes events on one line each, messages on several; leave out
	// the events that are not failures.
	var out []string
	skip := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && len(out) < n {
		l := sc.Text()
		if strings.Contains(l, "The following events occurred") {
			continue
		}
		if strings.Contains(l, "\t") { // a new timestamped event
			skip = strings.Contains(l, "Maximum number of open sockets") ||
				strings.Contains(l, "Overload warning") || strings.Contains(l, "Continuing call on unexpected")
		}
		if !skip {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// freePort returns a UDP port on 127.0.0.1 that is free now and was not
// handed out before in this run.
func (b *bench) freePort() (int, error) {
	for range 50 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		// The TCP port of the same number must be free too for servers
		// that open both.
		l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		c.Close()
		if err != nil {
			continue
		}
		l.Close()
		if b.ports[port] {
			continue
		}
		b.ports[port] = true
		return port, nil
	}
	return 0, errors.New("no free port found")
}
