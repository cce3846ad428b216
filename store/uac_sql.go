package store

import "context"

// The uac_credentials and uac_registrations tables (modules/uac) on every
// backend (tables.go).

const uacCredCols = `realm, gateway, username, password, ha1, ha1_sha256, created`

func uacCredArgs(c *UACCredential) []any {
	return []any{c.Realm, c.Gateway, c.Username, c.Password, c.HA1, c.HA1SHA256, c.Created}
}

// scanUACCredential reads id, then uacCredCols.
func scanUACCredential(sc rowScanner, c *UACCredential) error {
	return sc.Scan(&c.ID, &c.Realm, &c.Gateway, &c.Username, &c.Password, &c.HA1, &c.HA1SHA256, &c.Created)
}

const uacRegCols = `aor, registrar, proxy, username, password, expires, contact, created`

func uacRegArgs(r *UACRegistration) []any {
	return []any{r.AOR, r.Registrar, r.Proxy, r.Username, r.Password, r.Expires, r.Contact, r.Created}
}

// scanUACRegistration reads id, then uacRegCols.
func scanUACRegistration(sc rowScanner, r *UACRegistration) error {
	return sc.Scan(&r.ID, &r.AOR, &r.Registrar, &r.Proxy, &r.Username, &r.Password, &r.Expires, &r.Contact, &r.Created)
}

// addUAC inserts one row of a uac table (a duplicate: ErrUACExists) and
// sets its id.
func (t tables) addUAC(ctx context.Context, table, cols string, args []any, id *int64) error {
	return t.versioned(ctx, table, func(c conn) error {
		i, err := c.insertRows(ctx, &insertSpec{table: table, cols: cols, n: 1,
			args: func(int) []any { return args }, key: "id", id: func(int) *int64 { return id }})
		if err == nil && i >= 0 {
			return ErrUACExists
		}
		return err
	})
}

// deleteUAC removes the row id of a uac table (ErrNoUAC), read with scan.
func (t tables) deleteUAC(ctx context.Context, table, cols string, id int64, scan func(rowScanner) error) error {
	return t.versioned(ctx, table, func(c conn) error {
		return deleteOne(ctx, c, rowsOf{table, `id = ?`, []any{id}}, `id, `+cols, ErrNoUAC, scan)
	})
}

func (t tables) AddUACCredential(ctx context.Context, c *UACCredential) error {
	return t.addUAC(ctx, "uac_credentials", uacCredCols, uacCredArgs(c), &c.ID)
}

func (t tables) DeleteUACCredential(ctx context.Context, id int64) (UACCredential, error) {
	var c UACCredential
	err := t.deleteUAC(ctx, "uac_credentials", uacCredCols, id, func(r rowScanner) error { return scanUACCredential(r, &c) })
	return c, err
}

func (t tables) ListUACCredentials(ctx context.Context) ([]UACCredential, error) {
	return listRows(ctx, t.tb, scanUACCredential, `SELECT id, `+uacCredCols+` FROM uac_credentials ORDER BY realm, gateway, id`)
}

func (t tables) AddUACRegistration(ctx context.Context, r *UACRegistration) error {
	return t.addUAC(ctx, "uac_registrations", uacRegCols, uacRegArgs(r), &r.ID)
}

func (t tables) DeleteUACRegistration(ctx context.Context, id int64) (UACRegistration, error) {
	var r UACRegistration
	err := t.deleteUAC(ctx, "uac_registrations", uacRegCols, id, func(sc rowScanner) error { return scanUACRegistration(sc, &r) })
	return r, err
}

func (t tables) ListUACRegistrations(ctx context.Context) ([]UACRegistration, error) {
	return listRows(ctx, t.tb, scanUACRegistration, `SELECT id, `+uacRegCols+` FROM uac_registrations ORDER BY id`)
}
