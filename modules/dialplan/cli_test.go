package dialplan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/store"
)

func runCLI(t *testing.T, st *store.Store, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := cliCommands[args[0]].Run(ctx, st, args[1:], &out)
	return out.String(), err
}

func isUsage(err error) bool {
	var ke *modules.KeyError
	return errors.As(err, &ke)
}

func TestCLI(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out, err := runCLI(t, st, "add", "1", "prefix", "0", `+33\2`, "--attrs", "national", "--pr", "10")
	if err != nil || out != "added dialplan rule 1 (dpid 1, pr 10, prefix `0`)\n" {
		t.Fatalf("add: %q %v", out, err)
	}
	if _, err := runCLI(t, st, "add", "--icase", "1", "exact", "Voicemail", "*98", "--disabled"); err != nil {
		t.Fatal(err)
	}
	// A bad regex is refused with the rule and the field named; a bad
	// command line is a usage error (exit 2), a bad value is not.
	_, err = runCLI(t, st, "add", "1", "regex", `^0(\d+`, `\1`)
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "dialplan rule (dpid 1, pr 0, regex `^0(\\d+`): match_exp: error parsing regexp") {
		t.Fatalf("bad regex: %v", err)
	}
	for _, args := range [][]string{{"add", "1", "prefix"}, {"add", "x", "prefix", "0"}, {"add", "1", "prefix", "0", "--bogus"},
		{"del"}, {"del", "0"}, {"del", "1", "--dpid", "1"}, {"list", "extra"}, {"import"}, {"translate", "1"}} {
		if _, err := runCLI(t, st, args...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	out, err = runCLI(t, st, "list")
	if err != nil || !strings.Contains(out, `+33\2`) || !strings.Contains(out, "Voicemail") || strings.Count(out, "\n") != 3 {
		t.Fatalf("list: %q %v", out, err)
	}
	out, err = runCLI(t, st, "translate", "1", "0612345678")
	if err != nil || out != "+33612345678\t(rule 1, attrs \"national\")\n" {
		t.Fatalf("translate: %q %v", out, err)
	}
	if out, _ := runCLI(t, st, "translate", "1", "voicemail"); !strings.Contains(out, "no rule of dialplan 1 matches") {
		t.Fatalf("a disabled rule translated: %q", out)
	}

	// export, then import --replace (the rules get new IDs: 3 and 4) of what was exported: the same table.
	exported, err := runCLI(t, st, "export")
	if err != nil || !strings.HasPrefix(exported, "dpid,pr,match_op,match_exp,match_flags,subst_exp,repl_exp,attrs,disabled\n") {
		t.Fatalf("export: %q %v", exported, err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.csv")
	os.WriteFile(file, []byte(exported), 0o644)
	if out, err := runCLI(t, st, "import", file, "--replace"); err != nil || out != "imported 2 rules, replacing the rules stored before\n" {
		t.Fatalf("import --replace: %q %v", out, err)
	}
	if again, _ := runCLI(t, st, "export"); again != exported {
		t.Fatalf("round trip:\n%s\nvs\n%s", again, exported)
	}

	// An OpenSIPS export: numeric match_op, an id and an empty timerec.
	os.WriteFile(file, []byte("id,dpid,pr,match_op,match_exp,match_flags,subst_exp,repl_exp,timerec,disabled,attrs\n"+
		"7,2,0,1,^00(\\d+)$,0,,+\\1,,0,intl\n"+
		"8,2,1,0,112,0,,,,0,\"emergency, fire\"\n"), 0o644)
	if _, err := runCLI(t, st, "import", file); err != nil {
		t.Fatal(err)
	}
	if out, _ := runCLI(t, st, "translate", "2", "004930123"); out != "+4930123\t(rule 5, attrs \"intl\")\n" {
		t.Fatalf("imported rule: %q", out)
	}

	// Every mistake in a file names its line, and nothing is stored.
	for _, c := range []struct{ csv, words string }{
		{"", "empty file"},
		{"dpid,match_exp\n", "line 1: no match_op column"},
		{"dpid,match_op,match_exp,colour\n", `line 1: unknown column "colour"`},
		{"dpid,match_op,match_exp\n3,prefix,1\n3,regex,(\n", "line 3: dialplan rule (dpid 3, pr 0, regex `(`): match_exp"},
		{"dpid,match_op,match_exp\n3,prefix,1\n\n3,prefix,1\n", "line 4: dialplan rule (dpid 3, pr 0, prefix `1`) is on line 2 already"},
		{"dpid,match_op,match_exp\nx,prefix,1\n", `line 2: dpid: "x" is not a number`},
		{"dpid,match_op,match_exp\n3,2,1\n", "line 2: match_op: 2 (fnmatch) is not supported"},
		{"dpid,match_op,match_exp,timerec\n3,prefix,1,20240101T000000\n", "line 2: timerec"},
		{"dpid,match_op,match_exp,disabled\n3,prefix,1,maybe\n", `line 2: disabled: "maybe"`},
		{"dpid,pr,match_op,match_exp\n2,1,exact,112\n", "exists already"},
	} {
		os.WriteFile(file, []byte(c.csv), 0o644)
		_, err := runCLI(t, st, "import", file)
		if err == nil || !strings.Contains(err.Error(), c.words) {
			t.Errorf("import %q: %v, want %q", c.csv, err, c.words)
		}
	}
	if rs, _ := st.ListDialplanRules(ctx, 3); len(rs) != 0 {
		t.Fatalf("a refused import stored rules: %+v", rs)
	}
	if out, err := runCLI(t, st, "export", "--dpid", "2"); err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"emergency, fire"`) {
		t.Fatalf("export dpid 2: %q %v", out, err)
	}

	if out, err := runCLI(t, st, "del", "5"); err != nil || !strings.HasPrefix(out, "deleted dialplan rule 5 (dpid 2") {
		t.Fatalf("del: %q %v", out, err)
	}
	if out, err := runCLI(t, st, "del", "--dpid", "2"); err != nil || out != "deleted 1 rules of dialplan 2\n" {
		t.Fatalf("del --dpid: %q %v", out, err)
	}
	if _, err := runCLI(t, st, "del", "5"); err == nil || !strings.Contains(err.Error(), "no dialplan rule with id 5") {
		t.Fatalf("del again: %v", err)
	}
}
