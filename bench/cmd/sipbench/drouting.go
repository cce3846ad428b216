package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"switchboard/store"
)

// The drouting scenario: calls to numbers routed by 10,000 prefix rules to
// one gateway, the sipp UAS. Both servers get the same rules, Switchboard
// in its store (the drouting module's tables), Kamailio in an SQLite file
// its drouting module reads through db_sqlite.
const (
	droutingRules   = 10_000
	droutingNumbers = 1_000 // numbers the calls cycle through
	droutingSpread  = 100   // prefixes those numbers are spread over
	numberLength    = 12    // digits of a number (a prefix and more)
)

// droutingPrefixes returns n distinct prefixes shaped like a rate table: a
// country code of 1 to 3 digits and 2 to 6 more digits, digits only (the
// form both servers' tries take without question), never starting with 0.
// The sequence is fixed, so every run and both servers route alike.
func droutingPrefixes(n int) []string {
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	x := uint64(0x9E3779B97F4A7C15)
	for len(out) < n {
		// xorshift64: deterministic, no dependence on math/rand's seeding.
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		digits := strconv.FormatUint(x%1e12+1e12, 10)[1:]
		p := digits[:3+int(x>>40)%7]
		if p[0] == '0' || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

// droutingCallNumbers returns the numbers the calls dial: n numbers of
// numberLength digits, each a prefix of the table followed by digits,
// spread evenly over spread prefixes of the table (every len/spread-th).
func droutingCallNumbers(prefixes []string, n, spread int) []string {
	step := len(prefixes) / spread
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		p := prefixes[(i%spread)*step]
		tail := strconv.Itoa(1e12 + i*7919)[1:]
		out = append(out, p+tail[:numberLength-len(p)])
	}
	return out
}

// longestRule returns the longest prefix of number among prefixes, "" when
// none: what both servers' lookups must find.
func longestRule(prefixes map[string]bool, number string) string {
	for l := len(number); l > 0; l-- {
		if prefixes[number[:l]] {
			return number[:l]
		}
	}
	return ""
}

// writeNumbers writes the sipp injection file of the numbers called.
func (b *bench) writeNumbers() (string, error) {
	path := filepath.Join(b.work, "numbers.csv")
	var sb strings.Builder
	sb.WriteString("SEQUENTIAL\n")
	for _, n := range droutingCallNumbers(droutingPrefixes(droutingRules), droutingNumbers, droutingSpread) {
		sb.WriteString(n + ";\n")
	}
	return path, os.WriteFile(path, []byte(sb.String()), 0o644)
}

// fillSwitchboardDrouting writes the gateway (the UAS on 127.0.0.1:gwPort)
// and the rules into the store the server will open; the drouting module
// loads them when it starts.
func fillSwitchboardDrouting(dir string, gwPort int) error {
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	gw := store.DRGateway{GWID: "gw1", Address: "127.0.0.1:" + strconv.Itoa(gwPort)}
	if err := st.AddDRGateways(ctx, []store.DRGateway{gw}, true); err != nil {
		return fmt.Errorf("switchboard store: %w", err)
	}
	prefixes := droutingPrefixes(droutingRules)
	rules := make([]store.DRRule, len(prefixes))
	for i, p := range prefixes {
		rules[i] = store.DRRule{Groups: "0", Prefix: p, GWList: "gw1"}
	}
	if err := st.AddDRRules(ctx, rules, true); err != nil {
		return fmt.Errorf("switchboard store: %w", err)
	}
	return nil
}

// fillKamailioDrouting creates the SQLite database Kamailio's drouting
// module reads through db_sqlite: the version table with the drouting
// tables' schema versions (dr_gateways 3, dr_rules 3, dr_gw_lists 1,
// dr_groups 2), the gateway (gwid 1, the UAS on 127.0.0.1:gwPort) and the
// same rules as Switchboard's, in group 0, always applying (timerec "").
func fillKamailioDrouting(path string, gwPort int) error {
	os.Remove(path)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{
		`CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL)`,
		`INSERT INTO version VALUES ('dr_gateways', 3), ('dr_rules', 3), ('dr_gw_lists', 1), ('dr_groups', 2)`,
		`CREATE TABLE dr_gateways (gwid INTEGER PRIMARY KEY NOT NULL, type INTEGER DEFAULT 0 NOT NULL,
		  address VARCHAR(128) NOT NULL, strip INTEGER DEFAULT 0 NOT NULL, pri_prefix VARCHAR(64) DEFAULT NULL,
		  attrs VARCHAR(255) DEFAULT NULL, description VARCHAR(128) DEFAULT '' NOT NULL)`,
		`CREATE TABLE dr_rules (ruleid INTEGER PRIMARY KEY NOT NULL, groupid VARCHAR(255) NOT NULL,
		  prefix VARCHAR(64) NOT NULL, timerec VARCHAR(255) NOT NULL, priority INTEGER DEFAULT 0 NOT NULL,
		  routeid VARCHAR(64) NOT NULL, gwlist VARCHAR(255) NOT NULL, description VARCHAR(128) DEFAULT '' NOT NULL)`,
		`CREATE TABLE dr_gw_lists (id INTEGER PRIMARY KEY NOT NULL, gwlist VARCHAR(255) NOT NULL,
		  description VARCHAR(128) DEFAULT '' NOT NULL)`,
		`CREATE TABLE dr_groups (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) NOT NULL,
		  domain VARCHAR(128) DEFAULT '' NOT NULL, groupid INTEGER DEFAULT 0 NOT NULL,
		  description VARCHAR(128) DEFAULT '' NOT NULL)`,
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("kamailio drouting db: %w", err)
		}
	}
	if _, err := db.Exec(`INSERT INTO dr_gateways (gwid, address, strip, pri_prefix) VALUES (1, ?, 0, '')`,
		"127.0.0.1:"+strconv.Itoa(gwPort)); err != nil {
		return fmt.Errorf("kamailio drouting db: %w", err)
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	ins, err := tx.Prepare(`INSERT INTO dr_rules (groupid, prefix, timerec, priority, routeid, gwlist) VALUES ('0', ?, '', 0, '0', '1')`)
	if err != nil {
		tx.Rollback()
		return err
	}
	for _, p := range droutingPrefixes(droutingRules) {
		if _, err := ins.Exec(p); err != nil {
			tx.Rollback()
			return fmt.Errorf("kamailio drouting db: %w", err)
		}
	}
	return tx.Commit()
}

// droutingStep is a rung of calls to the numbers, through the rules, to
// the gateway the server was given (s.uasPort).
func (b *bench) droutingStep(s *server, rate, n int) step {
	return b.callRun(s, rate, n, s.uasPort, b.hold, "-sf", b.scenarioFile("uac_call_user.xml"),
		"-inf", b.numbers, "-key", "domain", benchDomain)
}
