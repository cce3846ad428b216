package store

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// execRaw runs a statement without placeholders on s's database, as
// another tool would.
func (db *testDB) execRaw(t testing.TB, s *Store, q string) {
	t.Helper()
	var err error
	switch b := s.b.(type) {
	case *SQLite:
		_, err = b.db.ExecContext(ctx, q)
	case *Postgres:
		_, err = b.pool.Exec(ctx, q)
	case *MySQL:
		_, err = b.db.ExecContext(ctx, q)
	}
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestLoadBindingsOneBadRow: a location row with q = -1 (OpenSIPS's "no
// q", copied as it is) made the whole load fail ("invalid syntax"): the
// registrar's start failed, and the server did not start, for every
// subscriber. Now it loads with the default q 1000, as a contact
// registered without q.
func TestLoadBindingsOneBadRow(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	good := Binding{AOR: "alice@example.com", Contact: "sip:alice@192.0.2.1", Expires: unixNow() + 3600, Q: 1000}
	must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: good}}))
	db := rawDB(t, filepath.Join(dir, DefaultFileName))
	if _, err := db.Exec(`INSERT INTO location (aor, binding_key, contact, q, expires, last_modified)
		VALUES ('bob@example.com', 'sip:bob@192.0.2.2', 'sip:bob@192.0.2.2', -1, ?, ?)`, unixNow()+3600, unixNow()); err != nil {
		t.Fatal(err)
	}
	bs, bad, err := s.LoadBindings(ctx, time.Now())
	if err != nil {
		t.Fatalf("one row with q = -1 fails the whole load: %v", err)
	}
	if len(bs) != 2 || len(bad) != 0 || bs[1].AOR != "bob@example.com" || bs[1].Q != 1000 {
		t.Fatalf("loaded %+v, bad %v; want alice and bob, bob with q 1000", bs, bad)
	}
}

// TestLoadBindingsSkipsRowsOutOfRange: on every backend, rows written by
// hand with a value their binding field cannot hold (q above 1000, a
// cseq, reg_id or flags outside a uint32; on SQLite, which keeps any
// value, text or a fraction in an integer column) are reported with the
// column and what is wrong, and not loaded; the others load. Before, one
// such row failed LoadBindings whole, on every backend.
func TestLoadBindingsSkipsRowsOutOfRange(t *testing.T) {
	eachBackend(t, func(t *testing.T, tdb *testDB) {
		s := tdb.open(t, Options{})
		exp := unixNow() + 3600
		good := Binding{AOR: "alice@example.com", Contact: "sip:alice@192.0.2.1", Expires: exp, Q: 500, CSeq: 7}
		must(t, s.ApplyBindings(ctx, []BindingOp{{Kind: OpUpsert, Binding: good}}))
		row := func(user, q, cseq, regID, flags string) {
			tdb.execRaw(t, s, fmt.Sprintf(`INSERT INTO location (aor, binding_key, contact, received, path, q, expires, call_id, cseq,
				user_agent, instance, reg_id, socket, flags, last_modified)
				VALUES ('%[1]s@example.com', 'k-%[1]s', 'sip:%[1]s@192.0.2.2', '', '', %[2]s, %[6]d, 'c', %[3]s, '', '', %[4]s, '', %[5]s, %[6]d)`,
				user, q, cseq, regID, flags, exp))
		}
		row("bob", "-1", "1", "0", "0") // OpenSIPS's "no q": loaded, q 1000
		want := []string{
			"carol@example.com: q 5000 outside 0 to 1000",
			"dave@example.com: cseq 4294967296 outside 0 to 4294967295",
			"erin@example.com: reg_id -2 outside 0 to 4294967295",
			"frank@example.com: flags -1 outside 0 to 4294967295",
		}
		row("carol", "5000", "1", "0", "0")
		row("dave", "1000", "4294967296", "0", "0")
		row("erin", "1000", "1", "-2", "0")
		row("frank", "1000", "1", "0", "-1")
		if tdb.driver == DriverSQLite {
			row("gina", "'high'", "1", "0", "0")
			row("hank", "1000", "1.5", "0", "0")
			want = append(want, `gina@example.com: q: "high" is not an integer`, "hank@example.com: cseq: 1.5 is not an integer")
		}
		bs, bad, err := s.LoadBindings(ctx, time.Now())
		if err != nil {
			t.Fatalf("bad rows fail the whole load: %v", err)
		}
		if len(bs) != 2 || bs[0].AOR != "alice@example.com" || bs[0].Q != 500 || bs[0].CSeq != 7 || bs[1].AOR != "bob@example.com" || bs[1].Q != 1000 {
			t.Fatalf("loaded %+v; want alice (q 500) and bob (q 1000)", bs)
		}
		if len(bad) != len(want) {
			t.Fatalf("bad rows %v, want %d", bad, len(want))
		}
		for i, w := range want {
			if !strings.Contains(bad[i].Error(), w) {
				t.Errorf("bad row %d: %v, want %q", i, bad[i], w)
			}
		}
	})
}

// TestOpenSIPSLocationSkipsRowsOutOfRange: in OpenSIPS's location table
// (cseq and flags signed), a row with a negative cseq or flags is
// reported and not loaded, where it was wrapped to 4294967295 (a refresh
// of that registration would then be taken for an old retransmission);
// q -1, OpenSIPS's "no q", loads as 1000.
func TestOpenSIPSLocationSkipsRowsOutOfRange(t *testing.T) {
	eachOpenSIPS(t, func(t *testing.T, db *osDB) {
		s := db.open(t, Options{})
		exp := time.Now().Add(time.Hour).Unix()
		ins := func(user string, cseq, flags int64) {
			db.exec(t, `INSERT INTO location (username, domain, contact, expires, q, callid, cseq, flags, last_modified)
				VALUES (?, 'example.com', ?, ?, -1, 'c', ?, ?, '2024-05-01 10:00:00')`, user, "sip:"+user+"@203.0.113.5", exp, cseq, flags)
		}
		ins("alice", 3, 1)
		ins("bob", -1, 0)
		ins("carol", 1, -8)
		bs, bad, err := s.LoadBindings(ctx, time.Now())
		must(t, err)
		if len(bs) != 1 || bs[0].AOR != "alice@example.com" || bs[0].Q != 1000 || bs[0].CSeq != 3 || bs[0].Flags != 1 {
			t.Fatalf("loaded %+v; want alice alone", bs)
		}
		if len(bad) != 2 || !strings.Contains(bad[0].Error(), "bob@example.com: cseq -1 outside") || !strings.Contains(bad[1].Error(), "carol@example.com: flags -8 outside") {
			t.Fatalf("bad rows %v", bad)
		}
	})
}
