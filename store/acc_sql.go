package store

import (
	"context"
	"strconv"
)

// The acc and missed_calls tables (modules/acc) on every backend
// (tables.go); AddCDRs is each backend's own (acc_sqlite.go,
// acc_servers.go): multi-row statements, pgx batches.

const cdrCols = `call_id, from_tag, to_tag, from_uri, from_user, to_uri, to_user, caller,
	start_ms, answer_ms, end_ms, duration_ms, sip_code, sip_reason, end_reason, ended_by, extra`

// cdrColCount is the number of columns in cdrCols.
var cdrColCount = countCols(cdrCols)

func cdrArgs(c *CDR) []any { return appendCDRArgs(make([]any, 0, cdrColCount), c) }

// appendCDRArgs appends the values of cdrCols (a multi-row statement's
// rows, one after another).
func appendCDRArgs(dst []any, c *CDR) []any {
	return append(dst, c.CallID, c.FromTag, c.ToTag, c.FromURI, c.FromUser, c.ToURI, c.ToUser, c.Caller,
		c.Start, c.Answer, c.End, c.Duration, int64(c.Code), c.Reason, c.EndReason, c.EndedBy, extraJSON(c))
}

func scanCDR(sc interface{ Scan(...any) error }, c *CDR) error {
	var extra string
	if err := sc.Scan(&c.ID, &c.CallID, &c.FromTag, &c.ToTag, &c.FromURI, &c.FromUser, &c.ToURI, &c.ToUser, &c.Caller,
		&c.Start, &c.Answer, &c.End, &c.Duration, &c.Code, &c.Reason, &c.EndReason, &c.EndedBy, &extra); err != nil {
		return err
	}
	return parseExtra(extra, c)
}

// insertCDR is the statement that adds one record to table.
func insertCDR(table string) string {
	return `INSERT INTO ` + table + ` (` + cdrCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
}

// cdrOrder is the ORDER BY and LIMIT of f.
func cdrOrder(f *CDRFilter) string {
	q := " ORDER BY start_ms DESC, id DESC"
	if f.Oldest {
		q = " ORDER BY start_ms, id"
	}
	if f.Limit > 0 {
		q += " LIMIT " + strconv.Itoa(f.Limit)
	}
	return q
}

// ForEachCDR streams the records; like LoadBindings it is bounded by ctx
// only.
func (t tables) ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error {
	where, args := cdrWhere(&f)
	q := `SELECT id, ` + cdrCols + ` FROM ` + (&CDR{Missed: f.Missed}).Table() + where + cdrOrder(&f)
	return t.tb.streamConn(ctx, func(c conn) error {
		var cdr CDR
		return c.query(ctx, q, args, func(r rowScanner) error {
			cdr = CDR{Missed: f.Missed}
			if err := scanCDR(r, &cdr); err != nil {
				return err
			}
			return fn(&cdr)
		})
	})
}

func (t tables) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	return execPool(ctx, t.tb, `DELETE FROM `+(&CDR{Missed: missed}).Table()+` WHERE start_ms < ?`, until)
}
