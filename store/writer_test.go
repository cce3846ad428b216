package store

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func binding(aor, contact string, expires int64) Binding {
	return Binding{
		AOR: aor, Contact: contact, Received: "udp:198.51.100.7:5062", Path: "<sip:edge.example.com;lr>",
		Q: 500, Expires: expires, CallID: "cid-" + contact, CSeq: 7, UserAgent: "ua/1.0",
		Socket: "udp:127.0.0.1:5060", Flags: 3,
	}
}

func loadMap(t *testing.T, s *Store, now time.Time) map[string]Binding {
	t.Helper()
	bs, _, err := s.LoadBindings(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]Binding, len(bs))
	for _, b := range bs {
		m[b.AOR+" "+b.Key()] = b
	}
	return m
}

func TestWriterUpsertSemantics(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := s.NewLocationWriter(WriterOptions{})
		defer w.Close()
		exp := time.Now().Add(time.Hour).Unix()

		b1 := binding("alice@example.com", "sip:alice@198.51.100.7:5062", exp)
		b1.LastModified = 1234
		must(t, w.Upsert(b1))
		must(t, w.Upsert(binding("alice@example.com", "sip:alice@203.0.113.9", exp)))
		must(t, w.Flush())
		// Flushed means committed: another process sees it without this one
		// closing anything.
		other := db.open(t, Options{})
		m := loadMap(t, other, time.Now())
		if len(m) != 2 {
			t.Fatalf("%d bindings, want 2", len(m))
		}
		if got := m["alice@example.com c sip:alice@198.51.100.7:5062"]; got != b1 {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, b1)
		}
		if lm := m["alice@example.com c sip:alice@203.0.113.9"].LastModified; lm < time.Now().Unix()-5 {
			t.Fatalf("LastModified not set at apply: %d", lm)
		}

		// Same AOR and contact: refreshed in place.
		b1.Expires, b1.CSeq = exp+60, 8
		must(t, w.Upsert(b1))
		// Instance/reg-id: a new contact from the same device replaces its binding.
		d1 := binding("alice@example.com", "sip:alice@192.0.2.10:5070;transport=tcp", exp)
		d1.Instance, d1.RegID = `"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"`, 1
		must(t, w.Upsert(d1))
		d1b := d1
		d1b.Contact = "sip:alice@192.0.2.11:5071;transport=tcp"
		must(t, w.Upsert(d1b))
		d2 := d1
		d2.RegID = 2 // a second flow of the same device is a separate binding
		must(t, w.Upsert(d2))
		must(t, w.Flush())
		m = loadMap(t, s, time.Now())
		if len(m) != 4 {
			t.Fatalf("%d bindings, want 4: %v", len(m), m)
		}
		if got := m["alice@example.com c sip:alice@198.51.100.7:5062"]; got.Expires != exp+60 || got.CSeq != 8 {
			t.Fatalf("refresh not applied: %+v", got)
		}
		if got := m["alice@example.com "+d1.Key()]; got.Contact != d1b.Contact {
			t.Fatalf("instance binding not replaced: %+v", got)
		}

		must(t, w.Delete(d2))
		must(t, w.Delete(Binding{AOR: "alice@example.com", Contact: "sip:alice@203.0.113.9"}))
		must(t, w.Upsert(binding("bob@example.com", "sip:bob@192.0.2.20", exp)))
		must(t, w.Flush())
		if m = loadMap(t, s, time.Now()); len(m) != 3 {
			t.Fatalf("%d bindings after deletes, want 3: %v", len(m), m)
		}
		must(t, w.DeleteAOR("alice@example.com"))
		must(t, w.Flush())
		m = loadMap(t, s, time.Now())
		if _, ok := m["bob@example.com c sip:bob@192.0.2.20"]; len(m) != 1 || !ok {
			t.Fatalf("after DeleteAOR: %v", m)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriterRejectsMalformed(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := s.NewLocationWriter(WriterOptions{})
		defer w.Close()
		exp := time.Now().Add(time.Hour).Unix()
		wantErr(t, w.Upsert(binding("alice", "sip:a@192.0.2.1", exp)), ErrMalformedAOR, `"alice"`, "missing '@'")
		wantErr(t, w.Upsert(binding("sip:alice@example.com", "sip:a@192.0.2.1", exp)), ErrMalformedAOR, "scheme")
		wantErr(t, w.Upsert(binding("alice@Example.com", "sip:a@192.0.2.1", exp)), ErrMalformedAOR, "lower case")
		wantErr(t, w.Upsert(binding("alice@example.com", "", exp)), ErrMalformedBinding, "empty contact")
		wantErr(t, w.Upsert(binding("alice@example.com", "sip:a@192.0.2.1", 0)), ErrMalformedBinding, "absolute unix time")
		b := binding("alice@example.com", "sip:a@192.0.2.1", exp)
		b.Q = 1001
		wantErr(t, w.Upsert(b), ErrMalformedBinding, "q 1001")
		wantErr(t, w.DeleteAOR("nobody"), ErrMalformedAOR)
		wantErr(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: binding("x", "sip:x@192.0.2.1", exp)}}), ErrMalformedAOR)
		if st := w.Stats(); st.Dropped != 0 || st.Applied != 0 {
			t.Fatalf("malformed operations were counted: %+v", st)
		}
	})
}

func TestWriterBatchesManyOps(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := s.NewLocationWriter(WriterOptions{QueueSize: 20000, MaxBatch: 256})
		exp := time.Now().Add(time.Hour).Unix()
		const aors, contacts = 1000, 5
		for i := 0; i < aors; i++ {
			for j := 0; j < contacts; j++ {
				must(t, w.Upsert(binding(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("sip:u%d@192.0.2.%d:%d", i, j, 5060+j), exp)))
			}
		}
		// Then refresh half of them: same keys, later expiry.
		for i := 0; i < aors; i += 2 {
			must(t, w.Upsert(binding(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("sip:u%d@192.0.2.0:5060", i), exp+100)))
		}
		must(t, w.Flush())
		st := w.Stats()
		total := uint64(aors*contacts + aors/2)
		if st.Applied != total || st.Dropped != 0 || st.Failed != 0 || st.Queued != 0 {
			t.Fatalf("stats = %+v, want %d applied", st, total)
		}
		if st.Batches >= st.Applied || st.MaxBatch < 2 || st.MaxBatch > 256 {
			t.Fatalf("no batching: %+v", st)
		}
		t.Logf("%d ops in %d transactions, largest %d", st.Applied, st.Batches, st.MaxBatch)
		must(t, w.Close())

		bs, _, err := s.LoadBindings(ctx, time.Now())
		if err != nil || len(bs) != aors*contacts {
			t.Fatalf("LoadBindings = %d, %v", len(bs), err)
		}
		refreshed := 0
		for _, b := range bs {
			if b.Expires == exp+100 {
				refreshed++
			}
		}
		if refreshed != aors/2 {
			t.Fatalf("%d refreshed, want %d", refreshed, aors/2)
		}
	})
}

func TestWriterCloseDrains(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := newLocationWriter(s.b, WriterOptions{QueueSize: 3000})
		exp := time.Now().Add(time.Hour).Unix()
		// Queue everything before the writer runs, so Close is what writes it.
		for i := 0; i < 2500; i++ {
			must(t, w.Upsert(binding(fmt.Sprintf("u%d@example.com", i), "sip:x@192.0.2.1", exp)))
		}
		go w.run()
		must(t, w.Close())
		must(t, w.Close()) // idempotent
		wantErr(t, w.Upsert(binding("a@example.com", "sip:x@192.0.2.1", exp)), ErrWriterClosed)
		wantErr(t, w.Flush(), ErrWriterClosed)
		s.Close()

		// A fresh process sees all of it.
		s2 := db.open(t, Options{})
		bs, _, err := s2.LoadBindings(ctx, time.Now())
		if err != nil || len(bs) != 2500 {
			t.Fatalf("after Close and re-open: %d bindings, %v", len(bs), err)
		}
	})
}

func TestWriterQueueFullDrops(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := newLocationWriter(s.b, WriterOptions{QueueSize: 8})
		exp := time.Now().Add(time.Hour).Unix()
		for i := 0; i < 8; i++ {
			must(t, w.Upsert(binding(fmt.Sprintf("u%d@example.com", i), "sip:x@192.0.2.1", exp)))
		}
		for i := 0; i < 5; i++ {
			if err := w.Upsert(binding("late@example.com", "sip:x@192.0.2.1", exp)); !errors.Is(err, ErrQueueFull) {
				t.Fatalf("Upsert on a full queue = %v, want ErrQueueFull", err)
			}
		}
		if w.Dropped() != 5 || w.Stats().Queued != 8 {
			t.Fatalf("dropped %d queued %d", w.Dropped(), w.Stats().Queued)
		}
		go w.run()
		must(t, w.Flush())
		must(t, w.Close())
		bs, _, _ := s.LoadBindings(ctx, time.Now())
		if len(bs) != 8 {
			t.Fatalf("%d bindings stored, want the 8 queued", len(bs))
		}
		for _, b := range bs {
			if b.AOR == "late@example.com" {
				t.Fatal("dropped operation was written")
			}
		}
	})
}

// Enqueueing is on the registrar's hot path: it must not allocate.
func TestWriterUpsertDoesNotAllocate(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	w := newLocationWriter(s.b, WriterOptions{QueueSize: 4096})
	b := binding("alice@example.com", "sip:alice@192.0.2.1", time.Now().Add(time.Hour).Unix())
	b.Instance, b.RegID = "<urn:uuid:1>", 1
	allocs := testing.AllocsPerRun(1000, func() {
		if err := w.Upsert(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Upsert allocates %.1f times per call", allocs)
	}
	// A full queue refuses without allocating either.
	full := newLocationWriter(s.b, WriterOptions{QueueSize: 1})
	full.Upsert(b)
	allocs = testing.AllocsPerRun(1000, func() { full.Upsert(b) })
	if allocs != 0 {
		t.Fatalf("Upsert on a full queue allocates %.1f times per call", allocs)
	}
	go w.run()
	must(t, w.Close())
	go full.run()
	must(t, full.Close())
}

func TestWriterConcurrentProducers(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := s.NewLocationWriter(WriterOptions{QueueSize: 1 << 16})
		exp := time.Now().Add(time.Hour).Unix()
		var wg sync.WaitGroup
		var refused atomic.Uint64
		for p := 0; p < 4; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for i := 0; i < 500; i++ {
					if w.Upsert(binding(fmt.Sprintf("p%d-%d@example.com", p, i), "sip:x@192.0.2.1", exp)) != nil {
						refused.Add(1)
					}
				}
			}(p)
		}
		wg.Wait()
		must(t, w.Close())
		bs, _, _ := s.LoadBindings(ctx, time.Now())
		if uint64(len(bs))+refused.Load() != 2000 || refused.Load() != w.Dropped() {
			t.Fatalf("stored %d + refused %d != 2000 (dropped %d)", len(bs), refused.Load(), w.Dropped())
		}
	})
}

// Another process holding the write lock delays the writer (busy timeout);
// holding it past the retries loses that batch, counts it and reports it.
func TestWriterSurvivesAndReportsLockedDatabase(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		var reported atomic.Int64
		busy := db.busyFloor(100 * time.Millisecond)
		s := db.open(t, Options{BusyTimeout: busy})
		w := s.NewLocationWriter(WriterOptions{OnError: func(err error, ops int) { reported.Add(int64(ops)) }})
		defer w.Close()
		exp := time.Now().Add(time.Hour).Unix()

		lock := func(hold time.Duration) <-chan struct{} {
			unlock := db.lockWrites(t, s)
			released := make(chan struct{})
			go func() {
				time.Sleep(hold)
				unlock()
				close(released)
			}()
			return released
		}

		// Short hold: the batch waits and succeeds.
		released := lock(busy * 3 / 2)
		must(t, w.Upsert(binding("a@example.com", "sip:a@192.0.2.1", exp)))
		must(t, w.Flush())
		<-released

		// Long hold (longer than three busy timeouts plus the retry pauses,
		// about 0.55s with 100ms): the batch fails.
		released = lock(busy*3 + time.Second)
		must(t, w.Upsert(binding("b@example.com", "sip:b@192.0.2.1", exp)))
		err := w.Flush()
		if err == nil {
			t.Fatal("Flush succeeded while another process held the lock")
		}
		st := w.Stats()
		if st.Failed != 1 || reported.Load() != 1 || st.LastError == nil {
			t.Fatalf("failure not counted: %+v reported %d", st, reported.Load())
		}
		<-released
		// After the lock is gone the writer works again and Flush is clean.
		must(t, w.Upsert(binding("c@example.com", "sip:c@192.0.2.1", exp)))
		must(t, w.Flush())
		var aors []string
		bs, _, _ := s.LoadBindings(ctx, time.Now())
		for _, b := range bs {
			aors = append(aors, b.AOR)
		}
		sort.Strings(aors)
		if fmt.Sprint(aors) != "[a@example.com c@example.com]" {
			t.Fatalf("stored %v", aors)
		}
	})
}

func TestExpiredBindings(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		now := time.Now()
		ops := []BindingOp{
			{Kind: OpUpsert, Binding: binding("a@example.com", "sip:old@192.0.2.1", now.Add(-time.Minute).Unix())},
			{Kind: OpUpsert, Binding: binding("a@example.com", "sip:edge@192.0.2.1", now.Unix())},
			{Kind: OpUpsert, Binding: binding("a@example.com", "sip:live@192.0.2.1", now.Add(time.Minute).Unix())},
			{Kind: OpUpsert, Binding: binding("b@example.com", "sip:old@192.0.2.2", now.Add(-time.Hour).Unix())},
		}
		must(t, s.ApplyBindings(ctx, ops))
		bs, _, err := s.LoadBindings(ctx, now)
		if err != nil || len(bs) != 1 || bs[0].Contact != "sip:live@192.0.2.1" {
			t.Fatalf("LoadBindings skips expired: %+v %v", bs, err)
		}
		n, err := s.DeleteExpiredBindings(ctx, now)
		if err != nil || n != 3 {
			t.Fatalf("DeleteExpiredBindings = %d, %v; want 3", n, err)
		}
		if bs, _, _ := s.LoadBindings(ctx, time.Unix(0, 0)); len(bs) != 1 {
			t.Fatalf("%d rows left, want 1", len(bs))
		}

		// The writer's periodic cleanup does the same.
		must(t, s.ApplyBindings(ctx, ops[:1]))
		w := s.NewLocationWriter(WriterOptions{CleanupInterval: 20 * time.Millisecond})
		deadline := time.Now().Add(5 * time.Second)
		for w.Stats().Cleaned == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		must(t, w.Close())
		if st := w.Stats(); st.Cleaned != 1 {
			t.Fatalf("periodic cleanup removed %d, want 1", st.Cleaned)
		}
		if bs, _, _ := s.LoadBindings(ctx, time.Unix(0, 0)); len(bs) != 1 {
			t.Fatalf("%d rows left after periodic cleanup, want 1", len(bs))
		}
	})
}

// The database going away under a running writer loses the batch with a
// counted, reported error; nothing hangs or panics.
func TestWriterDatabaseGone(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := s.NewLocationWriter(WriterOptions{})
		s.Close()
		must(t, w.Upsert(binding("a@example.com", "sip:a@192.0.2.1", time.Now().Add(time.Hour).Unix())))
		if err := w.Close(); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("Close = %v, want the database-closed error", err)
		}
		if st := w.Stats(); st.Failed != 1 || st.Applied != 0 {
			t.Fatalf("stats = %+v", st)
		}
		if _, err := s.GetSubscriber(ctx, "a", "example.com"); err == nil || errors.Is(err, ErrNoSubscriber) {
			t.Fatalf("GetSubscriber on a closed store = %v", err)
		}
	})
}

// Operations arriving within the linger time share one transaction; with
// no linger each commits on its own.
func TestWriterLingerGathersOperations(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		exp := time.Now().Add(time.Hour).Unix()
		for _, c := range []struct {
			linger      time.Duration
			wantBatches uint64
		}{{200 * time.Millisecond, 1}, {-1, 3}} {
			s := db.open(t, Options{})
			w := s.NewLocationWriter(WriterOptions{Linger: c.linger})
			for i, u := range []string{"a", "b", "c"} {
				if i > 0 {
					time.Sleep(30 * time.Millisecond)
				}
				must(t, w.Upsert(binding(u+"@example.com", "sip:"+u+"@198.51.100.7", exp)))
			}
			deadline := time.Now().Add(5 * time.Second)
			for w.Stats().Applied < 3 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			st := w.Stats()
			w.Close()
			if st.Applied != 3 || st.Batches != c.wantBatches {
				t.Errorf("linger %v: applied %d in %d batches, want 3 in %d", c.linger, st.Applied, st.Batches, c.wantBatches)
			}
		}
	})
}

// A change of several operations reserves room first: it is refused whole
// when the queue cannot take it, and once reserved nothing of it is
// dropped, however full the queue gets.
func TestWriterReservation(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		w := newLocationWriter(s.b, WriterOptions{QueueSize: 8})
		exp := time.Now().Add(time.Hour).Unix()
		res, err := w.Reserve(5)
		must(t, err)
		if _, err := w.Reserve(4); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Reserve(4) with 3 left = %v", err)
		}
		// Other producers fill the rest; the reserved room stays.
		for i := 0; i < 3; i++ {
			must(t, w.Upsert(binding(fmt.Sprintf("other%d@example.com", i), "sip:x@192.0.2.1", exp)))
		}
		wantErr(t, w.Upsert(binding("late@example.com", "sip:x@192.0.2.1", exp)), ErrQueueFull)
		for i := 0; i < 4; i++ {
			must(t, res.Queue(BindingOp{Kind: OpUpsert, Binding: binding(fmt.Sprintf("r%d@example.com", i), "sip:x@192.0.2.1", exp)}))
		}
		wantErr(t, res.Queue(BindingOp{Kind: OpUpsert, Binding: Binding{AOR: "no-at-sign"}}), ErrMalformedAOR)
		if res.Left() != 1 {
			t.Fatalf("left %d", res.Left())
		}
		res.Release()
		res.Release() // idempotent
		wantErr(t, res.Queue(BindingOp{Kind: OpDeleteAOR, Binding: Binding{AOR: "r0@example.com"}}), ErrQueueFull)
		if st := w.Stats(); st.Queued != 7 || st.Refused != 2 || st.Dropped != 1 {
			t.Fatalf("stats %+v", st)
		}
		if _, err := w.Reserve(1); err != nil {
			t.Fatalf("the released unit: %v", err)
		}
		go w.run()
		must(t, w.Flush())
		must(t, w.Close())
		if n := len(loadMap(t, s, time.Now())); n != 7 {
			t.Fatalf("%d bindings stored, want 7", n)
		}
		if _, err := w.Reserve(1); !errors.Is(err, ErrWriterClosed) {
			t.Fatalf("Reserve after Close = %v", err)
		}
	})
}

// Commit: the operations of one change in one transaction (even past
// MaxBatch), and done called once they are on disk, or with the error.
func TestWriterCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{BusyTimeout: db.busyFloor(100 * time.Millisecond), SyncCommits: true})
		w := s.NewLocationWriter(WriterOptions{MaxBatch: 4})
		defer w.Close()
		exp := time.Now().Add(time.Hour).Unix()
		var ops []BindingOp
		for i := 0; i < 10; i++ {
			ops = append(ops, BindingOp{Kind: OpUpsert, Binding: binding("big@example.com", fmt.Sprintf("sip:x@192.0.2.%d", i), exp)})
		}
		res, err := w.Reserve(len(ops))
		must(t, err)
		done := make(chan error, 1)
		seen := make(chan int, 1)
		must(t, res.Commit(ops, func(err error) {
			// Called after the commit: another handle sees all of it.
			other := db.open(t, Options{})
			seen <- len(loadMap(t, other, time.Now()))
			done <- err
		}))
		if err := <-done; err != nil || <-seen != 10 {
			t.Fatalf("Commit: %v", err)
		}
		if st := w.Stats(); st.MaxBatch != 10 || st.Batches != 1 {
			t.Fatalf("one change split: %+v", st)
		}
		// A malformed operation: nothing queued, done not called.
		res, err = w.Reserve(1)
		must(t, err)
		wantErr(t, res.Commit([]BindingOp{{Kind: OpUpsert, Binding: Binding{AOR: "x@example.com"}}}, func(error) { t.Error("done called") }), ErrMalformedBinding)
		res.Release()

		// Another process holds the write lock past the retries: done gets the
		// error.
		unlock := db.lockWrites(t, s)
		res, err = w.Reserve(1)
		must(t, err)
		must(t, res.Commit([]BindingOp{{Kind: OpDeleteAOR, Binding: Binding{AOR: "big@example.com"}}}, func(err error) { done <- err }))
		if err := <-done; err == nil {
			t.Fatal("a failed commit reported success")
		}
		unlock()
		if n := len(loadMap(t, s, time.Now())); n != 10 {
			t.Fatalf("after the failed delete: %d bindings", n)
		}
	})
}

// Reserving and queueing with the reservation is on the REGISTER path: no
// allocation.
func TestWriterReserveDoesNotAllocate(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	w := newLocationWriter(s.b, WriterOptions{QueueSize: 4096})
	op := BindingOp{Kind: OpUpsert, Binding: binding("alice@example.com", "sip:alice@192.0.2.1", time.Now().Add(time.Hour).Unix())}
	allocs := testing.AllocsPerRun(1000, func() {
		res, err := w.Reserve(2)
		if err != nil {
			t.Fatal(err)
		}
		res.Queue(op)
		res.Release()
	})
	if allocs != 0 {
		t.Fatalf("Reserve+Queue+Release allocates %.1f times", allocs)
	}
	go w.run()
	must(t, w.Close())
}

// SyncCommits turns SQLite's synchronous to FULL; the default is NORMAL.
func TestSyncCommits(t *testing.T) {
	for _, c := range []struct {
		sync bool
		want int
	}{{false, 1}, {true, 2}} {
		s := openT(t, t.TempDir(), Options{SyncCommits: c.sync})
		var v int
		must(t, s.b.(*SQLite).db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v))
		if v != c.want {
			t.Errorf("SyncCommits %v: synchronous=%d, want %d", c.sync, v, c.want)
		}
	}
}
