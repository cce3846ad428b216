package store

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// forgedDialog is a dialog whose text came from headers a caller chose:
// bytes that are not UTF-8, quotes, backslashes, control characters
// (all but CR, LF and NUL pass CheckDialog), text that looks like JSON,
// and every number at its largest.
func forgedDialog(id uint64) Dialog {
	d := testDialog(id, "forged-\xff\xfe@host")
	d.FromHdr = "\"Al\\\"ice\" <sip:al\xe9@example.com>;tag=a1\t\x01"
	d.ToHdr = `<sip:bob@example.com>;x="{\"hex\":\"00\"}"`
	d.CalleeFromHdr = "<sip:J\u00fcrgen@example.com>;tag=a1 \u2028"
	d.CallerRouteSet = `{"hex":"41"}`
	d.Phrase = "Ring\xc3"
	d.CallerCSeq, d.CalleeCSeq, d.CSeqOffset, d.Flags = 1<<32-1, 1<<32-1, 1<<32-1, 1<<32-1
	d.Code = 699
	d.Profiles = []DialogProfile{{Name: "caller", Value: "al,ice=1%\xff"}}
	d.Values = []DialogValue{{Name: "note", Value: "\"}\\"}}
	return d
}

// TestDialogDataKeepsBytes: on SQLite a dialog's data object gives back
// every byte written, text that is not UTF-8 included, and an operator
// can read a member with SQL.
func TestDialogDataKeepsBytes(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	want := []Dialog{forgedDialog(1), testDialog(2, "plain@host")}
	if err := s.ApplyDialogs(ctx, []DialogOp{{DialogUpsert, want[0]}, {DialogUpsert, want[1]}}); err != nil {
		t.Fatal(err)
	}
	loadsAs(t, s, want)
	var hdr, phrase, route string
	err := rawDB(t, filepath.Join(dir, DefaultFileName)).QueryRow(
		`SELECT data->>'to_hdr', data->>'phrase', data->>'caller_route_set' FROM dialog WHERE dlg_id = 1`).Scan(&hdr, &phrase, &route)
	if err != nil || hdr != want[0].ToHdr || phrase != `{"hex":"52696e67c3"}` || route != `{"hex":"41"}` {
		t.Fatalf("SQL reads to_hdr %q, phrase %q, caller_route_set %q (%v)", hdr, phrase, route, err)
	}
}

// TestDialogDataMigration: dialogs stored in the columns of before
// migration 13 are read back the same after it, their bytes kept (a
// text of anything but printable ASCII moves in its hex form).
func TestDialogDataMigration(t *testing.T) {
	dir := t.TempDir()
	old, _ := openBeforeMigration(t, dir, "dialog: one data column on SQLite")
	want := []Dialog{forgedDialog(1), testDialog(2, "plain@host"), testDialog(0xfedcba9876543210, "high-id@host")}
	want[1].StartTime++
	want[2].StartTime += 2
	// The columns of step 8's table: those of step 16 came later.
	cols, _, _ := strings.Cut(dialogCols, ",\n\tcaller_contact_sent")
	n := countCols(cols)
	for i := range want {
		d := want[i]
		d.profiles, d.vars, d.Updated = encodeProfiles(d.Profiles), encodeValues(d.Values), 1
		if _, err := old.db.Exec(`INSERT INTO dialog (`+cols+`) VALUES `+inSQL("", n), dialogArgs(&d, keepText)[:n]...); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	s := openT(t, dir, Options{})
	loadsAs(t, s, want)
	var indexes int
	if err := rawDB(t, filepath.Join(dir, DefaultFileName)).QueryRow(
		`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dialog'`).Scan(&indexes); err != nil || indexes != 0 {
		t.Fatalf("%d indexes on dialog after the upgrade (%v), want none", indexes, err)
	}
	// The table is the new one: writes and deletes go on.
	if err := s.ApplyDialogs(ctx, []DialogOp{{DialogDelete, Dialog{ID: 1}}, {DialogUpsert, testDialog(3, "new@host")}}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.LoadDialogs(ctx); err != nil || len(got) != 3 {
		t.Fatalf("after the upgrade: %d dialogs, %v", len(got), err)
	}
}

// loadsAs fails t unless s loads exactly want, in order, field by field
// (the time of writing aside).
func loadsAs(t *testing.T, s *Store, want []Dialog) {
	t.Helper()
	got, bad, err := s.LoadDialogs(ctx)
	if err != nil || len(bad) != 0 || len(got) != len(want) {
		t.Fatalf("loaded %d, bad %v, err %v", len(got), bad, err)
	}
	for i := range got {
		g := got[i]
		g.Updated, g.profiles, g.vars = 0, "", ""
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("dialog %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
}

// TestLosslessJSONString: a UTF-8 text reads back the same through
// encoding/json wherever its escapes fall (first, last, in a row, alone).
func TestLosslessJSONString(t *testing.T) {
	for _, s := range []string{"", "a", `"`, `\`, "\x00", "\x1f", `a"b\c`, "\r\n", `""`, "\tx\t",
		"<sip:a@b;lr>", "é\x01ü", `\\"\\`, "end\n"} {
		b := appendLosslessJSON(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("%q: encoded %s, read back %q (%v)", s, b, got, err)
		}
	}
}
