package store

import (
	"context"
	"database/sql"
)

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
