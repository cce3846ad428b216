package dialplan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// num is an integer argument given as a JSON number or as a string ("5"),
// which is what `switchboard ctl dialplan.list dpid=5` sends.
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

// boolArg is a boolean argument given as JSON true/false, 0/1 or a string of
// those.
type boolArg bool

func (f *boolArg) UnmarshalJSON(b []byte) error {
	switch string(bytes.Trim(b, `"`)) {
	case "true", "1":
		*f = true
	case "false", "0", "":
		*f = false
	default:
		return fmt.Errorf("%s is not a boolean", b)
	}
	return nil
}

// RuleInfo is a dialplan rule in the management API, with the columns'
// names.
type RuleInfo struct {
	ID         int64   `json:"id"`
	DPID       num     `json:"dpid"`
	Priority   num     `json:"pr"`
	MatchOp    string  `json:"match_op"`
	MatchExp   string  `json:"match_exp"`
	MatchFlags num     `json:"match_flags"`
	SubstExp   string  `json:"subst_exp"`
	ReplExp    string  `json:"repl_exp"`
	Attrs      string  `json:"attrs"`
	Disabled   boolArg `json:"disabled"`
	Created    int64   `json:"created,omitempty"`
}

func ruleInfo(r store.DialplanRule) RuleInfo {
	return RuleInfo{ID: r.ID, DPID: num(r.DPID), Priority: num(r.Priority), MatchOp: r.MatchOp, MatchExp: r.MatchExp,
		MatchFlags: num(r.MatchFlags), SubstExp: r.SubstExp, ReplExp: r.ReplExp, Attrs: r.Attrs,
		Disabled: boolArg(r.Disabled), Created: r.Created}
}

func (i RuleInfo) rule() store.DialplanRule {
	return store.DialplanRule{DPID: int(i.DPID), Priority: int(i.Priority), MatchOp: i.MatchOp, MatchExp: i.MatchExp,
		MatchFlags: int(i.MatchFlags), SubstExp: i.SubstExp, ReplExp: i.ReplExp, Attrs: i.Attrs, Disabled: bool(i.Disabled)}
}

func ruleInfos(rs []store.DialplanRule) []RuleInfo {
	out := make([]RuleInfo, 0, len(rs))
	for _, r := range rs {
		out = append(out, ruleInfo(r))
	}
	return out
}

// storeErr maps store errors to the management API's: bad input 400, a
// missing rule 404.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedDialplanRule), errors.Is(err, store.ErrDialplanRuleExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoDialplanRule):
		return fmt.Errorf("%w: %v", mgmt.ErrNotFound, err)
	}
	return err
}

// Summary is what dialplan.reload returns.
type Summary struct {
	Rules     int   `json:"rules"`
	Dialplans int   `json:"dialplans"`
	Disabled  int   `json:"disabled"`
	Skipped   int   `json:"skipped"`
	Version   int64 `json:"version"`
}

func (d *Dialplan) summary() Summary {
	t := d.tab.Current()
	return Summary{Rules: len(t.rules), Dialplans: len(t.plans), Disabled: t.off, Skipped: t.skipped, Version: t.version}
}

// TranslateResult is what dialplan.translate returns.
type TranslateResult struct {
	Match  bool   `json:"match"`
	Output string `json:"output,omitempty"`
	Attrs  string `json:"attrs,omitempty"`
	Rule   int64  `json:"rule,omitempty"`
}

// Test translates input with the rules in use, saying which rule
// matched: dialplan.translate (OpenSIPS MI dp_translate), for operators
// checking a table.
func (d *Dialplan) Test(id int, input string) TranslateResult {
	res, r, ok := d.tab.Current().translate(id, []byte(input), nil)
	if !ok {
		return TranslateResult{}
	}
	return TranslateResult{Match: true, Output: string(res), Attrs: r.attrs, Rule: r.id}
}

// registerCommands adds the management commands. Changes go to the store
// (where other nodes see them) and are loaded here at once: they are in
// use when the command returns.
func (d *Dialplan) registerCommands(h *modules.Host) {
	h.Command("dialplan.add", mgmt.Command{
		Help: `add a rule and load it: {"dpid":1,"pr":0,"match_op":"prefix","match_exp":"0","repl_exp":"+33\\2"} ` +
			`(also match_flags 1 for case-insensitive, subst_exp, attrs, disabled)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a RuleInfo
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if a.ID != 0 || a.Created != 0 {
				return nil, &mgmt.ArgError{Msg: `"id" and "created" are given by the store`}
			}
			r, err := d.st.AddDialplanRule(ctx, a.rule())
			if err != nil {
				return nil, storeErr(err)
			}
			_, err = d.Load(ctx)
			return ruleInfo(r), err
		},
	})
	h.Command("dialplan.list", mgmt.Command{
		Help:     `list the rules in the store, of one dialplan or all: {"dpid":1}`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				DPID *num `json:"dpid"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			dpid := -1
			if a.DPID != nil {
				dpid = int(*a.DPID)
			}
			rs, err := d.st.ListDialplanRules(ctx, dpid)
			if err != nil {
				return nil, err
			}
			return ruleInfos(rs), nil
		},
	})
	h.Command("dialplan.del", mgmt.Command{
		Help: `delete a rule by id, or every rule of a dialplan: {"id":7} or {"dpid":1}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				ID   num  `json:"id"`
				DPID *num `json:"dpid"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			var out any
			switch {
			case a.ID != 0 && a.DPID != nil:
				return nil, &mgmt.ArgError{Msg: `give "id" or "dpid", not both`}
			case a.ID != 0:
				r, err := d.st.DeleteDialplanRule(ctx, int64(a.ID))
				if err != nil {
					return nil, storeErr(err)
				}
				out = map[string]any{"deleted": []RuleInfo{ruleInfo(r)}}
			case a.DPID != nil:
				n, err := d.st.DeleteDialplan(ctx, int(*a.DPID))
				if err != nil {
					return nil, storeErr(err)
				}
				out = map[string]any{"deleted": n}
			default:
				return nil, &mgmt.ArgError{Msg: `give the "id" of a rule, or a "dpid" to delete all its rules`}
			}
			_, err := d.Load(ctx)
			return out, err
		},
	})
	h.Command("dialplan.reload", mgmt.Command{
		Help: "load the rules from the store now (OpenSIPS dp_reload; they are also reloaded within dialplan.poll_interval of a change)",
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			if _, err := d.Load(ctx); err != nil {
				return nil, err
			}
			return d.summary(), nil
		},
	})
	h.Command("dialplan.translate", mgmt.Command{
		Help:     `translate an input with the rules in use, naming the rule that matched: {"dpid":1,"input":"0612345678"}`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var a struct {
				DPID  *num   `json:"dpid"`
				Input string `json:"input"`
			}
			if err := mgmt.DecodeArgs(raw, &a); err != nil {
				return nil, err
			}
			if a.DPID == nil {
				return nil, &mgmt.ArgError{Msg: `"dpid" is required`}
			}
			return d.Test(int(*a.DPID), a.Input), nil
		},
	})
}
