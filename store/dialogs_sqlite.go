package store

import (
	"context"
	"database/sql"
	"fmt"
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
			_, err = upsert.ExecContext(ctx, int64(d.ID), d.CallID, d.FromURI, d.FromTag, d.ToURI, d.ToTag, d.FromHdr, d.ToHdr,
				d.CalleeFromHdr, d.CalleeToHdr, int64(d.CallerCSeq), int64(d.CalleeCSeq), int64(d.CSeqOffset), d.CallerRouteSet, d.CalleeRouteSet, d.CallerContact, d.CalleeContact,
				d.CallerHop, d.CalleeHop, d.State, d.StartTime, d.AnswerTime, d.Timeout, d.Code, d.Phrase, d.profiles,
				int64(d.Flags), d.vars, d.Updated)
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
