package store

import (
	"context"
	"fmt"
	"strings"
)

const dialogCols = `dlg_id, callid, from_uri, from_tag, to_uri, to_tag, from_hdr, to_hdr, callee_from_hdr, callee_to_hdr,
	caller_cseq, callee_cseq, cseq_offset,
	caller_route_set, callee_route_set, caller_contact, callee_contact, caller_hop, callee_hop,
	state, start_time, answer_time, timeout, code, phrase, profiles, script_flags, vars, updated`

func (b *SQLite) LoadDialogs(ctx context.Context) ([]Dialog, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT `+dialogCols+` FROM dialog ORDER BY start_time, dlg_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Dialog
	for rows.Next() {
		var d Dialog
		var id int64
		if err := rows.Scan(&id, &d.CallID, &d.FromURI, &d.FromTag, &d.ToURI, &d.ToTag, &d.FromHdr, &d.ToHdr,
			&d.CalleeFromHdr, &d.CalleeToHdr, &d.CallerCSeq, &d.CalleeCSeq, &d.CSeqOffset, &d.CallerRouteSet, &d.CalleeRouteSet, &d.CallerContact, &d.CalleeContact,
			&d.CallerHop, &d.CalleeHop, &d.State, &d.StartTime, &d.AnswerTime, &d.Timeout, &d.Code, &d.Phrase, &d.profiles,
			&d.Flags, &d.vars, &d.Updated); err != nil {
			return nil, err
		}
		d.ID = uint64(id)
		out = append(out, d)
	}
	return out, rows.Err()
}

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
	args := make([]any, 0, maxBatchRows*dialogColCount)
	for i := 0; i < len(ops); {
		kind := ops[i].Kind
		j := i + 1
		for j < len(ops) && ops[j].Kind == kind && j-i < maxBatchRows {
			j++
		}
		n := chunkRows(j - i)
		args = args[:0]
		var q string
		switch kind {
		case DialogUpsert:
			for k := i; k < i+n; k++ {
				d := &ops[k].Dialog
				d.Updated = now
				args = append(args, int64(d.ID), d.CallID, d.FromURI, d.FromTag, d.ToURI, d.ToTag, d.FromHdr, d.ToHdr,
					d.CalleeFromHdr, d.CalleeToHdr, int64(d.CallerCSeq), int64(d.CalleeCSeq), int64(d.CSeqOffset), d.CallerRouteSet, d.CalleeRouteSet, d.CallerContact, d.CalleeContact,
					d.CallerHop, d.CalleeHop, d.State, d.StartTime, d.AnswerTime, d.Timeout, d.Code, d.Phrase, d.profiles,
					int64(d.Flags), d.vars, d.Updated)
			}
			q = valuesSQL(`INSERT OR REPLACE INTO dialog (`+dialogCols+`) VALUES `, dialogColCount, n)
		case DialogDelete:
			for k := i; k < i+n; k++ {
				args = append(args, int64(ops[k].Dialog.ID))
			}
			q = inSQL(`DELETE FROM dialog WHERE dlg_id IN `, n)
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
		i += n
	}
	return tx.Commit()
}

// dialogColCount is the number of columns in dialogCols.
var dialogColCount = strings.Count(dialogCols, ",") + 1

func (b *SQLite) DeleteDialog(ctx context.Context, id uint64) error {
	res, err := b.db.ExecContext(ctx, `DELETE FROM dialog WHERE dlg_id = ?`, int64(id))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoDialog
	}
	return nil
}
