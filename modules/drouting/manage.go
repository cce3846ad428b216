package drouting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// num is an integer argument given as a JSON number or a string ("5"),
// which is what `switchboard ctl drouting.gw.set gwid=gw1 state=1` sends.
type num int64

func (n *num) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = num(v)
	return nil
}

// GatewayInfo is a gateway in the management API: its row and, in
// listings, its state and counters.
type GatewayInfo struct {
	GWID        string `json:"gwid"`
	Type        num    `json:"type"`
	Address     string `json:"address"`
	Transport   string `json:"transport"`
	Strip       num    `json:"strip"`
	PriPrefix   string `json:"pri_prefix"`
	Attrs       string `json:"attrs"`
	ProbeMode   num    `json:"probe_mode"`
	State       num    `json:"state"`
	Description string `json:"description"`
	// Status is up, down (probing), disabled; Calls and Failures count
	// since the start (or since the gateway was added).
	Status   string `json:"status,omitempty"`
	Calls    uint64 `json:"calls"`
	Failures uint64 `json:"failures"`
}

func gatewayInfo(g store.DRGateway) GatewayInfo {
	return GatewayInfo{GWID: g.GWID, Type: num(g.Type), Address: g.Address, Transport: g.Transport, Strip: num(g.Strip),
		PriPrefix: g.PriPrefix, Attrs: g.Attrs, ProbeMode: num(g.ProbeMode), State: num(g.State), Description: g.Description}
}

func (i GatewayInfo) row() store.DRGateway {
	return store.DRGateway{GWID: i.GWID, Type: int(i.Type), Address: i.Address, Transport: i.Transport, Strip: int(i.Strip),
		PriPrefix: i.PriPrefix, Attrs: i.Attrs, ProbeMode: int(i.ProbeMode), State: int(i.State), Description: i.Description}
}

// CarrierInfo is a carrier in the management API.
type CarrierInfo struct {
	CarrierID   string `json:"carrierid"`
	GWList      string `json:"gwlist"`
	Flags       num    `json:"flags"`
	SortAlg     string `json:"sort_alg"`
	State       num    `json:"state"`
	Attrs       string `json:"attrs"`
	Description string `json:"description"`
}

func carrierInfo(c store.DRCarrier) CarrierInfo {
	return CarrierInfo{CarrierID: c.CarrierID, GWList: c.GWList, Flags: num(c.Flags), SortAlg: c.SortAlg, State: num(c.State),
		Attrs: c.Attrs, Description: c.Description}
}

func (i CarrierInfo) row() store.DRCarrier {
	return store.DRCarrier{CarrierID: i.CarrierID, GWList: i.GWList, Flags: int(i.Flags), SortAlg: i.SortAlg, State: int(i.State),
		Attrs: i.Attrs, Description: i.Description}
}

// RuleInfo is a rule in the management API.
type RuleInfo struct {
	ID          num    `json:"ruleid"`
	GroupID     string `json:"groupid"`
	Prefix      string `json:"prefix"`
	TimeRec     string `json:"timerec"`
	Priority    num    `json:"priority"`
	RouteID     string `json:"routeid"`
	GWList      string `json:"gwlist"`
	SortAlg     string `json:"sort_alg"`
	Attrs       string `json:"attrs"`
	Description string `json:"description"`
}

func ruleInfo(r store.DRRule) RuleInfo {
	return RuleInfo{ID: num(r.ID), GroupID: r.Groups, Prefix: r.Prefix, TimeRec: r.TimeRec, Priority: num(r.Priority),
		RouteID: r.RouteID, GWList: r.GWList, SortAlg: r.SortAlg, Attrs: r.Attrs, Description: r.Description}
}

func (i RuleInfo) row() store.DRRule {
	return store.DRRule{ID: int64(i.ID), Groups: i.GroupID, Prefix: i.Prefix, TimeRec: i.TimeRec, Priority: int(i.Priority),
		RouteID: i.RouteID, GWList: i.GWList, SortAlg: i.SortAlg, Attrs: i.Attrs, Description: i.Description}
}

// storeErr maps store errors to the management API's: bad input 400, a
// missing row 404.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedDR), errors.Is(err, store.ErrDRExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoDR):
		return fmt.Errorf("%w: %v", mgmt.ErrNotFound, err)
	}
	return err
}

// decodeOver decodes raw over v (the fields given change), after reading
// the key field named key, which must be there.
func keyOf(raw json.RawMessage, key string) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", &mgmt.ArgError{Msg: "bad arguments: " + err.Error()}
	}
	var s string
	if v, ok := m[key]; ok {
		if err := json.Unmarshal(v, &s); err != nil {
			var n int64
			if json.Unmarshal(v, &n) != nil {
				return "", &mgmt.ArgError{Msg: fmt.Sprintf("%q: want a string", key)}
			}
			s = strconv.FormatInt(n, 10)
		}
	}
	if s == "" {
		return "", &mgmt.ArgError{Msg: fmt.Sprintf("%q is required", key)}
	}
	return s, nil
}

func (d *Drouting) registerCommands(h *modules.Host) {
	reload := func(ctx context.Context, table string, res any) (any, error) {
		if err := d.LoadTable(ctx, table); err != nil {
			return nil, err
		}
		return res, nil
	}

	h.Command("drouting.gw.list", mgmt.Command{
		Help:     "list the gateways with their state (up, down, disabled) and calls and failures counted",
		ReadOnly: true,
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			rows, err := d.st.ListDRGateways(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]GatewayInfo, 0, len(rows))
			for _, r := range rows {
				out = append(out, d.withState(gatewayInfo(r)))
			}
			return out, nil
		},
	})
	h.Command("drouting.gw.add", mgmt.Command{
		Help: `add a gateway: {"gwid":"gw1","address":"192.0.2.10:5060","strip":0,"pri_prefix":"","probe_mode":2} ` +
			`(also type, transport udp|tcp|tls, attrs, state 0|1, description)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args GatewayInfo
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			rows := []store.DRGateway{args.row()}
			if err := d.st.AddDRGateways(ctx, rows, false); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRGatewaysTable, gatewayInfo(rows[0]))
		},
	})
	h.Command("drouting.gw.set", mgmt.Command{
		Help: `change a gateway, the fields given: {"gwid":"gw1","state":1} disables it, {"gwid":"gw1","state":0} enables it`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			id, err := keyOf(raw, "gwid")
			if err != nil {
				return nil, err
			}
			old, err := d.st.GetDRGateway(ctx, id)
			if err != nil {
				return nil, storeErr(err)
			}
			args := gatewayInfo(old)
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			r := args.row()
			if err := d.st.UpdateDRGateway(ctx, r); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRGatewaysTable, args)
		},
	})
	h.Command("drouting.gw.del", mgmt.Command{
		Help: `delete a gateway: {"gwid":"gw1"}; lists that name it skip it`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			id, err := keyOf(raw, "gwid")
			if err != nil {
				return nil, err
			}
			if err := d.st.DeleteDRGateway(ctx, id); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRGatewaysTable, "deleted dr gateway "+id)
		},
	})

	h.Command("drouting.carrier.list", mgmt.Command{
		Help:     "list the carriers",
		ReadOnly: true,
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			rows, err := d.st.ListDRCarriers(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]CarrierInfo, 0, len(rows))
			for _, r := range rows {
				out = append(out, carrierInfo(r))
			}
			return out, nil
		},
	})
	h.Command("drouting.carrier.add", mgmt.Command{
		Help: `add a carrier: {"carrierid":"cr1","gwlist":"gw1=70,gw2=30","sort_alg":"W","flags":0} (flags 1: the first usable gateway only)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args CarrierInfo
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			rows := []store.DRCarrier{args.row()}
			if err := d.st.AddDRCarriers(ctx, rows, false); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRCarriersTable, carrierInfo(rows[0]))
		},
	})
	h.Command("drouting.carrier.set", mgmt.Command{
		Help: `change a carrier, the fields given: {"carrierid":"cr1","state":1}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			id, err := keyOf(raw, "carrierid")
			if err != nil {
				return nil, err
			}
			rows, err := d.st.ListDRCarriers(ctx)
			if err != nil {
				return nil, err
			}
			var args *CarrierInfo
			for _, r := range rows {
				if r.CarrierID == id {
					ci := carrierInfo(r)
					args = &ci
				}
			}
			if args == nil {
				return nil, fmt.Errorf("%w: dr carrier %s does not exist", mgmt.ErrNotFound, id)
			}
			if err := mgmt.DecodeArgs(raw, args); err != nil {
				return nil, err
			}
			if err := d.st.UpdateDRCarrier(ctx, args.row()); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRCarriersTable, *args)
		},
	})
	h.Command("drouting.carrier.del", mgmt.Command{
		Help: `delete a carrier: {"carrierid":"cr1"}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			id, err := keyOf(raw, "carrierid")
			if err != nil {
				return nil, err
			}
			if err := d.st.DeleteDRCarrier(ctx, id); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRCarriersTable, "deleted dr carrier "+id)
		},
	})

	h.Command("drouting.rule.list", mgmt.Command{
		Help: `list rules by ID: {"group":0,"prefix":"49","after":0,"limit":100} (all optional; ` +
			`limit at most 1000, continue with "after" set to the last ID)`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			args := struct {
				Group  *num   `json:"group"`
				Prefix string `json:"prefix"`
				After  num    `json:"after"`
				Limit  num    `json:"limit"`
			}{Limit: 100}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Limit < 1 || args.Limit > 1000 {
				return nil, &mgmt.ArgError{Msg: `"limit" is 1 to 1000`}
			}
			f := store.DRRuleFilter{Group: -1, Prefix: args.Prefix, AfterID: int64(args.After), Limit: int(args.Limit)}
			if args.Group != nil {
				f.Group = int(*args.Group)
			}
			rows, err := d.st.ListDRRules(ctx, f)
			if err != nil {
				return nil, err
			}
			out := make([]RuleInfo, 0, len(rows))
			for _, r := range rows {
				out = append(out, ruleInfo(r))
			}
			return out, nil
		},
	})
	h.Command("drouting.rule.add", mgmt.Command{
		Help: `add a rule: {"groupid":"0","prefix":"49","gwlist":"gw1,#cr1","priority":0} ` +
			`(also timerec "Mon-Fri 08:00-17:59", sort_alg N|W|R, routeid, attrs, description)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args RuleInfo
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.ID != 0 {
				return nil, &mgmt.ArgError{Msg: `"ruleid" is given by the store`}
			}
			rows := []store.DRRule{args.row()}
			if err := d.st.AddDRRules(ctx, rows, false); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRRulesTable, ruleInfo(rows[0]))
		},
	})
	h.Command("drouting.rule.del", mgmt.Command{
		Help: `delete a rule: {"ruleid":3}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				ID num `json:"ruleid"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.ID <= 0 {
				return nil, &mgmt.ArgError{Msg: `"ruleid" is required`}
			}
			if err := d.st.DeleteDRRule(ctx, int64(args.ID)); err != nil {
				return nil, storeErr(err)
			}
			return reload(ctx, store.DRRulesTable, fmt.Sprintf("deleted dr rule %d", args.ID))
		},
	})

	h.Command("drouting.reload", mgmt.Command{
		Help: "load the gateways, carriers and rules from the store now (also done within drouting.poll_interval of a change)",
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			if err := d.Load(ctx); err != nil {
				return nil, err
			}
			return d.Status(), nil
		},
	})
	h.Command("drouting.status", mgmt.Command{
		Help:     "rules, groups and memory loaded, last load, gateways by state, fail-overs",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			return d.Status(), nil
		},
	})
	h.Command("drouting.match", mgmt.Command{
		Help:     `which rule and gateways a number gets now, without routing anything: {"group":0,"number":"+4930123"}`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Group  num    `json:"group"`
				Number string `json:"number"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			return d.Match(int(args.Group), args.Number)
		},
	})
}

// withState adds the slot's state and counters to a gateway's row, from
// the gateways loaded last (not under the load lock: a long rule load
// does not hold a listing up).
func (d *Drouting) withState(gi GatewayInfo) GatewayInfo {
	gi.Status = "not loaded"
	if list := d.probeList.Load(); list != nil {
		for _, s := range *list {
			if s.id == gi.GWID && s.cfg.Load() != nil {
				gi.Status = s.state()
				gi.Calls, gi.Failures = s.calls.Get(), s.failures.Get()
			}
		}
	}
	return gi
}

// StatusInfo is drouting.status.
type StatusInfo struct {
	Rules       int            `json:"rules"`
	Groups      int            `json:"groups"`
	Skipped     int            `json:"skipped"`
	Bytes       int64          `json:"bytes"`
	LoadedAt    string         `json:"loaded_at"`
	LoadSeconds float64        `json:"load_seconds"`
	Gateways    map[string]int `json:"gateways"` // by state
	Failovers   uint64         `json:"failovers"`
	ListsLost   uint64         `json:"lists_lost"`
	MaxCalls    int            `json:"max_calls"`
}

// Status returns the figures of drouting.status.
func (d *Drouting) Status() StatusInfo {
	st := StatusInfo{Gateways: map[string]int{}, Failovers: d.failovers.Get(), ListsLost: d.lost.Get(), MaxCalls: d.maxCalls}
	if rs := d.rules.Load(); rs != nil {
		st.Rules, st.Groups, st.Skipped, st.Bytes = len(rs.rules), len(rs.groups), rs.skipped, rs.bytes()
		st.LoadedAt = time.UnixMilli(rs.loadedAt).UTC().Format(time.RFC3339)
		st.LoadSeconds = rs.took.Seconds()
	}
	if list := d.probeList.Load(); list != nil {
		for _, s := range *list {
			st.Gateways[s.state()]++
		}
	}
	return st
}

// MatchInfo is drouting.match.
type MatchInfo struct {
	Rule     int64    `json:"ruleid"`
	RouteID  string   `json:"routeid,omitempty"`
	Attrs    string   `json:"attrs,omitempty"`
	Gateways []string `json:"gateways"` // usable now, in the order of one call
}

// Match returns the rule number would match in group now and the
// gateways a call would be tried on (one draw for W and R).
func (d *Drouting) Match(group int, number string) (MatchInfo, error) {
	var buf [maxNumber]byte
	n, ok := normalise(&buf, []byte(number))
	if !ok {
		return MatchInfo{}, &mgmt.ArgError{Msg: fmt.Sprintf("%q is no number (digits, +, *, #)", number)}
	}
	minute, weekday := d.wall.Load().at(d.clock.Now())
	rs := d.rules.Load()
	r := rs.match(group, buf[:n], minute, weekday)
	if r == nil {
		return MatchInfo{}, fmt.Errorf("%w: no rule of group %d matches %s now", mgmt.ErrNotFound, group, number)
	}
	var gws [maxCallGWs]*gateway
	k := expand(&gws, rs.lists[r.list], r.sort)
	mi := MatchInfo{Rule: r.id, RouteID: rs.strs[r.routeID], Attrs: rs.strs[r.attrs], Gateways: []string{}}
	for _, g := range gws[:k] {
		mi.Gateways = append(mi.Gateways, g.slot.id)
	}
	return mi, nil
}
