package acc

import (
	"bytes"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/store"
)

// Outages of the store, made with the real SQLite database: another
// connection holds its write lock (BEGIN IMMEDIATE, as a backup or the
// CLI does) past the store's busy timeout, so every write fails with
// SQLITE_BUSY until it lets go.

// shortStoreWaits shortens the pauses between the store's attempts for
// the test.
func shortStoreWaits(t *testing.T) {
	saved := storeRetryWaits
	storeRetryWaits = []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond}
	t.Cleanup(func() { storeRetryWaits = saved })
}

// busyStore is a store whose writes give up after 100 ms of waiting for
// the lock.
var busyStore = store.Options{BusyTimeout: 100 * time.Millisecond}

// rawDB opens the store's database file as another process would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// lockStore makes another connection hold the database's write lock until
// unlock is called.
func (e *env) lockStore(t *testing.T) (unlock func()) {
	t.Helper()
	db := rawDB(t, filepath.Join(e.dir, store.DefaultFileName))
	conn, err := db.Conn(t0ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t0ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	done := false
	unlock = func() {
		if !done {
			done = true
			conn.ExecContext(t0ctx, "ROLLBACK")
			conn.Close()
		}
	}
	t.Cleanup(unlock)
	return unlock
}

// metric returns the value of a metric of the module's set ("" when it
// is not there).
func (e *env) metric(name string) string {
	var b bytes.Buffer
	e.set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// wantInOrder fails unless the records prefix-0 ... prefix-<n-1> are each
// in the acc table once, their ids increasing in that order, after after.
func (e *env) wantInOrder(t *testing.T, prefix string, n int, after int64) {
	t.Helper()
	last := after
	for i := range n {
		r := e.only(false, prefix+"-"+strconv.Itoa(i))
		if r.ID <= last {
			t.Errorf("%s has id %d, after %d: not in order", r.CallID, r.ID, last)
		}
		last = r.ID
	}
}

// TestStoreOutageKeepsRecords: a store that refuses every write for
// longer than the writer's first three pauses (the lock held for a
// second, each attempt failing after 100 ms) loses nothing: the records
// keep being taken off the queue and go to the file meanwhile (without
// ids, the store having given none), are kept for the store in order,
// the backlog shown in switchboard_acc_backlog{sink="store"}, and are all
// written, in order, once the lock is released.
func TestStoreOutageKeepsRecords(t *testing.T) {
	shortStoreWaits(t)
	s := DefaultSettings()
	s.BatchWait, s.File = 0, filepath.Join(t.TempDir(), "cdr.csv")
	e := newEnvStore(t, s, true, busyStore)
	e.failedCalls("before", 1, true)
	e.waitWritten(1)
	first := e.only(false, "before-0").ID

	unlock := e.lockStore(t)
	locked := time.Now()
	e.failedCalls("out", 10, true)
	waitFor(t, "the file to have the records", func() bool { return e.a.written[sinkFile].Get() == 11 })
	for time.Since(locked) < time.Second {
		if lost := e.a.lost[sinkStore].Get(); lost != 0 {
			t.Fatalf("%d records given up %s into the outage (%d failed attempts)", lost, time.Since(locked), e.a.writeErr[sinkStore].Get())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lost := e.a.lost[sinkStore].Get(); lost != 0 {
		t.Fatalf("%d records given up during the outage", lost)
	}
	if e.a.writeErr[sinkStore].Get() < 4 {
		t.Fatalf("%d failed attempts in a second", e.a.writeErr[sinkStore].Get())
	}
	waitFor(t, `switchboard_acc_backlog{sink="store"} 10`, func() bool {
		return e.metric(`switchboard_acc_backlog{sink="store"}`) == "10"
	})
	unlock()
	e.waitWritten(11)
	if lost := e.a.lost[sinkStore].Get(); lost != 0 {
		t.Fatalf("%d lost", lost)
	}
	e.wantInOrder(t, "out", 10, first)
	waitFor(t, "the backlog gauge back to 0", func() bool { return e.metric(`switchboard_acc_backlog{sink="store"}`) == "0" })
	seen := fileCallIDs(t, s.File, "csv")
	wantOnce(t, seen, "out", 10)
	for _, rec := range readRecords(t, s.File, "csv")[1:] {
		if strings.HasPrefix(rec[1], "out-") && rec[0] != "" {
			t.Errorf("%s has id %q in the file, written before the store took it", rec[1], rec[0])
		}
	}
}

// TestStoreBacklogBounded: the store keeps at most queue_size +
// batch_size records (here 2 + 1); the records past that are given up,
// counted and logged with their Call-IDs, while the kept ones are
// written, in order, when the store is back.
func TestStoreBacklogBounded(t *testing.T) {
	shortStoreWaits(t)
	s := DefaultSettings()
	s.BatchWait, s.QueueSize, s.BatchSize = 0, 2, 1
	e := newEnvStore(t, s, true, busyStore)
	unlock := e.lockStore(t)
	e.failedCalls("kept", 3, true)
	e.failedCalls("over", 2, true)
	waitFor(t, "two given up", func() bool { return e.a.lost[sinkStore].Get() == 2 })
	if l := e.logs.String(); !strings.Contains(l, "over-0") || !strings.Contains(l, "over-1") {
		t.Fatalf("the records given up are not logged: %s", l)
	}
	unlock()
	e.waitWritten(3)
	e.wantInOrder(t, "kept", 3, 0)
	time.Sleep(50 * time.Millisecond)
	if e.a.lost[sinkStore].Get() != 2 || e.a.written[sinkStore].Get() != 3 || len(e.records(false, "over-0")) != 0 {
		t.Fatalf("lost %d, written %d", e.a.lost[sinkStore].Get(), e.a.written[sinkStore].Get())
	}
}

// TestStopWritesStoreBacklog: Stop (SIGTERM) tries the records the store
// kept once more, without waiting out the pause: written when the store
// takes them; otherwise counted lost and logged with their Call-IDs.
func TestStopWritesStoreBacklog(t *testing.T) {
	for _, back := range []bool{true, false} {
		shortStoreWaits(t)
		s := DefaultSettings()
		s.BatchWait = 0
		e := newEnvStore(t, s, true, busyStore)
		unlock := e.lockStore(t)
		e.failedCalls("stop", 3, true)
		waitFor(t, "a failed write", func() bool { return e.a.writeErr[sinkStore].Get() >= 1 })
		if back {
			unlock()
		}
		e.a.Stop()
		if back {
			if e.a.written[sinkStore].Get() != 3 || e.a.lost[sinkStore].Get() != 0 {
				t.Fatalf("written %d, lost %d at Stop", e.a.written[sinkStore].Get(), e.a.lost[sinkStore].Get())
			}
			e.wantInOrder(t, "stop", 3, 0)
			continue
		}
		if e.a.lost[sinkStore].Get() != 3 {
			t.Fatalf("lost %d at Stop, want 3", e.a.lost[sinkStore].Get())
		}
		if l := e.logs.String(); !strings.Contains(l, "records=3") || !strings.Contains(l, "stop-2") {
			t.Fatalf("no line saying what was lost at Stop: %s", l)
		}
	}
}

// TestStoreRefusedRowLeftOut: a record the database refuses by a rule of
// its own (a trigger an operator added) does not hold up the others
// kept with it: when the store is back, the batch it fails is written
// record by record, the refused one given up, counted and logged, the
// others written in order.
func TestStoreRefusedRowLeftOut(t *testing.T) {
	shortStoreWaits(t)
	s := DefaultSettings()
	s.BatchWait = 0
	e := newEnvStore(t, s, true, busyStore)
	db := rawDB(t, filepath.Join(e.dir, store.DefaultFileName))
	if _, err := db.Exec(`CREATE TRIGGER refuse_row BEFORE INSERT ON acc_data WHEN NEW.call_id = 'row-1'
		BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	unlock := e.lockStore(t)
	e.failedCalls("row", 4, true)
	waitFor(t, "a failed write", func() bool { return e.a.writeErr[sinkStore].Get() >= 1 })
	unlock()
	waitFor(t, "the others written", func() bool { return e.a.written[sinkStore].Get() == 3 })
	if e.a.lost[sinkStore].Get() != 1 || len(e.records(false, "row-1")) != 0 {
		t.Fatalf("lost %d", e.a.lost[sinkStore].Get())
	}
	var last int64
	for _, id := range []string{"row-0", "row-2", "row-3"} {
		r := e.only(false, id)
		if r.ID <= last {
			t.Errorf("%s: id %d after %d", id, r.ID, last)
		}
		last = r.ID
	}
	if l := e.logs.String(); !strings.Contains(l, "refused by the store") || !strings.Contains(l, "row-1") {
		t.Fatalf("the refused record is not logged: %s", l)
	}
	// The queue goes on.
	e.failedCalls("next", 1, true)
	e.waitWritten(4)
}
