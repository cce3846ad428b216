package main

import (
	"database/sql"
	"fmt"
	"os"
)

// The dialog scenario: the relay's traffic through a server that keeps a
// dialog for every call and writes a record (CDR) of it when it ends.
// Switchboard runs the calls route set (dialog and acc modules, records in
// its store, dialogs written back to it); Kamailio runs
// bench/kamailio/dialog.cfg: dlg_manage, dialogs in memory; with
// -kamailio-dialog-db (-A WITH_DB) also acc's CDRs and the dialogs into
// SQLite files through db_sqlite, which loses most of them under load (see
// the configuration), so it is off by default.

// kamailioCDRColumns are the columns of Kamailio's CDR table: acc_cdrs of
// its schema (start, end, duration) and the cdr_extra fields dialog.cfg
// names, close to what a Switchboard record holds.
var kamailioCDRColumns = []string{"callid", "from_tag", "to_tag", "from_uri", "to_uri"}

// fillKamailioDialog creates the two SQLite databases of dialog.cfg, each
// with the version table the modules check: accPath with acc_cdrs (schema
// version 2) and the extra columns of its cdr_extra, where the acc module
// writes the CDRs; dlgPath with the dialog module's dialog and dialog_vars
// (7 and 1), where it keeps the dialogs (db_mode 2, as Switchboard's
// dialog.persist writes them back). Two files and WAL journals: db_sqlite
// sets no busy timeout, so a write that finds the file locked by another
// process fails at once, and Kamailio's workers and its dialog timer are
// different processes.
func fillKamailioDialog(accPath, dlgPath string) error {
	cdrs := `CREATE TABLE acc_cdrs (id INTEGER PRIMARY KEY NOT NULL,
	  start_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
	  end_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
	  duration REAL DEFAULT 0 NOT NULL`
	for _, c := range kamailioCDRColumns {
		cdrs += fmt.Sprintf(",\n\t  %s VARCHAR(255) DEFAULT '' NOT NULL", c)
	}
	cdrs += ")"
	err := createSQLite(accPath,
		`INSERT INTO version VALUES ('acc_cdrs', 2)`,
		cdrs,
		`CREATE INDEX acc_cdrs_start_time_idx ON acc_cdrs (start_time)`)
	if err != nil {
		return fmt.Errorf("kamailio acc db: %w", err)
	}
	err = createSQLite(dlgPath,
		`INSERT INTO version VALUES ('dialog', 7), ('dialog_vars', 1)`,
		`CREATE TABLE dialog (id INTEGER PRIMARY KEY NOT NULL, hash_entry INTEGER NOT NULL, hash_id INTEGER NOT NULL,
		  callid VARCHAR(255) NOT NULL, from_uri VARCHAR(255) NOT NULL, from_tag VARCHAR(128) NOT NULL,
		  to_uri VARCHAR(255) NOT NULL, to_tag VARCHAR(128) NOT NULL, caller_cseq VARCHAR(20) NOT NULL,
		  callee_cseq VARCHAR(20) NOT NULL, caller_route_set VARCHAR(512), callee_route_set VARCHAR(512),
		  caller_contact VARCHAR(255) NOT NULL, callee_contact VARCHAR(255) NOT NULL,
		  caller_sock VARCHAR(64) NOT NULL, callee_sock VARCHAR(64) NOT NULL, state INTEGER NOT NULL,
		  start_time INTEGER NOT NULL, timeout INTEGER DEFAULT 0 NOT NULL, sflags INTEGER DEFAULT 0 NOT NULL,
		  iflags INTEGER DEFAULT 0 NOT NULL, toroute_name VARCHAR(32), req_uri VARCHAR(255) NOT NULL,
		  xdata VARCHAR(512))`,
		`CREATE INDEX dialog_hash_idx ON dialog (hash_entry, hash_id)`,
		`CREATE TABLE dialog_vars (id INTEGER PRIMARY KEY NOT NULL, hash_entry INTEGER NOT NULL,
		  hash_id INTEGER NOT NULL, dialog_key VARCHAR(128) NOT NULL, dialog_value VARCHAR(512) NOT NULL)`,
		`CREATE INDEX dialog_vars_hash_idx ON dialog_vars (hash_entry, hash_id)`)
	if err != nil {
		return fmt.Errorf("kamailio dialog db: %w", err)
	}
	return nil
}

// createSQLite creates a new SQLite file in WAL mode (kept in the file)
// with a version table and runs stmts in it.
func createSQLite(path string, stmts ...string) error {
	os.Remove(path)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts = append([]string{`PRAGMA journal_mode=WAL`,
		`CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL)`}, stmts...)
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			return err
		}
	}
	return nil
}

// countRows returns the rows of table in the SQLite database at path.
func countRows(path, table string) (int, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n)
	return n, err
}
