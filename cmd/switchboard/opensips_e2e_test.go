package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/store"
)

// openSIPSDatabase creates the OpenSIPS 3.x tables (the store's test DDL)
// in the database switchboard of a test server and provisions it as
// opensips-cli does: the domain, subscribers whose digests the database
// computes (md5 of user:realm:password), a trusted address, a dialplan
// rule and a drouting gateway and rule. It returns the raw connection.
func openSIPSDatabase(t *testing.T, driver, dsn string, gwPort int) *sql.DB {
	t.Helper()
	sqlDriver := "pgx"
	if driver == "mysql" {
		sqlDriver = "mysql"
	}
	db, err := sql.Open(sqlDriver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ddl, err := os.ReadFile(filepath.Join("..", "..", "store", "testdata", "opensips", driver+".sql"))
	if err != nil {
		t.Fatal(err)
	}
	stmts := strings.Split(string(ddl), ";\n")
	md5 := `md5(CAST(? AS TEXT))`
	if driver == "mysql" {
		md5 = `MD5(?)`
	}
	for _, u := range []string{"alice", "bob"} {
		stmts = append(stmts, `INSERT INTO subscriber (username, domain, password, ha1) VALUES ('`+u+`', 'localhost', '', `+md5+`)`+"\x00"+u+":localhost:"+u+"-pw")
	}
	stmts = append(stmts,
		store.LocationIndex, // the one step docs/opensips-migration.md asks for
		`INSERT INTO domain (domain, last_modified) VALUES ('localhost', '2024-05-01 10:00:00')`,
		`INSERT INTO address (grp, ip, mask, port, proto, context_info) VALUES (1, '127.0.0.2', 32, 0, 'any', 'gateway')`,
		`INSERT INTO dialplan (dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp) VALUES (1, 0, 1, '^0([1-9][0-9]+)$', 0, '^0([1-9][0-9]+)$', ?)`+"\x00+33\\1",
		`INSERT INTO dr_gateways (gwid, type, address, strip) VALUES ('gw', 0, 'sip:127.0.0.2:`+strconv.Itoa(gwPort)+`', 0)`,
		`INSERT INTO dr_rules (groupid, prefix, priority, gwlist, sort_alg) VALUES ('0', '+33', 0, 'gw', 'N')`)
	for _, s := range stmts {
		var args []any
		if q, arg, ok := strings.Cut(s, "\x00"); ok {
			s, args = q, []any{arg}
		}
		if onlyComments(s) {
			continue
		}
		if driver == "postgres" {
			s = strings.Replace(s, "?", "$1", 1)
		}
		if _, err := db.ExecContext(context.Background(), s, args...); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return db
}

func onlyComments(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}

// TestE2EOpenSIPSSchema: Switchboard on a database provisioned for
// OpenSIPS (storage.schema: opensips), PostgreSQL then MariaDB. The
// subscribers opensips-cli made authenticate (a wrong password does not);
// a REGISTER lands in location in OpenSIPS's layout and is loaded again
// after a restart; a call between subscribers writes its record to acc,
// a call to a busy phone to missed_calls; a national number is made E.164
// by the dialplan rule and routed to the gateway of dr_rules; the trusted
// address is loaded, and a call from it is written to dialog and survives
// a restart; an OpenSIPS database missing a column is refused at start
// with the column named.
func TestE2EOpenSIPSSchema(t *testing.T) {
	t.Parallel()
	needSipp(t)
	eachServerDriver(t, testOpenSIPSSchema)
}

func testOpenSIPSSchema(t *testing.T, driver string) {
	_, storage, dsn := startDatabase(t, driver)
	gwPort := freeSIPPort(t)
	db := openSIPSDatabase(t, driver, dsn, gwPort)
	srv := startServerWith(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\nprovider:\n  dialplan_id: 1\n",
		serverOptions{Storage: storage + "  schema: opensips\n"})
	q := func(s string) string {
		if driver == "postgres" {
			for i := 1; strings.Contains(s, "?"); i++ {
				s = strings.Replace(s, "?", "$"+strconv.Itoa(i), 1)
			}
		}
		return s
	}

	bobPort := freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob with opensips-cli's credentials: exit %d\n%s", r.Code, r.Output)
	}
	if r := sippUA(t, srv, "register.xml", freeSIPPort(t), "alice", "wrong", "expires", "300"); r.Code == 0 {
		t.Fatalf("a wrong password registered:\n%s", r.Output)
	}
	// The registrar writes behind: the row comes within moments.
	contact := "sip:bob@127.0.0.1:" + strconv.Itoa(bobPort)
	var expires int64
	var callid, received string
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := db.QueryRow(q(`SELECT expires, callid, COALESCE(received, '') FROM location WHERE username = ? AND domain = ? AND contact = ?`),
			"bob", "localhost", contact).Scan(&expires, &callid, &received)
		if err == nil {
			break
		}
		if err != sql.ErrNoRows || time.Now().After(deadline) {
			t.Fatalf("bob's row in location: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if now := time.Now().Unix(); expires < now+290 || expires > now+301 || callid == "" {
		t.Fatalf("bob's location row: expires %d (now %d), callid %q, received %q", expires, now, callid, received)
	}

	// A subscriber added with Switchboard's CLI is a row OpenSIPS can use:
	// the database's own md5 of user:realm:password is its ha1.
	addUser(t, srv, "carol@localhost", "carol-pw")
	md5 := `md5(CAST(? AS TEXT))`
	if driver == "mysql" {
		md5 = `MD5(?)`
	}
	var same bool
	if err := db.QueryRow(q(`SELECT ha1 = `+md5+` FROM subscriber WHERE username = 'carol' AND domain = 'localhost'`),
		"carol:localhost:carol-pw").Scan(&same); err != nil || !same {
		t.Fatalf("carol's ha1 is not md5(carol:localhost:carol-pw): %v %v", same, err)
	}

	// The modules loaded OpenSIPS's tables.
	m := srv.metrics()
	if m["switchboard_permissions_entries_total"] != 1 || m["switchboard_dialplan_rules"] != 1 || m["switchboard_drouting_rules"] != 1 {
		t.Fatalf("loaded: permissions %v, dialplan %v, drouting %v", m["switchboard_permissions_entries_total"], m["switchboard_dialplan_rules"], m["switchboard_drouting_rules"])
	}

	// alice calls bob: answered, a record in acc.
	answer := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call alice -> bob: exit %d\n%s", r.Code, r.Output)
	}
	if code := answer.wait(10 * time.Second); code != 0 {
		t.Fatalf("bob's phone: exit %d\n%s", code, answer.out.String())
	}
	waitRows(t, db, `SELECT COUNT(*) FROM acc WHERE method = 'INVITE' AND sip_code = '200' AND sip_reason = 'OK'`, 1)

	// A busy phone: missed_calls.
	busy := startSippPeer(t, "-sf", "uas_busy.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call_486.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "bob"); r.Code != 0 {
		t.Fatalf("call to busy bob: exit %d\n%s", r.Code, r.Output)
	}
	busy.wait(10 * time.Second)
	waitRows(t, db, `SELECT COUNT(*) FROM missed_calls WHERE sip_code = '486'`, 1)

	// A national number: dialplan 1 makes it +33..., dr_rules sends it to
	// the gateway, which gets the E.164 number.
	gwLog := filepath.Join(t.TempDir(), "gw.log")
	startSipp(t, "-sf", "uas_gateway.xml", "-i", "127.0.0.2", "-p", strconv.Itoa(gwPort), "-trace_msg", "-message_file", gwLog)
	time.Sleep(100 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call.xml", freeSIPPort(t), "alice", "alice-pw", "callee", "0612345678"); r.Code != 0 {
		t.Fatalf("call to 0612345678: exit %d\n%s", r.Code, r.Output)
	}
	if got, _ := os.ReadFile(gwLog); !strings.Contains(string(got), "INVITE sip:+33612345678@127.0.0.2:"+strconv.Itoa(gwPort)) {
		t.Fatalf("the gateway did not get the E.164 number:\n%s", got)
	}

	// A restart: bob's binding is loaded from location.
	srv.restart()
	if l := bindings(t, srv, "bob@localhost"); len(l) != 1 || l[0].Contact != contact {
		t.Fatalf("bob's bindings after the restart: %+v", l)
	}

	// A call from the trusted gateway address to bob, held: the dialog
	// module writes it to dialog in OpenSIPS's columns; it is restored by
	// a restart in the middle of the call, whose BYE then goes through.
	callee := startSippPeer(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	held := make(chan sippResult, 1)
	go func() {
		held <- runSipp(t, 40*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.2", "-p", strconv.Itoa(freeSIPPort(t)),
			"-key", "ruri", "sip:bob@localhost", "-d", "8000", "-m", "1", "127.0.0.1:"+strconv.Itoa(srv.Port))
	}()
	waitRows(t, db, `SELECT COUNT(*) FROM dialog WHERE state = 4 AND from_uri LIKE 'sip:caller@127.0.0.2:%'`, 1)
	srv.restart()
	if list := dialogList(t, srv, `{}`); len(list) != 1 || list[0]["state"] != "confirmed" {
		t.Fatalf("dialogs after the restart: %v", list)
	}
	if r := <-held; r.Code != 0 {
		t.Fatalf("held call across the restart: exit %d\n%s", r.Code, r.Output)
	}
	if code := callee.wait(10 * time.Second); code != 0 {
		t.Fatalf("bob's phone: exit %d\n%s", code, callee.out.String())
	}
	waitRows(t, db, `SELECT COUNT(*) FROM dialog`, 0)

	// A database missing a column: the server refuses to start, naming it.
	if _, err := db.Exec(`ALTER TABLE subscriber DROP COLUMN ha1_sha256`); err != nil {
		t.Fatal(err)
	}
	code, _, errb := runCLI(t, "", "user", "list", "--set", "storage.driver="+driver, "--set", "storage.dsn="+dsn,
		"--set", "storage.schema=opensips", "--set", "storage.dir="+t.TempDir())
	if code == 0 || !strings.Contains(errb, "table subscriber has no column ha1_sha256") {
		t.Fatalf("user list on a subscriber table without ha1_sha256: exit %d, %s", code, errb)
	}
}

// waitRows waits until query counts want rows.
func waitRows(t *testing.T, db *sql.DB, query string, want int) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := db.QueryRow(query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d rows, want %d", query, n, want)
		}
	}
}

// TestE2EOpenSIPSSets: the dispatch route set on an OpenSIPS database
// (PostgreSQL): a destination in OpenSIPS's dispatcher table, written as
// opensips-cli writes it (no port), takes the calls; one added with
// Switchboard's CLI is a row OpenSIPS can read, and the running server
// loads it; an rtpengine row of two sockets (one with =weight) is two
// instances of the running server, and removing one socket with the CLI
// leaves the other in the row.
func TestE2EOpenSIPSSets(t *testing.T) {
	t.Parallel()
	needSipp(t)
	_, storage, dsn := startDatabase(t, "postgres")
	db := openSIPSDatabase(t, "postgres", dsn, freeSIPPort(t))
	a, b := startSippUAS(t, "uas_dispatch.xml"), startSippUAS(t, "uas_dispatch.xml")
	rtpA, rtpB := freeSIPPort(t), freeSIPPort(t)
	for _, q := range []string{
		`INSERT INTO dispatcher (setid, destination, weight, description) VALUES (1, 'sip:127.0.0.1:` + strconv.Itoa(a.port) + `', '1', 'pbx a')`,
		`INSERT INTO rtpengine (socket, set_id) VALUES ('udp:127.0.0.1:` + strconv.Itoa(rtpA) + ` udp:127.0.0.1:` + strconv.Itoa(rtpB) + `=3', 0)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	srv := startServerWith(t, "routes: dispatch\ndispatcher:\n  dispatch_set: 1\n  dispatch_algorithm: round_robin\n  probe_interval: 0s\n  poll_interval: 50ms\n",
		serverOptions{Storage: storage + "  schema: opensips\n"})
	waitDests(t, srv, 1)
	dispatchCalls(t, srv, 4, 20, 10*time.Millisecond)

	if out := dsCLI(t, srv, "add", b.uri(), "--setid", "1", "--description", "pbx b"); !strings.Contains(out, "set 1 "+b.uri()) {
		t.Fatalf("add: %s", out)
	}
	var dest, weight string
	if err := db.QueryRow(`SELECT destination, weight FROM dispatcher WHERE description = 'pbx b'`).Scan(&dest, &weight); err != nil ||
		dest != b.uri() || weight != "1" {
		t.Fatalf("the row added by the CLI: %q %q %v", dest, weight, err)
	}
	waitDests(t, srv, 2)
	dispatchCalls(t, srv, 4, 20, 10*time.Millisecond)
	if na, nb := a.calls(), b.calls(); na != 6 || nb != 2 {
		t.Fatalf("calls: %d to the destination OpenSIPS's tools wrote, %d to the one the CLI added; want 6 and 2", na, nb)
	}

	code, body := srv.api("rtpengine.list", "")
	if code != 200 || !strings.Contains(string(body), "127.0.0.1:"+strconv.Itoa(rtpA)) || !strings.Contains(string(body), "127.0.0.1:"+strconv.Itoa(rtpB)) {
		t.Fatalf("rtpengine.list: %d %s", code, body)
	}
	code, out, errb := runCLI(t, "", "rtpengine", "remove", "udp:127.0.0.1:"+strconv.Itoa(rtpA), "-c", srv.Config)
	if code != 0 {
		t.Fatalf("rtpengine remove: exit %d %s %s", code, out, errb)
	}
	var socket string
	if err := db.QueryRow(`SELECT socket FROM rtpengine`).Scan(&socket); err != nil || socket != "udp:127.0.0.1:"+strconv.Itoa(rtpB)+"=3" {
		t.Fatalf("the row after one socket was removed: %q %v", socket, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = srv.api("rtpengine.list", "")
		if !strings.Contains(string(body), "127.0.0.1:"+strconv.Itoa(rtpA)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running server still uses the removed socket: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
