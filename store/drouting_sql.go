package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
)

// The dr_gateways, dr_carriers and dr_rules tables (modules/drouting) on
// every backend (tables.go). Each has its own table version, so a changed
// gateway does not make the server reload a million rules.

const drGatewayCols = `gwid, type, address, transport, strip, pri_prefix, attrs, probe_mode, state, description, created`

func drGatewayArgs(g *DRGateway) []any {
	return []any{g.GWID, g.Type, g.Address, g.Transport, g.Strip, g.PriPrefix, g.Attrs, g.ProbeMode, g.State, g.Description, g.Created}
}

func scanDRGateway(sc rowScanner, g *DRGateway) error {
	return sc.Scan(&g.GWID, &g.Type, &g.Address, &g.Transport, &g.Strip, &g.PriPrefix, &g.Attrs, &g.ProbeMode, &g.State, &g.Description, &g.Created)
}

const drCarrierCols = `carrierid, gwlist, flags, sort_alg, state, attrs, description, created`

func drCarrierArgs(c *DRCarrier) []any {
	return []any{c.CarrierID, c.GWList, c.Flags, c.SortAlg, c.State, c.Attrs, c.Description, c.Created}
}

func scanDRCarrier(r rowScanner, c *DRCarrier) error {
	return r.Scan(&c.CarrierID, &c.GWList, &c.Flags, &c.SortAlg, &c.State, &c.Attrs, &c.Description, &c.Created)
}

const drRuleCols = `groupid, prefix, timerec, priority, routeid, gwlist, sort_alg, attrs, description, created`

func drRuleArgs(r *DRRule) []any {
	// int64: PostgreSQL's COPY wants the column's exact type.
	return []any{r.Groups, r.Prefix, r.TimeRec, int64(r.Priority), r.RouteID, r.GWList, r.SortAlg, r.Attrs, r.Description, r.Created}
}

// drRuleDest is where ruleid, then drRuleCols, are scanned into r: made
// once for a walk of every rule, it is not allocated again per row (a
// Scan through an interface would allocate its arguments).
func drRuleDest(r *DRRule) []any {
	return []any{&r.ID, &r.Groups, &r.Prefix, &r.TimeRec, &r.Priority, &r.RouteID, &r.GWList, &r.SortAlg, &r.Attrs, &r.Description, &r.Created}
}

func drMissing(table, id string) error { return &drNameError{sentinel: ErrNoDR, table: table, id: id} }

// addDR inserts n rows into a dr table keyed by name (gwid, carrierid),
// emptying it first when replace; a duplicate is named by name(i).
func (t tables) addDR(ctx context.Context, table, cols, key string, replace bool, n int, args func(i int) []any, name func(i int) string) error {
	return t.versioned(ctx, table, func(c conn) error {
		if replace {
			if _, err := c.exec(ctx, `DELETE FROM `+table); err != nil {
				return err
			}
		}
		i, err := c.insertRows(ctx, &insertSpec{table: table, cols: cols, n: n, args: args, key: key})
		if err != nil || i < 0 {
			return err
		}
		return &drNameError{sentinel: ErrDRExists, table: table, id: name(i)}
	})
}

func (t tables) AddDRGateways(ctx context.Context, gs []DRGateway, replace bool) error {
	return t.addDR(ctx, DRGatewaysTable, drGatewayCols, "gwid", replace, len(gs),
		func(i int) []any { return drGatewayArgs(&gs[i]) }, func(i int) string { return gs[i].GWID })
}

func (t tables) UpdateDRGateway(ctx context.Context, g *DRGateway) error {
	return t.versioned(ctx, DRGatewaysTable, func(c conn) error {
		err := c.updateRow(ctx, rowsOf{"dr_gateways", `gwid = ?`, []any{g.GWID}},
			`type = ?, address = ?, transport = ?, strip = ?, pri_prefix = ?, attrs = ?, probe_mode = ?, state = ?, description = ?`,
			[]any{g.Type, g.Address, g.Transport, g.Strip, g.PriPrefix, g.Attrs, g.ProbeMode, g.State, g.Description},
			`created`, func(r rowScanner) error { return r.Scan(&g.Created) })
		if errors.Is(err, sql.ErrNoRows) {
			return drMissing(DRGatewaysTable, g.GWID)
		}
		return err
	})
}

func (t tables) GetDRGateway(ctx context.Context, gwid string, g *DRGateway) error {
	err := getRow(ctx, t.tb, scanDRGateway, g, `SELECT `+drGatewayCols+` FROM dr_gateways WHERE gwid = ?`, gwid)
	if errors.Is(err, sql.ErrNoRows) {
		return drMissing(DRGatewaysTable, gwid)
	}
	return err
}

func (t tables) ListDRGateways(ctx context.Context) ([]DRGateway, error) {
	return listRows(ctx, t.tb, scanDRGateway, `SELECT `+drGatewayCols+` FROM dr_gateways ORDER BY gwid`)
}

func (t tables) AddDRCarriers(ctx context.Context, cs []DRCarrier, replace bool) error {
	return t.addDR(ctx, DRCarriersTable, drCarrierCols, "carrierid", replace, len(cs),
		func(i int) []any { return drCarrierArgs(&cs[i]) }, func(i int) string { return cs[i].CarrierID })
}

func (t tables) UpdateDRCarrier(ctx context.Context, c *DRCarrier) error {
	return t.versioned(ctx, DRCarriersTable, func(cn conn) error {
		err := cn.updateRow(ctx, rowsOf{"dr_carriers", `carrierid = ?`, []any{c.CarrierID}},
			`gwlist = ?, flags = ?, sort_alg = ?, state = ?, attrs = ?, description = ?`,
			[]any{c.GWList, c.Flags, c.SortAlg, c.State, c.Attrs, c.Description},
			`created`, func(r rowScanner) error { return r.Scan(&c.Created) })
		if errors.Is(err, sql.ErrNoRows) {
			return drMissing(DRCarriersTable, c.CarrierID)
		}
		return err
	})
}

func (t tables) ListDRCarriers(ctx context.Context) ([]DRCarrier, error) {
	return listRows(ctx, t.tb, scanDRCarrier, `SELECT `+drCarrierCols+` FROM dr_carriers ORDER BY carrierid`)
}

// AddDRRules: a million rules is one transaction (PostgreSQL: COPY).
func (t tables) AddDRRules(ctx context.Context, rs []DRRule, replace bool) error {
	return t.versioned(ctx, DRRulesTable, func(c conn) error {
		if replace {
			if _, err := c.exec(ctx, `DELETE FROM dr_rules`); err != nil {
				return err
			}
		}
		_, err := c.insertRows(ctx, &insertSpec{table: "dr_rules", cols: drRuleCols, n: len(rs),
			args: func(i int) []any { return drRuleArgs(&rs[i]) },
			key:  "ruleid", id: func(i int) *int64 { return &rs[i].ID }, bulk: true})
		return err
	})
}

// ForEachDRRule streams the rules, reusing one DRRule; like LoadBindings
// it is bounded by ctx only.
func (t tables) ForEachDRRule(ctx context.Context, f DRRuleFilter, fn func(r *DRRule) error) error {
	return t.tb.streamConn(ctx, func(c conn) error {
		q := `SELECT ruleid, ` + drRuleCols + ` FROM dr_rules WHERE ruleid > ?`
		args := []any{f.AfterID}
		if f.Prefix != "" {
			var cond string
			cond, args = c.startsWith("prefix", f.Prefix, args)
			q += ` AND ` + cond
		}
		q += ` ORDER BY ruleid`
		if f.Limit > 0 {
			q += ` LIMIT ?`
			args = append(args, f.Limit)
		}
		var r DRRule
		dest := drRuleDest(&r)
		return c.query(ctx, q, args, func(sc rowScanner) error {
			if err := sc.Scan(dest...); err != nil {
				return err
			}
			return fn(&r)
		})
	})
}

func (t tables) DeleteDR(ctx context.Context, table, id string) error {
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
			return drMissing(table, id)
		}
		q, key = `DELETE FROM dr_rules WHERE ruleid = ?`, n
	default:
		return errors.New("store: no drouting table " + table)
	}
	return t.versioned(ctx, table, func(c conn) error {
		return changeOne(ctx, c, drMissing(table, id), q, key)
	})
}
