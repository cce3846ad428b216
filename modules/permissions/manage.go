package permissions

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"text/tabwriter"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
	"switchboard/transport"
)

// entryView is an address entry as the management API and the CLI show it.
type entryView struct {
	ID      int64  `json:"id"`
	Group   int    `json:"group"`
	IP      string `json:"ip"`
	Mask    int    `json:"mask"`
	Port    int    `json:"port"`
	Proto   string `json:"proto"`
	Pattern string `json:"pattern,omitempty"`
	Info    string `json:"info,omitempty"`
	Created int64  `json:"created"`
	Warning string `json:"warning,omitempty"`
}

func view(a store.Address) entryView {
	return entryView{ID: a.ID, Group: a.Group, IP: a.IP, Mask: a.Mask, Port: a.Port, Proto: a.Proto,
		Pattern: a.Pattern, Info: a.ContextInfo, Created: a.Created, Warning: broadWarning(a)}
}

// Prefixes wider than these hold more of the Internet than any one
// network's block (IANA gave out IPv4 by /8 at most; the RIRs hold IPv6
// /12s and give their largest members about a /19): no gateway list
// needs them, and a mistyped mask or a copied lab entry does.
const (
	broadBits4 = 8
	broadBits6 = 16
)

// broadWarning says, for an entry wider than broadBits4 or broadBits6,
// what it trusts; "" for any other.
func broadWarning(a store.Address) string {
	ip, err := netip.ParseAddr(a.IP)
	if err != nil {
		return ""
	}
	is4 := ip.Unmap().Is4()
	if is4 && a.Mask >= broadBits4 || !is4 && a.Mask >= broadBits6 {
		return ""
	}
	what := "much of the Internet"
	switch {
	case a.Mask == 0 && is4:
		what = "every IPv4 source"
	case a.Mask == 0:
		what = "every IPv6 source"
	}
	return "trusts " + what + " (" + a.Prefix() + ") in group " + strconv.Itoa(a.Group) +
		": in the provider's trusted group each calls subscribers unchallenged, in pike.exempt_group none is banned"
}

// udpNote is what the CLI adds for an entry that accepts UDP, whose
// source address anyone without ingress filtering can forge.
const udpNote = "note: UDP sources can be forged; --proto tcp or tls for a peer that can use them (docs: modules/permissions)"

func views(as []store.Address) []entryView {
	out := make([]entryView, 0, len(as))
	for _, a := range as {
		out = append(out, view(a))
	}
	return out
}

// addArgs are the arguments of permissions.add (and the CLI's add).
type addArgs struct {
	IP      string `json:"ip"`
	Group   int    `json:"group"` // 0: DefaultGroup
	Port    int    `json:"port"`
	Proto   string `json:"proto"`
	Pattern string `json:"pattern"`
	Info    string `json:"info"`
}

// DefaultGroup is the group an entry goes to when none is given: the
// provider route set's trusted gateways.
const DefaultGroup = 1

func (a addArgs) address() store.Address {
	if a.Group == 0 {
		a.Group = DefaultGroup
	}
	return store.Address{Group: a.Group, IP: a.IP, Port: a.Port, Proto: a.Proto, Pattern: a.Pattern, ContextInfo: a.Info}
}

type delArgs struct {
	ID    int64  `json:"id"`
	IP    string `json:"ip"`
	Group int    `json:"group"` // with ip; 0: DefaultGroup
}

// del deletes by id, or every entry of a group for an address or subnet.
func del(ctx context.Context, st *store.Store, a delArgs) ([]store.Address, error) {
	switch {
	case a.ID != 0 && a.IP != "":
		return nil, &mgmt.ArgError{Msg: "give id or ip (with group), not both"}
	case a.ID != 0:
		e, err := st.DeleteAddress(ctx, a.ID)
		if err != nil {
			return nil, err
		}
		return []store.Address{e}, nil
	case a.IP != "":
		if a.Group == 0 {
			a.Group = DefaultGroup
		}
		return st.DeleteAddressesOf(ctx, a.Group, a.IP)
	}
	return nil, &mgmt.ArgError{Msg: "give the id of the entry, or its ip and group"}
}

type checkArgs struct {
	IP      string `json:"ip"`
	Port    int    `json:"port"`
	Proto   string `json:"proto"`
	Group   int    `json:"group"` // 0: any
	Subject string `json:"subject"`
}

// registerCommands adds the management API commands. Changes go to the
// store (where other processes see them) and are loaded at once here, so
// they are in effect when the command returns.
func (p *Permissions) registerCommands(h *modules.Host) {
	h.Command("permissions.add", mgmt.Command{
		Help: `add an address entry and load it: {"ip":"192.0.2.0/24","group":1,"port":0,"proto":"any","pattern":"","info":""} (group 1 by default: trusted gateways)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a addArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			e, err := p.st.AddAddress(ctx, a.address())
			if err != nil {
				return nil, apiErr(err)
			}
			_, err = p.reload(ctx)
			return view(e), err
		},
	})
	h.Command("permissions.list", mgmt.Command{
		Help:     `list the address entries in the store, of one group or all: {"group":1}`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				Group int `json:"group"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			as, err := p.st.ListAddresses(ctx, a.Group)
			if err != nil {
				return nil, apiErr(err)
			}
			return views(as), nil
		},
	})
	h.Command("permissions.del", mgmt.Command{
		Help: `delete an address entry by id, or every entry of a group for an address: {"id":7} or {"ip":"192.0.2.0/24","group":1}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a delArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			deleted, err := del(ctx, p.st, a)
			if err != nil {
				return nil, apiErr(err)
			}
			_, err = p.reload(ctx)
			return map[string]any{"deleted": views(deleted)}, err
		},
	})
	h.Command("permissions.reload", mgmt.Command{
		Help: "reload the address table from the store now (it is also reloaded within permissions.poll_interval of any change)",
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			t, err := p.reload(ctx)
			if err != nil {
				return nil, err
			}
			return tableSummary(t), nil
		},
	})
	h.Command("permissions.check", mgmt.Command{
		Help:     `which entry in use matches a source: {"ip":"192.0.2.7","port":5060,"proto":"udp","group":0,"subject":"sip:+4930123@gw.example.net"}`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a checkArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			addr, err := netip.ParseAddr(a.IP)
			if err != nil {
				return nil, &mgmt.ArgError{Msg: fmt.Sprintf("ip %q is not an IP address", a.IP)}
			}
			if a.Port < 0 || a.Port > 65535 {
				return nil, &mgmt.ArgError{Msg: fmt.Sprintf("port %d out of range", a.Port)}
			}
			proto := transport.UDP
			if a.Proto != "" {
				var ok bool
				if proto, ok = transport.ParseProto(a.Proto); !ok {
					return nil, &mgmt.ArgError{Msg: fmt.Sprintf("proto %q: want udp, tcp, tls or ws", a.Proto)}
				}
			}
			var subj []byte
			if a.Subject != "" {
				subj = []byte(a.Subject)
			}
			m, ok := p.CheckAddress(a.Group, addr, uint16(a.Port), proto, subj)
			if !ok {
				return map[string]any{"match": false}, nil
			}
			return map[string]any{"match": true, "id": m.ID, "group": m.Group, "info": m.Info}, nil
		},
	})
}

func tableSummary(t *table) map[string]any {
	groups := map[string]int{}
	for g, n := range t.groups {
		groups[strconv.Itoa(g)] = n
	}
	return map[string]any{"entries": t.entries, "groups": groups, "skipped": t.skipped}
}

// apiErr maps store errors to the API's: bad input 400, missing 404.
func apiErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedAddress), errors.Is(err, store.ErrAddressExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoAddress):
		return fmt.Errorf("%w: %s", mgmt.ErrNotFound, err.Error())
	}
	return err
}

// The offline subcommands: `switchboard permissions add|list|del`, on the
// store of the configuration; a running server loads the change within
// permissions.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"add": {
		Usage: "<ip[/bits]> [--group N] [--port N] [--proto udp|tcp|tls|ws|any] [--pattern RE] [--info TEXT]",
		Help:  "add an address or subnet to a group (default 1: trusted gateways)",
		Run:   cliAdd,
	},
	"list": {
		Usage: "[--group N]",
		Help:  "list the address entries, of one group or all",
		Run:   cliList,
	},
	"del": {
		Usage: "<id> | <ip[/bits]> [--group N]",
		Help:  "delete an entry by id, or every entry of a group for an address or subnet",
		Run:   cliDel,
	},
}

func cliAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var a addArgs
	fs := newFlags("add")
	fs.IntVar(&a.Group, "group", DefaultGroup, "group `N` (1-65535)")
	fs.IntVar(&a.Port, "port", 0, "source port `N`; 0: any")
	fs.StringVar(&a.Proto, "proto", "any", "transport: udp, tcp, tls, ws or any")
	fs.StringVar(&a.Pattern, "pattern", "", "regular expression the From URI (or Request-URI: permissions.pattern_on) must match too")
	fs.StringVar(&a.Info, "info", "", "context information handed to routes on a match")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("add takes one address or subnet")
	}
	if a.Group == 0 {
		return usageErr("--group 0: groups are 1-65535")
	}
	a.IP = pos[0]
	e, err := st.AddAddress(ctx, a.address())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added id %d: %s\n", e.ID, describe(e))
	if w := broadWarning(e); w != "" {
		fmt.Fprintln(out, "warning: "+w)
	}
	if e.Proto == "any" || e.Proto == "udp" {
		fmt.Fprintln(out, udpNote)
	}
	return nil
}

func cliList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var group int
	fs := newFlags("list")
	fs.IntVar(&group, "group", 0, "only group `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("list takes no arguments but --group")
	}
	as, err := st.ListAddresses(ctx, group)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tADDRESS\tPORT\tPROTO\tPATTERN\tINFO\tCREATED")
	for _, a := range as {
		port := "any"
		if a.Port != 0 {
			port = strconv.Itoa(a.Port)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Group, a.Prefix(), port, a.Proto,
			a.Pattern, a.ContextInfo, time.Unix(a.Created, 0).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func cliDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var a delArgs
	fs := newFlags("del")
	fs.IntVar(&a.Group, "group", DefaultGroup, "with an address: its group `N`")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("del takes an id or an address")
	}
	if id, err := strconv.ParseInt(pos[0], 10, 64); err == nil {
		if id <= 0 {
			return usageErr("ids are positive numbers")
		}
		a.ID = id
	} else {
		a.IP = pos[0]
	}
	deleted, err := del(ctx, st, a)
	if err != nil {
		return err
	}
	for _, e := range deleted {
		fmt.Fprintf(out, "deleted id %d: %s\n", e.ID, describe(e))
	}
	return nil
}

func describe(a store.Address) string {
	s := "group " + strconv.Itoa(a.Group) + " " + a.Prefix()
	if a.Port != 0 {
		s += " port " + strconv.Itoa(a.Port)
	}
	if a.Proto != "any" {
		s += " proto " + a.Proto
	}
	if a.Pattern != "" {
		s += " pattern " + strconv.Quote(a.Pattern)
	}
	if a.ContextInfo != "" {
		s += " info " + strconv.Quote(a.ContextInfo)
	}
	return s
}

func newFlags(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet("permissions "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error is returned and printed with the usage
	return fs
}

// usageErr is a mistake in the command line: the server prints it with
// the usage and exits 2.
func usageErr(msg string) error { return &modules.KeyError{Msg: msg} }
