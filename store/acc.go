package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrMalformedCDR is returned for a call record or a filter that does not
// validate.
var ErrMalformedCDR = errors.New("malformed call record")

// ErrCDRRefused is returned by AddCDRs when the database refused a
// record's values by a rule of its own that CheckCDR does not know (a
// constraint or a trigger an operator added, a value out of a column's
// range): that record would be refused again, while the database takes
// others. The batch was not written (all or none). Any other error (the
// database unreachable, locked, read-only, full) says nothing about the
// records.
var ErrCDRRefused = errors.New("call record refused by the database")

// CDR is one call's record: a row of the acc table (every call, answered
// or failed), or of missed_calls (failed calls to our subscribers that
// the route marked). modules/acc writes them from the dialogs' events.
type CDR struct {
	ID int64
	// Missed: the row is (to be) in missed_calls rather than acc.
	Missed bool
	// CallID, FromTag and ToTag identify the call (ToTag empty for a call
	// that got no answer with a tag).
	CallID, FromTag, ToTag string
	// FromURI and ToURI are the URIs of the INVITE's From and To;
	// FromUser and ToUser their user parts.
	FromURI, FromUser, ToURI, ToUser string
	// Caller is where the INVITE came from ("192.0.2.7:5060").
	Caller string
	// Start (the INVITE), Answer (the 2xx; 0 never answered) and End are
	// milliseconds since the Unix epoch; Duration is End - Answer, 0 for a
	// call never answered.
	Start, Answer, End, Duration int64
	// Code and Reason are the INVITE's final response: 200 OK for an
	// answered call, the failure (486 Busy Here) otherwise; 0 when the
	// call ended without one.
	Code   int
	Reason string
	// EndReason is why the call ended (bye, timeout, canceled, failed,
	// ended); EndedBy who ended it (caller, callee, proxy).
	EndReason, EndedBy string
	// Extra are the route's pairs (acc_extra): the extra column, a JSON
	// object.
	Extra map[string]string
}

// Table returns the table the record belongs in.
func (c *CDR) Table() string {
	if c.Missed {
		return "missed_calls"
	}
	return "acc"
}

// Limits of a call record: what the dialog module can hand over, with
// room to spare. The store refuses longer text; modules/acc cuts it.
const (
	// MaxCDRText is the longest text of one field, in bytes.
	MaxCDRText  = 2048
	maxCDRExtra = 16
)

// CheckCDR validates a record before it is written, naming the field at
// fault.
func CheckCDR(c *CDR) error {
	bad := func(field, format string, args ...any) error {
		return errorf(ErrMalformedCDR, "call record %q: %s: %s", c.CallID, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.CallID == "":
		return errorf(ErrMalformedCDR, "call record: call_id: empty")
	case c.Start <= 0:
		return bad("start_ms", "%d: want milliseconds since the epoch", c.Start)
	case c.End < c.Start:
		return bad("end_ms", "%d is before start_ms %d", c.End, c.Start)
	case c.Answer != 0 && (c.Answer < c.Start || c.Answer > c.End):
		return bad("answer_ms", "%d is not between start_ms and end_ms", c.Answer)
	case c.Duration < 0:
		return bad("duration_ms", "%d: negative", c.Duration)
	case c.Code < 0 || c.Code > 699:
		return bad("sip_code", "%d: want 0 or 100-699", c.Code)
	case len(c.Extra) > maxCDRExtra:
		return bad("extra", "%d pairs: at most %d", len(c.Extra), maxCDRExtra)
	}
	// An array, not a map: the acc writer checks every record, and a map
	// literal here was a tenth of its CPU (BenchmarkAddCDRs).
	for _, f := range [...]struct{ name, v string }{
		{"call_id", c.CallID}, {"from_tag", c.FromTag}, {"to_tag", c.ToTag}, {"from_uri", c.FromURI},
		{"from_user", c.FromUser}, {"to_uri", c.ToURI}, {"to_user", c.ToUser}, {"caller", c.Caller},
		{"sip_reason", c.Reason}, {"end_reason", c.EndReason}, {"ended_by", c.EndedBy},
	} {
		if len(f.v) > MaxCDRText {
			return bad(f.name, "%d bytes: at most %d", len(f.v), MaxCDRText)
		}
	}
	return nil
}

// extraJSON is the extra column of c: a JSON object, keys sorted.
func extraJSON(c *CDR) string {
	if len(c.Extra) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(c.Extra) // map[string]string: cannot fail
	return string(b)
}

// appendExtraJSON appends m as a JSON object, keys sorted, its text as it
// is (SQLite's data array; extraJSON, for the server databases, makes
// the text valid UTF-8 as they require).
func appendExtraJSON(dst []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return append(dst, '{', '}')
	}
	dst = append(dst, '{')
	// The keys sorted on the stack: CheckCDR allows maxCDRExtra of them
	// (more still work, on the heap); slices.Sorted would allocate twice
	// a record.
	var room [maxCDRExtra]string
	keys := room[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONText(dst, k)
		dst = append(dst, ':')
		dst = appendJSONText(dst, m[k])
	}
	return append(dst, '}')
}

func parseExtra(s string, c *CDR) error {
	c.Extra = nil
	if s == "" || s == "{}" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), &c.Extra); err != nil {
		return fmt.Errorf("%s record %d: extra %q: %w", c.Table(), c.ID, s, err)
	}
	return nil
}

// CDRFilter selects call records. Zero fields select everything.
type CDRFilter struct {
	// Missed reads missed_calls instead of acc.
	Missed bool
	// FromUser, ToUser and CallID must equal the record's.
	FromUser, ToUser, CallID string
	// Since and Until bound the start time, in milliseconds since the
	// epoch: Since <= start_ms < Until (0: no bound).
	Since, Until int64
	// Oldest lists by start time, oldest first; by default newest first.
	Oldest bool
	// Limit is the most records returned (0: no limit).
	Limit int
}

// CheckCDRFilter validates f, naming the option at fault.
func CheckCDRFilter(f *CDRFilter) error {
	switch {
	case f.Since < 0 || f.Until < 0:
		return errorf(ErrMalformedCDR, "since/until: negative time")
	case f.Until != 0 && f.Until <= f.Since:
		return errorf(ErrMalformedCDR, "until (%d ms) is not after since (%d ms): the range is empty", f.Until, f.Since)
	case f.Limit < 0:
		return errorf(ErrMalformedCDR, "limit: %d is negative", f.Limit)
	}
	for name, v := range map[string]string{"from": f.FromUser, "to": f.ToUser, "call_id": f.CallID} {
		if len(v) > MaxCDRText {
			return errorf(ErrMalformedCDR, "%s: %d bytes: at most %d", name, len(v), MaxCDRText)
		}
	}
	return nil
}

// cdrWhere is the WHERE clause of f with its arguments (? placeholders).
func cdrWhere(f *CDRFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, cond)
	}
	if f.FromUser != "" {
		add("from_user = ?", f.FromUser)
	}
	if f.ToUser != "" {
		add("to_user = ?", f.ToUser)
	}
	if f.CallID != "" {
		add("call_id = ?", f.CallID)
	}
	if f.Since != 0 {
		add("start_ms >= ?", f.Since)
	}
	if f.Until != 0 {
		add("start_ms < ?", f.Until)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// AddCDRs writes records in one transaction, each in its table (acc or
// missed_calls), all or none, and sets their IDs. A record that does not
// validate fails the whole batch before anything is written; one the
// database refuses fails it with an error wrapping ErrCDRRefused.
func (s *Store) AddCDRs(ctx context.Context, cs []CDR) error {
	for i := range cs {
		if err := CheckCDR(&cs[i]); err != nil {
			return err
		}
	}
	if len(cs) == 0 {
		return nil
	}
	err := s.b.AddCDRs(ctx, cs)
	if err != nil && refusedRow(err) {
		return fmt.Errorf("%w: %w", ErrCDRRefused, err)
	}
	return err
}

// refusedRow tells an error about the values of a row (a constraint, a
// trigger's refusal, a value a column cannot hold) from one about the
// database (unreachable, locked, read-only, full, a statement it does not
// know), on every backend.
func refusedRow(err error) bool {
	return sqliteRefusedRow(err) || pgRefusedRow(err) || myRefusedRow(err)
}

// ForEachCDR calls fn with every record f selects, streamed (an export
// of millions of rows does not hold them in memory); c is reused between
// calls. An error from fn stops the walk and is returned.
func (s *Store) ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error {
	if err := CheckCDRFilter(&f); err != nil {
		return err
	}
	return s.b.ForEachCDR(ctx, f, fn)
}

// ListCDRs returns the records f selects.
func (s *Store) ListCDRs(ctx context.Context, f CDRFilter) ([]CDR, error) {
	var out []CDR
	err := s.ForEachCDR(ctx, f, func(c *CDR) error {
		cp := *c
		out = append(out, cp)
		return nil
	})
	return out, err
}

// DeleteCDRs removes the records of acc (or missed_calls) that started
// before until (ms since the epoch) and returns how many: the retention
// an operator runs from cron (`switchboard cdr purge`).
func (s *Store) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	if until <= 0 {
		return 0, errorf(ErrMalformedCDR, "until: %d: want a time", until)
	}
	return s.b.DeleteCDRs(ctx, missed, until)
}
