package acc

import (
	"context"
	"strconv"
	"strings"
	"time"

	"switchboard/modules/internal/fieldtext"
	"switchboard/store"
)

// retryWaits are the pauses between attempts to write a batch to the
// store; after the last one the batch is given up (counted, logged with
// its Call-IDs). While the module stops there is one attempt: the server
// is exiting.
var retryWaits = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}

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
// file keeps records it could not write, the writer also wakes to try
// them again (fileRetryWaits). run returns once Stop closed the queue and
// every record queued before was written (or given up, counted and
// logged).
func (a *Acc) run() {
	defer close(a.done)
	f := fileSink{log: a.log}
	defer a.stopFile(&f)
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
		if len(f.pending) == 0 {
			r, ok = <-a.queue
		} else {
			retry.Reset(time.Until(f.retryAt))
			select {
			case r, ok = <-a.queue:
				retry.Stop()
			case <-retry.C:
				a.flushFile(&f)
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
			a.write(cdrs, &f)
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

// write writes one batch to the sinks: the store first, so that the file
// has the records' IDs. The file keeps what it cannot write for the next
// attempt.
func (a *Acc) write(cdrs []store.CDR, f *fileSink) {
	if a.toStore.Load() {
		a.writeStore(cdrs)
	}
	a.keepForFile(f, cdrs)
	a.flushFile(f)
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
	a.lost[sinkFile].Add(len(lost))
	a.log.Error(msg, "file", path, "records", len(lost), "call_ids", callIDs(lost))
}

// writeStore writes a batch in one transaction, trying again after a
// failure (a database that went away) before giving it up.
func (a *Acc) writeStore(cdrs []store.CDR) {
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
		a.lost[sinkStore].Inc()
		a.log.Error("acc: call record refused by the store", "err", err)
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
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		err := a.st.AddCDRs(ctx, ok)
		cancel()
		if err == nil {
			a.written[sinkStore].Add(len(ok))
			for j, i := range at {
				cdrs[i].ID = ok[j].ID // for the file (ok is cdrs when at is nil)
			}
			return
		}
		a.writeErr[sinkStore].Inc()
		// The ids the rolled-back transaction gave are not the records':
		// the store gives them again, and the file would show one twice.
		for i := range ok {
			ok[i].ID = 0
		}
		if attempt == len(retryWaits) || a.stopping() {
			a.lost[sinkStore].Add(len(ok))
			a.log.Error("acc: call records not written to the store", "records", len(ok), "err", err,
				"call_ids", callIDs(ok))
			return
		}
		a.log.Warn("acc: store write failed, trying again", "records", len(ok), "err", err, "in", retryWaits[attempt].String())
		time.Sleep(retryWaits[attempt])
	}
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
