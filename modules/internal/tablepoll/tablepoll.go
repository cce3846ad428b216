// Package tablepoll reloads a table that a module keeps in memory when
// the table's version in the store moves (store.Store.DialplanVersion,
// AliasesVersion, GroupsVersion: a counter bumped in the transaction of
// every write, by this process or another sharing the database). A poll
// is one indexed read; the table itself is read only when it changed.
package tablepoll

import (
	"context"
	"time"

	"switchboard/store"
)

// Poller is a running poll loop.
type Poller struct {
	stop chan struct{}
	done chan struct{}
}

// Config is what a poll loop needs.
type Config struct {
	// Interval is read before each wait, so a module can change it at
	// run time (a SIGHUP).
	Interval func() time.Duration
	// Version reads the table's version in the store.
	Version func(ctx context.Context) (int64, error)
	// Load reads the table, swaps it in and returns the version it
	// loaded (read before the rows, so a write committed meanwhile is
	// loaded again at the next poll rather than missed).
	Load func(ctx context.Context) (int64, error)
	// Loaded is the version in use when the loop starts.
	Loaded int64
	// Failed is told about a failed poll or load; the table in use stays
	// and the load is tried again at the next poll. While the database
	// cannot be reached (store.ErrUnavailable) it is told once, not at
	// every poll: the server reports the outage itself (/readyz, the
	// storage metrics, its log).
	Failed func(err error)
}

// Start runs the loop until Stop.
func Start(c Config) *Poller {
	p := &Poller{stop: make(chan struct{}), done: make(chan struct{})}
	go p.run(c)
	return p
}

func (p *Poller) run(c Config) {
	defer close(p.done)
	seen := c.Loaded
	var outage store.OncePerOutage
	for {
		t := time.NewTimer(c.Interval())
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		v, err := c.Version(ctx)
		if err == nil && v != seen {
			v, err = c.Load(ctx)
		}
		cancel()
		if outage.Report(err) {
			c.Failed(err)
		}
		if err != nil {
			continue
		}
		seen = v
	}
}

// Stop ends the loop and waits for it. Safe on a nil Poller and twice.
func (p *Poller) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}
