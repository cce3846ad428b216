package store

import (
	"context"
	"fmt"
	"time"
)

// migration is one numbered schema step. Steps are applied in order, each
// once, inside the transaction that opens the database; the highest applied
// number is recorded in schema_version. Never edit a released step: append a
// new one.
type migration struct {
	version int
	name    string
	stmts   []string
}

// placeholders are the names steps were recorded under by binaries that
// had them reserved and empty (a later step landed first): a database
// that recorded one so gets the step's statements at its next open, and
// the step's name. The dialog table's step 8 was reserved while the
// accounting tables' 9 landed.
var placeholders = map[int]string{8: "reserved for the dialog table"}

// applyMigrations brings the database of c, whose schema_version table
// exists, to migs: it reads the version recorded, refuses a newer one
// (ErrSchemaTooNew, naming the database db), applies the steps recorded
// under their placeholder name and then the missing ones, recording each.
// The backend runs it in its transaction (SQLite, PostgreSQL) or under
// its lock (MySQL, whose DDL commits at once: each step can run again).
// On PostgreSQL the statements go through pgRebind: a step holds no ?
// outside quotes (TestMigrationsHoldNoPlaceholder).
func applyMigrations(ctx context.Context, c conn, db string, migs []migration) error {
	var have int
	if err := c.queryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if want := len(migs); have > want {
		return errorf(ErrSchemaTooNew, "store: %s has schema version %d but this switchboard knows only up to %d; run a newer switchboard binary",
			db, have, want)
	}
	for _, m := range migs[:have] {
		if placeholders[m.version] == "" || m.stmts == nil {
			continue
		}
		var name string
		if err := c.queryRow(ctx, `SELECT name FROM schema_version WHERE version = ?`, m.version).Scan(&name); err != nil {
			return fmt.Errorf("read migration %d: %w", m.version, err)
		}
		if name != placeholders[m.version] {
			continue
		}
		for _, q := range m.stmts {
			if _, err := c.exec(ctx, q); err != nil {
				return fmt.Errorf("migration %d (%s, reserved before): %w", m.version, m.name, err)
			}
		}
		if _, err := c.exec(ctx, `UPDATE schema_version SET name = ?, applied = ? WHERE version = ?`,
			m.name, time.Now().Unix(), m.version); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
	}
	for i, m := range migs[have:] {
		if m.version != have+i+1 {
			panic("store: migrations are not numbered 1, 2, 3, ...")
		}
		for _, q := range m.stmts {
			if _, err := c.exec(ctx, q); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		if _, err := c.exec(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().Unix()); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
	}
	return nil
}

var sqliteMigrations = []migration{
	{1, "subscribers, domains, location, change log", []string{
		`CREATE TABLE domains (
			domain  TEXT PRIMARY KEY NOT NULL,
			created INTEGER NOT NULL
		)`,
		`CREATE TABLE subscribers (
			username   TEXT NOT NULL,
			domain     TEXT NOT NULL REFERENCES domains(domain),
			password   TEXT NOT NULL DEFAULT '',
			ha1        TEXT NOT NULL,
			ha1_sha256 TEXT NOT NULL DEFAULT '',
			email      TEXT NOT NULL DEFAULT '',
			created    INTEGER NOT NULL,
			PRIMARY KEY (username, domain)
		)`,
		`CREATE INDEX subscribers_domain ON subscribers(domain, username)`,
		// binding_key is (instance, reg_id) when an instance is present and the
		// contact otherwise; see Binding.Key.
		`CREATE TABLE location (
			aor           TEXT NOT NULL,
			binding_key   TEXT NOT NULL,
			contact       TEXT NOT NULL,
			received      TEXT NOT NULL DEFAULT '',
			path          TEXT NOT NULL DEFAULT '',
			q             INTEGER NOT NULL DEFAULT 1000,
			expires       INTEGER NOT NULL,
			call_id       TEXT NOT NULL DEFAULT '',
			cseq          INTEGER NOT NULL DEFAULT 0,
			user_agent    TEXT NOT NULL DEFAULT '',
			instance      TEXT NOT NULL DEFAULT '',
			reg_id        INTEGER NOT NULL DEFAULT 0,
			socket        TEXT NOT NULL DEFAULT '',
			flags         INTEGER NOT NULL DEFAULT 0,
			last_modified INTEGER NOT NULL,
			PRIMARY KEY (aor, binding_key)
		)`,
		`CREATE INDEX location_expires ON location(expires)`,
		// change_log lets another process (the server) see subscriber and
		// domain writes made here (the CLI) without restarting; see Changes.
		`CREATE TABLE change_log (
			seq      INTEGER PRIMARY KEY AUTOINCREMENT,
			kind     INTEGER NOT NULL,
			username TEXT NOT NULL DEFAULT '',
			domain   TEXT NOT NULL,
			at       INTEGER NOT NULL
		)`,
	}},
	{2, "address table (permissions)", []string{
		// OpenSIPS' address table: grp, ip, mask, port, proto, pattern,
		// context_info. Empty text instead of NULL for "no pattern" and
		// "no context", so the unique key treats them as values.
		`CREATE TABLE address (
			id           INTEGER PRIMARY KEY AUTOINCREMENT,
			grp          INTEGER NOT NULL,
			ip           TEXT NOT NULL,
			mask         INTEGER NOT NULL,
			port         INTEGER NOT NULL DEFAULT 0,
			proto        TEXT NOT NULL DEFAULT 'any',
			pattern      TEXT NOT NULL DEFAULT '',
			context_info TEXT NOT NULL DEFAULT '',
			created      INTEGER NOT NULL,
			UNIQUE (grp, ip, mask, port, proto, pattern)
		)`,
	}},
	{3, "fraud rules", []string{
		// fraud_rules is OpenSIPS's fraud_detection table (modules/fraud):
		// per profile and number prefix, within hours and days of the week,
		// warning and critical thresholds for calls per minute, calls per
		// day, concurrent and sequential calls. 0 leaves a threshold off.
		`CREATE TABLE fraud_rules (
			id                        INTEGER PRIMARY KEY AUTOINCREMENT,
			profile                   INTEGER NOT NULL,
			prefix                    TEXT NOT NULL DEFAULT '',
			start_hour                TEXT NOT NULL DEFAULT '00:00',
			end_hour                  TEXT NOT NULL DEFAULT '23:59',
			days                      TEXT NOT NULL DEFAULT '',
			cpm_warning               INTEGER NOT NULL DEFAULT 0,
			cpm_critical              INTEGER NOT NULL DEFAULT 0,
			total_calls_warning       INTEGER NOT NULL DEFAULT 0,
			total_calls_critical      INTEGER NOT NULL DEFAULT 0,
			concurrent_calls_warning  INTEGER NOT NULL DEFAULT 0,
			concurrent_calls_critical INTEGER NOT NULL DEFAULT 0,
			sequential_calls_warning  INTEGER NOT NULL DEFAULT 0,
			sequential_calls_critical INTEGER NOT NULL DEFAULT 0,
			created                   INTEGER NOT NULL,
			UNIQUE (profile, prefix, start_hour, end_hour, days)
		)`,
		// table_versions counts the writes to tables that a running server
		// reloads whole (a reader compares the number it loaded with this
		// one) rather than entry by entry through change_log.
		`CREATE TABLE IF NOT EXISTS table_versions (
			name    TEXT PRIMARY KEY NOT NULL,
			version INTEGER NOT NULL
		)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('fraud_rules', 0)`,
	}},
	{4, "dialplan, aliases, groups", []string{
		// dialplan is the table of OpenSIPS's and Kamailio's dialplan
		// module (modules/dialplan): rules grouped by dpid, tried by
		// priority; match_op is a name (exact, prefix, regex) rather than
		// OpenSIPS's number, and there is no timerec column.
		`CREATE TABLE dialplan (
			id          INTEGER PRIMARY KEY AUTOINCREMENT,
			dpid        INTEGER NOT NULL,
			pr          INTEGER NOT NULL DEFAULT 0,
			match_op    TEXT NOT NULL,
			match_exp   TEXT NOT NULL,
			match_flags INTEGER NOT NULL DEFAULT 0,
			subst_exp   TEXT NOT NULL DEFAULT '',
			repl_exp    TEXT NOT NULL DEFAULT '',
			attrs       TEXT NOT NULL DEFAULT '',
			disabled    INTEGER NOT NULL DEFAULT 0,
			created     INTEGER NOT NULL,
			UNIQUE (dpid, pr, match_op, match_exp, match_flags)
		)`,
		// aliases is OpenSIPS alias_db's dbaliases (modules/aliases): one
		// subscriber per alias.
		`CREATE TABLE aliases (
			alias_username TEXT NOT NULL,
			alias_domain   TEXT NOT NULL,
			username       TEXT NOT NULL,
			domain         TEXT NOT NULL,
			created        INTEGER NOT NULL,
			PRIMARY KEY (alias_username, alias_domain)
		)`,
		`CREATE INDEX aliases_target ON aliases(username, domain)`,
		// grp is OpenSIPS's group table (modules/groups, is_user_in).
		`CREATE TABLE grp (
			username TEXT NOT NULL,
			domain   TEXT NOT NULL,
			grp      TEXT NOT NULL,
			created  INTEGER NOT NULL,
			PRIMARY KEY (username, domain, grp)
		)`,
		`CREATE INDEX grp_grp ON grp(grp)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('dialplan', 0), ('aliases', 0), ('grp', 0)`,
	}},
	{5, "dispatcher destinations", []string{
		// OpenSIPS's dispatcher table (modules/dispatcher): destinations
		// grouped in sets, with the state an operator gave them, a weight,
		// a priority (higher first), opaque attributes handed to routes,
		// whether they are probed while active, and a description. The
		// destination is stored in canonical form (see
		// ParseDispatcherURI), so one address is one row per set.
		`CREATE TABLE dispatcher (
			id          INTEGER PRIMARY KEY AUTOINCREMENT,
			setid       INTEGER NOT NULL DEFAULT 0,
			destination TEXT NOT NULL,
			socket      TEXT NOT NULL DEFAULT '',
			state       INTEGER NOT NULL DEFAULT 0,
			weight      INTEGER NOT NULL DEFAULT 1,
			priority    INTEGER NOT NULL DEFAULT 0,
			attrs       TEXT NOT NULL DEFAULT '',
			probe_mode  INTEGER NOT NULL DEFAULT 0,
			description TEXT NOT NULL DEFAULT '',
			created     INTEGER NOT NULL,
			UNIQUE (setid, destination)
		)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('dispatcher', 0)`,
	}},
	{6, "uac credentials and registrations", []string{
		// uac_credentials are the trunks' credentials the uac module answers
		// a carrier's 401/407 with (OpenSIPS uac_auth's credential list, by
		// realm; here also by the gateway address the challenge came from).
		// Empty text for "any realm" and "any gateway", so the unique key
		// treats them as values.
		`CREATE TABLE uac_credentials (
			id         INTEGER PRIMARY KEY AUTOINCREMENT,
			realm      TEXT NOT NULL DEFAULT '',
			gateway    TEXT NOT NULL DEFAULT '',
			username   TEXT NOT NULL,
			password   TEXT NOT NULL DEFAULT '',
			ha1        TEXT NOT NULL DEFAULT '',
			ha1_sha256 TEXT NOT NULL DEFAULT '',
			created    INTEGER NOT NULL,
			UNIQUE (realm, gateway)
		)`,
		// uac_registrations are the registrations the server keeps with
		// carriers as a client (OpenSIPS uac_registrant's registrant table).
		`CREATE TABLE uac_registrations (
			id        INTEGER PRIMARY KEY AUTOINCREMENT,
			aor       TEXT NOT NULL,
			registrar TEXT NOT NULL,
			proxy     TEXT NOT NULL DEFAULT '',
			username  TEXT NOT NULL DEFAULT '',
			password  TEXT NOT NULL DEFAULT '',
			expires   INTEGER NOT NULL,
			contact   TEXT NOT NULL DEFAULT '',
			created   INTEGER NOT NULL,
			UNIQUE (aor, registrar)
		)`,
		`CREATE TABLE IF NOT EXISTS table_versions (
			name    TEXT PRIMARY KEY NOT NULL,
			version INTEGER NOT NULL
		)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('uac_credentials', 0)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('uac_registrations', 0)`,
	}},
	{7, "dynamic routing: gateways, carriers, rules", []string{
		// OpenSIPS drouting's dr_gateways, dr_carriers and dr_rules
		// (modules/drouting). Gateways and carriers are keyed by the name
		// lists use; gateway and carrier lists are text ("gw1,#cr=10"),
		// checked on every write and resolved at load.
		`CREATE TABLE dr_gateways (
			gwid        TEXT PRIMARY KEY NOT NULL,
			type        INTEGER NOT NULL DEFAULT 0,
			address     TEXT NOT NULL,
			transport   TEXT NOT NULL DEFAULT 'udp',
			strip       INTEGER NOT NULL DEFAULT 0,
			pri_prefix  TEXT NOT NULL DEFAULT '',
			attrs       TEXT NOT NULL DEFAULT '',
			probe_mode  INTEGER NOT NULL DEFAULT 0,
			state       INTEGER NOT NULL DEFAULT 0,
			description TEXT NOT NULL DEFAULT '',
			created     INTEGER NOT NULL
		)`,
		`CREATE TABLE dr_carriers (
			carrierid   TEXT PRIMARY KEY NOT NULL,
			gwlist      TEXT NOT NULL,
			flags       INTEGER NOT NULL DEFAULT 0,
			sort_alg    TEXT NOT NULL DEFAULT 'N',
			state       INTEGER NOT NULL DEFAULT 0,
			attrs       TEXT NOT NULL DEFAULT '',
			description TEXT NOT NULL DEFAULT '',
			created     INTEGER NOT NULL
		)`,
		`CREATE TABLE dr_rules (
			ruleid      INTEGER PRIMARY KEY AUTOINCREMENT,
			groupid     TEXT NOT NULL,
			prefix      TEXT NOT NULL DEFAULT '',
			timerec     TEXT NOT NULL DEFAULT '',
			priority    INTEGER NOT NULL DEFAULT 0,
			routeid     TEXT NOT NULL DEFAULT '',
			gwlist      TEXT NOT NULL,
			sort_alg    TEXT NOT NULL DEFAULT 'N',
			attrs       TEXT NOT NULL DEFAULT '',
			description TEXT NOT NULL DEFAULT '',
			created     INTEGER NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS table_versions (
			name    TEXT PRIMARY KEY NOT NULL,
			version INTEGER NOT NULL
		)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('dr_gateways', 0), ('dr_carriers', 0), ('dr_rules', 0)`,
	}},
	{8, "dialogs", []string{
		// The confirmed calls of the dialog module, written behind it
		// (OpenSIPS's dialog table, db_mode delayed) and loaded at start
		// so that calls up across a restart keep their dialog. Times
		// are milliseconds since the Unix epoch; dlg_id is the id of our
		// Record-Route's did parameter (its 64 bits as a signed
		// integer). caller_hop and callee_hop are the first hops towards
		// each side, "udp:192.0.2.1:5060" (OpenSIPS keeps its own socket
		// there; the proxy's BYEs leave from the listener of the hop's
		// protocol). from_hdr and to_hdr are the INVITE's From (with its
		// tag) and To values, which the proxy's BYEs carry;
		// callee_from_hdr and callee_to_hdr the callee's, when a route
		// rewrote them (OpenSIPS's mangled_from_uri, mangled_to_uri),
		// and cseq_offset how far the callee's numbering of the caller's
		// requests is above the caller's (uac_auth); code and phrase the
		// 2xx that answered the INVITE; profiles is "name" or
		// "name=value" (value query-escaped) joined by ","; script_flags
		// and vars what routes set (set_dlg_flag, store_dlg_value:
		// "name=value" pairs query-escaped and joined by "&"), which the
		// accounting module writes in the call's record.
		`CREATE TABLE dialog (
			dlg_id           INTEGER PRIMARY KEY NOT NULL,
			callid           TEXT NOT NULL,
			from_uri         TEXT NOT NULL,
			from_tag         TEXT NOT NULL,
			to_uri           TEXT NOT NULL,
			to_tag           TEXT NOT NULL,
			from_hdr         TEXT NOT NULL,
			to_hdr           TEXT NOT NULL,
			callee_from_hdr  TEXT NOT NULL DEFAULT '',
			callee_to_hdr    TEXT NOT NULL DEFAULT '',
			caller_cseq      INTEGER NOT NULL DEFAULT 0,
			callee_cseq      INTEGER NOT NULL DEFAULT 0,
			cseq_offset      INTEGER NOT NULL DEFAULT 0,
			caller_route_set TEXT NOT NULL DEFAULT '',
			callee_route_set TEXT NOT NULL DEFAULT '',
			caller_contact   TEXT NOT NULL DEFAULT '',
			callee_contact   TEXT NOT NULL DEFAULT '',
			caller_hop       TEXT NOT NULL,
			callee_hop       TEXT NOT NULL DEFAULT '',
			state            INTEGER NOT NULL,
			start_time       INTEGER NOT NULL,
			answer_time      INTEGER NOT NULL DEFAULT 0,
			timeout          INTEGER NOT NULL,
			code             INTEGER NOT NULL DEFAULT 0,
			phrase           TEXT NOT NULL DEFAULT '',
			profiles         TEXT NOT NULL DEFAULT '',
			script_flags     INTEGER NOT NULL DEFAULT 0,
			vars             TEXT NOT NULL DEFAULT '',
			updated          INTEGER NOT NULL
		)`,
		`CREATE INDEX dialog_callid ON dialog(callid)`,
	}},
	{9, "accounting: acc, missed_calls", []string{
		// acc holds one record per call (OpenSIPS acc's CDRs and failed
		// transactions; modules/acc): times in milliseconds since the
		// epoch, answer_ms 0 for a call never answered, duration_ms from
		// the answer to the end. missed_calls has the same columns: the
		// failed calls to our subscribers the route marked (OpenSIPS's
		// missed_calls). extra is a JSON object of the route's pairs.
		`CREATE TABLE acc (` + cdrColumnsDDL + `)`,
		`CREATE INDEX acc_start ON acc(start_ms)`,
		`CREATE INDEX acc_from_user ON acc(from_user, start_ms)`,
		`CREATE INDEX acc_to_user ON acc(to_user, start_ms)`,
		`CREATE INDEX acc_call_id ON acc(call_id)`,
		`CREATE TABLE missed_calls (` + cdrColumnsDDL + `)`,
		`CREATE INDEX missed_calls_start ON missed_calls(start_ms)`,
		`CREATE INDEX missed_calls_from_user ON missed_calls(from_user, start_ms)`,
		`CREATE INDEX missed_calls_to_user ON missed_calls(to_user, start_ms)`,
		`CREATE INDEX missed_calls_call_id ON missed_calls(call_id)`,
	}},
	{10, "panel users", []string{
		// panel_users are the operators of the web panel (mgmt/panel):
		// hash is the password's Argon2id PHC string, role admin or
		// read-only.
		`CREATE TABLE panel_users (
			name    TEXT PRIMARY KEY NOT NULL,
			hash    TEXT NOT NULL,
			role    TEXT NOT NULL,
			created INTEGER NOT NULL,
			updated INTEGER NOT NULL
		)`,
	}},
	{11, "rtpengine instances", rtpengineSQLite}, // store/rtpengine.go
	{12, "accounting: per-user indexes on server databases only", []string{
		// Each index is one more B-tree insert per call record, and in
		// the embedded database that work is the proxy's own CPU: the
		// two per-user indexes were a fifth of the accounting writer's
		// cost (BenchmarkAddCDRs, bench/results/dialog-acc.md). acc keeps
		// start_ms and call_id, as OpenSIPS's and Kamailio's acc tables
		// keep callid; a per-user listing walks the start time index.
		`DROP INDEX IF EXISTS acc_from_user`,
		`DROP INDEX IF EXISTS acc_to_user`,
		`DROP INDEX IF EXISTS missed_calls_from_user`,
		`DROP INDEX IF EXISTS missed_calls_to_user`,
	}},
	{13, "dialog: one data column on SQLite", dialogDataSQLite},  // store/dialog_data.go
	{14, "accounting: one data column on SQLite", accDataSQLite}, // store/acc_data.go
	{15, "panel sessions", []string{
		// panel_sessions are the web panel's logged-in sessions
		// (store/panelsessions.go): id is the SHA-256 of the cookie's
		// token, never the token.
		`CREATE TABLE panel_sessions (
			id           TEXT PRIMARY KEY NOT NULL,
			name         TEXT NOT NULL,
			csrf         TEXT NOT NULL,
			password_tag TEXT NOT NULL,
			created      INTEGER NOT NULL,
			expires      INTEGER NOT NULL
		)`,
		`CREATE INDEX panel_sessions_expires ON panel_sessions(expires)`,
	}},
	// The Contacts as relayed (dialog ValidateDialog): on SQLite two
	// more keys of the data object, read as "" from an older row.
	{16, "dialog: the Contacts as relayed", []string{}},
}

// cdrColumnsDDL are the columns of the acc and missed_calls tables
// (SQLite).
const cdrColumnsDDL = `
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	call_id     TEXT NOT NULL,
	from_tag    TEXT NOT NULL DEFAULT '',
	to_tag      TEXT NOT NULL DEFAULT '',
	from_uri    TEXT NOT NULL DEFAULT '',
	from_user   TEXT NOT NULL DEFAULT '',
	to_uri      TEXT NOT NULL DEFAULT '',
	to_user     TEXT NOT NULL DEFAULT '',
	caller      TEXT NOT NULL DEFAULT '',
	start_ms    INTEGER NOT NULL,
	answer_ms   INTEGER NOT NULL DEFAULT 0,
	end_ms      INTEGER NOT NULL,
	duration_ms INTEGER NOT NULL DEFAULT 0,
	sip_code    INTEGER NOT NULL DEFAULT 0,
	sip_reason  TEXT NOT NULL DEFAULT '',
	end_reason  TEXT NOT NULL DEFAULT '',
	ended_by    TEXT NOT NULL DEFAULT '',
	extra       TEXT NOT NULL DEFAULT '{}'`

// postgresMigrations are the same steps, with the same numbers, for
// PostgreSQL. Every text column is COLLATE "C" so that keys compare and sort
// byte by byte as in SQLite, whatever locale the database was created with;
// integers are BIGINT as SQLite's are 64 bits; generated ids are identity
// columns, which (like AUTOINCREMENT) never hand out a number twice. The
// change log's sequence numbers do not come from a sequence (a rolled back
// insert would leave a gap, and two writers could commit out of order): see
// Postgres.logChange.
var postgresMigrations = []migration{
	{1, "subscribers, domains, location, change log", []string{
		`CREATE TABLE domains (
			domain  TEXT COLLATE "C" PRIMARY KEY,
			created BIGINT NOT NULL
		)`,
		`CREATE TABLE subscribers (
			username   TEXT COLLATE "C" NOT NULL,
			domain     TEXT COLLATE "C" NOT NULL REFERENCES domains(domain),
			password   TEXT COLLATE "C" NOT NULL DEFAULT '',
			ha1        TEXT COLLATE "C" NOT NULL,
			ha1_sha256 TEXT COLLATE "C" NOT NULL DEFAULT '',
			email      TEXT COLLATE "C" NOT NULL DEFAULT '',
			created    BIGINT NOT NULL,
			PRIMARY KEY (username, domain)
		)`,
		`CREATE INDEX subscribers_domain ON subscribers(domain, username)`,
		`CREATE TABLE location (
			aor           TEXT COLLATE "C" NOT NULL,
			binding_key   TEXT COLLATE "C" NOT NULL,
			contact       TEXT COLLATE "C" NOT NULL,
			received      TEXT COLLATE "C" NOT NULL DEFAULT '',
			path          TEXT COLLATE "C" NOT NULL DEFAULT '',
			q             BIGINT NOT NULL DEFAULT 1000,
			expires       BIGINT NOT NULL,
			call_id       TEXT COLLATE "C" NOT NULL DEFAULT '',
			cseq          BIGINT NOT NULL DEFAULT 0,
			user_agent    TEXT COLLATE "C" NOT NULL DEFAULT '',
			instance      TEXT COLLATE "C" NOT NULL DEFAULT '',
			reg_id        BIGINT NOT NULL DEFAULT 0,
			socket        TEXT COLLATE "C" NOT NULL DEFAULT '',
			flags         BIGINT NOT NULL DEFAULT 0,
			last_modified BIGINT NOT NULL,
			PRIMARY KEY (aor, binding_key)
		)`,
		`CREATE INDEX location_expires ON location(expires)`,
		`CREATE TABLE change_log (
			seq      BIGINT PRIMARY KEY,
			kind     INTEGER NOT NULL,
			username TEXT COLLATE "C" NOT NULL DEFAULT '',
			domain   TEXT COLLATE "C" NOT NULL,
			at       BIGINT NOT NULL
		)`,
		// The last sequence number handed out, one row: writers take it
		// with UPDATE ... RETURNING, whose row lock orders them.
		`CREATE TABLE change_log_seq (last BIGINT NOT NULL)`,
		`INSERT INTO change_log_seq (last) VALUES (0)`,
	}},
	{2, "address table (permissions)", []string{
		`CREATE TABLE address (
			id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			grp          BIGINT NOT NULL,
			ip           TEXT COLLATE "C" NOT NULL,
			mask         BIGINT NOT NULL,
			port         BIGINT NOT NULL DEFAULT 0,
			proto        TEXT COLLATE "C" NOT NULL DEFAULT 'any',
			pattern      TEXT COLLATE "C" NOT NULL DEFAULT '',
			context_info TEXT COLLATE "C" NOT NULL DEFAULT '',
			created      BIGINT NOT NULL,
			UNIQUE (grp, ip, mask, port, proto, pattern)
		)`,
	}},
	{3, "fraud rules", []string{
		`CREATE TABLE fraud_rules (
			id                        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			profile                   BIGINT NOT NULL,
			prefix                    TEXT COLLATE "C" NOT NULL DEFAULT '',
			start_hour                TEXT COLLATE "C" NOT NULL DEFAULT '00:00',
			end_hour                  TEXT COLLATE "C" NOT NULL DEFAULT '23:59',
			days                      TEXT COLLATE "C" NOT NULL DEFAULT '',
			cpm_warning               BIGINT NOT NULL DEFAULT 0,
			cpm_critical              BIGINT NOT NULL DEFAULT 0,
			total_calls_warning       BIGINT NOT NULL DEFAULT 0,
			total_calls_critical      BIGINT NOT NULL DEFAULT 0,
			concurrent_calls_warning  BIGINT NOT NULL DEFAULT 0,
			concurrent_calls_critical BIGINT NOT NULL DEFAULT 0,
			sequential_calls_warning  BIGINT NOT NULL DEFAULT 0,
			sequential_calls_critical BIGINT NOT NULL DEFAULT 0,
			created                   BIGINT NOT NULL,
			UNIQUE (profile, prefix, start_hour, end_hour, days)
		)`,
		`CREATE TABLE IF NOT EXISTS table_versions (
			name    TEXT COLLATE "C" PRIMARY KEY,
			version BIGINT NOT NULL
		)`,
		`INSERT INTO table_versions (name, version) VALUES ('fraud_rules', 0) ON CONFLICT DO NOTHING`,
	}},
	{4, "dialplan, aliases, groups", []string{
		`CREATE TABLE dialplan (
			id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			dpid        BIGINT NOT NULL,
			pr          BIGINT NOT NULL DEFAULT 0,
			match_op    TEXT COLLATE "C" NOT NULL,
			match_exp   TEXT COLLATE "C" NOT NULL,
			match_flags BIGINT NOT NULL DEFAULT 0,
			subst_exp   TEXT COLLATE "C" NOT NULL DEFAULT '',
			repl_exp    TEXT COLLATE "C" NOT NULL DEFAULT '',
			attrs       TEXT COLLATE "C" NOT NULL DEFAULT '',
			disabled    BOOLEAN NOT NULL DEFAULT false,
			created     BIGINT NOT NULL,
			UNIQUE (dpid, pr, match_op, match_exp, match_flags)
		)`,
		`CREATE TABLE aliases (
			alias_username TEXT COLLATE "C" NOT NULL,
			alias_domain   TEXT COLLATE "C" NOT NULL,
			username       TEXT COLLATE "C" NOT NULL,
			domain         TEXT COLLATE "C" NOT NULL,
			created        BIGINT NOT NULL,
			PRIMARY KEY (alias_username, alias_domain)
		)`,
		`CREATE INDEX aliases_target ON aliases(username, domain)`,
		`CREATE TABLE grp (
			username TEXT COLLATE "C" NOT NULL,
			domain   TEXT COLLATE "C" NOT NULL,
			grp      TEXT COLLATE "C" NOT NULL,
			created  BIGINT NOT NULL,
			PRIMARY KEY (username, domain, grp)
		)`,
		`CREATE INDEX grp_grp ON grp(grp)`,
		`INSERT INTO table_versions (name, version) VALUES ('dialplan', 0), ('aliases', 0), ('grp', 0) ON CONFLICT DO NOTHING`,
	}},
	{5, "dispatcher destinations", []string{
		`CREATE TABLE dispatcher (
			id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			setid       BIGINT NOT NULL DEFAULT 0,
			destination TEXT COLLATE "C" NOT NULL,
			socket      TEXT COLLATE "C" NOT NULL DEFAULT '',
			state       BIGINT NOT NULL DEFAULT 0,
			weight      BIGINT NOT NULL DEFAULT 1,
			priority    BIGINT NOT NULL DEFAULT 0,
			attrs       TEXT COLLATE "C" NOT NULL DEFAULT '',
			probe_mode  BIGINT NOT NULL DEFAULT 0,
			description TEXT COLLATE "C" NOT NULL DEFAULT '',
			created     BIGINT NOT NULL,
			UNIQUE (setid, destination)
		)`,
		`INSERT INTO table_versions (name, version) VALUES ('dispatcher', 0) ON CONFLICT DO NOTHING`,
	}},
	{6, "uac credentials and registrations", []string{
		`CREATE TABLE uac_credentials (
			id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			realm      TEXT COLLATE "C" NOT NULL DEFAULT '',
			gateway    TEXT COLLATE "C" NOT NULL DEFAULT '',
			username   TEXT COLLATE "C" NOT NULL,
			password   TEXT COLLATE "C" NOT NULL DEFAULT '',
			ha1        TEXT COLLATE "C" NOT NULL DEFAULT '',
			ha1_sha256 TEXT COLLATE "C" NOT NULL DEFAULT '',
			created    BIGINT NOT NULL,
			UNIQUE (realm, gateway)
		)`,
		`CREATE TABLE uac_registrations (
			id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			aor       TEXT COLLATE "C" NOT NULL,
			registrar TEXT COLLATE "C" NOT NULL,
			proxy     TEXT COLLATE "C" NOT NULL DEFAULT '',
			username  TEXT COLLATE "C" NOT NULL DEFAULT '',
			password  TEXT COLLATE "C" NOT NULL DEFAULT '',
			expires   BIGINT NOT NULL,
			contact   TEXT COLLATE "C" NOT NULL DEFAULT '',
			created   BIGINT NOT NULL,
			UNIQUE (aor, registrar)
		)`,
		`INSERT INTO table_versions (name, version) VALUES ('uac_credentials', 0), ('uac_registrations', 0) ON CONFLICT DO NOTHING`,
	}},
	{7, "dynamic routing: gateways, carriers, rules", []string{
		`CREATE TABLE dr_gateways (
			gwid        TEXT COLLATE "C" PRIMARY KEY,
			type        BIGINT NOT NULL DEFAULT 0,
			address     TEXT COLLATE "C" NOT NULL,
			transport   TEXT COLLATE "C" NOT NULL DEFAULT 'udp',
			strip       BIGINT NOT NULL DEFAULT 0,
			pri_prefix  TEXT COLLATE "C" NOT NULL DEFAULT '',
			attrs       TEXT COLLATE "C" NOT NULL DEFAULT '',
			probe_mode  BIGINT NOT NULL DEFAULT 0,
			state       BIGINT NOT NULL DEFAULT 0,
			description TEXT COLLATE "C" NOT NULL DEFAULT '',
			created     BIGINT NOT NULL
		)`,
		`CREATE TABLE dr_carriers (
			carrierid   TEXT COLLATE "C" PRIMARY KEY,
			gwlist      TEXT COLLATE "C" NOT NULL,
			flags       BIGINT NOT NULL DEFAULT 0,
			sort_alg    TEXT COLLATE "C" NOT NULL DEFAULT 'N',
			state       BIGINT NOT NULL DEFAULT 0,
			attrs       TEXT COLLATE "C" NOT NULL DEFAULT '',
			description TEXT COLLATE "C" NOT NULL DEFAULT '',
			created     BIGINT NOT NULL
		)`,
		`CREATE TABLE dr_rules (
			ruleid      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			groupid     TEXT COLLATE "C" NOT NULL,
			prefix      TEXT COLLATE "C" NOT NULL DEFAULT '',
			timerec     TEXT COLLATE "C" NOT NULL DEFAULT '',
			priority    BIGINT NOT NULL DEFAULT 0,
			routeid     TEXT COLLATE "C" NOT NULL DEFAULT '',
			gwlist      TEXT COLLATE "C" NOT NULL,
			sort_alg    TEXT COLLATE "C" NOT NULL DEFAULT 'N',
			attrs       TEXT COLLATE "C" NOT NULL DEFAULT '',
			description TEXT COLLATE "C" NOT NULL DEFAULT '',
			created     BIGINT NOT NULL
		)`,
		`INSERT INTO table_versions (name, version) VALUES ('dr_gateways', 0), ('dr_carriers', 0), ('dr_rules', 0) ON CONFLICT DO NOTHING`,
	}},
	{8, "dialogs", []string{
		// The dialog module's confirmed calls (see SQLite's step 8).
		`CREATE TABLE dialog (
			dlg_id           BIGINT PRIMARY KEY,
			callid           TEXT COLLATE "C" NOT NULL,
			from_uri         TEXT COLLATE "C" NOT NULL,
			from_tag         TEXT COLLATE "C" NOT NULL,
			to_uri           TEXT COLLATE "C" NOT NULL,
			to_tag           TEXT COLLATE "C" NOT NULL,
			from_hdr         TEXT COLLATE "C" NOT NULL,
			to_hdr           TEXT COLLATE "C" NOT NULL,
			callee_from_hdr  TEXT COLLATE "C" NOT NULL DEFAULT '',
			callee_to_hdr    TEXT COLLATE "C" NOT NULL DEFAULT '',
			caller_cseq      BIGINT NOT NULL DEFAULT 0,
			callee_cseq      BIGINT NOT NULL DEFAULT 0,
			cseq_offset      BIGINT NOT NULL DEFAULT 0,
			caller_route_set TEXT COLLATE "C" NOT NULL DEFAULT '',
			callee_route_set TEXT COLLATE "C" NOT NULL DEFAULT '',
			caller_contact   TEXT COLLATE "C" NOT NULL DEFAULT '',
			callee_contact   TEXT COLLATE "C" NOT NULL DEFAULT '',
			caller_hop       TEXT COLLATE "C" NOT NULL,
			callee_hop       TEXT COLLATE "C" NOT NULL DEFAULT '',
			state            BIGINT NOT NULL,
			start_time       BIGINT NOT NULL,
			answer_time      BIGINT NOT NULL DEFAULT 0,
			timeout          BIGINT NOT NULL,
			code             BIGINT NOT NULL DEFAULT 0,
			phrase           TEXT COLLATE "C" NOT NULL DEFAULT '',
			profiles         TEXT COLLATE "C" NOT NULL DEFAULT '',
			script_flags     BIGINT NOT NULL DEFAULT 0,
			vars             TEXT COLLATE "C" NOT NULL DEFAULT '',
			updated          BIGINT NOT NULL
		)`,
		`CREATE INDEX dialog_callid ON dialog(callid)`,
	}},
	{9, "accounting: acc, missed_calls", []string{
		`CREATE TABLE acc (` + pgCDRColumnsDDL + `)`,
		`CREATE INDEX acc_start ON acc(start_ms)`,
		`CREATE INDEX acc_from_user ON acc(from_user, start_ms)`,
		`CREATE INDEX acc_to_user ON acc(to_user, start_ms)`,
		`CREATE INDEX acc_call_id ON acc(call_id)`,
		`CREATE TABLE missed_calls (` + pgCDRColumnsDDL + `)`,
		`CREATE INDEX missed_calls_start ON missed_calls(start_ms)`,
		`CREATE INDEX missed_calls_from_user ON missed_calls(from_user, start_ms)`,
		`CREATE INDEX missed_calls_to_user ON missed_calls(to_user, start_ms)`,
		`CREATE INDEX missed_calls_call_id ON missed_calls(call_id)`,
	}},
	{10, "panel users", []string{
		`CREATE TABLE panel_users (
			name    TEXT COLLATE "C" PRIMARY KEY,
			hash    TEXT COLLATE "C" NOT NULL,
			role    TEXT COLLATE "C" NOT NULL,
			created BIGINT NOT NULL,
			updated BIGINT NOT NULL
		)`,
	}},
	{11, "rtpengine instances", rtpenginePostgres}, // store/rtpengine.go
	// A server database's indexes cost the database server, not the
	// proxy: the per-user ones stay (SQLite's step 12 says why it drops
	// them).
	{12, "accounting: per-user indexes on server databases only", []string{}},
	// The dialog row's columns stay apart on a server database: binding
	// them costs the proxy little there (SQLite's step 13 says why it
	// joins them).
	{13, "dialog: one data column on SQLite", []string{}},
	{14, "accounting: one data column on SQLite", []string{}},
	{15, "panel sessions", []string{
		`CREATE TABLE panel_sessions (
			id           TEXT COLLATE "C" PRIMARY KEY,
			name         TEXT COLLATE "C" NOT NULL,
			csrf         TEXT COLLATE "C" NOT NULL,
			password_tag TEXT COLLATE "C" NOT NULL,
			created      BIGINT NOT NULL,
			expires      BIGINT NOT NULL
		)`,
		`CREATE INDEX panel_sessions_expires ON panel_sessions(expires)`,
	}},
	{16, "dialog: the Contacts as relayed", []string{
		`ALTER TABLE dialog ADD COLUMN caller_contact_sent TEXT COLLATE "C" NOT NULL DEFAULT '',
			ADD COLUMN callee_contact_sent TEXT COLLATE "C" NOT NULL DEFAULT ''`,
	}},
}

// pgCDRColumnsDDL are the columns of the acc and missed_calls tables
// (PostgreSQL).
const pgCDRColumnsDDL = `
	id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	call_id     TEXT COLLATE "C" NOT NULL,
	from_tag    TEXT COLLATE "C" NOT NULL DEFAULT '',
	to_tag      TEXT COLLATE "C" NOT NULL DEFAULT '',
	from_uri    TEXT COLLATE "C" NOT NULL DEFAULT '',
	from_user   TEXT COLLATE "C" NOT NULL DEFAULT '',
	to_uri      TEXT COLLATE "C" NOT NULL DEFAULT '',
	to_user     TEXT COLLATE "C" NOT NULL DEFAULT '',
	caller      TEXT COLLATE "C" NOT NULL DEFAULT '',
	start_ms    BIGINT NOT NULL,
	answer_ms   BIGINT NOT NULL DEFAULT 0,
	end_ms      BIGINT NOT NULL,
	duration_ms BIGINT NOT NULL DEFAULT 0,
	sip_code    BIGINT NOT NULL DEFAULT 0,
	sip_reason  TEXT COLLATE "C" NOT NULL DEFAULT '',
	end_reason  TEXT COLLATE "C" NOT NULL DEFAULT '',
	ended_by    TEXT COLLATE "C" NOT NULL DEFAULT '',
	extra       TEXT COLLATE "C" NOT NULL DEFAULT '{}'`

// mysqlMigrations are the same steps for MariaDB and MySQL (InnoDB). Text
// is stored as bytes: VARBINARY where a column is a key or sorted on (its
// length the largest the store accepts), BLOB otherwise, so keys compare
// byte by byte as in SQLite whatever the server's character set. The
// location key is the SHA-256 of the binding's key (a contact URI has no
// bound an index allows). MySQL commits each DDL statement at once, so
// every step can be run again after failing half way: IF NOT EXISTS,
// INSERT IGNORE, indexes declared in their table.
var mysqlMigrations = []migration{
	{1, "subscribers, domains, location, change log", []string{
		`CREATE TABLE IF NOT EXISTS domains (
			domain  VARBINARY(253) NOT NULL PRIMARY KEY,
			created BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS subscribers (
			username   VARBINARY(128) NOT NULL,
			domain     VARBINARY(253) NOT NULL,
			password   BLOB NOT NULL,
			ha1        VARBINARY(64) NOT NULL,
			ha1_sha256 VARBINARY(64) NOT NULL,
			email      BLOB NOT NULL,
			created    BIGINT NOT NULL,
			PRIMARY KEY (username, domain),
			KEY subscribers_domain (domain, username),
			FOREIGN KEY (domain) REFERENCES domains(domain)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS location (
			aor           VARBINARY(382) NOT NULL,
			binding_key   BINARY(32) NOT NULL,
			contact       MEDIUMBLOB NOT NULL,
			received      BLOB NOT NULL,
			path          MEDIUMBLOB NOT NULL,
			q             BIGINT NOT NULL,
			expires       BIGINT NOT NULL,
			call_id       BLOB NOT NULL,
			cseq          BIGINT NOT NULL,
			user_agent    BLOB NOT NULL,
			instance      BLOB NOT NULL,
			reg_id        BIGINT NOT NULL,
			socket        BLOB NOT NULL,
			flags         BIGINT NOT NULL,
			last_modified BIGINT NOT NULL,
			PRIMARY KEY (aor, binding_key),
			KEY location_expires (expires)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS change_log (
			seq      BIGINT NOT NULL PRIMARY KEY,
			kind     INT NOT NULL,
			username VARBINARY(128) NOT NULL,
			domain   VARBINARY(253) NOT NULL,
			at       BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS change_log_seq (
			id   INT NOT NULL PRIMARY KEY,
			last BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO change_log_seq (id, last) VALUES (1, 0)`,
	}},
	{2, "address table (permissions)", []string{
		`CREATE TABLE IF NOT EXISTS address (
			id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			grp          BIGINT NOT NULL,
			ip           VARBINARY(64) NOT NULL,
			mask         BIGINT NOT NULL,
			port         BIGINT NOT NULL,
			proto        VARBINARY(8) NOT NULL,
			pattern      VARBINARY(512) NOT NULL,
			context_info BLOB NOT NULL,
			created      BIGINT NOT NULL,
			UNIQUE KEY address_entry (grp, ip, mask, port, proto, pattern)
		) ENGINE=InnoDB`,
	}},
	{3, "fraud rules", []string{
		`CREATE TABLE IF NOT EXISTS fraud_rules (
			id                        BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			profile                   BIGINT NOT NULL,
			prefix                    VARBINARY(64) NOT NULL,
			start_hour                VARBINARY(8) NOT NULL,
			end_hour                  VARBINARY(8) NOT NULL,
			days                      VARBINARY(64) NOT NULL,
			cpm_warning               BIGINT NOT NULL,
			cpm_critical              BIGINT NOT NULL,
			total_calls_warning       BIGINT NOT NULL,
			total_calls_critical      BIGINT NOT NULL,
			concurrent_calls_warning  BIGINT NOT NULL,
			concurrent_calls_critical BIGINT NOT NULL,
			sequential_calls_warning  BIGINT NOT NULL,
			sequential_calls_critical BIGINT NOT NULL,
			created                   BIGINT NOT NULL,
			UNIQUE KEY fraud_rule (profile, prefix, start_hour, end_hour, days)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS table_versions (
			name    VARBINARY(64) NOT NULL PRIMARY KEY,
			version BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO table_versions (name, version) VALUES ('fraud_rules', 0)`,
	}},
	{4, "dialplan, aliases, groups", []string{
		`CREATE TABLE IF NOT EXISTS dialplan (
			id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			dpid        BIGINT NOT NULL,
			pr          BIGINT NOT NULL,
			match_op    VARBINARY(8) NOT NULL,
			match_exp   VARBINARY(512) NOT NULL,
			match_flags BIGINT NOT NULL,
			subst_exp   BLOB NOT NULL,
			repl_exp    BLOB NOT NULL,
			attrs       BLOB NOT NULL,
			disabled    BOOLEAN NOT NULL,
			created     BIGINT NOT NULL,
			UNIQUE KEY dialplan_rule (dpid, pr, match_op, match_exp, match_flags)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS aliases (
			alias_username VARBINARY(128) NOT NULL,
			alias_domain   VARBINARY(253) NOT NULL,
			username       VARBINARY(128) NOT NULL,
			domain         VARBINARY(253) NOT NULL,
			created        BIGINT NOT NULL,
			PRIMARY KEY (alias_username, alias_domain),
			KEY aliases_target (username, domain)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS grp (
			username VARBINARY(128) NOT NULL,
			domain   VARBINARY(253) NOT NULL,
			grp      VARBINARY(64) NOT NULL,
			created  BIGINT NOT NULL,
			PRIMARY KEY (username, domain, grp),
			KEY grp_grp (grp)
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO table_versions (name, version) VALUES ('dialplan', 0), ('aliases', 0), ('grp', 0)`,
	}},
	{5, "dispatcher destinations", []string{
		`CREATE TABLE IF NOT EXISTS dispatcher (
			id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			setid       BIGINT NOT NULL,
			destination VARBINARY(255) NOT NULL,
			socket      BLOB NOT NULL,
			state       BIGINT NOT NULL,
			weight      BIGINT NOT NULL,
			priority    BIGINT NOT NULL,
			attrs       BLOB NOT NULL,
			probe_mode  BIGINT NOT NULL,
			description BLOB NOT NULL,
			created     BIGINT NOT NULL,
			UNIQUE KEY dispatcher_dest (setid, destination)
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO table_versions (name, version) VALUES ('dispatcher', 0)`,
	}},
	{6, "uac credentials and registrations", []string{
		`CREATE TABLE IF NOT EXISTS uac_credentials (
			id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			realm      VARBINARY(255) NOT NULL,
			gateway    VARBINARY(255) NOT NULL,
			username   BLOB NOT NULL,
			password   BLOB NOT NULL,
			ha1        BLOB NOT NULL,
			ha1_sha256 BLOB NOT NULL,
			created    BIGINT NOT NULL,
			UNIQUE KEY uac_credential (realm, gateway)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS uac_registrations (
			id        BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			aor       VARBINARY(512) NOT NULL,
			registrar VARBINARY(512) NOT NULL,
			proxy     BLOB NOT NULL,
			username  BLOB NOT NULL,
			password  BLOB NOT NULL,
			expires   BIGINT NOT NULL,
			contact   BLOB NOT NULL,
			created   BIGINT NOT NULL,
			UNIQUE KEY uac_registration (aor, registrar)
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO table_versions (name, version) VALUES ('uac_credentials', 0), ('uac_registrations', 0)`,
	}},
	{7, "dynamic routing: gateways, carriers, rules", []string{
		`CREATE TABLE IF NOT EXISTS dr_gateways (
			gwid        VARBINARY(64) NOT NULL PRIMARY KEY,
			type        BIGINT NOT NULL,
			address     BLOB NOT NULL,
			transport   VARBINARY(8) NOT NULL,
			strip       BIGINT NOT NULL,
			pri_prefix  BLOB NOT NULL,
			attrs       BLOB NOT NULL,
			probe_mode  BIGINT NOT NULL,
			state       BIGINT NOT NULL,
			description BLOB NOT NULL,
			created     BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS dr_carriers (
			carrierid   VARBINARY(64) NOT NULL PRIMARY KEY,
			gwlist      BLOB NOT NULL,
			flags       BIGINT NOT NULL,
			sort_alg    VARBINARY(8) NOT NULL,
			state       BIGINT NOT NULL,
			attrs       BLOB NOT NULL,
			description BLOB NOT NULL,
			created     BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS dr_rules (
			ruleid      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			groupid     BLOB NOT NULL,
			prefix      VARBINARY(64) NOT NULL,
			timerec     BLOB NOT NULL,
			priority    BIGINT NOT NULL,
			routeid     BLOB NOT NULL,
			gwlist      BLOB NOT NULL,
			sort_alg    VARBINARY(8) NOT NULL,
			attrs       BLOB NOT NULL,
			description BLOB NOT NULL,
			created     BIGINT NOT NULL
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO table_versions (name, version) VALUES ('dr_gateways', 0), ('dr_carriers', 0), ('dr_rules', 0)`,
	}},
	{8, "dialogs", []string{
		// The dialog module's confirmed calls (see SQLite's step 8); the
		// Call-ID is indexed on its first 255 bytes.
		`CREATE TABLE IF NOT EXISTS dialog (
			dlg_id           BIGINT NOT NULL PRIMARY KEY,
			callid           BLOB NOT NULL,
			from_uri         BLOB NOT NULL,
			from_tag         BLOB NOT NULL,
			to_uri           BLOB NOT NULL,
			to_tag           BLOB NOT NULL,
			from_hdr         BLOB NOT NULL,
			to_hdr           BLOB NOT NULL,
			callee_from_hdr  BLOB NOT NULL,
			callee_to_hdr    BLOB NOT NULL,
			caller_cseq      BIGINT NOT NULL,
			callee_cseq      BIGINT NOT NULL,
			cseq_offset      BIGINT NOT NULL,
			caller_route_set BLOB NOT NULL,
			callee_route_set BLOB NOT NULL,
			caller_contact   BLOB NOT NULL,
			callee_contact   BLOB NOT NULL,
			caller_hop       BLOB NOT NULL,
			callee_hop       BLOB NOT NULL,
			state            BIGINT NOT NULL,
			start_time       BIGINT NOT NULL,
			answer_time      BIGINT NOT NULL,
			timeout          BIGINT NOT NULL,
			code             BIGINT NOT NULL,
			phrase           BLOB NOT NULL,
			profiles         BLOB NOT NULL,
			script_flags     BIGINT NOT NULL,
			vars             BLOB NOT NULL,
			updated          BIGINT NOT NULL,
			KEY dialog_callid (callid(255))
		) ENGINE=InnoDB`,
	}},
	{9, "accounting: acc, missed_calls", []string{
		`CREATE TABLE IF NOT EXISTS acc (` + myCDRColumnsDDL + `,
			KEY acc_start (start_ms),
			KEY acc_from_user (from_user, start_ms),
			KEY acc_to_user (to_user, start_ms),
			KEY acc_call_id (call_id)
		) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS missed_calls (` + myCDRColumnsDDL + `,
			KEY missed_calls_start (start_ms),
			KEY missed_calls_from_user (from_user, start_ms),
			KEY missed_calls_to_user (to_user, start_ms),
			KEY missed_calls_call_id (call_id)
		) ENGINE=InnoDB`,
	}},
	{10, "panel users", []string{
		`CREATE TABLE IF NOT EXISTS panel_users (
			name    VARBINARY(64) NOT NULL PRIMARY KEY,
			hash    BLOB NOT NULL,
			role    VARBINARY(16) NOT NULL,
			created BIGINT NOT NULL,
			updated BIGINT NOT NULL
		) ENGINE=InnoDB`,
	}},
	{11, "rtpengine instances", rtpengineMySQL}, // store/rtpengine.go
	// A server database's indexes cost the database server, not the
	// proxy: the per-user ones stay (SQLite's step 12 says why it drops
	// them).
	{12, "accounting: per-user indexes on server databases only", []string{}},
	{13, "dialog: one data column on SQLite", []string{}}, // see PostgreSQL's step 13
	{14, "accounting: one data column on SQLite", []string{}},
	{15, "panel sessions", []string{
		`CREATE TABLE IF NOT EXISTS panel_sessions (
			id           VARBINARY(64) NOT NULL PRIMARY KEY,
			name         VARBINARY(64) NOT NULL,
			csrf         VARBINARY(64) NOT NULL,
			password_tag VARBINARY(32) NOT NULL,
			created      BIGINT NOT NULL,
			expires      BIGINT NOT NULL,
			KEY panel_sessions_expires (expires)
		) ENGINE=InnoDB`,
	}},
	// One statement: MySQL commits it whole or not at all (a column of
	// its own each would fail the step run again as duplicate).
	{16, "dialog: the Contacts as relayed", []string{
		`ALTER TABLE dialog ADD COLUMN caller_contact_sent BLOB NULL, ADD COLUMN callee_contact_sent BLOB NULL`,
	}},
}

// myCDRColumnsDDL are the columns of the acc and missed_calls tables
// (MySQL); indexed text is VARBINARY of MaxCDRText bytes.
const myCDRColumnsDDL = `
	id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	call_id     VARBINARY(2048) NOT NULL,
	from_tag    BLOB NOT NULL,
	to_tag      BLOB NOT NULL,
	from_uri    BLOB NOT NULL,
	from_user   VARBINARY(2048) NOT NULL,
	to_uri      BLOB NOT NULL,
	to_user     VARBINARY(2048) NOT NULL,
	caller      BLOB NOT NULL,
	start_ms    BIGINT NOT NULL,
	answer_ms   BIGINT NOT NULL,
	end_ms      BIGINT NOT NULL,
	duration_ms BIGINT NOT NULL,
	sip_code    BIGINT NOT NULL,
	sip_reason  BLOB NOT NULL,
	end_reason  BLOB NOT NULL,
	ended_by    BLOB NOT NULL,
	extra       BLOB NOT NULL`
