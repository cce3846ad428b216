package store

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/store/pgtest"
)

// Both backends must offer the same schema steps: a migration added to one
// list only (SQLite's, say) fails here until the other has it too.
func TestMigrationListsMatch(t *testing.T) {
	if len(sqliteMigrations) != len(postgresMigrations) {
		t.Fatalf("%d SQLite migrations, %d PostgreSQL ones: add the missing steps to migrations.go", len(sqliteMigrations), len(postgresMigrations))
	}
	for i := range sqliteMigrations {
		s, p := sqliteMigrations[i], postgresMigrations[i]
		if s.version != i+1 || p.version != i+1 || s.name != p.name {
			t.Errorf("step %d: SQLite %d %q, PostgreSQL %d %q", i+1, s.version, s.name, p.version, p.name)
		}
	}
}

func openPG(t testing.TB, dsn string, opts Options, migs []migration) (*Postgres, error) {
	t.Helper()
	opts.setDefaults()
	b, err := openPostgres(ctx, dsn, opts, migs)
	if err == nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}

func TestPostgresMigrations(t *testing.T) {
	testPostgres(t) // skips when PostgreSQL is not installed
	n := len(postgresMigrations)

	t.Run("fresh", func(t *testing.T) {
		db := newPostgresDB(t)
		b, err := openPG(t, db.dsn, Options{}, postgresMigrations)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := b.SchemaVersion(ctx); v != n || err != nil {
			t.Fatalf("version %d, %v; want %d", v, err, n)
		}
		// Re-opening applies nothing again.
		b2, err := openPG(t, db.dsn, Options{}, postgresMigrations)
		if err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := b2.pool.QueryRow(ctx, `SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != n {
			t.Fatalf("schema_version has %d rows, %v", rows, err)
		}
	})

	// A database made by any earlier binary is upgraded in place and keeps
	// its data.
	for k := 1; k < n; k++ {
		t.Run(fmt.Sprintf("from %d", k), func(t *testing.T) {
			db := newPostgresDB(t)
			old, err := openPG(t, db.dsn, Options{}, postgresMigrations[:k])
			if err != nil {
				t.Fatal(err)
			}
			must(t, New(old, Options{}).AddDomain(ctx, "example.com"))
			old.Close()
			s := db.open(t, Options{})
			if v, _ := s.b.(*Postgres).SchemaVersion(ctx); v != n {
				t.Fatalf("version %d after the upgrade, want %d", v, n)
			}
			if ok, err := s.DomainExists(ctx, "example.com"); !ok || err != nil {
				t.Fatalf("domain lost in the upgrade: %v %v", ok, err)
			}
			if err := s.AddDRGateways(ctx, []DRGateway{{GWID: "gw1", Address: "192.0.2.1"}}, false); err != nil {
				t.Fatalf("last step's table missing: %v", err)
			}
		})
	}

	t.Run("newer schema refused", func(t *testing.T) {
		db := newPostgresDB(t)
		next := append(append([]migration(nil), postgresMigrations...),
			migration{n + 1, "test step", []string{`CREATE TABLE extra (x INTEGER)`}})
		b, err := openPG(t, db.dsn, Options{}, next)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		b.Close()
		_, err = Open("", Options{Driver: DriverPostgres, DSN: db.dsn})
		wantErr(t, err, ErrSchemaTooNew, fmt.Sprintf("schema version %d", n+1), fmt.Sprintf("only up to %d", n), "newer switchboard")
	})

	t.Run("failed step leaves nothing", func(t *testing.T) {
		db := newPostgresDB(t)
		bad := append(append([]migration(nil), postgresMigrations...),
			migration{n + 1, "broken", []string{`CREATE TABLE ok1 (x INTEGER)`, `THIS IS NOT SQL`}})
		_, err := openPG(t, db.dsn, Options{}, bad)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("migration %d (broken)", n+1)) {
			t.Fatalf("err = %v, want the failed step named", err)
		}
		b, err := openPG(t, db.dsn, Options{}, postgresMigrations[:0])
		if err != nil {
			t.Fatal(err)
		}
		var tables int
		must(t, b.pool.QueryRow(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'schema_version'`).Scan(&tables))
		if tables != 0 {
			t.Fatalf("%d tables left by the failed run", tables)
		}
	})

	// Nodes starting together on a new database: the advisory lock makes
	// one of them migrate and the others see it done.
	t.Run("concurrent first open", func(t *testing.T) {
		db := newPostgresDB(t)
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			go func() {
				s, err := Open("", Options{Driver: DriverPostgres, DSN: db.dsn})
				if err == nil {
					err = s.AddDomain(ctx, "example.com")
					if errors.Is(err, ErrDomainExists) {
						err = nil
					}
					s.Close()
				}
				errs <- err
			}()
		}
		for i := 0; i < 4; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		s := db.open(t, Options{})
		if v, _ := s.b.(*Postgres).SchemaVersion(ctx); v != n {
			t.Fatalf("version %d", v)
		}
	})
}

// Several nodes write subscribers at once, some writes refused (rolled
// back), while another polls the change log: the poller must see every
// committed change, in order, without a gap it would take for pruning (a
// sequence would leave gaps on rollback, and hand out numbers in an order
// other than the commits').
func TestPostgresChangeLogConcurrentWriters(t *testing.T) {
	db := newPostgresDB(t)
	reader := db.open(t, Options{})
	must(t, reader.AddDomain(ctx, "example.com"))
	since, err := reader.LastChange(ctx)
	must(t, err)

	const writers, each = 4, 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	seen := map[string]int{}
	var pollErr error
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			ch, next, err := reader.Changes(ctx, since)
			if err != nil {
				pollErr = err
				return
			}
			for _, c := range ch {
				if c.Kind == ChangeAll {
					pollErr = fmt.Errorf("ChangeAll after %d: a gap in the log", since)
					return
				}
				seen[c.Username]++
			}
			since = next
			select {
			case <-stop:
				if ch, _, _ := reader.Changes(ctx, since); len(ch) == 0 {
					return
				}
			default:
			}
		}
	}()
	for w := 0; w < writers; w++ {
		s := db.open(t, Options{})
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				u := fmt.Sprintf("w%d-%d", w, i)
				if err := s.AddSubscriber(ctx, Subscriber{Username: u, Domain: "example.com", Password: "p"}); err != nil {
					t.Error(err)
				}
				// A refused write rolls back after taking its place in the log.
				if err := s.AddSubscriber(ctx, Subscriber{Username: u, Domain: "example.com", Password: "p"}); !errors.Is(err, ErrSubscriberExists) {
					t.Errorf("duplicate: %v", err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	<-polled
	if pollErr != nil {
		t.Fatal(pollErr)
	}
	if len(seen) != writers*each {
		t.Fatalf("the poller saw %d subscribers, want %d", len(seen), writers*each)
	}
	for u, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", u, n)
		}
	}
	if last, _ := reader.LastChange(ctx); last != uint64(1+writers*each) {
		t.Errorf("last change %d, want %d (one number per committed write)", last, 1+writers*each)
	}
}

// The database going away: operations fail with ErrUnavailable, quickly
// while the reconnection waits, the writer counts its failed batch, and
// everything works again once the server is back, through the same pool.
func TestPostgresOutage(t *testing.T) {
	testPostgres(t) // skips when PostgreSQL is not installed
	srv, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s := openT(t, "", Options{Driver: DriverPostgres, DSN: srv.DSN("postgres"), Timeout: 2 * time.Second})
	b := s.b.(*Postgres)
	must(t, s.AddDomain(ctx, "example.com"))
	must(t, s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.com", Password: "pw"}))
	w := s.NewLocationWriter(WriterOptions{})
	defer w.Close()

	// A fast shutdown (the test server runs with synchronous_commit off,
	// so a crash would lose the last commits, which is not what this
	// test is about).
	must(t, srv.Stop())
	// The first operation may fail on the pooled connection the shutdown
	// closed, the next one on connecting: both are ErrUnavailable.
	for i := 0; b.Unavailable() == nil; i++ {
		_, err = s.GetSubscriber(ctx, "alice", "example.com")
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoSubscriber) {
			t.Fatalf("GetSubscriber with the server down = %v, want ErrUnavailable", err)
		}
		if i == 3 {
			t.Fatal("Unavailable() = nil with the server down")
		}
	}
	// Held back by the reconnection delay: no wait for a connect.
	start := time.Now()
	_, err = s.ListDomains(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "next connection attempt in") {
		t.Fatalf("ListDomains = %v", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("a held-back operation took %s", d)
	}
	must(t, w.Upsert(binding("alice@example.com", "sip:alice@192.0.2.1", time.Now().Add(time.Hour).Unix())))
	if err := w.Flush(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Flush = %v, want ErrUnavailable", err)
	}

	must(t, srv.Restart())
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := s.GetSubscriber(ctx, "alice", "example.com")
		if err == nil && got.HA1 == HA1MD5("alice", "example.com", "pw") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back 15s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.Unavailable() != nil {
		t.Fatalf("Unavailable() = %v after reconnecting", b.Unavailable())
	}
	must(t, w.Upsert(binding("alice@example.com", "sip:alice@192.0.2.2", time.Now().Add(time.Hour).Unix())))
	must(t, w.Flush())
	if st := w.Stats(); st.Failed != 1 || st.Applied != 1 {
		t.Fatalf("writer stats %+v: want the batch during the outage failed, the one after applied", st)
	}
}

// A server that accepts connections and never answers: Open fails within
// the configured timeout instead of hanging.
func TestPostgresTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	start := time.Now()
	_, err = Open("", Options{Driver: DriverPostgres, DSN: "postgres://sb:secret-pw@" + l.Addr().String() + "/sb?sslmode=disable", Timeout: 300 * time.Millisecond})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open took %s with a 300ms timeout", d)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "secret-pw") {
		t.Errorf("the error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("the error does not name the server: %v", err)
	}
}

func TestPostgresOpenErrors(t *testing.T) {
	for _, c := range []struct {
		opts  Options
		words string
	}{
		{Options{Driver: DriverPostgres}, "no DSN"},
		{Options{Driver: DriverPostgres, DSN: "postgres://u:secret-pw@127.0.0.1:notaport/db"}, "bad DSN"},
		{Options{Driver: "oracle"}, `unknown driver "oracle"`},
		{Options{Driver: DriverSQLite, DSN: "host=/tmp"}, "DSN is for the postgres and mysql drivers"},
	} {
		_, err := Open(t.TempDir(), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.words) || strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("Open(%+v) = %v, want an error about %q", c.opts, err, c.words)
		}
	}
	// A server that is not there.
	srv := testPostgres(t)
	_, err := Open("", Options{Driver: DriverPostgres, DSN: srv.DSN("no_such_db")})
	if err == nil || !strings.Contains(err.Error(), "no_such_db") {
		t.Errorf("Open of a missing database = %v", err)
	}
}

// The URL form over TCP works as the key=value one over the socket.
func TestPostgresURL(t *testing.T) {
	srv := testPostgres(t)
	name, err := srv.NewDatabase(ctx, "url")
	must(t, err)
	s := openT(t, "", Options{Driver: DriverPostgres, DSN: srv.URL(name)})
	must(t, s.AddDomain(ctx, "example.com"))
	if ok, err := s.DomainExists(ctx, "example.com"); !ok || err != nil {
		t.Fatalf("DomainExists = %v, %v", ok, err)
	}
}

// Binding fields come from headers anyone can forge: NUL and invalid
// UTF-8, which PostgreSQL's text refuses, are stored replaced rather than
// failing the writer's batch with everyone else's bindings in it.
func TestPostgresForgedBindingText(t *testing.T) {
	db := newPostgresDB(t)
	s := db.open(t, Options{})
	exp := time.Now().Add(time.Hour).Unix()
	bad := binding("mallory@example.com", "sip:mallory@192.0.2.66", exp)
	bad.UserAgent, bad.CallID, bad.Instance = "caf\xe9", "a\x00b", "<urn:\xff>"
	good := binding("alice@example.com", "sip:alice@192.0.2.1", exp)
	must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: bad}, {Kind: OpUpsert, Binding: good}}))
	m := loadMap(t, s, time.Now())
	if len(m) != 2 {
		t.Fatalf("%d bindings stored, want 2", len(m))
	}
	var got Binding
	for _, b := range m {
		if b.AOR == "mallory@example.com" {
			got = b
		}
	}
	if got.UserAgent != "caf\uFFFD" || got.CallID != "a\uFFFDb" || got.Instance != "<urn:\uFFFD>" {
		t.Fatalf("stored %q %q %q", got.UserAgent, got.CallID, got.Instance)
	}
	// The same forged binding deleted by its key.
	must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpDelete, Binding: bad}}))
	if m := loadMap(t, s, time.Now()); len(m) != 1 {
		t.Fatalf("%d bindings after deleting the forged one, want 1", len(m))
	}
}
