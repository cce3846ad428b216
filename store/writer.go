package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configure a LocationWriter. The zero value is usable.
type WriterOptions struct {
	// QueueSize bounds the operations waiting to be written (default 16384).
	// When the queue is full further operations are dropped and counted,
	// never blocking the caller and never growing memory.
	QueueSize int
	// MaxBatch bounds the operations applied in one transaction
	// (default 512).
	MaxBatch int
	// Linger is how long the writer waits for more operations after the
	// first one of a batch before committing (default 10 ms; negative: do
	// not wait). Each SQLite commit is an fsync'ed transaction: at a
	// thousand REGISTERs a second, committing each binding alone cost
	// about twice the CPU of the whole REGISTER; a short linger turns them
	// into a few commits a second. A binding reaches the disk at most
	// Linger later, which a restart-safe registrar does not notice.
	Linger time.Duration
	// CleanupInterval, when set, also deletes expired bindings that often,
	// from the writer goroutine.
	CleanupInterval time.Duration
	// OnError, when set, is called from the writer goroutine with every
	// batch that failed after retries. Its operations are lost.
	OnError func(err error, ops int)
}

// WriterStats are counters of a LocationWriter since it started.
type WriterStats struct {
	Queued    int    // operations waiting now
	Applied   uint64 // operations committed
	Batches   uint64 // transactions committed
	MaxBatch  int    // largest batch committed
	Dropped   uint64 // operations refused because the queue was full or the writer closed
	Failed    uint64 // operations lost because their batch failed after retries
	Cleaned   uint64 // expired bindings removed by the periodic cleanup
	LastError error  // last batch or cleanup failure, nil if none
}

type writerItem struct {
	op   BindingOp
	done chan error // set on Flush and Close markers; op is then unused
	stop bool
}

// LocationWriter persists registrar binding changes write-behind: Upsert,
// Delete and DeleteAOR only copy the operation into a bounded channel (no
// allocation, no I/O, never waiting) and return; one goroutine applies queued
// operations in order, as many per transaction as are waiting (up to
// MaxBatch), so the commit cost is shared under load.
type LocationWriter struct {
	b    Backend
	opts WriterOptions
	q    chan writerItem

	closed atomic.Bool
	// Counters written by the writer goroutine; read by Stats.
	applied, batches, dropped, failed, cleaned atomic.Uint64
	maxBatch                                   atomic.Int64
	mu                                         sync.Mutex
	lastErr                                    error
	errSinceFlush                              error // reported by the next Flush

	exited    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewLocationWriter starts a writer on the store's backend. Close it before
// closing the Store.
func (s *Store) NewLocationWriter(opts WriterOptions) *LocationWriter {
	w := newLocationWriter(s.b, opts)
	go w.run()
	return w
}

func newLocationWriter(b Backend, opts WriterOptions) *LocationWriter {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 16384
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Linger == 0 {
		opts.Linger = 10 * time.Millisecond
	}
	return &LocationWriter{
		b:      b,
		opts:   opts,
		q:      make(chan writerItem, opts.QueueSize),
		exited: make(chan struct{}),
	}
}

// Upsert queues b to be inserted or to replace the stored binding with the
// same key (see Binding). It returns ErrQueueFull or ErrWriterClosed when the
// operation was dropped, or a malformed-AOR/binding error; it never blocks.
func (w *LocationWriter) Upsert(b Binding) error {
	return w.enqueue(BindingOp{Kind: OpUpsert, Binding: b})
}

// Delete queues removal of the stored binding with b's key (AOR plus
// Instance and RegID, or AOR plus Contact).
func (w *LocationWriter) Delete(b Binding) error {
	return w.enqueue(BindingOp{Kind: OpDelete, Binding: b})
}

// DeleteAOR queues removal of every binding of aor.
func (w *LocationWriter) DeleteAOR(aor string) error {
	return w.enqueue(BindingOp{Kind: OpDeleteAOR, Binding: Binding{AOR: aor}})
}

func (w *LocationWriter) enqueue(op BindingOp) error {
	if err := checkBinding(&op); err != nil {
		return err
	}
	if w.closed.Load() {
		w.dropped.Add(1)
		return ErrWriterClosed
	}
	select {
	case w.q <- writerItem{op: op}:
		return nil
	default:
		w.dropped.Add(1)
		return ErrQueueFull
	}
}

// Flush waits until every operation queued before it is committed (or has
// failed) and returns the first failure since the previous Flush. It blocks,
// so it is for shutdown, tests and tools, not for the event loop.
func (w *LocationWriter) Flush() error {
	if w.closed.Load() {
		return ErrWriterClosed
	}
	done := make(chan error, 1)
	select {
	case w.q <- writerItem{done: done}:
	case <-w.exited:
		return ErrWriterClosed
	}
	select {
	case err := <-done:
		return err
	case <-w.exited:
		return ErrWriterClosed
	}
}

// Close stops accepting operations, writes everything already queued and
// stops the writer goroutine. It returns the first failure since the last
// Flush. Operations queued concurrently with Close may be dropped: stop the
// producers first.
func (w *LocationWriter) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		done := make(chan error, 1)
		w.q <- writerItem{done: done, stop: true}
		w.closeErr = <-done
		<-w.exited
	})
	return w.closeErr
}

// Dropped returns how many operations were refused because the queue was
// full or the writer closed. Those bindings are still in the registrar's
// memory but not on disk; a refresh or the next change of the binding will
// write them again.
func (w *LocationWriter) Dropped() uint64 { return w.dropped.Load() }

// Stats returns the writer's counters.
func (w *LocationWriter) Stats() WriterStats {
	w.mu.Lock()
	last := w.lastErr
	w.mu.Unlock()
	return WriterStats{
		Queued:    len(w.q),
		Applied:   w.applied.Load(),
		Batches:   w.batches.Load(),
		MaxBatch:  int(w.maxBatch.Load()),
		Dropped:   w.dropped.Load(),
		Failed:    w.failed.Load(),
		Cleaned:   w.cleaned.Load(),
		LastError: last,
	}
}

func (w *LocationWriter) run() {
	defer close(w.exited)
	batch := make([]BindingOp, 0, w.opts.MaxBatch)
	var waiters []chan error
	var tick <-chan time.Time
	if w.opts.CleanupInterval > 0 {
		t := time.NewTicker(w.opts.CleanupInterval)
		defer t.Stop()
		tick = t.C
	}
	stopping := false
	var linger *time.Timer
	if w.opts.Linger > 0 {
		linger = time.NewTimer(time.Hour)
		linger.Stop()
		defer linger.Stop()
	}
	for {
		var it writerItem
		select {
		case it = <-w.q:
		case <-tick:
			w.cleanup()
			continue
		}
		// Take what else is waiting, without waiting for more: under load
		// the queue refills while a batch commits, so batches grow with the
		// load and an idle writer commits single operations at once.
	collect:
		for {
			if it.done != nil {
				waiters = append(waiters, it.done)
				stopping = stopping || it.stop
			} else {
				batch = append(batch, it.op)
			}
			if len(batch) == cap(batch) {
				break
			}
			select {
			case it = <-w.q:
			default:
				break collect
			}
		}
		// Then linger for more, unless a Flush or Close is waiting.
		if linger != nil && len(waiters) == 0 && len(batch) < cap(batch) {
			linger.Reset(w.opts.Linger)
		wait:
			for len(batch) < cap(batch) {
				select {
				case it = <-w.q:
					if it.done != nil {
						waiters = append(waiters, it.done)
						stopping = stopping || it.stop
						break wait
					}
					batch = append(batch, it.op)
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		w.commit(batch)
		clear(batch) // drop string references held by the backing array
		batch = batch[:0]
		if len(waiters) > 0 && (!stopping || len(w.q) == 0) {
			w.mu.Lock()
			err := w.errSinceFlush
			w.errSinceFlush = nil
			w.mu.Unlock()
			for _, d := range waiters {
				d <- err
			}
			waiters = waiters[:0]
		}
		if stopping && len(w.q) == 0 {
			return
		}
	}
}

// commit applies one batch, retrying a few times: the usual failure is
// SQLITE_BUSY when another process held the write lock past the busy
// timeout, which a later attempt survives.
func (w *LocationWriter) commit(batch []BindingOp) {
	if len(batch) == 0 {
		return
	}
	var err error
	delay := 50 * time.Millisecond
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(delay)
			delay *= 4
		}
		if err = w.b.ApplyBindings(context.Background(), batch); err == nil {
			w.applied.Add(uint64(len(batch)))
			w.batches.Add(1)
			if int64(len(batch)) > w.maxBatch.Load() {
				w.maxBatch.Store(int64(len(batch)))
			}
			return
		}
	}
	w.failed.Add(uint64(len(batch)))
	w.setErr(err)
	if w.opts.OnError != nil {
		w.opts.OnError(err, len(batch))
	}
}

func (w *LocationWriter) cleanup() {
	n, err := w.b.DeleteExpiredBindings(context.Background(), time.Now().Unix())
	if err != nil {
		w.setErr(err)
		return
	}
	w.cleaned.Add(uint64(n))
}

func (w *LocationWriter) setErr(err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	w.lastErr = err
	if w.errSinceFlush == nil {
		w.errSinceFlush = err
	}
	w.mu.Unlock()
}
