package acc

import "switchboard/routing"

// SetExtra stores key = value with the request's dialog for the call's
// record: the extra column of its CDR, a JSON object (OpenSIPS acc's
// extra_fields, acc_extra). Call it after the dialog module's
// CreateDialog; a later value of the same key replaces the earlier one.
// It is the dialog module's SetValue, with its bounds: at most 8 pairs, a
// key of 1 to 32 letters, digits, '-' or '_', a value of at most 256
// bytes, 1 KiB in all. False past those, or when the request has no
// dialog.
func (a *Acc) SetExtra(c *routing.Ctx, key string, value []byte) bool {
	if a == nil {
		return false
	}
	return a.dlg.SetValue(c, key, value)
}

// MarkMissed marks the request's call, a call to one of our subscribers,
// as one whose failure is a missed call: if it is never answered (busy,
// no answer, declined, canceled by the caller) its record goes to the
// missed_calls table instead of acc (OpenSIPS do_accounting("db",
// "missed")). Call it after CreateDialog; false when the request has no
// dialog. It sets the dialog flag FlagMissed.
func (a *Acc) MarkMissed(c *routing.Ctx) bool {
	if a == nil {
		return false
	}
	return a.dlg.SetFlag(c, FlagMissed)
}
