package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The tables of the OpenSIPS schema mode that Switchboard writes as it
// runs: location (the registrar), dialog (the dialog module), acc and
// missed_calls (the acc module).

// osText makes s storable in a text column of either server: OpenSIPS's
// tables are text in the database's character set (Switchboard's own
// MySQL tables are bytes), so bytes that are not UTF-8 and NUL are
// replaced, and the result is cut to max bytes (0: no limit) at a
// character boundary, as the column's size is counted in characters.
func osText(s string, max int) string {
	s = pgText(s)
	if max > 0 && len(s) > max {
		s = s[:max]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// ---- location

// splitAOR cuts "user@domain"; checkBinding made sure there is an @.
func splitAOR(aor string) (user, domain string) {
	i := strings.LastIndexByte(aor, '@')
	if i < 0 {
		return aor, ""
	}
	return aor[:i], aor[i+1:]
}

// osReceived turns Switchboard's received ("udp:198.51.100.7:5062") into
// OpenSIPS's, a SIP URI ("sip:198.51.100.7:5062", with ;transport= for
// other transports).
func osReceived(r string) string {
	proto, hostport, ok := strings.Cut(r, ":")
	if r == "" || !ok {
		return r
	}
	s := "sip:" + hostport
	if proto = strings.ToLower(proto); proto != "udp" {
		s += ";transport=" + proto
	}
	return s
}

// fromOSReceived is osReceived's inverse; text of another form is kept.
func fromOSReceived(r string) string {
	if len(r) < 4 || !strings.EqualFold(r[:4], "sip:") {
		return r
	}
	hostport, params, _ := strings.Cut(r[4:], ";")
	proto := "udp"
	for _, p := range strings.Split(params, ";") {
		if name, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(name, "transport") {
			proto = strings.ToLower(v)
		}
	}
	return proto + ":" + hostport
}

// The reg-id of an RFC 5626 binding, which OpenSIPS 3.x's location does
// not keep, goes into the attr column as "reg-id=N".
const osRegIDAttr = "reg-id="

func osRegID(attr string) uint32 {
	if v, ok := strings.CutPrefix(attr, osRegIDAttr); ok {
		n, _ := strconv.ParseUint(v, 10, 32)
		return uint32(n)
	}
	return 0
}

func osAttr(b *Binding) any {
	if b.Instance == "" || b.RegID == 0 {
		return nil
	}
	return osRegIDAttr + strconv.FormatUint(uint64(b.RegID), 10)
}

// bindingKey is the WHERE clause that finds the row of a binding: by
// instance (and reg-id) when it has one, else by contact.
func (b *OpenSIPS) bindingKey(x *Binding) (string, []any) {
	user, domain := splitAOR(x.AOR)
	if x.Instance != "" {
		attr := osAttr(x)
		if attr == nil {
			attr = ""
		}
		return `username = ? AND domain = ? AND sip_instance = ? AND COALESCE(attr, '') = ?`,
			[]any{user, domain, b.text("location", "sip_instance", x.Instance), attr}
	}
	return `username = ? AND domain = ? AND contact = ? AND COALESCE(sip_instance, '') = ''`,
		[]any{user, domain, b.text("location", "contact", x.Contact)}
}

func (b *OpenSIPS) LoadBindings(ctx context.Context, now int64) ([]Binding, error) {
	// A row without domain (OpenSIPS without use_domain) has no AOR
	// Switchboard can serve: not loaded. Permanent contacts (expires 0)
	// are OpenSIPS's static ones: not loaded either.
	return osList(b, ctx, scanOSBinding, `SELECT username, domain, contact, COALESCE(received, ''), COALESCE(path, ''), q, expires,
		callid, cseq, COALESCE(user_agent, ''), COALESCE(sip_instance, ''), COALESCE(attr, ''), COALESCE(socket, ''), flags,
		COALESCE(`+b.epoch("last_modified")+`, 0)
		FROM location WHERE expires > ? AND domain IS NOT NULL AND domain <> '' ORDER BY username, domain, contact_id`, now)
}

// scanOSBinding reads a location row. A cseq or flags outside a uint32
// (OpenSIPS's columns are signed) makes the row bad (badRow, reported by
// Store.LoadBindings), not an error that would stop the whole load; it
// was wrapped into another number before.
func scanOSBinding(r rowScanner, x *Binding) error {
	var user, domain, attr string
	var q float64
	var cseq, flags int64
	if err := r.Scan(&user, &domain, &x.Contact, &x.Received, &x.Path, &q, &x.Expires, &x.CallID, &cseq, &x.UserAgent,
		&x.Instance, &attr, &x.Socket, &flags, &x.LastModified); err != nil {
		return err
	}
	x.AOR = user + "@" + strings.ToLower(domain)
	x.Received = fromOSReceived(x.Received)
	x.Q = osQ(q)
	x.RegID = osRegID(attr)
	var err error
	if x.CSeq, err = uint32Col("cseq", cseq); err == nil {
		x.Flags, err = uint32Col("flags", flags)
	}
	x.badRow = err
	return nil
}

// osQ reads OpenSIPS's q (a float, -1 when the contact gave none) as
// thousandths; no q is Switchboard's default 1000.
func osQ(q float64) uint16 {
	if q < 0 || q > 1 {
		return 1000
	}
	return uint16(math.Round(q * 1000))
}

// ApplyBindings updates the row of each upserted binding, inserting it
// when there is none (OpenSIPS's location has no unique key to upsert
// on), in one transaction.
func (b *OpenSIPS) ApplyBindings(ctx context.Context, ops []BindingOp) error {
	if len(ops) == 0 {
		return nil
	}
	now := unixNow()
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i := range ops {
			x := &ops[i].Binding
			var err error
			switch ops[i].Kind {
			case OpUpsert:
				err = b.upsertBinding(ctx, tx, x, now)
			case OpDelete:
				where, args := b.bindingKey(x)
				_, err = tx.ExecContext(ctx, b.q(`DELETE FROM location WHERE `+where), args...)
			case OpDeleteAOR:
				user, domain := splitAOR(x.AOR)
				_, err = tx.ExecContext(ctx, b.q(`DELETE FROM location WHERE username = ? AND domain = ?`), user, domain)
			default:
				err = fmt.Errorf("unknown operation %d", ops[i].Kind)
			}
			if err != nil {
				return fmt.Errorf("binding %s of %s: %w", x.Contact, x.AOR, err)
			}
		}
		return nil
	})
}

func (b *OpenSIPS) upsertBinding(ctx context.Context, tx *sql.Tx, x *Binding, now int64) error {
	mod := x.LastModified
	if mod == 0 {
		mod = now
	}
	user, domain := splitAOR(x.AOR)
	t := func(col, s string) string { return b.text("location", col, s) }
	vals := []any{t("contact", x.Contact), nullText(t("received", osReceived(x.Received))), nullText(t("path", x.Path)), x.Expires,
		float64(x.Q) / 1000, t("callid", x.CallID), int64(x.CSeq), datetime(mod), int64(x.Flags), t("user_agent", x.UserAgent),
		nullText(t("socket", x.Socket)), nullText(t("sip_instance", x.Instance)), osAttr(x)}
	where, key := b.bindingKey(x)
	res, err := tx.ExecContext(ctx, b.q(`UPDATE location SET contact = ?, received = ?, path = ?, expires = ?, q = ?, callid = ?,
		cseq = ?, last_modified = ?, flags = ?, user_agent = ?, socket = ?, sip_instance = ?, attr = ? WHERE `+where), append(vals, key...)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	_, err = tx.ExecContext(ctx, b.q(`INSERT INTO location (username, domain, contact, received, path, expires, q, callid, cseq,
		last_modified, flags, user_agent, socket, sip_instance, attr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		append([]any{user, domain}, vals...)...)
	return err
}

func (b *OpenSIPS) DeleteExpiredBindings(ctx context.Context, now int64) (int64, error) {
	var n int64
	err := b.do(ctx, func(ctx context.Context) error {
		res, err := b.db.ExecContext(ctx, b.q(`DELETE FROM location WHERE expires > 0 AND expires <= ?`), now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// ---- dialog

// OpenSIPS's dialog states (dlg_hash.h) and Switchboard's.
const (
	osDlgEarly     = 2
	osDlgConfirmed = 4
)

// The dialog fields OpenSIPS's dialog table has no column for travel in
// its vars column, under these names, beside the values of the routes.
// A row without osVarHop was written by OpenSIPS: Switchboard cannot end
// such a call (it does not know where the caller's side is) and does not
// load it.
const (
	osVarPrefix  = "sb:"
	osVarHop     = osVarPrefix + "caller_hop"
	osVarFlagsNm = osVarPrefix + "flags"
)

// osPair writes one OpenSIPS vars/profiles entry: name#1#value| with |,
// # and \ escaped by a backslash (write_pair in its dialog module).
func osPair(s *strings.Builder, name, value string) {
	esc := func(v string) {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c == '|' || c == '#' || c == '\\' {
				s.WriteByte('\\')
			}
			s.WriteByte(v[i])
		}
	}
	esc(name)
	s.WriteString("#1#")
	esc(value)
	s.WriteByte('|')
}

// parseOSPairs reads what osPair (or OpenSIPS) wrote: name#type#value|...
func parseOSPairs(s string) ([][2]string, error) {
	var out [][2]string
	var field strings.Builder
	var parts []string
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			field.WriteByte(s[i])
		case c == '#':
			parts = append(parts, field.String())
			field.Reset()
		case c == '|':
			parts = append(parts, field.String())
			field.Reset()
			if len(parts) != 3 {
				return nil, fmt.Errorf("%q: an entry is not name#type#value", s)
			}
			out = append(out, [2]string{parts[0], parts[2]})
			parts = parts[:0]
		default:
			field.WriteByte(c)
		}
	}
	if len(parts) > 0 || field.Len() > 0 {
		return nil, fmt.Errorf("%q: unterminated entry", s)
	}
	return out, nil
}

func osDialogVars(d *Dialog) []byte {
	var s strings.Builder
	for _, v := range d.Values {
		osPair(&s, v.Name, v.Value)
	}
	for _, kv := range [][2]string{
		{osVarHop, d.CallerHop}, {osVarPrefix + "callee_hop", d.CalleeHop},
		{osVarPrefix + "from_hdr", d.FromHdr}, {osVarPrefix + "to_hdr", d.ToHdr},
		{osVarPrefix + "cseq_offset", strconv.FormatUint(uint64(d.CSeqOffset), 10)},
		{osVarPrefix + "start_ms", strconv.FormatInt(d.StartTime, 10)},
		{osVarPrefix + "answer_ms", strconv.FormatInt(d.AnswerTime, 10)},
		{osVarPrefix + "timeout_ms", strconv.FormatInt(d.Timeout, 10)},
		{osVarPrefix + "code", strconv.Itoa(d.Code)}, {osVarPrefix + "phrase", d.Phrase},
		{osVarFlagsNm, strconv.FormatUint(uint64(d.Flags), 10)},
		{osVarPrefix + "updated", strconv.FormatInt(d.Updated, 10)},
	} {
		osPair(&s, kv[0], kv[1])
	}
	return []byte(s.String())
}

func osDialogProfiles(d *Dialog) string {
	var s strings.Builder
	for _, p := range d.Profiles {
		osPair(&s, p.Name, p.Value)
	}
	return s.String()
}

func (b *OpenSIPS) LoadDialogs(ctx context.Context) ([]Dialog, error) {
	var out []Dialog
	err := b.do(ctx, func(ctx context.Context) error {
		rows, err := b.db.QueryContext(ctx, `SELECT dlg_id, callid, from_uri, from_tag, to_uri, to_tag,
			COALESCE(mangled_from_uri, ''), COALESCE(mangled_to_uri, ''), caller_cseq, callee_cseq,
			COALESCE(caller_route_set, ''), COALESCE(callee_route_set, ''), COALESCE(caller_contact, ''), COALESCE(callee_contact, ''),
			state, start_time, timeout, vars, COALESCE(profiles, '') FROM dialog ORDER BY start_time, dlg_id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d Dialog
			var id, uid = new(int64), new(uint64)
			idDest := any(id)
			if !b.pg {
				idDest = uid // BIGINT UNSIGNED
			}
			var callerCSeq, calleeCSeq, profiles string
			var start, timeout int64
			var vars []byte
			if err := rows.Scan(idDest, &d.CallID, &d.FromURI, &d.FromTag, &d.ToURI, &d.ToTag, &d.CalleeFromHdr, &d.CalleeToHdr,
				&callerCSeq, &calleeCSeq, &d.CallerRouteSet, &d.CalleeRouteSet, &d.CallerContact, &d.CalleeContact,
				&d.State, &start, &timeout, &vars, &profiles); err != nil {
				return err
			}
			d.ID = uint64(*id) | *uid
			if ok, err := d.fromOSColumns(callerCSeq, calleeCSeq, string(vars), profiles); err != nil {
				// Handed on as a vars column that does not decode:
				// the Store reports the row and does not load it.
				d.vars = "opensips " + strings.NewReplacer("=", " ", "&", " ").Replace(err.Error())
			} else if !ok {
				continue // OpenSIPS's own dialog
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// fromOSColumns fills what the dialog table's text columns hold; false
// when the row is not one Switchboard wrote.
func (d *Dialog) fromOSColumns(callerCSeq, calleeCSeq, vars, profiles string) (bool, error) {
	pairs, err := parseOSPairs(vars)
	if err != nil {
		return false, fmt.Errorf("vars: %v", err)
	}
	var values []DialogValue
	mine := false
	num := func(v string) int64 { n, _ := strconv.ParseInt(v, 10, 64); return n }
	for _, kv := range pairs {
		name, v := kv[0], kv[1]
		if !strings.HasPrefix(name, osVarPrefix) {
			values = append(values, DialogValue{Name: name, Value: v})
			continue
		}
		switch strings.TrimPrefix(name, osVarPrefix) {
		case "caller_hop":
			d.CallerHop, mine = v, true
		case "callee_hop":
			d.CalleeHop = v
		case "from_hdr":
			d.FromHdr = v
		case "to_hdr":
			d.ToHdr = v
		case "cseq_offset":
			d.CSeqOffset = uint32(num(v))
		case "start_ms":
			d.StartTime = num(v)
		case "answer_ms":
			d.AnswerTime = num(v)
		case "timeout_ms":
			d.Timeout = num(v)
		case "code":
			d.Code = int(num(v))
		case "phrase":
			d.Phrase = v
		case "flags":
			d.Flags = uint32(num(v))
		case "updated":
			d.Updated = num(v)
		}
	}
	if !mine {
		return false, nil
	}
	c1, _ := strconv.ParseUint(callerCSeq, 10, 32)
	c2, _ := strconv.ParseUint(calleeCSeq, 10, 32)
	d.CallerCSeq, d.CalleeCSeq = uint32(c1), uint32(c2)
	switch d.State {
	case osDlgConfirmed, 3:
		d.State = DialogConfirmed
	case osDlgEarly, 1:
		d.State = DialogEarly
	}
	d.vars = encodeValues(values)
	ps, err := parseOSPairs(profiles)
	if err != nil {
		return false, fmt.Errorf("profiles: %v", err)
	}
	var profs []DialogProfile
	for _, kv := range ps {
		profs = append(profs, DialogProfile{Name: kv[0], Value: kv[1]})
	}
	d.profiles = encodeProfiles(profs)
	return true, nil
}

// dialogID is dlg_id as the column takes it: OpenSIPS declares it an
// unsigned BIGINT, which PostgreSQL has not (its BIGINT holds the same 64
// bits as a signed number).
func (b *OpenSIPS) dialogID(id uint64) any {
	if b.pg {
		return int64(id)
	}
	return id
}

func osDialogState(s int) int {
	if s == DialogEarly {
		return osDlgEarly
	}
	return osDlgConfirmed
}

const osDialogInsert = `INSERT INTO dialog (dlg_id, callid, from_uri, from_tag, to_uri, to_tag, mangled_from_uri, mangled_to_uri,
	caller_cseq, callee_cseq, caller_ping_cseq, callee_ping_cseq, caller_route_set, callee_route_set, caller_contact, callee_contact,
	caller_sock, callee_sock, state, start_time, timeout, vars, profiles, module_flags, flags)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, '', '', ?, ?, ?, ?, ?, 0, 0)`

func (b *OpenSIPS) ApplyDialogs(ctx context.Context, ops []DialogOp, now int64) error {
	if len(ops) == 0 {
		return nil
	}
	upsert := `REPLACE` + strings.TrimPrefix(osDialogInsert, `INSERT`)
	if b.pg {
		upsert = b.q(osDialogInsert + ` ON CONFLICT (dlg_id) DO UPDATE SET callid = excluded.callid, from_uri = excluded.from_uri,
			from_tag = excluded.from_tag, to_uri = excluded.to_uri, to_tag = excluded.to_tag, mangled_from_uri = excluded.mangled_from_uri,
			mangled_to_uri = excluded.mangled_to_uri, caller_cseq = excluded.caller_cseq, callee_cseq = excluded.callee_cseq,
			caller_route_set = excluded.caller_route_set, callee_route_set = excluded.callee_route_set,
			caller_contact = excluded.caller_contact, callee_contact = excluded.callee_contact, state = excluded.state,
			start_time = excluded.start_time, timeout = excluded.timeout, vars = excluded.vars, profiles = excluded.profiles`)
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i := range ops {
			d := &ops[i].Dialog
			var err error
			switch ops[i].Kind {
			case DialogUpsert:
				d.Updated = now
				t := func(col, s string) string { return b.text("dialog", col, s) }
				_, err = tx.ExecContext(ctx, upsert, b.dialogID(d.ID), t("callid", d.CallID), t("from_uri", d.FromURI), t("from_tag", d.FromTag),
					t("to_uri", d.ToURI), t("to_tag", d.ToTag), nullText(t("mangled_from_uri", d.CalleeFromHdr)), nullText(t("mangled_to_uri", d.CalleeToHdr)),
					strconv.FormatUint(uint64(d.CallerCSeq), 10), strconv.FormatUint(uint64(d.CalleeCSeq), 10),
					nullText(t("caller_route_set", d.CallerRouteSet)), nullText(t("callee_route_set", d.CalleeRouteSet)),
					nullText(t("caller_contact", d.CallerContact)), nullText(t("callee_contact", d.CalleeContact)),
					osDialogState(d.State), d.StartTime/1000, d.Timeout/1000, osDialogVars(d), nullText(t("profiles", osDialogProfiles(d))))
			case DialogDelete:
				_, err = tx.ExecContext(ctx, b.q(`DELETE FROM dialog WHERE dlg_id = ?`), b.dialogID(d.ID))
			default:
				err = fmt.Errorf("unknown operation %d", ops[i].Kind)
			}
			if err != nil {
				return fmt.Errorf("dialog %016x: %w", d.ID, err)
			}
		}
		return nil
	})
}

func (b *OpenSIPS) DeleteDialog(ctx context.Context, id uint64) error {
	var n int64
	err := b.do(ctx, func(ctx context.Context) error {
		res, err := b.db.ExecContext(ctx, b.q(`DELETE FROM dialog WHERE dlg_id = ?`), b.dialogID(id))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err == nil && n == 0 {
		return ErrNoDialog
	}
	return err
}

// ---- acc and missed_calls

// OpenSIPS's acc table has the columns of its CDR mode: method, from_tag,
// to_tag, callid, sip_code, sip_reason, time (when the call was answered,
// or failed), duration and ms_duration (of the answered call), setuptime
// (seconds from the INVITE to time) and created (the INVITE). What else
// a record holds is written to columns of the same name when the operator
// added them (as OpenSIPS's acc extra does): from_uri, from_user, to_uri,
// to_user, caller, end_reason, ended_by, and each acc_extra pair whose
// name is a column.

// osCDRExtraCols are the record's own fields written when their column
// exists.
var osCDRExtraCols = []struct {
	col string
	get func(c *CDR) string
	set func(c *CDR, v string)
}{
	{"from_uri", func(c *CDR) string { return c.FromURI }, func(c *CDR, v string) { c.FromURI = v }},
	{"from_user", func(c *CDR) string { return c.FromUser }, func(c *CDR, v string) { c.FromUser = v }},
	{"to_uri", func(c *CDR) string { return c.ToURI }, func(c *CDR, v string) { c.ToURI = v }},
	{"to_user", func(c *CDR) string { return c.ToUser }, func(c *CDR, v string) { c.ToUser = v }},
	{"caller", func(c *CDR) string { return c.Caller }, func(c *CDR, v string) { c.Caller = v }},
	{"end_reason", func(c *CDR) string { return c.EndReason }, func(c *CDR, v string) { c.EndReason = v }},
	{"ended_by", func(c *CDR) string { return c.EndedBy }, func(c *CDR, v string) { c.EndedBy = v }},
}

var osColumnName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func (b *OpenSIPS) AddCDRs(ctx context.Context, cs []CDR) error {
	if len(cs) == 0 {
		return nil
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i := range cs {
			c := &cs[i]
			table := c.Table()
			cols := []string{"method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time", "setuptime", "created"}
			at := c.End
			if c.Answer > 0 {
				at = c.Answer
			}
			code := ""
			if c.Code > 0 {
				code = strconv.Itoa(c.Code)
			}
			t := func(col, s string) string { return b.text(table, col, s) }
			args := []any{"INVITE", t("from_tag", c.FromTag), t("to_tag", c.ToTag), t("callid", c.CallID), code, t("sip_reason", c.Reason),
				datetime(at / 1000), (at - c.Start) / 1000, datetime(c.Start / 1000)}
			if !c.Missed {
				cols = append(cols, "duration", "ms_duration")
				args = append(args, c.Duration/1000, c.Duration)
			}
			for _, e := range osCDRExtraCols {
				if b.hasColumn(table, e.col) {
					cols, args = append(cols, e.col), append(args, t(e.col, e.get(c)))
				}
			}
			for name, v := range c.Extra {
				if osColumnName.MatchString(name) && b.hasColumn(table, name) && !contains(cols, name) {
					cols, args = append(cols, name), append(args, t(name, v))
				}
			}
			marks := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
			var err error
			c.ID, err = b.insertID(ctx, tx, "id", `INSERT INTO `+table+` (`+strings.Join(cols, ", ")+`) VALUES (`+marks+`)`, args...)
			if err != nil {
				return fmt.Errorf("%s record %q: %w", table, c.CallID, err)
			}
		}
		return nil
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (b *OpenSIPS) ForEachCDR(ctx context.Context, f CDRFilter, fn func(c *CDR) error) error {
	table := (&CDR{Missed: f.Missed}).Table()
	cols := `id, callid, from_tag, to_tag, sip_code, sip_reason, COALESCE(` + b.epoch("time") + `, 0), COALESCE(` + b.epoch("created") + `, 0)`
	if f.Missed {
		cols += `, 0`
	} else {
		cols += `, ms_duration`
	}
	var extra []int
	for i, e := range osCDRExtraCols {
		if b.hasColumn(table, e.col) {
			cols += `, COALESCE(` + e.col + `, '')`
			extra = append(extra, i)
		}
	}
	var where []string
	var args []any
	for _, w := range []struct {
		col, v string
	}{{"callid", f.CallID}, {"from_user", f.FromUser}, {"to_user", f.ToUser}} {
		if w.v == "" {
			continue
		}
		if !b.hasColumn(table, w.col) {
			return fmt.Errorf("store: %s has no column %s to select records by", table, w.col)
		}
		where, args = append(where, w.col+` = ?`), append(args, w.v)
	}
	if f.Since > 0 {
		where, args = append(where, `created >= ?`), append(args, datetime(f.Since/1000))
	}
	if f.Until > 0 {
		where, args = append(where, `created < ?`), append(args, datetime((f.Until+999)/1000))
	}
	query := `SELECT ` + cols + ` FROM ` + table
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	if f.Oldest {
		query += ` ORDER BY created, id`
	} else {
		query += ` ORDER BY created DESC, id DESC`
	}
	if f.Limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(f.Limit)
	}
	rows, err := b.db.QueryContext(ctx, b.q(query), args...)
	if err != nil {
		return b.check(err)
	}
	defer rows.Close()
	var c CDR
	for rows.Next() {
		c = CDR{Missed: f.Missed}
		var code string
		var at, created int64
		dest := []any{&c.ID, &c.CallID, &c.FromTag, &c.ToTag, &code, &c.Reason, &at, &created, &c.Duration}
		vals := make([]string, len(extra))
		for i := range extra {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		for i, j := range extra {
			osCDRExtraCols[j].set(&c, vals[i])
		}
		c.Code, _ = strconv.Atoi(code)
		c.Start, at = created*1000, at*1000
		if c.Start == 0 {
			c.Start = at
		}
		if !c.Missed && c.Code >= 200 && c.Code < 300 {
			c.Answer, c.End = at, at+c.Duration
		} else {
			c.End = at
		}
		if err := fn(&c); err != nil {
			return err
		}
	}
	return b.check(rows.Err())
}

func (b *OpenSIPS) DeleteCDRs(ctx context.Context, missed bool, until int64) (int64, error) {
	var n int64
	err := b.do(ctx, func(ctx context.Context) error {
		res, err := b.db.ExecContext(ctx, b.q(`DELETE FROM `+(&CDR{Missed: missed}).Table()+` WHERE created < ?`), datetime(until/1000))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

var _ Backend = (*OpenSIPS)(nil)
