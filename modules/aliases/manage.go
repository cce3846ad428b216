package aliases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// Info is an alias in the management API.
type Info struct {
	Alias   string `json:"alias"`  // alias@domain
	Target  string `json:"target"` // user@domain
	Created int64  `json:"created,omitempty"`
}

func infos(as []store.Alias) []Info {
	out := make([]Info, 0, len(as))
	for _, a := range as {
		out = append(out, Info{Alias: a.AliasName(), Target: a.Target(), Created: a.Created})
	}
	return out
}

// storeErr maps store errors to the management API's: bad input 400, a
// missing alias 404.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedAlias), errors.Is(err, store.ErrAliasExists),
		errors.Is(err, store.ErrUnknownDomain), errors.Is(err, store.ErrMalformedDomain):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoAlias):
		return fmt.Errorf("%w: %v", mgmt.ErrNotFound, err)
	}
	return err
}

// registerCommands adds the management commands. Changes go to the store
// and are loaded here at once: in use when the command returns.
func (a *Aliases) registerCommands(h *modules.Host) {
	h.Command("aliases.add", mgmt.Command{
		Help: `map an alias (a DID) to a subscriber and load it: {"alias":"+33123456789@example.com","target":"alice@example.com"}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args Info
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			al, err := store.NewAlias(args.Alias, args.Target)
			if err != nil {
				return nil, storeErr(err)
			}
			if al, err = a.st.AddAlias(ctx, al); err != nil {
				return nil, storeErr(err)
			}
			_, err = a.Load(ctx)
			return infos([]store.Alias{al})[0], err
		},
	})
	h.Command("aliases.list", mgmt.Command{
		Help:     `list the aliases in the store, of one domain or all: {"domain":"example.com"}`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Domain string `json:"domain"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			as, err := a.st.ListAliases(ctx, args.Domain)
			if err != nil {
				return nil, storeErr(err)
			}
			return infos(as), nil
		},
	})
	h.Command("aliases.del", mgmt.Command{
		Help: `delete an alias: {"alias":"+33123456789@example.com"}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Alias string `json:"alias"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			al, err := a.st.DeleteAlias(ctx, args.Alias)
			if err != nil {
				return nil, storeErr(err)
			}
			_, err = a.Load(ctx)
			return map[string]any{"deleted": infos([]store.Alias{al})}, err
		},
	})
	h.Command("aliases.reload", mgmt.Command{
		Help: "load the aliases from the store now (they are also reloaded within aliases.poll_interval of a change)",
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			v, err := a.Load(ctx)
			if err != nil {
				return nil, err
			}
			return map[string]any{"aliases": a.Len(), "version": v}, nil
		},
	})
	h.Command("aliases.lookup", mgmt.Command{
		Help:     `the subscriber an alias reaches with the table in use: {"alias":"+33123456789@example.com"}`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Alias string `json:"alias"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			t, ok := a.Lookup(args.Alias)
			if !ok {
				return map[string]any{"found": false}, nil
			}
			return map[string]any{"found": true, "target": t}, nil
		},
	})
}
