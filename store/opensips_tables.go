package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// The provisioning tables of the OpenSIPS schema mode: subscriber,
// domain, address, dialplan and the drouting tables, in OpenSIPS 3.x's
// column layout. Columns OpenSIPS has and Switchboard has no use for are
// left to their defaults on insert and untouched on update; Switchboard's
// created times, which OpenSIPS does not keep, read as 0 (domain: its
// last_modified).

// osExecOne runs a statement that must change one row; missing when none.
func (b *OpenSIPS) osExecOne(ctx context.Context, tx *sql.Tx, missing error, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, b.q(query), args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return missing
	}
	return nil
}

func (b *OpenSIPS) AddDomain(ctx context.Context, domain string, created int64) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, b.q(`INSERT INTO domain (domain, last_modified) VALUES (?, ?)`), domain, datetime(created))
		if b.unique(err) {
			return ErrDomainExists
		}
		return err
	})
}

func (b *OpenSIPS) DeleteDomain(ctx context.Context, domain string) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, b.q(`SELECT COUNT(*) FROM subscriber WHERE domain = ?`), domain).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrDomainInUse
		}
		return b.osExecOne(ctx, tx, ErrUnknownDomain, `DELETE FROM domain WHERE domain = ?`, domain)
	})
}

func (b *OpenSIPS) ListDomains(ctx context.Context) ([]Domain, error) {
	return osList(b, ctx, scanDomain, `SELECT domain, COALESCE(`+b.epoch("last_modified")+`, 0) FROM domain ORDER BY domain`)
}

func (b *OpenSIPS) DomainExists(ctx context.Context, domain string) (bool, error) {
	var n int
	err := b.do(ctx, func(ctx context.Context) error {
		return b.db.QueryRowContext(ctx, b.q(`SELECT COUNT(*) FROM domain WHERE domain = ?`), domain).Scan(&n)
	})
	return n > 0, err
}

// AddSubscriber writes username, domain, password (empty unless
// Options.StorePasswords), ha1 and ha1_sha256; ha1_sha512t256, when the
// table has it, is written empty: Switchboard does not offer that
// algorithm, and a stale value would outlive a password change.
func (b *OpenSIPS) AddSubscriber(ctx context.Context, s *Subscriber) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, b.q(`SELECT COUNT(*) FROM domain WHERE domain = ?`), s.Domain).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return ErrUnknownDomain
		}
		cols, vals := `username, domain, password, ha1, ha1_sha256`, `?, ?, ?, ?, ?`
		args := []any{s.Username, s.Domain, s.Password, s.HA1, s.HA1SHA256}
		if b.hasColumn("subscriber", "ha1_sha512t256") {
			cols, vals, args = cols+`, ha1_sha512t256`, vals+`, ?`, append(args, "")
		}
		_, err := tx.ExecContext(ctx, b.q(`INSERT INTO subscriber (`+cols+`) VALUES (`+vals+`)`), args...)
		if b.unique(err) {
			return ErrSubscriberExists
		}
		return err
	})
}

func (b *OpenSIPS) SetCredentials(ctx context.Context, user, domain, password, ha1, ha1SHA256 string) error {
	set := `password = ?, ha1 = ?, ha1_sha256 = ?`
	if b.hasColumn("subscriber", "ha1_sha512t256") {
		set += `, ha1_sha512t256 = ''`
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return b.osExecOne(ctx, tx, ErrNoSubscriber, `UPDATE subscriber SET `+set+` WHERE username = ? AND domain = ?`,
			password, ha1, ha1SHA256, user, domain)
	})
}

func (b *OpenSIPS) DeleteSubscriber(ctx context.Context, user, domain string) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return b.osExecOne(ctx, tx, ErrNoSubscriber, `DELETE FROM subscriber WHERE username = ? AND domain = ?`, user, domain)
	})
}

// osSubscriberCols reads NULLs (allowed by hand-made tables) as empty
// text. OpenSIPS may hold ha1 in upper case; auth compares lower-case hex.
const osSubscriberCols = `username, domain, COALESCE(password, ''), LOWER(COALESCE(ha1, '')), LOWER(COALESCE(ha1_sha256, ''))`

func scanOSSubscriber(r rowScanner, s *Subscriber) error {
	return r.Scan(&s.Username, &s.Domain, &s.Password, &s.HA1, &s.HA1SHA256)
}

func (b *OpenSIPS) GetSubscriber(ctx context.Context, user, domain string, s *Subscriber) error {
	err := b.do(ctx, func(ctx context.Context) error {
		return scanOSSubscriber(b.db.QueryRowContext(ctx, b.q(`SELECT `+osSubscriberCols+` FROM subscriber WHERE username = ? AND domain = ?`), user, domain), s)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoSubscriber
	}
	return err
}

func (b *OpenSIPS) ListSubscribers(ctx context.Context, domain string) ([]Subscriber, error) {
	if domain == "" {
		return osList(b, ctx, scanOSSubscriber, `SELECT `+osSubscriberCols+` FROM subscriber ORDER BY domain, username`)
	}
	return osList(b, ctx, scanOSSubscriber, `SELECT `+osSubscriberCols+` FROM subscriber WHERE domain = ? ORDER BY username`, domain)
}

// The address table: the same columns as Switchboard's (which follows
// OpenSIPS), without created. OpenSIPS writes NULL for no pattern and no
// context; Switchboard writes NULL too, and reads both as "".

const osAddressCols = `id, grp, ip, mask, port, proto, COALESCE(pattern, ''), COALESCE(context_info, '')`

func scanOSAddress(r rowScanner, a *Address) error {
	return r.Scan(&a.ID, &a.Group, &a.IP, &a.Mask, &a.Port, &a.Proto, &a.Pattern, &a.ContextInfo)
}

func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (b *OpenSIPS) AddAddresses(ctx context.Context, as []Address) error {
	if len(as) == 0 {
		return nil
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for i := range as {
			a := &as[i]
			// OpenSIPS's table has no unique key: look for the same
			// entry first, as Switchboard's key would.
			var id int64
			err := tx.QueryRowContext(ctx, b.q(`SELECT id FROM address WHERE grp = ? AND ip = ? AND mask = ? AND port = ? AND proto = ?
				AND COALESCE(pattern, '') = ?`), a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern).Scan(&id)
			if err == nil {
				return &addressExistsError{index: i, id: id}
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			a.ID, err = b.insertID(ctx, tx, "id", `INSERT INTO address (grp, ip, mask, port, proto, pattern, context_info) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				a.Group, a.IP, a.Mask, a.Port, a.Proto, nullText(a.Pattern), nullText(a.ContextInfo))
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *OpenSIPS) DeleteAddress(ctx context.Context, id int64) (Address, error) {
	var a Address
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := scanOSAddress(tx.QueryRowContext(ctx, b.q(`SELECT `+osAddressCols+` FROM address WHERE id = ?`), id), &a)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoAddress
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, b.q(`DELETE FROM address WHERE id = ?`), id)
		return err
	})
	return a, err
}

func (b *OpenSIPS) DeleteAddressesOf(ctx context.Context, group int, ip string, mask int) ([]Address, error) {
	var out []Address
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, b.q(`SELECT `+osAddressCols+` FROM address WHERE grp = ? AND ip = ? AND mask = ? ORDER BY id`), group, ip, mask)
		if out, err = sqlCollect(rows, err, scanOSAddress); err != nil {
			return err
		}
		if len(out) == 0 {
			return ErrNoAddress
		}
		_, err = tx.ExecContext(ctx, b.q(`DELETE FROM address WHERE grp = ? AND ip = ? AND mask = ?`), group, ip, mask)
		return err
	})
	return out, err
}

func (b *OpenSIPS) ListAddresses(ctx context.Context, group int) ([]Address, error) {
	if group == 0 {
		return osList(b, ctx, scanOSAddress, `SELECT `+osAddressCols+` FROM address ORDER BY grp, id`)
	}
	return osList(b, ctx, scanOSAddress, `SELECT `+osAddressCols+` FROM address WHERE grp = ? ORDER BY grp, id`, group)
}

// The dialplan table. OpenSIPS's match_op is 0 (equal) or 1 (regular
// expression; 2, fnmatch, is read as an unknown operator the module
// reports); it has no prefix operator, so prefix rules cannot be written
// in this mode. A rule with a timerec is read as disabled: Switchboard
// has no equivalent of the time recurrence, and a rule that applies only
// at some times must not apply at all times.

const osDialplanCols = `id, dpid, pr, match_op, match_exp, match_flags, COALESCE(subst_exp, ''), COALESCE(repl_exp, ''),
	COALESCE(attrs, ''), disabled, COALESCE(timerec, '')`

func scanOSDialplan(r rowScanner, d *DialplanRule) error {
	var op, disabled int
	var timerec string
	if err := r.Scan(&d.ID, &d.DPID, &d.Priority, &op, &d.MatchExp, &d.MatchFlags, &d.SubstExp, &d.ReplExp, &d.Attrs, &disabled, &timerec); err != nil {
		return err
	}
	switch op {
	case 0:
		d.MatchOp = DialplanExact
	case 1:
		d.MatchOp = DialplanRegex
	default:
		d.MatchOp = "opensips match_op " + strconv.Itoa(op)
	}
	d.Disabled = disabled != 0 || timerec != ""
	return nil
}

func osMatchOp(op string) (int, error) {
	switch op {
	case DialplanExact:
		return 0, nil
	case DialplanRegex:
		return 1, nil
	}
	return 0, errorf(ErrMalformedDialplanRule, "match_op %s: OpenSIPS's dialplan table has only exact (0) and regex (1); write the prefix as a regex (^0) with storage.schema opensips", op)
}

func (b *OpenSIPS) AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error {
	ops := make([]int, len(rs))
	for i := range rs {
		op, err := osMatchOp(rs[i].MatchOp)
		if err != nil {
			return dialplanIndexErr(i, len(rs), err)
		}
		ops[i] = op
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dialplan`); err != nil {
				return err
			}
		}
		for i := range rs {
			r := &rs[i]
			var id int64
			err := tx.QueryRowContext(ctx, b.q(`SELECT id FROM dialplan WHERE dpid = ? AND pr = ? AND match_op = ? AND match_exp = ? AND match_flags = ?`),
				r.DPID, r.Priority, ops[i], r.MatchExp, r.MatchFlags).Scan(&id)
			if err == nil {
				return &dialplanExistsError{index: i, id: id}
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			disabled := 0
			if r.Disabled {
				disabled = 1
			}
			r.ID, err = b.insertID(ctx, tx, "id", `INSERT INTO dialplan (dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, attrs, disabled)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.DPID, r.Priority, ops[i], r.MatchExp, r.MatchFlags, nullText(r.SubstExp), nullText(r.ReplExp), nullText(r.Attrs), disabled)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// dialplanIndexErr names the rule of a batch, as the Store does for the
// other backends' errors.
func dialplanIndexErr(i, n int, err error) error {
	if n == 1 {
		return err
	}
	return &wordedError{msg: "rule " + strconv.Itoa(i+1) + " of the batch: " + err.Error(), sentinel: ErrMalformedDialplanRule}
}

func (b *OpenSIPS) DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error) {
	var r DialplanRule
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := scanOSDialplan(tx.QueryRowContext(ctx, b.q(`SELECT `+osDialplanCols+` FROM dialplan WHERE id = ?`), id), &r)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoDialplanRule
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, b.q(`DELETE FROM dialplan WHERE id = ?`), id)
		return err
	})
	return r, err
}

func (b *OpenSIPS) DeleteDialplan(ctx context.Context, dpid int) (int, error) {
	var n int64
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, b.q(`DELETE FROM dialplan WHERE dpid = ?`), dpid)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			return ErrNoDialplanRule
		}
		return err
	})
	return int(n), err
}

func (b *OpenSIPS) ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error) {
	if dpid < 0 {
		return osList(b, ctx, scanOSDialplan, `SELECT `+osDialplanCols+` FROM dialplan ORDER BY dpid, pr, id`)
	}
	return osList(b, ctx, scanOSDialplan, `SELECT `+osDialplanCols+` FROM dialplan WHERE dpid = ? ORDER BY dpid, pr, id`, dpid)
}

// The drouting tables. OpenSIPS's dr_gateways.address is a SIP URI or
// host[:port], with the transport as a URI parameter
// ("sip:192.0.2.10:5080;transport=tcp"); Switchboard keeps address and
// transport apart. dr_rules.timerec is translated both ways
// (opensips_timerec.go).

// osGatewayAddress splits an OpenSIPS gateway address into Switchboard's
// address and transport.
func osGatewayAddress(s string) (addr, transport string) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i > 0 && (strings.EqualFold(s[:i], "sip") || strings.EqualFold(s[:i], "sips")) {
		if strings.EqualFold(s[:i], "sips") {
			transport = "tls"
		}
		s = s[i+1:]
	}
	addr, params, _ := strings.Cut(s, ";")
	for _, p := range strings.Split(params, ";") {
		if name, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(name), "transport") {
			transport = strings.ToLower(strings.TrimSpace(v))
		}
	}
	if transport == "" {
		transport = "udp"
	}
	return addr, transport
}

// osGatewayURI is the address written for OpenSIPS: "sip:" and the
// address, with the transport unless UDP.
func osGatewayURI(g *DRGateway) string {
	s := "sip:" + g.Address
	if g.Transport != "" && g.Transport != "udp" {
		s += ";transport=" + g.Transport
	}
	return s
}

const osDRGatewayCols = `gwid, type, address, strip, COALESCE(pri_prefix, ''), COALESCE(attrs, ''), probe_mode, state, COALESCE(description, '')`

func scanOSDRGateway(r rowScanner, g *DRGateway) error {
	var addr string
	if err := r.Scan(&g.GWID, &g.Type, &addr, &g.Strip, &g.PriPrefix, &g.Attrs, &g.ProbeMode, &g.State, &g.Description); err != nil {
		return err
	}
	g.Address, g.Transport = osGatewayAddress(addr)
	return nil
}

func (b *OpenSIPS) drExists(err error, table, id string) error {
	if b.unique(err) {
		return &drNameError{sentinel: ErrDRExists, table: table, id: id}
	}
	return err
}

func (b *OpenSIPS) AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dr_gateways`); err != nil {
				return err
			}
		}
		for i := range gs {
			g := &gs[i]
			_, err := tx.ExecContext(ctx, b.q(`INSERT INTO dr_gateways (gwid, type, address, strip, pri_prefix, attrs, probe_mode, state, description)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
				g.GWID, g.Type, osGatewayURI(g), g.Strip, nullText(g.PriPrefix), nullText(g.Attrs), g.ProbeMode, g.State, g.Description)
			if err != nil {
				return b.drExists(err, DRGatewaysTable, g.GWID)
			}
		}
		return nil
	})
}

func (b *OpenSIPS) UpdateDRGateway(ctx context.Context, g *DRGateway) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return b.osExecOne(ctx, tx, &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: g.GWID},
			`UPDATE dr_gateways SET type = ?, address = ?, strip = ?, pri_prefix = ?, attrs = ?, probe_mode = ?, state = ?, description = ?
			WHERE gwid = ?`, g.Type, osGatewayURI(g), g.Strip, nullText(g.PriPrefix), nullText(g.Attrs), g.ProbeMode, g.State, g.Description, g.GWID)
	})
}

func (b *OpenSIPS) GetDRGateway(ctx context.Context, gwid string, g *DRGateway) error {
	err := b.do(ctx, func(ctx context.Context) error {
		return scanOSDRGateway(b.db.QueryRowContext(ctx, b.q(`SELECT `+osDRGatewayCols+` FROM dr_gateways WHERE gwid = ?`), gwid), g)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: gwid}
	}
	return err
}

func (b *OpenSIPS) ListDRGateways(ctx context.Context) ([]DRGateway, error) {
	return osList(b, ctx, scanOSDRGateway, `SELECT `+osDRGatewayCols+` FROM dr_gateways ORDER BY gwid`)
}

const osDRCarrierCols = `carrierid, gwlist, flags, sort_alg, state, COALESCE(attrs, ''), COALESCE(description, '')`

func scanOSDRCarrier(r rowScanner, c *DRCarrier) error {
	return r.Scan(&c.CarrierID, &c.GWList, &c.Flags, &c.SortAlg, &c.State, &c.Attrs, &c.Description)
}

func (b *OpenSIPS) AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dr_carriers`); err != nil {
				return err
			}
		}
		for i := range cs {
			c := &cs[i]
			_, err := tx.ExecContext(ctx, b.q(`INSERT INTO dr_carriers (carrierid, gwlist, flags, sort_alg, state, attrs, description)
				VALUES (?, ?, ?, ?, ?, ?, ?)`), c.CarrierID, c.GWList, c.Flags, c.SortAlg, c.State, nullText(c.Attrs), c.Description)
			if err != nil {
				return b.drExists(err, DRCarriersTable, c.CarrierID)
			}
		}
		return nil
	})
}

func (b *OpenSIPS) UpdateDRCarrier(ctx context.Context, c *DRCarrier) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return b.osExecOne(ctx, tx, &drNameError{sentinel: ErrNoDR, table: DRCarriersTable, id: c.CarrierID},
			`UPDATE dr_carriers SET gwlist = ?, flags = ?, sort_alg = ?, state = ?, attrs = ?, description = ? WHERE carrierid = ?`,
			c.GWList, c.Flags, c.SortAlg, c.State, nullText(c.Attrs), c.Description, c.CarrierID)
	})
}

func (b *OpenSIPS) ListDRCarriers(ctx context.Context) ([]DRCarrier, error) {
	return osList(b, ctx, scanOSDRCarrier, `SELECT `+osDRCarrierCols+` FROM dr_carriers ORDER BY carrierid`)
}

const osDRRuleCols = `ruleid, groupid, prefix, COALESCE(timerec, ''), priority, COALESCE(routeid, ''), COALESCE(gwlist, ''),
	sort_alg, COALESCE(attrs, ''), COALESCE(description, '')`

func (b *OpenSIPS) AddDRRules(ctx context.Context, rs []DRRule, replace bool) error {
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dr_rules`); err != nil {
				return err
			}
		}
		for i := range rs {
			r := &rs[i]
			timerec, err := toOSTimeRec(r.TimeRec)
			if err != nil {
				return errorf(ErrMalformedDR, "dr rule %d of the batch: timerec %v", i+1, err)
			}
			r.ID, err = b.insertID(ctx, tx, "ruleid", `INSERT INTO dr_rules (groupid, prefix, timerec, priority, routeid, gwlist, sort_alg, attrs, description)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.Groups, r.Prefix, nullText(timerec), r.Priority, nullText(r.RouteID), r.GWList, r.SortAlg, nullText(r.Attrs), r.Description)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *OpenSIPS) ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error {
	query := `SELECT ` + osDRRuleCols + ` FROM dr_rules WHERE ruleid > ?`
	args := []any{f.AfterID}
	if f.Prefix != "" {
		query += ` AND SUBSTR(prefix, 1, ?) = ?`
		args = append(args, len(f.Prefix), f.Prefix)
	}
	query += ` ORDER BY ruleid`
	if f.Limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(f.Limit)
	}
	// Streamed like the native backends' walk: bounded by ctx only.
	rows, err := b.db.QueryContext(ctx, b.q(query), args...)
	if err != nil {
		return b.check(err)
	}
	defer rows.Close()
	var r DRRule
	for rows.Next() {
		if err := rows.Scan(&r.ID, &r.Groups, &r.Prefix, &r.TimeRec, &r.Priority, &r.RouteID, &r.GWList, &r.SortAlg, &r.Attrs, &r.Description); err != nil {
			return err
		}
		if rec, ok := fromOSTimeRec(r.TimeRec); ok {
			r.TimeRec = rec
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return b.check(rows.Err())
}

func (b *OpenSIPS) DeleteDR(ctx context.Context, table, id string) error {
	var query string
	var key any = id
	switch table {
	case DRGatewaysTable:
		query = `DELETE FROM dr_gateways WHERE gwid = ?`
	case DRCarriersTable:
		query = `DELETE FROM dr_carriers WHERE carrierid = ?`
	case DRRulesTable:
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return &drNameError{sentinel: ErrNoDR, table: table, id: id}
		}
		query, key = `DELETE FROM dr_rules WHERE ruleid = ?`, n
	default:
		return errors.New("store: no drouting table " + table)
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return b.osExecOne(ctx, tx, &drNameError{sentinel: ErrNoDR, table: table, id: id}, query, key)
	})
}

// The tables OpenSIPS does not have in this mode read as empty (the
// modules using them start and have nothing to do) and refuse writes.

func (b *OpenSIPS) AddFraudRule(context.Context, *FraudRule) error { return notInSchema("fraud_rules") }
func (b *OpenSIPS) UpdateFraudRule(context.Context, *FraudRule) error {
	return notInSchema("fraud_rules")
}
func (b *OpenSIPS) DeleteFraudRule(context.Context, int64) error { return notInSchema("fraud_rules") }
func (b *OpenSIPS) GetFraudRule(context.Context, int64, *FraudRule) error {
	return ErrNoFraudRule
}
func (b *OpenSIPS) ListFraudRules(context.Context) ([]FraudRule, error) { return nil, nil }
func (b *OpenSIPS) AddAliases(context.Context, []Alias, bool) error     { return notInSchema("aliases") }
func (b *OpenSIPS) DeleteAlias(context.Context, string, string) (Alias, error) {
	return Alias{}, notInSchema("aliases")
}
func (b *OpenSIPS) ListAliases(context.Context, string) ([]Alias, error) { return nil, nil }
func (b *OpenSIPS) AddGroupMember(context.Context, *GroupMember) error   { return notInSchema("grp") }
func (b *OpenSIPS) DeleteGroupMember(context.Context, string, string, string) error {
	return notInSchema("grp")
}
func (b *OpenSIPS) ListGroupMembers(context.Context, string) ([]GroupMember, error) { return nil, nil }
func (b *OpenSIPS) AddUACCredential(context.Context, *UACCredential) error {
	return notInSchema("uac_credentials")
}
func (b *OpenSIPS) DeleteUACCredential(context.Context, int64) (UACCredential, error) {
	return UACCredential{}, notInSchema("uac_credentials")
}
func (b *OpenSIPS) ListUACCredentials(context.Context) ([]UACCredential, error) { return nil, nil }
func (b *OpenSIPS) AddUACRegistration(context.Context, *UACRegistration) error {
	return notInSchema("uac_registrations")
}
func (b *OpenSIPS) DeleteUACRegistration(context.Context, int64) (UACRegistration, error) {
	return UACRegistration{}, notInSchema("uac_registrations")
}
func (b *OpenSIPS) ListUACRegistrations(context.Context) ([]UACRegistration, error) { return nil, nil }
