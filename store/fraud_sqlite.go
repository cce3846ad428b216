package store

import (
	"context"
	"database/sql"
	"errors"

	sqlite3 "modernc.org/sqlite/lib"
)

const fraudCols = `profile, prefix, start_hour, end_hour, days,
	cpm_warning, cpm_critical, total_calls_warning, total_calls_critical,
	concurrent_calls_warning, concurrent_calls_critical,
	sequential_calls_warning, sequential_calls_critical, created`

func fraudArgs(r *FraudRule) []any {
	return []any{r.Profile, r.Prefix, r.StartHour, r.EndHour, r.Days,
		r.CPM.Warning, r.CPM.Critical, r.TotalCalls.Warning, r.TotalCalls.Critical,
		r.ConcurrentCalls.Warning, r.ConcurrentCalls.Critical,
		r.SequentialCalls.Warning, r.SequentialCalls.Critical, r.Created}
}

func scanFraudRule(sc interface{ Scan(...any) error }, r *FraudRule) error {
	return sc.Scan(&r.ID, &r.Profile, &r.Prefix, &r.StartHour, &r.EndHour, &r.Days,
		&r.CPM.Warning, &r.CPM.Critical, &r.TotalCalls.Warning, &r.TotalCalls.Critical,
		&r.ConcurrentCalls.Warning, &r.ConcurrentCalls.Critical,
		&r.SequentialCalls.Warning, &r.SequentialCalls.Critical, &r.Created)
}

// writeFraud runs fn in a transaction that bumps the fraud_rules version.
func (b *SQLite) writeFraud(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.inTx(ctx, fn, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE table_versions SET version = version + 1 WHERE name = 'fraud_rules'`)
		return err
	})
}

func fraudConstraint(err error) error {
	if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		return ErrFraudRuleExists
	}
	return err
}

func (b *SQLite) AddFraudRule(ctx context.Context, r *FraudRule) error {
	return b.writeFraud(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO fraud_rules (`+fraudCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, fraudArgs(r)...)
		if err != nil {
			return fraudConstraint(err)
		}
		r.ID, err = res.LastInsertId()
		return err
	})
}

func (b *SQLite) UpdateFraudRule(ctx context.Context, r *FraudRule) error {
	return b.writeFraud(ctx, func(tx *sql.Tx) error {
		// created is kept: the row was created when it was added.
		var created int64
		err := tx.QueryRowContext(ctx, `SELECT created FROM fraud_rules WHERE id = ?`, r.ID).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoFraudRule
		}
		if err != nil {
			return err
		}
		r.Created = created
		_, err = tx.ExecContext(ctx, `UPDATE fraud_rules SET
			profile = ?, prefix = ?, start_hour = ?, end_hour = ?, days = ?,
			cpm_warning = ?, cpm_critical = ?, total_calls_warning = ?, total_calls_critical = ?,
			concurrent_calls_warning = ?, concurrent_calls_critical = ?,
			sequential_calls_warning = ?, sequential_calls_critical = ?, created = ?
			WHERE id = ?`, append(fraudArgs(r), r.ID)...)
		return fraudConstraint(err)
	})
}

func (b *SQLite) DeleteFraudRule(ctx context.Context, id int64) error {
	return b.writeFraud(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, ErrNoFraudRule, `DELETE FROM fraud_rules WHERE id = ?`, id)
	})
}

func (b *SQLite) GetFraudRule(ctx context.Context, id int64, r *FraudRule) error {
	err := scanFraudRule(b.db.QueryRowContext(ctx, `SELECT id, `+fraudCols+` FROM fraud_rules WHERE id = ?`, id), r)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoFraudRule
	}
	return err
}

func (b *SQLite) ListFraudRules(ctx context.Context) ([]FraudRule, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+fraudCols+` FROM fraud_rules ORDER BY profile, prefix, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FraudRule
	for rows.Next() {
		var r FraudRule
		if err := scanFraudRule(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (b *SQLite) TableVersion(ctx context.Context, name string) (int64, error) {
	var v int64
	err := b.db.QueryRowContext(ctx, `SELECT version FROM table_versions WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}
