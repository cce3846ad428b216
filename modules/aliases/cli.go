package aliases

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"switchboard/modules"
	"switchboard/store"
)

// The offline subcommands: `switchboard aliases add|list|del|import|
// export`, on the store of the configuration; a running server loads a
// change within aliases.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage: "<alias@domain> <user@domain>",
		Help:  "map an alias (a DID) of a served domain to a subscriber",
		Run:   cliAdd,
	},
	"list": {
		Usage: "[--domain D]",
		Help:  "list the aliases, of one domain or all",
		Run:   cliList,
	},
	"del": {
		Usage: "<alias@domain>",
		Help:  "delete an alias",
		Run:   cliDel,
	},
	"import": {
		Usage: "<file.csv | -> [--replace]",
		Help:  "add the aliases of a CSV file (header alias,target or OpenSIPS's alias_username,alias_domain,username,domain), all or none; --replace: instead of the aliases stored",
		Run:   cliImport,
	},
	"export": {
		Usage: "[--domain D]",
		Help:  "write the aliases as CSV (alias_username,alias_domain,username,domain)",
		Run:   cliExport,
	},
}

func usageErr(format string, args ...any) error {
	return &modules.KeyError{Msg: fmt.Sprintf(format, args...)}
}

func cliAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	pos, err := modules.ParseFlags(flag.NewFlagSet("aliases add", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr("add takes an alias and the subscriber it reaches")
	}
	a, err := store.NewAlias(pos[0], pos[1])
	if err != nil {
		return err
	}
	if a, err = st.AddAlias(ctx, a); err != nil {
		return err
	}
	fmt.Fprintf(out, "added alias %s -> %s\n", a.AliasName(), a.Target())
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("aliases list", flag.ContinueOnError)
	domain := fs.String("domain", "", "only the aliases of domain `D`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("list takes no arguments but --domain")
	}
	as, err := st.ListAliases(ctx, *domain)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALIAS\tSUBSCRIBER\tCREATED")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.AliasName(), a.Target(), time.Unix(a.Created, 0).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	pos, err := modules.ParseFlags(flag.NewFlagSet("aliases del", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("del takes one alias")
	}
	a, err := st.DeleteAlias(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted alias %s -> %s\n", a.AliasName(), a.Target())
	return nil
}

func cliImport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("aliases import", flag.ContinueOnError)
	replace := fs.Bool("replace", false, "replace every alias stored by the file's, in one change")
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
	as, err := ReadCSV(in)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if err := st.AddAliases(ctx, as, *replace); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *replace {
		fmt.Fprintf(out, "imported %d aliases, replacing the aliases stored before\n", len(as))
	} else {
		fmt.Fprintf(out, "imported %d aliases\n", len(as))
	}
	return nil
}

func cliExport(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("aliases export", flag.ContinueOnError)
	domain := fs.String("domain", "", "only the aliases of domain `D`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("export takes no arguments but --domain")
	}
	as, err := st.ListAliases(ctx, *domain)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(out)
	cw.Write([]string{"alias_username", "alias_domain", "username", "domain"})
	for _, a := range as {
		cw.Write([]string{a.AliasUser, a.AliasDomain, a.User, a.Domain})
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads aliases from CSV whose header names the columns: alias
// and target (user@domain each), or OpenSIPS's alias_username,
// alias_domain, username and domain. Each is checked; an error names the
// line. (Whether the alias domain is served is checked by the store.)
func ReadCSV(r io.Reader) ([]store.Alias, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("empty file: the first line names the columns (alias,target or alias_username,alias_domain,username,domain)")
	}
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		switch h {
		case "alias", "target", "alias_username", "alias_domain", "username", "domain", "id":
		default:
			return nil, fmt.Errorf("line 1: unknown column %q (alias,target or alias_username,alias_domain,username,domain)", h)
		}
		col[h] = i
	}
	_, short := col["alias"]
	_, shortT := col["target"]
	long := true
	for _, c := range []string{"alias_username", "alias_domain", "username", "domain"} {
		_, ok := col[c]
		long = long && ok
	}
	if !(short && shortT) && !long {
		return nil, errors.New("line 1: the columns are alias,target or alias_username,alias_domain,username,domain")
	}
	var as []store.Alias
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return as, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		alias, target := get("alias"), get("target")
		if !(short && shortT) {
			alias, target = get("alias_username")+"@"+get("alias_domain"), get("username")+"@"+get("domain")
		}
		a, err := store.NewAlias(alias, target)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if prev, dup := seen[a.AliasName()]; dup {
			return nil, fmt.Errorf("line %d: alias %s is on line %d already", line, a.AliasName(), prev)
		}
		seen[a.AliasName()] = line
		as = append(as, a)
	}
}
