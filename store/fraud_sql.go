package store

import (
	"context"
	"database/sql"
	"errors"
)

// The fraud_rules table (modules/fraud) on every backend (tables.go).

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

// scanFraudRule reads id, then fraudCols.
func scanFraudRule(sc rowScanner, r *FraudRule) error {
	return sc.Scan(&r.ID, &r.Profile, &r.Prefix, &r.StartHour, &r.EndHour, &r.Days,
		&r.CPM.Warning, &r.CPM.Critical, &r.TotalCalls.Warning, &r.TotalCalls.Critical,
		&r.ConcurrentCalls.Warning, &r.ConcurrentCalls.Critical,
		&r.SequentialCalls.Warning, &r.SequentialCalls.Critical, &r.Created)
}

func (t tables) AddFraudRule(ctx context.Context, r *FraudRule) error {
	return t.versioned(ctx, "fraud_rules", func(c conn) error {
		i, err := c.insertRows(ctx, &insertSpec{table: "fraud_rules", cols: fraudCols, n: 1,
			args: func(int) []any { return fraudArgs(r) }, key: "id", id: func(int) *int64 { return &r.ID }})
		if err == nil && i >= 0 {
			return ErrFraudRuleExists
		}
		return err
	})
}

func (t tables) UpdateFraudRule(ctx context.Context, r *FraudRule) error {
	return t.versioned(ctx, "fraud_rules", func(c conn) error {
		// created is kept: the row was created when it was added.
		var created int64
		err := c.queryRow(ctx, `SELECT created FROM fraud_rules WHERE id = ?`, r.ID).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoFraudRule
		}
		if err != nil {
			return err
		}
		r.Created = created
		_, err = c.exec(ctx, `UPDATE fraud_rules SET
			profile = ?, prefix = ?, start_hour = ?, end_hour = ?, days = ?,
			cpm_warning = ?, cpm_critical = ?, total_calls_warning = ?, total_calls_critical = ?,
			concurrent_calls_warning = ?, concurrent_calls_critical = ?,
			sequential_calls_warning = ?, sequential_calls_critical = ?, created = ?
			WHERE id = ?`, append(fraudArgs(r), r.ID)...)
		if c.unique(err) {
			return ErrFraudRuleExists
		}
		return err
	})
}

func (t tables) DeleteFraudRule(ctx context.Context, id int64) error {
	return t.versioned(ctx, "fraud_rules", func(c conn) error {
		return changeOne(ctx, c, ErrNoFraudRule, `DELETE FROM fraud_rules WHERE id = ?`, id)
	})
}

func (t tables) GetFraudRule(ctx context.Context, id int64, r *FraudRule) error {
	err := getRow(ctx, t.tb, scanFraudRule, r, `SELECT id, `+fraudCols+` FROM fraud_rules WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoFraudRule
	}
	return err
}

func (t tables) ListFraudRules(ctx context.Context) ([]FraudRule, error) {
	return listRows(ctx, t.tb, scanFraudRule, `SELECT id, `+fraudCols+` FROM fraud_rules ORDER BY profile, prefix, id`)
}
