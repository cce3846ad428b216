package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
)

// The rtpengine table for each backend. The statements are the same but
// for the placeholders and the unique-violation test; every write bumps
// the table's version in its transaction.

const rtpengineCols = `id, set_id, socket, weight, disabled, description, created`

func scanRTPEngine(r rowScanner, e *RTPEngine) error {
	var disabled int64
	if err := r.Scan(&e.ID, &e.SetID, &e.Socket, &e.Weight, &disabled, &e.Description, &e.Created); err != nil {
		return err
	}
	e.Disabled = disabled != 0
	return nil
}

// sqlAddRTPEngine and the functions below are shared by SQLite and MySQL
// (database/sql, "?" placeholders).
func sqlAddRTPEngine(ctx context.Context, tx *sql.Tx, r *RTPEngine, unique func(error) bool) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO rtpengine (set_id, socket, weight, disabled, description, created)
		VALUES (?, ?, ?, ?, ?, ?)`, r.SetID, r.Socket, r.Weight, rtpengineDisabled(r.Disabled), r.Description, r.Created)
	if unique(err) {
		return ErrRTPEngineExists
	}
	if err != nil {
		return err
	}
	r.ID, err = res.LastInsertId()
	return err
}

func sqlDeleteRTPEngine(ctx context.Context, tx *sql.Tx, id int64, set int, socket string) (RTPEngine, error) {
	var r RTPEngine
	var err error
	if id != 0 {
		err = scanRTPEngine(tx.QueryRowContext(ctx, `SELECT `+rtpengineCols+` FROM rtpengine WHERE id = ?`, id), &r)
	} else {
		err = scanRTPEngine(tx.QueryRowContext(ctx, `SELECT `+rtpengineCols+` FROM rtpengine WHERE set_id = ? AND socket = ?`, set, socket), &r)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNoRTPEngine
	}
	if err != nil {
		return r, err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM rtpengine WHERE id = ?`, r.ID)
	return r, err
}

func sqlListRTPEngines(rows *sql.Rows, err error) ([]RTPEngine, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RTPEngine
	for rows.Next() {
		var r RTPEngine
		if err := scanRTPEngine(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const listRTPEngines = `SELECT ` + rtpengineCols + ` FROM rtpengine ORDER BY set_id, id`

func (b *SQLite) AddRTPEngine(ctx context.Context, r *RTPEngine) error {
	return b.writeVersioned(ctx, "rtpengine", func(tx *sql.Tx) error { return sqlAddRTPEngine(ctx, tx, r, isUnique) })
}

func (b *SQLite) DeleteRTPEngine(ctx context.Context, id int64, set int, socket string) (RTPEngine, error) {
	var r RTPEngine
	err := b.writeVersioned(ctx, "rtpengine", func(tx *sql.Tx) error {
		var err error
		r, err = sqlDeleteRTPEngine(ctx, tx, id, set, socket)
		return err
	})
	return r, err
}

func (b *SQLite) ListRTPEngines(ctx context.Context) ([]RTPEngine, error) {
	return sqlListRTPEngines(b.db.QueryContext(ctx, listRTPEngines))
}

func (b *MySQL) AddRTPEngine(ctx context.Context, r *RTPEngine) error {
	return b.writeVersioned(ctx, "rtpengine", func(tx *sql.Tx) error { return sqlAddRTPEngine(ctx, tx, r, myUnique) })
}

func (b *MySQL) DeleteRTPEngine(ctx context.Context, id int64, set int, socket string) (RTPEngine, error) {
	var r RTPEngine
	err := b.writeVersioned(ctx, "rtpengine", func(tx *sql.Tx) error {
		var err error
		r, err = sqlDeleteRTPEngine(ctx, tx, id, set, socket)
		return err
	})
	return r, err
}

func (b *MySQL) ListRTPEngines(ctx context.Context) ([]RTPEngine, error) {
	out, err := sqlListRTPEngines(b.db.QueryContext(ctx, listRTPEngines))
	return out, b.check(err)
}

func (b *Postgres) AddRTPEngine(ctx context.Context, r *RTPEngine) error {
	return b.writeVersioned(ctx, "rtpengine", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO rtpengine (set_id, socket, weight, disabled, description, created)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			r.SetID, r.Socket, r.Weight, rtpengineDisabled(r.Disabled), r.Description, r.Created).Scan(&r.ID)
		if pgUnique(err) {
			return ErrRTPEngineExists
		}
		return err
	})
}

func (b *Postgres) DeleteRTPEngine(ctx context.Context, id int64, set int, socket string) (RTPEngine, error) {
	var r RTPEngine
	err := b.writeVersioned(ctx, "rtpengine", func(tx pgx.Tx) error {
		var row pgx.Row
		if id != 0 {
			row = tx.QueryRow(ctx, `DELETE FROM rtpengine WHERE id = $1 RETURNING `+rtpengineCols, id)
		} else {
			row = tx.QueryRow(ctx, `DELETE FROM rtpengine WHERE set_id = $1 AND socket = $2 RETURNING `+rtpengineCols, set, socket)
		}
		err := scanRTPEngine(row, &r)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoRTPEngine
		}
		return err
	})
	return r, err
}

func (b *Postgres) ListRTPEngines(ctx context.Context) ([]RTPEngine, error) {
	return list(b, ctx, scanRTPEngine, listRTPEngines)
}
