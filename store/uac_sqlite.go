package store

import (
	"context"
	"database/sql"
	"errors"
)

func uacConstraint(err error) error {
	if isUnique(err) {
		return ErrUACExists
	}
	return err
}

const uacCredCols = `realm, gateway, username, password, ha1, ha1_sha256, created`

func scanUACCredential(sc interface{ Scan(...any) error }, c *UACCredential) error {
	return sc.Scan(&c.ID, &c.Realm, &c.Gateway, &c.Username, &c.Password, &c.HA1, &c.HA1SHA256, &c.Created)
}

func (b *SQLite) AddUACCredential(ctx context.Context, c *UACCredential) error {
	return b.writeVersioned(ctx, "uac_credentials", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO uac_credentials (`+uacCredCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			c.Realm, c.Gateway, c.Username, c.Password, c.HA1, c.HA1SHA256, c.Created)
		if err != nil {
			return uacConstraint(err)
		}
		c.ID, err = res.LastInsertId()
		return err
	})
}

func (b *SQLite) DeleteUACCredential(ctx context.Context, id int64) (UACCredential, error) {
	var c UACCredential
	err := b.writeVersioned(ctx, "uac_credentials", func(tx *sql.Tx) error {
		err := scanUACCredential(tx.QueryRowContext(ctx, `SELECT id, `+uacCredCols+` FROM uac_credentials WHERE id = ?`, id), &c)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoUAC
		}
		if err != nil {
			return err
		}
		return execOne(ctx, tx, ErrNoUAC, `DELETE FROM uac_credentials WHERE id = ?`, id)
	})
	return c, err
}

func (b *SQLite) ListUACCredentials(ctx context.Context) ([]UACCredential, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+uacCredCols+` FROM uac_credentials ORDER BY realm, gateway, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UACCredential
	for rows.Next() {
		var c UACCredential
		if err := scanUACCredential(rows, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

const uacRegCols = `aor, registrar, proxy, username, password, expires, contact, created`

func scanUACRegistration(sc interface{ Scan(...any) error }, r *UACRegistration) error {
	return sc.Scan(&r.ID, &r.AOR, &r.Registrar, &r.Proxy, &r.Username, &r.Password, &r.Expires, &r.Contact, &r.Created)
}

func (b *SQLite) AddUACRegistration(ctx context.Context, r *UACRegistration) error {
	return b.writeVersioned(ctx, "uac_registrations", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO uac_registrations (`+uacRegCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.AOR, r.Registrar, r.Proxy, r.Username, r.Password, r.Expires, r.Contact, r.Created)
		if err != nil {
			return uacConstraint(err)
		}
		r.ID, err = res.LastInsertId()
		return err
	})
}

func (b *SQLite) DeleteUACRegistration(ctx context.Context, id int64) (UACRegistration, error) {
	var r UACRegistration
	err := b.writeVersioned(ctx, "uac_registrations", func(tx *sql.Tx) error {
		err := scanUACRegistration(tx.QueryRowContext(ctx, `SELECT id, `+uacRegCols+` FROM uac_registrations WHERE id = ?`, id), &r)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoUAC
		}
		if err != nil {
			return err
		}
		return execOne(ctx, tx, ErrNoUAC, `DELETE FROM uac_registrations WHERE id = ?`, id)
	})
	return r, err
}

func (b *SQLite) ListUACRegistrations(ctx context.Context) ([]UACRegistration, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id, `+uacRegCols+` FROM uac_registrations ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UACRegistration
	for rows.Next() {
		var r UACRegistration
		if err := scanUACRegistration(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
