package fraud

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"switchboard/modules"
	"switchboard/store"
)

// cliCommands are `switchboard fraud <verb>`: they work on the store of the
// configuration, and a running server sees the change within
// fraud.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage: "[--profile N] [--prefix DIGITS] [--start HH:MM] [--end HH:MM] [--days Mon-Fri] [--cpm-warning N] [--cpm-critical N] " +
			"[--total-calls-warning N] [--total-calls-critical N] [--concurrent-calls-warning N] [--concurrent-calls-critical N] " +
			"[--sequential-calls-warning N] [--sequential-calls-critical N]",
		Help: "add a fraud rule (profile 1 and every number by default; thresholds 0 are off)",
		Run:  cliAdd,
	},
	"set": {
		Usage: "ID [the flags of add]",
		Help:  "change the fields given of a fraud rule, keeping its counters",
		Run:   cliSet,
	},
	"del": {
		Usage: "ID",
		Help:  "delete a fraud rule",
		Run:   cliDel,
	},
	"list": {
		Usage: "[--profile N]",
		Help:  "list the fraud rules",
		Run:   cliList,
	},
}

// usageErr reports bad arguments: the server prints it with the usage and
// exits with status 2.
func usageErr(format string, args ...any) error {
	return &modules.KeyError{Msg: fmt.Sprintf(format, args...)}
}

// ruleFlags defines the rule's fields as flags on fs, initialised from r.
func ruleFlags(fs *flag.FlagSet, r *store.FraudRule) {
	fs.IntVar(&r.Profile, "profile", r.Profile, "profile the rule belongs to (1 or more)")
	fs.StringVar(&r.Prefix, "prefix", r.Prefix, "prefix of the called number: digits, +, *, # (empty: every number)")
	fs.StringVar(&r.StartHour, "start", r.StartHour, "first minute the rule applies, HH:MM")
	fs.StringVar(&r.EndHour, "end", r.EndHour, "last minute the rule applies, HH:MM (before --start: spans midnight)")
	fs.StringVar(&r.Days, "days", r.Days, "days of the week, e.g. Mon-Fri,Sun (empty: every day)")
	for i, l := range r.Limits() {
		name := store.FraudLimitNames[i]
		flagName := map[string]string{"cpm": "cpm", "total_calls": "total-calls", "concurrent_calls": "concurrent-calls", "sequential_calls": "sequential-calls"}[name]
		fs.IntVar(&l.Warning, flagName+"-warning", l.Warning, name+" warning threshold (0: off)")
		fs.IntVar(&l.Critical, flagName+"-critical", l.Critical, name+" critical threshold (0: off)")
	}
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}

func cliAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	r := store.FraudRule{Profile: 1}
	fs := flag.NewFlagSet("fraud add", flag.ContinueOnError)
	ruleFlags(fs, &r)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	r, err := st.AddFraudRule(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added fraud rule %d\n", r.ID)
	return nil
}

func ruleID(args []string) (int64, []string, error) {
	if len(args) == 0 {
		return 0, nil, usageErr("the rule's ID is required")
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, nil, usageErr("rule ID %q is not a positive number", args[0])
	}
	return id, args[1:], nil
}

func cliSet(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, rest, err := ruleID(args)
	if err != nil {
		return err
	}
	r, err := st.GetFraudRule(ctx, id)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("fraud set", flag.ContinueOnError)
	ruleFlags(fs, &r)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if err := st.UpdateFraudRule(ctx, r); err != nil {
		return err
	}
	fmt.Fprintf(out, "changed fraud rule %d\n", id)
	return nil
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, rest, err := ruleID(args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return usageErr("unexpected argument %q", rest[0])
	}
	if err := st.DeleteFraudRule(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted fraud rule %d\n", id)
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fraud list", flag.ContinueOnError)
	profile := fs.Int("profile", 0, "only this profile")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	rules, err := st.ListFraudRules(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROFILE\tPREFIX\tHOURS\tDAYS\tCPM\tPER DAY\tCONCURRENT\tSEQUENTIAL")
	for _, r := range rules {
		if *profile != 0 && r.Profile != *profile {
			continue
		}
		days := r.Days
		if days == "" {
			days = "every day"
		}
		prefix := r.Prefix
		if prefix == "" {
			prefix = "(any)"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s-%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Profile, prefix, r.StartHour, r.EndHour, days,
			pair(r.CPM), pair(r.TotalCalls), pair(r.ConcurrentCalls), pair(r.SequentialCalls))
	}
	return tw.Flush()
}

// pair shows a warning and a critical threshold as "w/c", "-" for off.
func pair(l store.FraudLimit) string {
	n := func(v int) string {
		if v == 0 {
			return "-"
		}
		return strconv.Itoa(v)
	}
	return n(l.Warning) + "/" + n(l.Critical)
}
