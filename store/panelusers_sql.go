package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
)

// The panel_users table for each backend. No change log entry or table
// version: the panel reads a user at login and re-reads it while a
// session lasts (mgmt/panel), so a deleted user or a changed password
// ends the sessions within seconds on every node.

// noMark is the inTx mark of the panel_users writes: nothing to record.
func noMark[T any](T) error { return nil }

const panelUserCols = `name, hash, role, created, updated`

func (b *SQLite) AddPanelUser(ctx context.Context, u *PanelUser) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO panel_users (`+panelUserCols+`) VALUES (?, ?, ?, ?, ?)`, u.Name, u.Hash, u.Role, u.Created, u.Updated)
		if isUnique(err) {
			return ErrPanelUserExists
		}
		return err
	}, noMark)
}

func (b *SQLite) UpdatePanelUser(ctx context.Context, name, hash, role string, updated int64) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoPanelUser, `UPDATE panel_users SET hash = CASE WHEN ? = '' THEN hash ELSE ? END,
			role = CASE WHEN ? = '' THEN role ELSE ? END, updated = ? WHERE name = ?`, hash, hash, role, role, updated, name)
	}, noMark)
}

func (b *SQLite) DeletePanelUser(ctx context.Context, name string) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoPanelUser, `DELETE FROM panel_users WHERE name = ?`, name)
	}, noMark)
}

func (b *SQLite) GetPanelUser(ctx context.Context, name string, u *PanelUser) error {
	err := b.db.QueryRowContext(ctx, `SELECT `+panelUserCols+` FROM panel_users WHERE name = ?`, name).
		Scan(&u.Name, &u.Hash, &u.Role, &u.Created, &u.Updated)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoPanelUser
	}
	return err
}

func (b *SQLite) ListPanelUsers(ctx context.Context) ([]PanelUser, error) {
	return sqlPanelUsers(b.db.QueryContext(ctx, `SELECT `+panelUserCols+` FROM panel_users ORDER BY name`))
}

func sqlPanelUsers(rows *sql.Rows, err error) ([]PanelUser, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PanelUser
	for rows.Next() {
		var u PanelUser
		if err := rows.Scan(&u.Name, &u.Hash, &u.Role, &u.Created, &u.Updated); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (b *MySQL) AddPanelUser(ctx context.Context, u *PanelUser) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO panel_users (`+panelUserCols+`) VALUES (?, ?, ?, ?, ?)`, u.Name, u.Hash, u.Role, u.Created, u.Updated)
		if myUnique(err) {
			return ErrPanelUserExists
		}
		return err
	}, noMark)
}

func (b *MySQL) UpdatePanelUser(ctx context.Context, name, hash, role string, updated int64) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		// MySQL counts as affected only the rows whose values changed
		// (the same role set twice in a second changes none): whether the
		// user exists is asked first, under a row lock.
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM panel_users WHERE name = ? FOR UPDATE`, name).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoPanelUser
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE panel_users SET hash = IF(? = '', hash, ?),
			role = IF(? = '', role, ?), updated = ? WHERE name = ?`, hash, hash, role, role, updated, name)
		return err
	}, noMark)
}

func (b *MySQL) DeletePanelUser(ctx context.Context, name string) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoPanelUser, `DELETE FROM panel_users WHERE name = ?`, name)
	}, noMark)
}

func (b *MySQL) GetPanelUser(ctx context.Context, name string, u *PanelUser) error {
	err := b.db.QueryRowContext(ctx, `SELECT `+panelUserCols+` FROM panel_users WHERE name = ?`, name).
		Scan(&u.Name, &u.Hash, &u.Role, &u.Created, &u.Updated)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoPanelUser
	}
	return b.check(err)
}

func (b *MySQL) ListPanelUsers(ctx context.Context) ([]PanelUser, error) {
	out, err := sqlPanelUsers(b.db.QueryContext(ctx, `SELECT `+panelUserCols+` FROM panel_users ORDER BY name`))
	return out, b.check(err)
}

func (b *Postgres) AddPanelUser(ctx context.Context, u *PanelUser) error {
	return b.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO panel_users (`+panelUserCols+`) VALUES ($1, $2, $3, $4, $5)`, u.Name, u.Hash, u.Role, u.Created, u.Updated)
		if pgUnique(err) {
			return ErrPanelUserExists
		}
		return err
	}, noMark)
}

func (b *Postgres) UpdatePanelUser(ctx context.Context, name, hash, role string, updated int64) error {
	return b.inTx(ctx, func(tx pgx.Tx) error {
		return pgExecOne(ctx, tx, ErrNoPanelUser, `UPDATE panel_users SET hash = CASE WHEN $1 = '' THEN hash ELSE $1 END,
			role = CASE WHEN $2 = '' THEN role ELSE $2 END, updated = $3 WHERE name = $4`, hash, role, updated, name)
	}, noMark)
}

func (b *Postgres) DeletePanelUser(ctx context.Context, name string) error {
	return b.inTx(ctx, func(tx pgx.Tx) error {
		return pgExecOne(ctx, tx, ErrNoPanelUser, `DELETE FROM panel_users WHERE name = $1`, name)
	}, noMark)
}

func scanPanelUser(r rowScanner, u *PanelUser) error {
	return r.Scan(&u.Name, &u.Hash, &u.Role, &u.Created, &u.Updated)
}

func (b *Postgres) GetPanelUser(ctx context.Context, name string, u *PanelUser) error {
	us, err := list(b, ctx, scanPanelUser, `SELECT `+panelUserCols+` FROM panel_users WHERE name = $1`, name)
	if err != nil {
		return err
	}
	if len(us) == 0 {
		return ErrNoPanelUser
	}
	*u = us[0]
	return nil
}

func (b *Postgres) ListPanelUsers(ctx context.Context) ([]PanelUser, error) {
	return list(b, ctx, scanPanelUser, `SELECT `+panelUserCols+` FROM panel_users ORDER BY name`)
}
