package store

import (
	"context"
	"database/sql"
	"strconv"
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

// insertCDR is the statement that adds one record to table.
func insertCDR(table string) string {
	return `INSERT INTO ` + table + ` (` + cdrCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
}

// cdrInsert returns the insert into table (k: 0 acc, 1 missed_calls),
// prepared on the database the first time.
func (b *SQLite) cdrInsert(ctx context.Context, k int, table string) (*sql.Stmt, error) {
	b.cdrMu.Lock()
	defer b.cdrMu.Unlock()
	if b.insCDR[k] == nil {
		st, err := b.db.PrepareContext(ctx, insertCDR(table))
		if err != nil {
			return nil, err
		}
		b.insCDR[k] = st
	}
	return b.insCDR[k], nil
}

func (b *SQLite) AddCDRs(ctx context.Context, cs []CDR) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var ins [2]*sql.Stmt // acc, missed_calls: the statements prepared at open, in tx
	for i := range cs {
		c := &cs[i]
		k := 0
		if c.Missed {
			k = 1
		}
		if ins[k] == nil {
			st, err := b.cdrInsert(ctx, k, c.Table())
			if err != nil {
				return err
			}
			ins[k] = tx.StmtContext(ctx, st)
		}
		res, err := ins[k].ExecContext(ctx, cdrArgs(c)...)
		if err != nil {
			return err
		}
		if c.ID, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	return tx.Commit()
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
