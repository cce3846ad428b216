package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"switchboard/modules"
)

// cmdModule runs a module's offline subcommand (modules.Definition.CLI):
// `switchboard <module> <verb> [args] [-c FILE] [--set key=value]`, on the
// store of that configuration.
func cmdModule(d modules.Definition, args []string, stdout, stderr io.Writer) int {
	usage := moduleUsage(d)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := d.CLI[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "switchboard %s: unknown command %q\n\n%s", d.CommandName(), args[0], usage)
		return 2
	}
	rest, path, sets, err := configArgs(args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "switchboard %s %s: %v\n", d.CommandName(), args[0], err)
		return 2
	}
	cfg, err := loadConfig(path, sets)
	if err != nil {
		return exitCode(&exitError{2, err}, stderr)
	}
	st, err := openStorage(cfg)
	if err != nil {
		return exitCode(err, stderr)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.RunEnv != nil {
		allow := cfg.Outbound.AllowPrefixes()
		err = c.RunEnv(ctx, modules.CLIEnv{Store: st, Settings: cfg.Modules[d.Name],
			OutboundAllowed: func(a netip.Addr) bool { return modules.AllowedBy(allow, a) }}, rest, stdout)
	} else {
		err = c.Run(ctx, st, rest, stdout)
	}
	if err != nil {
		var ke *modules.KeyError
		if errors.As(err, &ke) || errors.Is(err, flag.ErrHelp) {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stderr, "switchboard %s %s: %v\n", d.CommandName(), args[0], err)
			}
			fmt.Fprintf(stderr, "usage: switchboard %s %s %s\n", d.CommandName(), args[0], c.Usage)
			return 2
		}
		return exitCode(err, stderr)
	}
	return 0
}

// moduleUsage lists a module's subcommands.
func moduleUsage(d modules.Definition) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: switchboard %s <command> [args] [-c FILE] [--set key=value]\n\n%s\n\ncommands:\n", d.CommandName(), d.Doc)
	verbs := make([]string, 0, len(d.CLI))
	for v := range d.CLI {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	for _, v := range verbs {
		fmt.Fprintf(&b, "  %s %s\n      %s\n", v, d.CLI[v].Usage, d.CLI[v].Help)
	}
	return b.String()
}

// moduleCommands is the usage line of every module with offline
// subcommands.
func moduleCommands() string {
	defs, _ := modules.Ordered()
	var b strings.Builder
	for _, d := range defs {
		if len(d.CLI) > 0 {
			fmt.Fprintf(&b, "  %-15s %s\n", d.CommandName(), d.Doc)
		}
	}
	return b.String()
}

// configArgs takes -c/--config FILE and --set key=value (in any position)
// out of args, for subcommands that parse the rest themselves.
func configArgs(args []string) (rest []string, path string, sets []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "c" && name != "config" && name != "set") {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, "", nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			val = args[i]
		}
		if name == "set" {
			sets = append(sets, val)
		} else {
			path = val
		}
	}
	return rest, path, sets, nil
}
