package shards_test

import (
	"errors"
	"fmt"
	"time"

	"switchboard/shards"
)

// A transaction-like value: its timers are embedded, so starting them
// allocates nothing.
type tx struct {
	state   string
	timerA  shards.Timer
	timerB  shards.Timer
	retrans int
}

const (
	timerA = iota + 1
	timerB
)

func Example() {
	clock := shards.NewManualClock(0) // production: shards.NewClock() and clock.Start(0)
	tbl, err := shards.New(shards.Config[tx]{
		Clock:    clock,
		Shards:   16,
		MaxBytes: 64 << 20,
		OnTimer: func(s *shards.Shard[tx], e *shards.Entry[tx], t *shards.Timer) {
			switch t.Kind {
			case timerA: // retransmit and back off
				e.Value.retrans++
				s.StartTimer(e, &e.Value.timerA, timerA, time.Duration(500<<e.Value.retrans)*time.Millisecond)
			case timerB: // give up
				s.StopTimer(&e.Value.timerA)
				fmt.Printf("%s timed out after %d retransmissions at t=%dms\n", e.Key(), e.Value.retrans, s.Now())
				s.Remove(e)
			}
		},
	})
	if err != nil {
		panic(err)
	}
	defer tbl.Close()

	callID := []byte("a84b4c76e66710@pc33.atlanta.example.com")
	branch := []byte("z9hG4bK776asdhds")

	// The Call-ID picks the shard; the branch is the key inside it.
	s := tbl.Shard(shards.Sum(callID))
	s.Lock()
	bh := shards.Sum(branch)
	e, err := s.Insert(bh, branch)
	if err != nil {
		s.Unlock()
		if errors.Is(err, shards.ErrFull) {
			fmt.Println("503 Service Unavailable, Retry-After: 5")
		}
		return
	}
	e.Value.state = "calling"
	s.StartTimer(e, &e.Value.timerA, timerA, 500*time.Millisecond)
	s.StartTimer(e, &e.Value.timerB, timerB, 32*time.Second)
	s.Unlock()

	// A retransmitted request or a response is matched with the lock held,
	// so match and update are one step.
	s.Lock()
	if e := s.Get(bh, branch); e != nil {
		fmt.Println("matched", string(e.Key()), e.Value.state)
	}
	s.Unlock()

	clock.Advance(40 * time.Second)
	fmt.Println("entries left:", tbl.Len())
	// Output:
	// matched z9hG4bK776asdhds calling
	// z9hG4bK776asdhds timed out after 6 retransmissions at t=32000ms
	// entries left: 0
}
