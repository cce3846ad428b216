package store

import (
	"context"
	"database/sql"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Call records on the database servers, as acc_sqlite.go does on SQLite.

// pgCDRArgs are cdrArgs made storable in PostgreSQL's text (the fields come
// from SIP headers anyone can forge; see pgText).
func pgCDRArgs(c *CDR) []any {
	return []any{pgText(c.CallID), pgText(c.FromTag), pgText(c.ToTag), pgText(c.FromURI), pgText(c.FromUser),
		pgText(c.ToURI), pgText(c.ToUser), pgText(c.Caller), c.Start, c.Answer, c.End, c.Duration, c.Code,
		pgText(c.Reason), pgText(c.EndReason), pgText(c.EndedBy), extraJSON(c)}
}

const pgCDRValues = ` VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id`

// AddCDRs sends the records as pgx batches (one round trip per 1,000) in
// one transaction.
func (b *Postgres) AddCDRs(ctx context.Context, cs []CDR) error {
	return b.inTx(ctx, func(tx pgx.Tx) error {
		const chunk = 1000
		for start := 0; start < len(cs); start += chunk {
			end := min(len(cs), start+chunk)
			batch := &pgx.Batch{}
			for i := start; i < end; i++ {
				batch.Queue(`INSERT INTO `+cs[i].Table()+` (`+cdrCols+`)`+pgCDRValues, pgCDRArgs(&cs[i])...)
			}
			br := tx.SendBatch(ctx, batch)
			for i := start; i < end; i++ {
				if err := br.QueryRow().Scan(&cs[i].ID); err != nil {
					br.Close()
					return err
				}
			}
			if err := br.Close(); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// ForEachCDR streams the records; like LoadBindings it is bounded by ctx
// only.
func (b *Postgres) ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error {
	where, args := cdrWhere(&f, func(n int) string { return "$" + strconv.Itoa(n) })
	q := `SELECT id, ` + cdrCols + ` FROM ` + (&CDR{Missed: f.Missed}).Table() + where + cdrOrder(&f)
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return b.check(err)
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
	return b.check(rows.Err())
}

func (b *Postgres) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	var n int64
	err := b.do(ctx, func(ctx context.Context) error {
		tag, err := b.pool.Exec(ctx, `DELETE FROM `+(&CDR{Missed: missed}).Table()+` WHERE start_ms < $1`, until)
		n = tag.RowsAffected()
		return err
	})
	return n, err
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

func (b *MySQL) AddCDRs(ctx context.Context, cs []CDR) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		for i := range cs {
			c := &cs[i]
			res, err := tx.ExecContext(ctx, `INSERT INTO `+c.Table()+` (`+cdrCols+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, cdrArgs(c)...)
			if err != nil {
				return err
			}
			if c.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

func (b *MySQL) ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error {
	where, args := cdrWhere(&f, func(int) string { return "?" })
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+cdrCols+` FROM `+(&CDR{Missed: f.Missed}).Table()+where+cdrOrder(&f), args...)
	if err != nil {
		return b.check(err)
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
	return b.check(rows.Err())
}

func (b *MySQL) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	res, err := b.db.ExecContext(ctx, `DELETE FROM `+(&CDR{Missed: missed}).Table()+` WHERE start_ms < ?`, until)
	if err != nil {
		return 0, b.check(err)
	}
	return res.RowsAffected()
}
