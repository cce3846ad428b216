package store

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testDialog(id uint64, callID string) Dialog {
	return Dialog{
		ID: id, CallID: callID,
		FromURI: "sip:alice@example.com", FromTag: "a1", ToURI: "sip:bob@example.com", ToTag: "b1",
		FromHdr: `"Alice" <sip:alice@example.com>;tag=a1`, ToHdr: "<sip:bob@example.com>",
		CallerCSeq: 10, CalleeCSeq: 0,
		CallerRouteSet: "<sip:10.0.0.9;lr>", CalleeRouteSet: "<sip:10.0.0.7;lr>, <sip:10.0.0.8;lr>",
		CallerContact: "sip:alice@127.0.0.1:5070", CalleeContact: "sip:bob@127.0.0.1:5080;transport=udp",
		CallerHop: "udp:127.0.0.1:5070", CalleeHop: "tcp:[::1]:5080",
		State: DialogConfirmed, StartTime: 1_700_000_000_000, AnswerTime: 1_700_000_001_000, Timeout: 1_700_000_061_000,
	}
}

// TestDialogs: dialogs written, replaced and deleted in batches come back
// as written, across a reopening of the database: a 64-bit id (above
// 2^63), profiles whose values hold the separators, and the order by
// start time.
func TestDialogs(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		a := testDialog(0xfedcba9876543210, "call-a@host")
		a.Profiles = []DialogProfile{{Name: "caller", Value: "al,ice=1%\xff"}, {Name: "inbound"}}
		a.Code, a.Phrase, a.Flags = 200, "OK", 1<<31|5
		a.Values = []DialogValue{{Name: "account", Value: "acme&co=1 %"}, {Name: "trunk", Value: ""}}
		a.CalleeFromHdr, a.CalleeToHdr, a.CSeqOffset = "<sip:+4930100@carrier.example>;tag=a1", "<sip:+4930200@carrier.example>;tag=b1", 1
		a.CallerContactSent, a.CalleeContactSent = "sip:alice@192.0.2.70:7070", "sip:bob@192.0.2.80:8080;transport=udp"
		b := testDialog(0x41ddda1940528765, "call-b@host")
		b.StartTime = a.StartTime - 5000
		c := testDialog(7, "call-c@host")
		if err := s.ApplyDialogs(ctx, []DialogOp{{DialogUpsert, a}, {DialogUpsert, b}, {DialogUpsert, c}, {DialogDelete, Dialog{ID: 7}}}); err != nil {
			t.Fatal(err)
		}
		// Another write of a: the CSeqs and the callee's target changed.
		a.CallerCSeq, a.CalleeCSeq, a.CalleeContact = 12, 3, "sip:bob@127.0.0.1:5081"
		if err := s.ApplyDialogs(ctx, []DialogOp{{DialogUpsert, a}, {DialogDelete, Dialog{ID: 99}}}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = db.open(t, Options{})
		got, bad, err := s.LoadDialogs(ctx)
		if err != nil || len(bad) != 0 || len(got) != 2 {
			t.Fatalf("loaded %d dialogs, bad %v, err %v", len(got), bad, err)
		}
		for i, want := range []Dialog{b, a} {
			g := got[i]
			if g.Updated == 0 {
				t.Errorf("dialog %x: updated not set", g.ID)
			}
			g.Updated, g.profiles, g.vars = 0, "", ""
			if !reflect.DeepEqual(g, want) {
				t.Errorf("dialog %d:\n got %+v\nwant %+v", i, g, want)
			}
		}
		if err := s.DeleteDialog(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		wantErr(t, s.DeleteDialog(ctx, a.ID), ErrNoDialog, "fedcba9876543210", "not stored")
		if list, err := s.ListDialogs(ctx); err != nil || len(list) != 1 || list[0].ID != b.ID {
			t.Fatalf("list after delete: %+v %v", list, err)
		}
	})
}

// TestDialogValidation: a malformed dialog is refused with the field
// named, and the batch it is in writes nothing.
func TestDialogValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		for _, c := range []struct {
			name  string
			edit  func(d *Dialog)
			words []string
		}{
			{"id 0", func(d *Dialog) { d.ID = 0 }, []string{"id 0"}},
			{"no call-id", func(d *Dialog) { d.CallID = "" }, []string{"callid: empty"}},
			{"no to tag", func(d *Dialog) { d.ToTag = "" }, []string{"to_tag: empty"}},
			{"header injection", func(d *Dialog) { d.ToHdr = "<sip:b@x>\r\nX-Evil: 1" }, []string{"to_hdr", "line break"}},
			{"callee's from", func(d *Dialog) { d.CalleeFromHdr = "<sip:a@x>\nX-Evil: 1" }, []string{"callee_from_hdr", "line break"}},
			{"route set too long", func(d *Dialog) { d.CalleeRouteSet = strings.Repeat("x", 5000) }, []string{"callee_route_set", "5000 bytes"}},
			{"hop without proto", func(d *Dialog) { d.CallerHop = "127.0.0.1:5060" }, []string{"caller_hop", "proto"}},
			{"hop hostname", func(d *Dialog) { d.CalleeHop = "udp:gw.example:5060" }, []string{"callee_hop"}},
			{"hop port 0", func(d *Dialog) { d.CallerHop = "udp:127.0.0.1:0" }, []string{"caller_hop", "port 0"}},
			{"no caller hop", func(d *Dialog) { d.CallerHop = "" }, []string{"caller_hop", "empty"}},
			{"state", func(d *Dialog) { d.State = 5 }, []string{"state 5"}},
			{"code", func(d *Dialog) { d.Code = 1000 }, []string{"code 1000"}},
			{"phrase", func(d *Dialog) { d.Phrase = "OK\r\nX: y" }, []string{"phrase", "line break"}},
			{"value name", func(d *Dialog) { d.Values = []DialogValue{{Name: "a=b", Value: "x"}} }, []string{`value "a=b"`}},
			{"no timeout", func(d *Dialog) { d.Timeout = 0 }, []string{"timeout 0"}},
			{"answered before the start", func(d *Dialog) { d.AnswerTime = d.StartTime - 1 }, []string{"answer_time 1699999999999", "start_time"}},
			{"answered after the timeout", func(d *Dialog) { d.AnswerTime = d.Timeout + 1 }, []string{"answer_time 1700000061001", "timeout"}},
			{"confirmed, not answered", func(d *Dialog) { d.AnswerTime = 0 }, []string{"answer_time 0", "confirmed"}},
			{"profile name", func(d *Dialog) { d.Profiles = []DialogProfile{{Name: "a,b"}} }, []string{`profile "a,b"`}},
			{"profile value", func(d *Dialog) { d.Profiles = []DialogProfile{{Name: "p", Value: strings.Repeat("v", 2000)}} }, []string{"profile p", "2000 bytes"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				d := testDialog(0x1234, "bad@host")
				c.edit(&d)
				ok := testDialog(0x99, "ok@host")
				err := s.ApplyDialogs(ctx, []DialogOp{{DialogUpsert, ok}, {DialogUpsert, d}})
				wantErr(t, err, ErrMalformedDialog, c.words...)
				if list, _ := s.ListDialogs(ctx); len(list) != 0 {
					t.Fatalf("a refused batch wrote %d dialogs", len(list))
				}
			})
		}
		err := s.ApplyDialogs(ctx, []DialogOp{{Kind: 9, Dialog: Dialog{ID: 1}}})
		wantErr(t, err, ErrMalformedDialog, "unknown operation 9")
	})
}

// TestDialogHops: a first hop over each of the transport's protocols is
// a dialog the store keeps (wss was refused: a WebSocket caller over TLS
// failed the dialog module's whole write-back batch); sctp is not one.
func TestDialogHops(t *testing.T) {
	for _, p := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		d := testDialog(1, "hops@host")
		d.CallerHop, d.CalleeHop = p+":127.0.0.1:5070", p+":[::1]:5080"
		if err := CheckDialog(&d); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	d := testDialog(1, "hops@host")
	d.CallerHop = "sctp:127.0.0.1:5070"
	wantErr(t, CheckDialog(&d), ErrMalformedDialog, "caller_hop", "sctp")
}

// TestLoadDialogsSkipsBadRows: rows edited by hand into something the
// proxy would put on the wire (a line break in a header value, a bad hop,
// a broken vars or profiles column) are reported, not loaded; the others
// load.
func TestLoadDialogsSkipsBadRows(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	var ops []DialogOp
	for i := uint64(1); i <= 8; i++ {
		ops = append(ops, DialogOp{DialogUpsert, testDialog(i, "c"+string(rune('0'+i))+"@host")})
	}
	if err := s.ApplyDialogs(ctx, ops); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, filepath.Join(dir, DefaultFileName))
	for _, q := range []string{
		`UPDATE dialog SET data = json_set(data, '$.from_hdr', 'a' || char(13) || char(10) || 'X-Evil: 1') WHERE dlg_id = 1`,
		`UPDATE dialog SET data = json_set(data, '$.caller_hop', 'sctp:127.0.0.1:5060') WHERE dlg_id = 2`,
		`UPDATE dialog SET data = json_set(data, '$.vars', 'novalue') WHERE dlg_id = 3`,
		`UPDATE dialog SET data = json_set(data, '$.profiles', 'caller=%zz') WHERE dlg_id = 4`,
		`UPDATE dialog SET data = json_set(data, '$.caller_cseq', -1) WHERE dlg_id = 6`,
		`UPDATE dialog SET data = json_set(data, '$.from_uri', json_object('hex', 'zz')) WHERE dlg_id = 7`,
		`UPDATE dialog SET data = '{"from_uri": ' WHERE dlg_id = 8`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	got, bad, err := s.LoadDialogs(ctx)
	if err != nil || len(got) != 1 || got[0].ID != 5 || len(bad) != 7 {
		t.Fatalf("loaded %+v, bad %v, err %v", got, bad, err)
	}
	for i, w := range []string{"0000000000000001: from_hdr", "0000000000000002: caller_hop", "0000000000000003: vars",
		"0000000000000004: profiles", "0000000000000006: data: caller_cseq -1 out of range",
		"0000000000000007: data: hex \"zz\"", "0000000000000008: data: unexpected end"} {
		if !strings.Contains(bad[i].Error(), w) {
			t.Errorf("bad row %d: %v, want %q", i, bad[i], w)
		}
	}
}

// TestDialogTableAfterPlaceholder: a database made by a binary that had
// step 8 reserved and empty (the accounting tables' step 9 landed first)
// gets the dialog table at its next open, and step 8's name.
func TestDialogTableAfterPlaceholder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFileName)
	// The binary that had step 8 reserved went up to step 9.
	migs := append([]migration(nil), sqliteMigrations[:9]...)
	migs[7] = migration{8, "reserved for the dialog table", nil}
	old, err := openSQLite(path, Options{BusyTimeout: time.Second, ChangeLogSize: 10}, migs)
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	s := openT(t, dir, Options{})
	if err := s.ApplyDialogs(ctx, []DialogOp{{DialogUpsert, testDialog(1, "after@host")}}); err != nil {
		t.Fatalf("no dialog table after the placeholder: %v", err)
	}
	var name string
	if err := rawDB(t, path).QueryRow(`SELECT name FROM schema_version WHERE version = 8`).Scan(&name); err != nil || name != "dialogs" {
		t.Fatalf("step 8 recorded as %q (%v)", name, err)
	}
	s.Close()
	s = openT(t, dir, Options{}) // applied once: a second open does not create it again
	if ds, _, err := s.LoadDialogs(ctx); err != nil || len(ds) != 1 {
		t.Fatalf("after a second open: %v %v", ds, err)
	}
}
