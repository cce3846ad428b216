package store

import (
	"context"
	"fmt"
)

func (b *SQLite) ApplyDialogs(ctx context.Context, ops []DialogOp, now int64) error {
	if len(ops) == 0 {
		return nil
	}
	ctx = batchCtx(ctx)
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Runs of one kind, in order, each in statements of up to 32 rows: a
	// multi-row INSERT OR REPLACE replaces as the single rows would (a
	// later row of the same id wins), and the deletes of a run commute.
	args := make([]any, 0, min(len(ops), maxBatchRows)*sqliteDialogColCount)
	buf := getTextBuf()
	defer putTextBuf(buf)
	data := *buf // the statement's rows' data, one after the other (textArg)
	sameKind := func(i, k int) bool { return ops[i].Kind == ops[k].Kind }
	err = eachChunk(len(ops), sameKind, func(i, n int) error {
		args = args[:0]
		data = data[:0]
		var q string
		switch ops[i].Kind {
		case DialogUpsert:
			for k := i; k < i+n; k++ {
				d := &ops[k].Dialog
				d.Updated = now
				start := len(data)
				data = appendDialogData(data, d)
				args = append(args, int64(d.ID), d.CallID, int64(d.State), d.StartTime, d.Timeout, d.Updated, textArg(data[start:]))
			}
			q = replaceDialogRows.rows(n)
		case DialogDelete:
			for k := i; k < i+n; k++ {
				args = append(args, int64(ops[k].Dialog.ID))
			}
			q = deleteDialogRows.rows(n)
		}
		st, err := b.rowsStmt(ctx, q)
		if err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			if n == 1 {
				return fmt.Errorf("dialog %016x: %w", ops[i].Dialog.ID, err)
			}
			return fmt.Errorf("dialogs %016x to %016x: %w", ops[i].Dialog.ID, ops[i+n-1].Dialog.ID, err)
		}
		return nil
	})
	*buf = data // grown, it goes back to the pool so
	if err != nil {
		return err
	}
	return tx.Commit()
}

// sqliteDialogCols are the dialog table's columns on SQLite: the rest of a
// dialog is in data (dialog_data.go).
const sqliteDialogCols = `dlg_id, callid, state, start_time, timeout, updated, data`

var (
	sqliteDialogColCount = countCols(sqliteDialogCols)
	replaceDialogRows    = valuesQueries(`INSERT OR REPLACE INTO dialog (`+sqliteDialogCols+`) VALUES `, sqliteDialogColCount, "")
	deleteDialogRows     = inQueries(`DELETE FROM dialog WHERE dlg_id IN `)
)

// LoadDialogs reads every stored dialog, oldest first. A row whose data
// does not read comes back with its columns and the reason
// (Store.LoadDialogs reports it as bad).
func (b *SQLite) LoadDialogs(ctx context.Context) ([]Dialog, error) {
	return streamRows(ctx, b.tables.tb, scanSQLiteDialog,
		`SELECT `+sqliteDialogCols+` FROM dialog ORDER BY start_time, dlg_id`)
}

func scanSQLiteDialog(r rowScanner, d *Dialog) error {
	var id int64
	var data string
	if err := r.Scan(&id, &d.CallID, &d.State, &d.StartTime, &d.Timeout, &d.Updated, &data); err != nil {
		return err
	}
	d.ID = uint64(id)
	d.badData = decodeDialogData(d, data)
	return nil
}
