package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
)

// The modules' tables on MySQL: the SQLite backend's statements, which are
// plain SQL with ? placeholders, and MySQL's duplicate error. A duplicate
// leaves the transaction usable (MySQL rolls back the statement only), so
// the stored row can be looked up to name it, as with SQLite.

func myFraudConstraint(err error) error {
	if myUnique(err) {
		return ErrFraudRuleExists
	}
	return err
}

func myUACConstraint(err error) error {
	if myUnique(err) {
		return ErrUACExists
	}
	return err
}

func myDRExists(err error, table, id string) error {
	if myUnique(err) {
		return &drNameError{sentinel: ErrDRExists, table: table, id: id}
	}
	return err
}

func (b *MySQL) AddAddresses(ctx context.Context, as []Address) error {
	if len(as) == 0 {
		return nil
	}
	return b.write(ctx, ChangeAddress, "", "", func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO address
			(grp, ip, mask, port, proto, pattern, context_info, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range as {
			a := &as[i]
			res, err := ins.ExecContext(ctx, a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern, a.ContextInfo, a.Created)
			if myUnique(err) {
				var id int64
				tx.QueryRowContext(ctx, `SELECT id FROM address WHERE grp = ? AND ip = ? AND mask = ? AND port = ? AND proto = ? AND pattern = ?`,
					a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern).Scan(&id)
				return &addressExistsError{index: i, id: id}
			}
			if err != nil {
				return err
			}
			if a.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *MySQL) DeleteAddress(ctx context.Context, id int64) (Address, error) {
	var a Address
	err := b.write(ctx, ChangeAddress, "", "", func(tx *sql.Tx) error {
		err := scanAddress(tx.QueryRowContext(ctx, `SELECT `+addressCols+` FROM address WHERE id = ?`, id), &a)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoAddress
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM address WHERE id = ?`, id)
		return err
	})
	return a, err
}

func (b *MySQL) DeleteAddressesOf(ctx context.Context, group int, ip string, mask int) ([]Address, error) {
	var out []Address
	err := b.write(ctx, ChangeAddress, "", "", func(tx *sql.Tx) error {
		var err error
		out, err = queryAddresses(ctx, tx, `SELECT `+addressCols+` FROM address WHERE grp = ? AND ip = ? AND mask = ? ORDER BY id`, group, ip, mask)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return ErrNoAddress // nothing changed: nothing logged
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM address WHERE grp = ? AND ip = ? AND mask = ?`, group, ip, mask)
		return err
	})
	return out, err
}

func (b *MySQL) ListAddresses(ctx context.Context, group int) ([]Address, error) {
	if group == 0 {
		return queryAddresses(ctx, b.db, `SELECT `+addressCols+` FROM address ORDER BY grp, id`)
	}
	return queryAddresses(ctx, b.db, `SELECT `+addressCols+` FROM address WHERE grp = ? ORDER BY id`, group)
}

func (b *MySQL) writeFraud(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = 'fraud_rules'`)
		return err
	})
}

func (b *MySQL) AddFraudRule(ctx context.Context, r *FraudRule) error {
	return b.writeFraud(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO fraud_rules (`+fraudCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, fraudArgs(r)...)
		if err != nil {
			return myFraudConstraint(err)
		}
		r.ID, err = res.LastInsertId()
		return err
	})
}

func (b *MySQL) UpdateFraudRule(ctx context.Context, r *FraudRule) error {
	return b.writeFraud(ctx, func(tx *sql.Tx) error {
		// created is kept: the row was created when it was added.
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT created FROM fraud_rules WHERE id = ?`, r.ID).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoFraudRule
		}
		if err != nil {
			return err
		}
		r.Created = created
		_, err = tx.ExecContext(ctx, `UPDATE fraud_rules SET
			profile = ?, prefix = ?, start_hour = ?, end_hour = ?, days = ?,
			cpm_warning = ?, cpm_critical = ?, total_calls_warning = ?, total_calls_critical = ?,
			concurrent_calls_warning = ?, concurrent_calls_critical = ?,
			sequential_calls_warning = ?, sequential_calls_critical = ?, created = ?
			WHERE id = ?`, append(fraudArgs(r), r.ID)...)
		return myFraudConstraint(err)
	})
}

func (b *MySQL) DeleteFraudRule(ctx context.Context, id int64) error {
	return b.writeFraud(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoFraudRule, `DELETE FROM fraud_rules WHERE id = ?`, id)
	})
}

func (b *MySQL) GetFraudRule(ctx context.Context, id int64, r *FraudRule) error {
	err := scanFraudRule(b.db.QueryRowContext(ctx, `SELECT id, `+fraudCols+` FROM fraud_rules WHERE id = ?`, id), r)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoFraudRule
	}
	return err
}

func (b *MySQL) ListFraudRules(ctx context.Context) ([]FraudRule, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+fraudCols+` FROM fraud_rules ORDER BY profile, prefix, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FraudRule
	for rows.Next() {
		var r FraudRule
		if err := scanFraudRule(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (b *MySQL) AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error {
	return b.writeVersioned(ctx, "dialplan", func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dialplan`); err != nil {
				return err
			}
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO dialplan
			(dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, attrs, disabled, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range rs {
			r := &rs[i]
			res, err := ins.ExecContext(ctx, r.DPID, r.Priority, r.MatchOp, r.MatchExp, r.MatchFlags, r.SubstExp, r.ReplExp,
				r.Attrs, r.Disabled, r.Created)
			if myUnique(err) {
				var id int64
				tx.QueryRowContext(ctx, `SELECT id FROM dialplan WHERE dpid = ? AND pr = ? AND match_op = ? AND match_exp = ? AND match_flags = ?`,
					r.DPID, r.Priority, r.MatchOp, r.MatchExp, r.MatchFlags).Scan(&id)
				return &dialplanExistsError{index: i, id: id}
			}
			if err != nil {
				return err
			}
			if r.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *MySQL) DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error) {
	var r DialplanRule
	err := b.writeVersioned(ctx, "dialplan", func(tx *sql.Tx) error {
		err := scanDialplanRule(tx.QueryRowContext(ctx, `SELECT `+dialplanCols+` FROM dialplan WHERE id = ?`, id), &r)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoDialplanRule
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM dialplan WHERE id = ?`, id)
		return err
	})
	return r, err
}

func (b *MySQL) DeleteDialplan(ctx context.Context, dpid int) (int, error) {
	var n int64
	err := b.writeVersioned(ctx, "dialplan", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM dialplan WHERE dpid = ?`, dpid)
		if err != nil {
			return err
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return ErrNoDialplanRule // rolled back: the version does not move
		}
		return nil
	})
	return int(n), err
}

func (b *MySQL) ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error) {
	q, args := `SELECT `+dialplanCols+` FROM dialplan ORDER BY dpid, pr, id`, []any(nil)
	if dpid >= 0 {
		q, args = `SELECT `+dialplanCols+` FROM dialplan WHERE dpid = ? ORDER BY pr, id`, []any{dpid}
	}
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DialplanRule
	for rows.Next() {
		var r DialplanRule
		if err := scanDialplanRule(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (b *MySQL) AddAliases(ctx context.Context, as []Alias, replace bool) error {
	return b.writeVersioned(ctx, "aliases", func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM aliases`); err != nil {
				return err
			}
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO aliases (alias_username, alias_domain, username, domain, created) VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range as {
			a := &as[i]
			_, err := ins.ExecContext(ctx, a.AliasUser, a.AliasDomain, a.User, a.Domain, a.Created)
			if myUnique(err) {
				var user, domain string
				tx.QueryRowContext(ctx, `SELECT username, domain FROM aliases WHERE alias_username = ? AND alias_domain = ?`,
					a.AliasUser, a.AliasDomain).Scan(&user, &domain)
				return &rowExistsError{index: i, what: user + "@" + domain}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *MySQL) DeleteAlias(ctx context.Context, aliasUser, aliasDomain string) (Alias, error) {
	a := Alias{AliasUser: aliasUser, AliasDomain: aliasDomain}
	err := b.writeVersioned(ctx, "aliases", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT username, domain, created FROM aliases WHERE alias_username = ? AND alias_domain = ?`,
			aliasUser, aliasDomain).Scan(&a.User, &a.Domain, &a.Created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoAlias
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM aliases WHERE alias_username = ? AND alias_domain = ?`, aliasUser, aliasDomain)
		return err
	})
	return a, err
}

func (b *MySQL) ListAliases(ctx context.Context, aliasDomain string) ([]Alias, error) {
	q, args := `SELECT alias_username, alias_domain, username, domain, created FROM aliases ORDER BY alias_domain, alias_username`, []any(nil)
	if aliasDomain != "" {
		q, args = `SELECT alias_username, alias_domain, username, domain, created FROM aliases WHERE alias_domain = ? ORDER BY alias_username`, []any{aliasDomain}
	}
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Alias
	for rows.Next() {
		var a Alias
		if err := rows.Scan(&a.AliasUser, &a.AliasDomain, &a.User, &a.Domain, &a.Created); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (b *MySQL) AddGroupMember(ctx context.Context, m *GroupMember) error {
	return b.writeVersioned(ctx, "grp", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO grp (username, domain, grp, created) VALUES (?, ?, ?, ?)`, m.User, m.Domain, m.Group, m.Created)
		if myUnique(err) {
			return ErrGroupMemberExists
		}
		return err
	})
}

func (b *MySQL) DeleteGroupMember(ctx context.Context, user, domain, group string) error {
	return b.writeVersioned(ctx, "grp", func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoGroupMember, `DELETE FROM grp WHERE username = ? AND domain = ? AND grp = ?`, user, domain, group)
	})
}

func (b *MySQL) ListGroupMembers(ctx context.Context, group string) ([]GroupMember, error) {
	q, args := `SELECT username, domain, grp, created FROM grp ORDER BY grp, domain, username`, []any(nil)
	if group != "" {
		q, args = `SELECT username, domain, grp, created FROM grp WHERE grp = ? ORDER BY domain, username`, []any{group}
	}
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GroupMember
	for rows.Next() {
		var m GroupMember
		if err := rows.Scan(&m.User, &m.Domain, &m.Group, &m.Created); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (b *MySQL) writeDispatcher(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = 'dispatcher'`)
		return err
	})
}

func (b *MySQL) AddDispatcherDests(ctx context.Context, ds []DispatcherDest, replace bool) error {
	return b.writeDispatcher(ctx, func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dispatcher`); err != nil {
				return err
			}
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO dispatcher
			(setid, destination, socket, state, weight, priority, attrs, probe_mode, description, created)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range ds {
			d := &ds[i]
			res, err := ins.ExecContext(ctx, d.SetID, d.Destination, d.Socket, d.State, d.Weight, d.Priority,
				d.Attrs, d.ProbeMode, d.Description, d.Created)
			if myUnique(err) {
				var id int64
				tx.QueryRowContext(ctx, `SELECT id FROM dispatcher WHERE setid = ? AND destination = ?`, d.SetID, d.Destination).Scan(&id)
				return &dispatcherExistsError{index: i, id: id}
			}
			if err != nil {
				return err
			}
			if d.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *MySQL) DeleteDispatcherDest(ctx context.Context, id int64, set int, destination string) (DispatcherDest, error) {
	var d DispatcherDest
	err := b.writeDispatcher(ctx, func(tx *sql.Tx) error {
		var err error
		if id != 0 {
			err = scanDispatcherDest(tx.QueryRowContext(ctx, `SELECT `+dispatcherCols+` FROM dispatcher WHERE id = ?`, id), &d)
		} else {
			err = scanDispatcherDest(tx.QueryRowContext(ctx, `SELECT `+dispatcherCols+` FROM dispatcher WHERE setid = ? AND destination = ?`,
				set, destination), &d)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoDispatcher
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM dispatcher WHERE id = ?`, d.ID)
		return err
	})
	return d, err
}

func (b *MySQL) SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error) {
	var d DispatcherDest
	err := b.writeDispatcher(ctx, func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, ErrNoDispatcher, `UPDATE dispatcher SET state = ? WHERE setid = ? AND destination = ?`,
			state, set, destination); err != nil {
			return err
		}
		return scanDispatcherDest(tx.QueryRowContext(ctx, `SELECT `+dispatcherCols+` FROM dispatcher WHERE setid = ? AND destination = ?`,
			set, destination), &d)
	})
	return d, err
}

func (b *MySQL) ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT `+dispatcherCols+` FROM dispatcher ORDER BY setid, priority DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DispatcherDest
	for rows.Next() {
		var d DispatcherDest
		if err := scanDispatcherDest(rows, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (b *MySQL) AddUACCredential(ctx context.Context, c *UACCredential) error {
	return b.writeVersioned(ctx, "uac_credentials", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO uac_credentials (`+uacCredCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			c.Realm, c.Gateway, c.Username, c.Password, c.HA1, c.HA1SHA256, c.Created)
		if err != nil {
			return myUACConstraint(err)
		}
		c.ID, err = res.LastInsertId()
		return err
	})
}

func (b *MySQL) DeleteUACCredential(ctx context.Context, id int64) (UACCredential, error) {
	var c UACCredential
	err := b.writeVersioned(ctx, "uac_credentials", func(tx *sql.Tx) error {
		err := scanUACCredential(tx.QueryRowContext(ctx, `SELECT id, `+uacCredCols+` FROM uac_credentials WHERE id = ?`, id), &c)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoUAC
		}
		if err != nil {
			return err
		}
		return execOne(ctx, tx, ErrNoUAC, `DELETE FROM uac_credentials WHERE id = ?`, id)
	})
	return c, err
}

func (b *MySQL) ListUACCredentials(ctx context.Context) ([]UACCredential, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+uacCredCols+` FROM uac_credentials ORDER BY realm, gateway, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UACCredential
	for rows.Next() {
		var c UACCredential
		if err := scanUACCredential(rows, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (b *MySQL) AddUACRegistration(ctx context.Context, r *UACRegistration) error {
	return b.writeVersioned(ctx, "uac_registrations", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO uac_registrations (`+uacRegCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.AOR, r.Registrar, r.Proxy, r.Username, r.Password, r.Expires, r.Contact, r.Created)
		if err != nil {
			return myUACConstraint(err)
		}
		r.ID, err = res.LastInsertId()
		return err
	})
}

func (b *MySQL) DeleteUACRegistration(ctx context.Context, id int64) (UACRegistration, error) {
	var r UACRegistration
	err := b.writeVersioned(ctx, "uac_registrations", func(tx *sql.Tx) error {
		err := scanUACRegistration(tx.QueryRowContext(ctx, `SELECT id, `+uacRegCols+` FROM uac_registrations WHERE id = ?`, id), &r)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoUAC
		}
		if err != nil {
			return err
		}
		return execOne(ctx, tx, ErrNoUAC, `DELETE FROM uac_registrations WHERE id = ?`, id)
	})
	return r, err
}

func (b *MySQL) ListUACRegistrations(ctx context.Context) ([]UACRegistration, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+uacRegCols+` FROM uac_registrations ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UACRegistration
	for rows.Next() {
		var r UACRegistration
		if err := scanUACRegistration(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (b *MySQL) writeDR(ctx context.Context, table string, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = ?`, table)
		return err
	})
}

func (b *MySQL) AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error {
	return b.writeDR(ctx, DRGatewaysTable, func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dr_gateways`); err != nil {
				return err
			}
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO dr_gateways (`+drGatewayCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range gs {
			if _, err := ins.ExecContext(ctx, drGatewayArgs(&gs[i])...); err != nil {
				return myDRExists(err, DRGatewaysTable, gs[i].GWID)
			}
		}
		return nil
	})
}

func (b *MySQL) UpdateDRGateway(ctx context.Context, g *DRGateway) error {
	return b.writeDR(ctx, DRGatewaysTable, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT created FROM dr_gateways WHERE gwid = ?`, g.GWID).Scan(&g.Created)
		if errors.Is(err, sql.ErrNoRows) {
			return &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: g.GWID}
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE dr_gateways SET type = ?, address = ?, transport = ?, strip = ?, pri_prefix = ?,
			attrs = ?, probe_mode = ?, state = ?, description = ? WHERE gwid = ?`,
			g.Type, g.Address, g.Transport, g.Strip, g.PriPrefix, g.Attrs, g.ProbeMode, g.State, g.Description, g.GWID)
		return err
	})
}

func (b *MySQL) GetDRGateway(ctx context.Context, gwid string, g *DRGateway) error {
	err := scanDRGateway(b.db.QueryRowContext(ctx, `SELECT `+drGatewayCols+` FROM dr_gateways WHERE gwid = ?`, gwid), g)
	if errors.Is(err, sql.ErrNoRows) {
		return &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: gwid}
	}
	return err
}

func (b *MySQL) ListDRGateways(ctx context.Context) ([]DRGateway, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT `+drGatewayCols+` FROM dr_gateways ORDER BY gwid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DRGateway
	for rows.Next() {
		var g DRGateway
		if err := scanDRGateway(rows, &g); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

func (b *MySQL) AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error {
	return b.writeDR(ctx, DRCarriersTable, func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dr_carriers`); err != nil {
				return err
			}
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO dr_carriers (`+drCarrierCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range cs {
			c := &cs[i]
			if _, err := ins.ExecContext(ctx, c.CarrierID, c.GWList, c.Flags, c.SortAlg, c.State, c.Attrs, c.Description, c.Created); err != nil {
				return myDRExists(err, DRCarriersTable, c.CarrierID)
			}
		}
		return nil
	})
}

func (b *MySQL) UpdateDRCarrier(ctx context.Context, c *DRCarrier) error {
	return b.writeDR(ctx, DRCarriersTable, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT created FROM dr_carriers WHERE carrierid = ?`, c.CarrierID).Scan(&c.Created)
		if errors.Is(err, sql.ErrNoRows) {
			return &drNameError{sentinel: ErrNoDR, table: DRCarriersTable, id: c.CarrierID}
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE dr_carriers SET gwlist = ?, flags = ?, sort_alg = ?, state = ?, attrs = ?, description = ?
			WHERE carrierid = ?`, c.GWList, c.Flags, c.SortAlg, c.State, c.Attrs, c.Description, c.CarrierID)
		return err
	})
}

func (b *MySQL) ListDRCarriers(ctx context.Context) ([]DRCarrier, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT `+drCarrierCols+` FROM dr_carriers ORDER BY carrierid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DRCarrier
	for rows.Next() {
		var c DRCarrier
		if err := rows.Scan(&c.CarrierID, &c.GWList, &c.Flags, &c.SortAlg, &c.State, &c.Attrs, &c.Description, &c.Created); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (b *MySQL) AddDRRules(ctx context.Context, rs []DRRule, replace bool) error {
	return b.writeDR(ctx, DRRulesTable, func(tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dr_rules`); err != nil {
				return err
			}
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO dr_rules (`+drRuleCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range rs {
			r := &rs[i]
			res, err := ins.ExecContext(ctx, r.Groups, r.Prefix, r.TimeRec, r.Priority, r.RouteID, r.GWList, r.SortAlg, r.Attrs, r.Description, r.Created)
			if err != nil {
				return err
			}
			if r.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *MySQL) ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error {
	q := `SELECT ruleid, ` + drRuleCols + ` FROM dr_rules WHERE ruleid > ?`
	args := []any{f.AfterID}
	if f.Prefix != "" {
		// substr, not LIKE: the prefix is compared as it is.
		q += ` AND substr(prefix, 1, ?) = ?`
		args = append(args, len(f.Prefix), f.Prefix)
	}
	q += ` ORDER BY ruleid`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := b.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r DRRule
	for rows.Next() {
		if err := rows.Scan(&r.ID, &r.Groups, &r.Prefix, &r.TimeRec, &r.Priority, &r.RouteID, &r.GWList, &r.SortAlg, &r.Attrs, &r.Description, &r.Created); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (b *MySQL) DeleteDR(ctx context.Context, table, id string) error {
	var q string
	var key any = id
	switch table {
	case DRGatewaysTable:
		q = `DELETE FROM dr_gateways WHERE gwid = ?`
	case DRCarriersTable:
		q = `DELETE FROM dr_carriers WHERE carrierid = ?`
	case DRRulesTable:
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return &drNameError{sentinel: ErrNoDR, table: table, id: id}
		}
		q, key = `DELETE FROM dr_rules WHERE ruleid = ?`, n
	default:
		return errors.New("store: no drouting table " + table)
	}
	return b.writeDR(ctx, table, func(tx *sql.Tx) error {
		return execOne(ctx, tx, &drNameError{sentinel: ErrNoDR, table: table, id: id}, q, key)
	})
}
