package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/store"
)

// TestCDRCLI: `switchboard cdr list` and `cdr export` on the store of a
// configuration: filters by user, Call-ID and start time, the table and
// JSON outputs, the missed_calls table, CSV and JSON lines exports, purge;
// bad arguments exit 2 naming what is wrong.
func TestCDRCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	os.WriteFile(cfg, []byte("storage:\n  dir: "+filepath.Join(dir, "data")+"\n"), 0o644)
	st, err := store.Open(filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const t0 = int64(1_796_000_000_000) // 2026-11-30 00:53:20 UTC
	rec := func(id, from, to string, start int64, code int, missed bool) store.CDR {
		c := store.CDR{Missed: missed, CallID: id, FromURI: "sip:" + from + "@example.com", FromUser: from,
			ToURI: "sip:" + to + "@example.com", ToUser: to, Caller: "127.0.0.1:5070", Start: start, End: start + 3000,
			Code: code, Reason: "Busy Here", EndReason: "failed", EndedBy: "callee"}
		if code == 200 {
			c.Answer, c.Duration, c.Reason, c.EndReason, c.EndedBy = start+1000, 2000, "OK", "bye", "caller"
		}
		return c
	}
	err = st.AddCDRs(context.Background(), []store.CDR{
		rec("c1@x", "alice", "bob", t0, 200, false),
		rec("c2@x", "bob", "alice", t0+60_000, 486, false),
		rec("c3@x", "carol", "alice", t0+120_000, 486, true),
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "", "cdr", "list", "-c", cfg)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "START (UTC)") ||
		!strings.Contains(lines[1], "c2@x") || !strings.Contains(lines[2], "2026-11-30 00:53:20.000") ||
		!strings.Contains(lines[2], "+1.000s") || !strings.Contains(lines[2], "2.000s") || !strings.Contains(lines[2], "caller bye") {
		t.Fatalf("list: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "", "cdr", "list", "--to", "alice", "--since", "2026-11-30 00:54", "-o", "json", "-c", cfg)
	var got []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || got[0]["call_id"] != "c2@x" ||
		got[0]["sip_code"] != float64(486) || got[0]["ended_by"] != "callee" || got[0]["start_ms"] != float64(t0+60_000) {
		t.Fatalf("list --to alice --since: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "", "cdr", "list", "--missed", "--call-id", "c3@x", "-c", cfg); code != 0 || !strings.Contains(out, "c3@x") || strings.Contains(out, "c2@x") {
		t.Fatalf("list --missed: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "", "cdr", "list", "--until", "1796000000001", "--limit", "5", "-c", cfg); code != 0 || !strings.Contains(out, "c1@x") || strings.Contains(out, "c2@x") {
		t.Fatalf("list --until: %d %q", code, out)
	}

	code, out, _ = runCLI(t, "", "cdr", "export", "--csv", "-c", cfg)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != 3 || rows[0][1] != "call_id" || rows[1][1] != "c1@x" || rows[2][1] != "c2@x" || rows[1][9] != "1796000000000" {
		t.Fatalf("export --csv: %d %v %q", code, err, out)
	}
	code, out, _ = runCLI(t, "", "cdr", "export", "--json", "--missed", "-c", cfg)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"call_id":"c3@x"`) || !strings.Contains(out, `"missed":true`) {
		t.Fatalf("export --json --missed: %d %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--since", "yesterday"}, `since: "yesterday": want a time`},
		{[]string{"list", "--since", "2026-12-01", "--until", "2026-11-01"}, "until"},
		{[]string{"list", "-o", "xml"}, "-o xml: want table or json"},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"export"}, "give one of --csv and --json"},
		{[]string{"purge"}, "--until is required"},
		{[]string{"list", "--limit", "x"}, "limit"},
	} {
		code, _, errs := runCLI(t, "", append(append([]string{"cdr"}, tc.args...), "-c", cfg)...)
		if code != 2 || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "usage: switchboard cdr "+tc.args[0]) {
			t.Errorf("%v: %d %q, want exit 2 and %q", tc.args, code, errs, tc.want)
		}
	}

	if code, out, _ = runCLI(t, "", "cdr", "purge", "--until", "1796000060000", "-c", cfg); code != 0 || !strings.Contains(out, "deleted 1 records of acc") {
		t.Fatalf("purge: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "", "cdr", "list", "-o", "json", "-c", cfg); code != 0 || strings.Contains(out, "c1@x") || !strings.Contains(out, "c2@x") {
		t.Fatalf("after purge: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "", "help"); code != 0 || !strings.Contains(out, "cdr ") {
		t.Fatalf("help does not list cdr: %q", out)
	}
}
