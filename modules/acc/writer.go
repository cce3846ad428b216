package acc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"switchboard/modules/internal/fieldtext"
	"switchboard/store"
)

// storeRetryWaits are the pauses after consecutive failed attempts to
// write to the store (the last one repeats), as fileRetryWaits are the
// file's: the records are kept meanwhile (storeSink), and each batch that
// comes waits for the pause as well.
var storeRetryWaits = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

// storeSink is what the writer keeps for the store. Used by the writer
// goroutine only.
//
// Records the store does not take (a database locked, restarting,
// unreachable) stay in pending, in order, and are written before any
// later record, after a pause (storeRetryWaits): an outage loses nothing
// until pending passes its bound (keepForStore). The records in pending
// have passed store.CheckCDR, so a database that takes writes takes them;
// one it refuses by a rule of its own is left out at the next attempt
// (storeCDRs).
type storeSink struct {
	pending []store.CDR

	failures     int       // consecutive failed attempts
	retryAt      time.Time // the next attempt after a failure
	lastErr      error     // the last failure's, for the records lost at Stop
	failedAtStop bool      // an attempt failed after Stop: the server is exiting, no other
}

// drop removes the first n records kept (written or given up).
func (st *storeSink) drop(n int) {
	m := copy(st.pending, st.pending[n:])
	clear(st.pending[m:]) // the records' strings go
	st.pending = st.pending[:m]
}

// storeTimeout bounds one attempt.
const storeTimeout = 10 * time.Second

// run is the writer goroutine. The first record of a batch waits
// acc.batch_wait for others; then what is queued is written, batch_size
// records at a time, each batch to the store in one transaction and to the
// file. Without the wait, at a few hundred calls a second each record
// arrives alone and costs an SQLite transaction of its own, more CPU than
// relaying its call (bench/results/dialog.md); the writer sleeps through
// the wait rather than waking for each record as it comes, so a batch
// costs it two wake-ups whatever its size. Stop ends the wait. While the
// store or the file keeps records it could not write, the writer also
// wakes to try them again (storeRetryWaits, fileRetryWaits), and goes on
// taking records off the queue meanwhile. run returns once Stop closed
// the queue and every record queued before was written (or given up,
// counted and logged).
func (a *Acc) run() {
	defer close(a.done)
	f := fileSink{log: a.log}
	var st storeSink
	defer a.showBacklog(&st, &f)
	defer a.stopFile(&f)
	defer a.stopStore(&st)
	batch := make([]*record, 0, a.batchSize)
	cdrs := make([]store.CDR, 0, a.batchSize)
	var text fieldtext.Fields // the records' strings, one copy a record
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		var r *record
		ok := true
		if at, kept := retryAt(&st, &f); !kept {
			r, ok = <-a.queue
		} else {
			retry.Reset(time.Until(at))
			select {
			case r, ok = <-a.queue:
				retry.Stop()
			case <-retry.C:
				a.flushStore(&st)
				a.flushFile(&f)
				a.showBacklog(&st, &f)
				continue
			}
		}
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		if d := time.Duration(a.batchWait.Load()); d > 0 {
			wait.Reset(d)
			select {
			case <-wait.C:
			case <-a.halt:
				wait.Stop()
			}
		}
		for {
			batch = a.take(batch)
			full := len(batch) == a.batchSize
			cdrs = cdrs[:0]
			for i, r := range batch {
				cdrs = append(cdrs, r.cdr(&text))
				a.release(r)
				batch[i] = nil
			}
			a.batches.Inc()
			a.write(cdrs, &st, &f)
			a.showBacklog(&st, &f)
			if !full {
				break
			}
			batch = batch[:0]
		}
	}
}

// take appends to batch what is queued, without waiting, until it holds
// batch_size records.
func (a *Acc) take(batch []*record) []*record {
	for len(batch) < a.batchSize {
		select {
		case r, ok := <-a.queue:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// retryAt tells when the writer must try a sink again without a batch
// coming: kept is false while neither keeps records.
func retryAt(st *storeSink, f *fileSink) (at time.Time, kept bool) {
	switch {
	case len(st.pending) > 0 && len(f.pending) > 0:
		if f.retryAt.Before(st.retryAt) {
			return f.retryAt, true
		}
		return st.retryAt, true
	case len(st.pending) > 0:
		return st.retryAt, true
	case len(f.pending) > 0:
		return f.retryAt, true
	}
	return time.Time{}, false
}

// write writes one batch to the sinks: the store first, so that the file
// has the records' IDs (those the store took at once; the file does not
// wait for a store that is failing). Each sink keeps what it cannot write
// for the next attempt.
func (a *Acc) write(cdrs []store.CDR, st *storeSink, f *fileSink) {
	a.flushStore(st) // what the store kept goes first: the records stay in order
	if a.toStore.Load() {
		a.writeStore(st, cdrs)
	}
	a.keepForFile(f, cdrs)
	a.flushFile(f)
}

// showBacklog sets the gauges of the records the sinks keep.
func (a *Acc) showBacklog(st *storeSink, f *fileSink) {
	a.backlog[sinkStore].Store(int64(len(st.pending)))
	a.backlog[sinkFile].Store(int64(len(f.pending)))
}

// keepForFile adds a batch to the records waiting for the file, at most
// queue_size + batch_size of them (as many as the queue and a batch
// hold): past that, records are given up, counted and logged.
func (a *Acc) keepForFile(f *fileSink, cdrs []store.CDR) {
	cfg := a.file.Load()
	if cfg == nil {
		return
	}
	room := max(0, a.queueSize+a.batchSize-len(f.pending))
	if len(cdrs) > room {
		a.loseFile(cdrs[room:], cfg.path,
			"acc: records not written to the file, more than it keeps to try again (acc.queue_size + acc.batch_size): given up")
		cdrs = cdrs[:room]
	}
	f.pending = append(f.pending, cdrs...)
}

// flushFile writes the records waiting for the file, unless the pause
// after a failure still runs (while stopping it is not waited for).
func (a *Acc) flushFile(f *fileSink) {
	cfg := a.file.Load()
	if cfg == nil { // acc.file unset by a reload
		if len(f.pending) > 0 {
			a.loseFile(f.pending, f.cfg.path, "acc: acc.file unset: records not yet written to the file given up")
			f.pending = f.pending[:0]
		}
		f.close()
		return
	}
	if len(f.pending) == 0 || (f.failures > 0 && time.Now().Before(f.retryAt) && !a.stopping()) {
		return
	}
	n, err := f.write(cfg)
	a.written[sinkFile].Add(n)
	if err == nil {
		f.failures = 0
		return
	}
	a.writeErr[sinkFile].Inc()
	pause := fileRetryWaits[min(f.failures, len(fileRetryWaits)-1)]
	f.failures++
	f.retryAt = time.Now().Add(pause)
	a.h.Warn("acc: records not written to the file, kept to try again", "file", cfg.path,
		"records", len(f.pending), "err", err, "in", pause.String())
}

// stopFile writes what the file still keeps, at Stop, once more, and
// says how many records were lost when that fails too.
func (a *Acc) stopFile(f *fileSink) {
	a.flushFile(f)
	if len(f.pending) > 0 {
		a.loseFile(f.pending, f.cfg.path, "acc: records not written to the file before the stop: lost")
		f.pending = f.pending[:0]
	}
	f.close()
}

// loseFile counts and logs records the file will not get.
func (a *Acc) loseFile(lost []store.CDR, path, msg string) {
	// Logged before counted: whoever sees the count (a test, a scrape
	// then a look at the log) finds the line that says which calls.
	a.log.Error(msg, "file", path, "records", len(lost), "call_ids", callIDs(lost))
	a.lost[sinkFile].Add(len(lost))
}

// writeStore writes a batch to the store in one transaction, or, while
// the store keeps records it could not write, behind them. Records the
// store does not take are kept for the next attempt (flushStore).
func (a *Acc) writeStore(st *storeSink, cdrs []store.CDR) {
	// A record the store would refuse would fail the whole batch: it is
	// left out on its own, loudly. The module's records always pass, so
	// the batch is copied only when one does not.
	ok, at := cdrs, []int(nil) // ok[j] is cdrs[at[j]]; at nil: ok is cdrs
	for i := range cdrs {
		err := store.CheckCDR(&cdrs[i])
		if err == nil {
			if at != nil {
				ok, at = append(ok, cdrs[i]), append(at, i)
			}
			continue
		}
		a.log.Error("acc: call record refused by the store", "err", err)
		a.lost[sinkStore].Inc()
		if at == nil {
			ok, at = make([]store.CDR, 0, len(cdrs)), make([]int, 0, len(cdrs))
			for j := range i {
				ok, at = append(ok, cdrs[j]), append(at, j)
			}
		}
	}
	if len(ok) == 0 {
		return
	}
	if len(st.pending) > 0 {
		// The store failed, or the pause after its failure runs: the
		// batch waits behind the records kept before it.
		a.keepForStore(st, ok)
		return
	}
	kept, err := a.storeCDRs(ok)
	for j, i := range at {
		cdrs[i].ID = ok[j].ID // for the file (ok is cdrs when at is nil)
	}
	if err != nil {
		a.keepForStore(st, kept)
		a.storeFailed(st, err)
	}
}

// flushStore writes the records the store kept, oldest first, batch_size
// in one transaction, unless the pause after a failure still runs. After
// Stop the pause is not waited for, and once an attempt failed there is
// no other: the server is exiting, and each attempt may wait out the
// store's timeouts.
func (a *Acc) flushStore(st *storeSink) {
	if len(st.pending) == 0 {
		return
	}
	if !a.toStore.Load() { // acc.store turned off by a reload
		a.loseStore(st.pending, "acc: acc.store turned off: records not yet written to the store given up")
		st.drop(len(st.pending))
		st.failures = 0
		return
	}
	if stopping := a.stopping(); st.failedAtStop || (!stopping && time.Now().Before(st.retryAt)) {
		return
	}
	for done := 0; done < len(st.pending); {
		end := min(len(st.pending), done+a.batchSize)
		kept, err := a.storeCDRs(st.pending[done:end]) // kept: the batch's last records
		if err != nil {
			st.drop(end - len(kept))
			a.storeFailed(st, err)
			return
		}
		done = end
	}
	st.drop(len(st.pending))
	st.failures = 0
}

// storeCDRs writes records to the store in one transaction and returns
// those it did not take: none, or after a failure the records from the
// first one not written on, without ids. A record the database refuses by
// a rule of its own (store.ErrCDRRefused: a trigger, a constraint
// CheckCDR does not know) fails the whole transaction and would fail
// every attempt: the records are then written one at a time, each refused
// one given up (counted, logged), until the store fails otherwise.
func (a *Acc) storeCDRs(cs []store.CDR) ([]store.CDR, error) {
	err := a.addCDRs(cs)
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, store.ErrCDRRefused) {
		return cs, err
	}
	for i := range cs {
		err := a.addCDRs(cs[i : i+1])
		switch {
		case err == nil:
		case errors.Is(err, store.ErrCDRRefused):
			a.log.Error("acc: call record refused by the store", "call_id", cs[i].CallID, "err", err)
			a.lost[sinkStore].Inc()
		default:
			return cs[i:], err
		}
	}
	return nil, nil
}

// addCDRs is one attempt to write records in one transaction.
func (a *Acc) addCDRs(cs []store.CDR) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	err := a.st.AddCDRs(ctx, cs)
	cancel()
	if err == nil {
		a.written[sinkStore].Add(len(cs))
		return nil
	}
	a.writeErr[sinkStore].Inc()
	// The ids the rolled-back transaction gave are not the records': the
	// store gives them again, and the file would show one twice.
	for i := range cs {
		cs[i].ID = 0
	}
	return err
}

// keepForStore adds records to those waiting for the store, at most
// queue_size + batch_size of them (as many as the queue and a batch
// hold, as the file keeps): past that, records are given up, counted and
// logged.
func (a *Acc) keepForStore(st *storeSink, cs []store.CDR) {
	room := max(0, a.queueSize+a.batchSize-len(st.pending))
	if len(cs) > room {
		a.loseStore(cs[room:],
			"acc: records not written to the store, more than it keeps to try again (acc.queue_size + acc.batch_size): given up")
		cs = cs[:room]
	}
	st.pending = append(st.pending, cs...)
}

// storeFailed sets the pause before the next attempt.
func (a *Acc) storeFailed(st *storeSink, err error) {
	st.lastErr = err
	if a.stopping() {
		st.failedAtStop = true
		return
	}
	pause := storeRetryWaits[min(st.failures, len(storeRetryWaits)-1)]
	st.failures++
	st.retryAt = time.Now().Add(pause)
	a.h.Warn("acc: records not written to the store, kept to try again", "records", len(st.pending), "err", err,
		"in", pause.String())
}

// stopStore writes what the store still keeps, at Stop, once more, and
// says how many records were lost when that fails too.
func (a *Acc) stopStore(st *storeSink) {
	a.flushStore(st)
	if len(st.pending) > 0 {
		a.loseStore(st.pending, "acc: records not written to the store before the stop: lost", "err", st.lastErr)
		st.drop(len(st.pending))
	}
}

// loseStore counts and logs records the store will not get.
func (a *Acc) loseStore(lost []store.CDR, msg string, args ...any) {
	a.log.Error(msg, append(args, "records", len(lost), "call_ids", callIDs(lost))...) // before counted, as in loseFile
	a.lost[sinkStore].Add(len(lost))
}

// stopping reports whether Stop was called.
func (a *Acc) stopping() bool {
	a.sendMu.RLock()
	defer a.sendMu.RUnlock()
	return a.closed
}

// callIDs lists the records' Call-IDs for a log line, the first
// maxLoggedCallIDs of them.
func callIDs(cs []store.CDR) string {
	ids := make([]string, 0, min(len(cs), maxLoggedCallIDs)+1)
	for i := range cs[:min(len(cs), maxLoggedCallIDs)] {
		ids = append(ids, cs[i].CallID)
	}
	if len(cs) > maxLoggedCallIDs {
		ids = append(ids, "(and "+strconv.Itoa(len(cs)-maxLoggedCallIDs)+" more)")
	}
	return strings.Join(ids, " ")
}

// maxLoggedCallIDs bounds a log line: the file keeps up to queue_size +
// batch_size records, a million and more.
const maxLoggedCallIDs = 1000
