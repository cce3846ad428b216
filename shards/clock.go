package shards

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the coarse clock: milliseconds since the Unix epoch held in an
// atomic, so reading the time on the hot path is a load or two, never a
// call to time.Now. One ticker goroutine (Start) stores the time and then
// advances the timing wheels of every table created on the clock. A
// manual clock (NewManualClock) moves only when Advance or Set is called,
// which lets tests drive the real wheels deterministically.
//
// An idle server should not wake a hundred times a second for nothing
// (the ticks were three quarters of an idle server's CPU). When no timer
// is due within a tick, the ticker naps until the next one is (at most
// maxNap). While it naps Now reads the real time (a call to the monotonic
// clock instead of a load), and a timer started to fire before the nap
// ends wakes it. Under traffic timers fall due every tick and the ticker
// never naps.
type Clock struct {
	ms      atomic.Int64
	napping atomic.Bool
	wakeAt  atomic.Int64  // while napping: when the nap ends (ms)
	kick    chan struct{} // wakes a napping ticker
	manual  bool
	start   time.Time
	startMs int64

	// Nudges from the receive path (Poke): nextTick is when the next tick
	// is due (0 while the ticker is not running), nudged when Poke last
	// woke the ticker (ms); nudgedTicks and timedTicks count the ticks
	// each way of waking started.
	nextTick    atomic.Int64
	nudged      atomic.Int64
	nudgedTicks atomic.Int64
	timedTicks  atomic.Int64

	mu      sync.Mutex // serialises ticks, registration, Start and Stop
	tables  []advancer
	stop    chan struct{}
	done    chan struct{}
	running bool
}

// maxNap is the longest nap: the tables' shrink pass runs every second.
const maxNap = time.Second

// Backstop is how long the ticker sleeps while the receive path nudges it
// (Poke): a timer falls due late by at most this much once the messages
// stop, as against a tick otherwise.
const Backstop = 50 * time.Millisecond

type advancer interface {
	// advance fires the timers due by now and returns the time the
	// table next has work (math.MaxInt64 for none).
	advance(now int64) int64
	// nextDue returns the time the table next has work, without locks.
	nextDue() int64
}

// DefaultTick is the ticker interval used when Start is given zero. Each
// tick wakes the ticker goroutine, so ticking costs CPU even when nothing
// is due: at 1 ms it was about 5% of a core for a server with three
// tables (the ticker now naps while nothing is due within a tick). SIP
// timers start at T1 = 500 ms and RFC 3261 gives them no precision
// requirement, so 10 ms is ample; the wheel still orders timers by their
// exact millisecond and fires every due timer of a longer step in order.
const DefaultTick = 10 * time.Millisecond

// NewClock returns a clock reading real time. Its value is set at creation
// and then only by the ticker goroutine that Start launches.
func NewClock() *Clock {
	now := time.Now()
	c := &Clock{start: now, startMs: now.UnixMilli(), kick: make(chan struct{}, 1)}
	c.ms.Store(c.startMs)
	return c
}

// NewManualClock returns a clock that reads ms until moved by Advance or Set.
func NewManualClock(ms int64) *Clock {
	c := &Clock{manual: true}
	c.ms.Store(ms)
	return c
}

// Now returns the coarse time in milliseconds since the Unix epoch (for a
// manual clock, whatever it was set to).
func (c *Clock) Now() int64 {
	if c.napping.Load() {
		return c.napNow()
	}
	return c.ms.Load()
}

// napNow is Now while the ticker naps: the real time, stored for the
// readers that follow. Apart so that Now stays small enough to inline.
func (c *Clock) napNow() int64 {
	c.storeMax(c.elapsed())
	return c.ms.Load()
}

// elapsed is the real time in milliseconds, from the monotonic clock.
func (c *Clock) elapsed() int64 { return c.startMs + int64(time.Since(c.start)/time.Millisecond) }

// storeMax stores ms unless the clock is past it already: readers of a
// napping clock and the ticker store concurrently, and the time must
// never go back.
func (c *Clock) storeMax(ms int64) {
	for {
		old := c.ms.Load()
		if ms <= old || c.ms.CompareAndSwap(old, ms) {
			return
		}
	}
}

// wake ends a nap (a pending wake is enough).
func (c *Clock) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// timerStarted wakes a napping ticker when a timer is due before the nap
// ends. A table calls it for every timer started.
func (c *Clock) timerStarted(when int64) {
	if c.napping.Load() && when < c.wakeAt.Load() {
		c.wake()
	}
}

// Poke wakes the ticker when a tick is due. The receive path calls it
// before each message; it costs a read of the monotonic clock, and a
// non-blocking channel send when a tick is due.
//
// Under traffic the ticker's own timer woke the process a hundred times a
// second, each time from its sleep in the network poller (half a context
// switch a relayed call at 500/s, bench/results/breakdown.md). Woken by a
// message's goroutine instead, the ticker runs on a thread that is awake
// anyway, after that goroutine parks: its work stays on its own goroutine,
// beside the readers, never on the receive path. While Pokes come, the
// ticker's timer is set a Backstop ahead only. Since the tick comes after
// the message, Poke stores the time itself, so that the message reads a
// clock as fresh as the ticker's timer kept it. A napping clock (no timer
// due within a tick) is left alone: a timer started meanwhile wakes it,
// and Now reads the real time.
func (c *Clock) Poke() {
	next := c.nextTick.Load()
	if next == 0 || c.napping.Load() {
		return
	}
	if now := c.elapsed(); now >= next {
		// The time now, for the message about to be handled: the tick
		// itself runs after it.
		c.storeMax(now)
		c.nudged.Store(now)
		c.wake()
	}
}

// Start launches the ticker goroutine: every tick it stores the time and
// advances the wheels of all tables on the clock, firing due timers. A
// smaller tick gives timers finer precision at the cost of more wake-ups.
func (c *Clock) Start(tick time.Duration) error {
	if c.manual {
		return errors.New("shards: Start on a manual clock")
	}
	if tick <= 0 {
		tick = DefaultTick
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return errors.New("shards: clock already started")
	}
	c.running = true
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	go c.run(tick, c.stop, c.done)
	return nil
}

// Stop ends the ticker goroutine and waits for it to finish its last tick.
func (c *Clock) Stop() {
	c.mu.Lock()
	if !c.running {
		c.mu.Unlock()
		return
	}
	c.running = false
	c.nextTick.Store(0)
	stop, done := c.stop, c.done
	c.mu.Unlock()
	close(stop)
	<-done
}

func (c *Clock) run(tick time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTimer(tick)
	defer t.Stop()
	tickMs, backstop := max(tick.Milliseconds(), 1), Backstop.Milliseconds()
	c.nextTick.Store(c.elapsed() + tickMs)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.timedTicks.Add(1)
		case <-c.kick:
			c.nudgedTicks.Add(1) // or a timer started during a nap
		}
		// The time first: a reader that sees the nap over reads it.
		now := c.elapsed()
		// The next tick's time before this one's work: Pokes meanwhile
		// do not queue a nudge for a tick that would find nothing due.
		c.nextTick.Store(now + tickMs)
		c.storeMax(now)
		c.napping.Store(false)
		c.mu.Lock()
		next := c.tick(now)
		c.mu.Unlock()
		base := tick
		if now-c.nudged.Load() < backstop {
			// Messages nudge the ticker: its own timer is the backstop
			// for when they stop.
			base = Backstop
		}
		sleep := base
		wakeAt := min(next, now+maxNap.Milliseconds())
		if d := time.Duration(wakeAt-now) * time.Millisecond; d > tick {
			// Nothing is due within a tick: nap until something is. A
			// timer started meanwhile lowered its shard's due before it
			// looked at the flag: either it sees the nap (and wakes the
			// ticker if it is due earlier) or the look below sees it.
			c.wakeAt.Store(wakeAt)
			c.napping.Store(true)
			sleep = d
			c.mu.Lock()
			for _, a := range c.tables {
				if a.nextDue() < wakeAt {
					c.napping.Store(false)
					sleep = base
					break
				}
			}
			c.mu.Unlock()
		}
		t.Reset(sleep)
	}
}

// Advance moves a manual clock forward by d (rounded down to milliseconds)
// and advances every table's wheels to the new time, running expired timers'
// handlers on the calling goroutine before it returns. It must not be called
// with a shard lock held.
func (c *Clock) Advance(d time.Duration) {
	c.Set(c.Now() + int64(d/time.Millisecond))
}

// Set moves a manual clock to ms (never backwards) and advances the wheels,
// as Advance does.
func (c *Clock) Set(ms int64) {
	if !c.manual {
		panic("shards: Advance or Set on a real-time clock")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms < c.Now() {
		ms = c.Now()
	}
	c.tick(ms)
}

// tick runs with c.mu held. It returns when a table next has work.
func (c *Clock) tick(now int64) int64 {
	c.storeMax(now)
	now = c.ms.Load()
	next := int64(math.MaxInt64)
	for _, a := range c.tables {
		next = min(next, a.advance(now))
	}
	return next
}

func (c *Clock) register(a advancer) {
	c.mu.Lock()
	c.tables = append(c.tables, a)
	c.mu.Unlock()
}

func (c *Clock) unregister(a advancer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.tables {
		if x == a {
			c.tables = append(c.tables[:i:i], c.tables[i+1:]...)
			return
		}
	}
}
