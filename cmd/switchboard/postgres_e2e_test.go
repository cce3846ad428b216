package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"switchboard/store/pgtest"
)

// startPostgres starts a PostgreSQL server for one test and creates the
// database switchboard in it; the test skips where PostgreSQL is not
// installed.
func startPostgres(t *testing.T) (dsn string) {
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
	return srv.DSN("switchboard")
}

// TestE2EPostgresStorage: two nodes, each with its own storage.dir, on one
// PostgreSQL database. Subscribers added with the CLI (on the postgres
// driver too) authenticate on both; a registration made through node A is
// in the database, and node B, started afterwards, loads it.
func TestE2EPostgresStorage(t *testing.T) {
	needSipp(t)
	dsn := startPostgres(t)
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
