package acc

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"switchboard/store"
)

// csvRow is a record's CSV fields as encoding/csv should read them back
// from a line of appendCSVRecord: the reference the hand-written line is
// held to.
func csvRow(c *store.CDR) []string {
	id := ""
	if c.ID != 0 {
		id = strconv.FormatInt(c.ID, 10)
	}
	missed := "0"
	if c.Missed {
		missed = "1"
	}
	extra := "{}"
	if len(c.Extra) > 0 {
		b, _ := json.Marshal(c.Extra)
		extra = string(b)
	}
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{id, c.CallID, c.FromTag, c.ToTag, c.FromURI, c.FromUser, c.ToURI, c.ToUser, c.Caller,
		i64(c.Start), i64(c.Answer), i64(c.End), i64(c.Duration), strconv.Itoa(c.Code), c.Reason, c.EndReason, c.EndedBy,
		missed, extra}
}

// forgedCDRs are records whose text came from headers a caller chose:
// the characters CSV and JSON must quote or escape, bytes that are not
// UTF-8, leading blanks, an extra value that is itself JSON.
func forgedCDRs() []store.CDR {
	base := store.CDR{ID: 42, CallID: "a84b4c76e66710@pc33.example.com", FromTag: "1928301774", ToTag: "a6c85cf",
		FromURI: "sip:alice@example.com", FromUser: "alice", ToURI: "sip:bob@example.com", ToUser: "bob",
		Caller: "192.0.2.7:5062", Start: 1_700_000_000_000, Answer: 1_700_000_001_000, End: 1_700_000_061_500,
		Duration: 60_500, Code: 200, Reason: "OK", EndReason: "bye", EndedBy: "caller"}
	cs := []store.CDR{base}
	for i, v := range []string{
		`comma,inside`, `"quoted"`, "line\nbreak", "carriage\rreturn", " leading space", "\tleading tab",
		`back\slash`, "\x00nul\x1fcontrol\x7f", "not utf-8: \xff\xfe", "é ünïcødé ☎", `\.`, `</script><b>&`,
		"\u2028separator", `{"json":"in a value"}`, "",
	} {
		c := base
		c.ID = int64(i) // 0 for the first: no ID yet (the store was off)
		c.CallID, c.FromURI, c.FromUser, c.Reason, c.Caller = v, "sip:"+v+"@example.com", v, v, v
		c.Missed = i%2 == 1
		switch i % 3 {
		case 1:
			c.Extra = map[string]string{"account": v, "plan": "gold", v + "k": "1"}
		case 2:
			c.Extra = map[string]string{"z": "last", "a": "first", "m": `"q"`}
		}
		cs = append(cs, c)
	}
	return cs
}

// utf8Text is what a string becomes in JSON and back: each byte that is
// not UTF-8 turns into U+FFFD.
func utf8Text(s string) string {
	var b strings.Builder
	for _, r := range s { // an invalid byte is one RuneError
		b.WriteRune(r)
	}
	return b.String()
}

// TestRecordLinesMatchEncoders: every line the file sink writes reads
// back, through encoding/csv and encoding/json, as the record it was
// built from; a forged value cannot add a field, a line or a key.
func TestRecordLinesMatchEncoders(t *testing.T) {
	for _, c := range forgedCDRs() {
		checkRecordLines(t, c)
		line := appendJSONRecord(nil, &c)
		if c.Extra["z"] != "" && !bytes.Contains(line, []byte(`"extra":{"a":"first","m":"\"q\"","z":"last"}`)) {
			t.Errorf("JSON %q: extra keys not sorted", line)
		}
	}
}

// FuzzRecordLines: TestRecordLinesMatchEncoders for records whose text
// is any bytes (every text field comes from headers the caller or callee
// chose, or from a route's extra pairs).
func FuzzRecordLines(f *testing.F) {
	for _, c := range forgedCDRs() {
		f.Add(c.CallID, c.FromTag, c.FromURI, c.Reason, c.Caller, c.ID, c.Start, c.Duration, c.Code, c.Missed, "k", "v")
	}
	f.Add("a\r\n b", "\"", "", "", "", int64(-1), int64(0), int64(-1<<63), -1, true, "", "")
	f.Fuzz(func(t *testing.T, callID, tag, uri, reason, caller string, id, start, duration int64, code int, missed bool, k, v string) {
		c := store.CDR{ID: id, CallID: callID, FromTag: tag, ToTag: reason, FromURI: uri, FromUser: caller, ToURI: tag,
			ToUser: uri, Caller: caller, Start: start, Answer: start + duration, End: duration, Duration: duration,
			Code: code, Reason: reason, EndReason: callID, EndedBy: k, Missed: missed}
		if k != "" || v != "" {
			c.Extra = map[string]string{k: v, v: k, "z": callID}
		}
		checkRecordLines(t, c)
	})
}

// checkRecordLines holds c's CSV and JSON lines to what encoding/csv and
// encoding/json read back and write.
func checkRecordLines(t *testing.T, c store.CDR) {
	t.Helper()
	{
		line := appendCSVRecord(nil, &c)
		r := csv.NewReader(bytes.NewReader(line))
		rows, err := r.ReadAll()
		if err != nil || len(rows) != 1 {
			t.Fatalf("CSV %q: %d rows, %v", line, len(rows), err)
		}
		// The columns as encoding/csv reads them; extra (the last) as the
		// object it holds, which may escape a control character
		// differently from encoding/json.
		want := csvRow(&c)
		n := len(want) - 1
		// encoding/csv reads a CR LF inside a quoted field as LF (a
		// folded header's value holds one); the line has it as written,
		// which the comparison with its Writer below checks.
		read := slices.Clone(want[:n])
		for i := range read {
			read[i] = strings.ReplaceAll(read[i], "\r\n", "\n")
		}
		if !reflect.DeepEqual(rows[0][:n], read) {
			t.Errorf("CSV %q reads back as\n%q, want\n%q", line, rows[0], want)
		}
		var gotExtra, wantExtra map[string]string
		if err := json.Unmarshal([]byte(rows[0][n]), &gotExtra); err != nil {
			t.Fatalf("CSV extra %q: %v", rows[0][n], err)
		}
		json.Unmarshal([]byte(want[n]), &wantExtra)
		if !reflect.DeepEqual(gotExtra, wantExtra) {
			t.Errorf("CSV extra %q, want %q", rows[0][n], want[n])
		}
		// Quoted where encoding/csv quotes, byte for byte (given the same
		// extra text).
		var ref bytes.Buffer
		w := csv.NewWriter(&ref)
		w.Write(append(want[:n:n], rows[0][n]))
		w.Flush()
		if ref.String() != string(line) {
			t.Errorf("CSV line\n%q, encoding/csv writes\n%q", line, ref.String())
		}

		line = appendJSONRecord(nil, &c)
		if bytes.Count(line, []byte{'\n'}) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("JSON %q: not one line", line)
		}
		var got, fromEncoder map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("JSON %q: %v", line, err)
		}
		enc, _ := json.Marshal(view(&c))
		if err := json.Unmarshal(enc, &fromEncoder); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, fromEncoder) {
			t.Errorf("JSON %q reads back as\n%v, encoding/json's line as\n%v", line, got, fromEncoder)
		}
		if got["call_id"] != utf8Text(c.CallID) {
			t.Errorf("JSON call_id %q, want %q", got["call_id"], utf8Text(c.CallID))
		}
	}
}

// TestRecordLinesAllocateNothing: formatting a record into a grown
// buffer allocates nothing, extra pairs included.
func TestRecordLinesAllocateNothing(t *testing.T) {
	cs := forgedCDRs()
	buf := make([]byte, 0, 4096)
	for _, format := range []string{"csv", "json"} {
		if n := testing.AllocsPerRun(100, func() {
			for i := range cs {
				buf = appendRecord(buf[:0], format, &cs[i])
			}
		}); n != 0 {
			t.Errorf("%s: %.1f allocations for %d records", format, n, len(cs))
		}
	}
}
