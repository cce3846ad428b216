package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// moduleCLI runs `switchboard <module> ARGS -c config` and returns its
// output; it fails the test unless the command succeeds.
func moduleCLI(t *testing.T, srv *testServer, module string, args ...string) string {
	t.Helper()
	out, err := exec.Command(switchboardBinary(t), append(append([]string{module}, args...), "-c", srv.Config)...).CombinedOutput()
	if err != nil {
		t.Fatalf("switchboard %s %s: %v\n%s", module, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitMetric waits until the server's metric reaches want and returns how
// long that took.
func waitMetric(t *testing.T, srv *testServer, name string, want float64) time.Duration {
	t.Helper()
	start := time.Now()
	for srv.metrics()[name] != want {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s = %v, want %v", name, srv.metrics()[name], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestE2EAliasesAndDialplan: a DID added with `switchboard aliases add`
// while the server runs routes a call (sipp, with digest authentication)
// to the subscriber's registered phone (a sipp UAS); before, the same call
// gets 480. Dialplan rules added with the CLI (one by one and from CSV)
// are in use within the poll interval, and dialplan.translate shows the
// rewrite; a bad regex is refused with the rule named. Group memberships
// added with the CLI are answered by groups.check.
func TestE2EAliasesAndDialplan(t *testing.T) {
	t.Parallel()
	needSipp(t)
	const poll = 200 * time.Millisecond
	// sipp 3.6 answers MD5 challenges only, with a digest uri that is not
	// the Request-URI.
	srv := startServer(t, "auth:\n  algorithms: [MD5]\n  check_uri: false\n"+
		"aliases:\n  poll_interval: 200ms\ndialplan:\n  poll_interval: 200ms\ngroups:\n  poll_interval: 200ms\n")
	addUser(t, srv, "alice@localhost", "alice-pw")
	addUser(t, srv, "bob@localhost", "bob-pw")
	alicePort, bobPort := freeSIPPort(t), freeSIPPort(t)
	if r := sippUA(t, srv, "register.xml", bobPort, "bob", "bob-pw", "expires", "300"); r.Code != 0 {
		t.Fatalf("register bob: exit %d\n%s", r.Code, r.Output)
	}
	const did = "+33123456789"

	// Not an alias yet: the DID is nobody.
	if r := sippUA(t, srv, "uac_auth_call_480.xml", freeSIPPort(t), "alice", "alice-pw", "callee", did); r.Code != 0 {
		t.Fatalf("call to the DID before the alias: exit %d\n%s", r.Code, r.Output)
	}

	out := moduleCLI(t, srv, "aliases", "add", did+"@localhost", "bob@localhost")
	if out != "added alias "+did+"@localhost -> bob@localhost\n" {
		t.Fatalf("aliases add: %q", out)
	}
	took := waitMetric(t, srv, "switchboard_aliases_entries", 1)
	t.Logf("alias in use %s after the CLI added it (poll interval %s)", took, poll)
	if took > poll+500*time.Millisecond {
		t.Errorf("alias in use only %s after the add; poll interval %s", took, poll)
	}

	// alice calls the DID: bob's phone answers, the call is set up through
	// the proxy and hung up.
	startSipp(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-m", "1")
	time.Sleep(200 * time.Millisecond)
	if r := sippUA(t, srv, "uac_auth_call.xml", alicePort, "alice", "alice-pw", "callee", did); r.Code != 0 {
		t.Fatalf("call alice -> %s (bob): exit %d\n%s", did, r.Code, r.Output)
	}
	if m := srv.metrics(); m["switchboard_aliases_hits_total"] < 1 {
		t.Errorf("switchboard_aliases_hits_total = %v", m["switchboard_aliases_hits_total"])
	}
	var aliasList []struct{ Alias, Target string }
	if err := json.Unmarshal(mgmtCall(t, srv, "aliases.list", `{}`), &aliasList); err != nil || len(aliasList) != 1 ||
		aliasList[0].Alias != did+"@localhost" || aliasList[0].Target != "bob@localhost" {
		t.Fatalf("aliases.list: %+v %v", aliasList, err)
	}

	// Dialplan: a rule from the CLI, in use within the poll interval, and
	// shown by dialplan.translate.
	out = moduleCLI(t, srv, "dialplan", "add", "1", "prefix", "0", `+33\2`, "--pr", "10", "--attrs", "national")
	if out != "added dialplan rule 1 (dpid 1, pr 10, prefix `0`)\n" {
		t.Fatalf("dialplan add: %q", out)
	}
	waitMetric(t, srv, "switchboard_dialplan_rules", 1)
	type translation struct {
		Match  bool
		Output string
		Attrs  string
		Rule   int64
	}
	translate := func(input string) translation {
		t.Helper()
		var tr translation
		if err := json.Unmarshal(mgmtCall(t, srv, "dialplan.translate", `{"dpid":1,"input":"`+input+`"}`), &tr); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	if tr := translate("0612345678"); !tr.Match || tr.Output != "+33612345678" || tr.Attrs != "national" || tr.Rule != 1 {
		t.Fatalf("dialplan.translate 0612345678: %+v", tr)
	}
	// `switchboard ctl` sends key=value arguments as strings.
	ctl, err := exec.Command(switchboardBinary(t), "ctl", "-o", "json", "-c", srv.Config, "dialplan.translate", "dpid=1", "input=0145678901").CombinedOutput()
	if err != nil || !strings.Contains(string(ctl), `"output": "+33145678901"`) {
		t.Fatalf("switchboard ctl dialplan.translate: %v\n%s", err, ctl)
	}

	// Bulk: a CSV file imported while the server runs.
	csv := filepath.Join(t.TempDir(), "rules.csv")
	os.WriteFile(csv, []byte("dpid,pr,match_op,match_exp,repl_exp,attrs\n"+
		"1,10,prefix,00,+\\2,international\n"+
		"1,0,exact,112,,emergency\n"+
		"1,1,regex,^08(9|99)\\d{6}$,,premium\n"), 0o644)
	if out := moduleCLI(t, srv, "dialplan", "import", csv); out != "imported 3 rules\n" {
		t.Fatalf("dialplan import: %q", out)
	}
	waitMetric(t, srv, "switchboard_dialplan_rules", 4)
	for _, c := range []struct{ in, out, attrs string }{
		{"0049301234567", "+49301234567", "international"},
		{"112", "112", "emergency"},
		{"0899123456", "0899123456", "premium"},
		{"0612345678", "+33612345678", "national"},
	} {
		if tr := translate(c.in); !tr.Match || tr.Output != c.out || tr.Attrs != c.attrs {
			t.Errorf("dialplan.translate %s: %+v, want %s (%s)", c.in, tr, c.out, c.attrs)
		}
	}
	if tr := translate("alice"); tr.Match {
		t.Errorf("dialplan.translate alice: %+v", tr)
	}
	// A bad regex is refused with the rule named, by the API and the CLI.
	code, body := srv.api("dialplan.add", `{"dpid":2,"match_op":"regex","match_exp":"^0(\\d+","repl_exp":"+33\\1"}`)
	if code != 400 || !strings.Contains(string(body), "dialplan rule (dpid 2, pr 0, regex `^0(\\\\d+`): match_exp") {
		t.Errorf("dialplan.add with a bad regex: %d %s", code, body)
	}
	bad, err := exec.Command(switchboardBinary(t), "dialplan", "add", "2", "regex", `^0(\d+`, "-c", srv.Config).CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "dialplan rule (dpid 2, pr 0, regex `^0(\\d+`): match_exp: error parsing regexp") {
		t.Errorf("dialplan add with a bad regex: %v\n%s", err, bad)
	}
	if exported := moduleCLI(t, srv, "dialplan", "export"); strings.Count(exported, "\n") != 5 {
		t.Errorf("dialplan export:\n%s", exported)
	}

	// Groups.
	if out := moduleCLI(t, srv, "groups", "add", "alice@localhost", "pstn"); out != "added alice@localhost to group pstn\n" {
		t.Fatalf("groups add: %q", out)
	}
	waitMetric(t, srv, "switchboard_groups_entries", 1)
	var member struct{ Member bool }
	if err := json.Unmarshal(mgmtCall(t, srv, "groups.check", `{"user":"alice@localhost","group":"pstn"}`), &member); err != nil || !member.Member {
		t.Fatalf("groups.check: %+v %v", member, err)
	}
}
