package dialog

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"switchboard/modules"
	"switchboard/store"
)

// cliCommands are `switchboard dialog <verb>`: the dialogs stored for the
// next start (dialog.persist), read and edited offline. The running
// server's dialogs are `switchboard ctl dialog.list`.
var cliCommands = map[string]modules.CLICommand{
	"list": {Usage: "", Help: "list the dialogs stored for the next start (the running server's: switchboard ctl dialog.list)", Run: cliList},
	"del": {Usage: "<id>", Help: "delete a stored dialog, so that the next start does not restore it (a running server writes it again at its next change)",
		Run: cliDel},
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 0 {
		return &modules.KeyError{Msg: "list takes no arguments"}
	}
	ds, err := st.ListDialogs(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCALL-ID\tFROM\tTO\tANSWERED\tENDS\tPROFILES")
	for _, d := range ds {
		var ps []string
		for _, p := range d.Profiles {
			if p.Value != "" {
				ps = append(ps, p.Name+"="+p.Value)
			} else {
				ps = append(ps, p.Name)
			}
		}
		fmt.Fprintf(tw, "%016x\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.CallID, d.FromURI, d.ToURI, msTime(d.AnswerTime), msTime(d.Timeout), strings.Join(ps, ","))
	}
	return tw.Flush()
}

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 1 {
		return &modules.KeyError{Msg: "del takes one dialog id"}
	}
	id, ok := parseID([]byte(args[0]))
	if !ok {
		return &modules.KeyError{Msg: fmt.Sprintf("id %q: want the 16 hexadecimal digits of switchboard dialog list", args[0])}
	}
	if err := st.DeleteDialog(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted dialog %s\n", args[0])
	return nil
}
