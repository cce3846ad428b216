package acc

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"time"

	"switchboard/store"
)

// cdrView is a call record as the file sink, the management API and the
// CLI's JSON and CSV show it: the table's columns under their names.
type cdrView struct {
	ID         int64             `json:"id,omitempty"`
	CallID     string            `json:"call_id"`
	FromTag    string            `json:"from_tag"`
	ToTag      string            `json:"to_tag"`
	FromURI    string            `json:"from_uri"`
	FromUser   string            `json:"from_user"`
	ToURI      string            `json:"to_uri"`
	ToUser     string            `json:"to_user"`
	Caller     string            `json:"caller"`
	StartMs    int64             `json:"start_ms"`
	AnswerMs   int64             `json:"answer_ms"`
	EndMs      int64             `json:"end_ms"`
	DurationMs int64             `json:"duration_ms"`
	SIPCode    int               `json:"sip_code"`
	SIPReason  string            `json:"sip_reason"`
	EndReason  string            `json:"end_reason"`
	EndedBy    string            `json:"ended_by"`
	Missed     bool              `json:"missed,omitempty"`
	Extra      map[string]string `json:"extra,omitempty"`
}

func view(c *store.CDR) cdrView {
	return cdrView{ID: c.ID, CallID: c.CallID, FromTag: c.FromTag, ToTag: c.ToTag, FromURI: c.FromURI, FromUser: c.FromUser,
		ToURI: c.ToURI, ToUser: c.ToUser, Caller: c.Caller, StartMs: c.Start, AnswerMs: c.Answer, EndMs: c.End,
		DurationMs: c.Duration, SIPCode: c.Code, SIPReason: c.Reason, EndReason: c.EndReason, EndedBy: c.EndedBy,
		Missed: c.Missed, Extra: c.Extra}
}

func views(cs []store.CDR) []cdrView {
	out := make([]cdrView, 0, len(cs))
	for i := range cs {
		out = append(out, view(&cs[i]))
	}
	return out
}

// csvHeader is the first line of a CSV file: the table's columns, with
// "missed" (1 for a missed call) and extra as a JSON object.
var csvHeader = []string{"id", "call_id", "from_tag", "to_tag", "from_uri", "from_user", "to_uri", "to_user", "caller",
	"start_ms", "answer_ms", "end_ms", "duration_ms", "sip_code", "sip_reason", "end_reason", "ended_by", "missed", "extra"}

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

// appendCSV appends the CSV line of row (quoted as RFC 4180 wants) to
// dst.
func appendCSV(dst []byte, row []string) []byte {
	b := bytes.NewBuffer(dst)
	w := csv.NewWriter(b)
	w.Write(row) // a bytes.Buffer does not fail
	w.Flush()
	return b.Bytes()
}

// appendJSON appends c as one line of JSON.
func appendJSON(dst []byte, c *store.CDR) []byte {
	b, _ := json.Marshal(view(c)) // strings, numbers and a map[string]string: cannot fail
	return append(append(dst, b...), '\n')
}

// appendRecord appends c in format ("csv" or "json").
func appendRecord(dst []byte, format string, c *store.CDR) []byte {
	if format == "json" {
		return appendJSON(dst, c)
	}
	return appendCSV(dst, csvRow(c))
}

// msTime formats ms since the epoch for people: UTC to the millisecond;
// "-" for 0.
func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000")
}

// msDuration formats a duration in ms as seconds: "12.345s".
func msDuration(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64) + "s"
}
