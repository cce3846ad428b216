package rtpengine

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"text/tabwriter"

	"switchboard/modules"
	"switchboard/store"
)

// cliCommands are `switchboard rtpengine <verb>`: they work on the
// rtpengine table of the configuration's store, and a running server
// loads the change within rtpengine.poll_interval (or at once with
// `switchboard ctl rtpengine.reload`). The set is --setid (the table's
// set_id): --set is the server's own option (--set key=value).
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage:  "<udp:IP:port> [--setid N] [--weight N] [--disabled] [--description TEXT]",
		Help:   "add an rtpengine control socket to a set (0 by default); refused outside outbound.allow",
		RunEnv: cliAdd,
	},
	"list": {
		Usage: "[--setid N]",
		Help:  "list the rtpengine instances of the table, of one set or all (rtpengine.instances of the configuration are not in it)",
		Run:   cliList,
	},
	"remove": {
		Usage: "<id> | <udp:IP:port> [--setid N]",
		Help:  "remove an instance by id, or by socket and set",
		Run:   cliRemove,
	},
}

// usageErr is a mistake in the command line: the server prints it with
// the usage and exits 2.
func usageErr(format string, args ...any) error {
	return &modules.KeyError{Msg: fmt.Sprintf(format, args...)}
}

// parseArgs parses flags wherever they are among the arguments and
// returns the others.
func parseArgs(verb string, args []string, def func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("rtpengine "+verb, flag.ContinueOnError)
	def(fs)
	return modules.ParseFlags(fs, args)
}

func cliAdd(ctx context.Context, env modules.CLIEnv, args []string, out io.Writer) error {
	r := store.RTPEngine{Weight: 1}
	pos, err := parseArgs("add", args, func(fs *flag.FlagSet) {
		fs.IntVar(&r.SetID, "setid", 0, "set `N` (0-65535)")
		fs.IntVar(&r.Weight, "weight", 1, "weight `N` (1-1000)")
		fs.BoolVar(&r.Disabled, "disabled", false, "loaded but not used until enabled")
		fs.StringVar(&r.Description, "description", "", "description")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("add takes one socket (udp:IP:port)")
	}
	r.Socket = pos[0]
	var bind netip.Addr
	var conf []confInstance
	if s, ok := env.Settings.(*Settings); ok {
		bind, _ = s.bindAddr()
		conf, _ = s.parseInstances()
	}
	if err := checkNewRow(&r, env.OutboundAllowed, bind, conf); err != nil {
		return err
	}
	r, err = env.Store.AddRTPEngine(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added id %d: set %d %s weight %d\n", r.ID, r.SetID, r.Socket, r.Weight)
	return nil
}

// checkNewRow refuses a row the server would skip (malformed, outside
// outbound.allow, of another family than bind_address) or that repeats
// an instance of conf in its set, where the operator sees why: the
// offline `add` and rtpengine.add.
func checkNewRow(r *store.RTPEngine, allowed func(netip.Addr) bool, bind netip.Addr, conf []confInstance) error {
	if err := store.CheckRTPEngine(r); err != nil {
		return err
	}
	addr, _, _ := store.ParseRTPEngineSocket(r.Socket)
	if allowed != nil && !allowed(addr.Addr()) {
		return fmt.Errorf("rtpengine %s: %s is outside outbound.allow: the server sends nowhere else", r.Socket, addr.Addr())
	}
	if bind.IsValid() && bind.Is4() != addr.Addr().Unmap().Is4() {
		return fmt.Errorf("rtpengine %s: cannot be reached from rtpengine.bind_address %s (another address family)", r.Socket, bind)
	}
	for _, c := range conf {
		if c.set == r.SetID && c.addr == addr {
			return fmt.Errorf("rtpengine %s is already in set %d by rtpengine.%s of the configuration: %w", r.Socket, r.SetID, c.key(), store.ErrRTPEngineExists)
		}
	}
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	set := -1
	pos, err := parseArgs("list", args, func(fs *flag.FlagSet) { fs.IntVar(&set, "setid", -1, "only set `N`") })
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("list takes no arguments but --setid")
	}
	rs, err := st.ListRTPEngines(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSET\tSOCKET\tWEIGHT\tSTATE\tDESCRIPTION")
	for _, r := range rs {
		if set >= 0 && r.SetID != set {
			continue
		}
		state := "enabled"
		if r.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\t%s\n", r.ID, r.SetID, r.Socket, r.Weight, state, r.Description)
	}
	return tw.Flush()
}

func cliRemove(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	set := 0
	pos, err := parseArgs("remove", args, func(fs *flag.FlagSet) { fs.IntVar(&set, "setid", 0, "with a socket: its set `N`") })
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("remove takes an id or a socket")
	}
	var r store.RTPEngine
	if id, perr := strconv.ParseInt(pos[0], 10, 64); perr == nil {
		if id <= 0 {
			return usageErr("ids are positive numbers")
		}
		r, err = st.DeleteRTPEngine(ctx, id)
	} else {
		r, err = st.DeleteRTPEngineOf(ctx, set, pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "removed id %d: set %d %s\n", r.ID, r.SetID, r.Socket)
	return nil
}
