package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configure a LocationWriter. The zero value is usable.
type WriterOptions struct {
	// QueueSize bounds the operations waiting to be written (default 16384),
	// counting those reserved (Reserve) and not yet queued. When it is full
	// Reserve, Upsert, Delete and DeleteAOR refuse at once with
	// ErrQueueFull, never blocking the caller and never growing memory; an
	// operation queued with room reserved for it is never dropped.
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
	// batch that failed after retries. Its operations are lost (those of a
	// Commit are reported to its done function too).
	OnError func(err error, ops int)
}

// WriterStats are counters of a LocationWriter since it started.
type WriterStats struct {
	Queued    int    // operations waiting now
	Applied   uint64 // operations committed
	Batches   uint64 // transactions committed
	MaxBatch  int    // largest batch committed
	Dropped   uint64 // operations refused because the queue was full or the writer closed
	Refused   uint64 // reservations refused because the queue was full
	Failed    uint64 // operations lost because their batch failed after retries
	Cleaned   uint64 // expired bindings removed by the periodic cleanup
	LastError error  // last batch or cleanup failure, nil if none
}

type writerItem struct {
	op    BindingOp
	group *opGroup   // set by Commit; op is then unused
	done  chan error // set on Flush and Close markers; op is then unused
	stop  bool
}

// opGroup is the operations of one Commit, applied in one transaction, and
// the function told how that went.
type opGroup struct {
	ops  []BindingOp
	done func(error)
}

// LocationWriter persists registrar binding changes behind the caller:
// Upsert, Delete and DeleteAOR only copy the operation into a bounded
// channel (no allocation, no I/O, never waiting) and return; one goroutine
// applies queued operations in order, as many per transaction as are
// waiting (up to MaxBatch), so the commit cost is shared under load.
//
// A change made of several operations (one REGISTER) reserves room for all
// of them first (Reserve), so it is queued whole or refused whole and its
// operations are never dropped; Commit queues such a change with a function
// called once its transaction has committed (write-through).
type LocationWriter struct {
	b    Backend
	opts WriterOptions
	q    chan writerItem
	used atomic.Int64 // operations and markers queued or reserved

	closed atomic.Bool
	// Counters written by the writer goroutine; read by Stats.
	applied, batches, dropped, failed, cleaned, refused atomic.Uint64
	maxBatch                                            atomic.Int64
	mu                                                  sync.Mutex
	lastErr                                             error
	errSinceFlush                                       error // reported by the next Flush

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
	res, err := w.Reserve(1)
	if err != nil {
		w.dropped.Add(1)
		return err
	}
	res.send(writerItem{op: op}, 1)
	return nil
}

// Reservation is room in the queue claimed by Reserve for the operations
// of one change. Its Queue and Commit never block and never drop; Release
// gives back what was not used. It is a value: keep it on the stack.
type Reservation struct {
	w *LocationWriter
	n int
}

// Reserve claims room for n operations, so that a change of several
// operations is queued whole or not at all: ErrQueueFull when the queue has
// not that much room now (nothing is claimed; the caller refuses the change
// and changes nothing), ErrWriterClosed after Close. It never blocks and
// does not allocate.
func (w *LocationWriter) Reserve(n int) (Reservation, error) {
	if w.closed.Load() {
		return Reservation{}, ErrWriterClosed
	}
	for {
		u := w.used.Load()
		if u+int64(n) > int64(w.opts.QueueSize) {
			w.refused.Add(1)
			return Reservation{}, ErrQueueFull
		}
		if w.used.CompareAndSwap(u, u+int64(n)) {
			return Reservation{w: w, n: n}, nil
		}
	}
}

// ReserveWait is Reserve that waits up to timeout for room, for callers off
// the event loop (the management API) whose change must not be refused.
func (w *LocationWriter) ReserveWait(n int, timeout time.Duration) (Reservation, error) {
	if n > w.opts.QueueSize {
		n = w.opts.QueueSize // more than the queue: wait for it empty
	}
	deadline := time.Now().Add(timeout)
	for {
		res, err := w.Reserve(n)
		if err != ErrQueueFull || time.Now().After(deadline) {
			return res, err
		}
		select {
		case <-w.exited:
			return Reservation{}, ErrWriterClosed
		case <-time.After(time.Millisecond):
		}
	}
}

// Left is how many reserved operations are still unused.
func (r *Reservation) Left() int { return r.n }

// Queue queues op with the reserved room: ErrQueueFull when none is left
// (a caller's counting error), or a malformed-binding error. It never
// blocks.
func (r *Reservation) Queue(op BindingOp) error {
	if err := checkBinding(&op); err != nil {
		return err
	}
	if r.n < 1 {
		return ErrQueueFull
	}
	r.send(writerItem{op: op}, 1)
	return nil
}

// Commit queues ops as one change, applied in one transaction, and calls
// done from the writer goroutine once that transaction committed (nil) or
// failed after retries (the error). The writer owns ops after the call.
// The ops are checked first: on an error nothing is queued and done is not
// called.
func (r *Reservation) Commit(ops []BindingOp, done func(error)) error {
	for i := range ops {
		if err := checkBinding(&ops[i]); err != nil {
			return err
		}
	}
	if r.n < len(ops) {
		return ErrQueueFull
	}
	r.send(writerItem{group: &opGroup{ops: ops, done: done}}, len(ops))
	return nil
}

// Release gives back the reserved room not used.
func (r *Reservation) Release() {
	if r.n > 0 && r.w != nil {
		r.w.used.Add(-int64(r.n))
	}
	r.n = 0
}

// send puts it on the channel, using k units of the reservation. The
// channel holds QueueSize items and every item queued or waiting holds at
// least one unit, so the send never blocks.
func (r *Reservation) send(it writerItem, k int) {
	r.n -= k
	r.w.q <- it
}

// Flush waits until every operation queued before it is committed (or has
// failed) and returns the first failure since the previous Flush. It blocks,
// so it is for shutdown, tests and tools, not for the event loop.
func (w *LocationWriter) Flush() error {
	if w.closed.Load() {
		return ErrWriterClosed
	}
	res, err := w.ReserveWait(1, time.Hour)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	res.send(writerItem{done: done}, 1)
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
		// The marker takes room like an operation (waiting for the
		// writer to drain a full queue), so that no reserved send can
		// find the channel full.
		for {
			u := w.used.Load()
			if u < int64(w.opts.QueueSize) && w.used.CompareAndSwap(u, u+1) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		w.closed.Store(true)
		done := make(chan error, 1)
		w.q <- writerItem{done: done, stop: true}
		w.closeErr = <-done
		<-w.exited
	})
	return w.closeErr
}

// Dropped returns how many operations Upsert, Delete and DeleteAOR refused
// because the queue was full or the writer closed. (The registrar reserves
// room instead and refuses the REGISTER when there is none.)
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
		Refused:   w.refused.Load(),
		Failed:    w.failed.Load(),
		Cleaned:   w.cleaned.Load(),
		LastError: last,
	}
}

func (w *LocationWriter) run() {
	defer close(w.exited)
	var b batch
	b.ops = make([]BindingOp, 0, w.opts.MaxBatch)
	var tick <-chan time.Time
	if w.opts.CleanupInterval > 0 {
		t := time.NewTicker(w.opts.CleanupInterval)
		defer t.Stop()
		tick = t.C
	}
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
		b.add(w, it)
	collect:
		for !b.full(w) {
			select {
			case it = <-w.q:
				b.add(w, it)
			default:
				break collect
			}
		}
		// Then linger for more, unless a Flush or Close is waiting.
		if linger != nil && len(b.waiters) == 0 && !b.full(w) {
			linger.Reset(w.opts.Linger)
		wait:
			for !b.full(w) {
				select {
				case it = <-w.q:
					b.add(w, it)
					if it.done != nil {
						break wait
					}
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		err := w.commit(b.ops)
		for _, g := range b.groups {
			g.done(err)
		}
		if len(b.waiters) > 0 && (!b.stopping || len(w.q) == 0) {
			w.mu.Lock()
			err := w.errSinceFlush
			w.errSinceFlush = nil
			w.mu.Unlock()
			for _, d := range b.waiters {
				d <- err
			}
			b.waiters = b.waiters[:0]
		}
		b.reset()
		if b.stopping && len(w.q) == 0 {
			return
		}
	}
}

// batch is what the writer gathered for one transaction.
type batch struct {
	ops      []BindingOp
	groups   []*opGroup   // Commits in ops, told the outcome
	waiters  []chan error // Flush and Close markers
	stopping bool
}

// add takes one item off the queue and gives back its room.
func (b *batch) add(w *LocationWriter, it writerItem) {
	switch {
	case it.done != nil:
		b.waiters = append(b.waiters, it.done)
		b.stopping = b.stopping || it.stop
		w.used.Add(-1)
	case it.group != nil:
		// A Commit's operations stay together, even past MaxBatch.
		b.ops = append(b.ops, it.group.ops...)
		b.groups = append(b.groups, it.group)
		w.used.Add(-int64(len(it.group.ops)))
	default:
		b.ops = append(b.ops, it.op)
		w.used.Add(-1)
	}
}

func (b *batch) full(w *LocationWriter) bool { return len(b.ops) >= w.opts.MaxBatch }

func (b *batch) reset() {
	clear(b.ops) // drop string references held by the backing array
	b.ops = b.ops[:0]
	clear(b.groups)
	b.groups = b.groups[:0]
}

// commit applies one batch, retrying a few times: the usual failure is
// SQLITE_BUSY when another process held the write lock past the busy
// timeout, which a later attempt survives. It returns the last failure.
func (w *LocationWriter) commit(batch []BindingOp) error {
	if len(batch) == 0 {
		return nil
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
			return nil
		}
	}
	w.failed.Add(uint64(len(batch)))
	w.setErr(err)
	if w.opts.OnError != nil {
		w.opts.OnError(err, len(batch))
	}
	return err
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
