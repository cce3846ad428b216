package store

import (
	"context"
	"database/sql"
	"errors"

	sqlite3 "modernc.org/sqlite/lib"
)

const addressCols = `id, grp, ip, mask, port, proto, pattern, context_info, created`

func (b *SQLite) AddAddresses(ctx context.Context, as []Address) error {
	if len(as) == 0 {
		return nil
	}
	return b.write(ctx, ChangeAddress, "", "", func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO address
			(grp, ip, mask, port, proto, pattern, context_info, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range as {
			a := &as[i]
			res, err := ins.ExecContext(ctx, a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern, a.ContextInfo, a.Created)
			if c := sqliteCode(err); c == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
				var id int64
				tx.QueryRowContext(ctx, `SELECT id FROM address WHERE grp = ? AND ip = ? AND mask = ? AND port = ? AND proto = ? AND pattern = ?`,
					a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern).Scan(&id)
				return &addressExistsError{index: i, id: id}
			}
			if err != nil {
				return err
			}
			if a.ID, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *SQLite) DeleteAddress(ctx context.Context, id int64) (Address, error) {
	var a Address
	err := b.write(ctx, ChangeAddress, "", "", func(tx *sql.Tx) error {
		err := scanAddress(tx.QueryRowContext(ctx, `SELECT `+addressCols+` FROM address WHERE id = ?`, id), &a)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoAddress
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM address WHERE id = ?`, id)
		return err
	})
	return a, err
}

func (b *SQLite) DeleteAddressesOf(ctx context.Context, group int, ip string, mask int) ([]Address, error) {
	var out []Address
	err := b.write(ctx, ChangeAddress, "", "", func(tx *sql.Tx) error {
		var err error
		out, err = queryAddresses(ctx, tx, `SELECT `+addressCols+` FROM address WHERE grp = ? AND ip = ? AND mask = ? ORDER BY id`, group, ip, mask)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			return ErrNoAddress // nothing changed: nothing logged
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM address WHERE grp = ? AND ip = ? AND mask = ?`, group, ip, mask)
		return err
	})
	return out, err
}

func (b *SQLite) ListAddresses(ctx context.Context, group int) ([]Address, error) {
	if group == 0 {
		return queryAddresses(ctx, b.db, `SELECT `+addressCols+` FROM address ORDER BY grp, id`)
	}
	return queryAddresses(ctx, b.db, `SELECT `+addressCols+` FROM address WHERE grp = ? ORDER BY id`, group)
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func queryAddresses(ctx context.Context, db querier, q string, args ...any) ([]Address, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Address
	for rows.Next() {
		var a Address
		if err := scanAddress(rows, &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func scanAddress(r interface{ Scan(...any) error }, a *Address) error {
	return r.Scan(&a.ID, &a.Group, &a.IP, &a.Mask, &a.Port, &a.Proto, &a.Pattern, &a.ContextInfo, &a.Created)
}
