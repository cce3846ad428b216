package groups

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// Info is a membership in the management API.
type Info struct {
	User    string `json:"user"` // user@domain
	Group   string `json:"group"`
	Created int64  `json:"created,omitempty"`
}

func infos(ms []store.GroupMember) []Info {
	out := make([]Info, 0, len(ms))
	for _, m := range ms {
		out = append(out, Info{User: m.User + "@" + m.Domain, Group: m.Group, Created: m.Created})
	}
	return out
}

func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedGroup), errors.Is(err, store.ErrGroupMemberExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoGroupMember):
		return fmt.Errorf("%w: %v", mgmt.ErrNotFound, err)
	}
	return err
}

// registerCommands adds the management commands; changes are in use when
// the command returns.
func (g *Groups) registerCommands(h *modules.Host) {
	h.Command("groups.add", mgmt.Command{
		Help: `put a subscriber in a group: {"user":"alice@example.com","group":"pstn"}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args Info
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			m, err := store.NewGroupMember(args.User, args.Group)
			if err != nil {
				return nil, storeErr(err)
			}
			if m, err = g.st.AddGroupMember(ctx, m); err != nil {
				return nil, storeErr(err)
			}
			_, err = g.Load(ctx)
			return infos([]store.GroupMember{m})[0], err
		},
	})
	h.Command("groups.list", mgmt.Command{
		Help:     `list the memberships in the store, of one group or all: {"group":"pstn"}`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Group string `json:"group"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			ms, err := g.st.ListGroupMembers(ctx, args.Group)
			if err != nil {
				return nil, err
			}
			return infos(ms), nil
		},
	})
	h.Command("groups.del", mgmt.Command{
		Help: `take a subscriber out of a group: {"user":"alice@example.com","group":"pstn"}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args Info
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			m, err := g.st.DeleteGroupMember(ctx, args.User, args.Group)
			if err != nil {
				return nil, storeErr(err)
			}
			_, err = g.Load(ctx)
			return map[string]any{"deleted": infos([]store.GroupMember{m})}, err
		},
	})
	h.Command("groups.reload", mgmt.Command{
		Help: "load the memberships from the store now (they are also reloaded within groups.poll_interval of a change)",
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			v, err := g.Load(ctx)
			if err != nil {
				return nil, err
			}
			n, groups := g.Len()
			return map[string]any{"memberships": n, "groups": groups, "version": v}, nil
		},
	})
	h.Command("groups.check", mgmt.Command{
		Help:     `is a subscriber in a group, with the memberships in use (is_user_in): {"user":"alice@example.com","group":"pstn"}`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args Info
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			m, err := store.NewGroupMember(args.User, args.Group)
			if err != nil {
				return nil, storeErr(err)
			}
			return map[string]bool{"member": g.IsUserIn(nil, []byte(m.User), []byte(m.Domain), m.Group)}, nil
		},
	})
}

// The offline subcommands: `switchboard groups add|list|del`, on the
// store of the configuration; a running server loads a change within
// groups.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage: "<user@domain> <group>",
		Help:  "put a subscriber in a group",
		Run:   cliAdd,
	},
	"list": {
		Usage: "[--group G]",
		Help:  "list the memberships, of one group or all",
		Run:   cliList,
	},
	"del": {
		Usage: "<user@domain> <group>",
		Help:  "take a subscriber out of a group",
		Run:   cliDel,
	},
}

func usageErr(msg string) error { return &modules.KeyError{Msg: msg} }

func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErr(err.Error())
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func cliAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	pos, err := parseFlags(flag.NewFlagSet("groups add", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr("add takes a subscriber and a group")
	}
	m, err := store.NewGroupMember(pos[0], pos[1])
	if err != nil {
		return err
	}
	if m, err = st.AddGroupMember(ctx, m); err != nil {
		return err
	}
	fmt.Fprintf(out, "added %s@%s to group %s\n", m.User, m.Domain, m.Group)
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("groups list", flag.ContinueOnError)
	group := fs.String("group", "", "only group `G`")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("list takes no arguments but --group")
	}
	ms, err := st.ListGroupMembers(ctx, *group)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSUBSCRIBER\tCREATED")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s@%s\t%s\n", m.Group, m.User, m.Domain, time.Unix(m.Created, 0).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	pos, err := parseFlags(flag.NewFlagSet("groups del", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr("del takes a subscriber and a group")
	}
	m, err := st.DeleteGroupMember(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted %s@%s from group %s\n", m.User, m.Domain, m.Group)
	return nil
}
