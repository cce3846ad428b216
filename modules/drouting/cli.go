package drouting

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

// The offline commands, `switchboard drouting <verb>`: one module, its
// three tables as verb prefixes (gw-add, carrier-list, rule-import...).
// They work on the store of the configuration; a running server sees the
// change within drouting.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"gw-add": {Usage: "GWID --address IP[:PORT] [--transport udp|tcp|tls] [--strip N] [--pri-prefix DIGITS] " +
		"[--type N] [--probe-mode 0|1|2] [--state 0|1] [--attrs TEXT] [--description TEXT]",
		Help: "add a gateway", Run: cliGWAdd},
	"gw-set":    {Usage: "GWID [the flags of gw-add]", Help: "change the fields given of a gateway (--state 1 disables it)", Run: cliGWSet},
	"gw-del":    {Usage: "GWID", Help: "delete a gateway (lists that name it skip it)", Run: cliGWDel},
	"gw-list":   {Usage: "", Help: "list the gateways", Run: cliGWList},
	"gw-import": {Usage: "FILE.csv|- [--replace]", Help: "add gateways from CSV (" + strings.Join(gwColumns, ",") + "); --replace the whole table", Run: cliGWImport},
	"gw-export": {Usage: "[FILE.csv]", Help: "write the gateways as CSV (standard output by default)", Run: cliGWExport},

	"carrier-add": {Usage: "CARRIERID --gwlist GW[=WEIGHT],... [--sort-alg N|W|R] [--flags 0|1] [--state 0|1] [--attrs TEXT] [--description TEXT]",
		Help: "add a carrier (flags 1: only its first usable gateway)", Run: cliCarrierAdd},
	"carrier-set":    {Usage: "CARRIERID [the flags of carrier-add]", Help: "change the fields given of a carrier", Run: cliCarrierSet},
	"carrier-del":    {Usage: "CARRIERID", Help: "delete a carrier", Run: cliCarrierDel},
	"carrier-list":   {Usage: "", Help: "list the carriers", Run: cliCarrierList},
	"carrier-import": {Usage: "FILE.csv|- [--replace]", Help: "add carriers from CSV (" + strings.Join(carrierColumns, ",") + "); --replace the whole table", Run: cliCarrierImport},
	"carrier-export": {Usage: "[FILE.csv]", Help: "write the carriers as CSV", Run: cliCarrierExport},

	"rule-add": {Usage: "--gwlist GW|#CARRIER[=WEIGHT],... [--group 0[,N...]] [--prefix DIGITS] [--timerec 'Mon-Fri 08:00-17:59'] " +
		"[--priority N] [--sort-alg N|W|R] [--routeid TEXT] [--attrs TEXT] [--description TEXT]",
		Help: "add a rule (group 0 and every number by default)", Run: cliRuleAdd},
	"rule-del":    {Usage: "RULEID", Help: "delete a rule", Run: cliRuleDel},
	"rule-list":   {Usage: "[--group N] [--prefix DIGITS] [--limit N]", Help: "list the rules", Run: cliRuleList},
	"rule-import": {Usage: "FILE.csv|- [--replace]", Help: "add rules from CSV (" + strings.Join(ruleColumns, ",") + "); --replace the whole table", Run: cliRuleImport},
	"rule-export": {Usage: "[FILE.csv]", Help: "write the rules as CSV", Run: cliRuleExport},
}

// usageErr reports bad arguments: printed with the usage, exit status 2.
func usageErr(format string, args ...any) error {
	return &modules.KeyError{Msg: fmt.Sprintf(format, args...)}
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// idFirst splits off the leading positional argument (the flag package
// stops at the first one).
func idFirst(args []string, what string) (string, []string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, usageErr("the %s is required first", what)
	}
	return args[0], args[1:], nil
}

func gwFlags(fs *flag.FlagSet, g *store.DRGateway) {
	fs.StringVar(&g.Address, "address", g.Address, "IP[:port] of the gateway")
	fs.StringVar(&g.Transport, "transport", g.Transport, "udp, tcp or tls")
	fs.IntVar(&g.Strip, "strip", g.Strip, "leading characters of the number removed")
	fs.StringVar(&g.PriPrefix, "pri-prefix", g.PriPrefix, "prefix put in front of the number")
	fs.IntVar(&g.Type, "type", g.Type, "gateway type")
	fs.IntVar(&g.ProbeMode, "probe-mode", g.ProbeMode, "0 no probing, 1 while down, 2 always")
	fs.IntVar(&g.State, "state", g.State, "0 active, 1 disabled")
	fs.StringVar(&g.Attrs, "attrs", g.Attrs, "free text for the route")
	fs.StringVar(&g.Description, "description", g.Description, "description")
}

func cliGWAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, rest, err := idFirst(args, "gateway's ID")
	if err != nil {
		return err
	}
	g := store.DRGateway{GWID: id}
	fs := flag.NewFlagSet("drouting gw-add", flag.ContinueOnError)
	gwFlags(fs, &g)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := st.AddDRGateways(ctx, []store.DRGateway{g}, false); err != nil {
		return err
	}
	fmt.Fprintf(out, "added dr gateway %s\n", id)
	return nil
}

func cliGWSet(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, rest, err := idFirst(args, "gateway's ID")
	if err != nil {
		return err
	}
	g, err := st.GetDRGateway(ctx, id)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("drouting gw-set", flag.ContinueOnError)
	gwFlags(fs, &g)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := st.UpdateDRGateway(ctx, g); err != nil {
		return err
	}
	fmt.Fprintf(out, "changed dr gateway %s\n", id)
	return nil
}

func cliGWDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 1 {
		return usageErr("one gateway ID")
	}
	if err := st.DeleteDRGateway(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted dr gateway %s\n", args[0])
	return nil
}

func cliGWList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if err := parseFlags(flag.NewFlagSet("drouting gw-list", flag.ContinueOnError), args); err != nil {
		return err
	}
	gs, err := st.ListDRGateways(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GWID\tADDRESS\tTRANSPORT\tSTRIP\tPRI_PREFIX\tTYPE\tPROBE\tSTATE\tDESCRIPTION")
	for _, g := range gs {
		state := "active"
		if g.State != 0 {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", g.GWID, g.Address, g.Transport, g.Strip, g.PriPrefix, g.Type, g.ProbeMode, state, g.Description)
	}
	return tw.Flush()
}

func carrierFlags(fs *flag.FlagSet, c *store.DRCarrier) {
	fs.StringVar(&c.GWList, "gwlist", c.GWList, "gateways, comma-separated, each with an optional =weight")
	fs.StringVar(&c.SortAlg, "sort-alg", c.SortAlg, "N as listed, W by weight, R random")
	fs.IntVar(&c.Flags, "flags", c.Flags, "1: only the first usable gateway")
	fs.IntVar(&c.State, "state", c.State, "0 active, 1 disabled")
	fs.StringVar(&c.Attrs, "attrs", c.Attrs, "free text for the route")
	fs.StringVar(&c.Description, "description", c.Description, "description")
}

func cliCarrierAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, rest, err := idFirst(args, "carrier's ID")
	if err != nil {
		return err
	}
	c := store.DRCarrier{CarrierID: id}
	fs := flag.NewFlagSet("drouting carrier-add", flag.ContinueOnError)
	carrierFlags(fs, &c)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := st.AddDRCarriers(ctx, []store.DRCarrier{c}, false); err != nil {
		return err
	}
	fmt.Fprintf(out, "added dr carrier %s\n", id)
	return nil
}

func cliCarrierSet(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, rest, err := idFirst(args, "carrier's ID")
	if err != nil {
		return err
	}
	cs, err := st.ListDRCarriers(ctx)
	if err != nil {
		return err
	}
	var c *store.DRCarrier
	for i := range cs {
		if cs[i].CarrierID == id {
			c = &cs[i]
		}
	}
	if c == nil {
		return fmt.Errorf("%w: dr carrier %s does not exist", store.ErrNoDR, id)
	}
	fs := flag.NewFlagSet("drouting carrier-set", flag.ContinueOnError)
	carrierFlags(fs, c)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if err := st.UpdateDRCarrier(ctx, *c); err != nil {
		return err
	}
	fmt.Fprintf(out, "changed dr carrier %s\n", id)
	return nil
}

func cliCarrierDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 1 {
		return usageErr("one carrier ID")
	}
	if err := st.DeleteDRCarrier(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted dr carrier %s\n", args[0])
	return nil
}

func cliCarrierList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if err := parseFlags(flag.NewFlagSet("drouting carrier-list", flag.ContinueOnError), args); err != nil {
		return err
	}
	cs, err := st.ListDRCarriers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CARRIERID\tGWLIST\tSORT\tFLAGS\tSTATE\tDESCRIPTION")
	for _, c := range cs {
		state := "active"
		if c.State != 0 {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.CarrierID, c.GWList, c.SortAlg, c.Flags, state, c.Description)
	}
	return tw.Flush()
}

func ruleFlags(fs *flag.FlagSet, r *store.DRRule) {
	fs.StringVar(&r.Groups, "group", r.Groups, "routing groups, comma-separated")
	fs.StringVar(&r.Prefix, "prefix", r.Prefix, "number prefix (empty: every number)")
	fs.StringVar(&r.TimeRec, "timerec", r.TimeRec, "when the rule applies: days and/or HH:MM-HH:MM (empty: always)")
	fs.IntVar(&r.Priority, "priority", r.Priority, "the highest applicable priority of a prefix wins")
	fs.StringVar(&r.GWList, "gwlist", r.GWList, "gateways and #carriers, comma-separated, each with an optional =weight")
	fs.StringVar(&r.SortAlg, "sort-alg", r.SortAlg, "N as listed, W by weight, R random")
	fs.StringVar(&r.RouteID, "routeid", r.RouteID, "free text for the route")
	fs.StringVar(&r.Attrs, "attrs", r.Attrs, "free text for the route")
	fs.StringVar(&r.Description, "description", r.Description, "description")
}

func cliRuleAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	r := store.DRRule{Groups: "0"}
	fs := flag.NewFlagSet("drouting rule-add", flag.ContinueOnError)
	ruleFlags(fs, &r)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rs := []store.DRRule{r}
	if err := st.AddDRRules(ctx, rs, false); err != nil {
		return err
	}
	fmt.Fprintf(out, "added dr rule %d\n", rs[0].ID)
	return nil
}

func cliRuleDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 1 {
		return usageErr("one rule ID")
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return usageErr("rule ID %q is not a positive number", args[0])
	}
	if err := st.DeleteDRRule(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted dr rule %d\n", id)
	return nil
}

func cliRuleList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("drouting rule-list", flag.ContinueOnError)
	group := fs.Int("group", -1, "only this group")
	prefix := fs.String("prefix", "", "only prefixes starting with these digits")
	limit := fs.Int("limit", 0, "at most this many (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULEID\tGROUPS\tPREFIX\tTIMEREC\tPRIORITY\tGWLIST\tSORT\tDESCRIPTION")
	err := st.ForEachDRRule(ctx, store.DRRuleFilter{Group: *group, Prefix: *prefix, Limit: *limit}, func(r *store.DRRule) error {
		p, t := r.Prefix, r.TimeRec
		if p == "" {
			p = "(any)"
		}
		if t == "" {
			t = "always"
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Groups, p, t, r.Priority, r.GWList, r.SortAlg, r.Description)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// CSV: a header line names the columns (any order, unknown names are an
// error, missing ones take their defaults), one row per line after it.
var (
	gwColumns      = []string{"gwid", "type", "address", "transport", "strip", "pri_prefix", "attrs", "probe_mode", "state", "description"}
	carrierColumns = []string{"carrierid", "gwlist", "flags", "sort_alg", "state", "attrs", "description"}
	ruleColumns    = []string{"ruleid", "groupid", "prefix", "timerec", "priority", "routeid", "gwlist", "sort_alg", "attrs", "description"}
)

// csvReader reads rows by column name.
type csvReader struct {
	r    *csv.Reader
	name string
	col  map[string]int
	rec  []string
	line int
}

func openCSV(path string, columns []string, in io.Reader) (*csvReader, func(), error) {
	closer := func() {}
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		in, closer = f, func() { f.Close() }
	}
	cr := &csvReader{r: csv.NewReader(in), name: path, col: map[string]int{}}
	cr.r.ReuseRecord = true
	cr.r.FieldsPerRecord = -1
	head, err := cr.r.Read()
	if err != nil {
		closer()
		if err == io.EOF {
			return nil, nil, fmt.Errorf("%s: empty: want a header line (%s)", path, strings.Join(columns, ","))
		}
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, h := range head {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		known := false
		for _, c := range columns {
			known = known || c == h
		}
		if !known {
			closer()
			return nil, nil, fmt.Errorf("%s:1: unknown column %q (columns: %s)", path, h, strings.Join(columns, ","))
		}
		cr.col[h] = i
	}
	cr.line = 1
	return cr, closer, nil
}

// next reads a row; false at the end.
func (cr *csvReader) next() (bool, error) {
	rec, err := cr.r.Read()
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", cr.name, err)
	}
	cr.line, _ = cr.r.FieldPos(0)
	if len(rec) != len(cr.col) {
		return false, fmt.Errorf("%s:%d: %d fields, the header has %d", cr.name, cr.line, len(rec), len(cr.col))
	}
	cr.rec = rec
	return true, nil
}

func (cr *csvReader) str(name string) string {
	if i, ok := cr.col[name]; ok {
		return strings.Clone(cr.rec[i])
	}
	return ""
}

func (cr *csvReader) int(name string) (int, error) {
	s := strings.TrimSpace(cr.str(name))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s:%d: %s: %q is not a number", cr.name, cr.line, name, s)
	}
	return n, nil
}

// importArgs parses FILE|- [--replace].
func importArgs(args []string, verb string) (string, bool, error) {
	fs := flag.NewFlagSet("drouting "+verb, flag.ContinueOnError)
	replace := fs.Bool("replace", false, "replace the whole table")
	var path string
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		path, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", false, err
	}
	if path == "" {
		return "", false, usageErr("the CSV file (or - for standard input) is required")
	}
	return path, *replace, nil
}

var stdin io.Reader = os.Stdin

func cliGWImport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	path, replace, err := importArgs(args, "gw-import")
	if err != nil {
		return err
	}
	cr, closer, err := openCSV(path, gwColumns, stdin)
	if err != nil {
		return err
	}
	defer closer()
	var gs []store.DRGateway
	for {
		ok, err := cr.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		g := store.DRGateway{GWID: cr.str("gwid"), Address: cr.str("address"), Transport: cr.str("transport"),
			PriPrefix: cr.str("pri_prefix"), Attrs: cr.str("attrs"), Description: cr.str("description")}
		for _, f := range []struct {
			name string
			v    *int
		}{{"type", &g.Type}, {"strip", &g.Strip}, {"probe_mode", &g.ProbeMode}, {"state", &g.State}} {
			if *f.v, err = cr.int(f.name); err != nil {
				return err
			}
		}
		if err := store.CheckDRGateway(&g); err != nil {
			return fmt.Errorf("%s:%d: %w", path, cr.line, err)
		}
		gs = append(gs, g)
	}
	if err := st.AddDRGateways(ctx, gs, replace); err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %d dr gateways%s\n", len(gs), replacedNote(replace))
	return nil
}

func replacedNote(replace bool) string {
	if replace {
		return " (table replaced)"
	}
	return ""
}

func cliCarrierImport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	path, replace, err := importArgs(args, "carrier-import")
	if err != nil {
		return err
	}
	cr, closer, err := openCSV(path, carrierColumns, stdin)
	if err != nil {
		return err
	}
	defer closer()
	var cs []store.DRCarrier
	for {
		ok, err := cr.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		c := store.DRCarrier{CarrierID: cr.str("carrierid"), GWList: cr.str("gwlist"), SortAlg: cr.str("sort_alg"),
			Attrs: cr.str("attrs"), Description: cr.str("description")}
		if c.Flags, err = cr.int("flags"); err != nil {
			return err
		}
		if c.State, err = cr.int("state"); err != nil {
			return err
		}
		if err := store.CheckDRCarrier(&c); err != nil {
			return fmt.Errorf("%s:%d: %w", path, cr.line, err)
		}
		cs = append(cs, c)
	}
	if err := st.AddDRCarriers(ctx, cs, replace); err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %d dr carriers%s\n", len(cs), replacedNote(replace))
	return nil
}

func cliRuleImport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	path, replace, err := importArgs(args, "rule-import")
	if err != nil {
		return err
	}
	cr, closer, err := openCSV(path, ruleColumns, stdin)
	if err != nil {
		return err
	}
	defer closer()
	var rs []store.DRRule
	for {
		ok, err := cr.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		r := store.DRRule{Groups: cr.str("groupid"), Prefix: cr.str("prefix"), TimeRec: cr.str("timerec"), RouteID: cr.str("routeid"),
			GWList: cr.str("gwlist"), SortAlg: cr.str("sort_alg"), Attrs: cr.str("attrs"), Description: cr.str("description")}
		if _, has := cr.col["groupid"]; !has {
			r.Groups = "0"
		}
		if r.Priority, err = cr.int("priority"); err != nil {
			return err
		}
		// ruleid is written by rule-export; the store gives new IDs.
		if err := store.CheckDRRule(&r); err != nil {
			return fmt.Errorf("%s:%d: %w", path, cr.line, err)
		}
		rs = append(rs, r)
	}
	if err := st.AddDRRules(ctx, rs, replace); err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %d dr rules%s\n", len(rs), replacedNote(replace))
	return nil
}

// exportTo opens the output: FILE, or out.
func exportTo(args []string, out io.Writer, verb string) (*csv.Writer, func() error, error) {
	switch len(args) {
	case 0:
		w := csv.NewWriter(out)
		return w, func() error { w.Flush(); return w.Error() }, nil
	case 1:
		if strings.HasPrefix(args[0], "-") {
			return nil, nil, usageErr("unknown flag %q", args[0])
		}
		f, err := os.Create(args[0])
		if err != nil {
			return nil, nil, err
		}
		w := csv.NewWriter(f)
		return w, func() error {
			w.Flush()
			if err := w.Error(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}, nil
	}
	return nil, nil, usageErr("%s takes at most one file name", verb)
}

func cliGWExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	w, done, err := exportTo(args, out, "gw-export")
	if err != nil {
		return err
	}
	gs, err := st.ListDRGateways(ctx)
	if err != nil {
		return err
	}
	w.Write(gwColumns)
	for _, g := range gs {
		w.Write([]string{g.GWID, strconv.Itoa(g.Type), g.Address, g.Transport, strconv.Itoa(g.Strip), g.PriPrefix, g.Attrs,
			strconv.Itoa(g.ProbeMode), strconv.Itoa(g.State), g.Description})
	}
	return done()
}

func cliCarrierExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	w, done, err := exportTo(args, out, "carrier-export")
	if err != nil {
		return err
	}
	cs, err := st.ListDRCarriers(ctx)
	if err != nil {
		return err
	}
	w.Write(carrierColumns)
	for _, c := range cs {
		w.Write([]string{c.CarrierID, c.GWList, strconv.Itoa(c.Flags), c.SortAlg, strconv.Itoa(c.State), c.Attrs, c.Description})
	}
	return done()
}

func cliRuleExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	w, done, err := exportTo(args, out, "rule-export")
	if err != nil {
		return err
	}
	w.Write(ruleColumns)
	rec := make([]string, len(ruleColumns))
	err = st.ForEachDRRule(ctx, store.DRRuleFilter{Group: -1}, func(r *store.DRRule) error {
		rec = append(rec[:0], strconv.FormatInt(r.ID, 10), r.Groups, r.Prefix, r.TimeRec, strconv.Itoa(r.Priority), r.RouteID,
			r.GWList, r.SortAlg, r.Attrs, r.Description)
		return w.Write(rec)
	})
	if err != nil {
		return err
	}
	return done()
}
