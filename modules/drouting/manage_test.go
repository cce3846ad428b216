package drouting

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

func (e *env) call(cmd string, args any, out any) error {
	e.t.Helper()
	raw, err := e.api.Call(ctx, cmd, args)
	if err == nil && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s: %v: %s", cmd, err, raw)
		}
	}
	return err
}

func apiStatus(err error) int {
	var ae *mgmt.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// TestManagementCommands: gateways, carriers and rules added, changed and
// deleted over HTTP take effect at once; bad input is a 400 naming the
// field, a missing row a 404; gw.list shows the state and counters;
// status, match and reload.
func TestManagementCommands(t *testing.T) {
	e := newEnv(t, envOptions{mgmt: true})
	// Numbers as strings, as `switchboard ctl drouting.gw.add key=value` sends them.
	var gi GatewayInfo
	if err := e.call("drouting.gw.add", map[string]string{"gwid": "gw1", "address": gwAddr(1).String(), "strip": "1", "probe_mode": "2"}, &gi); err != nil {
		t.Fatal(err)
	}
	if gi.GWID != "gw1" || gi.Strip != 1 || gi.Transport != "udp" || gi.ProbeMode != 2 {
		t.Fatalf("added %+v", gi)
	}
	e.call("drouting.gw.add", map[string]any{"gwid": "gw2", "address": gwAddr(2).String()}, nil)
	err := e.call("drouting.gw.add", map[string]any{"gwid": "gw3", "address": "gw.example.com"}, nil)
	if apiStatus(err) != 400 || !strings.Contains(err.Error(), "dr gateway gw3: address") {
		t.Fatalf("bad address: %v", err)
	}
	if err := e.call("drouting.gw.add", map[string]any{"gwid": "gw1", "address": "127.0.0.1"}, nil); apiStatus(err) != 400 || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("duplicate: %v", err)
	}
	var ci CarrierInfo
	if err := e.call("drouting.carrier.add", map[string]any{"carrierid": "cr", "gwlist": "gw2", "flags": 1}, &ci); err != nil || ci.SortAlg != "N" {
		t.Fatalf("carrier: %+v %v", ci, err)
	}
	var ri RuleInfo
	if err := e.call("drouting.rule.add", map[string]any{"groupid": "0", "prefix": "49", "gwlist": "gw1,#cr", "timerec": "Mon-Sun"}, &ri); err != nil {
		t.Fatal(err)
	}
	if ri.ID != 1 || ri.GWList != "gw1,#cr" {
		t.Fatalf("rule: %+v", ri)
	}
	if err := e.call("drouting.rule.add", map[string]any{"groupid": "0", "prefix": "4x", "gwlist": "gw1"}, nil); apiStatus(err) != 400 || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("bad rule: %v", err)
	}
	// Loaded at once.
	var m MatchInfo
	if err := e.call("drouting.match", map[string]any{"group": 0, "number": "+4930"}, nil); apiStatus(err) != 404 {
		t.Fatalf("match +4930: %v", err)
	}
	if err := e.call("drouting.match", map[string]any{"group": 0, "number": "4930"}, &m); err != nil || m.Rule != 1 || strings.Join(m.Gateways, ",") != "gw1,gw2" {
		t.Fatalf("match: %+v %v", m, err)
	}
	if call := e.invite("4930"); call.ruri() != "sip:930@127.0.0.1:5101" {
		t.Fatalf("call: %q", call.ruri())
	}

	// gw.set disables, enables; a missing gateway is a 404.
	if err := e.call("drouting.gw.set", map[string]string{"gwid": "gw1", "state": "1"}, &gi); err != nil || gi.State != 1 || gi.Strip != 1 {
		t.Fatalf("disable: %+v %v", gi, err)
	}
	var list []GatewayInfo
	if err := e.call("drouting.gw.list", nil, &list); err != nil || len(list) != 2 || list[0].Status != "disabled" || list[0].Calls != 1 || list[1].Status != "up" {
		t.Fatalf("gw.list: %+v %v", list, err)
	}
	if call := e.invite("4930"); call.dst != gwAddr(2) {
		t.Fatalf("gw1 disabled: to %v", call.dst)
	}
	if err := e.call("drouting.gw.set", map[string]string{"gwid": "gw9", "state": "1"}, nil); apiStatus(err) != 404 {
		t.Fatalf("set gw9: %v", err)
	}
	if err := e.call("drouting.carrier.set", map[string]any{"carrierid": "cr", "state": 1}, &ci); err != nil || ci.State != 1 || ci.GWList != "gw2" {
		t.Fatalf("carrier.set: %+v %v", ci, err)
	}
	if call := e.invite("4930"); call.final != "SIP/2.0 503 No Gateway" {
		t.Fatalf("gw1 and cr disabled: %q", call.final)
	}

	var rules []RuleInfo
	e.call("drouting.rule.add", map[string]any{"groupid": "1,2", "prefix": "33", "gwlist": "gw2"}, nil)
	if err := e.call("drouting.rule.list", map[string]any{"group": 2}, &rules); err != nil || len(rules) != 1 || rules[0].Prefix != "33" {
		t.Fatalf("rule.list group 2: %+v %v", rules, err)
	}
	if err := e.call("drouting.rule.list", map[string]any{"limit": 5000}, nil); apiStatus(err) != 400 {
		t.Fatalf("limit 5000: %v", err)
	}
	if err := e.call("drouting.rule.del", map[string]any{"ruleid": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.call("drouting.rule.del", map[string]any{"ruleid": 1}, nil); apiStatus(err) != 404 {
		t.Fatalf("del again: %v", err)
	}
	if err := e.call("drouting.carrier.del", map[string]any{"carrierid": "cr"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.call("drouting.gw.del", map[string]any{"gwid": "gw1"}, nil); err != nil {
		t.Fatal(err)
	}
	var st StatusInfo
	if err := e.call("drouting.reload", nil, &st); err != nil || st.Rules != 1 || st.Groups != 2 || st.Gateways["up"] != 1 || st.MaxCalls != 65536 {
		t.Fatalf("reload: %+v %v", st, err)
	}
	if err := e.call("drouting.status", nil, &st); err != nil || st.LoadedAt == "" {
		t.Fatalf("status: %+v %v", st, err)
	}
}

// TestTablesReloadedFromTheStore: another process (the CLI) changes the
// tables; the poller loads what changed.
func TestTablesReloadedFromTheStore(t *testing.T) {
	s := DefaultSettings()
	s.Timezone, s.PollInterval = "UTC", 10*time.Millisecond
	e := newEnv(t, envOptions{settings: s})
	if err := e.d.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.d.Stop()
	other, err := store.Open(filepath.Dir(e.storePath()), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.AddDRGateways(ctx, []store.DRGateway{gwRow("gw1", 1)}, false); err != nil {
		t.Fatal(err)
	}
	if err := other.AddDRRules(ctx, []store.DRRule{{Groups: "0", Prefix: "1", GWList: "gw1"}}, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := e.d.Match(0, "155"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poller did not load the rule")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) storePath() string {
	return filepath.Join(e.dir, store.DefaultFileName)
}

// TestSettings: bad values are refused naming the key; Reload applies
// group, fr_timeout, the timezone and the probe settings and refuses the
// sizes.
func TestSettings(t *testing.T) {
	for key, edit := range map[string]func(s *Settings){
		"group":             func(s *Settings) { s.Group = -1 },
		"fr_timeout":        func(s *Settings) { s.FRTimeout = time.Hour },
		"max_calls":         func(s *Settings) { s.MaxCalls = 10 },
		"max_rules":         func(s *Settings) { s.MaxRules = 0 },
		"poll_interval":     func(s *Settings) { s.PollInterval = time.Hour },
		"probe_interval":    func(s *Settings) { s.ProbeInterval = 0 },
		"probe_failures":    func(s *Settings) { s.ProbeFailures = 0 },
		"probe_successes":   func(s *Settings) { s.ProbeSuccesses = 1000 },
		"probe_from":        func(s *Settings) { s.ProbeFrom = "pinger@example.com" },
		"probe_reply_codes": func(s *Settings) { s.ProbeReplyCodes = []int{200, 7} },
		"timezone":          func(s *Settings) { s.Timezone = "Mars/Olympus" },
	} {
		s := DefaultSettings()
		edit(s)
		var ke *modules.KeyError
		if err := checkSettings(s); !errors.As(err, &ke) || !strings.HasPrefix(ke.Key, key) {
			t.Errorf("%s: %v", key, err)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{})
	s := DefaultSettings()
	s.Group, s.Timezone, s.FRTimeout = 3, "Asia/Tokyo", 2*time.Second
	if err := e.d.Reload(s); err != nil {
		t.Fatal(err)
	}
	if e.d.Group() != 3 || e.d.fr.Load() != 2000 {
		t.Fatalf("after reload: group %d, fr %d", e.d.Group(), e.d.fr.Load())
	}
	if m, _ := e.d.wall.Load().at(monday10); m != 19*60 {
		t.Errorf("10:00 UTC is minute %d in Tokyo", m)
	}
	// max_calls takes effect at the next start: named as needing a
	// restart, not refused; the group changed with it is applied.
	s.MaxCalls, s.Group = 2048, 4
	var ke *modules.KeyError
	if err := e.d.CheckReload(s); !errors.As(err, &ke) || !ke.Restart || ke.Key != "max_calls" {
		t.Fatalf("max_calls changed: CheckReload %v, want it named as needing a restart", err)
	}
	if err := e.d.Reload(s); err != nil || e.d.Group() != 4 || s.MaxCalls != DefaultSettings().MaxCalls {
		t.Fatalf("max_calls changed: %v, group %d, settings left with max_calls %d", err, e.d.Group(), s.MaxCalls)
	}
	s.Timezone = "Nowhere/Atlantis"
	if err := e.d.CheckReload(s); !errors.As(err, &ke) || ke.Restart || ke.Key != "timezone" {
		t.Fatalf("a timezone that does not load: CheckReload %v, want it refused", err)
	}
}

func runVerb(t *testing.T, st *store.Store, verb string, args ...string) (string, error) {
	t.Helper()
	c, ok := cliCommands[verb]
	if !ok {
		t.Fatalf("no verb %s", verb)
	}
	var out bytes.Buffer
	err := c.Run(ctx, st, args, &out)
	return out.String(), err
}

// TestCLI: the verbs on a store; CSV import names the line and the field,
// imports all or nothing, --replace replaces the table, export then import
// gives the same tables.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "a"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := must(runVerb(t, st, "gw-add", "gw1", "--address", "192.0.2.1", "--strip", "2", "--pri-prefix", "00", "--probe-mode", "2")); out != "added dr gateway gw1\n" {
		t.Fatalf("gw-add: %q", out)
	}
	must(runVerb(t, st, "gw-set", "gw1", "--state", "1"))
	if g, _ := st.GetDRGateway(ctx, "gw1"); g.State != 1 || g.Strip != 2 || g.Address != "192.0.2.1:5060" {
		t.Fatalf("after gw-set: %+v", g)
	}
	must(runVerb(t, st, "carrier-add", "cr", "--gwlist", "gw1=3,gw2", "--sort-alg", "W"))
	if out := must(runVerb(t, st, "rule-add", "--prefix", "49", "--gwlist", "#cr", "--timerec", "Mon-Fri 08:00-17:59")); out != "added dr rule 1\n" {
		t.Fatalf("rule-add: %q", out)
	}
	if out := must(runVerb(t, st, "rule-list", "--group", "0")); !strings.Contains(out, "Mon-Fri 08:00-17:59") || !strings.Contains(out, "#cr") {
		t.Fatalf("rule-list:\n%s", out)
	}
	if out := must(runVerb(t, st, "gw-list")); !strings.Contains(out, "disabled") || !strings.Contains(out, "192.0.2.1:5060") {
		t.Fatalf("gw-list:\n%s", out)
	}
	if out := must(runVerb(t, st, "carrier-list")); !strings.Contains(out, "gw1=3,gw2") {
		t.Fatalf("carrier-list:\n%s", out)
	}

	// Errors: usage (exit 2) and bad values naming the field.
	var ke *modules.KeyError
	if _, err := runVerb(t, st, "gw-add", "--address", "192.0.2.1"); !errors.As(err, &ke) {
		t.Errorf("gw-add without ID: %v", err)
	}
	if _, err := runVerb(t, st, "rule-add", "--priority", "high"); !errors.As(err, &ke) {
		t.Errorf("bad flag: %v", err)
	}
	if _, err := runVerb(t, st, "gw-add", "gw2", "--address", "192.0.2.1", "--transport", "sctp"); !errors.Is(err, store.ErrMalformedDR) ||
		!strings.Contains(err.Error(), "transport") {
		t.Errorf("bad transport: %v", err)
	}
	if _, err := runVerb(t, st, "rule-del", "9"); !errors.Is(err, store.ErrNoDR) {
		t.Errorf("rule-del 9: %v", err)
	}
	if _, err := runVerb(t, st, "rule-del", "x"); !errors.As(err, &ke) {
		t.Errorf("rule-del x: %v", err)
	}

	// CSV import: all or nothing, the line and field named.
	csvFile := filepath.Join(dir, "rules.csv")
	os.WriteFile(csvFile, []byte("prefix,gwlist,priority,groupid\n33,gw1,1,0\n34,gw 2,1,0\n"), 0o644)
	if _, err := runVerb(t, st, "rule-import", csvFile); err == nil || !strings.Contains(err.Error(), "rules.csv:3: dr rule: gwlist") {
		t.Errorf("bad row: %v", err)
	}
	os.WriteFile(csvFile, []byte("prefix,gwlist,colour\n33,gw1,red\n"), 0o644)
	if _, err := runVerb(t, st, "rule-import", csvFile); err == nil || !strings.Contains(err.Error(), `rules.csv:1: unknown column "colour"`) {
		t.Errorf("unknown column: %v", err)
	}
	os.WriteFile(csvFile, []byte("prefix,gwlist,priority\n33,gw1,x\n"), 0o644)
	if _, err := runVerb(t, st, "rule-import", csvFile); err == nil || !strings.Contains(err.Error(), `rules.csv:2: priority: "x"`) {
		t.Errorf("bad number: %v", err)
	}
	if rs, _ := st.ListDRRules(ctx, store.DRRuleFilter{Group: -1}); len(rs) != 1 {
		t.Fatalf("a failed import stored rules: %+v", rs)
	}
	os.WriteFile(csvFile, []byte("prefix,gwlist,timerec\n33,gw1,\n\"34\",\"gw1,#cr=2\",Sat 10:00-11:00\n"), 0o644)
	if out := must(runVerb(t, st, "rule-import", csvFile)); out != "imported 2 dr rules\n" {
		t.Fatalf("import: %q", out)
	}
	if out := must(runVerb(t, st, "rule-import", csvFile, "--replace")); out != "imported 2 dr rules (table replaced)\n" {
		t.Fatalf("import --replace: %q", out)
	}
	if rs, _ := st.ListDRRules(ctx, store.DRRuleFilter{Group: -1}); len(rs) != 2 || rs[1].GWList != "gw1,#cr=2" || rs[1].TimeRec != "Sat 10:00-11:00" {
		t.Fatalf("after --replace: %+v", rs)
	}

	// export, then import into another store: the same tables.
	st2, err := store.Open(filepath.Join(dir, "b"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for _, table := range []string{"gw", "carrier", "rule"} {
		file := filepath.Join(dir, table+".csv")
		must(runVerb(t, st, table+"-export", file))
		must(runVerb(t, st2, table+"-import", file))
		a := must(runVerb(t, st, table+"-export"))
		b := must(runVerb(t, st2, table+"-export"))
		if table == "rule" { // the store gives new IDs
			a, b = dropFirstColumn(a), dropFirstColumn(b)
		}
		if a != b {
			t.Errorf("%s tables differ after export and import:\n%s\n%s", table, a, b)
		}
	}
	stdin = strings.NewReader("gwid,address\ngw7,192.0.2.7\n")
	defer func() { stdin = os.Stdin }()
	if out := must(runVerb(t, st2, "gw-import", "-")); out != "imported 1 dr gateways\n" {
		t.Fatalf("gw-import -: %q", out)
	}
	if _, err := runVerb(t, st2, "gw-import"); !errors.As(err, &ke) && !errors.Is(err, flag.ErrHelp) {
		t.Errorf("gw-import without a file: %v", err)
	}
}

func dropFirstColumn(csv string) string {
	var out []string
	for _, line := range strings.Split(csv, "\n") {
		_, rest, _ := strings.Cut(line, ",")
		out = append(out, rest)
	}
	return strings.Join(out, "\n")
}
