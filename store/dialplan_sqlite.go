package store

import (
	"context"
	"database/sql"
	"errors"

	sqlite3 "modernc.org/sqlite/lib"
)

// writeVersioned runs fn in a transaction that bumps the version of table
// (a table a server reloads whole: dialplan, aliases, grp, fraud_rules).
func (b *SQLite) writeVersioned(ctx context.Context, table string, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = ?`, table)
		return err
	})
}

func isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

const dialplanCols = `id, dpid, pr, match_op, match_exp, match_flags, subst_exp, repl_exp, attrs, disabled, created`

func scanDialplanRule(sc interface{ Scan(...any) error }, r *DialplanRule) error {
	return sc.Scan(&r.ID, &r.DPID, &r.Priority, &r.MatchOp, &r.MatchExp, &r.MatchFlags, &r.SubstExp, &r.ReplExp,
		&r.Attrs, &r.Disabled, &r.Created)
}

func (b *SQLite) AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error {
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
			if isUnique(err) {
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

func (b *SQLite) DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error) {
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

func (b *SQLite) DeleteDialplan(ctx context.Context, dpid int) (int, error) {
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

func (b *SQLite) ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error) {
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

func (b *SQLite) AddAliases(ctx context.Context, as []Alias, replace bool) error {
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
			if isUnique(err) {
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

func (b *SQLite) DeleteAlias(ctx context.Context, aliasUser, aliasDomain string) (Alias, error) {
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

func (b *SQLite) ListAliases(ctx context.Context, aliasDomain string) ([]Alias, error) {
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

func (b *SQLite) AddGroupMember(ctx context.Context, m *GroupMember) error {
	return b.writeVersioned(ctx, "grp", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO grp (username, domain, grp, created) VALUES (?, ?, ?, ?)`, m.User, m.Domain, m.Group, m.Created)
		if isUnique(err) {
			return ErrGroupMemberExists
		}
		return err
	})
}

func (b *SQLite) DeleteGroupMember(ctx context.Context, user, domain, group string) error {
	return b.writeVersioned(ctx, "grp", func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoGroupMember, `DELETE FROM grp WHERE username = ? AND domain = ? AND grp = ?`, user, domain, group)
	})
}

func (b *SQLite) ListGroupMembers(ctx context.Context, group string) ([]GroupMember, error) {
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
