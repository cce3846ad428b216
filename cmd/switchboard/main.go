// Command switchboard is the Switchboard SIP proxy server and its tools.
//
//	switchboard run [-c FILE] [--set key=value ...]   start the server
//	switchboard check-config [-c FILE] [--set ...]     check a configuration and exit
//	switchboard config-default                         print the embedded default configuration
//	switchboard version                                print the version
//	switchboard ctl [-a ADDR] [-token T] CMD [JSON]    call the management API
//	switchboard panel user add|passwd|role|del|list    the web panel's users
//
// Without -c the embedded defaults are used (cmd/switchboard/config/default.yaml).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"switchboard/cmd/switchboard/config"
	"switchboard/modules"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: switchboard <command> [flags]

commands:
  run             start the server (-c FILE, --set key=value)
  check-config    check a configuration file and exit (-c FILE, --set key=value)
  config-default  print the embedded default configuration
  ctl             call the management API: switchboard ctl [-a ADDR] [-token T] [-o table|json] CMD [JSON-ARGS]
  completion      print a shell completion script: source <(switchboard completion bash|zsh)
  user            manage subscribers: add, passwd, del, list
  domain          manage served domains: add, del, list
  panel           manage the web panel's users: panel user add, passwd, role, del, list
  version         print the version

Run 'switchboard <command> -h' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code: 0 success,
// 1 failure at run time, 2 bad usage or configuration.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "check-config":
		return cmdCheckConfig(rest, stdout, stderr)
	case "config-default":
		stdout.Write(config.DefaultYAML)
		return 0
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "switchboard %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "ctl":
		return cmdCtl(rest, stdout, stderr)
	case "completion":
		return cmdCompletion(rest, stdout, stderr)
	case "user":
		return cmdUser(rest, stdin, stdout, stderr)
	case "domain":
		return cmdDomain(rest, stdout, stderr)
	case "panel":
		return cmdPanel(rest, stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText())
		return 0
	}
	if d, ok := modules.LookupCLI(cmd); ok {
		return cmdModule(d, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n%s", cmd, usageText())
	return 2
}

// usageText is the usage with the modules' subcommands.
func usageText() string {
	if m := moduleCommands(); m != "" {
		return strings.Replace(usage, "  version ", m+"  version ", 1)
	}
	return usage
}

// setFlags collects repeated --set key=value overrides.
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

// configFlags registers -c and --set on fs.
func configFlags(fs *flag.FlagSet) (path *string, sets *setFlags) {
	path = fs.String("c", "", "configuration `file` (YAML); the embedded defaults when empty")
	sets = &setFlags{}
	fs.Var(sets, "set", "override a configuration key: `key=value` (repeatable), e.g. --set timers.t1=250ms")
	return path, sets
}

func loadConfig(path string, sets []string) (*config.Config, error) {
	if path == "" {
		return config.Load("(embedded defaults)", config.DefaultYAML, sets)
	}
	return config.LoadFile(path, sets)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path, sets := configFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := loadConfig(*path, *sets); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	name := *path
	if name == "" {
		name = "embedded defaults"
	}
	fmt.Fprintf(stdout, "%s: ok\n", name)
	return 0
}

// exitError carries an exit code through error returns.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "switchboard:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
