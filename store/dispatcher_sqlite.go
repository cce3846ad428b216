package store

import (
	"context"
	"database/sql"
	"errors"

	sqlite3 "modernc.org/sqlite/lib"
)

const dispatcherCols = `id, setid, destination, socket, state, weight, priority, attrs, probe_mode, description, created`

func scanDispatcherDest(r interface{ Scan(...any) error }, d *DispatcherDest) error {
	return r.Scan(&d.ID, &d.SetID, &d.Destination, &d.Socket, &d.State, &d.Weight, &d.Priority,
		&d.Attrs, &d.ProbeMode, &d.Description, &d.Created)
}

// writeDispatcher runs fn in a transaction that bumps the dispatcher table
// version.
func (b *SQLite) writeDispatcher(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = 'dispatcher'`)
		return err
	})
}

func (b *SQLite) AddDispatcherDests(ctx context.Context, ds []DispatcherDest, replace bool) error {
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
			if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
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

func (b *SQLite) DeleteDispatcherDest(ctx context.Context, id int64, set int, destination string) (DispatcherDest, error) {
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

func (b *SQLite) SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error) {
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

func (b *SQLite) ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error) {
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
