package fraud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
)

// num is an integer argument that the management API takes as a JSON
// number or as a string ("5"), which is what `switchboard ctl fraud.reset
// key=value` sends.
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

// RuleInfo is a fraud rule in the management API.
type RuleInfo struct {
	ID                      num    `json:"id"`
	Profile                 num    `json:"profile"`
	Prefix                  string `json:"prefix"`
	StartHour               string `json:"start_hour"`
	EndHour                 string `json:"end_hour"`
	Days                    string `json:"days"`
	CPMWarning              num    `json:"cpm_warning"`
	CPMCritical             num    `json:"cpm_critical"`
	TotalCallsWarning       num    `json:"total_calls_warning"`
	TotalCallsCritical      num    `json:"total_calls_critical"`
	ConcurrentCallsWarning  num    `json:"concurrent_calls_warning"`
	ConcurrentCallsCritical num    `json:"concurrent_calls_critical"`
	SequentialCallsWarning  num    `json:"sequential_calls_warning"`
	SequentialCallsCritical num    `json:"sequential_calls_critical"`
}

func ruleInfo(r store.FraudRule) RuleInfo {
	return RuleInfo{ID: num(r.ID), Profile: num(r.Profile), Prefix: r.Prefix, StartHour: r.StartHour, EndHour: r.EndHour, Days: r.Days,
		CPMWarning: num(r.CPM.Warning), CPMCritical: num(r.CPM.Critical),
		TotalCallsWarning: num(r.TotalCalls.Warning), TotalCallsCritical: num(r.TotalCalls.Critical),
		ConcurrentCallsWarning: num(r.ConcurrentCalls.Warning), ConcurrentCallsCritical: num(r.ConcurrentCalls.Critical),
		SequentialCallsWarning: num(r.SequentialCalls.Warning), SequentialCallsCritical: num(r.SequentialCalls.Critical)}
}

func (i RuleInfo) rule() store.FraudRule {
	return store.FraudRule{ID: int64(i.ID), Profile: int(i.Profile), Prefix: i.Prefix, StartHour: i.StartHour, EndHour: i.EndHour, Days: i.Days,
		CPM:             store.FraudLimit{Warning: int(i.CPMWarning), Critical: int(i.CPMCritical)},
		TotalCalls:      store.FraudLimit{Warning: int(i.TotalCallsWarning), Critical: int(i.TotalCallsCritical)},
		ConcurrentCalls: store.FraudLimit{Warning: int(i.ConcurrentCallsWarning), Critical: int(i.ConcurrentCallsCritical)},
		SequentialCalls: store.FraudLimit{Warning: int(i.SequentialCallsWarning), Critical: int(i.SequentialCallsCritical)}}
}

// storeErr maps store errors to the management API's: bad input 400,
// a missing rule 404.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrMalformedFraudRule), errors.Is(err, store.ErrFraudRuleExists):
		return &mgmt.ArgError{Msg: err.Error()}
	case errors.Is(err, store.ErrNoFraudRule):
		return fmt.Errorf("%w: %v", mgmt.ErrNotFound, err)
	}
	return err
}

func (f *Fraud) registerCommands(h *modules.Host) {
	h.Command("fraud.rules", mgmt.Command{
		Help:     `list the fraud rules: {"profile":1} for one profile, or all`,
		ReadOnly: true,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Profile num `json:"profile"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			rules, err := f.st.ListFraudRules(ctx)
			if err != nil {
				return nil, err
			}
			out := []RuleInfo{}
			for _, r := range rules {
				if args.Profile == 0 || r.Profile == int(args.Profile) {
					out = append(out, ruleInfo(r))
				}
			}
			return out, nil
		},
	})
	h.Command("fraud.rules.add", mgmt.Command{
		Help: `add a fraud rule: {"profile":1,"prefix":"0900","cpm_warning":5,"cpm_critical":10} ` +
			`(also start_hour, end_hour "HH:MM", days "Mon-Fri", total_calls_*, concurrent_calls_*, sequential_calls_*)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args RuleInfo
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.ID != 0 {
				return nil, &mgmt.ArgError{Msg: `"id" is given by the store; use fraud.rules.set to change a rule`}
			}
			r, err := f.st.AddFraudRule(ctx, args.rule())
			if err != nil {
				return nil, storeErr(err)
			}
			return ruleInfo(r), f.LoadRules(ctx)
		},
	})
	h.Command("fraud.rules.set", mgmt.Command{
		Help: `change a fraud rule, keeping its counters: {"id":3,"cpm_critical":20} (the fields given change)`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var id struct {
				ID num `json:"id"`
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			if err := dec.Decode(&id); err != nil || id.ID == 0 {
				return nil, &mgmt.ArgError{Msg: `"id" of the rule is required`}
			}
			old, err := f.st.GetFraudRule(ctx, int64(id.ID))
			if err != nil {
				return nil, storeErr(err)
			}
			args := ruleInfo(old)
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			r := args.rule()
			if err := f.st.UpdateFraudRule(ctx, r); err != nil {
				return nil, storeErr(err)
			}
			return ruleInfo(r), f.LoadRules(ctx)
		},
	})
	h.Command("fraud.rules.del", mgmt.Command{
		Help: `delete a fraud rule: {"id":3}`,
		Run: func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				ID num `json:"id"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.ID == 0 {
				return nil, &mgmt.ArgError{Msg: `"id" of the rule is required`}
			}
			if err := f.st.DeleteFraudRule(ctx, int64(args.ID)); err != nil {
				return nil, storeErr(err)
			}
			return fmt.Sprintf("deleted fraud rule %d", args.ID), f.LoadRules(ctx)
		},
	})
	h.Command("fraud.rules.reload", mgmt.Command{
		Help: "load the fraud rules from the store now (they are also reloaded within fraud.poll_interval of a change)",
		Run: func(ctx context.Context, _ json.RawMessage) (any, error) {
			if err := f.LoadRules(ctx); err != nil {
				return nil, err
			}
			return fmt.Sprintf("%d fraud rules loaded", len(f.rules.Load().rules)), nil
		},
	})
	h.Command("fraud.events", mgmt.Command{
		Help:     `recent calls that reached a fraud threshold, newest first: {"level":"critical","user":"alice@example.com"}, both optional`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				Level string `json:"level"`
				User  string `json:"user"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Level != "" && args.Level != "warning" && args.Level != "critical" {
				return nil, &mgmt.ArgError{Msg: `"level" is "warning" or "critical"`}
			}
			return f.Events(args.Level, args.User), nil
		},
	})
	h.Command("fraud.stats", mgmt.Command{
		Help:     `a caller's counters by profile and prefix (OpenSIPS show_fraud_stats): {"user":"alice@example.com"}`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				User string `json:"user"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.User == "" {
				return nil, &mgmt.ArgError{Msg: `"user" is required`}
			}
			return f.Stats(args.User), nil
		},
	})
	h.Command("fraud.reset", mgmt.Command{
		Help: `clear a caller's counters, lifting a block: {"user":"alice@example.com"}; calls in progress are no longer counted`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				User string `json:"user"`
			}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.User == "" {
				return nil, &mgmt.ArgError{Msg: `"user" is required`}
			}
			return map[string]int{"counters_cleared": f.Reset(args.User)}, nil
		},
	})
}

// StatInfo is one counter of a caller in fraud.stats.
type StatInfo struct {
	Profile         int    `json:"profile"`
	Prefix          string `json:"prefix"`
	Rule            int64  `json:"rule"`
	CPM             int32  `json:"cpm"`
	TotalCalls      int32  `json:"total_calls"`
	ConcurrentCalls int32  `json:"concurrent_calls"`
	SequentialCalls int32  `json:"sequential_calls"`
}

// Stats returns the counters of user, by profile and prefix. The daily
// and sequential counts are shown as they stand; a new day or another rule
// starts them again at the caller's next call.
func (f *Fraud) Stats(user string) []StatInfo {
	out := []StatInfo{}
	f.forUser(user, func(s *shards.Shard[counter], e *shards.Entry[counter]) {
		_, profile, prefix := splitKey(e.Key())
		v := &e.Value
		today := f.wall.Load().at(s.Now()).day
		total, seq := v.total, v.seq
		if v.day != today {
			total, seq = 0, 0
		}
		out = append(out, StatInfo{Profile: profile, Prefix: string(prefix), Rule: v.rule,
			CPM: v.cpmAt(s.Now() / 1000), TotalCalls: total, ConcurrentCalls: v.conc, SequentialCalls: seq})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Profile != out[j].Profile {
			return out[i].Profile < out[j].Profile
		}
		return out[i].Prefix < out[j].Prefix
	})
	return out
}

// Reset drops every counter of user and returns how many. The user's
// calls in progress are no longer counted as concurrent (their end
// releases nothing), and their next call starts from zero.
func (f *Fraud) Reset(user string) int {
	n := 0
	f.forUser(user, func(s *shards.Shard[counter], e *shards.Entry[counter]) {
		f.removeCounter(s, e)
		n++
	})
	return n
}

// forUser runs fn, with the shard locked, on each counter of user. The
// counters of one user are spread over the shards, so every shard is
// visited; this is for the management API, not for calls.
func (f *Fraud) forUser(user string, fn func(*shards.Shard[counter], *shards.Entry[counter])) {
	u := []byte(user)
	if len(u) > maxCaller {
		u = u[:maxCaller]
	}
	f.counters.Range(func(s *shards.Shard[counter], e *shards.Entry[counter]) bool {
		if caller, _, _ := splitKey(e.Key()); bytes.Equal(caller, u) {
			fn(s, e)
		}
		return true
	})
}
