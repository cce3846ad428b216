package store

import (
	"context"
	"database/sql"
)

// The dialog table (modules/dialog) on every backend (tables.go);
// ApplyDialogs is each backend's own (dialogs_sqlite.go,
// dialogs_servers.go): the upsert is written differently by each.

const dialogCols = `dlg_id, callid, from_uri, from_tag, to_uri, to_tag, from_hdr, to_hdr, callee_from_hdr, callee_to_hdr,
	caller_cseq, callee_cseq, cseq_offset,
	caller_route_set, callee_route_set, caller_contact, callee_contact, caller_hop, callee_hop,
	state, start_time, answer_time, timeout, code, phrase, profiles, script_flags, vars, updated,
	caller_contact_sent, callee_contact_sent`

func scanDialog(r rowScanner, d *Dialog) error {
	var id int64
	var callerSent, calleeSent sql.NullString // NULL in a MySQL row older than migration 16
	if err := r.Scan(&id, &d.CallID, &d.FromURI, &d.FromTag, &d.ToURI, &d.ToTag, &d.FromHdr, &d.ToHdr,
		&d.CalleeFromHdr, &d.CalleeToHdr, &d.CallerCSeq, &d.CalleeCSeq, &d.CSeqOffset, &d.CallerRouteSet, &d.CalleeRouteSet,
		&d.CallerContact, &d.CalleeContact, &d.CallerHop, &d.CalleeHop, &d.State, &d.StartTime, &d.AnswerTime, &d.Timeout,
		&d.Code, &d.Phrase, &d.profiles, &d.Flags, &d.vars, &d.Updated, &callerSent, &calleeSent); err != nil {
		return err
	}
	d.CallerContactSent, d.CalleeContactSent = callerSent.String, calleeSent.String
	d.ID = uint64(id)
	return nil
}

// dialogColCount is the number of columns in dialogCols.
var dialogColCount = countCols(dialogCols)

// dialogArgs are the values of dialogCols; text goes through text (pgText
// for PostgreSQL, which refuses bytes that are not UTF-8: CheckDialog
// refuses line breaks and NUL only).
func dialogArgs(d *Dialog, text func(string) string) []any {
	return appendDialogArgs(make([]any, 0, dialogColCount), d, text)
}

// appendDialogArgs appends dialogArgs to dst (a multi-row statement's
// rows, one after another).
func appendDialogArgs(dst []any, d *Dialog, text func(string) string) []any {
	return append(dst, int64(d.ID), text(d.CallID), text(d.FromURI), text(d.FromTag), text(d.ToURI), text(d.ToTag),
		text(d.FromHdr), text(d.ToHdr), text(d.CalleeFromHdr), text(d.CalleeToHdr),
		int64(d.CallerCSeq), int64(d.CalleeCSeq), int64(d.CSeqOffset), text(d.CallerRouteSet), text(d.CalleeRouteSet),
		text(d.CallerContact), text(d.CalleeContact), text(d.CallerHop), text(d.CalleeHop),
		int64(d.State), d.StartTime, d.AnswerTime, d.Timeout, int64(d.Code), text(d.Phrase), text(d.profiles),
		int64(d.Flags), text(d.vars), d.Updated, text(d.CallerContactSent), text(d.CalleeContactSent))
}

// keepText is dialogArgs' text function where text is stored as it is
// (SQLite, MySQL: bytes).
func keepText(s string) string { return s }

// LoadDialogs reads every stored dialog, oldest first; like LoadBindings
// it is bounded by ctx only.
func (t tables) LoadDialogs(ctx context.Context) ([]Dialog, error) {
	return streamRows(ctx, t.tb, scanDialog, `SELECT `+dialogCols+` FROM dialog ORDER BY start_time, dlg_id`)
}

func (t tables) DeleteDialog(ctx context.Context, id uint64) error {
	n, err := execPool(ctx, t.tb, `DELETE FROM dialog WHERE dlg_id = ?`, int64(id))
	if err == nil && n == 0 {
		return ErrNoDialog
	}
	return err
}
