package store

import (
	"context"
	"slices"
	"strconv"
	"strings"
)

// Call records on SQLite (migration 14). Each of acc and missed_calls is
// a table of four columns, acc_data and missed_calls_data: id, call_id,
// start_ms (the two the indexes need) and data, a JSON array of the
// record's other fields in cdrDataCols order. acc and missed_calls are
// views that spell the fields out as columns, so what reads them (the
// store, `cdr list`, a billing script with the sqlite3 shell) reads the
// same columns as before and as on PostgreSQL and MySQL.
//
// Why: a record's seventeen bound parameters were about a third of the
// accounting writer's CPU in modernc's SQLite (each bind takes the
// connection's mutex, copies the text into C memory and is cleared after
// the statement; database/sql converts each argument first), and that
// writer is the proxy's own CPU. Three parameters a row cost about a
// third less per record (BenchmarkAddCDRs, bench/results/dialog-acc.md).
//
// Text goes into the array as it is, bytes that are not UTF-8 and NULs
// included: SQLite's JSON keeps such bytes and ->> hands them back
// unchanged (TestCDRDataKeepsBytes).

// cdrDataCols are the fields in the data array, in order; data->>i is
// the field cdrDataCols[i].
var cdrDataCols = []string{"from_tag", "to_tag", "from_uri", "from_user", "to_uri", "to_user", "caller",
	"answer_ms", "end_ms", "duration_ms", "sip_code", "sip_reason", "end_reason", "ended_by", "extra"}

// appendCDRData appends c's data array.
func appendCDRData(dst []byte, c *CDR) []byte {
	dst = append(dst, '[')
	for _, s := range [...]string{c.FromTag, c.ToTag, c.FromURI, c.FromUser, c.ToURI, c.ToUser, c.Caller} {
		dst = appendJSONText(dst, s)
		dst = append(dst, ',')
	}
	for _, n := range [...]int64{c.Answer, c.End, c.Duration, int64(c.Code)} {
		dst = strconv.AppendInt(dst, n, 10)
		dst = append(dst, ',')
	}
	for _, s := range [...]string{c.Reason, c.EndReason, c.EndedBy} {
		dst = appendJSONText(dst, s)
		dst = append(dst, ',')
	}
	dst = appendExtraJSON(dst, c.Extra)
	return append(dst, ']')
}

// cdrDataView is the view that shows table's data as the columns of
// cdrColumnsDDL.
func cdrDataView(view, table string) string {
	var b strings.Builder
	b.WriteString("CREATE VIEW " + view + " AS SELECT id, call_id")
	for i, c := range cdrDataCols {
		if c == "answer_ms" { // start_ms, a column of its own, comes before it
			b.WriteString(", start_ms")
		}
		b.WriteString(", data->>" + strconv.Itoa(i) + " AS " + c)
	}
	b.WriteString(" FROM " + table)
	return b.String()
}

// accDataSQLite is migration 14 on SQLite: each CDR table rebuilt as its
// data table and a view of the old name. The ids are kept, and the
// AUTOINCREMENT counter goes on from the old table's, so that no id is
// handed out twice.
var accDataSQLite = func() []string {
	var steps []string
	for _, t := range []string{"acc", "missed_calls"} {
		array := slices.Clone(cdrDataCols)
		// extra holds a JSON object (the store writes nothing else); a
		// text that is not one stays a string, as the column showed it.
		array[len(array)-1] = "CASE WHEN json_valid(extra) THEN json(extra) ELSE extra END"
		steps = append(steps,
			`CREATE TABLE `+t+`_data (
				id       INTEGER PRIMARY KEY AUTOINCREMENT,
				call_id  TEXT NOT NULL,
				start_ms INTEGER NOT NULL,
				data     TEXT NOT NULL
			)`,
			`INSERT INTO sqlite_sequence (name, seq) SELECT '`+t+`_data', seq FROM sqlite_sequence WHERE name = '`+t+`'`,
			`INSERT INTO `+t+`_data (id, call_id, start_ms, data)
				SELECT id, call_id, start_ms, json_array(`+strings.Join(array, ", ")+`) FROM `+t,
			`DROP TABLE `+t,
			`CREATE INDEX `+t+`_start ON `+t+`_data(start_ms)`,
			`CREATE INDEX `+t+`_call_id ON `+t+`_data(call_id)`,
			cdrDataView(t, t+"_data"),
		)
	}
	return steps
}()

var (
	insertAccData    = valuesQueries(`INSERT INTO acc_data (call_id, start_ms, data) VALUES `, 3, "")
	insertMissedData = valuesQueries(`INSERT INTO missed_calls_data (call_id, start_ms, data) VALUES `, 3, "")
)

// DeleteCDRs deletes from the data table (a view takes no DELETE).
func (b *SQLite) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	return execPool(ctx, b, `DELETE FROM `+(&CDR{Missed: missed}).Table()+`_data WHERE start_ms < ?`, until)
}
