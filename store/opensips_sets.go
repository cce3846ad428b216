package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// The tables of OpenSIPS's dispatcher and rtpengine modules in the
// OpenSIPS schema mode. An installation has them only if it created them
// (opensips-cli database add dispatcher / rtpengine): without one the
// module reads an empty table and writes are refused, naming it.
//
// Neither table has a unique key, and OpenSIPS writes its rows in forms
// Switchboard keeps canonical ("sip:192.0.2.10" for
// "sip:192.0.2.10:5060"): a destination or socket is found by reading
// its set's rows and comparing their canonical forms. Two nodes adding
// the same destination at the same moment can both succeed; the module
// then uses the first row and logs the second as a duplicate.

// osSetsTable is the error for a write to one of these tables when the
// database has not got it.
func (b *OpenSIPS) osSetsTable(table string) error {
	if b.hasTable(table) {
		return nil
	}
	return errorf(ErrNotInSchema, "store: the OpenSIPS database has no %s table (create it with opensips-cli -x database add %s)", table, table)
}

// osFit is an operator's text for a column of these tables: refused, not
// cut, when longer than the column (OpenSIPS's attrs hold 128 characters,
// its descriptions 64, where Switchboard's take 255 bytes).
func (b *OpenSIPS) osFit(table, column, s string, malformed error) (string, error) {
	if max := b.columns[table][column]; max > 0 && len(s) > max {
		return "", errorf(malformed, "%s %q: longer than the %d characters of OpenSIPS's %s.%s", column, s, max, table, column)
	}
	return s, nil
}

// ---- dispatcher

// OpenSIPS's weight is text: a number, or the address of a FreeSWITCH
// whose load sets the weight (fs://...), which Switchboard does not
// offer; such a row reads with weight 0, which the module refuses at
// load and logs.
const osDispatcherCols = `id, setid, destination, COALESCE(socket, ''), state, probe_mode, weight, priority, COALESCE(attrs, ''), COALESCE(description, '')`

func scanOSDispatcher(r rowScanner, d *DispatcherDest) error {
	var weight string
	if err := r.Scan(&d.ID, &d.SetID, &d.Destination, &d.Socket, &d.State, &d.ProbeMode, &weight, &d.Priority, &d.Attrs, &d.Description); err != nil {
		return err
	}
	d.Weight, _ = strconv.Atoi(strings.TrimSpace(weight))
	return nil
}

// osDispatcherCanon is a stored destination's canonical form, or its text
// when it does not parse (it then matches nothing Switchboard writes).
func osDispatcherCanon(dest string) string {
	if _, canon, err := ParseDispatcherURI(dest); err == nil {
		return canon
	}
	return dest
}

// osFindDispatcher reads the row of set whose destination is canon
// (canonical), for update; sql.ErrNoRows when there is none.
func (b *OpenSIPS) osFindDispatcher(ctx context.Context, tx *sql.Tx, set int, canon string, d *DispatcherDest) error {
	rows, err := tx.QueryContext(ctx, b.q(`SELECT `+osDispatcherCols+` FROM dispatcher WHERE setid = ? ORDER BY id`+osForUpdate), set)
	ds, err := sqlCollect(rows, err, scanOSDispatcher)
	if err != nil {
		return err
	}
	for _, r := range ds {
		if osDispatcherCanon(r.Destination) == canon {
			*d = r
			return nil
		}
	}
	return sql.ErrNoRows
}

// osForUpdate locks the rows a read inside a transaction finds, so that a
// change made from them is not lost to another writer's.
const osForUpdate = ` FOR UPDATE`

func (b *OpenSIPS) AddDispatcherDests(ctx context.Context, ds []DispatcherDest, replace bool) error {
	if err := b.osSetsTable("dispatcher"); err != nil {
		return err
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if replace {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dispatcher`); err != nil {
				return err
			}
		}
		type key struct {
			set  int
			dest string
		}
		have := map[key]int64{}
		rows, err := tx.QueryContext(ctx, `SELECT `+osDispatcherCols+` FROM dispatcher ORDER BY id`+osForUpdate)
		stored, err := sqlCollect(rows, err, scanOSDispatcher)
		if err != nil {
			return err
		}
		for _, r := range stored {
			k := key{r.SetID, osDispatcherCanon(r.Destination)}
			if _, dup := have[k]; !dup {
				have[k] = r.ID
			}
		}
		for i := range ds {
			d := &ds[i]
			k := key{d.SetID, d.Destination}
			if id, dup := have[k]; dup {
				return &dispatcherExistsError{index: i, id: id}
			}
			var text [4]string
			for j, f := range [4]struct{ col, v string }{{"destination", d.Destination}, {"socket", d.Socket}, {"attrs", d.Attrs}, {"description", d.Description}} {
				if text[j], err = b.osFit("dispatcher", f.col, f.v, ErrMalformedDispatcher); err != nil {
					return err
				}
			}
			d.ID, err = b.insertID(ctx, tx, "id", `INSERT INTO dispatcher (setid, destination, socket, state, probe_mode, weight, priority, attrs, description)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.SetID, text[0], nullText(text[1]), d.State, d.ProbeMode, strconv.Itoa(d.Weight), d.Priority,
				nullText(text[2]), nullText(text[3]))
			if err != nil {
				return err
			}
			have[k] = d.ID
		}
		return nil
	})
}

func (b *OpenSIPS) DeleteDispatcherDest(ctx context.Context, id int64, set int, destination string) (DispatcherDest, error) {
	var d DispatcherDest
	if err := b.osSetsTable("dispatcher"); err != nil {
		return d, err
	}
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if id != 0 {
			err = scanOSDispatcher(tx.QueryRowContext(ctx, b.q(`SELECT `+osDispatcherCols+` FROM dispatcher WHERE id = ?`+osForUpdate), id), &d)
		} else {
			err = b.osFindDispatcher(ctx, tx, set, destination, &d)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoDispatcher
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, b.q(`DELETE FROM dispatcher WHERE id = ?`), d.ID)
		return err
	})
	return d, err
}

func (b *OpenSIPS) SetDispatcherState(ctx context.Context, set int, destination string, state int) (DispatcherDest, error) {
	var d DispatcherDest
	if err := b.osSetsTable("dispatcher"); err != nil {
		return d, err
	}
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		err := b.osFindDispatcher(ctx, tx, set, destination, &d)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoDispatcher
		}
		if err != nil {
			return err
		}
		d.State = state
		_, err = tx.ExecContext(ctx, b.q(`UPDATE dispatcher SET state = ? WHERE id = ?`), state, d.ID)
		return err
	})
	return d, err
}

func (b *OpenSIPS) ListDispatcherDests(ctx context.Context) ([]DispatcherDest, error) {
	if !b.hasTable("dispatcher") {
		return nil, nil
	}
	return osList(b, ctx, scanOSDispatcher, `SELECT `+osDispatcherCols+` FROM dispatcher ORDER BY setid, priority DESC, id`)
}

// ---- rtpengine

// OpenSIPS's rtpengine table has one row per set or per group of a set's
// instances: socket holds one or more sockets separated by white space,
// each "udp:IP:port", "udp6:[IPv6]:port" or "unix:path", with "=weight"
// after it for a weight other than 1. It has no disabled state and no
// description. A row reads as one RTPEngine per socket, all with the
// row's id; the module refuses at load (and logs) what it cannot use
// (host names, unix sockets, a weight of 0).

// osRTPEngineRow is a row of OpenSIPS's rtpengine table.
type osRTPEngineRow struct {
	id     int64
	set    int
	socket string
}

func scanOSRTPEngineRow(r rowScanner, row *osRTPEngineRow) error {
	return r.Scan(&row.id, &row.set, &row.socket)
}

// osRTPEngineEntry reads one socket of a row: its URL in Switchboard's
// form ("udp6:" is "udp:", the address in brackets already) and weight
// (1 when not given; as OpenSIPS's strtoul, 0 for text that is not a
// number).
func osRTPEngineEntry(s string) (socket string, weight int) {
	socket, w, ok := strings.Cut(s, "=")
	weight = 1
	if ok {
		n, err := strconv.ParseUint(w, 10, 31)
		weight = int(n)
		if err != nil {
			weight = 0
		}
	}
	if len(socket) > 5 && strings.EqualFold(socket[:5], "udp6:") {
		socket = "udp:" + socket[5:]
	}
	return socket, weight
}

// instances are the RTPEngines of a row, one per socket.
func (row *osRTPEngineRow) instances() []RTPEngine {
	var out []RTPEngine
	for _, s := range strings.Fields(row.socket) {
		socket, weight := osRTPEngineEntry(s)
		out = append(out, RTPEngine{ID: row.id, SetID: row.set, Socket: socket, Weight: weight})
	}
	return out
}

// osRTPEngineCanon is a socket's canonical form, or its text when it does
// not parse.
func osRTPEngineCanon(socket string) string {
	if _, canon, err := ParseRTPEngineSocket(socket); err == nil {
		return canon
	}
	return socket
}

func (b *OpenSIPS) osRTPEngineRows(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]osRTPEngineRow, error) {
	rows, err := tx.QueryContext(ctx, b.q(query+osForUpdate), args...)
	return sqlCollect(rows, err, scanOSRTPEngineRow)
}

func (b *OpenSIPS) AddRTPEngine(ctx context.Context, r *RTPEngine) error {
	if err := b.osSetsTable("rtpengine"); err != nil {
		return err
	}
	if r.Disabled {
		return rtpengineErr("disabled", "OpenSIPS's rtpengine table has no disabled state: add the instance enabled, then disable it in the running servers with rtpengine.disable")
	}
	if r.Description != "" {
		return rtpengineErr("description", "OpenSIPS's rtpengine table has no description column")
	}
	entry := r.Socket
	if r.Weight != 1 {
		entry += "=" + strconv.Itoa(r.Weight)
	}
	return b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := b.osRTPEngineRows(ctx, tx, `SELECT id, set_id, socket FROM rtpengine WHERE set_id = ? ORDER BY id`, r.SetID)
		if err != nil {
			return err
		}
		for _, row := range rows {
			for _, in := range row.instances() {
				if osRTPEngineCanon(in.Socket) == r.Socket {
					return ErrRTPEngineExists
				}
			}
		}
		r.ID, err = b.insertID(ctx, tx, "id", `INSERT INTO rtpengine (socket, set_id) VALUES (?, ?)`, entry, r.SetID)
		return err
	})
}

// DeleteRTPEngine removes a row by id, which must hold one socket (the
// others of a row share its id), or one socket of a set: its row loses
// that socket, and is deleted when it held no other.
func (b *OpenSIPS) DeleteRTPEngine(ctx context.Context, id int64, set int, socket string) (RTPEngine, error) {
	var out RTPEngine
	if err := b.osSetsTable("rtpengine"); err != nil {
		return out, err
	}
	err := b.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var rows []osRTPEngineRow
		var err error
		if id != 0 {
			rows, err = b.osRTPEngineRows(ctx, tx, `SELECT id, set_id, socket FROM rtpengine WHERE id = ?`, id)
		} else {
			rows, err = b.osRTPEngineRows(ctx, tx, `SELECT id, set_id, socket FROM rtpengine WHERE set_id = ? ORDER BY id`, set)
		}
		if err != nil {
			return err
		}
		for _, row := range rows {
			entries := strings.Fields(row.socket)
			ins := row.instances()
			if id != 0 && len(ins) == 0 { // a row without a socket
				out = RTPEngine{ID: row.id, SetID: row.set}
				_, err = tx.ExecContext(ctx, b.q(`DELETE FROM rtpengine WHERE id = ?`), row.id)
				return err
			}
			for i, in := range ins {
				if id == 0 && osRTPEngineCanon(in.Socket) != socket {
					continue
				}
				if id != 0 && len(ins) > 1 {
					return rtpengineErr("id", "%d: that row of OpenSIPS's rtpengine table holds %d sockets (%s): delete them one at a time by set and socket",
						id, len(ins), strings.Join(entries, " "))
				}
				out = in
				if len(entries) == 1 {
					_, err = tx.ExecContext(ctx, b.q(`DELETE FROM rtpengine WHERE id = ?`), row.id)
					return err
				}
				rest := append(entries[:i:i], entries[i+1:]...)
				_, err = tx.ExecContext(ctx, b.q(`UPDATE rtpengine SET socket = ? WHERE id = ?`), strings.Join(rest, " "), row.id)
				return err
			}
		}
		return ErrNoRTPEngine
	})
	return out, err
}

func (b *OpenSIPS) ListRTPEngines(ctx context.Context) ([]RTPEngine, error) {
	if !b.hasTable("rtpengine") {
		return nil, nil
	}
	rows, err := osList(b, ctx, scanOSRTPEngineRow, `SELECT id, set_id, socket FROM rtpengine ORDER BY set_id, id`)
	if err != nil {
		return nil, err
	}
	var out []RTPEngine
	for i := range rows {
		out = append(out, rows[i].instances()...)
	}
	return out, nil
}
