package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/modules"
	"switchboard/store"
)

// A module of the tests with offline subcommands: "count" counts the
// domains of the store it was given, "fail" returns a settings-style error.
func init() {
	modules.Register(modules.Definition{
		Name: "clitest",
		Doc:  "a module of the tests",
		New:  func(*modules.Host, any) (modules.Instance, error) { return idle{}, nil },
		CLI: map[string]modules.CLICommand{
			"count": {Usage: "[PREFIX]", Help: "count the store's domains", Run: func(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
				ds, err := st.ListDomains(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%d domains, args %q\n", len(ds), args)
				return nil
			}},
			"fail": {Usage: "--group N", Help: "always refuses its arguments", Run: func(context.Context, *store.Store, []string, io.Writer) error {
				return modules.Errorf("--group", "must be a number")
			}},
		},
	})
}

// TestModuleCLI: `switchboard <module> <verb>` runs on the store of the
// configuration given with -c (in any position), and usage errors exit 2.
func TestModuleCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sb.yaml")
	os.WriteFile(cfg, []byte("storage:\n  dir: "+filepath.Join(dir, "data")+"\n"), 0o644)
	st, err := store.Open(filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain(context.Background(), "example.com")
	st.Close()

	if code, out, errs := runCLI(t, "", "clitest", "count", "x", "-c", cfg, "y"); code != 0 || out != "1 domains, args [\"x\" \"y\"]\n" {
		t.Errorf("count: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "", "clitest", "fail", "-c", cfg); code != 2 || !strings.Contains(errs, "--group: must be a number") || !strings.Contains(errs, "usage: switchboard clitest fail --group N") {
		t.Errorf("fail: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "", "clitest", "nosuch"); code != 2 || !strings.Contains(errs, `unknown command "nosuch"`) || !strings.Contains(errs, "count [PREFIX]") {
		t.Errorf("unknown verb: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "", "clitest", "count", "-c"); code != 2 || !strings.Contains(errs, "-c needs a value") {
		t.Errorf("-c without a value: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "", "help"); code != 0 || !strings.Contains(out, "clitest") {
		t.Errorf("help does not list the module: %q", out)
	}
}

// idle is a module instance that does nothing.
type idle struct{}

func (idle) Start() error { return nil }
func (idle) Stop()        {}
