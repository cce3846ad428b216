package store

import (
	"context"
	"database/sql"
	"fmt"
)

func (b *SQLite) ApplyDialogs(ctx context.Context, ops []DialogOp, now int64) error {
	if len(ops) == 0 {
		return nil
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var upsert, del *sql.Stmt
	defer func() {
		for _, st := range []*sql.Stmt{upsert, del} {
			if st != nil {
				st.Close()
			}
		}
	}()
	for i := range ops {
		d := &ops[i].Dialog
		switch ops[i].Kind {
		case DialogUpsert:
			if upsert == nil {
				if upsert, err = tx.PrepareContext(ctx, `INSERT OR REPLACE INTO dialog (`+dialogCols+`)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`); err != nil {
					return err
				}
			}
			d.Updated = now
			_, err = upsert.ExecContext(ctx, dialogArgs(d, keepText)...)
		case DialogDelete:
			if del == nil {
				if del, err = tx.PrepareContext(ctx, `DELETE FROM dialog WHERE dlg_id = ?`); err != nil {
					return err
				}
			}
			_, err = del.ExecContext(ctx, int64(d.ID))
		}
		if err != nil {
			return fmt.Errorf("dialog %016x: %w", d.ID, err)
		}
	}
	return tx.Commit()
}
