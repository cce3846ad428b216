package ratelimit

import (
	"math/rand/v2"
	"strings"
	"sync/atomic"
)

// algorithm is a pipe's way of deciding (OpenSIPS and Kamailio ratelimit).
type algorithm uint8

const (
	// TAILDROP passes the first limit requests of each interval and drops
	// the rest of it.
	taildrop algorithm = iota
	// RED (random early detection) passes, during an interval, the share
	// limit/N of the requests, where N is the number of requests of the
	// interval before, spread evenly: it drops before the limit is hit
	// and never cuts a whole tail off, so clients that were refused do
	// not all come back at once.
	red
	// FEEDBACK drops a share of the requests that a PID controller
	// adjusts once an interval to hold the machine's CPU load at limit
	// percent.
	feedback
)

var algNames = [...]string{"TAILDROP", "RED", "FEEDBACK"}

func (a algorithm) String() string { return algNames[a] }

func parseAlgorithm(s string) (algorithm, bool) {
	switch strings.ToUpper(s) {
	case "", "TAILDROP":
		return taildrop, true
	case "RED":
		return red, true
	case "FEEDBACK":
		return feedback, true
	}
	return 0, false
}

// pass decides a TAILDROP or RED request: cur is the request's number in
// its window (counted before deciding, whatever the decision, as
// rl_check does), prev the number of requests in the window before.
func pass(a algorithm, limit uint64, cur, prev uint32) bool {
	if a == taildrop {
		return uint64(cur) <= limit
	}
	// RED: when the last window offered prev > limit requests, pass the
	// requests where floor(cur·limit/prev) steps up, i.e. limit out of
	// every prev, evenly spaced. OpenSIPS passes one request in
	// floor(prev/limit), which drops nothing below twice the limit;
	// this passes limit/prev, so the load passed is the limit.
	if uint64(prev) <= limit {
		return true
	}
	c, p := uint64(cur), uint64(prev)
	return c*limit/p != (c-1)*limit/p
}

// window is the counter of an unkeyed pipe: the window index and the
// requests counted in it, packed in one word that a compare-and-swap
// moves forward, so that checks on every core share no lock.
type window struct {
	cur  atomic.Uint64 // uint32(window)<<32 | count
	prev atomic.Uint64 // uint32(window)<<32 | count of the window before it
}

// count adds one request of window w and returns the counts of the
// window and of the one before.
func (c *window) count(w int64) (cur, prev uint32) {
	win := uint32(w)
	for {
		old := c.cur.Load()
		ow, n := uint32(old>>32), uint32(old)
		if old != 0 && ow != win && int32(win-ow) < 0 {
			// A request that read the clock just before another moved
			// the window on: count it in the new one. (0 is the state
			// before the first request: a stored count is never 0.)
			win = ow
		}
		if ow == win {
			if n == ^uint32(0) { // saturated: stays there
				return n, c.prevOf(win)
			}
			if c.cur.CompareAndSwap(old, old+1) {
				return n + 1, c.prevOf(win)
			}
			continue
		}
		if c.cur.CompareAndSwap(old, uint64(win)<<32|1) {
			var p uint32
			if ow == win-1 {
				p = n
			}
			c.prev.Store(uint64(win)<<32 | uint64(p))
			return 1, p
		}
	}
}

// prevOf is the count of the window before win, 0 when not known yet.
func (c *window) prevOf(win uint32) uint32 {
	v := c.prev.Load()
	if uint32(v>>32) != win {
		return 0
	}
	return uint32(v)
}

// last is the count of the last complete window before w.
func (c *window) last(w int64) uint64 {
	v := c.cur.Load()
	switch uint32(v >> 32) {
	case uint32(w):
		return uint64(c.prevOf(uint32(w)))
	case uint32(w - 1):
		return uint64(uint32(v))
	}
	return 0
}

// current is the count of window w so far.
func (c *window) current(w int64) uint64 {
	v := c.cur.Load()
	if uint32(v>>32) == uint32(w) {
		return uint64(uint32(v))
	}
	return 0
}

func (c *window) reset() {
	c.cur.Store(0)
	c.prev.Store(0)
}

// spread is a permutation of 0..99: FEEDBACK drops request n when
// spread[n%100] < the drop percentage, so any 100 consecutive requests
// see exactly that many drops, spread over them rather than in a run.
var spread = func() [100]uint8 {
	var p [100]uint8
	for i := range p {
		p[i] = uint8(i)
	}
	r := rand.New(rand.NewPCG(12, 1))
	r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p
}()

// pid is the FEEDBACK controller of one pipe (Kamailio's ratelimit: an
// integral controller on the CPU load, gain -25 per interval; the integral
// only accumulates while the load is above the setpoint or the drop rate
// is up, so a long idle spell does not store credit for a later burst).
type pid struct {
	integral float64
	lastErr  float64
	// The last /proc/stat counters this pipe measured from.
	busy, total uint64
}

const (
	pidKp = 0.0
	pidKi = -25.0
	pidKd = 0.0
)

// update feeds the load (0..1) of the last interval and returns the new
// drop percentage (0..100).
func (c *pid) update(setpoint, load float64) int32 {
	err := setpoint - load
	if c.integral < 0 || err < 0 {
		c.integral += err
	}
	out := pidKp*err + pidKi*c.integral + pidKd*(err-c.lastErr)
	c.lastErr = err
	switch {
	case out < 0:
		return 0
	case out > 100:
		// The integral is not let past what holds the rate at 100 %, so
		// that the controller comes down as soon as the load does.
		c.integral = 100 / pidKi
		return 100
	}
	return int32(out + 0.5)
}
