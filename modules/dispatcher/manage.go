package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// num is an integer argument the management API takes as a JSON number or
// as a string ("5"), which is what `switchboard ctl dispatcher.del id=5`
// sends.
type num int

func (n *num) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	v, err := strconv.Atoi(string(b))
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = num(v)
	return nil
}

// DestInfo is a destination as the management API shows it: the row,
// with its run-time state and counters for the table in use.
type DestInfo struct {
	ID          int64  `json:"id"`
	Set         int    `json:"set"`
	Destination string `json:"destination"`
	State       string `json:"state"`
	// StoredState is the state in the store, the one the destination
	// takes at a start (probes and routes change State only).
	StoredState string `json:"stored_state"`
	Weight      int    `json:"weight"`
	Priority    int    `json:"priority"`
	Socket      string `json:"socket,omitempty"`
	ProbeMode   int    `json:"probe_mode"`
	Attrs       string `json:"attrs,omitempty"`
	Description string `json:"description,omitempty"`
	// Calls are the calls in progress sent here; Selected and Failures
	// count requests sent here and attempts that failed (NextDst moved
	// on, MarkDst with Probing); ProbeFailures count probes unanswered.
	Calls         int64  `json:"calls"`
	Selected      uint64 `json:"selected"`
	Failures      uint64 `json:"failures"`
	ProbeFailures uint64 `json:"probe_failures"`
	// LastProbe is when the last probe ended (RFC 3339), LastProbeCode
	// its final response code (0: no answer).
	LastProbe     string `json:"last_probe,omitempty"`
	LastProbeCode int    `json:"last_probe_code,omitempty"`
}

// List returns the destinations in use, of one set or (set < 0) all, by
// set and then in set order (priority).
func (d *Dispatcher) List(set int) []DestInfo {
	t := d.tab.Load()
	ids := make([]int, 0, len(t.sets))
	for id := range t.sets {
		if set < 0 || id == set {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	out := []DestInfo{}
	for _, id := range ids {
		for i := range t.sets[id].dests {
			out = append(out, d.info(id, &t.sets[id].dests[i]))
		}
	}
	return out
}

func (d *Dispatcher) info(set int, ds *dest) DestInfo {
	st := ds.st
	pm := 0
	if ds.probeAlways {
		pm = 1
	}
	i := DestInfo{ID: ds.id, Set: set, Destination: ds.uri, State: st.load().String(), StoredState: st.stored.String(),
		Weight: int(ds.weight), Priority: ds.priority, Socket: ds.socket, ProbeMode: pm, Attrs: ds.attrs, Description: ds.desc,
		Calls: st.calls.Load(), Selected: st.selected.Get(), Failures: st.failures.Get(), ProbeFailures: st.probeFailures.Get(),
		LastProbeCode: int(st.lastCode.Load())}
	if at := st.lastProbe.Load(); at != 0 {
		i.LastProbe = time.UnixMilli(at).UTC().Format(time.RFC3339Nano)
	}
	return i
}

// addArgs are the arguments of dispatcher.add.
type addArgs struct {
	Set         num    `json:"set"`
	Destination string `json:"destination"`
	Socket      string `json:"socket"`
	State       string `json:"state"`
	Weight      num    `json:"weight"`
	Priority    num    `json:"priority"`
	Attrs       string `json:"attrs"`
	ProbeMode   num    `json:"probe_mode"`
	Description string `json:"description"`
}

func (a addArgs) dest() (store.DispatcherDest, error) {
	state := store.DispatcherActive
	if a.State != "" {
		var err error
		if state, err = store.ParseDispatcherState(a.State); err != nil {
			return store.DispatcherDest{}, err
		}
	}
	return store.DispatcherDest{SetID: int(a.Set), Destination: a.Destination, Socket: a.Socket, State: state,
		Weight: int(a.Weight), Priority: int(a.Priority), Attrs: a.Attrs, ProbeMode: int(a.ProbeMode), Description: a.Description}, nil
}

// destArgs name one destination: by id, or by set and destination.
type destArgs struct {
	ID          num    `json:"id"`
	Set         num    `json:"set"`
	Destination string `json:"destination"`
	State       string `json:"state"`
}

// apiErr maps store errors to the API's: bad input 400, missing 404.
func apiErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedDispatcher), errors.Is(err, store.ErrDispatcherExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoDispatcher):
		return fmt.Errorf("%w: %s", mgmt.ErrNotFound, err.Error())
	}
	return err
}

// registerCommands adds the management commands. Changes go to the store
// (where other processes see them) and the table is loaded again at once,
// so they are in use when the command returns.
func (d *Dispatcher) registerCommands(h *modules.Host) {
	h.Command("dispatcher.list", mgmt.Command{
		Help:     `the destinations in use with their state, calls and counters, of one set or all: {"set":1} (OpenSIPS ds_list)`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			a := struct {
				Set *num `json:"set"`
			}{}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			set := -1
			if a.Set != nil {
				set = int(*a.Set)
			}
			return d.List(set), nil
		},
	})
	h.Command("dispatcher.add", mgmt.Command{
		Help: `add a destination and load it: {"set":1,"destination":"sip:192.0.2.10:5060","weight":1,"priority":0,"state":"active","probe_mode":0,"socket":"","attrs":"","description":""}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			a := addArgs{Weight: 1}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			r, err := a.dest()
			if err == nil {
				r, err = d.st.AddDispatcherDest(ctx, r)
			}
			if err != nil {
				return nil, apiErr(err)
			}
			if _, err := d.LoadTable(ctx); err != nil {
				return nil, err
			}
			return rowInfo(r), nil
		},
	})
	h.Command("dispatcher.del", mgmt.Command{
		Help: `delete a destination: {"id":7} or {"set":1,"destination":"sip:192.0.2.10:5060"}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a destArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			var r store.DispatcherDest
			var err error
			switch {
			case a.State != "":
				return nil, &mgmt.ArgError{Msg: "del takes no state"}
			case a.ID != 0 && a.Destination != "":
				return nil, &mgmt.ArgError{Msg: "give id, or set and destination, not both"}
			case a.ID != 0:
				r, err = d.st.DeleteDispatcherDest(ctx, int64(a.ID))
			case a.Destination != "":
				r, err = d.st.DeleteDispatcherDestOf(ctx, int(a.Set), a.Destination)
			default:
				return nil, &mgmt.ArgError{Msg: "give the id of the destination, or its set and destination"}
			}
			if err != nil {
				return nil, apiErr(err)
			}
			if _, err := d.LoadTable(ctx); err != nil {
				return nil, err
			}
			return map[string]any{"deleted": rowInfo(r)}, nil
		},
	})
	h.Command("dispatcher.set_state", mgmt.Command{
		Help: `set a destination's state, in use at once and kept in the store: {"set":1,"destination":"sip:192.0.2.10:5060","state":"inactive"} (active, inactive or probing; OpenSIPS ds_set_state)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a destArgs
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if a.Destination == "" || a.State == "" {
				return nil, &mgmt.ArgError{Msg: "give set, destination and state"}
			}
			state, err := store.ParseDispatcherState(a.State)
			if err != nil {
				return nil, apiErr(err)
			}
			r, err := d.st.SetDispatcherState(ctx, int(a.Set), a.Destination, state)
			if err != nil {
				return nil, apiErr(err)
			}
			d.reloadMu.Lock()
			st := d.states[stateKey{set: r.SetID, uri: r.Destination}]
			d.reloadMu.Unlock()
			if st != nil {
				d.force(st, State(state), "set by an operator")
			}
			if _, err := d.LoadTable(ctx); err != nil {
				return nil, err
			}
			for _, i := range d.List(r.SetID) {
				if i.Destination == r.Destination {
					return i, nil
				}
			}
			return rowInfo(r), nil
		},
	})
	h.Command("dispatcher.reload", mgmt.Command{
		Help: "load the dispatcher table from the store now (it is also loaded within dispatcher.poll_interval of any change; OpenSIPS ds_reload)",
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			return d.LoadTable(ctx)
		},
	})
}

// rowInfo shows a stored row (not, or not yet, in use).
func rowInfo(r store.DispatcherDest) DestInfo {
	s := store.DispatcherStateNames[r.State]
	return DestInfo{ID: r.ID, Set: r.SetID, Destination: r.Destination, State: s, StoredState: s, Weight: r.Weight,
		Priority: r.Priority, Socket: r.Socket, ProbeMode: r.ProbeMode, Attrs: r.Attrs, Description: r.Description}
}
