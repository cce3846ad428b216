package store

import "context"

// The dialplan, aliases and grp tables (modules/dialplan, aliases,
// groups) on every backend (tables.go).

const dialplanCols = `id, dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, attrs, disabled, created`

func scanDialplanRule(sc rowScanner, r *DialplanRule) error {
	return sc.Scan(&r.ID, &r.DPID, &r.Priority, &r.MatchOp, &r.MatchExp, &r.MatchFlags, &r.SubstExp, &r.ReplExp,
		&r.Attrs, &r.Disabled, &r.Created)
}

func (t tables) AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error {
	return t.versioned(ctx, "dialplan", func(c conn) error {
		if replace {
			if _, err := c.exec(ctx, `DELETE FROM dialplan`); err != nil {
				return err
			}
		}
		i, err := c.insertRows(ctx, &insertSpec{
			table: "dialplan", cols: `dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, attrs, disabled, created`, n: len(rs),
			args: func(i int) []any {
				r := &rs[i]
				return []any{r.DPID, r.Priority, r.MatchOp, r.MatchExp, r.MatchFlags, r.SubstExp, r.ReplExp, r.Attrs, r.Disabled, r.Created}
			},
			key: "id", id: func(i int) *int64 { return &rs[i].ID },
		})
		if err != nil || i < 0 {
			return err
		}
		r := &rs[i]
		var id int64
		c.queryRow(ctx, `SELECT id FROM dialplan WHERE dpid = ? AND pr = ? AND match_op = ? AND match_exp = ? AND match_flags = ?`,
			r.DPID, r.Priority, r.MatchOp, r.MatchExp, r.MatchFlags).Scan(&id)
		return &dialplanExistsError{index: i, id: id}
	})
}

func (t tables) DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error) {
	var r DialplanRule
	err := t.versioned(ctx, "dialplan", func(c conn) error {
		return deleteOne(ctx, c, rowsOf{"dialplan", `id = ?`, []any{id}}, dialplanCols, ErrNoDialplanRule,
			func(sc rowScanner) error { return scanDialplanRule(sc, &r) })
	})
	return r, err
}

func (t tables) DeleteDialplan(ctx context.Context, dpid int) (int, error) {
	var n int64
	err := t.versioned(ctx, "dialplan", func(c conn) error {
		var err error
		if n, err = c.exec(ctx, `DELETE FROM dialplan WHERE dpid = ?`, dpid); err == nil && n == 0 {
			return ErrNoDialplanRule // rolled back: the version does not move
		}
		return err
	})
	return int(n), err
}

func (t tables) ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error) {
	if dpid >= 0 {
		return listRows(ctx, t.tb, scanDialplanRule, `SELECT `+dialplanCols+` FROM dialplan WHERE dpid = ? ORDER BY pr, id`, dpid)
	}
	return listRows(ctx, t.tb, scanDialplanRule, `SELECT `+dialplanCols+` FROM dialplan ORDER BY dpid, pr, id`)
}

const aliasCols = `alias_username, alias_domain, username, domain, created`

func scanAlias(r rowScanner, a *Alias) error {
	return r.Scan(&a.AliasUser, &a.AliasDomain, &a.User, &a.Domain, &a.Created)
}

func (t tables) AddAliases(ctx context.Context, as []Alias, replace bool) error {
	return t.versioned(ctx, "aliases", func(c conn) error {
		if replace {
			if _, err := c.exec(ctx, `DELETE FROM aliases`); err != nil {
				return err
			}
		}
		i, err := c.insertRows(ctx, &insertSpec{table: "aliases", cols: aliasCols, n: len(as),
			args: func(i int) []any {
				a := &as[i]
				return []any{a.AliasUser, a.AliasDomain, a.User, a.Domain, a.Created}
			},
			key: "alias_username"})
		if err != nil || i < 0 {
			return err
		}
		var user, domain string
		c.queryRow(ctx, `SELECT username, domain FROM aliases WHERE alias_username = ? AND alias_domain = ?`,
			as[i].AliasUser, as[i].AliasDomain).Scan(&user, &domain)
		return &rowExistsError{index: i, what: user + "@" + domain}
	})
}

func (t tables) DeleteAlias(ctx context.Context, aliasUser, aliasDomain string) (Alias, error) {
	a := Alias{AliasUser: aliasUser, AliasDomain: aliasDomain}
	err := t.versioned(ctx, "aliases", func(c conn) error {
		return deleteOne(ctx, c, rowsOf{"aliases", `alias_username = ? AND alias_domain = ?`, []any{aliasUser, aliasDomain}},
			`username, domain, created`, ErrNoAlias,
			func(r rowScanner) error { return r.Scan(&a.User, &a.Domain, &a.Created) })
	})
	return a, err
}

func (t tables) ListAliases(ctx context.Context, aliasDomain string) ([]Alias, error) {
	if aliasDomain != "" {
		return listRows(ctx, t.tb, scanAlias, `SELECT `+aliasCols+` FROM aliases WHERE alias_domain = ? ORDER BY alias_username`, aliasDomain)
	}
	return listRows(ctx, t.tb, scanAlias, `SELECT `+aliasCols+` FROM aliases ORDER BY alias_domain, alias_username`)
}

func scanGroupMember(r rowScanner, m *GroupMember) error {
	return r.Scan(&m.User, &m.Domain, &m.Group, &m.Created)
}

func (t tables) AddGroupMember(ctx context.Context, m *GroupMember) error {
	return t.versioned(ctx, "grp", func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO grp (username, domain, grp, created) VALUES (?, ?, ?, ?)`, m.User, m.Domain, m.Group, m.Created)
		if c.unique(err) {
			return ErrGroupMemberExists
		}
		return err
	})
}

func (t tables) DeleteGroupMember(ctx context.Context, user, domain, group string) error {
	return t.versioned(ctx, "grp", func(c conn) error {
		return changeOne(ctx, c, ErrNoGroupMember, `DELETE FROM grp WHERE username = ? AND domain = ? AND grp = ?`, user, domain, group)
	})
}

func (t tables) ListGroupMembers(ctx context.Context, group string) ([]GroupMember, error) {
	if group != "" {
		return listRows(ctx, t.tb, scanGroupMember, `SELECT username, domain, grp, created FROM grp WHERE grp = ? ORDER BY domain, username`, group)
	}
	return listRows(ctx, t.tb, scanGroupMember, `SELECT username, domain, grp, created FROM grp ORDER BY grp, domain, username`)
}
