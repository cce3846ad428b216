package acc

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/modules/dialog"
	"switchboard/modules/internal/fieldtext"
	"switchboard/store"
)

// endEvent is a dialog's end event as the dialog module builds it.
func endEvent(callID, from, to string) *dialog.Event {
	return &dialog.Event{
		Kind: dialog.EventEnded, ID: 7, CallID: []byte(callID), FromTag: []byte("ft"), ToTag: []byte("tt"),
		From: []byte(from), To: []byte(to), Caller: netip.MustParseAddrPort("192.0.2.7:5062"),
		Start: 1_700_000_000_000, Answer: 1_700_000_001_000, End: 1_700_000_061_500,
		Code: 200, Phrase: []byte("OK"), Reason: dialog.ReasonBye, By: dialog.Callee,
	}
}

// built runs ev through the subscriber of a module whose writer does not
// run and returns the record it queued, as the writer would write it.
func built(t *testing.T, a *Acc, ev *dialog.Event) (store.CDR, bool) {
	t.Helper()
	a.onEvent(ev)
	select {
	case r := <-a.queue:
		defer a.release(r)
		var text fieldtext.Fields
		return r.cdr(&text), true
	default:
		return store.CDR{}, false
	}
}

// TestRecordBuilding: what the record of an end event holds: URIs and
// users of From and To whatever their form (display name, addr-spec,
// tel:, no user, unparsable), the caller's address, times and duration,
// the route's values as extra, text cut at the store's limit; which
// events make records (only EventEnded; failed calls by acc.failed;
// missed ones whatever it says).
func TestRecordBuilding(t *testing.T) {
	e := newEnv(t, nil, false)
	a := e.a
	c, ok := built(t, a, endEvent("b1@host", `"Bob Smith" <sip:bob%20s@example.com;user=phone>;tag=ft`, "sip:+4930123@example.com;tag=tt"))
	if !ok {
		t.Fatal("no record")
	}
	want := store.CDR{CallID: "b1@host", FromTag: "ft", ToTag: "tt", FromURI: "sip:bob%20s@example.com;user=phone", FromUser: "bob%20s",
		ToURI: "sip:+4930123@example.com", ToUser: "+4930123", Caller: "192.0.2.7:5062",
		Start: 1_700_000_000_000, Answer: 1_700_000_001_000, End: 1_700_000_061_500, Duration: 60_500,
		Code: 200, Reason: "OK", EndReason: "bye", EndedBy: "callee"}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("record\n%+v\nwant\n%+v", c, want)
	}
	for _, tc := range []struct{ value, uri, user string }{
		{"<tel:+4930123>", "tel:+4930123", "+4930123"},
		{"<sip:example.com>", "sip:example.com", ""},
		{"garbage <", "garbage <", ""},
		{"<sip:@@@>", "sip:@@@", ""},
	} {
		c, _ := built(t, a, endEvent("u", tc.value, "<sip:b@x>"))
		if c.FromURI != tc.uri || c.FromUser != tc.user {
			t.Errorf("From %q: uri %q user %q, want %q %q", tc.value, c.FromURI, c.FromUser, tc.uri, tc.user)
		}
	}

	// Values become extra; a Call-ID longer than the store takes is cut.
	ev := endEvent(strings.Repeat("c", 3000), "<sip:a@x>", "<sip:b@x>")
	ev.Values = dialog.Values("\x07account\x00\x041001\x04plan\x00\x00")
	c, _ = built(t, a, ev)
	if len(c.CallID) != store.MaxCDRText || c.Extra["account"] != "1001" || c.Extra["plan"] != "" || len(c.Extra) != 2 {
		t.Fatalf("call-id %d bytes, extra %v", len(c.CallID), c.Extra)
	}
	if err := store.CheckCDR(&c); err != nil {
		t.Fatal(err)
	}

	// Only the end makes a record.
	for _, k := range []dialog.EventKind{dialog.EventCreated, dialog.EventAnswered} {
		ev := endEvent("k", "<sip:a@x>", "<sip:b@x>")
		ev.Kind = k
		if _, ok := built(t, a, ev); ok {
			t.Fatalf("%v made a record", k)
		}
	}
	// A failed call: acc, or missed_calls when marked; none with
	// acc.failed off unless marked.
	failed := endEvent("f", "<sip:a@x>", "<sip:b@x>")
	failed.Answer, failed.Code, failed.Phrase, failed.Reason, failed.By = 0, 486, []byte("Busy Here"), dialog.ReasonFailed, dialog.Callee
	if c, ok := built(t, a, failed); !ok || c.Missed || c.Duration != 0 || c.Code != 486 {
		t.Fatalf("failed: %+v", c)
	}
	failed.Flags = FlagMissed
	if c, ok := built(t, a, failed); !ok || !c.Missed {
		t.Fatalf("missed: %+v", c)
	}
	a.failed.Store(false)
	if _, ok := built(t, a, failed); !ok {
		t.Fatal("missed call dropped with acc.failed off")
	}
	failed.Flags = 0
	if _, ok := built(t, a, failed); ok {
		t.Fatal("failed call recorded with acc.failed off")
	}
	// An answered call marked missed is no missed call.
	answered := endEvent("a", "<sip:a@x>", "<sip:b@x>")
	answered.Flags = FlagMissed
	if c, ok := built(t, a, answered); !ok || c.Missed {
		t.Fatalf("answered and marked: %+v", c)
	}
}

// TestFileSink: records appended as CSV with a header line or as JSON
// lines, with the IDs the store gave; rotated past file_max_size into
// file.1 ... file.<keep>, each CSV file with its header, no more than
// keep rotated files, no record written twice or cut.
func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"csv", "json"} {
		s := DefaultSettings()
		s.File = filepath.Join(dir, "cdr."+format)
		s.Format = format
		s.FileMaxSize = "4KiB"
		s.FileKeep = 2
		e := newEnv(t, s, true)
		const n = 150
		for i := range n {
			c := e.invite("file-" + format + "-" + itoa(i))
			c.respond(486, "", "b")
		}
		e.a.Stop()
		if e.a.written[sinkFile].Get() != n {
			t.Fatalf("%s: %d written to the file", format, e.a.written[sinkFile].Get())
		}
		files, _ := filepath.Glob(s.File + "*")
		if len(files) != 3 {
			t.Fatalf("%s: files %v, want the file and 2 rotated", format, files)
		}
		seen := map[string]bool{}
		for _, f := range files {
			fi, _ := os.Stat(f)
			if fi.Size() > 4096 {
				t.Fatalf("%s: %d bytes, past file_max_size", f, fi.Size())
			}
			for i, rec := range readRecords(t, f, format) {
				if format == "csv" && i == 0 {
					if strings.Join(rec, ",") != strings.Join(csvHeader, ",") {
						t.Fatalf("%s: first line %v", f, rec)
					}
					continue
				}
				id, callID, code := rec[0], rec[1], rec[13]
				if id == "" || id == "0" || code != "486" || seen[callID] {
					t.Fatalf("%s: record %v (seen %v)", f, rec, seen[callID])
				}
				seen[callID] = true
			}
		}
		if len(seen) >= n || len(seen) < 10 || !seen["file-"+format+"-"+itoa(n-1)] {
			t.Fatalf("%s: %d records in the kept files of %d written; the last one there: %v", format, len(seen), n, seen["file-"+format+"-"+itoa(n-1)])
		}
	}
}

// readRecords reads a CSV file as rows, or a JSON lines file as rows of
// the same columns.
func readRecords(t *testing.T, file, format string) [][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if format == "csv" {
		rows, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return rows
	}
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v cdrView
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %q: %v", file, sc.Text(), err)
		}
		c := store.CDR{ID: v.ID, CallID: v.CallID, Code: v.SIPCode}
		rows = append(rows, csvRow(&c))
	}
	return rows
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
