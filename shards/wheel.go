package shards

import (
	"math/bits"
	"unsafe"
)

// The wheel is hierarchical: level L has 64 slots of 64^L milliseconds each,
// so level 0 resolves single milliseconds over the next 64 ms, level 1 covers
// 4 s in 64 ms steps, level 2 covers 4.4 min, level 3 4.7 h, and so on. A
// timer sits at the level of the highest base-64 digit in which its deadline
// differs from the wheel's current time; when the wheel reaches that digit the
// timer is moved down a level (cascaded), and it fires from level 0 on its
// exact millisecond. Each timer therefore moves at most wheelLevels times in
// its life, whatever its length, and per-level bitmaps let Advance jump
// straight to the next millisecond that has work instead of stepping through
// empty ones.
const (
	wheelBits   = 6
	wheelSlots  = 1 << wheelBits
	wheelMask   = wheelSlots - 1
	wheelLevels = 7 // 42 bits of milliseconds relative to the wheel's epoch: 139 years

	// MaxTimerDelay is the longest delay a timer can have, in milliseconds
	// (2^40 ms, about 34 years). Longer delays are clamped to it.
	MaxTimerDelay = 1 << 40
)

// Timer is an intrusive timer: embed it in the structure it belongs to (for
// table entries, in the entry's Value) and start it on a Wheel or through
// Shard.StartTimer. A Timer costs no allocation to start, reset or stop.
// The zero value is a stopped timer. A Timer must not be copied while active.
type Timer struct {
	next, prev *Timer // slot list; the head's prev is the list's tail
	when       int64  // deadline, milliseconds on the wheel's clock
	owner      unsafe.Pointer
	// Kind is a caller-defined tag telling the expiry handler which of its
	// timers fired (for transactions: timer A, B, D, ...).
	Kind   uint8
	level  uint8
	slot   uint8
	active bool
}

// Active reports whether the timer is started and has neither fired nor
// been stopped.
func (t *Timer) Active() bool { return t.active }

// When returns the deadline in milliseconds on the wheel's clock. A deadline
// asked for in the past is moved to the next millisecond the wheel processes.
func (t *Timer) When() int64 { return t.when }

// Wheel is a hierarchical hashed timing wheel with millisecond resolution.
// It is not safe for concurrent use: a Shard guards its wheel with the shard
// lock. Time is whatever int64 millisecond scale the caller uses (Clock.Now
// for tables); the wheel only needs it to be non-decreasing across Advance.
type Wheel struct {
	epoch  int64 // absolute time of relative 0
	now    int64 // relative time up to which every due timer has fired
	n      int
	expire func(*Timer)
	bits   [wheelLevels]uint64
	slots  [wheelLevels][wheelSlots]*Timer
}

// Init prepares w with its current time and the function called for each
// timer that expires. expire runs inside Advance, after the timer has been
// removed from the wheel (so it may start the same timer again).
func (w *Wheel) Init(now int64, expire func(*Timer)) {
	*w = Wheel{epoch: now, expire: expire}
}

// Now returns the time up to which the wheel has processed timers.
func (w *Wheel) Now() int64 { return w.epoch + w.now }

// Len returns the number of active timers.
func (w *Wheel) Len() int { return w.n }

// Start schedules t to expire at the absolute time when (milliseconds). If t
// is already active it is moved (a reset). A deadline not after the wheel's
// current time fires on the next millisecond processed.
func (w *Wheel) Start(t *Timer, when int64) {
	if t.active {
		w.unlink(t)
	} else {
		t.active = true
		w.n++
	}
	rel := when - w.epoch
	if rel <= w.now {
		rel = w.now + 1
	} else if rel-w.now > MaxTimerDelay {
		rel = w.now + MaxTimerDelay
	}
	t.when = w.epoch + rel
	w.place(t, rel)
}

// Stop removes t from the wheel. It reports whether t was active; false
// means it had already fired or been stopped.
func (w *Wheel) Stop(t *Timer) bool {
	if !t.active {
		return false
	}
	w.unlink(t)
	t.active = false
	w.n--
	return true
}

// Advance moves the wheel's time to now, firing in deadline order every
// timer whose deadline is not after now. It returns the number fired.
func (w *Wheel) Advance(now int64) int {
	target := now - w.epoch
	fired := 0
	for w.now < target {
		next, ok := w.nextEvent()
		if !ok || next > target {
			w.now = target
			break
		}
		w.now = next
		fired += w.process(next)
	}
	return fired
}

// NextEvent returns the absolute time of the next event Advance has to
// process (a timer to fire or a slot to cascade), or false when no timer
// is active. It is never later than the earliest deadline.
func (w *Wheel) NextEvent() (int64, bool) {
	rel, ok := w.nextEvent()
	return w.epoch + rel, ok
}

// nextEvent returns the next relative time after w.now at which a slot must
// be cascaded or fired. By construction every non-empty slot at level L has
// an index above the level-L digit of w.now, and the lowest level with a
// non-empty slot holds the earliest event.
func (w *Wheel) nextEvent() (int64, bool) {
	if w.n == 0 {
		return 0, false
	}
	for l := 0; l < wheelLevels; l++ {
		shift := uint(l * wheelBits)
		digit := uint((w.now >> shift) & wheelMask)
		m := w.bits[l] &^ (uint64(2)<<digit - 1)
		if m != 0 {
			j := int64(bits.TrailingZeros64(m))
			base := w.now >> (shift + wheelBits) << (shift + wheelBits)
			return base | j<<shift, true
		}
	}
	return 0, false
}

// process handles relative time t: cascades of every level whose boundary t
// is (highest first, so timers can fall through several levels), then the
// level-0 slot of t, whose timers all have deadline t.
func (w *Wheel) process(t int64) int {
	top := 0
	for l := 1; l < wheelLevels && t&(int64(1)<<(uint(l)*wheelBits)-1) == 0; l++ {
		top = l
	}
	for l := top; l >= 1; l-- {
		head := &w.slots[l][(t>>(uint(l)*wheelBits))&wheelMask]
		for *head != nil {
			tm := *head
			w.unlink(tm)
			w.place(tm, tm.when-w.epoch)
		}
	}
	fired := 0
	head := &w.slots[0][t&wheelMask]
	for *head != nil {
		tm := *head
		w.unlink(tm)
		tm.active = false
		w.n--
		fired++
		w.expire(tm)
	}
	return fired
}

// place links t into the slot for relative deadline rel (rel >= w.now).
func (w *Wheel) place(t *Timer, rel int64) {
	// rel == w.now gives Len64 0 and level (0-1)/6 == 0: level 0, slot of
	// now, which process fires right after cascading.
	level := (bits.Len64(uint64(rel^w.now)) - 1) / wheelBits
	slot := (rel >> (uint(level) * wheelBits)) & wheelMask
	t.level, t.slot = uint8(level), uint8(slot)
	head := &w.slots[level][slot]
	t.next = nil
	if *head == nil {
		t.prev = t
		*head = t
		w.bits[level] |= 1 << uint(slot)
		return
	}
	tail := (*head).prev
	tail.next = t
	t.prev = tail
	(*head).prev = t
}

func (w *Wheel) unlink(t *Timer) {
	head := &w.slots[t.level][t.slot]
	if *head == t {
		*head = t.next
		if t.next != nil {
			t.next.prev = t.prev
		}
	} else {
		t.prev.next = t.next
		if t.next != nil {
			t.next.prev = t.prev
		} else {
			(*head).prev = t.prev
		}
	}
	if *head == nil {
		w.bits[t.level] &^= 1 << t.slot
	}
	t.next, t.prev = nil, nil
}
