package store

import (
	"strings"
	"testing"
)

func TestDialplanRuleValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		ok := DialplanRule{DPID: 1, MatchOp: DialplanRegex, MatchExp: `^0(\d+)$`, ReplExp: `+33\1`}
		for _, c := range []struct {
			name  string
			edit  func(r *DialplanRule)
			words []string
		}{
			{"bad regex", func(r *DialplanRule) { r.MatchExp = `^0(\d+$` },
				[]string{"dialplan rule (dpid 1, pr 0, regex `^0(\\d+$`)", "match_exp", "missing closing )"}},
			{"PCRE lookahead", func(r *DialplanRule) { r.MatchExp = `^(?=0)\d+$`; r.ReplExp = "" }, []string{"match_exp", "RE2"}},
			{"bad subst", func(r *DialplanRule) { r.SubstExp = `[0-` }, []string{"subst_exp", "missing closing ]"}},
			{"ref past groups", func(r *DialplanRule) { r.ReplExp = `+33\2` }, []string{"repl_exp", `\2 refers to nothing`, "match_exp has 1 groups"}},
			{"ref past subst groups", func(r *DialplanRule) { r.SubstExp = `^0`; r.ReplExp = `\1` }, []string{"repl_exp", "subst_exp has 0 groups"}},
			{"dollar ref", func(r *DialplanRule) { r.ReplExp = `+33\d` }, []string{"repl_exp", `\d is not a reference`}},
			{"lone backslash", func(r *DialplanRule) { r.ReplExp = `+33\` }, []string{"repl_exp", "lone backslash"}},
			{"no op", func(r *DialplanRule) { r.MatchOp = "" }, []string{"match_op", "missing"}},
			{"fnmatch", func(r *DialplanRule) { r.MatchOp = "fnmatch" }, []string{"match_op", `"fnmatch"`}},
			{"dpid", func(r *DialplanRule) { r.DPID = -1 }, []string{"dpid", "-1"}},
			{"pr", func(r *DialplanRule) { r.Priority = -5 }, []string{"pr", "-5"}},
			{"flags", func(r *DialplanRule) { r.MatchFlags = 2 }, []string{"match_flags", "2"}},
			{"letter in prefix", func(r *DialplanRule) { r.MatchOp, r.MatchExp, r.ReplExp = DialplanPrefix, "00a", "" },
				[]string{"prefix `00a`", "match_exp", `'a'`}},
			{"prefix with case flag", func(r *DialplanRule) { r.MatchOp, r.MatchExp, r.ReplExp, r.MatchFlags = DialplanPrefix, "00", "", 1 },
				[]string{"match_flags"}},
			{"prefix ref", func(r *DialplanRule) { r.MatchOp, r.MatchExp, r.ReplExp = DialplanPrefix, "00", `+\3` },
				[]string{"repl_exp", `\3`, `\1 the prefix, \2 the rest`}},
			{"prefix subst", func(r *DialplanRule) { r.MatchOp, r.MatchExp, r.SubstExp = DialplanPrefix, "00", "^00" },
				[]string{"subst_exp", "only regex rules"}},
			{"exact ref", func(r *DialplanRule) { r.MatchOp, r.MatchExp, r.ReplExp = DialplanExact, "112", `\1` },
				[]string{"repl_exp", `\0, the input`}},
			{"empty exact", func(r *DialplanRule) { r.MatchOp, r.MatchExp = DialplanExact, "" }, []string{"match_exp", "empty"}},
			{"empty regex", func(r *DialplanRule) { r.MatchExp = "" }, []string{"match_exp", "empty"}},
			{"long key", func(r *DialplanRule) { r.MatchOp, r.MatchExp, r.ReplExp = DialplanExact, strings.Repeat("1", 129), "" },
				[]string{"match_exp", "longer than 128"}},
			{"control", func(r *DialplanRule) { r.Attrs = "a\nb" }, []string{"attrs", "control character"}},
			{"subst without repl", func(r *DialplanRule) { r.SubstExp, r.ReplExp = "^0", "" }, []string{"subst_exp", "needs a repl_exp"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := ok
				c.edit(&r)
				_, err := s.AddDialplanRule(ctx, r)
				wantErr(t, err, ErrMalformedDialplanRule, c.words...)
			})
		}
		if rules, _ := s.ListDialplanRules(ctx, -1); len(rules) != 0 {
			t.Fatalf("invalid rules stored: %+v", rules)
		}
		// What passes: the shapes the module documents.
		for _, r := range []DialplanRule{
			ok,
			{DPID: 1, MatchOp: "PREFIX", MatchExp: "0", ReplExp: `+33\2`},
			{DPID: 1, MatchOp: DialplanPrefix, MatchExp: ""}, // every input, unchanged
			{DPID: 1, MatchOp: DialplanExact, MatchExp: "112", ReplExp: `\0`, Attrs: "emergency"},
			{DPID: 1, MatchOp: DialplanRegex, MatchExp: `^00`, SubstExp: `^00`, ReplExp: `+`, MatchFlags: 1},
			{DPID: 2, MatchOp: DialplanRegex, MatchExp: `^a\\b$`, ReplExp: `x\\y`},
		} {
			if _, err := s.AddDialplanRule(ctx, r); err != nil {
				t.Errorf("%+v: %v", r, err)
			}
		}
	})
}

func TestParseDialplanRepl(t *testing.T) {
	parts, err := ParseDialplanRepl(`+33\2x\\\0`)
	if err != nil {
		t.Fatal(err)
	}
	want := []DialplanReplPart{{"+33", -1}, {"", 2}, {`x\`, -1}, {"", 0}}
	if len(parts) != len(want) {
		t.Fatalf("%+v", parts)
	}
	for i := range want {
		if parts[i] != want[i] {
			t.Fatalf("part %d: %+v, want %+v", i, parts[i], want[i])
		}
	}
	if parts, err := ParseDialplanRepl(""); err != nil || len(parts) != 0 {
		t.Fatalf("empty: %+v %v", parts, err)
	}
}

func TestDialplanRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, err := s.DialplanVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.AddDialplanRule(ctx, DialplanRule{DPID: 1, Priority: 5, MatchOp: " Prefix ", MatchExp: "00", ReplExp: `+\2`})
		if err != nil {
			t.Fatal(err)
		}
		if r.ID == 0 || r.MatchOp != DialplanPrefix || r.Created == 0 {
			t.Fatalf("stored: %+v", r)
		}
		_, err = s.AddDialplanRule(ctx, DialplanRule{DPID: 1, Priority: 5, MatchOp: DialplanPrefix, MatchExp: "00", ReplExp: "x"})
		wantErr(t, err, ErrDialplanRuleExists, "dialplan rule (dpid 1, pr 5, prefix `00`) exists already (id 1")
		// Another priority, dpid or operator is another rule.
		for _, o := range []DialplanRule{
			{DPID: 1, Priority: 6, MatchOp: DialplanPrefix, MatchExp: "00"},
			{DPID: 2, Priority: 5, MatchOp: DialplanPrefix, MatchExp: "00"},
			{DPID: 1, Priority: 5, MatchOp: DialplanExact, MatchExp: "00", Disabled: true},
		} {
			if _, err := s.AddDialplanRule(ctx, o); err != nil {
				t.Fatal(err)
			}
		}

		// A batch is all or nothing, and names the rule at fault by its place.
		batch := []DialplanRule{
			{DPID: 3, MatchOp: DialplanExact, MatchExp: "1"},
			{DPID: 3, MatchOp: DialplanRegex, MatchExp: "("},
		}
		wantErr(t, s.AddDialplanRules(ctx, batch, false), ErrMalformedDialplanRule, "rule 2 of the batch: dialplan rule (dpid 3")
		batch[1] = DialplanRule{DPID: 1, Priority: 5, MatchOp: DialplanPrefix, MatchExp: "00"}
		wantErr(t, s.AddDialplanRules(ctx, batch, false), ErrDialplanRuleExists, "rule 2 of the batch: ")
		if rules, _ := s.ListDialplanRules(ctx, 3); len(rules) != 0 {
			t.Fatalf("half a batch stored: %+v", rules)
		}

		other := db.open(t, Options{})
		if v, err := other.DialplanVersion(ctx); err != nil || v != v0+4 {
			t.Fatalf("version seen by another handle = %d, %v; want %d (4 adds; refused writes do not count)", v, err, v0+4)
		}
		all, err := other.ListDialplanRules(ctx, -1)
		if err != nil || len(all) != 4 {
			t.Fatalf("list: %+v %v", all, err)
		}
		if all[0].ID != r.ID || all[1].MatchOp != DialplanExact || !all[1].Disabled || all[2].Priority != 6 || all[3].DPID != 2 {
			t.Errorf("order (dpid, pr, id): %+v", all)
		}

		del, err := other.DeleteDialplanRule(ctx, r.ID)
		if err != nil || del.MatchExp != "00" || del.ReplExp != `+\2` {
			t.Fatalf("delete: %+v %v", del, err)
		}
		_, err = s.DeleteDialplanRule(ctx, r.ID)
		wantErr(t, err, ErrNoDialplanRule, "no dialplan rule with id 1")
		if n, err := s.DeleteDialplan(ctx, 1); n != 2 || err != nil {
			t.Fatalf("delete dpid 1: %d %v", n, err)
		}
		_, err = s.DeleteDialplan(ctx, 1)
		wantErr(t, err, ErrNoDialplanRule, "dialplan 1 has no rules")

		// Replace swaps the whole table in one write.
		v1, _ := s.DialplanVersion(ctx)
		if err := s.AddDialplanRules(ctx, []DialplanRule{{DPID: 9, MatchOp: DialplanPrefix, MatchExp: "1"}, {DPID: 9, MatchOp: DialplanPrefix, MatchExp: "2"}}, true); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.ListDialplanRules(ctx, -1); len(all) != 2 || all[0].DPID != 9 {
			t.Fatalf("after replace: %+v", all)
		}
		if v, _ := s.DialplanVersion(ctx); v != v1+1 {
			t.Errorf("replace moved the version by %d, want 1", v-v1)
		}
		// A refused replace keeps the old table.
		wantErr(t, s.AddDialplanRules(ctx, []DialplanRule{{DPID: 9, MatchOp: "x"}}, true), ErrMalformedDialplanRule)
		if all, _ := s.ListDialplanRules(ctx, -1); len(all) != 2 {
			t.Fatalf("a refused replace changed the table: %+v", all)
		}
	})
}

func TestAliases(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		s.AddDomain(ctx, "example.com")
		v0, _ := s.AliasesVersion(ctx)
		a, err := NewAlias("+33123456789@Example.COM", "alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if a, err = s.AddAlias(ctx, a); err != nil || a.AliasDomain != "example.com" || a.Created == 0 {
			t.Fatalf("add: %+v %v", a, err)
		}
		_, err = s.AddAlias(ctx, Alias{AliasUser: "+33123456789", AliasDomain: "example.com", User: "bob", Domain: "example.com"})
		wantErr(t, err, ErrAliasExists, "alias +33123456789@example.com exists already (it reaches alice@example.com)")
		_, err = s.AddAlias(ctx, Alias{AliasUser: "100", AliasDomain: "example.org", User: "bob", Domain: "example.com"})
		wantErr(t, err, ErrUnknownDomain, `alias 100@example.org: domain "example.org" is not served`)
		_, err = s.AddAlias(ctx, Alias{AliasUser: "bob", AliasDomain: "example.com", User: "bob", Domain: "example.com"})
		wantErr(t, err, ErrMalformedAlias, "points at itself")
		_, err = NewAlias("100", "bob@example.com")
		wantErr(t, err, ErrMalformedAlias, "alias:", "missing '@'")
		_, err = NewAlias("100@example.com", "bob@exa mple.com")
		wantErr(t, err, ErrMalformedAlias, "alias 100@example.com: target:")

		// Import: all or none, line numbers; replace.
		batch := []Alias{{AliasUser: "200", AliasDomain: "example.com", User: "bob", Domain: "example.com"},
			{AliasUser: "+33123456789", AliasDomain: "example.com", User: "bob", Domain: "example.com"}}
		wantErr(t, s.AddAliases(ctx, batch, false), ErrAliasExists, "alias 2 of the batch: alias +33123456789@example.com")
		if as, _ := s.ListAliases(ctx, ""); len(as) != 1 {
			t.Fatalf("half a batch stored: %+v", as)
		}
		if err := s.AddAliases(ctx, batch, true); err != nil {
			t.Fatal(err)
		}
		other := db.open(t, Options{})
		as, err := other.ListAliases(ctx, "EXAMPLE.com")
		if err != nil || len(as) != 2 || as[0].AliasUser != "+33123456789" || as[0].User != "bob" || as[1].AliasUser != "200" {
			t.Fatalf("after replace: %+v %v", as, err)
		}
		if v, _ := other.AliasesVersion(ctx); v != v0+2 {
			t.Errorf("version moved by %d, want 2", v-v0)
		}
		if d, err := other.DeleteAlias(ctx, "200@example.com"); err != nil || d.User != "bob" {
			t.Fatalf("delete: %+v %v", d, err)
		}
		_, err = s.DeleteAlias(ctx, "200@example.com")
		wantErr(t, err, ErrNoAlias, "no alias 200@example.com")
	})
}

// An operator who writes an alias with escapes (%2B33... for +33..., as
// it appears in a Request-URI) gets the alias stored decoded, the name the
// aliases module compares a request's un-escaped user with: it is the
// same alias as +33... (a duplicate, deleted by either spelling). An
// escape of a character no alias user holds ('@', '%', a space) or one
// that is not an escape is refused, the value named.
func TestEscapedAliases(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		s.AddDomain(ctx, "example.com")
		a, err := NewAlias(" %2B33123456789@example.com", "alice@example.com")
		if err != nil || a.AliasUser != "+33123456789" || a.AliasName() != "+33123456789@example.com" {
			t.Fatalf("NewAlias = %+v, %v", a, err)
		}
		// Given as a row (an import), the store decodes it too.
		a, err = s.AddAlias(ctx, Alias{AliasUser: "%2b33123456789", AliasDomain: "example.com", User: "alice", Domain: "example.com"})
		if err != nil || a.AliasUser != "+33123456789" {
			t.Fatalf("add: %+v %v", a, err)
		}
		as, err := s.ListAliases(ctx, "")
		if err != nil || len(as) != 1 || as[0].AliasUser != "+33123456789" {
			t.Fatalf("stored %+v, %v", as, err)
		}
		_, err = s.AddAlias(ctx, Alias{AliasUser: "+33123456789", AliasDomain: "example.com", User: "bob", Domain: "example.com"})
		wantErr(t, err, ErrAliasExists, "alias +33123456789@example.com exists already")
		// The target is written into the Request-URI: kept as written.
		if a, err = NewAlias("200@example.com", "bob%2Bwork@example.com"); err != nil || a.User != "bob%2Bwork" {
			t.Fatalf("target: %+v %v", a, err)
		}
		for _, b := range []struct{ alias, words string }{
			{"%40x@example.com", `alias "%40x@example.com": the escape %40 in the user stands for '@'`},
			{"%25@example.com", "stands for '%'"},
			{"a%20b@example.com", "stands for ' '"},
			{"%23100@example.com", "stands for '#'"},
			{"%2G@example.com", `"%2G" in the user is not an escape`},
			{"12%2@example.com", `"%2" in the user is not an escape`},
		} {
			_, err := NewAlias(b.alias, "alice@example.com")
			wantErr(t, err, ErrMalformedAlias, b.words)
			_, err = s.AddAlias(ctx, Alias{AliasUser: b.alias[:strings.IndexByte(b.alias, '@')], AliasDomain: "example.com", User: "alice", Domain: "example.com"})
			wantErr(t, err, ErrMalformedAlias, b.words)
		}
		if d, err := s.DeleteAlias(ctx, "%2B33123456789@example.com"); err != nil || d.AliasUser != "+33123456789" {
			t.Fatalf("delete by the escaped name: %+v %v", d, err)
		}
		// A row stored with its escapes before they were decoded (or by
		// hand) is deleted by its name as stored, the one list shows.
		for _, user := range []string{"%2B44", "%40x"} {
			must(t, s.b.AddAliases(ctx, []Alias{{AliasUser: user, AliasDomain: "example.com", User: "bob", Domain: "example.com", Created: 1}}, false))
			if d, err := s.DeleteAlias(ctx, user+"@example.com"); err != nil || d.AliasUser != user {
				t.Errorf("delete the row stored as %s: %+v %v", user, d, err)
			}
		}
		_, err = s.DeleteAlias(ctx, "%2B44@example.com")
		wantErr(t, err, ErrNoAlias, "no alias +44@example.com")
		_, err = s.DeleteAlias(ctx, "%40x@example.com")
		wantErr(t, err, ErrMalformedAlias, "stands for '@'")
	})
}

func TestGroupMembers(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.open(t, Options{})
		v0, _ := s.GroupsVersion(ctx)
		m, err := s.AddGroupMember(ctx, GroupMember{User: "alice", Domain: "Example.com", Group: "pstn"})
		if err != nil || m.Domain != "example.com" {
			t.Fatalf("add: %+v %v", m, err)
		}
		_, err = s.AddGroupMember(ctx, GroupMember{User: "alice", Domain: "example.com", Group: "pstn"})
		wantErr(t, err, ErrGroupMemberExists, `alice@example.com is in group "pstn" already`)
		for _, g := range []string{"", "int'l", strings.Repeat("g", 65)} {
			_, err = s.AddGroupMember(ctx, GroupMember{User: "alice", Domain: "example.com", Group: g})
			wantErr(t, err, ErrMalformedGroup)
		}
		_, err = s.AddGroupMember(ctx, GroupMember{User: "al ice", Domain: "example.com", Group: "pstn"})
		wantErr(t, err, ErrMalformedGroup, "al ice")
		if _, err := s.AddGroupMember(ctx, GroupMember{User: "bob", Domain: "example.com", Group: "international"}); err != nil {
			t.Fatal(err)
		}
		all, err := s.ListGroupMembers(ctx, "")
		if err != nil || len(all) != 2 || all[0].Group != "international" {
			t.Fatalf("list: %+v %v", all, err)
		}
		if pstn, _ := s.ListGroupMembers(ctx, "pstn"); len(pstn) != 1 || pstn[0].User != "alice" {
			t.Fatalf("list pstn: %+v", pstn)
		}
		if _, err := s.DeleteGroupMember(ctx, "alice@example.com", "pstn"); err != nil {
			t.Fatal(err)
		}
		_, err = s.DeleteGroupMember(ctx, "alice@example.com", "pstn")
		wantErr(t, err, ErrNoGroupMember, `alice@example.com is not in group "pstn"`)
		if v, _ := s.GroupsVersion(ctx); v != v0+3 {
			t.Errorf("version moved by %d, want 3 (two adds, one delete)", v-v0)
		}
	})
}

// A database made before the dialplan migration gets the three tables
// and keeps what it had.
func TestDialplanMigrationUpgradesOldFile(t *testing.T) {
	dir := t.TempDir()
	old, opts := openBeforeMigration(t, dir, "dialplan, aliases, groups")
	if err := New(old, opts).AddDomain(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.db.Exec(`SELECT 1 FROM dialplan`); err == nil {
		t.Fatal("the old schema already has the dialplan table")
	}
	old.Close()

	s := openT(t, dir, Options{})
	if _, err := s.AddDialplanRule(ctx, DialplanRule{DPID: 1, MatchOp: DialplanPrefix, MatchExp: "0"}); err != nil {
		t.Fatalf("dialplan table after the upgrade: %v", err)
	}
	if _, err := s.AddAlias(ctx, Alias{AliasUser: "100", AliasDomain: "example.com", User: "alice", Domain: "example.com"}); err != nil {
		t.Fatalf("aliases table after the upgrade (domain kept): %v", err)
	}
	if _, err := s.AddGroupMember(ctx, GroupMember{User: "alice", Domain: "example.com", Group: "pstn"}); err != nil {
		t.Fatalf("grp table after the upgrade: %v", err)
	}
	for _, name := range []string{"dialplan", "aliases", "grp"} {
		if v, err := s.b.TableVersion(ctx, name); err != nil || v != 1 {
			t.Errorf("version of %s = %d, %v; want 1", name, v, err)
		}
	}
}
