package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// parityRows are the rows of the OpenSIPS MI table in README.md: the MI
// command and the ctl invocation ("" where there is none).
func parityRows(t *testing.T) [][2]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| OpenSIPS MI | switchboard ctl | notes |")
	if !ok {
		t.Fatal("README.md has no OpenSIPS MI table")
	}
	cell := regexp.MustCompile("^`ctl ([^`]*)`$")
	var rows [][2]string
	for _, line := range strings.Split(table, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cols := strings.Split(line, "|")
		if len(cols) < 4 {
			t.Fatalf("malformed row %q", line)
		}
		mi, ctl := strings.TrimSpace(cols[1]), strings.TrimSpace(cols[2])
		if ctl == "—" {
			rows = append(rows, [2]string{mi, ""})
			continue
		}
		m := cell.FindStringSubmatch(ctl)
		if m == nil {
			t.Fatalf("row %q: the ctl column is not `ctl <command> [args]`", line)
		}
		rows = append(rows, [2]string{mi, m[1]})
	}
	if len(rows) < 30 {
		t.Fatalf("only %d rows read", len(rows))
	}
	return rows
}

// TestE2ECtlParity runs every ctl equivalent of the README's OpenSIPS MI
// table against the real binary, as written there: each must be a
// command of the server, take the arguments shown, and answer (a 404 for
// an object the test server does not have counts: the command ran). Each
// is run as a table and as JSON.
func TestE2ECtlParity(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "auth:\n  register: false\n")
	if r := sendUDP(t, srv.Port, registerNoAuth("alice", 1), 2*time.Second); !strings.HasPrefix(r, "SIP/2.0 200") {
		t.Fatalf("REGISTER: %q", r)
	}
	ctl := func(args ...string) (int, string, string) {
		cmd := exec.Command(switchboardBinary(t), append([]string{"ctl", "-c", srv.Config}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	// Destructive rows last, so that the listings see the binding.
	rows := parityRows(t)
	var later [][2]string
	for _, r := range rows {
		if r[1] == "" {
			continue
		}
		if strings.HasPrefix(r[1], "registrations.delete") || strings.HasPrefix(r[1], "registrations.flush") || strings.HasPrefix(r[1], "reload") {
			later = append(later, r)
			continue
		}
		runParityRow(t, ctl, r)
	}
	for _, r := range later {
		runParityRow(t, ctl, r)
	}
}

func runParityRow(t *testing.T, ctl func(...string) (int, string, string), r [2]string) {
	t.Helper()
	words := strings.Fields(r[1])
	for i, w := range words { // '{"json":1}' as written for a shell
		words[i] = strings.TrimSuffix(strings.TrimPrefix(w, "'"), "'")
	}
	for _, format := range []string{"json", "table"} {
		code, out, errs := ctl(append([]string{"-o", format}, words...)...)
		switch {
		case code == 0:
			if format == "json" && !json.Valid([]byte(out)) {
				t.Errorf("%s (%s): -o json printed %q", r[1], r[0], out)
			}
			if format == "table" && strings.HasPrefix(strings.TrimSpace(out), "{") {
				t.Errorf("%s (%s): the table is JSON: %q", r[1], r[0], out)
			}
		case code == 1 && strings.Contains(errs, ": 404: "):
			// The command ran and found no such object.
		default:
			t.Errorf("%s (%s): exit %d\n%s%s", r[1], r[0], code, out, errs)
		}
		if strings.HasPrefix(r[1], "registrations.delete") || strings.HasPrefix(r[1], "events.subscribe") {
			break // once: what it acts on is gone, or there, after the first
		}
	}
}
