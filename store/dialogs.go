package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Errors of the dialog table.
var (
	ErrMalformedDialog = errors.New("malformed dialog")
	ErrNoDialog        = errors.New("no such dialog")
)

// Dialog is one row of the dialog table: a call the dialog module keeps
// across a restart (OpenSIPS's dialog table). The module writes its
// confirmed dialogs behind the calls and loads them at start; everything
// a proxy needs to match the call's requests and to end it with a BYE to
// each side is here. Times are milliseconds since the Unix epoch.
type Dialog struct {
	// ID is the dialog's id, the did parameter of our Record-Route.
	ID     uint64
	CallID string
	// FromURI and ToURI are the URIs of the INVITE's From and To;
	// FromHdr and ToHdr their whole values as the caller sent them
	// (display name, parameters, the From's tag), which the proxy's BYEs
	// carry. FromTag is the caller's tag, ToTag the callee's.
	FromURI, FromTag, ToURI, ToTag string
	FromHdr, ToHdr                 string
	// CalleeFromHdr and CalleeToHdr are the From and To (with the
	// callee's tag) as the callee has them, when a route rewrote them in
	// the relayed INVITE (uac_replace_from/to; OpenSIPS's
	// mangled_from_uri and mangled_to_uri); "" when not.
	CalleeFromHdr, CalleeToHdr string
	// CallerCSeq and CalleeCSeq are the highest CSeq numbers seen from
	// each side (0: the callee sent no request yet).
	CallerCSeq, CalleeCSeq uint32
	// CSeqOffset is how far the callee's numbering of the caller's
	// requests is above the caller's own (the INVITE re-sent with
	// credentials by uac_auth); 0 mostly.
	CSeqOffset uint32
	// CallerRouteSet and CalleeRouteSet are the Route values towards
	// each side, comma-separated ("" none); CallerContact and
	// CalleeContact the targets (the last Contact of each).
	CallerRouteSet, CalleeRouteSet string
	CallerContact, CalleeContact   string
	// CallerContactSent and CalleeContactSent are each side's Contact as
	// the proxy relayed it to the other side, when a route changed it
	// (fix_nated_contact wrote the side's source address in it): what the
	// other side's requests are addressed to, which the dialog module
	// checks (ValidateDialog). "" when it is the Contact itself.
	CallerContactSent, CalleeContactSent string
	// CallerHop and CalleeHop are the first hops towards each side,
	// "udp:192.0.2.1:5060" (CalleeHop "" when unknown: no BYE goes that
	// way).
	CallerHop, CalleeHop string
	// State is DialogConfirmed (the module stores no other).
	State int
	// StartTime is when the INVITE came, AnswerTime when it was answered
	// (0 not answered), Timeout when the proxy ends the call.
	StartTime, AnswerTime, Timeout int64
	// Code and Phrase are the status and reason phrase of the response
	// that answered the INVITE (the 2xx).
	Code   int
	Phrase string
	// Profiles are the profiles the dialog is counted in.
	Profiles []DialogProfile
	// Flags and Values are what routes set on the dialog (OpenSIPS
	// set_dlg_flag and store_dlg_value; script_flags and vars), in the
	// order the values were first set.
	Flags  uint32
	Values []DialogValue
	// Updated is when the row was last written (set by ApplyDialogs).
	Updated int64

	// profiles and vars are the Profiles and Values columns as stored,
	// encoded by the Store for the backend and decoded from it
	// (encodeProfiles, encodeValues).
	profiles, vars string
	// badData is why a row's data could not be read (SQLite's data
	// column, dialog_data.go): LoadDialogs reports the row as bad.
	badData error
}

// DialogValue is a name/value pair a route stored with a dialog.
type DialogValue struct {
	Name  string
	Value string
}

// DialogProfile is a dialog's place in a profile: the profile's name and
// the value it is counted under ("" for a profile without values).
type DialogProfile struct {
	Name  string
	Value string
}

// States of a stored dialog (the dialog module's numbering).
const (
	DialogEarly     = 1
	DialogConfirmed = 2
)

// DialogOpKind says what a DialogOp does.
type DialogOpKind uint8

const (
	// DialogUpsert inserts the dialog or replaces the row of its ID.
	DialogUpsert DialogOpKind = 1
	// DialogDelete removes the row of Dialog.ID (none: nothing to do).
	DialogDelete DialogOpKind = 2
)

// DialogOp is one queued change of the dialog table.
type DialogOp struct {
	Kind   DialogOpKind
	Dialog Dialog
}

// Limits of one stored dialog's text.
const (
	maxDialogText    = 4096 // any text column
	maxDialogProfile = 1024 // a profile's value
)

// CheckDialog validates d, naming the field at fault:
// `dialog 41ddda1940528765: caller_hop "x": ...`. Everything a dialog
// stores ends up in the proxy's BYEs, so no field may hold a line break.
func CheckDialog(d *Dialog) error {
	fail := func(format string, args ...any) error {
		return errorf(ErrMalformedDialog, "dialog %016x: "+format, append([]any{d.ID}, args...)...)
	}
	if d.ID == 0 {
		return errorf(ErrMalformedDialog, "dialog: id 0 (ids are 1 to 2^64-1)")
	}
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"callid", d.CallID, true}, {"from_uri", d.FromURI, true}, {"from_tag", d.FromTag, true},
		{"to_uri", d.ToURI, true}, {"to_tag", d.ToTag, true}, {"from_hdr", d.FromHdr, true}, {"to_hdr", d.ToHdr, true},
		{"callee_from_hdr", d.CalleeFromHdr, false}, {"callee_to_hdr", d.CalleeToHdr, false}, {"phrase", d.Phrase, false},
		{"caller_route_set", d.CallerRouteSet, false}, {"callee_route_set", d.CalleeRouteSet, false},
		{"caller_contact", d.CallerContact, false}, {"callee_contact", d.CalleeContact, false},
		{"caller_contact_sent", d.CallerContactSent, false}, {"callee_contact_sent", d.CalleeContactSent, false},
	} {
		switch {
		case f.required && f.v == "":
			return fail("%s: empty", f.name)
		case len(f.v) > maxDialogText:
			return fail("%s: %d bytes, at most %d", f.name, len(f.v), maxDialogText)
		case hasLineBreakOrNUL(f.v):
			return fail("%s %q: holds a line break or NUL", f.name, f.v)
		}
	}
	if err := checkHop(d.CallerHop); err != nil || d.CallerHop == "" {
		if err == nil {
			err = errors.New("empty")
		}
		return fail("caller_hop %q: %v", d.CallerHop, err)
	}
	if err := checkHop(d.CalleeHop); err != nil {
		return fail("callee_hop %q: %v", d.CalleeHop, err)
	}
	if d.State != DialogEarly && d.State != DialogConfirmed {
		return fail("state %d: want %d (early) or %d (confirmed)", d.State, DialogEarly, DialogConfirmed)
	}
	if d.StartTime <= 0 || d.Timeout <= 0 || d.AnswerTime < 0 {
		return fail("start_time %d, answer_time %d, timeout %d: want times in ms since the epoch", d.StartTime, d.AnswerTime, d.Timeout)
	}
	// The proxy bounds a call's timeout from its answer (the dialog
	// module's 168 h): an answer outside the call's life would move that
	// bound.
	if d.State == DialogConfirmed && d.AnswerTime == 0 {
		return fail("answer_time 0: a confirmed dialog was answered")
	}
	if d.AnswerTime != 0 && (d.AnswerTime < d.StartTime || d.AnswerTime > d.Timeout) {
		return fail("answer_time %d: want from start_time %d to timeout %d", d.AnswerTime, d.StartTime, d.Timeout)
	}
	if d.Code < 0 || d.Code > 699 {
		return fail("code %d: want a SIP status (0 none)", d.Code)
	}
	for _, v := range d.Values {
		if !validProfileName(v.Name) || len(v.Name) > 32 {
			return fail("value %q: want a name of 1 to 32 letters, digits, '-' or '_'", v.Name)
		}
		if len(v.Value) > maxDialogProfile {
			return fail("value %s: %d bytes, at most %d", v.Name, len(v.Value), maxDialogProfile)
		}
	}
	for _, p := range d.Profiles {
		if !validProfileName(p.Name) {
			return fail("profile %q: want 1 to 64 letters, digits, '-' or '_'", p.Name)
		}
		if len(p.Value) > maxDialogProfile {
			return fail("profile %s: value of %d bytes, at most %d", p.Name, len(p.Value), maxDialogProfile)
		}
	}
	return nil
}

// hasLineBreakOrNUL reports whether s holds a CR, an LF or a NUL: three
// vectorised byte searches, a few times faster than strings.ContainsAny,
// which tests a byte at a time (CheckDialog runs it on every text of
// every dialog the write-back stores).
func hasLineBreakOrNUL(s string) bool {
	return strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, 0) >= 0
}

// checkHop checks "proto:address:port" ("" is allowed: the caller checks
// whether it needs one). The protocols are the transport's, in lower
// case: a dialog whose caller came over WebSocket over TLS has a wss hop
// (refused, it failed every write-back batch of the node and every other
// node's read of the call from Redis).
func checkHop(s string) error {
	if s == "" {
		return nil
	}
	proto, addr, ok := strings.Cut(s, ":")
	if !ok {
		return errors.New(`want proto:address:port, e.g. "udp:192.0.2.1:5060"`)
	}
	switch proto {
	case "udp", "tcp", "tls", "ws", "wss":
	default:
		return fmt.Errorf("protocol %q: want udp, tcp, tls, ws or wss", proto)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	if ap.Port() == 0 {
		return errors.New("port 0")
	}
	return nil
}

func validProfileName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// encodeProfiles writes the profiles column: "name" or "name=value",
// the value query-escaped, joined by ",".
func encodeProfiles(ps []DialogProfile) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.Name)
		if p.Value != "" {
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(p.Value))
		}
	}
	return b.String()
}

// encodeValues writes the vars column: "name=value" pairs, the value
// query-escaped, joined by "&", in order.
func encodeValues(vs []DialogValue) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(v.Name)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v.Value))
	}
	return b.String()
}

func decodeValues(s string) ([]DialogValue, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "&")
	out := make([]DialogValue, 0, len(parts))
	for _, part := range parts {
		name, v, ok := strings.Cut(part, "=")
		val, err := url.QueryUnescape(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("vars %q: %q is not name=value", s, part)
		}
		out = append(out, DialogValue{Name: name, Value: val})
	}
	return out, nil
}

func decodeProfiles(s string) ([]DialogProfile, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]DialogProfile, 0, len(parts))
	for _, part := range parts {
		name, v, _ := strings.Cut(part, "=")
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("profiles %q: %v", s, err)
		}
		out = append(out, DialogProfile{Name: name, Value: val})
	}
	return out, nil
}

// ApplyDialogs applies ops in order in one transaction (the dialog
// module's writer). Every upsert is checked first: a malformed one fails
// the whole batch, naming the dialog and field, and nothing is written
// (the writer checks each row with CheckDialog before, and leaves out
// the one that would fail it).
func (s *Store) ApplyDialogs(ctx context.Context, ops []DialogOp) error {
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case DialogUpsert:
			if err := CheckDialog(&op.Dialog); err != nil {
				return err
			}
			op.Dialog.profiles = encodeProfiles(op.Dialog.Profiles)
			op.Dialog.vars = encodeValues(op.Dialog.Values)
		case DialogDelete:
		default:
			return errorf(ErrMalformedDialog, "dialog %016x: unknown operation %d", op.Dialog.ID, op.Kind)
		}
	}
	return s.b.ApplyDialogs(ctx, ops, unixNow()*1000)
}

// LoadDialogs returns every stored dialog, oldest first. A row that does
// not pass CheckDialog (written by hand, or by a broken tool) is returned
// in bad, with what is wrong, and not in the dialogs: the server starts
// without it.
func (s *Store) LoadDialogs(ctx context.Context) (dialogs []Dialog, bad []error, err error) {
	all, err := s.b.LoadDialogs(ctx)
	if err != nil {
		return nil, nil, err
	}
	dialogs = all[:0]
	for i := range all {
		d := &all[i]
		if d.badData != nil {
			bad = append(bad, errorf(ErrMalformedDialog, "dialog %016x: %v", d.ID, d.badData))
			continue
		}
		if d.Profiles, err = decodeProfiles(d.profiles); err != nil {
			bad = append(bad, errorf(ErrMalformedDialog, "dialog %016x: %v", d.ID, err))
			continue
		}
		if d.Values, err = decodeValues(d.vars); err != nil {
			bad = append(bad, errorf(ErrMalformedDialog, "dialog %016x: %v", d.ID, err))
			continue
		}
		if err := CheckDialog(d); err != nil {
			bad = append(bad, err)
			continue
		}
		dialogs = append(dialogs, all[i])
	}
	return dialogs, bad, nil
}

// ListDialogs is LoadDialogs for tools (switchboard dialog list): every
// row, the malformed ones too, as stored.
func (s *Store) ListDialogs(ctx context.Context) ([]Dialog, error) {
	all, err := s.b.LoadDialogs(ctx)
	for i := range all {
		all[i].Profiles, _ = decodeProfiles(all[i].profiles)
		all[i].Values, _ = decodeValues(all[i].vars)
	}
	return all, err
}

// DeleteDialog removes the stored dialog id, so that the next start does
// not restore it (ErrNoDialog when there is none). A running server
// keeps the dialog in memory and writes it again at its next change.
func (s *Store) DeleteDialog(ctx context.Context, id uint64) error {
	if err := s.b.DeleteDialog(ctx, id); err != nil {
		if errors.Is(err, ErrNoDialog) {
			return errorf(ErrNoDialog, "dialog %016x is not stored", id)
		}
		return err
	}
	return nil
}
