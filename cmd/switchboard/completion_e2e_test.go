package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// complete runs the completion script of shell for the words typed
// (the last being completed) and returns the candidates. compadd and
// _files are stood in for in zsh, whose completion system only runs
// inside an interactive line editor.
func complete(t *testing.T, shell string, words ...string) []string {
	t.Helper()
	bin := switchboardBinary(t)
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	var script string
	switch shell {
	case "bash":
		script = "source <('" + bin + "' completion bash)\nCOMP_WORDS=('" + bin + "' " + strings.Join(quoted, " ") + ")\n" +
			"COMP_CWORD=" + strconv.Itoa(len(words)) + "\n_switchboard\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	case "zsh":
		script = "source <('" + bin + "' completion zsh)\ncompadd() { [[ $1 == -- ]] && shift; print -l -- \"$@\" }\n_files() { print FILES }\n" +
			"words=('" + bin + "' " + strings.Join(quoted, " ") + ")\nCURRENT=" + strconv.Itoa(len(words)+1) + "\nPREFIX='" + words[len(words)-1] + "'\n_switchboard\n"
	}
	out, err := exec.Command(shell, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got
}

// TestE2ECompletion: the bash and zsh scripts complete subcommands,
// module verbs, ctl's flags' values and, against a running server, its
// management commands.
func TestE2ECompletion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end tests skipped in -short mode")
	}
	srv := startServer(t, "")
	for _, shell := range []string{"bash", "zsh"} {
		if _, err := exec.LookPath(shell); err != nil {
			t.Fatalf("%s not installed (scripts/test-deps.sh installs it)", shell)
		}
		t.Run(shell, func(t *testing.T) {
			// zsh's stand-in compadd gets every candidate; bash filters by the prefix.
			has := func(got []string, want ...string) {
				t.Helper()
				for _, w := range want {
					found := false
					for _, g := range got {
						found = found || g == w
					}
					if !found {
						t.Errorf("%q not among %q", w, got)
					}
				}
			}
			has(complete(t, shell, "ct"), "ctl")
			has(complete(t, shell, "permissions", ""), "add", "del", "list")
			has(complete(t, shell, "completion", ""), "bash", "zsh")
			has(complete(t, shell, "ctl", "-o", ""), "table", "json", "names")
			start := time.Now()
			got := complete(t, shell, "ctl", "-c", srv.Config, "registrations.")
			has(got, "registrations.list", "registrations.delete")
			if shell == "zsh" {
				has(got, "events.list", "trace.start", "log.level")
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("ctl completion took %s", time.Since(start))
			}
			if got := complete(t, shell, "ctl", "-c", srv.Config, "registrations.list", ""); len(got) != 0 && !(len(got) == 1 && got[0] == "FILES") {
				t.Errorf("after the command: %q", got)
			}
		})
	}
}
