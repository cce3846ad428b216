package store

import (
	"context"
	"database/sql"

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

func (b *MySQL) AddCDRs(ctx context.Context, cs []CDR) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		for i := range cs {
			c := &cs[i]
			res, err := tx.ExecContext(ctx, insertCDR(c.Table()), cdrArgs(c)...)
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
