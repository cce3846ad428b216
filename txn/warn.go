package txn

import "sync"

// warnPerSecond bounds the warning lines the core logs for per-request
// failures (an unreachable or unresolvable next hop): a dead gateway under
// load fails every call sent to it, and one line per call would bury the
// log. Lines past the bound are counted and the count is reported with
// the next line let through.
const warnPerSecond = 10

type warnLimiter struct {
	mu         sync.Mutex
	sec        int64 // the second the count is for
	n          int   // lines logged in sec
	suppressed int   // lines dropped since the last one logged
}

// warn logs msg at Warn level unless warnPerSecond lines were already
// logged this second. Error paths only: the arguments are boxed.
func (c *Core) warn(msg string, args ...any) {
	w := &c.warns
	sec := c.clock.Now() / 1000
	w.mu.Lock()
	if sec != w.sec {
		w.sec, w.n = sec, 0
	}
	if w.n >= warnPerSecond {
		w.suppressed++
		w.mu.Unlock()
		return
	}
	w.n++
	suppressed := w.suppressed
	w.suppressed = 0
	w.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	c.cfg.Logger.Warn(msg, args...)
}
