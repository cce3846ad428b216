package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	sqlite3 "modernc.org/sqlite/lib"
)

// writeDR runs fn in a transaction that bumps the version of table.
func (b *SQLite) writeDR(ctx context.Context, table string, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = ?`, table)
		return err
	})
}

func drExists(err error, table, id string) error {
	if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		return &drNameError{sentinel: ErrDRExists, table: table, id: id}
	}
	return err
}

const drGatewayCols = `gwid, type, address, transport, strip, pri_prefix, attrs, probe_mode, state, description, created`

func drGatewayArgs(g *DRGateway) []any {
	return []any{g.GWID, g.Type, g.Address, g.Transport, g.Strip, g.PriPrefix, g.Attrs, g.ProbeMode, g.State, g.Description, g.Created}
}

func scanDRGateway(sc interface{ Scan(...any) error }, g *DRGateway) error {
	return sc.Scan(&g.GWID, &g.Type, &g.Address, &g.Transport, &g.Strip, &g.PriPrefix, &g.Attrs, &g.ProbeMode, &g.State, &g.Description, &g.Created)
}

func (b *SQLite) AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error {
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
				return drExists(err, DRGatewaysTable, gs[i].GWID)
			}
		}
		return nil
	})
}

func (b *SQLite) UpdateDRGateway(ctx context.Context, g *DRGateway) error {
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

func (b *SQLite) GetDRGateway(ctx context.Context, gwid string, g *DRGateway) error {
	err := scanDRGateway(b.db.QueryRowContext(ctx, `SELECT `+drGatewayCols+` FROM dr_gateways WHERE gwid = ?`, gwid), g)
	if errors.Is(err, sql.ErrNoRows) {
		return &drNameError{sentinel: ErrNoDR, table: DRGatewaysTable, id: gwid}
	}
	return err
}

func (b *SQLite) ListDRGateways(ctx context.Context) ([]DRGateway, error) {
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

const drCarrierCols = `carrierid, gwlist, flags, sort_alg, state, attrs, description, created`

func (b *SQLite) AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error {
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
				return drExists(err, DRCarriersTable, c.CarrierID)
			}
		}
		return nil
	})
}

func (b *SQLite) UpdateDRCarrier(ctx context.Context, c *DRCarrier) error {
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

func (b *SQLite) ListDRCarriers(ctx context.Context) ([]DRCarrier, error) {
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

const drRuleCols = `groupid, prefix, timerec, priority, routeid, gwlist, sort_alg, attrs, description, created`

func (b *SQLite) AddDRRules(ctx context.Context, rs []DRRule, replace bool) error {
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

func (b *SQLite) ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error {
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

func (b *SQLite) DeleteDR(ctx context.Context, table, id string) error {
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
