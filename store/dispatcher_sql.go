package store

import (
	"context"
	"database/sql"
	"errors"
)

// The dispatcher table (modules/dispatcher) on every backend (tables.go).

const dispatcherCols = `id, setid, destination, socket, state, weight, priority, attrs, probe_mode, description, created`

func scanDispatcherDest(r rowScanner, d *DispatcherDest) error {
	return r.Scan(&d.ID, &d.SetID, &d.Destination, &d.Socket, &d.State, &d.Weight, &d.Priority,
		&d.Attrs, &d.ProbeMode, &d.Description, &d.Created)
}

func (t tables) AddDispatcherDests(ctx context.Context, ds []DispatcherDest, replace bool) error {
	return t.versioned(ctx, "dispatcher", func(c conn) error {
		if replace {
			if _, err := c.exec(ctx, `DELETE FROM dispatcher`); err != nil {
				return err
			}
		}
		i, err := c.insertRows(ctx, &insertSpec{
			table: "dispatcher", cols: `setid, destination, socket, state, weight, priority, attrs, probe_mode, description, created`, n: len(ds),
			args: func(i int) []any {
				d := &ds[i]
				return []any{d.SetID, d.Destination, d.Socket, d.State, d.Weight, d.Priority, d.Attrs, d.ProbeMode, d.Description, d.Created}
			},
			key: "id", id: func(i int) *int64 { return &ds[i].ID },
		})
		if err != nil || i < 0 {
			return err
		}
		var id int64
		c.queryRow(ctx, `SELECT id FROM dispatcher WHERE setid = ? AND destination = ?`, ds[i].SetID, ds[i].Destination).Scan(&id)
		return &dispatcherExistsError{index: i, id: id}
	})
}

func (t tables) DeleteDispatcherDest(ctx context.Context, id int64, set int, destination string) (DispatcherDest, error) {
	var d DispatcherDest
	err := t.versioned(ctx, "dispatcher", func(c conn) error {
		r := rowsOf{"dispatcher", `id = ?`, []any{id}}
		if id == 0 {
			r = rowsOf{"dispatcher", `setid = ? AND destination = ?`, []any{set, destination}}
		}
		return deleteOne(ctx, c, r, dispatcherCols, ErrNoDispatcher, func(r rowScanner) error { return scanDispatcherDest(r, &d) })
	})
	return d, err
}

func (t tables) SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error) {
	var d DispatcherDest
	err := t.versioned(ctx, "dispatcher", func(c conn) error {
		err := c.updateRow(ctx, rowsOf{"dispatcher", `setid = ? AND destination = ?`, []any{set, destination}},
			`state = ?`, []any{state}, dispatcherCols, func(r rowScanner) error { return scanDispatcherDest(r, &d) })
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoDispatcher
		}
		return err
	})
	return d, err
}

func (t tables) ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error) {
	return listRows(ctx, t.tb, scanDispatcherDest, `SELECT `+dispatcherCols+` FROM dispatcher ORDER BY setid, priority DESC, id`)
}
