package uac

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// credView is a credential as the management API and the CLI show it:
// never the secret, only which kind is stored.
type credView struct {
	ID       int64  `json:"id"`
	Realm    string `json:"realm,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	Username string `json:"username"`
	Secret   string `json:"secret"`
	Created  int64  `json:"created"`
}

func viewCred(c store.UACCredential) credView {
	secret := "password"
	switch {
	case c.Password != "":
	case c.HA1 != "" && c.HA1SHA256 != "":
		secret = "ha1, ha1_sha256"
	case c.HA1 != "":
		secret = "ha1"
	default:
		secret = "ha1_sha256"
	}
	return credView{ID: c.ID, Realm: c.Realm, Gateway: c.Gateway, Username: c.Username, Secret: secret, Created: c.Created}
}

type credArgs struct {
	Realm     string `json:"realm"`
	Gateway   string `json:"gateway"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	HA1       string `json:"ha1"`
	HA1SHA256 string `json:"ha1_sha256"`
}

type regArgs struct {
	AOR       string `json:"aor"`
	Registrar string `json:"registrar"`
	Proxy     string `json:"proxy"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	Expires   int    `json:"expires"`
	Contact   string `json:"contact"`
}

type idArgs struct {
	ID int64 `json:"id"`
}

func storedReg(r store.UACRegistration) regView {
	return regView{ID: r.ID, AOR: r.AOR, Registrar: r.Registrar, Proxy: r.Proxy, Username: r.Username,
		Expires: r.Expires, Contact: r.Contact, State: stateRegistering}
}

// registerCommands adds the management commands. Changes go to the store
// and are loaded at once, so they are in use when the command returns.
func (u *UAC) registerCommands(h *modules.Host) {
	h.Command("uac.credentials.add", mgmt.Command{
		Help: `add a trunk credential: {"realm":"carrier.example","gateway":"192.0.2.10:5060","username":"trunk1","password":"..."} (or "ha1"/"ha1_sha256" with a realm); realm, gateway or both`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a credArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			c, err := u.st.AddUACCredential(ctx, store.UACCredential{Realm: a.Realm, Gateway: a.Gateway, Username: a.Username,
				Password: a.Password, HA1: a.HA1, HA1SHA256: a.HA1SHA256})
			if err != nil {
				return nil, apiErr(err)
			}
			_, err = u.reloadCredentials(ctx)
			return viewCred(c), err
		},
	})
	h.Command("uac.credentials.list", mgmt.Command{
		Help:     "list the trunk credentials in the store (secrets are not shown)",
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			cs, err := u.st.ListUACCredentials(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]credView, 0, len(cs))
			for _, c := range cs {
				out = append(out, viewCred(c))
			}
			return out, nil
		},
	})
	h.Command("uac.credentials.del", mgmt.Command{
		Help: `delete a trunk credential: {"id":3}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a idArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			c, err := u.st.DeleteUACCredential(ctx, a.ID)
			if err != nil {
				return nil, apiErr(err)
			}
			_, err = u.reloadCredentials(ctx)
			return map[string]any{"deleted": viewCred(c)}, err
		},
	})
	h.Command("uac.registrations", mgmt.Command{
		Help:     "the registrations with carriers and their state: registered, registering or failed, until when, the next attempt",
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			return u.reg.views(), nil
		},
	})
	h.Command("uac.registrations.add", mgmt.Command{
		Help: `register to a carrier: {"aor":"sip:+4930123@carrier.example","registrar":"carrier.example","proxy":"192.0.2.10:5060","username":"","password":"...","expires":3600,"contact":""}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a regArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			r, err := u.st.AddUACRegistration(ctx, store.UACRegistration{AOR: a.AOR, Registrar: a.Registrar, Proxy: a.Proxy,
				Username: a.Username, Password: a.Password, Expires: a.Expires, Contact: a.Contact})
			if err != nil {
				return nil, apiErr(err)
			}
			_, err = u.reg.reload(ctx)
			return storedReg(r), err
		},
	})
	h.Command("uac.registrations.del", mgmt.Command{
		Help: `stop a registration (it is unregistered): {"id":2}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a idArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			r, err := u.st.DeleteUACRegistration(ctx, a.ID)
			if err != nil {
				return nil, apiErr(err)
			}
			_, err = u.reg.reload(ctx)
			return map[string]any{"deleted": storedReg(r)}, err
		},
	})
	h.Command("uac.reload", mgmt.Command{
		Help: "reload the credentials and registrations from the store now (they are also reloaded within uac.poll_interval of any change)",
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			if _, err := u.reloadCredentials(ctx); err != nil {
				return nil, err
			}
			if _, err := u.reg.reload(ctx); err != nil {
				return nil, err
			}
			return map[string]any{"credentials": u.creds.Load().n, "registrations": len(u.reg.views())}, nil
		},
	})
}

// apiErr maps store errors to the API's: bad input 400, missing 404.
func apiErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedUAC), errors.Is(err, store.ErrUACExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoUAC):
		return fmt.Errorf("%w: %s", mgmt.ErrNotFound, err.Error())
	}
	return err
}

// The offline subcommands, `switchboard uac <verb>`, on the store of the
// configuration; a running server picks the change up within
// uac.poll_interval.
var cliCommands = map[string]modules.CLICommand{
	"cred-add": {
		Usage: "<username> [--realm REALM] [--gateway IP[:PORT]] (--password PW | --ha1 HEX [--ha1-sha256 HEX])",
		Help:  "add a trunk credential, for a realm, a gateway, or both",
		Run:   cliCredAdd,
	},
	"cred-list": {Usage: "", Help: "list the trunk credentials (secrets are not shown)", Run: cliCredList},
	"cred-del":  {Usage: "<id>", Help: "delete a trunk credential", Run: cliCredDel},
	"reg-add": {
		Usage: "<aor> --registrar URI [--proxy URI] [--username U] [--password PW] [--expires SECONDS] [--contact URI]",
		Help:  "register to a carrier as a client",
		Run:   cliRegAdd,
	},
	"reg-list": {Usage: "", Help: "list the registrations to carriers (the running server's state: switchboard ctl uac.registrations)", Run: cliRegList},
	"reg-del":  {Usage: "<id>", Help: "delete a registration (the running server unregisters it)", Run: cliRegDel},
}

func cliCredAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var c store.UACCredential
	fs := newFlags("cred-add")
	fs.StringVar(&c.Realm, "realm", "", "the realm of the carrier's challenges; empty: any")
	fs.StringVar(&c.Gateway, "gateway", "", "the next hop the credential is for, `IP[:PORT]`; empty: any")
	fs.StringVar(&c.Password, "password", "", "the trunk's password")
	fs.StringVar(&c.HA1, "ha1", "", "MD5(username:realm:password) in hex, instead of the password")
	fs.StringVar(&c.HA1SHA256, "ha1-sha256", "", "SHA-256(username:realm:password) in hex, instead of the password")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("cred-add takes one username")
	}
	c.Username = pos[0]
	c, err = st.AddUACCredential(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added credential %d: %s\n", c.ID, describeCred(c))
	return nil
}

func describeCred(c store.UACCredential) string {
	s := "user " + c.Username
	if c.Realm != "" {
		s += " realm " + strconv.Quote(c.Realm)
	}
	if c.Gateway != "" {
		s += " gateway " + c.Gateway
	}
	return s + " (" + viewCred(c).Secret + ")"
}

func cliCredList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 0 {
		return usageErr("cred-list takes no arguments")
	}
	cs, err := st.ListUACCredentials(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREALM\tGATEWAY\tUSERNAME\tSECRET\tCREATED")
	for _, c := range cs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", c.ID, orAny(c.Realm), orAny(c.Gateway), c.Username, viewCred(c).Secret,
			time.Unix(c.Created, 0).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func cliCredDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, err := oneID("cred-del", args)
	if err != nil {
		return err
	}
	c, err := st.DeleteUACCredential(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted credential %d: %s\n", c.ID, describeCred(c))
	return nil
}

func cliRegAdd(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	var r store.UACRegistration
	fs := newFlags("reg-add")
	fs.StringVar(&r.Registrar, "registrar", "", "the registrar: the Request-URI of the REGISTER, `URI` or host[:port]")
	fs.StringVar(&r.Proxy, "proxy", "", "where to send the REGISTER when not to the registrar, `URI` or host[:port]")
	fs.StringVar(&r.Username, "username", "", "the user to authenticate as; default: the AOR's user")
	fs.StringVar(&r.Password, "password", "", "the password")
	fs.IntVar(&r.Expires, "expires", store.DefaultUACExpires, "the registration's lifetime to ask for, `SECONDS`")
	fs.StringVar(&r.Contact, "contact", "", "the Contact to register; default: sip:<username>@ the address the REGISTER leaves from")
	pos, err := modules.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("reg-add takes one AOR")
	}
	r.AOR = pos[0]
	r, err = st.AddUACRegistration(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added registration %d: %s at %s\n", r.ID, r.AOR, r.Registrar)
	return nil
}

func cliRegList(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	if len(args) != 0 {
		return usageErr("reg-list takes no arguments")
	}
	rs, err := st.ListUACRegistrations(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAOR\tREGISTRAR\tPROXY\tUSERNAME\tEXPIRES\tCONTACT")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.AOR, r.Registrar, orNone(r.Proxy), r.Username, r.Expires, orNone(r.Contact))
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cliRegDel(ctx context.Context, st *store.Store, args []string, out io.Writer) error {
	id, err := oneID("reg-del", args)
	if err != nil {
		return err
	}
	r, err := st.DeleteUACRegistration(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted registration %d: %s at %s\n", r.ID, r.AOR, r.Registrar)
	return nil
}

func oneID(verb string, args []string) (int64, error) {
	if len(args) != 1 {
		return 0, usageErr(verb + " takes one id")
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErr(verb + ": ids are positive numbers, not " + strconv.Quote(args[0]))
	}
	return id, nil
}

func newFlags(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet("uac "+verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error is returned and printed with the usage
	return fs
}

// usageErr is a mistake in the command line: printed with the usage, exit 2.
func usageErr(msg string) error { return &modules.KeyError{Msg: msg} }
