package store

import (
	"context"
	"strconv"
	"strings"
)

const cdrCols = `call_id, from_tag, to_tag, from_uri, from_user, to_uri, to_user, caller,
	start_ms, answer_ms, end_ms, duration_ms, sip_code, sip_reason, end_reason, ended_by, extra`

func cdrArgs(c *CDR) []any {
	return []any{c.CallID, c.FromTag, c.ToTag, c.FromURI, c.FromUser, c.ToURI, c.ToUser, c.Caller,
		c.Start, c.Answer, c.End, c.Duration, c.Code, c.Reason, c.EndReason, c.EndedBy, extraJSON(c)}
}

func scanCDR(sc interface{ Scan(...any) error }, c *CDR) error {
	var extra string
	if err := sc.Scan(&c.ID, &c.CallID, &c.FromTag, &c.ToTag, &c.FromURI, &c.FromUser, &c.ToURI, &c.ToUser, &c.Caller,
		&c.Start, &c.Answer, &c.End, &c.Duration, &c.Code, &c.Reason, &c.EndReason, &c.EndedBy, &extra); err != nil {
		return err
	}
	return parseExtra(extra, c)
}

func (b *SQLite) AddCDRs(ctx context.Context, cs []CDR) error {
	ctx = batchCtx(ctx)
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Runs of one table, in statements of up to 32 rows. The rows of one
	// INSERT get consecutive ids ending at its LastInsertId: SQLite gives
	// each new row max(id)+1, and the transaction holds the write lock.
	args := make([]any, 0, maxBatchRows*cdrColCount)
	for i := 0; i < len(cs); {
		missed := cs[i].Missed
		j := i + 1
		for j < len(cs) && cs[j].Missed == missed && j-i < maxBatchRows {
			j++
		}
		n := chunkRows(j - i)
		args = args[:0]
		for k := i; k < i+n; k++ {
			args = appendCDRArgs(args, &cs[k])
		}
		st, err := b.rowsStmt(ctx, valuesSQL(`INSERT INTO `+cs[i].Table()+` (`+cdrCols+`) VALUES `, cdrColCount, n))
		if err != nil {
			return err
		}
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		last, err := res.LastInsertId()
		if err != nil {
			return err
		}
		for k := i; k < i+n; k++ {
			cs[k].ID = last - int64(i+n-1-k)
		}
		i += n
	}
	return tx.Commit()
}

// cdrColCount is the number of columns in cdrCols.
var cdrColCount = strings.Count(cdrCols, ",") + 1

func appendCDRArgs(dst []any, c *CDR) []any {
	return append(dst, c.CallID, c.FromTag, c.ToTag, c.FromURI, c.FromUser, c.ToURI, c.ToUser, c.Caller,
		c.Start, c.Answer, c.End, c.Duration, c.Code, c.Reason, c.EndReason, c.EndedBy, extraJSON(c))
}

func (b *SQLite) ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error {
	where, args := cdrWhere(&f, func(int) string { return "?" })
	order := " ORDER BY start_ms DESC, id DESC"
	if f.Oldest {
		order = " ORDER BY start_ms, id"
	}
	q := `SELECT id, ` + cdrCols + ` FROM ` + (&CDR{Missed: f.Missed}).Table() + where + order
	if f.Limit > 0 {
		q += " LIMIT " + strconv.Itoa(f.Limit)
	}
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var c CDR
	for rows.Next() {
		c = CDR{Missed: f.Missed}
		if err := scanCDR(rows, &c); err != nil {
			return err
		}
		if err := fn(&c); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (b *SQLite) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	res, err := b.db.ExecContext(ctx, `DELETE FROM `+(&CDR{Missed: missed}).Table()+` WHERE start_ms < ?`, until)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
