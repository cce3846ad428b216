package store

import "context"

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
	args := make([]any, 0, min(len(cs), maxBatchRows)*3)
	buf := getTextBuf()
	defer putTextBuf(buf)
	data := *buf // the statement's records' data, one after the other (textArg)
	sameTable := func(i, k int) bool { return cs[i].Missed == cs[k].Missed }
	err = eachChunk(len(cs), sameTable, func(i, n int) error {
		args = args[:0]
		data = data[:0]
		for k := i; k < i+n; k++ {
			c := &cs[k]
			start := len(data)
			data = appendCDRData(data, c)
			args = append(args, c.CallID, c.Start, textArg(data[start:])) // text, not a blob: SQLite's JSON reads a blob as JSONB
		}
		q := insertAccData
		if cs[i].Missed {
			q = insertMissedData
		}
		st, err := b.rowsStmt(ctx, q.rows(n))
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
		return nil
	})
	*buf = data // grown, it goes back to the pool so
	if err != nil {
		return err
	}
	return tx.Commit()
}
