package store

import (
	"reflect"
	"testing"
)

// addCDRColumns writes records as a server from before migration 14 did:
// a column each.
func addCDRColumns(t *testing.T, old *SQLite, cs ...CDR) {
	t.Helper()
	for i := range cs {
		res, err := old.db.Exec(insertCDR(cs[i].Table()), cdrArgs(&cs[i])...)
		if err != nil {
			t.Fatal(err)
		}
		if cs[i].ID, err = res.LastInsertId(); err != nil {
			t.Fatal(err)
		}
	}
}

// readsBack checks that each record of want is the one record of its
// Call-ID, every field as it is there (no extra pairs and an empty map
// are the same).
func readsBack(t *testing.T, s *Store, want []CDR) {
	t.Helper()
	for _, w := range want {
		got, err := s.ListCDRs(ctx, CDRFilter{CallID: w.CallID, Missed: w.Missed})
		if err != nil || len(got) != 1 {
			t.Fatalf("%q: %+v %v", w.CallID, got, err)
		}
		if len(w.Extra) == 0 && len(got[0].Extra) == 0 {
			w.Extra, got[0].Extra = nil, nil
		}
		if !reflect.DeepEqual(got[0], w) {
			t.Errorf("read back\n%+v\nwant\n%+v", got[0], w)
		}
	}
}

// forgedCDR has in every text field what a forged header can carry:
// quotes, backslashes, control characters, NUL, bytes that are not UTF-8.
func forgedCDR(callID string, start int64) CDR {
	c := cdrAt(callID, "caf\xe9", "b\"o\\b", start, false)
	c.FromTag, c.ToTag, c.Caller = "t\x00g", "\x01\x1f", "[2001:db8::1]:5060"
	c.FromURI, c.ToURI = "sip:caf\xe9@example.com", `"sip:\"x\"@example.com\n`
	c.Reason, c.EndReason, c.EndedBy = "Ring\xffing", "<bye>&", "\t"
	c.Code = 699
	c.Extra = map[string]string{"account": "10\"01", "": "empty key", "k\\": "\r\n", "<&>": "é"}
	return c
}

// TestCDRDataKeepsBytes: a record's text comes back byte for byte through
// the view (SQLite), its numbers as integers, and the view shows the
// columns a billing script reads.
func TestCDRDataKeepsBytes(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	want := []CDR{forgedCDR("forged@host", 1_700_000_000_000), cdrAt("plain@host", "alice", "bob", 1_700_000_000_001, false),
		cdrAt("missed@host", "bob", "alice", 1_700_000_000_002, true)}
	want[1].Extra = map[string]string{}
	must(t, s.AddCDRs(ctx, want))
	readsBack(t, s, want)
	var (
		user, extra, codeType string
		code, duration        int64
	)
	err := s.b.(*SQLite).db.QueryRow(`SELECT from_user, sip_code, typeof(sip_code), duration_ms, extra FROM acc WHERE call_id = 'plain@host'`).
		Scan(&user, &code, &codeType, &duration, &extra)
	if err != nil || user != "alice" || code != 200 || codeType != "integer" || duration != 2000 || extra != "{}" {
		t.Fatalf("the acc view: %q %d %s %d %q (%v)", user, code, codeType, duration, extra, err)
	}
	n, err := s.DeleteCDRs(ctx, false, 1_700_000_000_001)
	if err != nil || n != 1 {
		t.Fatalf("DeleteCDRs: %d %v, want 1", n, err)
	}
}

// TestCDRDataMigration: records written in columns before migration 14
// read back the same after it, forged bytes and a malformed extra
// included; the ids go on from the old table's counter (an id freed at
// the top is not handed out again); the filters, the deletion and the
// indexes work on the new tables.
func TestCDRDataMigration(t *testing.T) {
	dir := t.TempDir()
	old, _ := openBeforeMigration(t, dir, "accounting: one data column on SQLite")
	const t0 = int64(1_700_000_000_000)
	want := []CDR{forgedCDR("forged@host", t0), cdrAt("c2", "bob", "carol", t0+1, false), cdrAt("m1", "carol", "alice", t0+2, true),
		cdrAt("gone", "dave", "erin", t0+3, false)}
	want[1].Extra = map[string]string{"plan": "gold"}
	addCDRColumns(t, old, want...)
	if _, err := old.db.Exec(`INSERT INTO acc (call_id, start_ms, end_ms, extra) VALUES ('bad-extra', ?, ?, 'not json')`, t0+4, t0+5); err != nil {
		t.Fatal(err)
	}
	addCDRColumns(t, old, cdrAt("gone-top", "x", "y", t0+6, false))
	if _, err := old.db.Exec(`DELETE FROM acc WHERE call_id IN ('gone', 'gone-top')`); err != nil {
		t.Fatal(err)
	}
	old.Close()
	want = want[:3]

	s := openT(t, dir, Options{})
	readsBack(t, s, want)
	var extra string
	if err := s.b.(*SQLite).db.QueryRow(`SELECT extra FROM acc WHERE call_id = 'bad-extra'`).Scan(&extra); err != nil || extra != "not json" {
		t.Fatalf("a malformed extra reads %q (%v), want it as it was", extra, err)
	}
	if got, err := s.ListCDRs(ctx, CDRFilter{FromUser: "bob"}); err != nil || len(got) != 1 || got[0].CallID != "c2" {
		t.Fatalf("per user: %+v %v", got, err)
	}
	next := []CDR{cdrAt("new", "frank", "gina", t0+10, false)}
	must(t, s.AddCDRs(ctx, next))
	if next[0].ID != 6 { // acc had 1-5: 3 and 5 deleted, 4 the malformed extra
		t.Fatalf("new record's id %d, want 6", next[0].ID)
	}
	if n, err := s.DeleteCDRs(ctx, true, t0+3); err != nil || n != 1 {
		t.Fatalf("DeleteCDRs(missed): %d %v, want 1", n, err)
	}
	rows, err := s.b.(*SQLite).db.Query(`EXPLAIN QUERY PLAN SELECT * FROM acc WHERE call_id = 'c2'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var usesIndex bool
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		usesIndex = usesIndex || detail == "SEARCH acc_data USING INDEX acc_call_id (call_id=?)"
	}
	if !usesIndex {
		t.Fatal("a lookup by Call-ID does not use acc_call_id")
	}
}
