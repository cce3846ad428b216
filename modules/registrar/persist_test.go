package registrar

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"switchboard/store"
)

// storeLock holds the SQLite write lock from another connection, as
// another process would, until release is called: the registrar's writer
// waits behind it.
func storeLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.DefaultFileName)+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// storedAORs reads the AORs on disk through a handle of its own, as the
// next start would.
func storedAORs(t *testing.T, dir string) string {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs, _, err := st.LoadBindings(context.Background(), time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var aors []string
	for _, b := range bs {
		aors = append(aors, b.AOR)
	}
	sort.Strings(aors)
	return strings.Join(aors, " ")
}

// TestWriteBackQueueFull: a REGISTER whose change finds no room in the
// store's queue gets 503 with Retry-After and changes nothing, so a delete
// is never lost (a lost delete brings the binding back at the next start);
// the management API waits for room instead.
func TestWriteBackQueueFull(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{BusyTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := st.NewLocationWriter(store.WriterOptions{QueueSize: 2, Linger: -1})
	t.Cleanup(func() { w.Close() }) // after the lock is released
	h := newHarness(t, Config{Writer: w})
	reg := func(user string, cseq int, contact string) string {
		return statusOf(h.request("127.0.0.1:5062", register(user, "q-"+user, cseq, "Contact: "+contact+"\r\n")))
	}
	if s := reg("alice", 1, "<sip:alice@127.0.0.1:5062>"); s != "200 OK" {
		t.Fatal(s)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}

	// Another process holds the lock: the writer takes the first change and
	// waits in its commit. Registrations fill the queue until one is
	// refused.
	release := storeLock(t, dir)
	if s := reg("bob", 1, "<sip:bob@127.0.0.1:5062>"); s != "200 OK" {
		t.Fatal(s)
	}
	for deadline := time.Now().Add(5 * time.Second); w.Stats().Queued > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the first change")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // from taking it to waiting for the lock
	queued := []string{"bob@example.com"}
	for i := 0; ; i++ {
		u := "user" + itoa(i)
		s := reg(u, 1, "<sip:"+u+"@127.0.0.1:5062>")
		if s == "503 Location Store Busy" {
			break
		}
		if s != "200 OK" || i > 2 {
			t.Fatalf("%s: %s (%+v)", u, s, w.Stats())
		}
		queued = append(queued, u+"@example.com")
	}
	r := h.request("127.0.0.1:5062", register("alice", "q-alice", 2, "Contact: <sip:alice@127.0.0.1:5062>;expires=0\r\n"))
	if statusOf(r) != "503 Location Store Busy" || !strings.Contains(r, "\r\nRetry-After: 5\r\n") {
		t.Fatalf("unregister with a full queue: %s", r)
	}
	if len(h.reg.List("alice@example.com")) != 1 {
		t.Fatal("the refused unregister changed memory")
	}
	// The management API waits for room rather than refusing.
	deleted := make(chan error, 1)
	go func() {
		n, err := h.reg.Delete(queued[0], "")
		if n != 1 && err == nil {
			t.Errorf("Delete removed %d", n)
		}
		deleted <- err
	}()
	select {
	case err := <-deleted:
		t.Fatalf("Delete returned with the queue full: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if s := reg("alice", 3, "<sip:alice@127.0.0.1:5062>;expires=0"); s != "200 OK" {
		t.Fatalf("unregister once there is room: %s", s)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := storedAORs(t, dir), strings.Join(queued[1:], " "); got != want {
		t.Fatalf("stored %q, want %q", got, want)
	}
	if st := h.reg.Stats(); st.StoreBusy != 2 || st.WriteDrops != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestWriteThrough: the 200 waits for the commit, so a REGISTER answered
// 200 is on disk; a commit that fails is answered 500; the management API
// returns once its change is committed.
func TestWriteThrough(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{BusyTimeout: 100 * time.Millisecond, SyncCommits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := st.NewLocationWriter(store.WriterOptions{})
	defer w.Close()
	h := newHarness(t, Config{Writer: w, Persist: WriteThrough})

	r := h.await("127.0.0.1:5062", register("erin", "t-erin", 1, "Contact: <sip:erin@127.0.0.1:5062>\r\nPath: <sip:127.0.0.1:5070;lr>\r\n"), 5*time.Second)
	if statusOf(r) != "200 OK" || contacts(r)[0] != "<sip:erin@127.0.0.1:5062>;expires=3600" || !strings.Contains(r, "\r\nPath: <sip:127.0.0.1:5070;lr>\r\n") {
		t.Fatalf("write-through REGISTER: %s", r)
	}
	if got := storedAORs(t, dir); got != "erin@example.com" {
		t.Fatalf("answered 200 but stored %q", got)
	}

	// While another process holds the lock (less than the writer's
	// retries) the answer waits; it comes once the binding is stored.
	release := storeLock(t, dir)
	h.take()
	h.receive("127.0.0.1:5064", register("fay", "t-fay", 1, "Contact: <sip:fay@127.0.0.1:5064>\r\n"))
	if r := h.final(150 * time.Millisecond); r != "" {
		t.Fatalf("answered before the commit: %s", r)
	}
	release()
	if r := h.final(5 * time.Second); statusOf(r) != "200 OK" {
		t.Fatalf("after the commit: %q", r)
	}
	if got := storedAORs(t, dir); got != "erin@example.com fay@example.com" {
		t.Fatalf("stored %q", got)
	}

	// Held past the retries: 500 with Retry-After.
	release = storeLock(t, dir)
	r = h.await("127.0.0.1:5066", register("gus", "t-gus", 1, "Contact: <sip:gus@127.0.0.1:5066>\r\n"), 5*time.Second)
	release()
	if statusOf(r) != "500 Binding Not Stored" || !strings.Contains(r, "\r\nRetry-After: 5\r\n") {
		t.Fatalf("failed commit: %s", r)
	}
	if st := h.reg.Stats(); st.StoreErrors != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A query and a retransmission change nothing: answered at once.
	if r := h.request("127.0.0.1:5062", register("erin", "t-erin", 2, "")); statusOf(r) != "200 OK" || len(contacts(r)) != 1 {
		t.Fatalf("query: %s", r)
	}
	// The management API returns once the removal is on disk.
	if n, err := h.reg.Delete("erin@example.com", "sip:erin@127.0.0.1:5062"); n != 1 || err != nil {
		t.Fatalf("Delete: %d %v", n, err)
	}
	if got := storedAORs(t, dir); got != "fay@example.com" {
		t.Fatalf("after Delete, stored %q", got)
	}
}

// TestWriterOptionsWriteInterval: registrar.write_interval is the writer's
// gathering time; 0 means commit at once (the writer's negative Linger),
// not the writer's own default.
func TestWriterOptionsWriteInterval(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct{ set, want time.Duration }{
		{10 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, time.Second},
		{0, -1},
	} {
		st := DefaultSettings()
		st.WriteInterval = c.set
		if got := writerOptions(st, log).Linger; got != c.want {
			t.Errorf("write_interval %s: Linger %s, want %s", c.set, got, c.want)
		}
	}
	if d := DefaultSettings().WriteInterval; d != 10*time.Millisecond {
		t.Errorf("default write_interval %s, want 10ms", d)
	}
}
