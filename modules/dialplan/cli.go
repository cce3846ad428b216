package dialplan

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"switchboard/modules"
	"switchboard/store"
)

// The offline subcommands: `switchboard dialplan add|list|del|import|
// export|translate`, on the store of the configuration; a running server
// loads a change within dialplan.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage: `<dpid> <exact|prefix|regex> <match_exp> [<repl_exp>] [--pr N] [--subst RE] [--attrs TEXT] [--icase] [--disabled]`,
		Help:  `add a rule, e.g. add 1 prefix 0 '+33\2' (0xxx becomes +33xxx)`,
		Run:   cliAdd,
	},
	"list": {
		Usage: "[--dpid N]",
		Help:  "list the rules, of one dialplan or all",
		Run:   cliList,
	},
	"del": {
		Usage: "<id> | --dpid N",
		Help:  "delete a rule by id, or every rule of a dialplan",
		Run:   cliDel,
	},
	"import": {
		Usage: "<file.csv | -> [--replace]",
		Help:  "add the rules of a CSV file (header: " + strings.Join(csvColumns, ",") + "), all or none; --replace: instead of the rules stored",
		Run:   cliImport,
	},
	"export": {
		Usage: "[--dpid N]",
		Help:  "write the rules as CSV, in the form import reads",
		Run:   cliExport,
	},
	"translate": {
		Usage: "<dpid> <input>",
		Help:  "translate an input with the rules in the store, naming the rule that matched",
		Run:   cliTranslate,
	},
}

// usageErr is a mistake in the command line: printed with the usage,
// exit status 2.
func usageErr(format string, args ...any) error {
	return &modules.KeyError{Msg: fmt.Sprintf(format, args...)}
}

func newFlags(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet("dialplan "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error is returned and printed with the usage
	return fs
}

func atoi(what, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, usageErr("%s %q is not a number", what, s)
	}
	return n, nil
}

func cliAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var r store.DialplanRule
	var icase bool
	fs := newFlags("add")
	fs.IntVar(&r.Priority, "pr", 0, "priority `N`: the lowest that matches wins")
	fs.StringVar(&r.SubstExp, "subst", "", "regex rules: the part of the input repl_exp replaces")
	fs.StringVar(&r.Attrs, "attrs", "", "text handed to the route with the output")
	fs.BoolVar(&icase, "icase", false, "exact and regex rules: ignore case")
	fs.BoolVar(&r.Disabled, "disabled", false, "store the rule disabled")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 3 || len(pos) > 4 {
		return usageErr("add takes a dpid, a match operator, a match expression and an optional replacement")
	}
	if r.DPID, err = atoi("dpid", pos[0]); err != nil {
		return err
	}
	r.MatchOp, r.MatchExp = pos[1], pos[2]
	if len(pos) == 4 {
		r.ReplExp = pos[3]
	}
	if icase {
		r.MatchFlags = store.DialplanCaseInsensitive
	}
	r, err = st.AddDialplanRule(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added %s\n", store.DialplanRuleName(&r))
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("list")
	dpid := fs.Int("dpid", -1, "only dialplan `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("list takes no arguments but --dpid")
	}
	rs, err := st.ListDialplanRules(ctx, *dpid)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDPID\tPR\tOP\tMATCH\tFLAGS\tSUBST\tREPL\tATTRS\tDISABLED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%v\n", r.ID, r.DPID, r.Priority, r.MatchOp, r.MatchExp,
			r.MatchFlags, r.SubstExp, r.ReplExp, r.Attrs, r.Disabled)
	}
	return tw.Flush()
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("del")
	dpid := fs.Int("dpid", -1, "delete every rule of dialplan `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 1 && *dpid < 0:
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || id <= 0 {
			return usageErr("rule id %q is not a positive number", pos[0])
		}
		r, err := st.DeleteDialplanRule(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted %s\n", store.DialplanRuleName(&r))
	case len(pos) == 0 && *dpid >= 0:
		n, err := st.DeleteDialplan(ctx, *dpid)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted %d rules of dialplan %d\n", n, *dpid)
	default:
		return usageErr("del takes a rule id or --dpid N")
	}
	return nil
}

func cliImport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("import")
	replace := fs.Bool("replace", false, "replace every rule stored by the file's, in one change")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("import takes one file (- for the standard input)")
	}
	in := io.Reader(os.Stdin)
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	rs, err := ReadCSV(in)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if err := st.AddDialplanRules(ctx, rs, *replace); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *replace {
		fmt.Fprintf(out, "imported %d rules, replacing the rules stored before\n", len(rs))
	} else {
		fmt.Fprintf(out, "imported %d rules\n", len(rs))
	}
	return nil
}

func cliExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("export")
	dpid := fs.Int("dpid", -1, "only dialplan `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("export takes no arguments but --dpid")
	}
	rs, err := st.ListDialplanRules(ctx, *dpid)
	if err != nil {
		return err
	}
	return WriteCSV(out, rs)
}

func cliTranslate(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 2 {
		return usageErr("translate takes a dpid and an input")
	}
	dpid, err := atoi("dpid", args[0])
	if err != nil {
		return err
	}
	rows, err := st.ListDialplanRules(ctx, dpid)
	if err != nil {
		return err
	}
	t := buildTable(rows, emptyTable, func(r *store.DialplanRule, err error) {
		fmt.Fprintf(out, "skipped: %v\n", err)
	})
	res, r, ok := t.translate(dpid, []byte(args[1]), nil)
	if !ok {
		fmt.Fprintf(out, "no rule of dialplan %d matches %q\n", dpid, args[1])
		return nil
	}
	fmt.Fprintf(out, "%s\t(rule %d", res, r.id)
	if r.attrs != "" {
		fmt.Fprintf(out, ", attrs %q", r.attrs)
	}
	fmt.Fprintln(out, ")")
	return nil
}

// csvColumns are the columns export writes and import reads (in any
// order; dpid, match_op and match_exp are required). Import also takes an
// id column (ignored: the store gives new ids) and an empty timerec.
var csvColumns = []string{"dpid", "pr", "match_op", "match_exp", "match_flags", "subst_exp", "repl_exp", "attrs", "disabled"}

// WriteCSV writes rules as CSV with a header line.
func WriteCSV(w io.Writer, rs []store.DialplanRule) error {
	cw := csv.NewWriter(w)
	cw.Write(csvColumns)
	for _, r := range rs {
		disabled := "0"
		if r.Disabled {
			disabled = "1"
		}
		cw.Write([]string{strconv.Itoa(r.DPID), strconv.Itoa(r.Priority), r.MatchOp, r.MatchExp, strconv.Itoa(r.MatchFlags),
			r.SubstExp, r.ReplExp, r.Attrs, disabled})
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads rules from CSV with a header line naming the columns, and
// validates each: an error names the line and the field. OpenSIPS's
// numeric match_op is taken too (0 exact, 1 regex; 2, fnmatch, is not
// supported).
func ReadCSV(r io.Reader) ([]store.DialplanRule, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("empty file: the first line names the columns (" + strings.Join(csvColumns, ",") + ")")
	}
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := h == "id" || h == "timerec"
		for _, c := range csvColumns {
			known = known || h == c
		}
		if !known {
			return nil, fmt.Errorf("line 1: unknown column %q (the columns are %s)", h, strings.Join(csvColumns, ","))
		}
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("line 1: column %q twice", h)
		}
		col[h] = i
	}
	for _, req := range []string{"dpid", "match_op", "match_exp"} {
		if _, ok := col[req]; !ok {
			return nil, fmt.Errorf("line 1: no %s column (the first line names the columns: %s)", req, strings.Join(csvColumns, ","))
		}
	}
	var rs []store.DialplanRule
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rs, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		rule, err := csvRule(rec, col)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		k := fmt.Sprintf("%d\x00%d\x00%s\x00%s\x00%d", rule.DPID, rule.Priority, rule.MatchOp, rule.MatchExp, rule.MatchFlags)
		if prev, dup := seen[k]; dup {
			return nil, fmt.Errorf("line %d: %s is on line %d already", line, store.DialplanRuleName(&rule), prev)
		}
		seen[k] = line
		rs = append(rs, rule)
	}
}

func csvRule(rec []string, col map[string]int) (store.DialplanRule, error) {
	get := func(name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	var r store.DialplanRule
	num := func(name string, v *int) error {
		s := strings.TrimSpace(get(name))
		if s == "" {
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", name, s)
		}
		*v = n
		return nil
	}
	for name, v := range map[string]*int{"dpid": &r.DPID, "pr": &r.Priority, "match_flags": &r.MatchFlags} {
		if err := num(name, v); err != nil {
			return r, err
		}
	}
	if strings.TrimSpace(get("dpid")) == "" {
		return r, errors.New("dpid: missing")
	}
	switch op := strings.TrimSpace(get("match_op")); op {
	case "0":
		r.MatchOp = store.DialplanExact
	case "1":
		r.MatchOp = store.DialplanRegex
	case "2":
		return r, errors.New("match_op: 2 (fnmatch) is not supported: use prefix or regex")
	default:
		r.MatchOp = op
	}
	r.MatchExp, r.SubstExp, r.ReplExp, r.Attrs = get("match_exp"), get("subst_exp"), get("repl_exp"), get("attrs")
	switch d := strings.ToLower(strings.TrimSpace(get("disabled"))); d {
	case "", "0", "false", "no":
	case "1", "true", "yes":
		r.Disabled = true
	default:
		return r, fmt.Errorf("disabled: %q: want 0 or 1", d)
	}
	if t := strings.TrimSpace(get("timerec")); t != "" {
		return r, fmt.Errorf("timerec: %q: time-dependent rules are not supported; the column must be empty", t)
	}
	return r, store.CheckDialplanRule(&r)
}
