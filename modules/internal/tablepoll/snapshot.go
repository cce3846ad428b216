package tablepoll

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Snapshot is a table a module keeps in memory: built whole from the
// store's rows, swapped in whole, read without a lock (Current). It is
// what the modules with such a table (aliases, groups, dialplan) share:
// one build at a time, the reload counters and log lines, the poll loop
// that reloads the table when its version in the store moves, and the
// size limit a SIGHUP may change.
type Snapshot[T any] struct {
	spec     SnapshotSpec[T]
	cur      atomic.Pointer[T]
	version  atomic.Int64 // of cur
	interval atomic.Int64 // ns
	limit    atomic.Int64
	mu       sync.Mutex // one build at a time
	poller   *Poller

	reloads, reloadErrors *metrics.Counter
}

// SnapshotSpec describes a module's table.
type SnapshotSpec[T any] struct {
	// Module names the counters (switchboard_<module>_reloads_total,
	// switchboard_<module>_reload_errors_total) and starts the log lines.
	Module string
	// Table and Items are how the log lines name the table ("table",
	// "rules") and its contents ("the aliases", "the rules").
	Table, Items string
	Log          *slog.Logger
	Metrics      *metrics.Set
	// Version reads the table's version in the store.
	Version func(ctx context.Context) (int64, error)
	// Build reads the rows and builds a table of at most limit entries,
	// or says why not; prev is the table in use (to reuse what does not
	// change). It reads the version first and returns it: a write
	// committed while the rows are read is then loaded at the next poll
	// instead of being missed.
	Build func(ctx context.Context, prev *T, limit int64) (t *T, version int64, err error)
	// Loaded is the attributes of the log line of a table loaded.
	Loaded func(t *T) []any
}

// NewSnapshot makes a Snapshot holding empty until the first Load.
func NewSnapshot[T any](spec SnapshotSpec[T], empty *T, interval time.Duration, limit int64) *Snapshot[T] {
	s := &Snapshot[T]{spec: spec,
		reloads:      spec.Metrics.GetOrCreateCounter("switchboard_" + spec.Module + "_reloads_total"),
		reloadErrors: spec.Metrics.GetOrCreateCounter("switchboard_" + spec.Module + "_reload_errors_total")}
	s.cur.Store(empty)
	s.interval.Store(int64(interval))
	s.limit.Store(limit)
	return s
}

// Current is the table in use.
func (s *Snapshot[T]) Current() *T { return s.cur.Load() }

// Limit is the most entries a table may have.
func (s *Snapshot[T]) Limit() int64 { return s.limit.Load() }

// Load builds the table from the store and swaps it in; it returns the
// version loaded. On error the table in use stays.
func (s *Snapshot[T]) Load(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, v, err := s.spec.Build(ctx, s.cur.Load(), s.limit.Load())
	if err != nil {
		s.reloadErrors.Inc()
		s.spec.Log.Error(fmt.Sprintf("%s: loading the %s failed; %s in use stay", s.spec.Module, s.spec.Table, s.spec.Items), "err", err)
		return 0, err
	}
	s.cur.Store(t)
	s.version.Store(v)
	s.reloads.Inc()
	s.spec.Log.Info(fmt.Sprintf("%s: %s loaded", s.spec.Module, s.spec.Table), s.spec.Loaded(t)...)
	return v, nil
}

// Start polls the store for changes until Stop.
func (s *Snapshot[T]) Start() {
	s.poller = Start(Config{
		Interval: func() time.Duration { return time.Duration(s.interval.Load()) },
		Version:  s.spec.Version,
		Load:     s.Load,
		Loaded:   s.version.Load(),
		Failed: func(err error) {
			s.spec.Log.Warn(fmt.Sprintf("%s: reading the %s failed; %s loaded before stay in use", s.spec.Module, s.spec.Table, s.spec.Items), "err", err)
		},
	})
}

// Stop ends the poll loop.
func (s *Snapshot[T]) Stop() { s.poller.Stop() }

// CheckReload reports whether the table in the store fits a new limit,
// building it and keeping nothing (nil when limit is the one in force).
// Reload builds it again: a table grown past the limit meanwhile fails
// there.
func (s *Snapshot[T]) CheckReload(limit int64) error {
	if limit == s.limit.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, err := s.spec.Build(ctx, s.cur.Load(), limit)
	return err
}

// Reload applies changed settings (SIGHUP): the interval at the next
// poll; a changed limit loads the table again, and if the table is over
// the new limit the old settings stay.
func (s *Snapshot[T]) Reload(interval time.Duration, limit int64) error {
	oldInterval, oldLimit := s.interval.Load(), s.limit.Load()
	s.interval.Store(int64(interval))
	s.limit.Store(limit)
	if limit == oldLimit {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Load(ctx); err != nil {
		s.interval.Store(oldInterval)
		s.limit.Store(oldLimit)
		return err
	}
	return nil
}
