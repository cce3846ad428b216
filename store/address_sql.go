package store

import (
	"cmp"
	"context"
	"slices"
)

// The address table (modules/permissions) on every backend (tables.go).

const addressCols = `id, grp, ip, mask, port, proto, pattern, context_info, created`

func scanAddress(r rowScanner, a *Address) error {
	return r.Scan(&a.ID, &a.Group, &a.IP, &a.Mask, &a.Port, &a.Proto, &a.Pattern, &a.ContextInfo, &a.Created)
}

func (t tables) AddAddresses(ctx context.Context, as []Address) error {
	if len(as) == 0 {
		return nil
	}
	return t.tb.loggedConn(ctx, ChangeAddress, "", "", func(c conn) error {
		i, err := c.insertRows(ctx, &insertSpec{
			table: "address", cols: `grp, ip, mask, port, proto, pattern, context_info, created`, n: len(as),
			args: func(i int) []any {
				a := &as[i]
				return []any{a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern, a.ContextInfo, a.Created}
			},
			key: "id", id: func(i int) *int64 { return &as[i].ID },
		})
		if err != nil || i < 0 {
			return err
		}
		a := &as[i]
		var id int64
		c.queryRow(ctx, `SELECT id FROM address WHERE grp = ? AND ip = ? AND mask = ? AND port = ? AND proto = ? AND pattern = ?`,
			a.Group, a.IP, a.Mask, a.Port, a.Proto, a.Pattern).Scan(&id)
		return &addressExistsError{index: i, id: id}
	})
}

func (t tables) DeleteAddress(ctx context.Context, id int64) (Address, error) {
	var a Address
	err := t.tb.loggedConn(ctx, ChangeAddress, "", "", func(c conn) error {
		return deleteOne(ctx, c, rowsOf{"address", `id = ?`, []any{id}}, addressCols, ErrNoAddress,
			func(r rowScanner) error { return scanAddress(r, &a) })
	})
	return a, err
}

func (t tables) DeleteAddressesOf(ctx context.Context, group int, ip string, mask int) ([]Address, error) {
	var out []Address
	err := t.tb.loggedConn(ctx, ChangeAddress, "", "", func(c conn) error {
		out = nil
		n, err := c.deleteRows(ctx, rowsOf{"address", `grp = ? AND ip = ? AND mask = ?`, []any{group, ip, mask}}, addressCols,
			func(r rowScanner) error {
				var a Address
				err := scanAddress(r, &a)
				out = append(out, a)
				return err
			})
		if err == nil && n == 0 {
			return ErrNoAddress // nothing changed: nothing logged
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y Address) int { return cmp.Compare(x.ID, y.ID) })
	return out, nil
}

func (t tables) ListAddresses(ctx context.Context, group int) ([]Address, error) {
	if group == 0 {
		return listRows(ctx, t.tb, scanAddress, `SELECT `+addressCols+` FROM address ORDER BY grp, id`)
	}
	return listRows(ctx, t.tb, scanAddress, `SELECT `+addressCols+` FROM address WHERE grp = ? ORDER BY id`, group)
}
