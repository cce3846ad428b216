package shards

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// firing records what a wheel fired and when.
type firing struct {
	w      *Wheel
	fired  []*Timer
	at     []int64 // wheel time at each firing
	onFire func(t *Timer)
}

func newWheel(now int64) *firing {
	f := &firing{w: new(Wheel)}
	f.w.Init(now, func(t *Timer) {
		f.fired = append(f.fired, t)
		f.at = append(f.at, f.w.Now())
		if f.onFire != nil {
			f.onFire(t)
		}
	})
	return f
}

func TestWheelFiresOnExactMillisecond(t *testing.T) {
	const start int64 = 1_700_000_000_123
	f := newWheel(start)
	delays := []int64{1, 2, 63, 64, 65, 127, 128, 500, 4095, 4096, 4097, 32000, 262143, 262144, 262145}
	timers := make([]Timer, len(delays))
	for i, d := range delays {
		f.w.Start(&timers[i], start+d)
	}
	for now := start; now <= start+262150; now++ {
		f.w.Advance(now)
	}
	if len(f.fired) != len(delays) {
		t.Fatalf("fired %d timers, want %d", len(f.fired), len(delays))
	}
	for i, tm := range f.fired {
		want := start + delays[i]
		if tm != &timers[i] || f.at[i] != want {
			t.Errorf("firing %d: timer %p at %d, want %p at %d", i, tm, f.at[i]-start, &timers[i], delays[i])
		}
	}
	if f.w.Len() != 0 {
		t.Errorf("Len after all fired = %d", f.w.Len())
	}
}

func TestWheelLongTimersAcrossRotations(t *testing.T) {
	// Deadlines hours away cross every level; a big jump must fire them in
	// order, and stepping millisecond by millisecond near a deadline must
	// fire each exactly on it.
	const start int64 = 5_000
	f := newWheel(start)
	hours := []int64{3_600_000, 3_600_000 + 1, 2*3_600_000 + 17, 7*24*3_600_000 + 5, 40*24*3_600_000 + 3}
	timers := make([]Timer, len(hours))
	for i := len(hours) - 1; i >= 0; i-- {
		f.w.Start(&timers[i], start+hours[i])
	}
	for i, h := range hours {
		f.w.Advance(start + h - 1)
		if len(f.fired) != i {
			t.Fatalf("before deadline %d: %d fired, want %d", h, len(f.fired), i)
		}
		f.w.Advance(start + h)
		if len(f.fired) != i+1 || f.fired[i] != &timers[i] || f.at[i] != start+h {
			t.Fatalf("deadline %d: fired %d, last at %d", h, len(f.fired), f.at[len(f.at)-1]-start)
		}
	}
}

func TestWheelBigJumpFiresInDeadlineOrder(t *testing.T) {
	f := newWheel(0)
	rng := rand.New(rand.NewPCG(1, 2))
	timers := make([]Timer, 5000)
	for i := range timers {
		f.w.Start(&timers[i], 1+rng.Int64N(10_000_000))
	}
	if n := f.w.Advance(20_000_000); n != len(timers) {
		t.Fatalf("Advance fired %d, want %d", n, len(timers))
	}
	for i := 1; i < len(f.fired); i++ {
		if f.fired[i].When() < f.fired[i-1].When() {
			t.Fatalf("firing %d at deadline %d after deadline %d", i, f.fired[i].When(), f.fired[i-1].When())
		}
		if f.at[i] != f.fired[i].When() {
			t.Fatalf("firing %d: wheel time %d, deadline %d", i, f.at[i], f.fired[i].When())
		}
	}
}

func TestWheelResetAndStop(t *testing.T) {
	f := newWheel(0)
	var a, b, c Timer
	f.w.Start(&a, 100)
	f.w.Start(&b, 100)
	f.w.Start(&c, 5000)
	f.w.Start(&a, 300) // later
	f.w.Start(&c, 50)  // earlier, from another level
	if !f.w.Stop(&b) || f.w.Stop(&b) {
		t.Fatal("Stop of an active timer must report true once, then false")
	}
	if f.w.Len() != 2 {
		t.Fatalf("Len = %d, want 2", f.w.Len())
	}
	f.w.Advance(10_000)
	if len(f.fired) != 2 || f.fired[0] != &c || f.at[0] != 50 || f.fired[1] != &a || f.at[1] != 300 {
		t.Fatalf("fired %v at %v", f.fired, f.at)
	}
	if f.w.Stop(&a) || a.Active() {
		t.Fatal("Stop after firing must report false")
	}
	// A fired timer can be started again.
	f.w.Start(&a, 10_001)
	f.w.Advance(10_001)
	if len(f.fired) != 3 || f.at[2] != 10_001 {
		t.Fatalf("restarted timer: fired %d at %v", len(f.fired), f.at)
	}
}

func TestWheelPastDeadlineFiresNextMillisecond(t *testing.T) {
	f := newWheel(1000)
	f.w.Advance(2000)
	var a Timer
	f.w.Start(&a, 1500)
	if a.When() != 2001 {
		t.Fatalf("When = %d, want 2001", a.When())
	}
	f.w.Advance(2000)
	if len(f.fired) != 0 {
		t.Fatal("fired before time moved")
	}
	f.w.Advance(2001)
	if len(f.fired) != 1 {
		t.Fatal("did not fire on the next millisecond")
	}
}

func TestWheelManyTimersInOneSlotFIFO(t *testing.T) {
	f := newWheel(0)
	timers := make([]Timer, 10_000)
	for i := range timers {
		f.w.Start(&timers[i], 777)
	}
	// Stop every third one, including the head and the tail.
	stopped := 0
	for i := 0; i < len(timers); i += 3 {
		f.w.Stop(&timers[i])
		stopped++
	}
	// 9999 was stopped above, so 9998 is the tail now.
	if !f.w.Stop(&timers[9998]) {
		t.Fatal("Stop of the tail reported inactive")
	}
	stopped++
	f.w.Advance(776)
	if len(f.fired) != 0 {
		t.Fatal("fired early")
	}
	f.w.Advance(777)
	if len(f.fired) != len(timers)-stopped {
		t.Fatalf("fired %d, want %d", len(f.fired), len(timers)-stopped)
	}
	index := make(map[*Timer]int, len(timers))
	for i := range timers {
		index[&timers[i]] = i
	}
	prev := -1
	for _, tm := range f.fired {
		i := index[tm]
		if i <= prev || i%3 == 0 || i == 9998 {
			t.Fatalf("timer %d fired after %d", i, prev)
		}
		prev = i
	}
}

func TestWheelHandlerStopsAndRestarts(t *testing.T) {
	// Timer A doubles its interval from 500 ms (like SIP timer A); timer B
	// at 32 s stops A when it fires; a timer in the same slot as B is
	// stopped by B's handler before its turn.
	f := newWheel(0)
	var a, b, same Timer
	a.Kind, b.Kind, same.Kind = 1, 2, 3
	interval := int64(500)
	f.onFire = func(tm *Timer) {
		switch tm.Kind {
		case 1:
			interval *= 2
			f.w.Start(&a, f.w.Now()+interval)
		case 2:
			f.w.Stop(&a)
			f.w.Stop(&same)
		case 3:
			t.Error("timer stopped by an earlier handler in its slot fired")
		}
	}
	f.w.Start(&a, 500)
	f.w.Start(&b, 32_000)
	f.w.Start(&same, 32_000)
	for now := int64(0); now <= 100_000; now += 7 {
		f.w.Advance(now)
	}
	var atA []int64
	for i, tm := range f.fired {
		if tm == &a {
			atA = append(atA, f.at[i])
		}
	}
	want := []int64{500, 1500, 3500, 7500, 15500, 31500}
	if !slices.Equal(atA, want) {
		t.Fatalf("A fired at %v, want %v", atA, want)
	}
	if a.Active() || f.w.Len() != 0 {
		t.Fatalf("A active %v, Len %d", a.Active(), f.w.Len())
	}
}

// TestWheelAgainstModel runs random starts, resets, stops and advances and
// checks every firing against a plain list of deadlines.
func TestWheelAgainstModel(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		start := rng.Int64N(1 << 40)
		f := newWheel(start)
		timers := make([]Timer, 300)
		deadline := make(map[*Timer]int64) // model: active timers
		now := start
		for step := 0; step < 3000; step++ {
			switch op := rng.IntN(10); {
			case op < 5:
				tm := &timers[rng.IntN(len(timers))]
				var d int64
				switch rng.IntN(4) {
				case 0:
					d = rng.Int64N(70)
				case 1:
					d = rng.Int64N(5000)
				case 2:
					d = rng.Int64N(400_000)
				default:
					d = rng.Int64N(30_000_000)
				}
				f.w.Start(tm, now+d)
				deadline[tm] = max(now+d, now+1)
			case op < 7:
				tm := &timers[rng.IntN(len(timers))]
				_, active := deadline[tm]
				if got := f.w.Stop(tm); got != active {
					t.Fatalf("seed %d: Stop = %v, model says active %v", seed, got, active)
				}
				delete(deadline, tm)
			default:
				var d int64
				if rng.IntN(3) == 0 {
					d = rng.Int64N(2_000_000)
				} else {
					d = rng.Int64N(300)
				}
				from := len(f.fired)
				now += d
				f.w.Advance(now)
				var want []int64
				for tm, dl := range deadline {
					if dl <= now {
						want = append(want, dl)
						delete(deadline, tm)
					}
				}
				slices.Sort(want)
				var got []int64
				for i := from; i < len(f.fired); i++ {
					if f.at[i] != f.fired[i].When() {
						t.Fatalf("seed %d: fired at %d, deadline %d", seed, f.at[i], f.fired[i].When())
					}
					got = append(got, f.at[i])
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: advance to %d fired %v, want %v", seed, step, now-start, got, want)
				}
			}
			if f.w.Len() != len(deadline) {
				t.Fatalf("seed %d: Len %d, model %d", seed, f.w.Len(), len(deadline))
			}
		}
	}
}

func TestWheelClampsVeryLongDelay(t *testing.T) {
	f := newWheel(0)
	var a Timer
	f.w.Start(&a, 1<<62)
	if a.When() != MaxTimerDelay {
		t.Fatalf("When = %d, want %d", a.When(), int64(MaxTimerDelay))
	}
	f.w.Advance(MaxTimerDelay - 1)
	if len(f.fired) != 0 {
		t.Fatal("fired early")
	}
	f.w.Advance(MaxTimerDelay)
	if len(f.fired) != 1 {
		t.Fatal("clamped timer did not fire")
	}
}
