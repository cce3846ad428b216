package dispatcher

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

// cliCommands are `switchboard dispatcher <verb>`: they work on the store
// of the configuration, and a running server loads the change within
// dispatcher.poll_interval. The set is --setid (the table's column):
// --set is the server's own option (--set key=value).
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage: "<destination> [--setid N] [--weight N] [--priority N] [--state active|inactive|probing] [--probe-mode 0|1] [--socket proto:ip[:port]] [--attrs TEXT] [--description TEXT]",
		Help:  "add a destination (sip:ip[:port][;transport=udp|tcp|tls]) to a set (0 by default)",
		Run:   cliAdd,
	},
	"list": {
		Usage: "[--setid N]",
		Help:  "list the destinations in the store, of one set or all",
		Run:   cliList,
	},
	"del": {
		Usage: "<id> | <destination> [--setid N]",
		Help:  "delete a destination by id, or by destination and set",
		Run:   cliDel,
	},
	"import": {
		Usage: "<file.csv | -> [--replace]",
		Help:  "add the destinations of a CSV file (" + strings.Join(csvColumns, ",") + "), all or none; --replace replaces the whole table",
		Run:   cliImport,
	},
	"export": {
		Usage: "[file.csv | -] [--setid N]",
		Help:  "write the destinations as CSV (the format import reads), to a file or standard output",
		Run:   cliExport,
	},
}

// csvColumns are the columns of import and export, OpenSIPS's table
// without id.
var csvColumns = []string{"setid", "destination", "socket", "state", "weight", "priority", "attrs", "probe_mode", "description"}

// usageErr is a mistake in the command line: the server prints it with
// the usage and exits 2.
func usageErr(format string, args ...any) error {
	return &modules.KeyError{Msg: fmt.Sprintf(format, args...)}
}

func newFlags(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet("dispatcher "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func cliAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	d := store.DispatcherDest{Weight: 1}
	var state string
	fs := newFlags("add")
	fs.IntVar(&d.SetID, "setid", 0, "set `N` (0-65535)")
	fs.IntVar(&d.Weight, "weight", 1, "weight `N` (1-1000)")
	fs.IntVar(&d.Priority, "priority", 0, "priority `N` (0-65535, higher first)")
	fs.StringVar(&state, "state", "active", "active, inactive or probing")
	fs.IntVar(&d.ProbeMode, "probe-mode", 0, "1: probe with OPTIONS while active too; 0: only while probing")
	fs.StringVar(&d.Socket, "socket", "", "local address probes are sent from, proto:ip[:port]")
	fs.StringVar(&d.Attrs, "attrs", "", "attributes handed to routes")
	fs.StringVar(&d.Description, "description", "", "description")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("add takes one destination")
	}
	d.Destination = pos[0]
	if d.State, err = store.ParseDispatcherState(state); err != nil {
		return err
	}
	d, err = st.AddDispatcherDest(ctx, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added id %d: set %d %s\n", d.ID, d.SetID, d.Destination)
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("list")
	set := fs.Int("setid", -1, "only set `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("list takes no arguments but --setid")
	}
	ds, err := st.ListDispatcherDests(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSET\tDESTINATION\tSTATE\tWEIGHT\tPRIORITY\tPROBE\tSOCKET\tATTRS\tDESCRIPTION")
	for _, d := range ds {
		if *set >= 0 && d.SetID != *set {
			continue
		}
		probe := "probing"
		if d.ProbeMode == 1 {
			probe = "always"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", d.ID, d.SetID, d.Destination, store.DispatcherStateNames[d.State],
			d.Weight, d.Priority, probe, d.Socket, d.Attrs, d.Description)
	}
	return tw.Flush()
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("del")
	set := fs.Int("setid", 0, "with a destination: its set `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("del takes an id or a destination")
	}
	var d store.DispatcherDest
	if id, perr := strconv.ParseInt(pos[0], 10, 64); perr == nil {
		if id <= 0 {
			return usageErr("ids are positive numbers")
		}
		d, err = st.DeleteDispatcherDest(ctx, id)
	} else {
		d, err = st.DeleteDispatcherDestOf(ctx, *set, pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted id %d: set %d %s\n", d.ID, d.SetID, d.Destination)
	return nil
}

func cliImport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("import")
	replace := fs.Bool("replace", false, "replace the whole table (in one transaction)")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("import takes one file (- for standard input)")
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	ds, lines, err := readCSV(in)
	if err != nil {
		return err
	}
	if *replace {
		err = st.ReplaceDispatcherDests(ctx, ds)
	} else {
		if err := checkNotStored(ctx, st, ds, lines); err != nil {
			return err
		}
		err = st.AddDispatcherDests(ctx, ds)
	}
	if err != nil {
		return err
	}
	verb := "added"
	if *replace {
		verb = "the table is now"
	}
	fmt.Fprintf(out, "%s %d destinations\n", verb, len(ds))
	return nil
}

// checkNotStored refuses rows already in the store, naming their line
// (the store would name the entry).
func checkNotStored(ctx context.Context, st *store.Store, ds []store.DispatcherDest, lines []int) error {
	have, err := st.ListDispatcherDests(ctx)
	if err != nil {
		return err
	}
	ids := map[stateKey]int64{}
	for _, h := range have {
		ids[stateKey{h.SetID, h.Destination}] = h.ID
	}
	for i, d := range ds {
		if id, ok := ids[stateKey{d.SetID, d.Destination}]; ok {
			return fmt.Errorf("line %d: %w", lines[i], fmt.Errorf("destination %s is already in set %d (id %d); --replace replaces the table: %w",
				d.Destination, d.SetID, id, store.ErrDispatcherExists))
		}
	}
	return nil
}

// readCSV reads destinations: an optional header line naming the columns
// (any order, any subset of csvColumns with destination), else the
// columns in csvColumns order (trailing ones may be left out). Empty
// fields take the defaults (set 0, active, weight 1, priority 0, probe
// mode 0). Every row is validated; errors name the line and the field.
// It returns the line of each row too.
func readCSV(in io.Reader) ([]store.DispatcherDest, []int, error) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1
	r.Comment = '#'
	r.TrimLeadingSpace = true
	cols := csvColumns
	var ds []store.DispatcherDest
	var lines []int
	seen := map[stateKey]int{}
	first := true
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		line, _ := r.FieldPos(0)
		if first {
			first = false
			if strings.EqualFold(strings.TrimSpace(rec[0]), "setid") || strings.EqualFold(strings.TrimSpace(rec[0]), "destination") {
				if cols, err = headerColumns(rec); err != nil {
					return nil, nil, fmt.Errorf("line %d: %w", line, err)
				}
				continue
			}
		}
		if len(rec) > len(cols) {
			return nil, nil, fmt.Errorf("line %d: %d fields, the columns are %s", line, len(rec), strings.Join(cols, ","))
		}
		d, err := csvRow(cols, rec)
		if err == nil {
			err = store.CheckDispatcherDest(&d)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", line, err)
		}
		k := stateKey{d.SetID, d.Destination}
		if prev, dup := seen[k]; dup {
			return nil, nil, fmt.Errorf("line %d: destination %s is in set %d already on line %d: %w", line, d.Destination, d.SetID, prev, store.ErrDispatcherExists)
		}
		seen[k] = line
		ds = append(ds, d)
		lines = append(lines, line)
	}
	return ds, lines, nil
}

func headerColumns(rec []string) ([]string, error) {
	var cols []string
	has := map[string]bool{}
	for _, c := range rec {
		c = strings.ToLower(strings.TrimSpace(c))
		known := false
		for _, k := range csvColumns {
			known = known || k == c
		}
		if !known {
			return nil, fmt.Errorf("unknown column %q (the columns are %s)", c, strings.Join(csvColumns, ","))
		}
		if has[c] {
			return nil, fmt.Errorf("column %q twice", c)
		}
		has[c] = true
		cols = append(cols, c)
	}
	if !has["destination"] {
		return nil, errors.New("no destination column")
	}
	return cols, nil
}

func csvRow(cols, rec []string) (store.DispatcherDest, error) {
	d := store.DispatcherDest{Weight: 1}
	for i, v := range rec {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		var err error
		num := func(dst *int) {
			if *dst, err = strconv.Atoi(v); err != nil {
				err = fmt.Errorf("%s %q: not a number", cols[i], v)
			}
		}
		switch cols[i] {
		case "setid":
			num(&d.SetID)
		case "destination":
			d.Destination = v
		case "socket":
			d.Socket = v
		case "state":
			d.State, err = store.ParseDispatcherState(v)
		case "weight":
			num(&d.Weight)
		case "priority":
			num(&d.Priority)
		case "attrs":
			d.Attrs = v
		case "probe_mode":
			num(&d.ProbeMode)
		case "description":
			d.Description = v
		}
		if err != nil {
			return d, err
		}
	}
	return d, nil
}

func cliExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := newFlags("export")
	set := fs.Int("setid", -1, "only set `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErr("export takes at most one file")
	}
	ds, err := st.ListDispatcherDests(ctx)
	if err != nil {
		return err
	}
	w := out
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.OpenFile(pos[0], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	cw := csv.NewWriter(w)
	cw.Write(csvColumns)
	n := 0
	for _, d := range ds {
		if *set >= 0 && d.SetID != *set {
			continue
		}
		cw.Write([]string{strconv.Itoa(d.SetID), d.Destination, d.Socket, store.DispatcherStateNames[d.State], strconv.Itoa(d.Weight),
			strconv.Itoa(d.Priority), d.Attrs, strconv.Itoa(d.ProbeMode), d.Description})
		n++
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	if w != out {
		fmt.Fprintf(out, "exported %d destinations to %s\n", n, pos[0])
	}
	return nil
}
