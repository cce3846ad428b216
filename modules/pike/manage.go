package pike

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/modules"
)

// BanInfo is one ban as the management API lists it.
type BanInfo struct {
	Source    string `json:"source"` // address, or IPv6 prefix
	Reason    string `json:"reason"`
	Since     string `json:"since"` // RFC 3339
	Until     string `json:"until"`
	Remaining int64  `json:"remaining_s"`
}

// List returns the bans in force, those ending last first.
func (p *Pike) List() []BanInfo {
	now := p.clock.Now()
	bans := p.bans.List(now)
	sort.Slice(bans, func(i, j int) bool { return bans[i].Until > bans[j].Until })
	out := make([]BanInfo, 0, len(bans))
	for _, b := range bans {
		out = append(out, BanInfo{
			Source:    b.Key.String(b.Bits),
			Reason:    b.Reason.String(),
			Since:     time.UnixMilli(b.Since).UTC().Format(time.RFC3339),
			Until:     time.UnixMilli(b.Until).UTC().Format(time.RFC3339),
			Remaining: (b.Until - now + 999) / 1000,
		})
	}
	return out
}

// SourceInfo is one source of the rate table.
type SourceInfo struct {
	Source string `json:"source"`
	Rate   uint32 `json:"requests_in_window"`
}

// Sources returns the n sources with the highest rate now.
func (p *Pike) Sources(n int) []SourceInfo {
	var out []SourceInfo
	p.rates.Load().Each(p.clock.Now(), func(k Key, r uint32) {
		out = append(out, SourceInfo{Source: k.String(p.v6bits), Rate: r})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Rate > out[j].Rate })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

type addrArgs struct {
	Address  string `json:"address"`
	Duration string `json:"duration"`
	All      bool   `json:"all"`
	Limit    int    `json:"limit"`
}

// target is what a command's "address" names: an address, or (written
// as a prefix) the IPv6 prefix, ipv6_prefix long, that holds it.
type target struct {
	a      netip.Addr
	prefix bool
}

func argAddr(s string) (target, error) {
	if s == "" {
		return target{}, &mgmt.ArgError{Msg: `"address" is required`}
	}
	// A prefix is accepted for the IPv6 prefix it names.
	prefix := false
	if i := strings.IndexByte(s, '/'); i > 0 {
		s, prefix = s[:i], true
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return target{}, &mgmt.ArgError{Msg: fmt.Sprintf(`"address": %q is not an IP address`, s)}
	}
	a = a.Unmap()
	return target{a, prefix && a.Is6()}, nil
}

// sources returns the sources, as listed, of the bans t names: a prefix's
// ban; an address's own and its prefix's, the bans that refuse it (its
// prefix's does not refuse an exempt address).
func (p *Pike) sources(t target) []string {
	own := KeyOf(t.a, 128).String(128)
	prefix := KeyOf(t.a, p.v6bits).String(p.v6bits)
	switch {
	case t.prefix:
		return []string{prefix}
	case prefix == own || p.Exempt(t.a):
		return []string{own}
	}
	return []string{own, prefix}
}

// notBanned is the error for a command that names no ban in force.
func (p *Pike) notBanned(t target) error {
	srcs := p.sources(t)
	if len(srcs) == 2 {
		return fmt.Errorf("neither %s nor %s is banned: %w", srcs[0], srcs[1], mgmt.ErrNotFound)
	}
	return fmt.Errorf("%s is not banned: %w", srcs[0], mgmt.ErrNotFound)
}

// named returns the bans of list that t names.
func (p *Pike) named(t target, list []BanInfo) []BanInfo {
	var out []BanInfo
	srcs := p.sources(t)
	for _, b := range list {
		if slices.Contains(srcs, b.Source) {
			out = append(out, b)
		}
	}
	return out
}

func (p *Pike) registerCommands(h *modules.Host) {
	h.Command("pike.bans", mgmt.Command{
		Help:     `banned sources (flood, authentication failures, manual) with their reason and remaining time; {"address":"192.0.2.1"} for one`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args addrArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			all := p.List()
			if args.Address == "" {
				return all, nil
			}
			t, err := argAddr(args.Address)
			if err != nil {
				return nil, err
			}
			if bans := p.named(t, all); len(bans) > 0 {
				return bans, nil
			}
			return nil, p.notBanned(t)
		},
	})
	h.Command("pike.ban", mgmt.Command{
		Help: `ban a source by hand: {"address":"192.0.2.1","duration":"1h"} (duration: pike.ban_time); an IPv6 address bans its prefix`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args addrArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			t, err := argAddr(args.Address)
			if err != nil {
				return nil, err
			}
			d := p.BanTime()
			if args.Duration != "" {
				if d, err = time.ParseDuration(args.Duration); err != nil || d < time.Second || d > 365*24*time.Hour {
					return nil, &mgmt.ArgError{Msg: fmt.Sprintf(`"duration": %q is not a duration between 1s and 8760h`, args.Duration)}
				}
			}
			// An IPv6 address bans its prefix, even one that holds an
			// exempt address (whom that ban does not refuse); an exempt
			// address is banned alone.
			k, bits := p.banKey(t.a, true)
			if t.prefix {
				k, bits = KeyOf(t.a, p.v6bits), p.v6bits
			}
			now := p.clock.Now()
			p.bans.Ban(k, bits, now, now+d.Milliseconds(), Manual)
			return "banned " + k.String(bits) + " for " + d.String(), nil
		},
	})
	h.Command("pike.unban", mgmt.Command{
		Help: `lift a ban: {"address":"192.0.2.1"}, or {"all":true}`,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			var args addrArgs
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.All {
				return map[string]int{"unbanned": p.bans.Clear(p.clock.Now())}, nil
			}
			t, err := argAddr(args.Address)
			if err != nil {
				return nil, err
			}
			lifted := p.named(t, p.List())
			var was bool
			if t.prefix {
				was = p.unbanKey(KeyOf(t.a, p.v6bits), p.v6bits)
			} else {
				was = p.Unban(t.a)
			}
			if !was {
				return nil, p.notBanned(t)
			}
			srcs := make([]string, len(lifted))
			for i, b := range lifted {
				srcs[i] = b.Source
			}
			return "unbanned " + strings.Join(srcs, ", "), nil
		},
	})
	h.Command("pike.sources", mgmt.Command{
		Help:     `the sources sending most now, with their requests in the window: {"limit":20}`,
		ReadOnly: true,
		Run: func(_ context.Context, raw json.RawMessage) (any, error) {
			args := addrArgs{Limit: 20}
			if err := mgmt.DecodeArgs(raw, &args); err != nil {
				return nil, err
			}
			if args.Limit <= 0 || args.Limit > 10000 {
				return nil, &mgmt.ArgError{Msg: `"limit" must be between 1 and 10000`}
			}
			out := p.Sources(args.Limit)
			if out == nil {
				out = []SourceInfo{}
			}
			return out, nil
		},
	})
}

// registerMetrics exposes the tables' figures, read once per scrape.
func (p *Pike) registerMetrics(h *modules.Host) {
	h.Metrics.RegisterMetricsWriter(func(w io.Writer) {
		now := p.clock.Now()
		rs := p.rates.Load().Stats(now)
		bs := p.bans.Stats(now)
		metrics.WriteCounterUint64(w, "switchboard_pike_checks_total", p.hitsBefore.Load()+rs.Hits)
		metrics.WriteCounterUint64(w, "switchboard_pike_over_limit_total", p.over.Load())
		metrics.WriteGaugeUint64(w, "switchboard_pike_sources", uint64(rs.Counting))
		metrics.WriteGaugeUint64(w, "switchboard_pike_sources_max", uint64(rs.Slots))
		metrics.WriteCounterUint64(w, "switchboard_pike_source_evictions_total", rs.Evictions)
		metrics.WriteGaugeUint64(w, "switchboard_pike_bans_active", uint64(bs.Active))
		metrics.WriteGaugeUint64(w, "switchboard_pike_bans_max", uint64(bs.Slots))
		metrics.WriteCounterUint64(w, "switchboard_pike_ban_evictions_total", bs.Evictions)
		metrics.WriteCounterUint64(w, "switchboard_pike_refused_total", bs.Refused)
		reasonMu.Lock()
		names := append([]string(nil), reasonNames...)
		reasonMu.Unlock()
		for r, name := range names {
			metrics.WriteCounterUint64(w, `switchboard_pike_bans_total{reason="`+name+`"}`, bs.Made[r])
		}
	})
}
