package ratelimit

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"time"
)

// controlTick is how often the controller looks for FEEDBACK pipes whose
// interval has ended; idleControlTick how often while there is none (a
// FEEDBACK pipe added by a reload is then controlled within a second).
const (
	controlTick     = 100 * time.Millisecond
	idleControlTick = time.Second
)

// control runs the FEEDBACK pipes' controllers: at the end of each pipe's
// interval it measures the CPU load over the interval and sets the pipe's
// drop percentage.
func (r *RateLimit) control() {
	defer close(r.done)
	t := time.NewTicker(controlTick)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if r.updateFeedback() {
				t.Reset(controlTick)
			} else {
				t.Reset(idleControlTick)
			}
		}
	}
}

// updateFeedback updates the FEEDBACK pipes that are due, and reports
// whether there is any.
func (r *RateLimit) updateFeedback() (found bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	var busy, total uint64
	read := false
	for _, p := range r.order {
		cfg := p.cfg.Load()
		if cfg == nil || cfg.alg != feedback {
			continue
		}
		found = true
		st := p.st.Load()
		if now < st.next {
			continue
		}
		if !read {
			var err error
			if busy, total, err = r.cpu(); err != nil {
				r.h.Warn("ratelimit: cannot read the CPU load; FEEDBACK pipes keep their drop rate", "error", err)
				return true
			}
			read = true
		}
		st.next = now + cfg.ivMs
		c := &st.pid
		if c.total != 0 && total > c.total {
			load := float64(busy-c.busy) / float64(total-c.total)
			st.drop.Store(c.update(float64(cfg.limit)/100, min(max(load, 0), 1)))
		}
		c.busy, c.total = busy, total
	}
	return found
}

// readProcStat reads the machine's CPU time: busy (everything but idle
// and iowait) and total jiffies, from the "cpu" line of /proc/stat.
func readProcStat() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already in user and nice).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, errors.New("/proc/stat: " + err.Error())
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}
