package tablepoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// rowsTable is a Snapshot's table in the tests: the rows it was built
// from and the table it replaced.
type rowsTable struct {
	rows    int
	version int64
	prev    *rowsTable
}

type fakeStore struct {
	mu      sync.Mutex
	rows    int
	version int64
	fail    error
}

func (f *fakeStore) Version(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version, f.fail
}

func (f *fakeStore) build(_ context.Context, prev *rowsTable, limit int64) (*rowsTable, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, 0, f.fail
	}
	if int64(f.rows) > limit {
		return nil, 0, fmt.Errorf("%d rows, more than the limit (%d)", f.rows, limit)
	}
	return &rowsTable{rows: f.rows, version: f.version, prev: prev}, f.version, nil
}

func (f *fakeStore) set(rows int, version int64, fail error) {
	f.mu.Lock()
	f.rows, f.version, f.fail = rows, version, fail
	f.mu.Unlock()
}

func newTestSnapshot(t *testing.T, st *fakeStore, limit int64) (*Snapshot[rowsTable], *metrics.Set, *bytes.Buffer) {
	set := metrics.NewSet()
	var log bytes.Buffer
	s := NewSnapshot(SnapshotSpec[rowsTable]{
		Module: "things", Table: "table", Items: "the things",
		Log: slog.New(slog.NewTextHandler(&log, nil)), Metrics: set,
		Version: st.Version, Build: st.build,
		Loaded: func(t *rowsTable) []any { return []any{"things", t.rows} },
	}, &rowsTable{}, 5*time.Millisecond, limit)
	t.Cleanup(s.Stop)
	return s, set, &log
}

// TestSnapshotLoad: a load swaps the table whole and counts; a failed one
// keeps the table in use, counts and says so.
func TestSnapshotLoad(t *testing.T) {
	st := &fakeStore{rows: 3, version: 7}
	s, set, log := newTestSnapshot(t, st, 10)
	empty := s.Current()
	if v, err := s.Load(context.Background()); err != nil || v != 7 {
		t.Fatalf("load: %d, %v", v, err)
	}
	cur := s.Current()
	if cur.rows != 3 || cur.prev != empty {
		t.Fatalf("table %+v: want 3 rows built beside the empty table", cur)
	}
	st.set(4, 8, errors.New("database is locked"))
	if _, err := s.Load(context.Background()); err == nil || s.Current() != cur {
		t.Fatalf("a failed load: %v, table %+v", err, s.Current())
	}
	if r, e := set.GetOrCreateCounter("switchboard_things_reloads_total").Get(), set.GetOrCreateCounter("switchboard_things_reload_errors_total").Get(); r != 1 || e != 1 {
		t.Fatalf("%d reloads, %d errors", r, e)
	}
	for _, want := range []string{"things: table loaded", "things=3", "things: loading the table failed; the things in use stay", "database is locked"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestSnapshotReload: a changed interval needs no load; a lower limit the
// table is over keeps the table and the old settings; a limit it fits
// loads it again.
func TestSnapshotReload(t *testing.T) {
	st := &fakeStore{rows: 5, version: 1}
	s, _, _ := newTestSnapshot(t, st, 10)
	if _, err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	cur := s.Current()
	if err := s.Reload(time.Second, 10); err != nil || s.Current() != cur {
		t.Fatalf("interval only: %v, reloaded %v", err, s.Current() != cur)
	}
	if err := s.Reload(2*time.Second, 4); err == nil || s.Current() != cur || s.Limit() != 10 || s.interval.Load() != int64(time.Second) {
		t.Fatalf("limit 4 under 5 rows: %v, limit %d, interval %v", err, s.Limit(), time.Duration(s.interval.Load()))
	}
	if err := s.Reload(2*time.Second, 5); err != nil || s.Current() == cur || s.Limit() != 5 {
		t.Fatalf("limit 5: %v, limit %d", err, s.Limit())
	}
}

// TestSnapshotCheckReload: a limit the table in the store is over is
// refused before anything changes, one it fits passes, and neither swaps
// a table in nor changes the limit (Reload does, once every module's
// check passed).
func TestSnapshotCheckReload(t *testing.T) {
	st := &fakeStore{rows: 5, version: 1}
	s, _, _ := newTestSnapshot(t, st, 10)
	if _, err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	cur := s.Current()
	if err := s.CheckReload(4); err == nil {
		t.Error("limit 4 under 5 rows passed the check")
	}
	if err := s.CheckReload(5); err != nil {
		t.Errorf("limit 5 over 5 rows: %v", err)
	}
	if s.Current() != cur || s.Limit() != 10 {
		t.Errorf("a check changed the table (%v) or the limit (%d)", s.Current() != cur, s.Limit())
	}
}

// TestSnapshotPolls: once started, a write in the store (its version
// moves) is loaded within the interval.
func TestSnapshotPolls(t *testing.T) {
	st := &fakeStore{rows: 1, version: 1}
	s, _, _ := newTestSnapshot(t, st, 10)
	if _, err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Start()
	st.set(2, 2, nil)
	for deadline := time.Now().Add(2 * time.Second); s.Current().rows != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the new version was not loaded")
		}
	}
}
