package dialplan

import (
	"strings"
	"testing"

	"switchboard/store"
)

// e164Rules is a French provider's dialplans, written as an operator
// would (every rule passes the store's validation on the way in):
//
//	1: what subscribers dial, to E.164: 00 international, 0 national,
//	   emergency and short codes kept, premium numbers flagged first;
//	2: what a carrier delivers (national significant numbers), to E.164;
//	3: E.164 to the national format a carrier wants;
//	4: names, case-insensitive;
//	5: sed-like substitutions on part of the input.
var e164Rules = []store.DialplanRule{
	{DPID: 1, Priority: 10, MatchOp: "prefix", MatchExp: "00", ReplExp: `+\2`, Attrs: "international"},
	{DPID: 1, Priority: 10, MatchOp: "prefix", MatchExp: "0", ReplExp: `+33\2`, Attrs: "national"},
	{DPID: 1, Priority: 10, MatchOp: "prefix", MatchExp: "+", Attrs: "e164"},
	{DPID: 1, Priority: 0, MatchOp: "exact", MatchExp: "112", Attrs: "emergency"},
	{DPID: 1, Priority: 0, MatchOp: "exact", MatchExp: "15", Attrs: "emergency"},
	{DPID: 1, Priority: 0, MatchOp: "exact", MatchExp: "17", Attrs: "emergency"},
	{DPID: 1, Priority: 0, MatchOp: "exact", MatchExp: "18", Attrs: "emergency"},
	{DPID: 1, Priority: 0, MatchOp: "exact", MatchExp: "999", Attrs: "disabled", Disabled: true},
	{DPID: 1, Priority: 5, MatchOp: "regex", MatchExp: `^3\d{3}$`, Attrs: "short"},
	{DPID: 1, Priority: 1, MatchOp: "regex", MatchExp: `^08(9|99)\d{6,7}$`, ReplExp: `+33\0`, Attrs: "premium"},
	// At a worse priority than the prefixes: never reached for numbers
	// they cover.
	{DPID: 1, Priority: 20, MatchOp: "regex", MatchExp: `^(\d+)$`, ReplExp: `other-\1`},
	// A local extension, only when nothing above took it.
	{DPID: 1, Priority: 15, MatchOp: "regex", MatchExp: `^[1-9]\d{2}$`, ReplExp: `ext-\0`, Attrs: "extension"},

	{DPID: 2, MatchOp: "regex", MatchExp: `^([1-9]\d{8})$`, ReplExp: `+33\1`},
	{DPID: 2, MatchOp: "regex", MatchExp: `^(00)?(33)?0?([1-9]\d{8})$`, ReplExp: `+33\3`, Priority: 1},

	{DPID: 3, MatchOp: "prefix", MatchExp: "+33", ReplExp: `0\2`},
	{DPID: 3, MatchOp: "prefix", MatchExp: "+", ReplExp: `00\2`},

	{DPID: 4, MatchOp: "exact", MatchExp: "VoiceMail", MatchFlags: 1, ReplExp: "*98"},
	{DPID: 4, MatchOp: "exact", MatchExp: "operator", ReplExp: "0"},
	{DPID: 4, MatchOp: "regex", MatchExp: `^conf-(\d+)$`, MatchFlags: 1, ReplExp: `*7\1`},

	{DPID: 5, MatchOp: "regex", MatchExp: `^0[1-9]`, SubstExp: `^0`, ReplExp: `+33`},
	{DPID: 5, MatchOp: "regex", MatchExp: `^\*31`, SubstExp: `^\*31(\d+)$`, ReplExp: `\1`, Attrs: "clir", Priority: 1},
	{DPID: 5, MatchOp: "regex", MatchExp: `x`, SubstExp: `y+`, ReplExp: `[\0]`, Priority: 2},
}

func e164Table(t testing.TB) *table {
	t.Helper()
	rows := make([]store.DialplanRule, len(e164Rules))
	for i, r := range e164Rules {
		if err := store.CheckDialplanRule(&r); err != nil {
			t.Fatalf("rule %d: %v", i, err)
		}
		r.ID = int64(i + 1)
		rows[i] = r
	}
	tab := buildTable(rows, emptyTable, func(r *store.DialplanRule, err error) { t.Fatalf("rule %d skipped: %v", r.ID, err) })
	if len(tab.rules) != len(rows)-1 || tab.off != 1 {
		t.Fatalf("%d rules loaded, %d disabled", len(tab.rules), tab.off)
	}
	return tab
}

// TestE164Normalisation: each input of each dialplan gives the output and
// attributes the table says, by the rule the priority order picks.
func TestE164Normalisation(t *testing.T) {
	tab := e164Table(t)
	for _, c := range []struct {
		dpid      int
		in        string
		out       string // "" with attrs "": no rule matches
		attrs     string
		rule      int64 // 1-based index in e164Rules
		rationale string
	}{
		{1, "0612345678", "+33612345678", "national", 2, "national 0xxx to +33xxx"},
		{1, "0033612345678", "+33612345678", "international", 1, "00 to +, the longer prefix at equal priority"},
		{1, "0049301234567", "+49301234567", "international", 1, ""},
		{1, "+33612345678", "+33612345678", "e164", 3, "already E.164: kept"},
		{1, "112", "112", "emergency", 4, "exact, kept: no repl_exp"},
		{1, "18", "18", "emergency", 7, ""},
		{1, "999", "ext-999", "extension", 12, "the disabled exact rule is not loaded"},
		{1, "3639", "3639", "short", 9, "short code by regex at priority 5 over nothing"},
		{1, "0899123456", "+330899123456", "premium", 10, "regex at priority 1 beats the 0 prefix at 10"},
		{1, "08991234567", "+3308991234567", "premium", 10, "its second alternative"},
		{1, "0812345678", "+33812345678", "national", 2, "not premium: the prefix"},
		{1, "123", "ext-123", "extension", 12, "the regex at 15 before the one at 20"},
		{1, "45", "other-45", "", 11, "a number no rule above takes reaches the regex at 20"},
		{1, "sip-user", "", "", 0, "nothing matches"},
		{1, "", "", "", 0, "empty input"},

		{2, "612345678", "+33612345678", "", 13, "national significant number"},
		{2, "0612345678", "+33612345678", "", 14, "with the trunk 0"},
		{2, "0033612345678", "+33612345678", "", 14, "the optional groups: \\3 is the number"},
		{2, "33612345678", "+33612345678", "", 14, ""},
		{2, "12345", "", "", 0, "too short"},

		{3, "+33612345678", "0612345678", "", 15, "E.164 to national"},
		{3, "+4930123456", "004930123456", "", 16, "to international"},
		{3, "0612345678", "", "", 0, ""},

		{4, "VOICEMAIL", "*98", "", 17, "case-insensitive exact"},
		{4, "voicemail", "*98", "", 17, ""},
		{4, "Operator", "", "", 0, "case-sensitive exact"},
		{4, "operator", "0", "", 18, ""},
		{4, "CONF-42", "*742", "", 19, "case-insensitive regex"},

		{5, "0612345678", "+33612345678", "", 20, "sed: the part subst_exp matched is replaced, the rest kept"},
		{5, "*310612345678", "0612345678", "clir", 21, ""},
		{5, "axyyyb", "ax[yyy]b", "", 22, "\\0 is what subst_exp matched"},
		{5, "xab", "xab", "", 22, "subst_exp does not match: the input unchanged"},

		{6, "0612345678", "", "", 0, "no such dialplan"},
	} {
		res, r, ok := tab.translate(c.dpid, []byte(c.in), nil)
		wantOK := c.rule != 0
		if ok != wantOK || string(res) != c.out {
			t.Errorf("dialplan %d, %q: %q, %v; want %q (%s)", c.dpid, c.in, res, ok, c.out, c.rationale)
			continue
		}
		if ok && (r.id != c.rule || r.attrs != c.attrs) {
			t.Errorf("dialplan %d, %q: rule %d attrs %q; want rule %d attrs %q (%s)", c.dpid, c.in, r.id, r.attrs, c.rule, c.attrs, c.rationale)
		}
	}
}

// TestTranslateAppends: the output goes after what out holds, in out's
// array when it has the room.
func TestTranslateAppends(t *testing.T) {
	tab := e164Table(t)
	buf := make([]byte, 0, 64)
	buf = append(buf, "to:"...)
	res, _, ok := tab.translate(1, []byte("0612345678"), buf)
	if !ok || string(res) != "to:+33612345678" || &res[0] != &buf[:1][0] {
		t.Fatalf("%q %v (same array: %v)", res, ok, &res[0] == &buf[:1][0])
	}
	res, _, ok = tab.translate(1, []byte("nothing"), buf)
	if ok || string(res) != "to:" {
		t.Fatalf("a miss changed out: %q", res)
	}
}

// TestPriorityOrder: the rule order spelled out in the README, on one
// input that every rule matches.
func TestPriorityOrder(t *testing.T) {
	rows := []store.DialplanRule{
		{ID: 1, DPID: 1, Priority: 2, MatchOp: "exact", MatchExp: "0612", ReplExp: "exact-pr2"},
		{ID: 2, DPID: 1, Priority: 1, MatchOp: "regex", MatchExp: "^06", ReplExp: "regex-pr1"},
		{ID: 3, DPID: 1, Priority: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: "prefix0-pr1"},
		{ID: 4, DPID: 1, Priority: 1, MatchOp: "prefix", MatchExp: "06", ReplExp: "prefix06-pr1"},
		{ID: 5, DPID: 1, Priority: 1, MatchOp: "exact", MatchExp: "0612", ReplExp: "exact-pr1"},
		{ID: 6, DPID: 1, Priority: 1, MatchOp: "exact", MatchExp: "0612", MatchFlags: 1, ReplExp: "exact-icase-pr1"},
		{ID: 7, DPID: 1, Priority: 1, MatchOp: "regex", MatchExp: "^0", ReplExp: "regex2-pr1"},
	}
	for i := range rows {
		if err := store.CheckDialplanRule(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Remove the best rule each time: the next one must win.
	for _, want := range []string{"exact-pr1", "exact-icase-pr1", "prefix06-pr1", "prefix0-pr1", "regex-pr1", "regex2-pr1", "exact-pr2"} {
		tab := buildTable(rows, emptyTable, func(*store.DialplanRule, error) {})
		res, r, ok := tab.translate(1, []byte("0612"), nil)
		if !ok || string(res) != want {
			t.Fatalf("with %d rules: %q, want %q", len(rows), res, want)
		}
		for i := range rows {
			if rows[i].ID == r.id {
				rows = append(rows[:i], rows[i+1:]...)
				break
			}
		}
	}
}

// TestSkippedRows: rows that do not validate (written to the database by
// hand) are left out; the others load.
func TestSkippedRows(t *testing.T) {
	rows := []store.DialplanRule{
		{ID: 1, DPID: 1, MatchOp: "regex", MatchExp: "(", ReplExp: "x"},
		{ID: 2, DPID: 1, MatchOp: "prefix", MatchExp: "0a"},
		{ID: 3, DPID: 1, MatchOp: "prefix", MatchExp: "0", ReplExp: "ok"},
	}
	var skipped []string
	tab := buildTable(rows, emptyTable, func(r *store.DialplanRule, err error) { skipped = append(skipped, err.Error()) })
	if tab.skipped != 2 || len(tab.rules) != 1 || len(skipped) != 2 ||
		!strings.Contains(skipped[0], "dialplan rule 1") || !strings.Contains(skipped[1], "dialplan rule 2") {
		t.Fatalf("skipped %d %q, loaded %d", tab.skipped, skipped, len(tab.rules))
	}
	if res, _, ok := tab.translate(1, []byte("01"), nil); !ok || string(res) != "ok" {
		t.Fatalf("%q %v", res, ok)
	}
}

// TestRegexCompiledOnce: a reload reuses the compiled expressions of the
// rules it keeps.
func TestRegexCompiledOnce(t *testing.T) {
	rows := []store.DialplanRule{
		{ID: 1, DPID: 1, MatchOp: "regex", MatchExp: `^0(\d+)$`, ReplExp: `+33\1`},
		{ID: 2, DPID: 2, MatchOp: "regex", MatchExp: `^0(\d+)$`, ReplExp: `0\1`}, // the same expression
		{ID: 3, DPID: 2, MatchOp: "regex", MatchExp: `^0(\d+)$`, MatchFlags: 1, ReplExp: `0\1`, Priority: 1},
	}
	a := buildTable(rows, emptyTable, func(*store.DialplanRule, error) {})
	if a.rules[0].re != a.rules[1].re || a.rules[0].re == a.rules[2].re || len(a.regexes) != 2 {
		t.Fatalf("one expression compiled %d times", len(a.regexes))
	}
	b := buildTable(rows[:1], a, func(*store.DialplanRule, error) {})
	if b.rules[0].re != a.rules[0].re || len(b.regexes) != 1 {
		t.Fatal("the reload compiled the expression again, or kept one no rule uses")
	}
}
