package acc

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// Listing limits: what acc.list and `cdr list` return by default, and at
// most (an export streams everything).
const (
	defaultListLimit = 100
	maxListLimit     = 10000
)

// listArgs are the filters of acc.list and of the CLI: users, Call-ID,
// start time range, how many, which table.
type listArgs struct {
	From   string  `json:"from"`
	To     string  `json:"to"`
	CallID string  `json:"call_id"`
	Since  string  `json:"since"`
	Until  string  `json:"until"`
	Limit  num     `json:"limit"`
	Missed boolArg `json:"missed"`
}

// filter turns the arguments into a store filter; now is for relative
// times ("1h": an hour ago). The error names the argument.
func (a listArgs) filter(now time.Time) (store.CDRFilter, error) {
	f := store.CDRFilter{FromUser: a.From, ToUser: a.To, CallID: a.CallID, Missed: bool(a.Missed), Limit: int(a.Limit)}
	var err error
	if f.Since, err = parseTime(a.Since, now); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if f.Until, err = parseTime(a.Until, now); err != nil {
		return f, fmt.Errorf("until: %w", err)
	}
	if f.Limit < 0 {
		return f, fmt.Errorf("limit: %d is negative", f.Limit)
	}
	return f, store.CheckCDRFilter(&f)
}

// timeLayouts are the absolute times since and until take; those without
// a zone are UTC.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

// parseTime reads a time for since or until: RFC 3339
// ("2026-12-03T10:00:00Z", "2026-12-03T10:00:00+01:00"), a date and time
// in UTC ("2026-12-03 10:00", "2026-12-03"), a duration meaning that long
// before now ("90m", "24h"), or milliseconds since the epoch as the
// records hold them. "" is no bound (0).
func parseTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 1e12 {
			return 0, fmt.Errorf("%q: a number is milliseconds since the epoch (13 digits); for seconds ago write %ss", s, s)
		}
		return ms, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil {
		if d <= 0 {
			return 0, fmt.Errorf("%q: want a positive duration", s)
		}
		return now.Add(-d).UnixMilli(), nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("%q: want a time (2026-12-03T10:00:00Z, 2026-12-03 10:00 in UTC, 2026-12-03), a duration before now (24h), or ms since the epoch", s)
}

func (a *Acc) registerCommands(h *modules.Host) {
	h.Command("acc.list", mgmt.Command{
		Help: `call records, newest first: {"from":"alice","to":"bob","call_id":"...","since":"24h","until":"2026-12-03 10:00","limit":100,"missed":false} ` +
			`(since/until bound the start: RFC 3339, a UTC date and time, a duration before now, or ms; missed: the missed_calls table)`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args listArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Limit == 0 {
				args.Limit = defaultListLimit
			}
			if args.Limit > maxListLimit {
				return nil, &mgmt.ArgError{Msg: fmt.Sprintf("limit %d: at most %d (switchboard cdr export streams everything)", args.Limit, maxListLimit)}
			}
			f, err := args.filter(time.Now())
			if err != nil {
				return nil, &mgmt.ArgError{Msg: err.Error()}
			}
			if a.st == nil {
				return nil, errors.New("no store")
			}
			cs, err := a.st.ListCDRs(ctx, f)
			if err != nil {
				return nil, err
			}
			table := "acc"
			if f.Missed {
				table = "missed_calls"
			}
			return map[string]any{"table": table, "records": views(cs), "count": len(cs)}, nil
		},
	})
}

// num is an integer given as JSON or as a string (ctl's key=value).
type num int64

func (n *num) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = num(v)
	return nil
}

// boolArg is a boolean given as JSON or as a string ("true", "1").
type boolArg bool

func (v *boolArg) UnmarshalJSON(b []byte) error {
	x, err := strconv.ParseBool(strings.Trim(string(b), `"`))
	if err != nil {
		return fmt.Errorf("%s is not a boolean", b)
	}
	*v = boolArg(x)
	return nil
}

// The offline subcommands: `switchboard cdr list|export|purge`, on the
// store of the configuration (the server need not run).
var cliCommands = map[string]modules.CLICommand{
	"list": {
		Usage: "[--from USER] [--to USER] [--call-id ID] [--since T] [--until T] [--limit N] [--missed] [-o table|json]",
		Help:  "list call records, newest first (100 by default); T: 2026-12-03T10:00:00Z, 2026-12-03 10:00 (UTC), 24h (before now)",
		Run:   cliList,
	},
	"export": {
		Usage: "--csv|--json [--from USER] [--to USER] [--call-id ID] [--since T] [--until T] [--limit N] [--missed]",
		Help:  "write call records to standard output, oldest first, all of them by default: CSV with a header line, or JSON lines",
		Run:   cliExport,
	},
	"purge": {
		Usage: "--until T [--missed]",
		Help:  "delete the call records that started before T (retention)",
		Run:   cliPurge,
	},
}

// filterFlags registers the filters on fs.
func filterFlags(fs *flag.FlagSet, a *listArgs, limit int) {
	fs.StringVar(&a.From, "from", "", "only calls from `USER` (the From user)")
	fs.StringVar(&a.To, "to", "", "only calls to `USER` (the To user)")
	fs.StringVar(&a.CallID, "call-id", "", "only the call with this Call-ID")
	fs.StringVar(&a.Since, "since", "", "only calls that started at or after `T`")
	fs.StringVar(&a.Until, "until", "", "only calls that started before `T`")
	fs.Var((*numFlag)(&a.Limit), "limit", "at most `N` records")
	fs.BoolVar((*bool)(&a.Missed), "missed", false, "the missed_calls table instead of acc")
	a.Limit = num(limit)
}

type numFlag num

func (n *numFlag) String() string { return strconv.FormatInt(int64(*n), 10) }
func (n *numFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	*n = numFlag(v)
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var a listArgs
	var format string
	fs := newFlags("list")
	filterFlags(fs, &a, defaultListLimit)
	fs.StringVar(&format, "o", "table", "output: table or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if format != "table" && format != "json" {
		return usageErr("-o " + format + ": want table or json")
	}
	f, err := a.filter(time.Now())
	if err != nil {
		return usageErr(err.Error())
	}
	cs, err := st.ListCDRs(ctx, f)
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(views(cs))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START (UTC)\tFROM\tTO\tANSWER\tDURATION\tCODE\tREASON\tENDED\tCALLER\tCALL-ID")
	for i := range cs {
		c := &cs[i]
		answer := "-"
		if c.Answer != 0 {
			answer = "+" + msDuration(c.Answer-c.Start)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s %s\t%s\t%s\n", msTime(c.Start), dash(c.FromUser), dash(c.ToUser),
			answer, msDuration(c.Duration), c.Code, dash(c.Reason), c.EndedBy, c.EndReason, dash(c.Caller), c.CallID)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cliExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var a listArgs
	var asCSV, asJSON bool
	fs := newFlags("export")
	filterFlags(fs, &a, 0)
	fs.BoolVar(&asCSV, "csv", false, "CSV with a header line")
	fs.BoolVar(&asJSON, "json", false, "one JSON object a line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if asCSV == asJSON {
		return usageErr("give one of --csv and --json")
	}
	f, err := a.filter(time.Now())
	if err != nil {
		return usageErr(err.Error())
	}
	f.Oldest = true
	format := "json"
	var line []byte
	if asCSV {
		format = "csv"
		line = append(line, csvHeaderLine...)
	}
	// An export of a large table is no quick listing: no 30 s bound.
	ctx = context.WithoutCancel(ctx)
	err = st.ForEachCDR(ctx, f, func(c *store.CDR) error {
		line = appendRecord(line, format, c)
		if len(line) < 64<<10 {
			return nil
		}
		_, err := out.Write(line)
		line = line[:0]
		return err
	})
	if err != nil {
		return err
	}
	_, err = out.Write(line)
	return err
}

func cliPurge(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var until string
	var missed bool
	fs := newFlags("purge")
	fs.StringVar(&until, "until", "", "delete the records that started before `T`")
	fs.BoolVar(&missed, "missed", false, "the missed_calls table instead of acc")
	if err := parse(fs, args); err != nil {
		return err
	}
	if until == "" {
		return usageErr("--until is required")
	}
	t, err := parseTime(until, time.Now())
	if err != nil {
		return usageErr("until: " + err.Error())
	}
	n, err := st.DeleteCDRs(ctx, missed, t)
	if err != nil {
		return err
	}
	table := "acc"
	if missed {
		table = "missed_calls"
	}
	fmt.Fprintf(out, "deleted %d records of %s that started before %s UTC\n", n, table, msTime(t))
	return nil
}

func newFlags(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet("cdr "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error is returned and printed with the usage
	return fs
}

// parse parses the flags; the subcommands take no other arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr(err.Error())
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument " + strconv.Quote(fs.Arg(0)))
	}
	return nil
}

// usageErr is a mistake in the command line: printed with the usage,
// exit 2.
func usageErr(msg string) error { return &modules.KeyError{Msg: msg} }
