package main

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDialogServersConfigured: the dialog scenario runs Switchboard on the
// calls route set and Kamailio on dialog.cfg, without its databases unless
// -kamailio-dialog-db asks for them; then both SQLite files are written
// with the tables and schema versions the modules check, in WAL mode.
func TestDialogServersConfigured(t *testing.T) {
	dir := t.TempDir()
	b := &bench{kamDir: "/k", kamBin: "kamailio", sbBin: "sb", kamChildren: 2}
	_, args, err := b.switchboardArgs(dir, workDialog, 5060, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(args[2])
	if err != nil || !strings.Contains(string(cfg), "\nroutes: calls\n") {
		t.Fatalf("switchboard config %v:\n%s", err, cfg)
	}
	_, args, err = b.kamailioArgs(dir, workDialog, 5060, 0)
	if err != nil {
		t.Fatal(err)
	}
	if args[1] != "/k/dialog.cfg" || strings.Contains(strings.Join(args, " "), "WITH_DB") {
		t.Fatalf("kamailio args %q", args)
	}
	b.kamDialogDB = true
	if _, args, err = b.kamailioArgs(dir, workDialog, 5060, 0); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	acc, dlg := filepath.Join(dir, "acc.db"), filepath.Join(dir, "dialog.db")
	for _, want := range []string{"-A WITH_DB", `DBURL="sqlite:///` + acc + `"`, `DLGDBURL="sqlite:///` + dlg + `"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("kamailio args %q lack %q", joined, want)
		}
	}
	checkTables(t, acc, map[string]int{"acc_cdrs": 2}, "acc_cdrs", append([]string{"start_time", "end_time", "duration"}, kamailioCDRColumns...))
	checkTables(t, dlg, map[string]int{"dialog": 7, "dialog_vars": 1}, "dialog", []string{"hash_entry", "callid", "xdata"})
}

func checkTables(t *testing.T, path string, versions map[string]int, table string, cols []string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("%s: journal mode %q %v", path, mode, err)
	}
	for name, v := range versions {
		var got int
		if err := db.QueryRow(`SELECT table_version FROM version WHERE table_name = ?`, name).Scan(&got); err != nil || got != v {
			t.Errorf("%s: version of %s %d %v, want %d", path, name, got, err, v)
		}
	}
	for _, c := range cols {
		if _, err := db.Exec(`SELECT ` + c + ` FROM ` + table + ` LIMIT 1`); err != nil {
			t.Errorf("%s: %s.%s: %v", path, table, c, err)
		}
	}
}

// TestKamailioDialogConfig: Kamailio accepts dialog.cfg as sipbench runs
// it, with and without its databases (kamailio -c: parse, load the
// modules, fix up the script). Skipped without Kamailio.
func TestKamailioDialogConfig(t *testing.T) {
	kam, err := exec.LookPath("kamailio")
	if err != nil {
		t.Skip("kamailio not installed")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	acc, dlg := filepath.Join(dir, "acc.db"), filepath.Join(dir, "dialog.db")
	if err := fillKamailioDialog(acc, dlg); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "bench", "kamailio", "dialog.cfg")
	for _, extra := range [][]string{nil, {"-A", "WITH_DB", "-A", `DBURL="sqlite:///` + acc + `"`, "-A", `DLGDBURL="sqlite:///` + dlg + `"`}} {
		args := append([]string{"-c", "-f", cfg, "-l", "udp:127.0.0.1:5060", "-w", dir}, extra...)
		out, err := exec.Command(kam, args...).CombinedOutput()
		if err != nil {
			t.Errorf("kamailio %q: %v\n%s", args, err, out)
		}
	}
}

// TestDialogOverRelayRows: the dialog scenario's rows give each server's
// CPU per call with dialogs over its plain relay of the same run.
func TestDialogOverRelayRows(t *testing.T) {
	mk := func(server string, cpu ...time.Duration) scenarioResult {
		res := scenarioResult{Server: server}
		for i, c := range cpu {
			res.Steps = append(res.Steps, step{Rate: []int{500, 2000}[i], OK: 1000, ProxyCPU: 1000 * c, Pass: true})
		}
		return res
	}
	r := &report{b: &bench{rates: []int{500, 2000}}}
	r.order = []scenario{{name: "relay"}, {name: "dialog", unit: "call"}}
	r.add("relay", mk(switchboard, 100*time.Microsecond, 80*time.Microsecond))
	r.add("relay", mk(kamailio, 200*time.Microsecond, 150*time.Microsecond))
	r.add("dialog", mk(switchboard, 110*time.Microsecond, 100*time.Microsecond))
	r.add("dialog", mk(kamailio, 260*time.Microsecond))
	var got []row
	for _, x := range r.rows() {
		if strings.HasPrefix(x.figure, "dialog ÷ relay") {
			got = append(got, x)
		}
	}
	if len(got) != 2 {
		t.Fatalf("rows %+v", got)
	}
	if got[0].scenario != "dialog" || got[0].figure != "dialog ÷ relay CPU per call at 500/s" ||
		got[0].sb != "1.10 (100.0 µs → 110.0 µs)" || got[0].kam != "1.30 (200.0 µs → 260.0 µs)" {
		t.Errorf("500/s: %+v", got[0])
	}
	if got[1].sb != "1.25 (80.0 µs → 100.0 µs)" || got[1].kam != "—" {
		t.Errorf("2000/s (Kamailio's dialog stopped at 500/s): %+v", got[1])
	}
}

// TestInterleave: the rung order rotates at each rate, and the interleaved
// scenarios take the report's place of the first of them.
func TestInterleave(t *testing.T) {
	for i, want := range []string{"[0 1]", "[1 0]", "[0 1]"} {
		if got := fmtInts(rungOrder(2, i)); got != want {
			t.Errorf("rate %d: order %s, want %s", i, got, want)
		}
	}
	if got := fmtInts(rungOrder(3, 1)); got != "[1 2 0]" {
		t.Errorf("three ladders, second rate: %s", got)
	}
	order := expandInterleaved([]scenario{{name: "echo"}, interleaved, {name: "register"}},
		[]scenario{{name: "relay"}, {name: "dialog"}})
	var names []string
	for _, sc := range order {
		names = append(names, sc.name)
	}
	if strings.Join(names, ",") != "echo,relay,dialog,register" {
		t.Errorf("report order %v", names)
	}
}

func fmtInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = string(rune('0' + x))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestConcurrentPerCall: the concurrency scenario reports what the servers
// were configured as and the growth of PSS and of VmHWM per call held.
func TestConcurrentPerCall(t *testing.T) {
	c := concurrentResult{Server: switchboard, Work: workDialog, Target: 1000, Held: 1000,
		Baseline: memory{PSS: 10 << 20, HWM: 12 << 20}, Peak: memory{PSS: 11 << 20, HWM: 14 << 20}}
	if c.perCall() != 1048 || c.hwmPerCall() != 2097 {
		t.Fatalf("per call: PSS %d, VmHWM %d", c.perCall(), c.hwmPerCall())
	}
	r := &report{b: &bench{}, concurrent: []concurrentResult{c}}
	var figs []string
	for _, x := range r.rows() {
		figs = append(figs, x.figure+"="+x.sb)
	}
	joined := strings.Join(figs, "\n")
	for _, want := range []string{"servers configured as (-concurrent-work)=dialog", "VmHWM per concurrent call=2.05 KiB",
		"peak RSS VmHWM idle → with the calls up=12.0 MiB → 14.0 MiB"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no %q in\n%s", want, joined)
		}
	}
}

// TestDialogOverRelayRounds: with -rounds the dialog ÷ relay figure is
// the median of the rounds' ratios with their range, each round's dialog
// rung over its own relay rung; a rung run again (another process took a
// core) counts as its second run.
func TestDialogOverRelayRounds(t *testing.T) {
	mk := func(cpu ...time.Duration) scenarioResult {
		res := scenarioResult{Server: switchboard}
		for _, c := range cpu {
			res.Steps = append(res.Steps, step{Rate: 500, OK: 1000, ProxyCPU: 1000 * c, Pass: true})
		}
		return res
	}
	relay := mk(100*time.Microsecond, 120*time.Microsecond, 90*time.Microsecond)
	dialog := mk(110*time.Microsecond, 999*time.Microsecond, 150*time.Microsecond, 108*time.Microsecond)
	dialog.Steps[1].Retried = true // round 2's first run: not counted
	r := &report{b: &bench{rates: []int{500}, rounds: 3}}
	r.order = []scenario{{name: "relay"}, {name: "dialog", unit: "call"}}
	r.add("relay", relay)
	r.add("dialog", dialog)
	for _, x := range r.rows() {
		if strings.HasPrefix(x.figure, "dialog ÷ relay") {
			// Rounds: 110/100 = 1.10, 150/120 = 1.25, 108/90 = 1.20.
			if want := "1.20 (median of 3 rounds, 1.10–1.25; 100.0 µs → 110.0 µs)"; x.sb != want {
				t.Fatalf("got %q, want %q", x.sb, want)
			}
			return
		}
	}
	t.Fatal("no dialog ÷ relay row")
}
