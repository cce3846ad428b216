package store

import (
	"context"
	"database/sql"
	"errors"
)

// The panel_sessions table on every backend (tables.go).

const panelSessionCols = `id, name, csrf, password_tag, created, expires`

func scanPanelSession(r rowScanner, s *PanelSession) error {
	return r.Scan(&s.ID, &s.User, &s.CSRF, &s.PasswordTag, &s.Created, &s.Expires)
}

func (t tables) AddPanelSession(ctx context.Context, s *PanelSession) error {
	return t.tb.txConn(ctx, func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO panel_sessions (`+panelSessionCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
			s.ID, s.User, s.CSRF, s.PasswordTag, s.Created, s.Expires)
		return err
	}, nil)
}

func (t tables) GetPanelSession(ctx context.Context, id string, s *PanelSession) error {
	err := getRow(ctx, t.tb, scanPanelSession, s, `SELECT `+panelSessionCols+` FROM panel_sessions WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoPanelSession
	}
	return err
}

func (t tables) TouchPanelSession(ctx context.Context, id string, expires int64) error {
	return t.tb.txConn(ctx, func(c conn) error {
		return changeOne(ctx, c, ErrNoPanelSession, `UPDATE panel_sessions SET expires = ? WHERE id = ?`, expires, id)
	}, nil)
}

func (t tables) DeletePanelSession(ctx context.Context, id string) error {
	_, err := execPool(ctx, t.tb, `DELETE FROM panel_sessions WHERE id = ?`, id)
	return err
}

func (t tables) DeleteExpiredPanelSessions(ctx context.Context, now int64) (int64, error) {
	return execPool(ctx, t.tb, `DELETE FROM panel_sessions WHERE expires < ?`, now)
}
