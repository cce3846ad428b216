package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The dialog table on the database servers, as dialogs_sqlite.go does on
// SQLite.

const pgUpsertDialog = `INSERT INTO dialog (` + dialogCols + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
		$21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)
	ON CONFLICT (dlg_id) DO UPDATE SET
		callid = excluded.callid, from_uri = excluded.from_uri, from_tag = excluded.from_tag,
		to_uri = excluded.to_uri, to_tag = excluded.to_tag, from_hdr = excluded.from_hdr, to_hdr = excluded.to_hdr,
		callee_from_hdr = excluded.callee_from_hdr, callee_to_hdr = excluded.callee_to_hdr,
		caller_cseq = excluded.caller_cseq, callee_cseq = excluded.callee_cseq, cseq_offset = excluded.cseq_offset,
		caller_route_set = excluded.caller_route_set, callee_route_set = excluded.callee_route_set,
		caller_contact = excluded.caller_contact, callee_contact = excluded.callee_contact,
		caller_hop = excluded.caller_hop, callee_hop = excluded.callee_hop, state = excluded.state,
		start_time = excluded.start_time, answer_time = excluded.answer_time, timeout = excluded.timeout,
		code = excluded.code, phrase = excluded.phrase, profiles = excluded.profiles,
		script_flags = excluded.script_flags, vars = excluded.vars, updated = excluded.updated,
		caller_contact_sent = excluded.caller_contact_sent, callee_contact_sent = excluded.callee_contact_sent`

// ApplyDialogs sends the operations as one pgx batch in one transaction.
func (b *Postgres) ApplyDialogs(ctx context.Context, ops []DialogOp, now int64) error {
	if len(ops) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for i := range ops {
		d := &ops[i].Dialog
		switch ops[i].Kind {
		case DialogUpsert:
			d.Updated = now
			batch.Queue(pgUpsertDialog, dialogArgs(d, pgText)...)
		case DialogDelete:
			batch.Queue(`DELETE FROM dialog WHERE dlg_id = $1`, int64(d.ID))
		default:
			return fmt.Errorf("dialog %016x: unknown operation %d", d.ID, ops[i].Kind)
		}
	}
	return b.inTx(ctx, func(tx pgx.Tx) error {
		br := tx.SendBatch(ctx, batch)
		defer br.Close()
		for i := range ops {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("dialog %016x: %w", ops[i].Dialog.ID, err)
			}
		}
		return br.Close()
	}, nil)
}

func (b *MySQL) ApplyDialogs(ctx context.Context, ops []DialogOp, now int64) error {
	if len(ops) == 0 {
		return nil
	}
	return b.inTx(ctx, func(tx *sql.Tx) error {
		for i := range ops {
			d := &ops[i].Dialog
			var err error
			switch ops[i].Kind {
			case DialogUpsert:
				d.Updated = now
				// REPLACE: the row of that id is replaced whole, as
				// SQLite's INSERT OR REPLACE.
				_, err = tx.ExecContext(ctx, `REPLACE INTO dialog (`+dialogCols+`)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					dialogArgs(d, keepText)...)
			case DialogDelete:
				_, err = tx.ExecContext(ctx, `DELETE FROM dialog WHERE dlg_id = ?`, int64(d.ID))
			default:
				err = fmt.Errorf("unknown operation %d", ops[i].Kind)
			}
			if err != nil {
				return fmt.Errorf("dialog %016x: %w", d.ID, err)
			}
		}
		return nil
	}, nil)
}
