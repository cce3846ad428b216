package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// The OpenSIPS schema mode (Options.Schema SchemaOpenSIPS): the store
// reads and writes the tables an OpenSIPS 3.x installation already has
// (subscriber, domain, location, address, dialplan, dr_gateways,
// dr_carriers, dr_rules, acc, missed_calls, dialog; dispatcher and
// rtpengine when it has them), on PostgreSQL or
// MariaDB/MySQL, so that Switchboard can take over a database that
// OpenSIPS and its tools (opensips-cli, the control panel) provision.
//
// Nothing is migrated: the tables belong to OpenSIPS. Open checks that
// the tables and columns the store uses are there and names the first
// one missing. OpenSIPS has no change log and no table versions, and its
// tools write without telling anyone, so the store creates no table of
// its own either: a table's version is a fingerprint of its content
// computed by the database (row count and a sum of row hashes), which
// moves with any write, whoever made it; Changes compares the
// fingerprints of subscriber, domain and address between polls. A poll
// therefore reads the whole table; see docs/opensips-migration.md for
// what that costs and how to space polls out.

// Schemas accepted in Options.Schema.
const (
	SchemaSwitchboard = "switchboard"
	SchemaOpenSIPS    = "opensips"
)

// ErrNotInSchema: a write to a table the OpenSIPS schema mode does not
// provide (fraud rules, aliases, groups, uac; dispatcher and rtpengine
// when the database has not got them). Those tables
// read as empty, so the modules that use them run with nothing to do.
var ErrNotInSchema = errors.New("not available with storage.schema opensips")

// ErrSchemaMismatch: a table or column the OpenSIPS schema mode needs is
// missing from the database.
var ErrSchemaMismatch = errors.New("database lacks a table or column of the OpenSIPS schema")

// openSIPSColumns are the tables and the columns of each that the store
// uses, as OpenSIPS 3.x creates them (db/schema in its sources; the
// version of each table's definition is given for the reader).
var openSIPSColumns = map[string][]string{
	"subscriber":   {"id", "username", "domain", "password", "ha1", "ha1_sha256"},                                                                                                                   // version 8
	"domain":       {"id", "domain", "last_modified"},                                                                                                                                               // version 4
	"location":     {"contact_id", "username", "domain", "contact", "received", "path", "expires", "q", "callid", "cseq", "last_modified", "flags", "user_agent", "socket", "sip_instance", "attr"}, // version 1013
	"address":      {"id", "grp", "ip", "mask", "port", "proto", "pattern", "context_info"},                                                                                                         // version 5
	"dialplan":     {"id", "dpid", "pr", "match_op", "match_exp", "match_flags", "subst_exp", "repl_exp", "timerec", "disabled", "attrs"},                                                           // version 5
	"dr_gateways":  {"id", "gwid", "type", "address", "strip", "pri_prefix", "attrs", "probe_mode", "state", "description"},                                                                         // version 6
	"dr_carriers":  {"id", "carrierid", "gwlist", "flags", "sort_alg", "state", "attrs", "description"},                                                                                             // version 3
	"dr_rules":     {"ruleid", "groupid", "prefix", "timerec", "priority", "routeid", "gwlist", "sort_alg", "attrs", "description"},                                                                 // version 4
	"acc":          {"id", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time", "duration", "ms_duration", "setuptime", "created"},                                           // version 7
	"missed_calls": {"id", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time", "setuptime", "created"},                                                                      // version 5
	"dialog": {"dlg_id", "callid", "from_uri", "from_tag", "to_uri", "to_tag", "mangled_from_uri", "mangled_to_uri",
		"caller_cseq", "callee_cseq", "caller_ping_cseq", "callee_ping_cseq", "caller_route_set", "callee_route_set",
		"caller_contact", "callee_contact", "caller_sock", "callee_sock", "state", "start_time", "timeout",
		"vars", "profiles", "script_flags", "module_flags", "flags"}, // version 12
}

// openSIPSOptional are the tables of OpenSIPS modules an installation may
// not have (it creates a module's tables when it loads the module): when
// the database has one, it must have these columns, and the module reads
// and writes it; when it has not, the module's table reads as empty and
// writes are refused, naming the table (opensips_sets.go).
var openSIPSOptional = map[string][]string{
	"dispatcher": {"id", "setid", "destination", "socket", "state", "probe_mode", "weight", "priority", "attrs", "description"}, // version 9
	"rtpengine":  {"id", "socket", "set_id"},                                                                                    // version 1
}

// OpenSIPS is the Backend of the OpenSIPS schema mode. It runs on
// database/sql over the connection of the native backend of the driver
// (PostgreSQL through pgx's database/sql adapter, MySQL as is), which
// keeps the native backend's reconnection gate and error mapping.
type OpenSIPS struct {
	db      *sql.DB
	pg      bool
	name    string
	timeout time.Duration
	check   func(error) error // the native backend's: connection failures become ErrUnavailable
	down    func() error
	closers []func() error

	// columns maps table -> column -> the column's size in characters
	// (0: not text, or no limit), as the catalogue says at Open: text
	// is cut to it, so a column an operator widened keeps longer values.
	columns map[string]map[string]int

	// Changes' fingerprints are computed at most once per changesEvery:
	// auth and permissions each poll about once a second, and one scan
	// of the three tables answers both.
	changesEvery time.Duration
	mu           sync.Mutex
	changes      changeTracker
}

// OpenOpenSIPS connects to the database dsn names with driver
// (DriverPostgres or DriverMySQL) and checks that every table of
// openSIPSColumns is there with those columns (the server builds every
// module compiled in, and each reads its table at start, so a missing
// one is better named now than met as an SQL error), and that location
// has the index LocationIndex. Most callers want Open with
// Options.Schema SchemaOpenSIPS.
func OpenOpenSIPS(ctx context.Context, driver, dsn string, opts Options) (*OpenSIPS, error) {
	opts.setDefaults()
	b := &OpenSIPS{timeout: opts.Timeout, changesEvery: 500 * time.Millisecond}
	switch driver {
	case DriverPostgres:
		p, err := connectPostgres(ctx, dsn, opts)
		if err != nil {
			return nil, err
		}
		b.db = stdlib.OpenDBFromPool(p.pool)
		b.pg, b.name, b.check, b.down = true, p.name, p.check, p.Unavailable
		b.closers = []func() error{b.db.Close, p.Close}
	case DriverMySQL:
		m, err := connectMySQL(dsn, opts)
		if err != nil {
			return nil, err
		}
		b.db, b.name, b.check, b.down = m.db, m.name, m.check, m.Unavailable
		b.closers = []func() error{m.Close}
	default:
		return nil, fmt.Errorf("store: storage.schema %s needs storage.driver %s or %s, not %q", SchemaOpenSIPS, DriverPostgres, DriverMySQL, driver)
	}
	if err := b.readColumns(ctx); err != nil {
		b.Close()
		return nil, err
	}
	tables := make([]string, 0, len(openSIPSColumns))
	for t := range openSIPSColumns {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	if err := b.requireTables(tables...); err != nil {
		b.Close()
		return nil, err
	}
	for t, cols := range openSIPSOptional {
		if !b.hasTable(t) {
			continue
		}
		if err := b.requireColumns(t, cols); err != nil {
			b.Close()
			return nil, err
		}
	}
	if err := b.requireLocationIndex(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// LocationIndex is the index the OpenSIPS mode needs on location, which
// OpenSIPS's own layout lacks (its usrloc writes by contact_id): the
// registrar finds a binding's row by AOR and contact, and without it every
// write reads the whole table (measured: 60 refreshes a second instead of
// 4,000 with 20,000 rows on PostgreSQL; MariaDB's lock waits time out).
const LocationIndex = `CREATE INDEX location_aor ON location (username, domain)`

// requireLocationIndex refuses a location table without an index that
// starts with username.
func (b *OpenSIPS) requireLocationIndex(ctx context.Context) error {
	query := `SELECT COUNT(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = CAST('location' AS regclass) AND a.attname = 'username'`
	if !b.pg {
		query = `SELECT COUNT(*) FROM information_schema.statistics
			WHERE table_schema = DATABASE() AND table_name = 'location' AND seq_in_index = 1 AND column_name = 'username'`
	}
	var n int
	if err := b.do(ctx, func(ctx context.Context) error { return b.db.QueryRowContext(ctx, query).Scan(&n) }); err != nil {
		return fmt.Errorf("store: opensips %s: reading the indexes of location: %w", b.name, err)
	}
	if n == 0 {
		return errorf(ErrSchemaMismatch, "store: opensips %s: table location has no index on (username, domain), which OpenSIPS does not need and Switchboard does (each binding written would read the whole table); create it: %s", b.name, LocationIndex)
	}
	return nil
}

// readColumns reads which columns the tables of openSIPSColumns have.
func (b *OpenSIPS) readColumns(ctx context.Context) error {
	schema := `current_schema()`
	if !b.pg {
		schema = `DATABASE()`
	}
	var names []string
	for t := range openSIPSColumns {
		names = append(names, "'"+t+"'")
	}
	for t := range openSIPSOptional {
		names = append(names, "'"+t+"'")
	}
	sort.Strings(names)
	cols := map[string]map[string]int{}
	err := b.do(ctx, func(ctx context.Context) error {
		rows, err := b.db.QueryContext(ctx, `SELECT table_name, column_name, COALESCE(character_maximum_length, 0) FROM information_schema.columns
			WHERE table_schema = `+schema+` AND table_name IN (`+strings.Join(names, ", ")+`)`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t, c string
			var size int64
			if err := rows.Scan(&t, &c, &size); err != nil {
				return err
			}
			t, c = strings.ToLower(t), strings.ToLower(c)
			if cols[t] == nil {
				cols[t] = map[string]int{}
			}
			cols[t][c] = int(min(size, 1<<30))
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("store: opensips %s: reading the tables: %w", b.name, err)
	}
	b.columns = cols
	return nil
}

// requireTables checks that each table exists with the columns the store
// uses, naming the first table or column missing.
func (b *OpenSIPS) requireTables(tables ...string) error {
	for _, t := range tables {
		want, ok := openSIPSColumns[t]
		if !ok {
			return fmt.Errorf("store: %s is not a table of the OpenSIPS schema mode", t)
		}
		if err := b.requireColumns(t, want); err != nil {
			return err
		}
	}
	return nil
}

// requireColumns checks that table exists with the columns want.
func (b *OpenSIPS) requireColumns(table string, want []string) error {
	have := b.columns[table]
	if have == nil {
		return errorf(ErrSchemaMismatch, "store: opensips %s: no table %s (create it as OpenSIPS 3.x does, e.g. with opensips-cli's database create or add)", b.name, table)
	}
	for _, c := range want {
		if _, ok := have[c]; !ok {
			return errorf(ErrSchemaMismatch, "store: opensips %s: table %s has no column %s (the OpenSIPS 3.x layout has it; migrate the table with opensips-cli database migrate)", b.name, table, c)
		}
	}
	return nil
}

// hasTable reports whether the database has table (one of
// openSIPSOptional).
func (b *OpenSIPS) hasTable(table string) bool { return b.columns[table] != nil }

// hasColumn reports whether table has column (the optional columns of
// acc and missed_calls).
func (b *OpenSIPS) hasColumn(table, column string) bool {
	_, ok := b.columns[table][column]
	return ok
}

// text makes s storable in table.column: see osText; cut to the column's
// size.
func (b *OpenSIPS) text(table, column, s string) string {
	return osText(s, b.columns[table][column])
}

// Unavailable returns the last connection error while the server cannot be
// reached.
func (b *OpenSIPS) Unavailable() error { return b.down() }

// Ping checks that the server answers.
func (b *OpenSIPS) Ping(ctx context.Context) error {
	return b.do(ctx, func(ctx context.Context) error { return b.db.PingContext(ctx) })
}

func (b *OpenSIPS) Close() error {
	var first error
	for _, c := range b.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// q rewrites the ? placeholders of query for PostgreSQL ($1, $2...).
func (b *OpenSIPS) q(query string) string {
	if !b.pg {
		return query
	}
	return pgRebind(query)
}

// epoch is the SQL for the unix seconds of a DATETIME/TIMESTAMP column,
// read as UTC whatever the session's time zone.
func (b *OpenSIPS) epoch(col string) string {
	if b.pg {
		return `CAST(EXTRACT(EPOCH FROM ` + col + `) AS BIGINT)`
	}
	return `TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', ` + col + `)`
}

// datetime is the value written to a DATETIME/TIMESTAMP column for unix
// seconds t, in UTC.
func datetime(t int64) string { return time.Unix(t, 0).UTC().Format("2006-01-02 15:04:05") }

// do runs fn with the operation's deadline and maps connection failures.
func (b *OpenSIPS) do(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.check(fn(ctx))
}

// inTx runs fn in one transaction.
func (b *OpenSIPS) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return b.do(ctx, func(ctx context.Context) error {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// insertID inserts one row and returns the id the database gave it
// (RETURNING on PostgreSQL, LastInsertId on MySQL).
func (b *OpenSIPS) insertID(ctx context.Context, tx *sql.Tx, idCol, query string, args ...any) (int64, error) {
	var id int64
	if b.pg {
		err := tx.QueryRowContext(ctx, b.q(query+` RETURNING `+idCol), args...).Scan(&id)
		return id, err
	}
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// unique reports a duplicate key error of either server.
func (b *OpenSIPS) unique(err error) bool {
	if b.pg {
		return pgUnique(err)
	}
	return myUnique(err)
}

// selectList runs a query and scans every row with scan.
func osList[T any](b *OpenSIPS, ctx context.Context, scan func(rowScanner, *T) error, query string, args ...any) ([]T, error) {
	var out []T
	err := b.do(ctx, func(ctx context.Context) error {
		rows, err := b.db.QueryContext(ctx, b.q(query), args...)
		out, err = sqlCollect(rows, err, scan)
		return err
	})
	return out, err
}

// fingerprint is the version of a table in this mode: a hash of its row
// count and of a sum over its rows computed by the database in one scan
// (PostgreSQL: of each row version's xmin; MySQL: of a CRC-32 of each
// row's values). Any insert, delete or change of a value moves it, barring
// a collision of sums.
func (b *OpenSIPS) fingerprint(ctx context.Context, table string) (int64, error) {
	var query string
	if b.pg {
		// xmin, the transaction that wrote the row's version: an insert
		// or an update makes a row with a new one, a delete changes the
		// count. Summing it costs far less than hashing each row's text.
		query = `SELECT COUNT(*), COALESCE(SUM(CAST(CAST(xmin AS TEXT) AS BIGINT)), 0) FROM ` + table
	} else {
		// Every column, NULL as a byte no text holds (CONCAT_WS would
		// skip it, and a value moving to the next column would not count).
		var cols []string
		for c := range b.columns[table] {
			cols = append(cols, "IFNULL(`"+strings.ReplaceAll(c, "`", "``")+"`, 0x00)")
		}
		sort.Strings(cols)
		query = `SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(0x1f, ` + strings.Join(cols, ", ") + `))), 0) FROM ` + table
	}
	var n int64
	var sum string // a NUMERIC/DECIMAL sum
	err := b.do(ctx, func(ctx context.Context) error {
		return b.db.QueryRowContext(ctx, query).Scan(&n, &sum)
	})
	if err != nil {
		return 0, err
	}
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatInt(n, 10) + "/" + sum))
	return int64(h.Sum64() &^ (1 << 63)), nil
}

// TableVersion is the fingerprint of one of the tables that modules
// reload whole.
func (b *OpenSIPS) TableVersion(ctx context.Context, name string) (int64, error) {
	switch name {
	case "dialplan", DRGatewaysTable, DRCarriersTable, DRRulesTable, "address":
		return b.fingerprint(ctx, name)
	case "dispatcher", "rtpengine":
		if b.hasTable(name) {
			return b.fingerprint(ctx, name)
		}
	}
	return 0, nil // a table read as empty, which never changes

}

func notInSchema(table string) error {
	return errorf(ErrNotInSchema, "store: the %s table is not used with storage.schema opensips (OpenSIPS has no such table, or Switchboard does not read it)", table)
}

// changeTracker turns fingerprints of subscriber, domain and address
// into change-log entries for Changes: the store's readers (auth,
// permissions) only need to know that something changed. Its numbers are
// this process's own, counted from 1 at Open.
type changeTracker struct {
	seq     uint64
	started bool
	at      time.Time // when fp was computed
	fp      [3]int64  // subscriber, domain, address
	log     []Change  // recent entries, oldest first
}

const trackedChanges = 64

var trackedTables = [3]string{"subscriber", "domain", "address"}

// Changes reports a ChangeAll when subscriber or domain changed since the
// last poll and a ChangeAddress when address did. It keeps the last 64
// entries; a reader further behind gets a ChangeAll.
func (b *OpenSIPS) Changes(ctx context.Context, since uint64, limit int) ([]Change, uint64, error) {
	b.mu.Lock()
	fresh := b.changes.started && time.Since(b.changes.at) < b.changesEvery
	b.mu.Unlock()
	if !fresh {
		if err := b.trackChanges(ctx); err != nil {
			return nil, 0, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &b.changes
	if limit == 0 || since >= c.seq {
		return nil, c.seq, nil
	}
	if len(c.log) == 0 || since+1 < c.log[0].Seq {
		return []Change{{Seq: c.seq, Kind: ChangeAll}}, c.seq, nil
	}
	var out []Change
	for _, ch := range c.log {
		if ch.Seq > since && len(out) < limit {
			out = append(out, ch)
		}
	}
	return out, out[len(out)-1].Seq, nil
}

// trackChanges computes the fingerprints and logs what moved since the
// last time.
func (b *OpenSIPS) trackChanges(ctx context.Context) error {
	var fp [3]int64
	for i, t := range trackedTables {
		v, err := b.fingerprint(ctx, t)
		if err != nil {
			return err
		}
		fp[i] = v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &b.changes
	c.at = time.Now()
	if !c.started {
		c.started, c.fp = true, fp
	}
	if fp != c.fp {
		if fp[0] != c.fp[0] || fp[1] != c.fp[1] {
			c.seq++
			c.log = append(c.log, Change{Seq: c.seq, Kind: ChangeAll})
		}
		if fp[2] != c.fp[2] {
			c.seq++
			c.log = append(c.log, Change{Seq: c.seq, Kind: ChangeAddress})
		}
		if len(c.log) > trackedChanges {
			c.log = append(c.log[:0], c.log[len(c.log)-trackedChanges:]...)
		}
		c.fp = fp
	}
	return nil
}
