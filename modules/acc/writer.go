package acc

import (
	"context"
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
// costs it two wake-ups whatever its size. Stop ends the wait. run returns
// once Stop closed the queue and every record queued before was written.
func (a *Acc) run() {
	defer close(a.done)
	var f fileSink
	defer f.close()
	batch := make([]*record, 0, a.batchSize)
	cdrs := make([]store.CDR, 0, a.batchSize)
	var text fieldtext.Fields // the records' strings, one copy a record
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	for r := range a.queue {
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
// has the records' IDs.
func (a *Acc) write(cdrs []store.CDR, f *fileSink) {
	if a.toStore.Load() {
		a.writeStore(cdrs)
	}
	cfg := a.file.Load()
	if cfg == nil {
		f.close()
		return
	}
	if err := f.write(cfg, cdrs); err != nil {
		f.close() // reopened for the next batch
		a.writeErr[sinkFile].Inc()
		a.lost[sinkFile].Add(len(cdrs))
		a.h.Warn("acc: records not written to the file", "file", cfg.path, "records", len(cdrs), "err", err)
		return
	}
	a.written[sinkFile].Add(len(cdrs))
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

func callIDs(cs []store.CDR) string {
	ids := make([]string, len(cs))
	for i := range cs {
		ids[i] = cs[i].CallID
	}
	return strings.Join(ids, " ")
}
