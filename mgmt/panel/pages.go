package panel

// A Page is a table the panel shows (the result of one read-only
// command) with the forms that change it. Pages are data: adding a
// module's page is adding an entry here, and each form names the
// management command it runs and the arguments it sends, exactly as
// `switchboard ctl CMD '{...}'` would.
type Page struct {
	Slug, Title string
	Intro       string
	// List is the read-only command whose result is the table (a page
	// view is a GET: the panel refuses to run a List that changes
	// anything); Filters
	// are its arguments, read from the query string (one command per
	// page view). Search filters the rows by a substring in any cell.
	List    string
	Filters []Field
	Search  bool
	// Scalar names the column of a list of plain values (domains.list).
	Scalar string
	// Columns are the result's fields shown, in order; empty: all, in
	// the order the command gives them.
	Columns []string
	// Forms act on the page (add, change); RowForms on one row, their
	// hidden fields taken from the row's cells (Field.From).
	Forms    []Form
	RowForms []Form
	// RowLinks lead from a row to another page, with a cell as argument.
	RowLinks []RowLink
	// CSV offers the table as CSV (cdrs.csv).
	CSV bool
}

// Form runs one management command with the fields as its arguments. A
// user sees the forms whose command their role may run: a read-only user
// the read-only ones (look-ups, a caller's counters), an admin all.
type Form struct {
	ID, Title, Cmd string
	Submit         string
	Fields         []Field
	// Confirm asks before sending (deletions).
	Confirm string
	// If shows a row form only on the rows whose cell If has a value:
	// rtpengine's "Delete" on the table's rows, not on the instances of
	// the configuration file.
	If string
}

// Field is one argument of a command. Kind is text, password, int,
// bool, select, hidden (a row form's cell) or const (Value). Empty optional fields are
// not sent, so the command's default applies as in ctl.
type Field struct {
	Name, Label, Kind string
	Required          bool
	Placeholder, Help string
	Options           []string
	// From is the column of the row whose value a row form sends.
	From string
	// Value is what a const field always sends.
	Value string
	// Number sends a hidden field's cell as a JSON number, for commands
	// that take the row's id or set as one (uac.credentials.del,
	// rtpengine.disable).
	Number bool
}

// RowLink is a link from a row: Href + url-escaped cell From.
type RowLink struct {
	Label, Href, From string
}

func text(name, label, placeholder string) Field {
	return Field{Name: name, Label: label, Kind: "text", Placeholder: placeholder}
}
func req(f Field) Field { f.Required = true; return f }
func integer(name, label, placeholder string) Field {
	return Field{Name: name, Label: label, Kind: "int", Placeholder: placeholder}
}
func hidden(name, from string) Field {
	return Field{Name: name, Kind: "hidden", From: from, Required: true}
}
func hiddenNumber(name, from string) Field {
	f := hidden(name, from)
	f.Number = true
	return f
}
func selectOf(name, label string, options ...string) Field {
	return Field{Name: name, Label: label, Kind: "select", Options: options}
}

// fraudFields are the fields of a fraud rule after first (its key).
func fraudFields(first ...Field) []Field {
	f := append(first, text("prefix", "Prefix", "0900"),
		text("start_hour", "From", "00:00"), text("end_hour", "Until", "23:59"), text("days", "Days", "Mon-Fri"))
	for _, c := range []struct{ name, label string }{
		{"cpm", "Calls per minute"}, {"total_calls", "Calls per day"},
		{"concurrent_calls", "Calls at once"}, {"sequential_calls", "Calls in a row to one number"},
	} {
		f = append(f, integer(c.name+"_warning", c.label+": warning", "0"), integer(c.name+"_critical", c.label+": critical", "0"))
	}
	return f
}

// blank drops the placeholders after the first field: in a form that
// changes only the fields filled in, a placeholder would read as a value.
func blank(fs []Field) []Field {
	for i := 1; i < len(fs); i++ {
		fs[i].Placeholder = ""
	}
	return fs
}

// Pages are the panel's pages after the dashboard, in menu order.
var Pages = []*Page{
	{
		Slug: "subscribers", Title: "Subscribers",
		Intro: "Subscribers and their credentials (switchboard user; commands users.*).",
		List:  "users.list", Search: true,
		Filters: []Field{text("domain", "Domain", "example.com")},
		Forms: []Form{
			{ID: "add", Title: "Add a subscriber", Cmd: "users.add", Submit: "Add", Fields: []Field{
				req(text("user", "Subscriber (user@domain)", "alice@example.com")),
				req(Field{Name: "password", Label: "Password", Kind: "password"}),
				text("email", "E-mail", ""),
			}},
			{ID: "passwd", Title: "Change a password", Cmd: "users.passwd", Submit: "Change password", Fields: []Field{
				req(text("user", "Subscriber (user@domain)", "alice@example.com")),
				req(Field{Name: "password", Label: "New password", Kind: "password"}),
			}},
		},
		RowForms: []Form{{ID: "del", Cmd: "users.del", Submit: "Delete", Confirm: "Delete this subscriber?", Fields: []Field{hidden("user", "user")}}},
		RowLinks: []RowLink{{Label: "Registrations", Href: "/ui/registrations?aor=", From: "user"}},
	},
	{
		Slug: "domains", Title: "Domains",
		Intro: "The domains served from the store (switchboard domain; domains.*).",
		List:  "domains.list", Scalar: "domain", Search: true,
		Forms:    []Form{{ID: "add", Title: "Add a domain", Cmd: "domains.add", Submit: "Add", Fields: []Field{req(text("domain", "Domain", "example.com"))}}},
		RowForms: []Form{{ID: "del", Cmd: "domains.del", Submit: "Delete", Confirm: "Delete this domain?", Fields: []Field{hidden("domain", "domain")}}},
	},
	{
		Slug: "registrations", Title: "Registrations",
		Intro: "Contacts registered now (registrations.list). Dropping one removes the binding at once.",
		List:  "registrations.list", Search: true,
		Filters:  []Field{text("aor", "Address of record", "alice@example.com")},
		RowForms: []Form{{ID: "drop", Cmd: "registrations.delete", Submit: "Drop", Confirm: "Drop this registration?", Fields: []Field{hidden("aor", "aor"), hidden("contact", "contact")}}},
	},
	{
		Slug: "aliases", Title: "Aliases",
		Intro: "Aliases (DIDs) that reach a subscriber: a call to the alias goes to the subscriber (aliases.*; OpenSIPS alias_db). Changes are in use when the form returns.",
		List:  "aliases.list", Search: true,
		Filters: []Field{text("domain", "Domain", "example.com")},
		Forms: []Form{
			{ID: "add", Title: "Add an alias", Cmd: "aliases.add", Submit: "Add", Fields: []Field{
				req(text("alias", "Alias (number@domain)", "+33123456789@example.com")),
				req(text("target", "Subscriber (user@domain)", "alice@example.com")),
			}},
			{ID: "lookup", Title: "Look up an alias in use", Cmd: "aliases.lookup", Submit: "Look up", Fields: []Field{
				req(text("alias", "Alias (number@domain)", "+33123456789@example.com")),
			}},
			{ID: "reload", Title: "Load the table from the store now", Cmd: "aliases.reload", Submit: "Reload"},
		},
		RowForms: []Form{{ID: "del", Cmd: "aliases.del", Submit: "Delete", Confirm: "Delete this alias?", Fields: []Field{hidden("alias", "alias")}}},
		RowLinks: []RowLink{{Label: "Registrations", Href: "/ui/registrations?aor=", From: "target"}},
	},
	{
		Slug: "groups", Title: "Groups",
		Intro: "Subscribers' group memberships, which routes check with is_user_in (groups.*; OpenSIPS group). Changes are in use when the form returns.",
		List:  "groups.list", Search: true,
		Filters: []Field{text("group", "Group", "pstn")},
		Forms: []Form{
			{ID: "add", Title: "Put a subscriber in a group", Cmd: "groups.add", Submit: "Add", Fields: []Field{
				req(text("user", "Subscriber (user@domain)", "alice@example.com")), req(text("group", "Group", "pstn")),
			}},
			{ID: "check", Title: "Check a membership in use", Cmd: "groups.check", Submit: "Check", Fields: []Field{
				req(text("user", "Subscriber (user@domain)", "alice@example.com")), req(text("group", "Group", "pstn")),
			}},
			{ID: "reload", Title: "Load the table from the store now", Cmd: "groups.reload", Submit: "Reload"},
		},
		RowForms: []Form{{ID: "del", Cmd: "groups.del", Submit: "Remove", Confirm: "Take this subscriber out of the group?", Fields: []Field{hidden("user", "user"), hidden("group", "group")}}},
	},
	{
		Slug: "permissions", Title: "Address ACLs",
		Intro: "The address table of the permissions module (permissions.*): group 1 are the trusted gateways.",
		List:  "permissions.list", Search: true,
		Filters: []Field{integer("group", "Group", "1")},
		Forms: []Form{{ID: "add", Title: "Add an address", Cmd: "permissions.add", Submit: "Add", Fields: []Field{
			req(text("ip", "Address or network", "192.0.2.0/24")),
			integer("group", "Group", "1"), integer("port", "Port (0: any)", "0"),
			selectOf("proto", "Protocol", "", "any", "udp", "tcp", "tls"),
			text("pattern", "Pattern", ""), text("info", "Note", ""),
		}}},
		RowForms: []Form{{ID: "del", Cmd: "permissions.del", Submit: "Delete", Confirm: "Delete this entry?", Fields: []Field{hiddenNumber("id", "id")}}},
	},
	{
		Slug: "bans", Title: "Bans",
		Intro: "Sources banned by the pike module for floods, authentication failures or by hand (pike.*).",
		List:  "pike.bans", Search: true,
		Forms: []Form{{ID: "ban", Title: "Ban a source", Cmd: "pike.ban", Submit: "Ban", Fields: []Field{
			req(text("address", "Address", "192.0.2.1")), text("duration", "Duration", "1h"),
		}}},
		RowForms: []Form{{ID: "unban", Cmd: "pike.unban", Submit: "Lift", Fields: []Field{hidden("address", "source")}}},
	},
	{
		Slug: "locks", Title: "Account locks",
		Intro: "Accounts locked by the authban module after wrong passwords from many addresses (authban.*).",
		List:  "authban.locks", Search: true,
		Forms: []Form{{ID: "lock", Title: "Lock an account", Cmd: "authban.lock", Submit: "Lock", Fields: []Field{
			req(text("user", "Subscriber (user@domain)", "alice@example.com")), text("duration", "Duration", "1h"),
		}}},
		RowForms: []Form{{ID: "unlock", Cmd: "authban.unlock", Submit: "Unlock", Fields: []Field{hidden("user", "account")}}},
	},
	{
		Slug: "fraud", Title: "Fraud rules",
		Intro: "Thresholds per profile and number prefix: calls per minute, per day, in progress and in a row to one number (fraud.rules.*; OpenSIPS fraud_detection). A threshold of 0 is off.",
		List:  "fraud.rules", Search: true,
		Filters: []Field{integer("profile", "Profile", "1")},
		Forms: []Form{
			{ID: "add", Title: "Add a rule", Cmd: "fraud.rules.add", Submit: "Add", Fields: fraudFields(req(integer("profile", "Profile", "1")))},
			{ID: "set", Title: "Change a rule (the fields filled in; the others stay)", Cmd: "fraud.rules.set", Submit: "Change",
				Fields: blank(fraudFields(req(integer("id", "Rule ID", "3")), integer("profile", "Profile", "")))},
			{ID: "reload", Title: "Load the rules from the store now", Cmd: "fraud.rules.reload", Submit: "Reload"},
		},
		RowForms: []Form{{ID: "del", Cmd: "fraud.rules.del", Submit: "Delete", Confirm: "Delete this rule?", Fields: []Field{hidden("id", "id")}}},
	},
	{
		Slug: "fraud-events", Title: "Fraud events",
		Intro: "Recent calls that reached a fraud threshold, newest first (fraud.events). Resetting a caller clears their counters and lifts a block at once.",
		List:  "fraud.events", Search: true,
		Filters: []Field{selectOf("level", "Level", "", "warning", "critical"), text("user", "Caller (user@domain)", "alice@example.com")},
		Forms: []Form{
			{ID: "stats", Title: "A caller's counters", Cmd: "fraud.stats", Submit: "Show", Fields: []Field{req(text("user", "Caller (user@domain)", "alice@example.com"))}},
			{ID: "reset", Title: "Reset a caller's counters", Cmd: "fraud.reset", Submit: "Reset", Confirm: "Clear this caller's counters?", Fields: []Field{req(text("user", "Caller (user@domain)", "alice@example.com"))}},
		},
		RowForms: []Form{
			{ID: "rowstats", Cmd: "fraud.stats", Submit: "Counters", Fields: []Field{hidden("user", "user")}},
			{ID: "rowreset", Cmd: "fraud.reset", Submit: "Reset caller", Confirm: "Clear this caller's counters?", Fields: []Field{hidden("user", "user")}},
		},
	},
	{
		Slug: "dialplan", Title: "Dialplan",
		Intro: "Number translation rules (dialplan.*).",
		List:  "dialplan.list", Search: true,
		Filters: []Field{integer("dpid", "Dialplan", "1")},
		Forms: []Form{{ID: "add", Title: "Add a rule", Cmd: "dialplan.add", Submit: "Add", Fields: []Field{
			req(integer("dpid", "Dialplan", "1")), integer("pr", "Priority", "0"),
			selectOf("match_op", "Match", "prefix", "regex", "exact"),
			req(text("match_exp", "Match expression", "0")), text("subst_exp", "Substitution expression", ""),
			text("repl_exp", "Replacement", `+33\2`), text("attrs", "Attributes", ""),
		}}},
		RowForms: []Form{{ID: "del", Cmd: "dialplan.del", Submit: "Delete", Confirm: "Delete this rule?", Fields: []Field{hidden("id", "id")}}},
	},
	{
		Slug: "gateways", Title: "Gateways",
		Intro: "Dynamic routing gateways with their state (drouting.gw.*).",
		List:  "drouting.gw.list", Search: true,
		Forms: []Form{{ID: "add", Title: "Add a gateway", Cmd: "drouting.gw.add", Submit: "Add", Fields: []Field{
			req(text("gwid", "Gateway ID", "gw1")), req(text("address", "Address", "192.0.2.10:5060")),
			selectOf("transport", "Transport", "", "udp", "tcp", "tls"), integer("strip", "Strip digits", "0"),
			text("pri_prefix", "Prefix to add", ""), integer("probe_mode", "Probe mode (0-2)", "0"),
			text("description", "Description", ""),
		}}},
		RowForms: []Form{
			{ID: "disable", Cmd: "drouting.gw.set", Submit: "Disable", Fields: []Field{hidden("gwid", "gwid"), {Name: "state", Kind: "const", Value: "1"}}},
			{ID: "enable", Cmd: "drouting.gw.set", Submit: "Enable", Fields: []Field{hidden("gwid", "gwid"), {Name: "state", Kind: "const", Value: "0"}}},
			{ID: "del", Cmd: "drouting.gw.del", Submit: "Delete", Confirm: "Delete this gateway?", Fields: []Field{hidden("gwid", "gwid")}},
		},
	},
	{
		Slug: "carriers", Title: "Carriers",
		Intro: "Dynamic routing carriers: weighted or ordered lists of gateways (drouting.carrier.*).",
		List:  "drouting.carrier.list", Search: true,
		Forms: []Form{{ID: "add", Title: "Add a carrier", Cmd: "drouting.carrier.add", Submit: "Add", Fields: []Field{
			req(text("carrierid", "Carrier ID", "cr1")), req(text("gwlist", "Gateways", "gw1=70,gw2=30")),
			selectOf("sort_alg", "Order", "", "N", "W", "R"), integer("flags", "Flags (1: first usable only)", "0"),
			text("description", "Description", ""),
		}}},
		RowForms: []Form{{ID: "del", Cmd: "drouting.carrier.del", Submit: "Delete", Confirm: "Delete this carrier?", Fields: []Field{hidden("carrierid", "carrierid")}}},
	},
	{
		Slug: "rules", Title: "Routing rules",
		Intro: "Dynamic routing rules: a group and a prefix to gateways and carriers (drouting.rule.*).",
		List:  "drouting.rule.list", Search: true,
		Filters: []Field{integer("group", "Group", "0"), text("prefix", "Prefix", "49")},
		Forms: []Form{{ID: "add", Title: "Add a rule", Cmd: "drouting.rule.add", Submit: "Add", Fields: []Field{
			req(text("groupid", "Groups", "0")), text("prefix", "Prefix", "49"), req(text("gwlist", "Gateways and carriers", "gw1,#cr1")),
			integer("priority", "Priority", "0"), text("timerec", "Time", "Mon-Fri 08:00-17:59"),
			selectOf("sort_alg", "Order", "", "N", "W", "R"), text("description", "Description", ""),
		}}},
		RowForms: []Form{{ID: "del", Cmd: "drouting.rule.del", Submit: "Delete", Confirm: "Delete this rule?", Fields: []Field{hidden("ruleid", "ruleid")}}},
	},
	{
		Slug: "dispatcher", Title: "Dispatcher",
		Intro: "Dispatcher sets: destinations in use with their state and counters (dispatcher.*).",
		List:  "dispatcher.list", Search: true,
		Filters: []Field{integer("set", "Set", "1")},
		Forms: []Form{{ID: "add", Title: "Add a destination", Cmd: "dispatcher.add", Submit: "Add", Fields: []Field{
			req(integer("set", "Set", "1")), req(text("destination", "Destination", "sip:192.0.2.10:5060")),
			integer("weight", "Weight", "1"), integer("priority", "Priority", "0"),
			selectOf("state", "State", "", "active", "inactive", "probing"), integer("probe_mode", "Probe mode", "0"),
			text("description", "Description", ""),
		}}},
		RowForms: []Form{
			{ID: "inactive", Cmd: "dispatcher.set_state", Submit: "Set inactive", Fields: []Field{hidden("set", "set"), hidden("destination", "destination"), {Name: "state", Kind: "const", Value: "inactive"}}},
			{ID: "active", Cmd: "dispatcher.set_state", Submit: "Set active", Fields: []Field{hidden("set", "set"), hidden("destination", "destination"), {Name: "state", Kind: "const", Value: "active"}}},
			{ID: "del", Cmd: "dispatcher.del", Submit: "Delete", Confirm: "Delete this destination?", Fields: []Field{hidden("id", "id")}},
		},
	},
	{
		Slug: "trunks", Title: "Trunk credentials",
		Intro: "Credentials the proxy answers a carrier's challenge with, by realm, gateway or both (uac.credentials.*; OpenSIPS uac_auth). Secrets are never shown, only which kind is stored.",
		List:  "uac.credentials.list", Search: true,
		Forms: []Form{
			{ID: "add", Title: "Add a credential", Cmd: "uac.credentials.add", Submit: "Add", Fields: []Field{
				text("realm", "Realm", "carrier.example"), text("gateway", "Gateway", "192.0.2.10:5060"),
				req(text("username", "Username", "trunk1")),
				{Name: "password", Label: "Password", Kind: "password"},
				{Name: "ha1", Label: "or HA1 (MD5, needs a realm)", Kind: "password"},
				{Name: "ha1_sha256", Label: "HA1 SHA-256", Kind: "password"},
			}},
			{ID: "reload", Title: "Load credentials and registrations from the store now", Cmd: "uac.reload", Submit: "Reload"},
		},
		RowForms: []Form{{ID: "del", Cmd: "uac.credentials.del", Submit: "Delete", Confirm: "Delete this credential?", Fields: []Field{hiddenNumber("id", "id")}}},
	},
	{
		Slug: "uac-registrations", Title: "Carrier registrations",
		Intro: "Registrations of the proxy to carriers, with their state now: registered until when, or failed and the next attempt (uac.registrations; OpenSIPS uac_registrant). Passwords are never shown.",
		List:  "uac.registrations", Search: true,
		Forms: []Form{
			{ID: "add", Title: "Register to a carrier", Cmd: "uac.registrations.add", Submit: "Add", Fields: []Field{
				req(text("aor", "Address of record", "sip:+4930123@carrier.example")), req(text("registrar", "Registrar", "carrier.example")),
				text("proxy", "Outbound proxy", "192.0.2.10:5060"), text("username", "Username (default: the AOR's user)", ""),
				{Name: "password", Label: "Password", Kind: "password"}, integer("expires", "Expires (s)", "3600"),
				text("contact", "Contact", ""),
			}},
			{ID: "reload", Title: "Load credentials and registrations from the store now", Cmd: "uac.reload", Submit: "Reload"},
		},
		RowForms: []Form{{ID: "del", Cmd: "uac.registrations.del", Submit: "Stop", Confirm: "Unregister and delete this registration?", Fields: []Field{hiddenNumber("id", "id")}}},
	},
	{
		Slug: "rtpengine", Title: "Media relays",
		Intro: "rtpengine instances by set, from the configuration and the rtpengine table, with their state and sessions (rtpengine.*; OpenSIPS rtpengine_show). Disable takes one out of service until enabled.",
		List:  "rtpengine.list", Search: true,
		Forms: []Form{
			{ID: "add", Title: "Add an instance to the table", Cmd: "rtpengine.add", Submit: "Add", Fields: []Field{
				req(text("socket", "Control socket", "udp:192.0.2.20:2223")), integer("set", "Set", "0"), integer("weight", "Weight (1-1000)", "1"),
				{Name: "disabled", Label: "Disabled until enabled", Kind: "bool"}, text("description", "Description", ""),
			}},
			{ID: "reload", Title: "Read the table now", Cmd: "rtpengine.reload", Submit: "Reload"},
		},
		RowForms: []Form{
			{ID: "disable", Cmd: "rtpengine.disable", Submit: "Disable", Confirm: "Take this instance out of service?", Fields: []Field{hidden("instance", "url"), hiddenNumber("set", "set")}},
			{ID: "enable", Cmd: "rtpengine.enable", Submit: "Enable", Fields: []Field{hidden("instance", "url"), hiddenNumber("set", "set")}},
			{ID: "del", Cmd: "rtpengine.del", Submit: "Delete", Confirm: "Delete this instance from the table?", If: "id", Fields: []Field{hiddenNumber("id", "id")}},
		},
	},
	{
		Slug: "dialogs", Title: "Calls",
		Intro: "Dialogs in progress (dialog.list). Ending one sends a BYE to each side, or a CANCEL while it rings.",
		List:  "dialog.list", Search: true,
		Filters:  []Field{text("user", "User", "alice"), integer("limit", "Limit", "100")},
		Columns:  []string{"id", "state", "from", "to", "caller", "callee", "start", "duration_s", "profiles"},
		RowForms: []Form{{ID: "end", Cmd: "dialog.end", Submit: "End call", Confirm: "End this call?", Fields: []Field{hidden("id", "id")}}},
	},
	{
		Slug: "cdrs", Title: "CDRs",
		Intro: "Call records of the acc module, newest first (acc.list).",
		List:  "acc.list", CSV: true,
		Filters: []Field{
			text("from", "From user", "alice"), text("to", "To user", "bob"), text("call_id", "Call-ID", ""),
			text("since", "Since", "24h"), text("until", "Until", "2026-12-03 10:00"), integer("limit", "Limit", "100"),
			{Name: "missed", Label: "Missed calls", Kind: "bool"},
		},
	},
}
