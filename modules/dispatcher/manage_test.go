package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func TestManagementCommands(t *testing.T) {
	e := newEnv(t, envOptions{mgmt: true})
	// Numbers as strings, as `switchboard ctl dispatcher.add key=value`
	// sends them; weight 1 when not given.
	var a DestInfo
	if err := e.call("dispatcher.add", map[string]string{"set": "1", "destination": "sip:127.0.0.1:5071", "attrs": "media=1"}, &a); err != nil {
		t.Fatal(err)
	}
	if a.ID == 0 || a.Destination != "sip:127.0.0.1:5071" || a.Weight != 1 || a.State != "active" || a.Attrs != "media=1" {
		t.Fatalf("added %+v", a)
	}
	if err := e.call("dispatcher.add", map[string]any{"set": 1, "destination": "sip:127.0.0.1:5072;transport=tcp", "weight": 3, "priority": 2,
		"probe_mode": 1, "socket": "tcp:127.0.0.1", "description": "pbx b"}, nil); err != nil {
		t.Fatal(err)
	}
	// In use at once, without waiting for the poller.
	var list []DestInfo
	if err := e.call("dispatcher.list", map[string]any{"set": 1}, &list); err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if b := list[0]; b.Destination != "sip:127.0.0.1:5072;transport=tcp" || b.Weight != 3 || b.Priority != 2 || b.ProbeMode != 1 ||
		b.Socket != "tcp:127.0.0.1" || b.Description != "pbx b" || b.StoredState != "active" {
		t.Fatalf("first by priority: %+v", b)
	}
	for _, c := range []struct {
		args any
		want string
	}{
		{map[string]any{"set": 1, "destination": "sip:pbx.example.net"}, "destination: \"sip:pbx.example.net\": host"},
		{map[string]any{"set": 1, "destination": "sip:127.0.0.1:5071"}, "is already in set 1"},
		{map[string]any{"set": 1, "destination": "sip:127.0.0.1:5073", "weight": 0}, "weight: 0"},
		{map[string]any{"set": 1, "destination": "sip:127.0.0.1:5073", "state": "down"}, `state "down"`},
		{map[string]any{"set": "one", "destination": "sip:127.0.0.1:5073"}, "not an integer"},
		{map[string]any{"set": 1, "destination": "sip:127.0.0.1:5073", "colour": "red"}, "unknown field"},
	} {
		if err := e.call("dispatcher.add", c.args, nil); apiStatus(err) != 400 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want 400 saying %q", c.args, err, c.want)
		}
	}

	// set_state: in use at once, and in the store (a restart keeps it).
	var s DestInfo
	if err := e.call("dispatcher.set_state", map[string]string{"set": "1", "destination": "sip:127.0.0.1:5071", "state": "i"}, &s); err != nil {
		t.Fatal(err)
	}
	if s.State != "inactive" || s.StoredState != "inactive" || e.state(1, "sip:127.0.0.1:5071") != "inactive" {
		t.Fatalf("set_state: %+v", s)
	}
	if rows, _ := e.st.ListDispatcherDests(ctx); rows[1].State != store.DispatcherInactive {
		t.Fatalf("stored: %+v", rows)
	}
	// A destination the probes took out is put back by an operator even
	// when its stored state did not change.
	e.d.force(e.d.states[stateKey{1, "sip:127.0.0.1:5072;transport=tcp"}], Probing, "test")
	if err := e.call("dispatcher.set_state", map[string]any{"set": 1, "destination": "sip:127.0.0.1:5072;transport=tcp", "state": "active"}, &s); err != nil || s.State != "active" {
		t.Fatalf("set_state active: %+v %v", s, err)
	}
	if err := e.call("dispatcher.set_state", map[string]any{"set": 2, "destination": "sip:127.0.0.1:5071", "state": "active"}, nil); apiStatus(err) != 404 {
		t.Fatalf("set_state of a missing one: %v", err)
	}
	if err := e.call("dispatcher.set_state", map[string]any{"set": 1, "destination": "sip:127.0.0.1:5071", "state": "up"}, nil); apiStatus(err) != 400 {
		t.Fatalf("set_state up: %v", err)
	}

	var del struct{ Deleted DestInfo }
	if err := e.call("dispatcher.del", map[string]any{"set": 1, "destination": "sip:127.0.0.1:5071"}, &del); err != nil || del.Deleted.ID != a.ID {
		t.Fatalf("del: %+v %v", del, err)
	}
	if err := e.call("dispatcher.del", map[string]any{"id": a.ID}, nil); apiStatus(err) != 404 {
		t.Fatalf("del again: %v", err)
	}
	if err := e.call("dispatcher.del", map[string]any{}, nil); apiStatus(err) != 400 {
		t.Fatalf("del without arguments: %v", err)
	}
	if err := e.call("dispatcher.list", nil, &list); err != nil || len(list) != 1 {
		t.Fatalf("list after del: %+v %v", list, err)
	}

	// reload: what another process wrote.
	e.st.AddDispatcherDest(ctx, dst(9, 5090))
	var sum Summary
	if err := e.call("dispatcher.reload", nil, &sum); err != nil || sum.Destinations != 2 || sum.Sets[9] != 1 {
		t.Fatalf("reload: %+v %v", sum, err)
	}
}

func runVerb(t *testing.T, st *store.Store, verb string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := cliCommands[verb].Run(ctx, st, args, &out)
	return out.String(), err
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out, err := runVerb(t, st, "add", "sip:127.0.0.1:5071", "--setid", "1", "--weight", "3", "--priority", "5", "--attrs", "room=1",
		"--probe-mode", "1", "--socket", "udp:127.0.0.1:5060", "--description", "media a")
	if err != nil || out != "added id 1: set 1 sip:127.0.0.1:5071\n" {
		t.Fatalf("add: %q %v", out, err)
	}
	if _, err := runVerb(t, st, "add", "--setid", "2", "--state", "inactive", "sip:[::1]:5090;transport=tcp"); err != nil {
		t.Fatal(err)
	}
	out, err = runVerb(t, st, "list")
	if err != nil || !strings.Contains(out, "sip:127.0.0.1:5071") || !strings.Contains(out, "always") || !strings.Contains(out, "room=1") ||
		!strings.Contains(out, "inactive") || !strings.Contains(out, "media a") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, _ := runVerb(t, st, "list", "--setid", "2"); strings.Contains(out, "5071") {
		t.Fatalf("list --set 2:\n%s", out)
	}

	// Bad values name the field; bad usage is a usage error.
	if _, err := runVerb(t, st, "add", "sip:127.0.0.1:5072", "--weight", "0"); err == nil || !strings.Contains(err.Error(), "weight: 0") {
		t.Fatalf("weight 0: %v", err)
	}
	if _, err := runVerb(t, st, "add", "sip:127.0.0.1:5072", "--state", "up"); err == nil || !strings.Contains(err.Error(), `state "up"`) {
		t.Fatalf("state up: %v", err)
	}
	var ke *modules.KeyError
	if _, err := runVerb(t, st, "add"); !errors.As(err, &ke) {
		t.Fatalf("add without destination: %v", err)
	}
	if _, err := runVerb(t, st, "add", "sip:127.0.0.1:5072", "--weigth", "2"); !errors.As(err, &ke) {
		t.Fatalf("a misspelt flag: %v", err)
	}

	// export, then import --replace: the same table.
	csvPath := filepath.Join(dir, "ds.csv")
	if out, err := runVerb(t, st, "export", csvPath); err != nil || out != "exported 2 destinations to "+csvPath+"\n" {
		t.Fatalf("export: %q %v", out, err)
	}
	before, _ := st.ListDispatcherDests(ctx)
	if out, err := runVerb(t, st, "import", csvPath, "--replace"); err != nil || out != "the table is now 2 destinations\n" {
		t.Fatalf("import --replace: %q %v", out, err)
	}
	after, _ := st.ListDispatcherDests(ctx)
	for i := range before {
		before[i].ID, before[i].Created, after[i].ID, after[i].Created = 0, 0, 0, 0
		if before[i] != after[i] {
			t.Fatalf("round trip:\n%+v\n%+v", before[i], after[i])
		}
	}
	out, _ = runVerb(t, st, "export", "--setid", "1")
	if out != "setid,destination,socket,state,weight,priority,attrs,probe_mode,description\n"+
		"1,sip:127.0.0.1:5071,udp:127.0.0.1:5060,active,3,5,room=1,1,media a\n" {
		t.Fatalf("export --set 1:\n%s", out)
	}

	// import adds (all or none); errors name the line.
	write := func(text string) string {
		p := filepath.Join(dir, "in.csv")
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	if out, err := runVerb(t, st, "import", write("destination,setid,weight\n# media servers\nsip:127.0.0.1:5081,3,2\n\"sip:127.0.0.1:5082\",3,\n")); err != nil || out != "added 2 destinations\n" {
		t.Fatalf("import with a header: %q %v", out, err)
	}
	if out, err := runVerb(t, st, "import", write("4,sip:127.0.0.1:5083\n4,sip:127.0.0.1:5084,,probing,2\n")); err != nil || out != "added 2 destinations\n" {
		t.Fatalf("import without a header: %q %v", out, err)
	}
	rows, _ := st.ListDispatcherDests(ctx)
	if len(rows) != 6 || rows[5].Destination != "sip:127.0.0.1:5084" || rows[5].State != store.DispatcherProbing || rows[5].Weight != 2 {
		t.Fatalf("imported: %+v", rows)
	}
	for _, c := range []struct{ csv, want string }{
		{"5,sip:127.0.0.1:5085\n5,sip:127.0.0.1:5086,,,x\n", "line 2: weight \"x\": not a number"},
		{"setid,destination\n5,sip:gw.example.net\n", "line 2: dispatcher destination: destination"},
		{"5,sip:127.0.0.1:5085\n5,sip:127.0.0.1:5085;transport=udp\n", "line 2: destination sip:127.0.0.1:5085 is in set 5 already on line 1"},
		{"4,sip:127.0.0.1:5083\n", "line 1: destination sip:127.0.0.1:5083 is already in set 4"},
		{"setid,destination,colour\n", "line 1: unknown column \"colour\""},
		{"setid,weight\n", "line 1: no destination column"},
		{"5,sip:127.0.0.1:5085,,,,,,,,extra\n", "line 1: 10 fields"},
	} {
		if _, err := runVerb(t, st, "import", write(c.csv)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.csv, err, c.want)
		}
	}
	if rows, _ := st.ListDispatcherDests(ctx); len(rows) != 6 {
		t.Fatalf("a refused import added rows: %d", len(rows))
	}

	if out, err := runVerb(t, st, "del", "sip:127.0.0.1:5081", "--setid", "3"); err != nil || !strings.Contains(out, "deleted id") {
		t.Fatalf("del by destination: %q %v", out, err)
	}
	if out, err := runVerb(t, st, "del", "1"); err == nil || !strings.Contains(err.Error(), "no dispatcher destination with id 1") {
		t.Fatalf("del 1 (replaced by the import): %q %v", out, err)
	}
	if _, err := runVerb(t, st, "del", "0"); !errors.As(err, &ke) {
		t.Fatalf("del 0: %v", err)
	}
}
