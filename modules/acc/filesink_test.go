package acc

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"switchboard/store"
)

// Failures of the file sink, made with the real file system: a write
// past RLIMIT_FSIZE (a short write, then EFBIG, as on a full disk), a
// file removed under the writer, a directory removed (every open fails).

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// failedCalls makes n calls answered 486, each a record, named
// prefix-0 ... prefix-<n-1>, each taken off the queue by the writer before
// the next (when it runs).
func (e *env) failedCalls(prefix string, n int, waitQueue bool) {
	e.t.Helper()
	for i := range n {
		c := e.invite(prefix + "-" + strconv.Itoa(i))
		c.respond(486, "", "b")
		for waitQueue && len(e.a.queue) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// fileCallIDs reads the sink's file and counts its records by Call-ID.
// Every line must be whole: the file ends with a newline and each line
// reads back (readRecords fails the test on one that does not).
func fileCallIDs(t *testing.T, path, format string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s ends with half a line: %q", path, b[max(0, bytes.LastIndexByte(b, '\n')+1):])
	}
	seen := map[string]int{}
	for i, rec := range readRecords(t, path, format) {
		if format == "csv" && i == 0 {
			if strings.Join(rec, ",") != strings.Join(csvHeader, ",") {
				t.Fatalf("%s: first line %v", path, rec)
			}
			continue
		}
		seen[rec[1]]++
	}
	return seen
}

// wantOnce fails unless each of prefix-0 ... prefix-<n-1> is in seen once.
func wantOnce(t *testing.T, seen map[string]int, prefix string, n int) {
	t.Helper()
	for i := range n {
		if id := prefix + "-" + strconv.Itoa(i); seen[id] != 1 {
			t.Errorf("%s is in the file %d times, want once (file: %v)", id, seen[id], seen)
		}
	}
}

// TestFileShortWrite: a write the file system cuts short (the file size
// limit, as a full disk does) leaves no half line in the file: the
// records whose lines were written whole count as written, the others
// are kept and written once the file takes them again, each once.
func TestFileShortWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cdr.json")
	// The file starts with 1 MiB of lines, so that the limit set below
	// stops it and not the store's files, which are smaller.
	pre := bytes.Repeat([]byte(`{"call_id":"pre"}`+"\n"), (1<<20)/18)
	if err := os.WriteFile(path, pre, 0o640); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Store, s.File, s.Format = false, path, "json"
	e := newEnv(t, s, false)
	e.failedCalls("short", 5, false)
	if len(e.a.queue) != 5 {
		t.Fatalf("%d queued", len(e.a.queue))
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	restore := func() { syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) }
	t.Cleanup(restore)
	// Room for the first line and part of the second: the batch of five
	// is written short (the rest refused with EFBIG).
	lim := syscall.Rlimit{Cur: uint64(len(pre)) + 500, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if err := e.mods.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed write", func() bool { return e.a.writeErr[sinkFile].Get() >= 1 })
	seen := fileCallIDs(t, path, "json")
	if seen["short-0"] != 1 || e.a.written[sinkFile].Get() != 1 || e.a.lost[sinkFile].Get() != 0 {
		t.Fatalf("after the short write: file %v, written %d, lost %d; want short-0 written, none lost",
			seen, e.a.written[sinkFile].Get(), e.a.lost[sinkFile].Get())
	}
	restore()
	waitFor(t, "the kept records written", func() bool { return e.a.written[sinkFile].Get() == 5 })
	seen = fileCallIDs(t, path, "json")
	wantOnce(t, seen, "short", 5)
	if seen["pre"] != len(pre)/18 || e.a.lost[sinkFile].Get() != 0 {
		t.Fatalf("%d lines before, lost %d", seen["pre"], e.a.lost[sinkFile].Get())
	}
}

// TestFileRemoved: a file removed under the writer (by hand, or by a
// rotation that does not tell the server) is made again at the next
// batch, not written to unseen; while its directory is gone (every open
// fails) the records are kept and written once it is back, none twice.
func TestFileRemoved(t *testing.T) {
	sub := filepath.Join(t.TempDir(), "acc")
	if err := os.Mkdir(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "cdr.csv")
	s := DefaultSettings()
	s.File, s.BatchWait = path, 0
	e := newEnv(t, s, true)
	e.failedCalls("one", 1, true)
	waitFor(t, "the first record", func() bool { return e.a.written[sinkFile].Get() == 1 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	e.failedCalls("two", 1, true)
	waitFor(t, "the second record", func() bool { return e.a.written[sinkFile].Get() == 2 })
	if seen := fileCallIDs(t, path, "csv"); len(seen) != 1 || seen["two-0"] != 1 {
		t.Fatalf("after the file was removed: %v, want the second record", seen)
	}
	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	e.failedCalls("three", 3, true)
	waitFor(t, "a failed open", func() bool { return e.a.writeErr[sinkFile].Get() >= 1 })
	if e.a.lost[sinkFile].Get() != 0 {
		t.Fatalf("lost %d while the directory is gone, want them kept", e.a.lost[sinkFile].Get())
	}
	if err := os.Mkdir(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kept records", func() bool { return e.a.written[sinkFile].Get() == 5 })
	wantOnce(t, fileCallIDs(t, path, "csv"), "three", 3)
	if e.a.lost[sinkFile].Get() != 0 || e.a.written[sinkStore].Get() != 5 {
		t.Fatalf("lost %d, store %d", e.a.lost[sinkFile].Get(), e.a.written[sinkStore].Get())
	}
}

// TestFileBacklogBounded: records the file cannot take are kept up to
// queue_size + batch_size; past that they are given up, counted and
// logged with how many; the kept ones are written when the file is back.
func TestFileBacklogBounded(t *testing.T) {
	sub := filepath.Join(t.TempDir(), "acc")
	path := filepath.Join(sub, "cdr.csv") // no directory: every open fails
	s := DefaultSettings()
	s.Store, s.File, s.BatchWait, s.QueueSize, s.BatchSize = false, path, 0, 2, 1
	e := newEnv(t, s, true)
	e.failedCalls("kept", 3, true)
	e.failedCalls("over", 2, true)
	waitFor(t, "two given up", func() bool { return e.a.lost[sinkFile].Get() == 2 })
	if l := e.logs.String(); !strings.Contains(l, "records=1") || !strings.Contains(l, "over-1") {
		t.Fatalf("no line about the records given up: %s", l)
	}
	if err := os.Mkdir(sub, 0o750); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kept records", func() bool { return e.a.written[sinkFile].Get() == 3 })
	seen := fileCallIDs(t, path, "csv")
	wantOnce(t, seen, "kept", 3)
	if len(seen) != 3 || e.a.lost[sinkFile].Get() != 2 {
		t.Fatalf("file %v, lost %d", seen, e.a.lost[sinkFile].Get())
	}
}

// TestStopWritesFileBacklog: Stop (SIGTERM) tries the kept records once
// more, without waiting out the backoff: written when the file takes
// them; otherwise counted lost and logged with how many.
func TestStopWritesFileBacklog(t *testing.T) {
	for _, back := range []bool{true, false} {
		sub := filepath.Join(t.TempDir(), "acc")
		path := filepath.Join(sub, "cdr.csv")
		s := DefaultSettings()
		s.Store, s.File, s.BatchWait = false, path, 0
		e := newEnv(t, s, true)
		e.failedCalls("stop", 3, true)
		waitFor(t, "a failed open", func() bool { return e.a.writeErr[sinkFile].Get() >= 1 })
		if back {
			if err := os.Mkdir(sub, 0o750); err != nil {
				t.Fatal(err)
			}
		}
		e.a.Stop()
		if back {
			if e.a.written[sinkFile].Get() != 3 || e.a.lost[sinkFile].Get() != 0 {
				t.Fatalf("written %d, lost %d at Stop", e.a.written[sinkFile].Get(), e.a.lost[sinkFile].Get())
			}
			wantOnce(t, fileCallIDs(t, path, "csv"), "stop", 3)
			continue
		}
		if e.a.lost[sinkFile].Get() != 3 {
			t.Fatalf("lost %d at Stop, want 3", e.a.lost[sinkFile].Get())
		}
		if l := e.logs.String(); !strings.Contains(l, "records=3") || !strings.Contains(l, "stop-2") {
			t.Fatalf("no line saying how many were lost at Stop: %s", l)
		}
	}
}

// TestStoreFailureLeavesNoID: a batch whose transaction fails half-way
// (its acc row inserted, then its missed_calls row failed by a trigger
// that fails whatever the row: the database's fault, not the record's,
// as a disk full would be) is kept for
// the next attempt, and neither the records handed to the file nor those
// kept carry the ids of the rolled-back transaction, which the store
// gives again to the next records; written later, they get ids of their
// own.
func TestStoreFailureLeavesNoID(t *testing.T) {
	e := newEnv(t, nil, false)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, store.DefaultFileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER broken BEFORE INSERT ON missed_calls_data BEGIN SELECT json('not json'); END`); err != nil {
		t.Fatal(err)
	}
	rec := func(callID string, missed bool) store.CDR {
		return store.CDR{CallID: callID, Missed: missed, Start: 1_700_000_000_000, End: 1_700_000_001_000, Code: 486}
	}
	var st storeSink
	batch := []store.CDR{rec("first", false), rec("second", true)}
	e.a.writeStore(&st, batch)
	if e.a.lost[sinkStore].Get() != 0 || len(st.pending) != 2 || e.a.writeErr[sinkStore].Get() != 1 {
		t.Fatalf("lost %d, kept %d, errors %d; want 0, 2, 1", e.a.lost[sinkStore].Get(), len(st.pending), e.a.writeErr[sinkStore].Get())
	}
	if batch[0].ID != 0 || batch[1].ID != 0 || st.pending[0].ID != 0 {
		t.Fatalf("records not written have ids %d, %d (kept: %d)", batch[0].ID, batch[1].ID, st.pending[0].ID)
	}
	if _, err := db.Exec(`DROP TRIGGER broken`); err != nil {
		t.Fatal(err)
	}
	st.retryAt = time.Time{}
	next := []store.CDR{rec("next", false)}
	e.a.writeStore(&st, next) // behind the kept records: not tried yet
	e.a.flushStore(&st)
	if len(st.pending) != 0 || e.a.written[sinkStore].Get() != 3 {
		t.Fatalf("kept %d, written %d: %s", len(st.pending), e.a.written[sinkStore].Get(), e.logs.String())
	}
	// acc and missed_calls number their rows apart.
	if first, next := e.only(false, "first").ID, e.only(false, "next").ID; first == 0 || next <= first {
		t.Fatalf("ids %d, %d in acc: not in order", first, next)
	}
	e.only(true, "second")
}

// TestFileHalfLineAtOpen: a file that ends with half a line when the sink
// opens it (a crash in the middle of a write) is cut back to its last
// whole line, logged, so that the next record does not continue it.
func TestFileHalfLineAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdr.json")
	if err := os.WriteFile(path, []byte(`{"call_id":"whole"}`+"\n"+`{"call_id":"ha`), 0o640); err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.Store, s.File, s.Format, s.BatchWait = false, path, "json", 0
	e := newEnv(t, s, true)
	e.failedCalls("after", 1, true)
	waitFor(t, "the record", func() bool { return e.a.written[sinkFile].Get() == 1 })
	seen := fileCallIDs(t, path, "json")
	if len(seen) != 2 || seen["whole"] != 1 || seen["after-0"] != 1 {
		t.Fatalf("file %v", seen)
	}
	if !strings.Contains(e.logs.String(), "half a line") {
		t.Fatalf("not logged: %s", e.logs.String())
	}
}
