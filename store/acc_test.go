package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func cdrAt(callID, from, to string, start int64, missed bool) CDR {
	return CDR{
		Missed: missed, CallID: callID, FromTag: "ft", ToTag: "tt",
		FromURI: "sip:" + from + "@example.com", FromUser: from, ToURI: "sip:" + to + "@example.com", ToUser: to,
		Caller: "192.0.2.7:5060", Start: start, Answer: start + 500, End: start + 2500, Duration: 2000,
		Code: 200, Reason: "OK", EndReason: "bye", EndedBy: "caller",
	}
}

// TestCDRs: records go to acc or missed_calls in one batch with their
// IDs; the filters (users, Call-ID, start time range, limit, order)
// select what they say; extra round-trips as a JSON object; a record
// that does not validate fails the batch before anything is written;
// DeleteCDRs removes what started before a time.
func TestCDRs(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		const t0 = int64(1_700_000_000_000)
		batch := []CDR{
			cdrAt("c1", "alice", "bob", t0, false),
			cdrAt("c2", "bob", "alice", t0+1000, false),
			cdrAt("c3", "alice", "carol", t0+2000, true),
			cdrAt("c4", "alice", "carol", t0+3000, false),
		}
		batch[3].Extra = map[string]string{"account": "1001", "plan": "gold \"x\""}
		batch[3].Answer, batch[3].Duration, batch[3].Code, batch[3].Reason, batch[3].EndReason, batch[3].EndedBy = 0, 0, 486, "Busy Here", "failed", "callee"
		if err := s.AddCDRs(ctx, batch); err != nil {
			t.Fatal(err)
		}
		for i, c := range batch {
			if c.ID == 0 {
				t.Fatalf("record %d: no ID", i)
			}
		}
		ids := func(f CDRFilter) string {
			t.Helper()
			l, err := s.ListCDRs(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range l {
				out = append(out, c.CallID)
			}
			return strings.Join(out, ",")
		}
		for _, tc := range []struct {
			f    CDRFilter
			want string
		}{
			{CDRFilter{}, "c4,c2,c1"},
			{CDRFilter{Oldest: true}, "c1,c2,c4"},
			{CDRFilter{Missed: true}, "c3"},
			{CDRFilter{FromUser: "alice"}, "c4,c1"},
			{CDRFilter{ToUser: "alice"}, "c2"},
			{CDRFilter{FromUser: "alice", ToUser: "bob"}, "c1"},
			{CDRFilter{CallID: "c2"}, "c2"},
			{CDRFilter{Since: t0 + 1000}, "c4,c2"},
			{CDRFilter{Until: t0 + 1000}, "c1"},
			{CDRFilter{Since: t0 + 500, Until: t0 + 3000}, "c2"},
			{CDRFilter{Limit: 2}, "c4,c2"},
			{CDRFilter{FromUser: "nobody"}, ""},
		} {
			if got := ids(tc.f); got != tc.want {
				t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
			}
		}
		l, err := s.ListCDRs(ctx, CDRFilter{CallID: "c4"})
		if err != nil || len(l) != 1 {
			t.Fatal(l, err)
		}
		want := batch[3]
		if got := l[0]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
		}

		// All or none: the third record is wrong, nothing is written.
		bad := []CDR{cdrAt("d1", "a", "b", t0, false), cdrAt("d2", "a", "b", t0, true), cdrAt("d3", "a", "b", t0, false)}
		bad[2].End = t0 - 1
		err = s.AddCDRs(ctx, bad)
		wantErr(t, err, ErrMalformedCDR, `"d3"`, "end_ms")
		if got := ids(CDRFilter{FromUser: "a"}) + ids(CDRFilter{FromUser: "a", Missed: true}); got != "" {
			t.Fatalf("a refused batch wrote %q", got)
		}
		for _, tc := range []struct {
			mod  func(c *CDR)
			want string
		}{
			{func(c *CDR) { c.CallID = "" }, "call_id"},
			{func(c *CDR) { c.Start = 0 }, "start_ms"},
			{func(c *CDR) { c.Answer = c.End + 1 }, "answer_ms"},
			{func(c *CDR) { c.Code = 700 }, "sip_code"},
			{func(c *CDR) { c.FromURI = strings.Repeat("x", 2049) }, "from_uri"},
		} {
			c := cdrAt("v", "a", "b", t0, false)
			tc.mod(&c)
			wantErr(t, s.AddCDRs(ctx, []CDR{c}), ErrMalformedCDR, tc.want)
		}
		_, err = s.ListCDRs(ctx, CDRFilter{Since: t0, Until: t0})
		wantErr(t, err, ErrMalformedCDR, "until", "empty")

		n, err := s.DeleteCDRs(ctx, false, t0+1000)
		if err != nil || n != 1 || ids(CDRFilter{}) != "c4,c2" || ids(CDRFilter{Missed: true}) != "c3" {
			t.Fatalf("delete: %d %v; left %q", n, err, ids(CDRFilter{}))
		}
		if _, err := s.DeleteCDRs(ctx, true, 0); !errors.Is(err, ErrMalformedCDR) {
			t.Fatalf("delete without a time: %v", err)
		}
	})
}

// Call records carry what SIP headers carried: NUL and bytes that are not
// UTF-8 are stored (as they are; PostgreSQL's text: as U+FFFD) rather than
// failing the batch with the other records.
func TestCDRForgedText(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		c := cdrAt("forged", "caf\xe9", "bob", 1_700_000_000_000, false)
		c.Reason, c.FromURI = "a\x00b", "sip:caf\xe9@example.com"
		must(t, s.AddCDRs(ctx, []CDR{c, cdrAt("plain", "alice", "bob", 1_700_000_000_001, false)}))
		l, err := s.ListCDRs(ctx, CDRFilter{CallID: "forged"})
		if err != nil || len(l) != 1 {
			t.Fatalf("%+v %v", l, err)
		}
		wantUser, wantReason := "caf\xe9", "a\x00b"
		if db.driver == DriverPostgres {
			wantUser, wantReason = "caf\uFFFD", "a\uFFFDb"
		}
		if l[0].FromUser != wantUser || l[0].Reason != wantReason {
			t.Fatalf("stored %q %q, want %q %q", l[0].FromUser, l[0].Reason, wantUser, wantReason)
		}
	})
}

// TestCDRRefusedByDatabase: a record the database refuses by a rule
// CheckCDR does not know (here a CHECK constraint, on SQLite a trigger,
// as an operator may add) fails its batch with ErrCDRRefused, so that
// modules/acc can leave that record out and write the others; an error
// about the database (closed, unreachable) is not ErrCDRRefused.
func TestCDRRefusedByDatabase(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		if db.driver == DriverSQLite {
			db.execRaw(t, s, `CREATE TRIGGER no_boom BEFORE INSERT ON acc_data WHEN NEW.call_id = 'boom'
				BEGIN SELECT RAISE(ABORT, 'no boom'); END`)
		} else {
			db.execRaw(t, s, `ALTER TABLE acc ADD CONSTRAINT no_boom CHECK (call_id <> 'boom')`)
		}
		const t0 = int64(1_700_000_000_000)
		err := s.AddCDRs(ctx, []CDR{cdrAt("fine", "alice", "bob", t0, false), cdrAt("boom", "alice", "bob", t0, false)})
		if !errors.Is(err, ErrCDRRefused) {
			t.Fatalf("refused row: %v, want ErrCDRRefused", err)
		}
		if n := db.count(t, s, "acc"); n != 0 {
			t.Fatalf("%d rows written of a refused batch", n)
		}
		must(t, s.AddCDRs(ctx, []CDR{cdrAt("fine", "alice", "bob", t0, false)}))
		s.Close()
		if err := s.AddCDRs(ctx, []CDR{cdrAt("closed", "alice", "bob", t0, false)}); err == nil || errors.Is(err, ErrCDRRefused) {
			t.Fatalf("closed store: %v, want an error other than ErrCDRRefused", err)
		}
	})
}

// TestSQLiteCDRIndexes: on SQLite the call records keep only the start
// time and Call-ID indexes (migration 12), on the data tables (migration
// 14), and the store's connections keep statement journals in memory; a
// per-user listing still answers (TestCDRs checks the filters on every
// backend); the WAL is checkpointed every 8192 pages.
func TestSQLiteCDRIndexes(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	db := s.b.(*SQLite).db
	for table, want := range map[string]string{"acc_data": "acc_call_id,acc_start", "missed_calls_data": "missed_calls_call_id,missed_calls_start"} {
		var got string
		if err := db.QueryRow(`SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master
			WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name)`, table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s indexes %q, want %q", table, got, want)
		}
	}
	var tempStore, checkpoint int
	if err := db.QueryRow(`PRAGMA temp_store`).Scan(&tempStore); err != nil || tempStore != 2 {
		t.Errorf("temp_store %d (%v), want 2 (memory)", tempStore, err)
	}
	if err := db.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&checkpoint); err != nil || checkpoint != 8192 {
		t.Errorf("wal_autocheckpoint %d (%v), want 8192 pages", checkpoint, err)
	}
}

// A database made before migration 12 keeps its call records when the
// per-user indexes go, and a per-user listing still finds them.
func TestCDRIndexMigrationKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	old, _ := openBeforeMigration(t, dir, "accounting: per-user indexes on server databases only")
	const t0 = int64(1_700_000_000_000)
	addCDRColumns(t, old, cdrAt("c1", "alice", "bob", t0, false), cdrAt("c2", "bob", "carol", t0+1, false),
		cdrAt("m1", "carol", "alice", t0+2, true))
	old.Close()

	s := openT(t, dir, Options{})
	for _, c := range []struct {
		f    CDRFilter
		want string
	}{
		{CDRFilter{FromUser: "bob"}, "c2"},
		{CDRFilter{ToUser: "bob"}, "c1"},
		{CDRFilter{Missed: true, FromUser: "carol"}, "m1"},
	} {
		got, err := s.ListCDRs(ctx, c.f)
		if err != nil || len(got) != 1 || got[0].CallID != c.want {
			t.Errorf("%+v: %+v %v, want %s", c.f, got, err, c.want)
		}
	}
}

// openBeforeMigration opens a new SQLite database in dir with the
// migrations before the one named, as a binary from before it made it.
func openBeforeMigration(t *testing.T, dir, name string) (*SQLite, Options) {
	t.Helper()
	step := -1
	for i, m := range sqliteMigrations {
		if m.name == name {
			step = i
		}
	}
	if step < 0 {
		t.Fatalf("no migration %q", name)
	}
	var opts Options
	opts.setDefaults()
	old, err := openSQLite(filepath.Join(dir, DefaultFileName), opts, sqliteMigrations[:step])
	if err != nil {
		t.Fatal(err)
	}
	return old, opts
}

// TestCheckCDRAllocatesNothing: the acc writer checks every record it
// writes; a valid one costs no allocation.
func TestCheckCDRAllocatesNothing(t *testing.T) {
	c := CDR{CallID: "a84b4c76e66710@pc33.example.com", FromTag: "1928301774", ToTag: "a6c85cf",
		FromURI: "sip:alice@example.com", FromUser: "alice", ToURI: "sip:bob@example.com", ToUser: "bob",
		Caller: "192.0.2.4:5060", Start: 1_700_000_000_000, Answer: 1_700_000_000_500, End: 1_700_000_060_000,
		Duration: 59_500, Code: 200, Reason: "OK", EndReason: "bye", EndedBy: "caller",
		Extra: map[string]string{"account": "1001"}}
	if n := testing.AllocsPerRun(100, func() {
		if err := CheckCDR(&c); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
