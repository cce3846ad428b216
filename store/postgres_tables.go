package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// The modules' tables on PostgreSQL, with the semantics of the SQLite
// backend's (sqlite_address.go, fraud_sqlite.go, ...). Batches are inserted
// with ON CONFLICT DO NOTHING so that a duplicate leaves the transaction
// usable to look up the stored row the error names.

func (b *Postgres) AddAddresses(ctx context.Context, as []Address) error {
	if len(as) == 0 {
		return nil
	}
	return b.write(ctx, ChangeAddress, "", "", func(tx pgx.Tx) error {
		i, err := insertRows(ctx, tx, len(as), `INSERT INTO address
			(grp, ip, mask, port, proto, pattern, context_info, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT DO NOTHING RETURNING id`,
			func(i int) []any {
				a := &as[i]
				return []any{a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern, a.ContextInfo, a.Created}
			},
			func(i int) []any { return []any{&as[i].ID} })
		if err != nil || i < 0 {
			return err
		}
		a := &as[i]
		var id int64
		tx.QueryRow(ctx, `SELECT id FROM address WHERE grp = $1 AND ip = $2 AND mask = $3 AND port = $4 AND proto = $5 AND pattern = $6`,
			a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern).Scan(&id)
		return &addressExistsError{index: i, id: id}
	})
}

func (b *Postgres) DeleteAddress(ctx context.Context, id int64) (Address, error) {
	var a Address
	err := b.write(ctx, ChangeAddress, "", "", func(tx pgx.Tx) error {
		err := scanAddress(tx.QueryRow(ctx, `DELETE FROM address WHERE id = $1 RETURNING `+addressCols, id), &a)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoAddress
		}
		return err
	})
	return a, err
}

func (b *Postgres) DeleteAddressesOf(ctx context.Context, group int, ip string, mask int) ([]Address, error) {
	var out []Address
	err := b.write(ctx, ChangeAddress, "", "", func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM address WHERE grp = $1 AND ip = $2 AND mask = $3 RETURNING `+addressCols, group, ip, mask)
		if out, err = collect(rows, err, scanAddress); err != nil {
			return err
		}
		if len(out) == 0 {
			return ErrNoAddress // nothing changed: nothing logged
		}
		slices.SortFunc(out, func(x, y Address) int { return cmp.Compare(x.ID, y.ID) })
		return nil
	})
	return out, err
}

func (b *Postgres) ListAddresses(ctx context.Context, group int) ([]Address, error) {
	if group == 0 {
		return list(b, ctx, scanAddress, `SELECT `+addressCols+` FROM address ORDER BY grp, id`)
	}
	return list(b, ctx, scanAddress, `SELECT `+addressCols+` FROM address WHERE grp = $1 ORDER BY id`, group)
}

func (b *Postgres) AddFraudRule(ctx context.Context, r *FraudRule) error {
	return b.writeVersioned(ctx, "fraud_rules", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO fraud_rules (`+fraudCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id`, fraudArgs(r)...).Scan(&r.ID)
		if pgUnique(err) {
			return ErrFraudRuleExists
		}
		return err
	})
}

func (b *Postgres) UpdateFraudRule(ctx context.Context, r *FraudRule) error {
	return b.writeVersioned(ctx, "fraud_rules", func(tx pgx.Tx) error {
		// created is kept: the row was created when it was added.
		var created int64
		err := tx.QueryRow(ctx, `SELECT created FROM fraud_rules WHERE id = $1`, r.ID).Scan(&created)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoFraudRule
		}
		if err != nil {
			return err
		}
		r.Created = created
		_, err = tx.Exec(ctx, `UPDATE fraud_rules SET
			profile = $1, prefix = $2, start_hour = $3, end_hour = $4, days = $5,
			cpm_warning = $6, cpm_critical = $7, total_calls_warning = $8, total_calls_critical = $9,
			concurrent_calls_warning = $10, concurrent_calls_critical = $11,
			sequential_calls_warning = $12, sequential_calls_critical = $13, created = $14
			WHERE id = $15`, append(fraudArgs(r), r.ID)...)
		if pgUnique(err) {
			return ErrFraudRuleExists
		}
		return err
	})
}

func (b *Postgres) DeleteFraudRule(ctx context.Context, id int64) error {
	return b.writeVersioned(ctx, "fraud_rules", func(tx pgx.Tx) error {
		return pgExecOne(ctx, tx, ErrNoFraudRule, `DELETE FROM fraud_rules WHERE id = $1`, id)
	})
}

func (b *Postgres) GetFraudRule(ctx context.Context, id int64, r *FraudRule) error {
	err := b.do(ctx, func(ctx context.Context) error {
		return scanFraudRule(b.pool.QueryRow(ctx, `SELECT id, `+fraudCols+` FROM fraud_rules WHERE id = $1`, id), r)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNoFraudRule
	}
	return err
}

func (b *Postgres) ListFraudRules(ctx context.Context) ([]FraudRule, error) {
	return list(b, ctx, scanFraudRule, `SELECT id, `+fraudCols+` FROM fraud_rules ORDER BY profile, prefix, id`)
}

func (b *Postgres) AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error {
	return b.writeVersioned(ctx, "dialplan", func(tx pgx.Tx) error {
		if replace {
			if _, err := tx.Exec(ctx, `DELETE FROM dialplan`); err != nil {
				return err
			}
		}
		i, err := insertRows(ctx, tx, len(rs), `INSERT INTO dialplan
			(dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, attrs, disabled, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING id`,
			func(i int) []any {
				r := &rs[i]
				return []any{r.DPID, r.Priority, r.MatchOp, r.MatchExp, r.MatchFlags, r.SubstExp, r.ReplExp, r.Attrs, r.Disabled, r.Created}
			},
			func(i int) []any { return []any{&rs[i].ID} })
		if err != nil || i < 0 {
			return err
		}
		r := &rs[i]
		var id int64
		tx.QueryRow(ctx, `SELECT id FROM dialplan WHERE dpid = $1 AND pr = $2 AND match_op = $3 AND match_exp = $4 AND match_flags = $5`,
			r.DPID, r.Priority, r.MatchOp, r.MatchExp, r.MatchFlags).Scan(&id)
		return &dialplanExistsError{index: i, id: id}
	})
}

func (b *Postgres) DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error) {
	var r DialplanRule
	err := b.writeVersioned(ctx, "dialplan", func(tx pgx.Tx) error {
		err := scanDialplanRule(tx.QueryRow(ctx, `DELETE FROM dialplan WHERE id = $1 RETURNING `+dialplanCols, id), &r)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoDialplanRule
		}
		return err
	})
	return r, err
}

func (b *Postgres) DeleteDialplan(ctx context.Context, dpid int) (int, error) {
	var n int64
	err := b.writeVersioned(ctx, "dialplan", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM dialplan WHERE dpid = $1`, dpid)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n == 0 {
			return ErrNoDialplanRule // rolled back: the version does not move
		}
		return nil
	})
	return int(n), err
}

func (b *Postgres) ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error) {
	if dpid >= 0 {
		return list(b, ctx, scanDialplanRule, `SELECT `+dialplanCols+` FROM dialplan WHERE dpid = $1 ORDER BY pr, id`, dpid)
	}
	return list(b, ctx, scanDialplanRule, `SELECT `+dialplanCols+` FROM dialplan ORDER BY dpid, pr, id`)
}

func (b *Postgres) AddAliases(ctx context.Context, as []Alias, replace bool) error {
	return b.writeVersioned(ctx, "aliases", func(tx pgx.Tx) error {
		if replace {
			if _, err := tx.Exec(ctx, `DELETE FROM aliases`); err != nil {
				return err
			}
		}
		var inserted string
		i, err := insertRows(ctx, tx, len(as), `INSERT INTO aliases (alias_username, alias_domain, username, domain, created)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING alias_username`,
			func(i int) []any {
				a := &as[i]
				return []any{a.AliasUser, a.AliasDomain, a.User, a.Domain, a.Created}
			},
			func(int) []any { return []any{&inserted} })
		if err != nil || i < 0 {
			return err
		}
		var user, domain string
		tx.QueryRow(ctx, `SELECT username, domain FROM aliases WHERE alias_username = $1 AND alias_domain = $2`,
			as[i].AliasUser, as[i].AliasDomain).Scan(&user, &domain)
		return &rowExistsError{index: i, what: user + "@" + domain}
	})
}

func (b *Postgres) DeleteAlias(ctx context.Context, aliasUser, aliasDomain string) (Alias, error) {
	a := Alias{AliasUser: aliasUser, AliasDomain: aliasDomain}
	err := b.writeVersioned(ctx, "aliases", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `DELETE FROM aliases WHERE alias_username = $1 AND alias_domain = $2 RETURNING username, domain, created`,
			aliasUser, aliasDomain).Scan(&a.User, &a.Domain, &a.Created)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoAlias
		}
		return err
	})
	return a, err
}

func scanAlias(r rowScanner, a *Alias) error {
	return r.Scan(&a.AliasUser, &a.AliasDomain, &a.User, &a.Domain, &a.Created)
}

func (b *Postgres) ListAliases(ctx context.Context, aliasDomain string) ([]Alias, error) {
	const cols = `SELECT alias_username, alias_domain, username, domain, created FROM aliases`
	if aliasDomain != "" {
		return list(b, ctx, scanAlias, cols+` WHERE alias_domain = $1 ORDER BY alias_username`, aliasDomain)
	}
	return list(b, ctx, scanAlias, cols+` ORDER BY alias_domain, alias_username`)
}

func (b *Postgres) AddGroupMember(ctx context.Context, m *GroupMember) error {
	return b.writeVersioned(ctx, "grp", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO grp (username, domain, grp, created) VALUES ($1, $2, $3, $4)`, m.User, m.Domain, m.Group, m.Created)
		if pgUnique(err) {
			return ErrGroupMemberExists
		}
		return err
	})
}

func (b *Postgres) DeleteGroupMember(ctx context.Context, user, domain, group string) error {
	return b.writeVersioned(ctx, "grp", func(tx pgx.Tx) error {
		return pgExecOne(ctx, tx, ErrNoGroupMember, `DELETE FROM grp WHERE username = $1 AND domain = $2 AND grp = $3`, user, domain, group)
	})
}

func scanGroupMember(r rowScanner, m *GroupMember) error {
	return r.Scan(&m.User, &m.Domain, &m.Group, &m.Created)
}

func (b *Postgres) ListGroupMembers(ctx context.Context, group string) ([]GroupMember, error) {
	if group != "" {
		return list(b, ctx, scanGroupMember, `SELECT username, domain, grp, created FROM grp WHERE grp = $1 ORDER BY domain, username`, group)
	}
	return list(b, ctx, scanGroupMember, `SELECT username, domain, grp, created FROM grp ORDER BY grp, domain, username`)
}

func (b *Postgres) AddDispatcherDests(ctx context.Context, ds []DispatcherDest, replace bool) error {
	return b.writeVersioned(ctx, "dispatcher", func(tx pgx.Tx) error {
		if replace {
			if _, err := tx.Exec(ctx, `DELETE FROM dispatcher`); err != nil {
				return err
			}
		}
		i, err := insertRows(ctx, tx, len(ds), `INSERT INTO dispatcher
			(setid, destination, socket, state, weight, priority, attrs, probe_mode, description, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING id`,
			func(i int) []any {
				d := &ds[i]
				return []any{d.SetID, d.Destination, d.Socket, d.State, d.Weight, d.Priority, d.Attrs, d.ProbeMode, d.Description, d.Created}
			},
			func(i int) []any { return []any{&ds[i].ID} })
		if err != nil || i < 0 {
			return err
		}
		var id int64
		tx.QueryRow(ctx, `SELECT id FROM dispatcher WHERE setid = $1 AND destination = $2`, ds[i].SetID, ds[i].Destination).Scan(&id)
		return &dispatcherExistsError{index: i, id: id}
	})
}

func (b *Postgres) DeleteDispatcherDest(ctx context.Context, id int64, set int, destination string) (DispatcherDest, error) {
	var d DispatcherDest
	err := b.writeVersioned(ctx, "dispatcher", func(tx pgx.Tx) error {
		var row pgx.Row
		if id != 0 {
			row = tx.QueryRow(ctx, `DELETE FROM dispatcher WHERE id = $1 RETURNING `+dispatcherCols, id)
		} else {
			row = tx.QueryRow(ctx, `DELETE FROM dispatcher WHERE setid = $1 AND destination = $2 RETURNING `+dispatcherCols, set, destination)
		}
		err := scanDispatcherDest(row, &d)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoDispatcher
		}
		return err
	})
	return d, err
}

func (b *Postgres) SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error) {
	var d DispatcherDest
	err := b.writeVersioned(ctx, "dispatcher", func(tx pgx.Tx) error {
		err := scanDispatcherDest(tx.QueryRow(ctx, `UPDATE dispatcher SET state = $1 WHERE setid = $2 AND destination = $3 RETURNING `+dispatcherCols,
			state, set, destination), &d)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoDispatcher
		}
		return err
	})
	return d, err
}

func (b *Postgres) ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error) {
	return list(b, ctx, scanDispatcherDest, `SELECT `+dispatcherCols+` FROM dispatcher ORDER BY setid, priority DESC, id`)
}

func (b *Postgres) AddUACCredential(ctx context.Context, c *UACCredential) error {
	return b.writeVersioned(ctx, "uac_credentials", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO uac_credentials (`+uacCredCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			c.Realm, c.Gateway, c.Username, c.Password, c.HA1, c.HA1SHA256, c.Created).Scan(&c.ID)
		if pgUnique(err) {
			return ErrUACExists
		}
		return err
	})
}

func (b *Postgres) DeleteUACCredential(ctx context.Context, id int64) (UACCredential, error) {
	var c UACCredential
	err := b.writeVersioned(ctx, "uac_credentials", func(tx pgx.Tx) error {
		err := scanUACCredential(tx.QueryRow(ctx, `DELETE FROM uac_credentials WHERE id = $1 RETURNING id, `+uacCredCols, id), &c)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoUAC
		}
		return err
	})
	return c, err
}

func (b *Postgres) ListUACCredentials(ctx context.Context) ([]UACCredential, error) {
	return list(b, ctx, scanUACCredential, `SELECT id, `+uacCredCols+` FROM uac_credentials ORDER BY realm, gateway, id`)
}

func (b *Postgres) AddUACRegistration(ctx context.Context, r *UACRegistration) error {
	return b.writeVersioned(ctx, "uac_registrations", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO uac_registrations (`+uacRegCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			r.AOR, r.Registrar, r.Proxy, r.Username, r.Password, r.Expires, r.Contact, r.Created).Scan(&r.ID)
		if pgUnique(err) {
			return ErrUACExists
		}
		return err
	})
}

func (b *Postgres) DeleteUACRegistration(ctx context.Context, id int64) (UACRegistration, error) {
	var r UACRegistration
	err := b.writeVersioned(ctx, "uac_registrations", func(tx pgx.Tx) error {
		err := scanUACRegistration(tx.QueryRow(ctx, `DELETE FROM uac_registrations WHERE id = $1 RETURNING id, `+uacRegCols, id), &r)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoUAC
		}
		return err
	})
	return r, err
}

func (b *Postgres) ListUACRegistrations(ctx context.Context) ([]UACRegistration, error) {
	return list(b, ctx, scanUACRegistration, `SELECT id, `+uacRegCols+` FROM uac_registrations ORDER BY id`)
}

func (b *Postgres) AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error {
	return b.writeVersioned(ctx, DRGatewaysTable, func(tx pgx.Tx) error {
		if replace {
			if _, err := tx.Exec(ctx, `DELETE FROM dr_gateways`); err != nil {
				return err
			}
		}
		var inserted string
		i, err := insertRows(ctx, tx, len(gs), `INSERT INTO dr_gateways (`+drGatewayCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING gwid`,
			func(i int) []any { return drGatewayArgs(&gs[i]) },
			func(int) []any { return []any{&inserted} })
		if err != nil || i < 0 {
			return err
		}
		return &drNameError{sentinel: ErrDRExists, table: DRGatewaysTable, id: gs[i].GWID}
	})
}

func (b *Postgres) UpdateDRGateway(ctx context.Context, g *DRGateway) error {
	return b.writeVersioned(ctx, DRGatewaysTable, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE dr_gateways SET type = $1, address = $2, transport = $3, strip = $4, pri_prefix = $5,
			attrs = $6, probe_mode = $7, state = $8, description = $9 WHERE gwid = $10 RETURNING created`,
			g.Type, g.Address, g.Transport, g.Strip, g.PriPrefix, g.Attrs, g.ProbeMode, g.State, g.Description, g.GWID).Scan(&g.Created)
		if errors.Is(err, pgx.ErrNoRows) {
			return &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: g.GWID}
		}
		return err
	})
}

func (b *Postgres) GetDRGateway(ctx context.Context, gwid string, g *DRGateway) error {
	err := b.do(ctx, func(ctx context.Context) error {
		return scanDRGateway(b.pool.QueryRow(ctx, `SELECT `+drGatewayCols+` FROM dr_gateways WHERE gwid = $1`, gwid), g)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: gwid}
	}
	return err
}

func (b *Postgres) ListDRGateways(ctx context.Context) ([]DRGateway, error) {
	return list(b, ctx, scanDRGateway, `SELECT `+drGatewayCols+` FROM dr_gateways ORDER BY gwid`)
}

func drCarrierArgs(c *DRCarrier) []any {
	return []any{c.CarrierID, c.GWList, c.Flags, c.SortAlg, c.State, c.Attrs, c.Description, c.Created}
}

func scanDRCarrier(r rowScanner, c *DRCarrier) error {
	return r.Scan(&c.CarrierID, &c.GWList, &c.Flags, &c.SortAlg, &c.State, &c.Attrs, &c.Description, &c.Created)
}

func (b *Postgres) AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error {
	return b.writeVersioned(ctx, DRCarriersTable, func(tx pgx.Tx) error {
		if replace {
			if _, err := tx.Exec(ctx, `DELETE FROM dr_carriers`); err != nil {
				return err
			}
		}
		var inserted string
		i, err := insertRows(ctx, tx, len(cs), `INSERT INTO dr_carriers (`+drCarrierCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING carrierid`,
			func(i int) []any { return drCarrierArgs(&cs[i]) },
			func(int) []any { return []any{&inserted} })
		if err != nil || i < 0 {
			return err
		}
		return &drNameError{sentinel: ErrDRExists, table: DRCarriersTable, id: cs[i].CarrierID}
	})
}

func (b *Postgres) UpdateDRCarrier(ctx context.Context, c *DRCarrier) error {
	return b.writeVersioned(ctx, DRCarriersTable, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE dr_carriers SET gwlist = $1, flags = $2, sort_alg = $3, state = $4, attrs = $5, description = $6
			WHERE carrierid = $7 RETURNING created`, c.GWList, c.Flags, c.SortAlg, c.State, c.Attrs, c.Description, c.CarrierID).Scan(&c.Created)
		if errors.Is(err, pgx.ErrNoRows) {
			return &drNameError{sentinel: ErrNoDR, table: DRCarriersTable, id: c.CarrierID}
		}
		return err
	})
}

func (b *Postgres) ListDRCarriers(ctx context.Context) ([]DRCarrier, error) {
	return list(b, ctx, scanDRCarrier, `SELECT `+drCarrierCols+` FROM dr_carriers ORDER BY carrierid`)
}

// AddDRRules takes the rules' IDs from the identity's sequence in one query
// and writes the rows with COPY: a million rules is one transaction of a
// few seconds rather than a million statements.
func (b *Postgres) AddDRRules(ctx context.Context, rs []DRRule, replace bool) error {
	return b.writeVersioned(ctx, DRRulesTable, func(tx pgx.Tx) error {
		if replace {
			if _, err := tx.Exec(ctx, `DELETE FROM dr_rules`); err != nil {
				return err
			}
		}
		if len(rs) == 0 {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('dr_rules', 'ruleid')) FROM generate_series(1, $1) ORDER BY 1`, len(rs))
		ids, err := collect(rows, err, func(r rowScanner, id *int64) error { return r.Scan(id) })
		if err != nil {
			return err
		}
		for i := range rs {
			rs[i].ID = ids[i]
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"dr_rules"},
			[]string{"ruleid", "groupid", "prefix", "timerec", "priority", "routeid", "gwlist", "sort_alg", "attrs", "description", "created"},
			pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
				r := &rs[i]
				return []any{r.ID, r.Groups, r.Prefix, r.TimeRec, int64(r.Priority), r.RouteID, r.GWList, r.SortAlg, r.Attrs, r.Description, r.Created}, nil
			}))
		return err
	})
}

// ForEachDRRule streams the rules; like LoadBindings it is bounded by ctx
// only.
func (b *Postgres) ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error {
	q := `SELECT ruleid, ` + drRuleCols + ` FROM dr_rules WHERE ruleid > $1`
	args := []any{f.AfterID}
	if f.Prefix != "" {
		// starts_with, not LIKE: the prefix is compared as it is.
		args = append(args, f.Prefix)
		q += ` AND starts_with(prefix, $` + strconv.Itoa(len(args)) + `)`
	}
	q += ` ORDER BY ruleid`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += ` LIMIT $` + strconv.Itoa(len(args))
	}
	rows, err := b.pool.Query(ctx, q, args...)
	if err != nil {
		return b.check(err)
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
	return b.check(rows.Err())
}

func (b *Postgres) DeleteDR(ctx context.Context, table, id string) error {
	var q string
	var key any = id
	switch table {
	case DRGatewaysTable:
		q = `DELETE FROM dr_gateways WHERE gwid = $1`
	case DRCarriersTable:
		q = `DELETE FROM dr_carriers WHERE carrierid = $1`
	case DRRulesTable:
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return &drNameError{sentinel: ErrNoDR, table: table, id: id}
		}
		q, key = `DELETE FROM dr_rules WHERE ruleid = $1`, n
	default:
		return errors.New("store: no drouting table " + table)
	}
	return b.writeVersioned(ctx, table, func(tx pgx.Tx) error {
		return pgExecOne(ctx, tx, &drNameError{sentinel: ErrNoDR, table: table, id: id}, q, key)
	})
}
