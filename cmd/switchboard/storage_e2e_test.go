package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/cmd/switchboard/config"
	"switchboard/store/mytest"
	"switchboard/store/pgtest"
)

// dbServer is a database server started for one test (pgtest, mytest).
type dbServer interface {
	Stop() error
	Restart() error
	Close() error
}

// startDatabase starts a database server of driver for one test and
// creates the database switchboard in it; the test skips where the server
// is not installed. It returns the storage section's driver and dsn lines.
func startDatabase(t *testing.T, driver string) (srv dbServer, storage, dsn string) {
	t.Helper()
	switch driver {
	case "postgres":
		pg, err := pgtest.Start()
		if errors.Is(err, pgtest.ErrNotInstalled) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		if err := pg.Exec(context.Background(), "CREATE DATABASE switchboard"); err != nil {
			t.Fatal(err)
		}
		srv, dsn = pg, pg.DSN("switchboard")
	case "mysql":
		my, err := mytest.Start()
		if errors.Is(err, mytest.ErrNotInstalled) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { my.Close() })
		if err := my.Exec(context.Background(), "CREATE DATABASE switchboard"); err != nil {
			t.Fatal(err)
		}
		srv, dsn = my, my.DSN("switchboard")
	}
	return srv, fmt.Sprintf("  driver: %s\n  dsn: %q\n", driver, dsn), dsn
}

// eachServerDriver runs fn as a subtest per database server driver.
func eachServerDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range []string{"postgres", "mysql"} {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// TestE2EServerStorage: two nodes, each with its own storage.dir, on one
// PostgreSQL (then MariaDB) database. Subscribers added with the CLI (on the postgres
// driver too) authenticate on both; a registration made through node A is
// in the database, and node B, started afterwards, loads it.
func TestE2EServerStorage(t *testing.T) {
	t.Parallel()
	needSipp(t)
	eachServerDriver(t, testServerStorage)
}

func testServerStorage(t *testing.T, driver string) {
	_, storage, _ := startDatabase(t, driver)
	const extra = "auth:\n  algorithms: [MD5]\n  check_uri: false\n"
	a := startServerWith(t, extra, serverOptions{Storage: storage})
	addUser(t, a, "alice@localhost", "alice-pw")
	addUser(t, a, "bob@localhost", "bob-pw")
	out, err := exec.Command(switchboardBinary(t), "user", "list", "-c", a.Config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "alice@localhost") || !strings.Contains(string(out), "bob@localhost") {
		t.Fatalf("user list: %v\n%s", err, out)
	}

	alicePort := freeSIPPort(t)
	if r := sippUA(t, a, "register.xml", alicePort, "alice", "alice-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register alice on A: exit %d\n%s", r.Code, r.Output)
	}
	// The registrar writes behind: the row arrives within moments; the
	// CLI's store sees it.
	st, err := openStorage(loadT(t, a.Config))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	contact := ""
	deadline := time.Now().Add(5 * time.Second)
	for contact == "" && time.Now().Before(deadline) {
		bs, _, err := st.LoadBindings(context.Background(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.AOR == "alice@localhost" {
				contact = b.Contact
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := fmt.Sprintf("sip:alice@127.0.0.1:%d", alicePort); contact != want {
		t.Fatalf("stored binding of alice: %q; want %q", contact, want)
	}

	b := startServerWith(t, extra, serverOptions{Storage: storage})
	if l := bindings(t, b, "alice@localhost"); len(l) != 1 || l[0].Contact != contact {
		t.Fatalf("node B's bindings of alice: %+v", l)
	}
	if r := sippUA(t, b, "register.xml", freeSIPPort(t), "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob on B: exit %d\n%s", r.Code, r.Output)
	}
	if r := sippUA(t, b, "register.xml", freeSIPPort(t), "bob", "wrong", "expires", "300"); r.Code == 0 {
		t.Fatalf("a wrong password registered on B:\n%s", r.Output)
	}
}

// A database that cannot be reached: the CLI fails, and says which
// setting and which server, not the password.
func TestE2EDatabaseUnreachableAtStart(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ driver, dsn string }{
		{"postgres", "postgres://sb:hunter2@127.0.0.1:1/sb?connect_timeout=2"},
		{"mysql", "sb:hunter2@tcp(127.0.0.1:1)/sb"},
	} {
		t.Run(c.driver, func(t *testing.T) {
			dir := t.TempDir()
			code, _, errb := runCLI(t, "", "check-config", "--set", "storage.driver="+c.driver, "--set", "storage.dsn="+c.dsn, "--set", "storage.dir="+dir)
			if code != 0 {
				t.Fatalf("check-config refused a valid DSN: %s", errb)
			}
			code, _, errb = runCLI(t, "", "user", "list", "--set", "storage.driver="+c.driver, "--set", "storage.dsn="+c.dsn)
			if code == 0 || !strings.Contains(errb, "storage.dsn") || !strings.Contains(errb, "127.0.0.1:1") || !strings.Contains(errb, "database unavailable") ||
				strings.Contains(errb, "hunter2") {
				t.Fatalf("user list on an unreachable database: exit %d, %s", code, errb)
			}
		})
	}
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, srv *testServer) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + srv.Mgmt + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestE2EServerOutage: the database (PostgreSQL, then MariaDB) stops while
// phones are registered.
// The node goes on from memory: a phone whose credentials are cached
// registers again, calls between registered phones complete; a subscriber
// never seen is refused (500, not 200). /readyz stays 200 and says
// "degraded: storage", switchboard_storage_up is 0; when the database is
// back, both say so and new registrations are stored again.
func TestE2EServerOutage(t *testing.T) {
	t.Parallel()
	needSipp(t)
	eachServerDriver(t, testServerOutage)
}

func testServerOutage(t *testing.T, driver string) {
	pg, storage, _ := startDatabase(t, driver)
	srv := startServerWith(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n",
		serverOptions{Storage: storage + "  timeout: 1s\n"})
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	addUser(t, srv, "carol@localhost", "carol-pw")
	alicePort, bobPort := freeSIPPort(t), freeSIPPort(t)
	for _, u := range []struct {
		name string
		port int
	}{{"alice", alicePort}, {"bob", bobPort}} {
		if r := sippUA(t, srv, "register.xml", u.port, u.name, u.name+"-pw", "expires", "300"); r.Code != 0 {
			t.Fatalf("register %s: exit %d\n%s", u.name, r.Code, r.Output)
		}
	}
	if code, body := readyz(t, srv); code != 200 || body != "ready\n" {
		t.Fatalf("readyz before the outage: %d %q", code, body)
	}
	if m := srv.metrics(); m["switchboard_storage_up"] != 1 || m["switchboard_storage_outages_total"] != 0 {
		t.Fatalf("storage metrics before the outage: up %v outages %v", m["switchboard_storage_up"], m["switchboard_storage_outages_total"])
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	took := waitMetric(t, srv, "switchboard_storage_up", 0)
	t.Logf("outage seen after %s", took)
	code, body := readyz(t, srv)
	if code != 200 || !strings.Contains(body, "degraded: storage: ") || !strings.Contains(body, "database unavailable") {
		t.Fatalf("readyz during the outage: %d %q", code, body)
	}
	if !srv.logged("storage unavailable") {
		t.Errorf("the log does not report the outage:\n%s", srv.Log)
	}

	// Cached credentials: alice registers again, and calls bob. Her
	// binding's write fails after the writer's retries, and is counted.
	if r := sippUA(t, srv, "register.xml", alicePort, "alice", "alice-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("alice re-registers during the outage: exit %d\n%s", r.Code, r.Output)
	}
	waitMetric(t, srv, "switchboard_registrar_store_write_failures_total", 1)
	startSipp(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call.xml", alicePort, "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call alice -> bob during the outage: exit %d\n%s", r.Code, r.Output)
	}
	// carol's credentials were never read: nothing to authenticate her with.
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "300"); r.Code == 0 || !strings.Contains(r.Output, "500") {
		t.Fatalf("carol (not cached) during the outage: exit %d\n%s", r.Code, r.Output)
	}

	// The outage is reported, not repeated at every poll of every table:
	// after several polls (every second by default), each poller's
	// warning ("reading the change log failed", "reading the rules
	// failed"...) appears once.
	time.Sleep(3 * time.Second)
	warned := map[string]int{}
	for _, l := range strings.Split(srv.Log.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "reading the") {
			if i := strings.Index(l, "msg="); i >= 0 {
				msg := l[i:]
				if j := strings.Index(msg, "\" "); j > 0 {
					msg = msg[:j]
				}
				warned[msg]++
			}
		}
	}
	for msg, n := range warned {
		if n > 1 {
			t.Errorf("warned %d times during the outage: %s", n, msg)
		}
	}

	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	took = waitMetric(t, srv, "switchboard_storage_up", 1)
	t.Logf("recovery seen after %s", took)
	if code, body := readyz(t, srv); code != 200 || body != "ready\n" {
		t.Fatalf("readyz after the outage: %d %q", code, body)
	}
	if n := srv.metrics()["switchboard_storage_outages_total"]; n != 1 {
		t.Errorf("switchboard_storage_outages_total = %v, want 1", n)
	}
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("carol after the outage: exit %d\n%s", r.Code, r.Output)
	}
}

// loadT loads a configuration file.
func loadT(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := loadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
