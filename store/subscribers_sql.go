package store

import (
	"context"
	"database/sql"
	"errors"
)

// Domains, subscribers, the location table's reads and the change log on
// every backend (tables.go). GetSubscriber, the lookup behind auth's cache
// misses, is SQLite's own too (its statement is prepared at open);
// ApplyBindings is each backend's (sqlite.go, mysql.go, postgres.go).

func scanDomain(r rowScanner, d *Domain) error { return r.Scan(&d.Domain, &d.Created) }

func (t tables) AddDomain(ctx context.Context, domain string, created int64) error {
	return t.tb.loggedConn(ctx, ChangeDomain, "", domain, func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO domains (domain, created) VALUES (?, ?)`, domain, created)
		if c.unique(err) {
			return ErrDomainExists
		}
		return err
	})
}

func (t tables) DeleteDomain(ctx context.Context, domain string) error {
	return t.tb.loggedConn(ctx, ChangeDomain, "", domain, func(c conn) error {
		var n int
		if err := c.queryRow(ctx, `SELECT COUNT(*) FROM subscribers WHERE domain = ?`, domain).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrDomainInUse
		}
		err := changeOne(ctx, c, ErrUnknownDomain, `DELETE FROM domains WHERE domain = ?`, domain)
		if c.foreignKey(err) {
			// A subscriber added by another node since the count.
			return ErrDomainInUse
		}
		return err
	})
}

func (t tables) ListDomains(ctx context.Context) ([]Domain, error) {
	return listRows(ctx, t.tb, scanDomain, `SELECT domain, created FROM domains ORDER BY domain`)
}

func (t tables) DomainExists(ctx context.Context, domain string) (bool, error) {
	var n int
	err := t.tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		return c.queryRow(ctx, `SELECT COUNT(*) FROM domains WHERE domain = ?`, domain).Scan(&n)
	})
	return n > 0, err
}

const subscriberCols = `username, domain, password, ha1, ha1_sha256, email, created`

func scanSubscriber(r rowScanner, s *Subscriber) error {
	return r.Scan(&s.Username, &s.Domain, &s.Password, &s.HA1, &s.HA1SHA256, &s.Email, &s.Created)
}

func (t tables) AddSubscriber(ctx context.Context, s *Subscriber) error {
	return t.tb.loggedConn(ctx, ChangeSubscriber, s.Username, s.Domain, func(c conn) error {
		_, err := c.exec(ctx, `INSERT INTO subscribers (`+subscriberCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			s.Username, s.Domain, s.Password, s.HA1, s.HA1SHA256, s.Email, s.Created)
		switch {
		case c.unique(err):
			return ErrSubscriberExists
		case c.foreignKey(err):
			return ErrUnknownDomain
		}
		return err
	})
}

func (t tables) SetCredentials(ctx context.Context, user, domain, password, ha1, ha1SHA256 string) error {
	return t.tb.loggedConn(ctx, ChangeSubscriber, user, domain, func(c conn) error {
		return changeOne(ctx, c, ErrNoSubscriber, `UPDATE subscribers SET password = ?, ha1 = ?, ha1_sha256 = ?
			WHERE username = ? AND domain = ?`, password, ha1, ha1SHA256, user, domain)
	})
}

func (t tables) DeleteSubscriber(ctx context.Context, user, domain string) error {
	return t.tb.loggedConn(ctx, ChangeSubscriber, user, domain, func(c conn) error {
		return changeOne(ctx, c, ErrNoSubscriber, `DELETE FROM subscribers WHERE username = ? AND domain = ?`, user, domain)
	})
}

// getSubscriberQuery is GetSubscriber's statement.
const getSubscriberQuery = `SELECT password, ha1, ha1_sha256, email, created FROM subscribers WHERE username = ? AND domain = ?`

// scanCredentials reads getSubscriberQuery's row into s, named user and
// domain; ErrNoSubscriber when there is none.
func scanCredentials(r rowScanner, user, domain string, s *Subscriber) error {
	err := r.Scan(&s.Password, &s.HA1, &s.HA1SHA256, &s.Email, &s.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoSubscriber
	}
	if err != nil {
		return err
	}
	s.Username, s.Domain = user, domain
	return nil
}

func (t tables) GetSubscriber(ctx context.Context, user, domain string, s *Subscriber) error {
	return t.tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		return scanCredentials(c.queryRow(ctx, getSubscriberQuery, user, domain), user, domain, s)
	})
}

func (t tables) ListSubscribers(ctx context.Context, domain string) ([]Subscriber, error) {
	if domain == "" {
		return listRows(ctx, t.tb, scanSubscriber, `SELECT `+subscriberCols+` FROM subscribers ORDER BY domain, username`)
	}
	return listRows(ctx, t.tb, scanSubscriber, `SELECT `+subscriberCols+` FROM subscribers WHERE domain = ? ORDER BY username`, domain)
}

const bindingCols = `aor, contact, received, path, q, expires, call_id, cseq, user_agent, instance, reg_id, socket, flags, last_modified`

// bindingUpsertTail makes an INSERT of location rows an upsert (SQLite
// and PostgreSQL).
const bindingUpsertTail = `
	ON CONFLICT (aor, binding_key) DO UPDATE SET
		contact = excluded.contact, received = excluded.received, path = excluded.path,
		q = excluded.q, expires = excluded.expires, call_id = excluded.call_id,
		cseq = excluded.cseq, user_agent = excluded.user_agent, instance = excluded.instance,
		reg_id = excluded.reg_id, socket = excluded.socket, flags = excluded.flags,
		last_modified = excluded.last_modified`

// bindingDest is where bindingCols are scanned into x and, for the
// integer columns, n (bindingInts.set checks them into x): made once for
// a load of every binding, it is not allocated again per row.
func bindingDest(x *Binding, n *bindingInts) []any {
	return []any{&x.AOR, &x.Contact, &x.Received, &x.Path, &n.q, &n.expires, &x.CallID, &n.cseq,
		&x.UserAgent, &x.Instance, &n.regID, &x.Socket, &n.flags, &n.lastModified}
}

// LoadBindings reads the live bindings; it is bounded by ctx only, not by
// Options.Timeout: a million bindings take longer than one operation. A
// row whose integers do not fit the binding's fields is returned with
// badRow set (Store.LoadBindings reports it), not as an error that would
// stop the load, and the server's start, for every other row.
func (t tables) LoadBindings(ctx context.Context, now int64) ([]Binding, error) {
	var out []Binding
	err := t.tb.streamConn(ctx, func(c conn) error {
		var x Binding
		var n bindingInts
		dest := bindingDest(&x, &n)
		return c.query(ctx, `SELECT `+bindingCols+` FROM location WHERE expires > ? ORDER BY aor`, []any{now}, func(r rowScanner) error {
			if err := r.Scan(dest...); err != nil {
				return err
			}
			x.badRow = n.set(&x)
			out = append(out, x)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (t tables) DeleteExpiredBindings(ctx context.Context, now int64) (int64, error) {
	return execPool(ctx, t.tb, `DELETE FROM location WHERE expires <= ?`, now)
}

func scanChange(r rowScanner, c *Change) error {
	var seq int64
	var kind int
	if err := r.Scan(&seq, &kind, &c.Username, &c.Domain); err != nil {
		return err
	}
	c.Seq, c.Kind = uint64(seq), ChangeKind(kind)
	return nil
}

// Changes returns the change log's entries after since, at most limit,
// and the number to pass next time. The numbers are contiguous (SQLite's
// AUTOINCREMENT does not consume one for a rolled back insert, the
// servers' change_log_seq is taken under a row lock held to the commit:
// see their logChange), so a gap right after since can only mean the
// entries were pruned. No transaction is needed: the log is append-only
// and pruning removes only the oldest entries.
func (t tables) Changes(ctx context.Context, since uint64, limit int) ([]Change, uint64, error) {
	if limit > 0 {
		out, err := listRows(ctx, t.tb, scanChange, `SELECT seq, kind, username, domain FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?`,
			int64(since), limit)
		if err != nil {
			return nil, 0, err
		}
		if len(out) > 0 {
			latest := out[len(out)-1].Seq
			if out[0].Seq != since+1 {
				return []Change{{Seq: latest, Kind: ChangeAll}}, latest, nil
			}
			return out, latest, nil
		}
	}
	var last int64
	err := t.tb.poolConn(ctx, func(ctx context.Context, c conn) error {
		return c.queryRow(ctx, t.lastChange).Scan(&last)
	})
	if err != nil {
		return nil, 0, err
	}
	latest := uint64(last)
	if limit > 0 {
		if since > latest {
			// The database was replaced or restored from a backup.
			return []Change{{Seq: latest, Kind: ChangeAll}}, latest, nil
		}
		// Pruning always keeps the newest entries, so latest > since here
		// means a write committed after the query above: report it next
		// time rather than skipping it.
		return nil, since, nil
	}
	return nil, latest, nil
}
