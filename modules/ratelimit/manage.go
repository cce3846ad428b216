package ratelimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
)

// PipeInfo is a pipe as ratelimit.list shows it.
type PipeInfo struct {
	PipeSettings
	Interval string `json:"interval"`
	// Passed and Dropped count requests since start (or the last change
	// of what the pipe keys on).
	Passed  uint64 `json:"passed"`
	Dropped uint64 `json:"dropped"`
	// Rate is the requests per second the pipe saw in its last complete
	// interval (passed and dropped); Current the requests so far in this
	// interval.
	Rate    float64 `json:"rate"`
	Current uint64  `json:"current,omitempty"`
	// DropPercent is a FEEDBACK pipe's drop rate now.
	DropPercent int32 `json:"drop_percent,omitempty"`
	// Keys and Evicted are a keyed pipe's keys held and evicted since
	// start; Limited its keys over the limit in this interval or the one
	// before (the 100 busiest).
	Keys    uint64     `json:"keys,omitempty"`
	Evicted uint64     `json:"evicted,omitempty"`
	Limited []KeyCount `json:"limited,omitempty"`
}

// KeyCount is a key of a keyed pipe and its requests in this interval and
// the one before.
type KeyCount struct {
	Key      string `json:"key"`
	Current  uint32 `json:"current"`
	Previous uint32 `json:"previous"`
}

// maxLimitedShown bounds the keys ratelimit.list shows per pipe.
const maxLimitedShown = 100

// List describes the configured pipes, or only the one named (false when
// it is not configured).
func (r *RateLimit) List(name string) ([]PipeInfo, bool) {
	r.mu.Lock()
	order := slices.Clone(r.order)
	r.mu.Unlock()
	var out []PipeInfo
	for _, p := range order {
		if name != "" && p.name != name {
			continue
		}
		if cfg := p.cfg.Load(); cfg != nil {
			out = append(out, p.info(cfg, p.st.Load(), r.clock.Now(), true))
		}
	}
	return out, name == "" || len(out) > 0
}

func (p *Pipe) info(cfg *pipeConfig, st *pipeState, now int64, keys bool) PipeInfo {
	w := now / cfg.ivMs
	in := PipeInfo{PipeSettings: cfg.set, Interval: cfg.set.Interval.String()}
	var last uint64
	if st.table != nil {
		in.Passed, in.Dropped, in.Keys, in.Evicted, last = st.table.totals(w)
		if keys {
			in.Limited = st.limited(cfg, w)
		}
	} else {
		in.Passed, in.Dropped = st.passed.Load(), st.dropped.Load()
		last, in.Current = st.win.last(w), st.win.current(w)
	}
	if cfg.alg == feedback {
		in.DropPercent = st.drop.Load()
	}
	in.Rate = float64(last) * 1000 / float64(cfg.ivMs)
	return in
}

// limited lists the keys over the limit in window w or the one before.
func (st *pipeState) limited(cfg *pipeConfig, w int64) []KeyCount {
	var out []KeyCount
	for i := range st.table.shards {
		s := &st.table.shards[i]
		s.mu.Lock()
		for k := 0; k < s.n; k++ {
			e := &s.entries[k]
			var cur, prev uint32
			switch e.win {
			case w:
				cur, prev = e.cur, e.prev
			case w - 1:
				prev = e.cur
			default:
				continue
			}
			if uint64(cur) > cfg.limit || uint64(prev) > cfg.limit {
				out = append(out, KeyCount{Key: e.String(st.v6bits), Current: cur, Previous: prev})
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b KeyCount) int {
		return int(max(b.Current, b.Previous)) - int(max(a.Current, a.Previous))
	})
	if len(out) > maxLimitedShown {
		out = out[:maxLimitedShown]
	}
	return out
}

// SetArgs are the arguments of ratelimit.set: the pipe, and what changes.
type SetArgs struct {
	Pipe      string `json:"pipe"`
	Limit     *int   `json:"limit"`
	Algorithm string `json:"algorithm"`
	Interval  string `json:"interval"`
}

// Set changes a configured pipe's limit, algorithm or interval at once;
// its counts stay. The change lasts until the next reload, which sets what
// the configuration file says.
func (r *RateLimit) Set(a SetArgs) (PipeInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pipes[a.Pipe]
	var cfg *pipeConfig
	if p != nil {
		cfg = p.cfg.Load()
	}
	if cfg == nil {
		return PipeInfo{}, fmt.Errorf("pipe %q: %w", a.Pipe, mgmt.ErrNotFound)
	}
	ps := cfg.set
	if a.Limit != nil {
		ps.Limit = *a.Limit
	}
	if a.Algorithm != "" {
		ps.Algorithm = a.Algorithm
	}
	if a.Interval != "" {
		d, err := time.ParseDuration(a.Interval)
		if err != nil {
			return PipeInfo{}, &mgmt.ArgError{Msg: "interval: " + err.Error()}
		}
		ps.Interval = d
	}
	nc, err := compilePipe(ps)
	if err != nil {
		return PipeInfo{}, &mgmt.ArgError{Msg: err.Error()}
	}
	p.cfg.Store(nc)
	r.h.Logger().Info("rate limit changed", "pipe", p.name, "algorithm", nc.alg.String(), "limit", nc.limit, "interval", nc.set.Interval.String())
	return p.info(nc, p.st.Load(), r.clock.Now(), false), nil
}

// Reset clears a pipe's counts, of every key or of one (as ratelimit.list
// shows it: an address, user@domain, a domain, a method), so that what it
// refused passes again at once. It returns the number of keys cleared
// (1 for an unkeyed pipe).
func (r *RateLimit) Reset(pipe, key string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pipes[pipe]
	if p == nil || p.cfg.Load() == nil {
		return 0, fmt.Errorf("pipe %q: %w", pipe, mgmt.ErrNotFound)
	}
	st := p.st.Load()
	if st.table == nil {
		if key != "" {
			return 0, &mgmt.ArgError{Msg: "pipe " + pipe + " has no keys"}
		}
		st.win.reset()
		st.drop.Store(0)
		st.pid = pid{busy: st.pid.busy, total: st.pid.total}
		return 1, nil
	}
	if key == "" {
		n := 0
		for i := range st.table.shards {
			s := &st.table.shards[i]
			s.mu.Lock()
			for k := 0; k < s.n; k++ {
				s.entries[k].cur, s.entries[k].prev = 0, 0
			}
			n += s.n
			s.mu.Unlock()
		}
		return n, nil
	}
	h, err := st.hashKey(key)
	if err != nil {
		return 0, &mgmt.ArgError{Msg: err.Error()}
	}
	s := st.table.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.find(h)
	if !ok {
		return 0, nil
	}
	e := &s.entries[s.index[slot]-1]
	e.cur, e.prev = 0, 0
	return 1, nil
}

// hashKey hashes a key written as ratelimit.list shows it.
func (st *pipeState) hashKey(key string) (uint64, error) {
	switch st.key {
	case keySource:
		a, err := netip.ParseAddr(key)
		if err != nil {
			pfx, perr := netip.ParsePrefix(key)
			if perr != nil {
				return 0, errors.New("key: not an address: " + key)
			}
			a = pfx.Addr()
		}
		h, _ := st.hash.addr(a, st.v6bits)
		return h, nil
	case keyUser:
		i := strings.LastIndexByte(key, '@')
		if i < 0 {
			return 0, errors.New("key: not user@domain: " + key)
		}
		return mix(st.hash.bytes([]byte(key[:i])), st.hash.fold([]byte(key[i+1:]))), nil
	case keyDomain:
		return st.hash.fold([]byte(key)), nil
	}
	return st.hash.bytes([]byte(key)), nil
}

func (r *RateLimit) registerCommands() {
	r.h.Command("ratelimit.list", mgmt.Command{
		Help:     `the pipes, their limits, counts and rate, and the keys over their limit; args {"pipe": name} for one`,
		ReadOnly: true,
		Run: func(_ context.Context, args json.RawMessage) (any, error) {
			var a struct {
				Pipe string `json:"pipe"`
			}
			if err := decode(args, &a); err != nil {
				return nil, err
			}
			l, ok := r.List(a.Pipe)
			if !ok {
				return nil, fmt.Errorf("pipe %q: %w", a.Pipe, mgmt.ErrNotFound)
			}
			return l, nil
		},
	})
	r.h.Command("ratelimit.set", mgmt.Command{
		Help: `change a pipe at once: args {"pipe": name, "limit": n, "algorithm": "TAILDROP|RED|FEEDBACK", "interval": "10s"} (limit, algorithm, interval optional); until the next reload`,
		Run: func(_ context.Context, args json.RawMessage) (any, error) {
			var a SetArgs
			if err := decode(args, &a); err != nil {
				return nil, err
			}
			if a.Pipe == "" {
				return nil, &mgmt.ArgError{Msg: "pipe: required"}
			}
			return r.Set(a)
		},
	})
	r.h.Command("ratelimit.reset", mgmt.Command{
		Help: `clear a pipe's counts, of every key or of one: args {"pipe": name, "key": "192.0.2.1"}`,
		Run: func(_ context.Context, args json.RawMessage) (any, error) {
			var a struct {
				Pipe string `json:"pipe"`
				Key  string `json:"key"`
			}
			if err := decode(args, &a); err != nil {
				return nil, err
			}
			if a.Pipe == "" {
				return nil, &mgmt.ArgError{Msg: "pipe: required"}
			}
			n, err := r.Reset(a.Pipe, a.Key)
			if err != nil {
				return nil, err
			}
			return map[string]int{"reset": n}, nil
		},
	})
}

// decode reads command arguments strictly: an unknown field is a mistake
// the caller should hear about.
func decode(args json.RawMessage, v any) error {
	if len(bytes.TrimSpace(args)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(args))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return &mgmt.ArgError{Msg: "arguments: " + err.Error()}
	}
	return nil
}

// registerMetrics exposes, per configured pipe, the requests passed and
// dropped, the rate of the last interval, and for keyed pipes the keys
// held and evicted.
func (r *RateLimit) registerMetrics() {
	r.h.Metrics.RegisterMetricsWriter(func(w io.Writer) {
		r.mu.Lock()
		order := slices.Clone(r.order)
		r.mu.Unlock()
		now := r.clock.Now()
		for _, p := range order {
			cfg := p.cfg.Load()
			if cfg == nil {
				continue
			}
			in := p.info(cfg, p.st.Load(), now, false)
			l := `{pipe="` + p.name + `"}`
			metrics.WriteCounterUint64(w, "switchboard_ratelimit_passed_total"+l, in.Passed)
			metrics.WriteCounterUint64(w, "switchboard_ratelimit_dropped_total"+l, in.Dropped)
			metrics.WriteGaugeFloat64(w, "switchboard_ratelimit_rate"+l, in.Rate)
			metrics.WriteGaugeUint64(w, "switchboard_ratelimit_limit"+l, cfg.limit)
			if cfg.alg == feedback {
				metrics.WriteGaugeUint64(w, "switchboard_ratelimit_drop_percent"+l, uint64(in.DropPercent))
			}
			if p.st.Load().table != nil {
				metrics.WriteGaugeUint64(w, "switchboard_ratelimit_keys"+l, in.Keys)
				metrics.WriteCounterUint64(w, "switchboard_ratelimit_keys_evicted_total"+l, in.Evicted)
			}
		}
	})
}
