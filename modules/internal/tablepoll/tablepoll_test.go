package tablepoll

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"switchboard/store"
)

// TestPoll: a load runs only when the version moved from the one loaded;
// a failed version read or load is reported and tried again at the next
// poll; Stop ends the loop (twice is harmless).
func TestPoll(t *testing.T) {
	var mu sync.Mutex
	version, loads, failLoads := int64(1), 0, 1
	var failures []error
	p := Start(Config{
		Interval: func() time.Duration { return 5 * time.Millisecond },
		Version: func(context.Context) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			if version < 0 {
				return 0, errors.New("store down")
			}
			return version, nil
		},
		Load: func(context.Context) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			loads++
			if failLoads > 0 {
				failLoads--
				return 0, errors.New("load failed")
			}
			return version, nil
		},
		Loaded: 1,
		Failed: func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
	})
	defer p.Stop()
	wait := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			mu.Lock()
			ok := f()
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	time.Sleep(30 * time.Millisecond)
	mu.Lock()
	if loads != 0 {
		t.Fatalf("%d loads while the version stayed at the one loaded", loads)
	}
	version = 2 // a write: the first load fails, the next poll loads again
	mu.Unlock()
	wait("the failed load was not tried again", func() bool { return loads == 2 })
	time.Sleep(30 * time.Millisecond)
	mu.Lock()
	if loads != 2 || len(failures) != 1 || failures[0].Error() != "load failed" {
		t.Fatalf("%d loads, failures %v", loads, failures)
	}
	version = -1 // the store is down: reported, nothing loaded
	mu.Unlock()
	wait("a failed version read was not reported", func() bool { return len(failures) >= 2 })
	mu.Lock()
	if failures[1].Error() != "store down" || loads != 2 {
		t.Fatalf("%d loads, failures %v", loads, failures)
	}
	version = 2 // back, unchanged: nothing to load
	mu.Unlock()
	time.Sleep(30 * time.Millisecond)
	p.Stop()
	p.Stop()
	mu.Lock()
	defer mu.Unlock()
	if loads != 2 {
		t.Fatalf("%d loads after the store came back with the version loaded", loads)
	}
	var nilPoller *Poller
	nilPoller.Stop()
}

// TestPollUnreachable: while the store is unreachable the failure is
// reported once, not at every poll; once it is back (or fails otherwise)
// the next failure is reported again.
func TestPollUnreachable(t *testing.T) {
	var mu sync.Mutex
	var failures []error
	polls := 0
	down := fmt.Errorf("dial: connection refused: %w", store.ErrUnavailable)
	p := Start(Config{
		Interval: func() time.Duration { return 2 * time.Millisecond },
		Version: func(context.Context) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			polls++
			switch {
			case polls <= 20: // an outage
				return 0, down
			case polls == 21: // back
				return 1, nil
			case polls <= 30: // another outage
				return 0, down
			}
			return 1, nil
		},
		Load:   func(context.Context) (int64, error) { return 1, nil },
		Loaded: 1,
		Failed: func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
	})
	defer p.Stop()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := polls
		mu.Unlock()
		if n > 35 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("polls stopped")
		}
	}
	p.Stop()
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 2 || !errors.Is(failures[0], store.ErrUnavailable) {
		t.Fatalf("%d failures reported over two outages of 20 and 9 polls, want 2: %v", len(failures), failures)
	}
}
