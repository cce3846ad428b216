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

	"github.com/jackc/pgx/v5"

	"switchboard/store/pgtest"
)

// startPostgres starts a PostgreSQL server for one test and creates the
// database switchboard in it; the test skips where PostgreSQL is not
// installed.
func startPostgres(t *testing.T) (srv *pgtest.Server, dsn string) {
	t.Helper()
	srv, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Exec(context.Background(), "CREATE DATABASE switchboard"); err != nil {
		t.Fatal(err)
	}
	return srv, srv.DSN("switchboard")
}

// TestE2EPostgresStorage: two nodes, each with its own storage.dir, on one
// PostgreSQL database. Subscribers added with the CLI (on the postgres
// driver too) authenticate on both; a registration made through node A is
// in the database, and node B, started afterwards, loads it.
func TestE2EPostgresStorage(t *testing.T) {
	needSipp(t)
	_, dsn := startPostgres(t)
	storage := fmt.Sprintf("  driver: postgres\n  dsn: %q\n", dsn)
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
	// The registrar writes behind: the row arrives within moments.
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var contact string
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = conn.QueryRow(context.Background(), `SELECT contact FROM location WHERE aor = 'alice@localhost'`).Scan(&contact)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := fmt.Sprintf("sip:alice@127.0.0.1:%d", alicePort); err != nil || contact != want {
		t.Fatalf("location row of alice: %q, %v; want %q", contact, err, want)
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

// A database that cannot be reached at start: the server does not start,
// and says which setting and which server.
func TestE2EPostgresUnreachableAtStart(t *testing.T) {
	dir := t.TempDir()
	code, _, errb := runCLI(t, "", "check-config", "--set", "storage.driver=postgres", "--set", "storage.dsn=postgres://sb:hunter2@127.0.0.1:1/sb?connect_timeout=2", "--set", "storage.dir="+dir)
	if code != 0 {
		t.Fatalf("check-config refused a valid DSN: %s", errb)
	}
	code, _, errb = runCLI(t, "", "user", "list", "--set", "storage.driver=postgres", "--set", "storage.dsn=postgres://sb:hunter2@127.0.0.1:1/sb?connect_timeout=2")
	if code == 0 || !strings.Contains(errb, "storage.dsn") || !strings.Contains(errb, "127.0.0.1:1") || !strings.Contains(errb, "database unavailable") ||
		strings.Contains(errb, "hunter2") {
		t.Fatalf("user list on an unreachable database: exit %d, %s", code, errb)
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

// TestE2EPostgresOutage: the database stops while phones are registered.
// The node goes on from memory: a phone whose credentials are cached
// registers again, calls between registered phones complete; a subscriber
// never seen is refused (500, not 200). /readyz stays 200 and says
// "degraded: storage", switchboard_storage_up is 0; when the database is
// back, both say so and new registrations are stored again.
func TestE2EPostgresOutage(t *testing.T) {
	needSipp(t)
	pg, dsn := startPostgres(t)
	srv := startServerWith(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n",
		serverOptions{Storage: fmt.Sprintf("  driver: postgres\n  dsn: %q\n  timeout: 1s\n", dsn)})
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
	if !strings.Contains(srv.Log.String(), "storage unavailable") {
		t.Errorf("the log does not report the outage:\n%s", srv.Log)
	}

	// Cached credentials: alice registers again, and calls bob.
	if r := sippUA(t, srv, "register.xml", alicePort, "alice", "alice-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("alice re-registers during the outage: exit %d\n%s", r.Code, r.Output)
	}
	startSipp(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call.xml", alicePort, "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call alice -> bob during the outage: exit %d\n%s", r.Code, r.Output)
	}
	// carol's credentials were never read: nothing to authenticate her with.
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "carol", "carol-pw", "expires", "300"); r.Code == 0 || !strings.Contains(r.Output, "500") {
		t.Fatalf("carol (not cached) during the outage: exit %d\n%s", r.Code, r.Output)
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
