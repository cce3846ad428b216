package store

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
