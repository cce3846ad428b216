package store

import "context"

// The rtpengine table (modules/rtpengine) on every backend (tables.go);
// every write bumps the table's version in its transaction.

const rtpengineCols = `id, set_id, socket, weight, disabled, description, created`

func scanRTPEngine(r rowScanner, e *RTPEngine) error {
	var disabled int64
	if err := r.Scan(&e.ID, &e.SetID, &e.Socket, &e.Weight, &disabled, &e.Description, &e.Created); err != nil {
		return err
	}
	e.Disabled = disabled != 0
	return nil
}

func (t tables) AddRTPEngine(ctx context.Context, r *RTPEngine) error {
	return t.versioned(ctx, "rtpengine", func(c conn) error {
		i, err := c.insertRows(ctx, &insertSpec{table: "rtpengine", cols: `set_id, socket, weight, disabled, description, created`, n: 1,
			args: func(int) []any {
				return []any{r.SetID, r.Socket, r.Weight, rtpengineDisabled(r.Disabled), r.Description, r.Created}
			},
			key: "id", id: func(int) *int64 { return &r.ID }})
		if err == nil && i >= 0 {
			return ErrRTPEngineExists
		}
		return err
	})
}

func (t tables) DeleteRTPEngine(ctx context.Context, id int64, set int, socket string) (RTPEngine, error) {
	var r RTPEngine
	err := t.versioned(ctx, "rtpengine", func(c conn) error {
		rows := rowsOf{"rtpengine", `id = ?`, []any{id}}
		if id == 0 {
			rows = rowsOf{"rtpengine", `set_id = ? AND socket = ?`, []any{set, socket}}
		}
		return deleteOne(ctx, c, rows, rtpengineCols, ErrNoRTPEngine, func(sc rowScanner) error { return scanRTPEngine(sc, &r) })
	})
	return r, err
}

func (t tables) ListRTPEngines(ctx context.Context) ([]RTPEngine, error) {
	return listRows(ctx, t.tb, scanRTPEngine, `SELECT `+rtpengineCols+` FROM rtpengine ORDER BY set_id, id`)
}
