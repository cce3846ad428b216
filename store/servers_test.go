package store

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/store/mytest"
	"switchboard/store/pgtest"
)

// Tests of what only the database servers have: migrations applied by
// several processes, writers on several nodes, a server that goes away or
// does not answer. Each runs for PostgreSQL and for MariaDB.

// serverBackend is a database server backend under test.
type serverBackend struct {
	driver string
	migs   []migration
	newDB  func(t testing.TB) *testDB
	// open opens a backend with migs on dsn.
	open func(dsn string, opts Options, migs []migration) (Backend, error)
	// start starts a server of the test's own, with one database in it.
	start func(t *testing.T) (srv testServer, dsn string)
}

// testServer is a pgtest or mytest server.
type testServer interface {
	Stop() error
	Restart() error
	Close() error
}

var serverBackends = []serverBackend{
	{
		driver: DriverPostgres, migs: postgresMigrations, newDB: newPostgresDB,
		open: func(dsn string, opts Options, migs []migration) (Backend, error) {
			opts.setDefaults()
			return openPostgres(ctx, dsn, opts, migs)
		},
		start: func(t *testing.T) (testServer, string) {
			testPostgres(t) // skips when PostgreSQL is not installed
			srv, err := pgtest.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			return srv, srv.DSN("postgres")
		},
	},
	{
		driver: DriverMySQL, migs: mysqlMigrations, newDB: newMySQLDB,
		open: func(dsn string, opts Options, migs []migration) (Backend, error) {
			opts.setDefaults()
			return openMySQL(ctx, dsn, opts, migs)
		},
		start: func(t *testing.T) (testServer, string) {
			testMySQL(t) // skips when MariaDB is not installed
			srv, err := mytest.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			dsn, err := srv.NewDatabase(ctx, "outage")
			if err != nil {
				t.Fatal(err)
			}
			return srv, dsn
		},
	},
}

func eachServerBackend(t *testing.T, fn func(t *testing.T, sb serverBackend)) {
	for _, sb := range serverBackends {
		t.Run(sb.driver, func(t *testing.T) { fn(t, sb) })
	}
}

func schemaVersion(t testing.TB, b Backend) int {
	t.Helper()
	var v int
	var err error
	switch b := b.(type) {
	case *Postgres:
		v, err = b.SchemaVersion(ctx)
	case *MySQL:
		v, err = b.SchemaVersion(ctx)
	}
	must(t, err)
	return v
}

// Every backend must offer the same schema steps: a migration added to one
// list only (SQLite's, say) fails here until the others have it too.
func TestMigrationListsMatch(t *testing.T) {
	for _, l := range []struct {
		name string
		migs []migration
	}{{"PostgreSQL", postgresMigrations}, {"MySQL", mysqlMigrations}} {
		if len(sqliteMigrations) != len(l.migs) {
			t.Errorf("%d SQLite migrations, %d %s ones: add the missing steps to migrations.go", len(sqliteMigrations), len(l.migs), l.name)
			continue
		}
		for i := range sqliteMigrations {
			s, o := sqliteMigrations[i], l.migs[i]
			if s.version != i+1 || o.version != i+1 || s.name != o.name {
				t.Errorf("step %d: SQLite %d %q, %s %d %q", i+1, s.version, s.name, l.name, o.version, o.name)
			}
		}
	}
}

func TestServerMigrations(t *testing.T) {
	eachServerBackend(t, func(t *testing.T, sb serverBackend) {
		n := len(sb.migs)
		open := func(t *testing.T, dsn string, migs []migration) Backend {
			t.Helper()
			b, err := sb.open(dsn, Options{}, migs)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}

		t.Run("fresh", func(t *testing.T) {
			db := sb.newDB(t)
			if v := schemaVersion(t, open(t, db.dsn, sb.migs)); v != n {
				t.Fatalf("version %d, want %d", v, n)
			}
			// Re-opening applies nothing again.
			s := db.open(t, Options{})
			if rows := db.count(t, s, "schema_version"); rows != n {
				t.Fatalf("schema_version has %d rows, want %d", rows, n)
			}
		})

		// A database made by any earlier binary is upgraded in place and
		// keeps its data.
		for k := 1; k < n; k++ {
			t.Run(fmt.Sprintf("from %d", k), func(t *testing.T) {
				db := sb.newDB(t)
				old := open(t, db.dsn, sb.migs[:k])
				must(t, New(old, Options{}).AddDomain(ctx, "example.com"))
				old.Close()
				s := db.open(t, Options{})
				if v := schemaVersion(t, s.b); v != n {
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

		// A database migrated while step 8 was an empty placeholder (the
		// accounting tables' 9 landed first; that binary went up to step
		// 9) gets the dialog table at its next open, once, and the steps
		// after it (16 adds columns to it).
		t.Run("placeholder filled", func(t *testing.T) {
			db := sb.newDB(t)
			migs := append([]migration(nil), sb.migs[:9]...)
			migs[7] = migration{8, placeholders[8], nil}
			old := open(t, db.dsn, migs)
			must(t, New(old, Options{}).AddDomain(ctx, "example.com"))
			old.Close()
			for range 2 {
				s := db.open(t, Options{})
				d := testDialog(1, "call@host")
				must(t, s.ApplyDialogs(ctx, []DialogOp{{DialogUpsert, d}}))
				got, _, err := s.LoadDialogs(ctx)
				if err != nil || len(got) != 1 {
					t.Fatalf("dialogs %+v, %v", got, err)
				}
				must(t, s.DeleteDialog(ctx, 1))
				if v := schemaVersion(t, s.b); v != n {
					t.Fatalf("version %d", v)
				}
				s.Close()
			}
		})

		t.Run("newer schema refused", func(t *testing.T) {
			db := sb.newDB(t)
			next := append(append([]migration(nil), sb.migs...),
				migration{n + 1, "test step", []string{`CREATE TABLE extra (x INTEGER)`}})
			open(t, db.dsn, next).Close()
			_, err := Open("", Options{Driver: sb.driver, DSN: db.dsn})
			wantErr(t, err, ErrSchemaTooNew, fmt.Sprintf("schema version %d", n+1), fmt.Sprintf("only up to %d", n), "newer switchboard")
		})

		// PostgreSQL rolls a failed step back whole. MySQL commits DDL at
		// once: the step is not recorded, and runs again whole at the next
		// start.
		t.Run("failed step", func(t *testing.T) {
			db := sb.newDB(t)
			bad := append(append([]migration(nil), sb.migs...),
				migration{n + 1, "broken", []string{`CREATE TABLE IF NOT EXISTS ok1 (x INTEGER)`, `THIS IS NOT SQL`}})
			_, err := sb.open(db.dsn, Options{}, bad)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("migration %d (broken)", n+1)) {
				t.Fatalf("err = %v, want the failed step named", err)
			}
			if sb.driver == DriverPostgres {
				var left *string
				b := open(t, db.dsn, sb.migs).(*Postgres)
				must(t, b.pool.QueryRow(ctx, `SELECT to_regclass('ok1')::text`).Scan(&left))
				if left != nil {
					t.Fatal("the failed step's first table is left")
				}
			}
			fixed := append(append([]migration(nil), sb.migs...),
				migration{n + 1, "broken", []string{`CREATE TABLE IF NOT EXISTS ok1 (x INTEGER)`, `CREATE TABLE ok2 (x INTEGER)`}})
			b := open(t, db.dsn, fixed)
			if v := schemaVersion(t, b); v != n+1 {
				t.Fatalf("version %d after the fixed step, want %d", v, n+1)
			}
		})

		// Nodes starting together on a new database: one of them migrates
		// (advisory lock, named lock), the others find it done.
		t.Run("concurrent first open", func(t *testing.T) {
			db := sb.newDB(t)
			errs := make(chan error, 4)
			for i := 0; i < 4; i++ {
				go func() {
					s, err := Open("", Options{Driver: sb.driver, DSN: db.dsn})
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
			if v := schemaVersion(t, s.b); v != n {
				t.Fatalf("version %d", v)
			}
			if rows := db.count(t, s, "schema_version"); rows != n {
				t.Fatalf("schema_version has %d rows, want %d", rows, n)
			}
		})
	})
}

// Several nodes write subscribers at once, some writes refused (rolled
// back), while another polls the change log: the poller must see every
// committed change, in order, without a gap it would take for pruning (a
// sequence or AUTO_INCREMENT would leave gaps on rollback, and hand out
// numbers in an order other than the commits').
func TestChangeLogConcurrentWriters(t *testing.T) {
	eachServerBackend(t, func(t *testing.T, sb serverBackend) {
		db := sb.newDB(t)
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
	})
}

// unavailable is the backend's view of the server's reachability.
func unavailable(b Backend) error {
	switch b := b.(type) {
	case *Postgres:
		return b.Unavailable()
	case *MySQL:
		return b.Unavailable()
	case *OpenSIPS:
		return b.Unavailable()
	}
	return nil
}

// The database going away: operations fail with ErrUnavailable, quickly
// while the reconnection waits, the writer counts its failed batch, and
// everything works again once the server is back, through the same pool.
func TestServerOutage(t *testing.T) {
	eachServerBackend(t, func(t *testing.T, sb serverBackend) {
		srv, dsn := sb.start(t)
		s := openT(t, "", Options{Driver: sb.driver, DSN: dsn, Timeout: 2 * time.Second})
		must(t, s.AddDomain(ctx, "example.com"))
		must(t, s.AddSubscriber(ctx, Subscriber{Username: "alice", Domain: "example.com", Password: "pw"}))
		w := s.NewLocationWriter(WriterOptions{})
		defer w.Close()

		// A clean shutdown (the test servers do not flush commits to disk
		// at once, so a crash would lose the last ones, which is not what
		// this test is about).
		must(t, srv.Stop())
		// The first operations may fail on pooled connections the
		// shutdown closed, the next one on connecting: all are
		// ErrUnavailable.
		for i := 0; unavailable(s.b) == nil; i++ {
			_, err := s.GetSubscriber(ctx, "alice", "example.com")
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoSubscriber) {
				t.Fatalf("GetSubscriber with the server down = %v, want ErrUnavailable", err)
			}
			if i == 10 {
				t.Fatal("Unavailable() = nil with the server down")
			}
		}
		if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Ping = %v", err)
		}
		// Held back by the reconnection delay: no wait for a connect.
		start := time.Now()
		_, err := s.ListDomains(ctx)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "next connection attempt in") {
			t.Fatalf("ListDomains = %v", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("a held-back operation took %s", d)
		}
		// The modules' tables (one code for every backend, tables.go) say
		// the same on their reads, streams and writes: a module that
		// polls them keeps what it loaded.
		if _, err := s.DialplanVersion(ctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("DialplanVersion = %v, want ErrUnavailable", err)
		}
		if _, err := s.ListDispatcherDests(ctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("ListDispatcherDests = %v, want ErrUnavailable", err)
		}
		if err := s.ForEachDRRule(ctx, DRRuleFilter{Group: -1}, func(*DRRule) error { return nil }); !errors.Is(err, ErrUnavailable) {
			t.Errorf("ForEachDRRule = %v, want ErrUnavailable", err)
		}
		if _, err := s.AddFraudRule(ctx, FraudRule{Profile: 1, Prefix: "0900", CPM: FraudLimit{Warning: 5, Critical: 10}}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("AddFraudRule = %v, want ErrUnavailable", err)
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
		if err := unavailable(s.b); err != nil {
			t.Fatalf("Unavailable() = %v after reconnecting", err)
		}
		must(t, s.Ping(ctx))
		must(t, w.Upsert(binding("alice@example.com", "sip:alice@192.0.2.2", time.Now().Add(time.Hour).Unix())))
		must(t, w.Flush())
		if st := w.Stats(); st.Failed != 1 || st.Applied != 1 {
			t.Fatalf("writer stats %+v: want the batch during the outage failed, the one after applied", st)
		}
	})
}

// A server that accepts connections and never answers: Open fails within
// the configured timeout instead of hanging, naming the server and not the
// password.
func TestServerTimeout(t *testing.T) {
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
	addr := l.Addr().String()
	for _, c := range []struct{ driver, dsn string }{
		{DriverPostgres, "postgres://sb:secret-pw@" + addr + "/sb?sslmode=disable"},
		{DriverMySQL, "sb:secret-pw@tcp(" + addr + ")/sb"},
	} {
		t.Run(c.driver, func(t *testing.T) {
			start := time.Now()
			_, err := Open("", Options{Driver: c.driver, DSN: c.dsn, Timeout: 300 * time.Millisecond})
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Open took %s with a 300ms timeout", d)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Open = %v, want ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), "secret-pw") {
				t.Errorf("the error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("the error does not name the server: %v", err)
			}
		})
	}
}

// A contact longer than any index key: stored, found and deleted by its key
// on every backend (MySQL keys the SHA-256 of it).
func TestLongContact(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		exp := time.Now().Add(time.Hour).Unix()
		long := binding("alice@example.com", "sip:alice@192.0.2.1;x="+strings.Repeat("a", 8000), exp)
		long.Path = strings.Repeat("<sip:edge.example.com;lr>,", 500)
		long.LastModified = 1234 // kept, not set at apply
		short := binding("alice@example.com", "sip:alice@192.0.2.2", exp)
		must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: long}, {Kind: OpUpsert, Binding: short}}))
		m := loadMap(t, s, time.Now())
		if got := m["alice@example.com "+long.Key()]; got != long {
			t.Fatalf("long binding round trip: %d bindings, contact of %d bytes", len(m), len(got.Contact))
		}
		long.Expires++
		must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: long}}))
		if got := loadMap(t, s, time.Now())["alice@example.com "+long.Key()]; got.Expires != long.Expires {
			t.Fatalf("refresh of the long binding: expires %d, want %d", got.Expires, long.Expires)
		}
		must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpDelete, Binding: long}}))
		if m := loadMap(t, s, time.Now()); len(m) != 1 {
			t.Fatalf("%d bindings after deleting the long one, want 1", len(m))
		}
	})
}

// One ApplyBindings applies its operations in order, whatever the backend
// groups: a refresh of a binding added earlier in the same call (also
// across MySQL's multi-row statements of 100), a delete between two
// upserts, a delete of the whole AOR.
func TestApplyBindingsOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		exp := time.Now().Add(time.Hour).Unix()
		var ops []BindingOp
		up := func(aor, contact string, exp int64) {
			ops = append(ops, BindingOp{Kind: OpUpsert, Binding: binding(aor, contact, exp)})
		}
		for i := 0; i < 150; i++ {
			up(fmt.Sprintf("u%d@example.com", i), "sip:x@192.0.2.1", exp)
		}
		for i := 0; i < 150; i += 2 { // refreshed in the same call
			up(fmt.Sprintf("u%d@example.com", i), "sip:x@192.0.2.1", exp+10)
		}
		ops = append(ops, BindingOp{Kind: OpDelete, Binding: binding("u1@example.com", "sip:x@192.0.2.1", 0)})
		up("u1@example.com", "sip:y@192.0.2.1", exp) // after the delete
		ops = append(ops, BindingOp{Kind: OpDeleteAOR, Binding: Binding{AOR: "u3@example.com"}})
		up("u3@example.com", "sip:z@192.0.2.1", exp+20)
		up("u3@example.com", "sip:z@192.0.2.1", exp+30)
		must(t, s.ApplyBindings(ctx, ops))

		m := loadMap(t, s, time.Now())
		if len(m) != 150 {
			t.Fatalf("%d bindings, want 150", len(m))
		}
		for i := 0; i < 150; i++ {
			aor := fmt.Sprintf("u%d@example.com", i)
			want, contact := exp, "sip:x@192.0.2.1"
			switch {
			case i == 1:
				contact = "sip:y@192.0.2.1"
			case i == 3:
				want, contact = exp+30, "sip:z@192.0.2.1"
			case i%2 == 0:
				want = exp + 10
			}
			b, ok := m[aor+" c "+contact]
			if !ok || b.Expires != want {
				t.Fatalf("%s %s: %+v (found %v), want expires %d", aor, contact, b, ok, want)
			}
		}
	})
}
