package acc

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"switchboard/modules"
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

// csvHeaderLine is csvHeader as a line (no name needs quoting).
var csvHeaderLine = strings.Join(csvHeader, ",") + "\n"

// The file sink and `cdr list` write a line per record. The lines are
// built by hand rather than with encoding/csv and encoding/json: at a few
// hundred calls a second those cost the writer more than the record's
// SQLite insert (a 4 KiB buffer per CSV row, reflection per JSON line;
// BenchmarkFileWriter). TestRecordLinesMatchEncoders holds them to what
// the two packages read back.

// appendCSVRecord appends c as one CSV line (RFC 4180, as encoding/csv
// writes it: a field is quoted when it holds a comma, a quote, CR or LF,
// or starts with a space).
func appendCSVRecord(dst []byte, c *store.CDR) []byte {
	if c.ID != 0 {
		dst = strconv.AppendInt(dst, c.ID, 10)
	}
	for _, f := range [...]string{c.CallID, c.FromTag, c.ToTag, c.FromURI, c.FromUser, c.ToURI, c.ToUser, c.Caller} {
		dst = appendCSVField(append(dst, ','), f)
	}
	for _, v := range [...]int64{c.Start, c.Answer, c.End, c.Duration, int64(c.Code)} {
		dst = strconv.AppendInt(append(dst, ','), v, 10)
	}
	for _, f := range [...]string{c.Reason, c.EndReason, c.EndedBy} {
		dst = appendCSVField(append(dst, ','), f)
	}
	if c.Missed {
		dst = append(dst, ",1,"...)
	} else {
		dst = append(dst, ",0,"...)
	}
	if len(c.Extra) == 0 {
		return append(dst, "{}\n"...)
	}
	// An object with pairs holds quotes, so it is quoted, its quotes
	// doubled.
	dst = append(dst, '"')
	mark := len(dst)
	dst = appendExtraJSON(dst, c.Extra)
	dst = doubleQuotes(dst, mark)
	return append(dst, '"', '\n')
}

// appendCSVField appends f, quoted when CSV needs it.
func appendCSVField(dst []byte, f string) []byte {
	if !csvNeedsQuotes(f) {
		return append(dst, f...)
	}
	dst = append(dst, '"')
	mark := len(dst)
	dst = append(dst, f...)
	return append(doubleQuotes(dst, mark), '"')
}

// csvNeedsQuotes is encoding/csv's rule (Writer.fieldNeedsQuotes).
func csvNeedsQuotes(f string) bool {
	if f == "" {
		return false
	}
	if f == `\.` || strings.ContainsAny(f, ",\"\r\n") {
		return true
	}
	r, _ := utf8.DecodeRuneInString(f)
	return unicode.IsSpace(r)
}

// doubleQuotes doubles every quote in dst[mark:].
func doubleQuotes(dst []byte, mark int) []byte {
	n := bytes.Count(dst[mark:], []byte{'"'})
	if n == 0 {
		return dst
	}
	end := len(dst)
	dst = append(dst, make([]byte, n)...) // no allocation once dst has grown
	w := len(dst)
	for r := end - 1; r >= mark; r-- {
		w--
		dst[w] = dst[r]
		if dst[r] == '"' {
			w--
			dst[w] = '"'
		}
	}
	return dst
}

// appendJSONRecord appends c as one line of JSON: cdrView's fields, in
// its order and with its omissions.
func appendJSONRecord(dst []byte, c *store.CDR) []byte {
	dst = append(dst, '{')
	if c.ID != 0 {
		dst = strconv.AppendInt(append(dst, `"id":`...), c.ID, 10)
		dst = append(dst, ',')
	}
	str := func(dst []byte, name, v string) []byte {
		dst = append(append(append(dst, '"'), name...), `":`...)
		return append(modules.AppendJSONString(dst, v), ',')
	}
	num := func(dst []byte, name string, v int64) []byte {
		dst = append(append(append(dst, '"'), name...), `":`...)
		return append(strconv.AppendInt(dst, v, 10), ',')
	}
	dst = str(dst, "call_id", c.CallID)
	dst = str(dst, "from_tag", c.FromTag)
	dst = str(dst, "to_tag", c.ToTag)
	dst = str(dst, "from_uri", c.FromURI)
	dst = str(dst, "from_user", c.FromUser)
	dst = str(dst, "to_uri", c.ToURI)
	dst = str(dst, "to_user", c.ToUser)
	dst = str(dst, "caller", c.Caller)
	dst = num(dst, "start_ms", c.Start)
	dst = num(dst, "answer_ms", c.Answer)
	dst = num(dst, "end_ms", c.End)
	dst = num(dst, "duration_ms", c.Duration)
	dst = num(dst, "sip_code", int64(c.Code))
	dst = str(dst, "sip_reason", c.Reason)
	dst = str(dst, "end_reason", c.EndReason)
	dst = str(dst, "ended_by", c.EndedBy)
	if c.Missed {
		dst = append(dst, `"missed":true,`...)
	}
	if len(c.Extra) > 0 {
		dst = appendExtraJSON(append(dst, `"extra":`...), c.Extra)
		dst = append(dst, ',')
	}
	dst[len(dst)-1] = '}'
	return append(dst, '\n')
}

// appendExtraJSON appends the extra pairs as a JSON object, its keys
// sorted (as encoding/json writes a map): the same record is the same
// line.
func appendExtraJSON(dst []byte, extra map[string]string) []byte {
	var buf [16]string
	keys := buf[:0]
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = modules.AppendJSONString(dst, k)
		dst = modules.AppendJSONString(append(dst, ':'), extra[k])
	}
	return append(dst, '}')
}

// appendRecord appends c in format ("csv" or "json").
func appendRecord(dst []byte, format string, c *store.CDR) []byte {
	if format == "json" {
		return appendJSONRecord(dst, c)
	}
	return appendCSVRecord(dst, c)
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
