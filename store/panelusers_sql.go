package store

import (
	"context"
	"database/sql"
	"errors"
)

// The panel_users table on every backend (tables.go). No change log entry
// or table version: the panel reads a user at login and re-reads it while
// a session lasts (mgmt/panel), so a deleted user or a changed password
// ends the sessions within seconds on every node.

const panelUserCols = `name, hash, role, created, updated`

func scanPanelUser(r rowScanner, u *PanelUser) error {
	return r.Scan(&u.Name, &u.Hash, &u.Role, &u.Created, &u.Updated)
}

func (t tables) AddPanelUser(ctx context.Context, u *PanelUser) error {
	return t.tb.txConn(ctx, func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO panel_users (`+panelUserCols+`) VALUES (?, ?, ?, ?, ?)`, u.Name, u.Hash, u.Role, u.Created, u.Updated)
		if c.unique(err) {
			return ErrPanelUserExists
		}
		return err
	}, nil)
}

// UpdatePanelUser sets the hash and the role when not "". The row counts
// as changed when it matched, even with the values it had (MySQL:
// ClientFoundRows), so setting the same role twice is not ErrNoPanelUser.
func (t tables) UpdatePanelUser(ctx context.Context, name, hash, role string, updated int64) error {
	return t.tb.txConn(ctx, func(c conn) error {
		return changeOne(ctx, c, ErrNoPanelUser, `UPDATE panel_users SET hash = CASE WHEN ? = '' THEN hash ELSE ? END,
			role = CASE WHEN ? = '' THEN role ELSE ? END, updated = ? WHERE name = ?`, hash, hash, role, role, updated, name)
	}, nil)
}

func (t tables) DeletePanelUser(ctx context.Context, name string) error {
	return t.tb.txConn(ctx, func(c conn) error {
		return changeOne(ctx, c, ErrNoPanelUser, `DELETE FROM panel_users WHERE name = ?`, name)
	}, nil)
}

func (t tables) GetPanelUser(ctx context.Context, name string, u *PanelUser) error {
	err := getRow(ctx, t.tb, scanPanelUser, u, `SELECT `+panelUserCols+` FROM panel_users WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoPanelUser
	}
	return err
}

func (t tables) ListPanelUsers(ctx context.Context) ([]PanelUser, error) {
	return listRows(ctx, t.tb, scanPanelUser, `SELECT `+panelUserCols+` FROM panel_users ORDER BY name`)
}
