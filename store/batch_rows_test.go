package store

import (
	"fmt"
	"sort"
	"testing"
)

// TestBatchesOfManyRows: the batched writes in batches larger than one
// statement's rows (SQLite writes up to 32 rows per statement) and of
// every remainder: each row is written once, in order, with its own id.
// Dialogs: 77 upserts, 40 deletes of some of them, 5 upserts again of
// deleted ones and a second write of a live one in the same batch (the
// later row wins); CDRs: 71 records alternating in runs between acc and
// missed_calls, each given the id the table gave it. Every row's data
// (SQLite's JSON column) differs from the others' and comes back as its
// own: the rows of a statement share one buffer until it has run.
func TestBatchesOfManyRows(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		var ops []DialogOp
		withTag := func(d Dialog) Dialog { // the Call-ID in the data too
			d.FromTag = "tag-" + d.CallID
			d.FromHdr = "<sip:alice@example.com>;tag=" + d.FromTag
			return d
		}
		for i := 1; i <= 77; i++ {
			ops = append(ops, DialogOp{DialogUpsert, withTag(testDialog(uint64(i), fmt.Sprintf("call-%d", i)))})
		}
		for i := 1; i <= 40; i++ {
			ops = append(ops, DialogOp{Kind: DialogDelete, Dialog: Dialog{ID: uint64(i * 2)}}) // 2..80: 38 stored
		}
		for i := 1; i <= 5; i++ {
			ops = append(ops, DialogOp{DialogUpsert, withTag(testDialog(uint64(i*2), fmt.Sprintf("again-%d", i)))})
		}
		later := withTag(testDialog(3, "call-3"))
		later.CallerCSeq = 99
		ops = append(ops, DialogOp{DialogUpsert, later})
		if err := s.ApplyDialogs(ctx, ops); err != nil {
			t.Fatal(err)
		}
		got, bad, err := s.LoadDialogs(ctx)
		if err != nil || len(bad) != 0 {
			t.Fatal(bad, err)
		}
		want := map[uint64]string{}
		for i := 1; i <= 77; i += 2 {
			want[uint64(i)] = fmt.Sprintf("call-%d", i)
		}
		for i := 1; i <= 5; i++ {
			want[uint64(i*2)] = fmt.Sprintf("again-%d", i)
		}
		if len(got) != len(want) {
			t.Fatalf("%d dialogs stored, want %d", len(got), len(want))
		}
		for _, d := range got {
			if want[d.ID] != d.CallID {
				t.Errorf("dialog %d: call-id %q, want %q", d.ID, d.CallID, want[d.ID])
			}
			if d.FromTag != "tag-"+want[d.ID] || d.FromHdr != "<sip:alice@example.com>;tag="+d.FromTag {
				t.Errorf("dialog %d: from tag %q, header %q: another row's data", d.ID, d.FromTag, d.FromHdr)
			}
			if d.ID == 3 && d.CallerCSeq != 99 {
				t.Errorf("dialog 3 written twice in the batch: caller CSeq %d, want the later 99", d.CallerCSeq)
			}
		}

		const t0 = int64(1_700_000_000_000)
		var cs []CDR
		for i := 0; i < 71; i++ {
			c := cdrAt(fmt.Sprintf("cdr-%02d", i), "alice", "bob", t0+int64(i), i/20%2 == 1) // runs of 20
			c.FromTag = "tag-" + c.CallID
			cs = append(cs, c)
		}
		if err := s.AddCDRs(ctx, cs); err != nil {
			t.Fatal(err)
		}
		for _, missed := range []bool{false, true} {
			l, err := s.ListCDRs(ctx, CDRFilter{Missed: missed, Oldest: true})
			if err != nil {
				t.Fatal(err)
			}
			byCall := map[string]int64{}
			for _, c := range l {
				byCall[c.CallID] = c.ID
				if c.FromTag != "tag-"+c.CallID {
					t.Errorf("%s: from tag %q: another record's data", c.CallID, c.FromTag)
				}
			}
			n := 0
			var ids []int64
			for _, c := range cs {
				if c.Missed != missed {
					continue
				}
				n++
				ids = append(ids, c.ID)
				if byCall[c.CallID] != c.ID {
					t.Errorf("%s (missed %v): id %d given, %d stored", c.CallID, missed, c.ID, byCall[c.CallID])
				}
			}
			if len(l) != n {
				t.Errorf("missed %v: %d records stored, want %d", missed, len(l), n)
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			for i := 1; i < len(ids); i++ {
				if ids[i] == ids[i-1] {
					t.Errorf("missed %v: id %d given twice", missed, ids[i])
				}
			}
		}
	})
}
