package authban

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/modules/auth"
	"switchboard/store"
)

// LockInfo is one locked account as the management API lists it.
type LockInfo struct {
	Account   string `json:"account"`
	Since     string `json:"since"`
	Until     string `json:"until"`
	Remaining int64  `json:"remaining_s"`
}

// List returns the locked accounts, those ending last first.
func (b *Authban) List() []LockInfo {
	now := b.clock.Now()
	var ls []Lock
	b.locks.sweep(now, 0, false, func(l Lock) { ls = append(ls, l) })
	sort.Slice(ls, func(i, j int) bool { return ls[i].Until > ls[j].Until })
	out := make([]LockInfo, 0, len(ls))
	for _, l := range ls {
		out = append(out, LockInfo{
			Account:   l.Account,
			Since:     time.UnixMilli(l.Since).UTC().Format(time.RFC3339),
			Until:     time.UnixMilli(l.Until).UTC().Format(time.RFC3339),
			Remaining: (l.Until - now + 999) / 1000,
		})
	}
	return out
}

type accountArgs struct {
	User     string `json:"user"` // user@domain
	Duration string `json:"duration"`
	All      bool   `json:"all"`
}

func argAccount(s string) (user, domain string, err error) {
	user, domain, err = store.SplitAOR(s)
	if err != nil {
		return "", "", &mgmt.ArgError{Msg: `"user": ` + err.Error()}
	}
	return user, domain, nil
}

func (b *Authban) registerCommands(h *modules.Host) {
	h.Command("authban.locks", mgmt.Command{
		Help:     "accounts locked after wrong passwords from many addresses, with the time left (banned addresses: pike.bans)",
		ReadOnly: true,
		Run: func(context.Context, json.RawMessage) (any, error) {
			return b.List(), nil
		},
	})
	h.Command("authban.lock", mgmt.Command{
		Help: `lock an account by hand: {"user":"alice@example.com","duration":"1h"} (duration: authban.lock_time); it answers every password as a wrong one`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args accountArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			user, domain, err := argAccount(args.User)
			if err != nil {
				return nil, err
			}
			b.mu.Lock()
			d := b.set.LockTime
			b.mu.Unlock()
			if args.Duration != "" {
				if d, err = time.ParseDuration(args.Duration); err != nil || d < time.Second || d > 365*24*time.Hour {
					return nil, &mgmt.ArgError{Msg: fmt.Sprintf(`"duration": %q is not a duration between 1s and 8760h`, args.Duration)}
				}
			}
			b.Lock(user, domain, d)
			return "locked " + user + "@" + domain + " for " + d.String(), nil
		},
	})
	h.Command("authban.unlock", mgmt.Command{
		Help: `unlock an account: {"user":"alice@example.com"}, or {"all":true} (a banned address: pike.unban)`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args accountArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.All {
				return map[string]int{"unlocked": b.locks.sweep(b.clock.Now(), 0, true, nil)}, nil
			}
			user, domain, err := argAccount(args.User)
			if err != nil {
				return nil, err
			}
			if !b.Unlock(user, domain) {
				return nil, fmt.Errorf("%s@%s is not locked: %w", user, domain, mgmt.ErrNotFound)
			}
			return "unlocked " + user + "@" + domain, nil
		},
	})
}

func (b *Authban) registerMetrics(h *modules.Host) {
	h.Metrics.RegisterMetricsWriter(func(w io.Writer) {
		for f := auth.FailPassword; f <= auth.FailNonce; f++ {
			metrics.WriteCounterUint64(w, `switchboard_authban_failures_total{why="`+f.String()+`"}`, b.failures[f].Load())
		}
		st := b.locks.stats(b.clock.Now())
		metrics.WriteCounterUint64(w, "switchboard_authban_bans_total", b.bans.Load())
		metrics.WriteCounterUint64(w, "switchboard_authban_locks_total", st.Made)
		metrics.WriteGaugeUint64(w, "switchboard_authban_locks_active", uint64(st.Active))
		metrics.WriteCounterUint64(w, "switchboard_authban_lock_evictions_total", st.Evicted)
	})
}
